import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { type ServedServer, serve } from "../../src/runtime/serve.ts";
import { FakeClock } from "../support/fake-clock.ts";

const encoder = new TextEncoder();

async function readChunk(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  const { value, done } = await reader.read();
  return done ? "<done>" : new TextDecoder().decode(value);
}

describe("serve()", () => {
  let server: ServedServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("passes method, path, headers and body to the handler and sends its response", async () => {
    server = await serve(async (req) => {
      const url = new URL(req.url);
      return Response.json(
        {
          method: req.method,
          path: url.pathname + url.search,
          type: req.headers.get("content-type"),
          body: await req.text(),
        },
        { status: 201, headers: { "x-test": "yes" } },
      );
    });
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${server.url}/a/b?c=d`, {
      method: "PATCH",
      headers: { "content-type": "application/merge-patch+json" },
      body: '{"x":1}',
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("x-test"), "yes");
    assert.deepEqual(await res.json(), {
      method: "PATCH",
      path: "/a/b?c=d",
      type: "application/merge-patch+json",
      body: '{"x":1}',
    });
  });

  it("streams a body chunk by chunk, before it ends", async () => {
    let push: ((s: string) => void) | undefined;
    server = await serve(async () => {
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          push = (s) => c.enqueue(encoder.encode(s));
        },
      });
      return new Response(body);
    });
    const res = await fetch(`${server.url}/stream`);
    const reader = res.body!.getReader();
    push!("one\n");
    assert.equal(await readChunk(reader), "one\n");
    push!("two\n");
    assert.equal(await readChunk(reader), "two\n");
    await reader.cancel();
  });

  it("cuts the connection when the body errors", async () => {
    let fail: (() => void) | undefined;
    server = await serve(async () => {
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(encoder.encode("first\n"));
          fail = () => c.error(new Error("boom"));
        },
      });
      return new Response(body);
    });
    const reader = (await fetch(`${server.url}/`)).body!.getReader();
    assert.equal(await readChunk(reader), "first\n");
    fail!();
    await assert.rejects(reader.read());
  });

  it("aborts the request signal when the client goes away", async () => {
    let aborted: Promise<void> | undefined;
    server = await serve(async (req) => {
      aborted = new Promise((resolve) => req.signal.addEventListener("abort", () => resolve()));
      return new Response(new ReadableStream({ start() {} }));
    });
    const client = new AbortController();
    const res = await fetch(`${server.url}/`, { signal: client.signal });
    assert.equal(res.status, 200);
    client.abort();
    await aborted;
  });

  it("close() tells open streams, lets a closed body finish, and frees the port", async () => {
    server = await serve(async (req) => {
      let controller: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          controller = c;
          c.enqueue(encoder.encode("hello\n"));
        },
      });
      req.signal.addEventListener("abort", () => {
        controller.enqueue(encoder.encode("bye\n"));
        controller.close();
      });
      return new Response(body);
    });
    const { url } = server;
    const res = await fetch(`${url}/`);
    const text = res.text();
    await server.close();
    server = undefined;
    assert.equal(await text, "hello\nbye\n");
    await assert.rejects(fetch(`${url}/`));
  });

  it("close() cuts a stream whose handler ignores the signal, after the grace period", async () => {
    const clock = new FakeClock();
    server = await serve(async () => new Response(new ReadableStream({ start() {} })), {
      closeGraceMs: 1000,
      clock,
    });
    const { url } = server;
    const res = await fetch(`${url}/`);
    const reader = res.body!.getReader();
    const closed = server.close();
    server = undefined;
    await clock.waitForSleepers(1);
    await clock.advance(1000);
    await closed;
    await assert.rejects(reader.read());
  });
});

const openssl = "/usr/bin/openssl";

/** A self-signed X.509 v3 certificate for 127.0.0.1, made by the openssl command. */
async function selfSigned(): Promise<{ cert: string; key: string }> {
  const dir = await mkdtemp(join(tmpdir(), "serve-tls-"));
  try {
    await new Promise<void>((resolve, reject) =>
      execFile(
        openssl,
        [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:prime256v1",
          "-nodes",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
          "-days",
          "1",
          "-keyout",
          join(dir, "key.pem"),
          "-out",
          join(dir, "cert.pem"),
        ],
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    return {
      cert: await readFile(join(dir, "cert.pem"), "utf8"),
      key: await readFile(join(dir, "key.pem"), "utf8"),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("serve() with tls", { skip: existsSync(openssl) ? false : "openssl not found" }, () => {
  it("serves HTTPS with the given certificate", async () => {
    const tls = await selfSigned();
    const server = await serve(async () => Response.json({ ok: true }), { tls });
    try {
      assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const body = await new Promise<string>((resolve, reject) => {
        const req = request(`${server.url}/`, { ca: tls.cert }, (res) => {
          let text = "";
          res.on("data", (d: Buffer) => (text += d.toString()));
          res.on("end", () => resolve(text));
        });
        req.on("error", reject);
        req.end();
      });
      assert.deepEqual(JSON.parse(body), { ok: true });
    } finally {
      await server.close();
    }
  });
});
