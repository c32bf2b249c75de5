import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { createGzip, gzipSync } from "node:zlib";
import { type AuthProvider, noAuth } from "../../src/kube/auth.ts";
import {
  isConflict,
  isGone,
  isInternalError,
  isNotFound,
  isTooManyRequests,
  isTransport,
  KubeApiError,
} from "../../src/kube/errors.ts";
import { TokenBucket } from "../../src/kube/ratelimit.ts";
import {
  KubeTransport,
  type KubeTransportOptions,
  type MalformedLine,
} from "../../src/kube/transport.ts";
import { closeIdleConnections } from "../../src/runtime/https.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { type Loopback, sendJson, startLoopback, statusBody } from "../support/loopback.ts";

describe("KubeTransport", () => {
  let server: Loopback;
  let clock: FakeClock;

  const transport = (o: Partial<KubeTransportOptions> = {}) =>
    new KubeTransport({
      connection: { server: server.url, tls: {}, auth: noAuth, source: "test" },
      version: "v9.8.7",
      clock,
      random: () => 0.5,
      ...o,
    });

  before(async () => {
    server = await startLoopback({});
  });
  beforeEach(() => {
    clock = new FakeClock();
    server.requests.length = 0;
  });
  afterEach(() => closeIdleConnections());
  after(() => server.close());

  it("sends the User-Agent, JSON headers, query and body, and parses the answer", async () => {
    server.handler = (req, res) => sendJson(res, 201, { echo: JSON.parse(req.body) });
    const res = await transport().request<{ echo: unknown }>({
      method: "POST",
      path: "/api/v1/namespaces/ns/persistentvolumeclaims",
      query: { dryRun: "All", fieldManager: undefined, limit: 5 },
      body: { metadata: { name: "a" } },
    });
    assert.equal(res.status, 201);
    assert.deepEqual(res.json, { echo: { metadata: { name: "a" } } });
    const [req] = server.requests;
    assert.equal(req!.method, "POST");
    assert.equal(req!.path, "/api/v1/namespaces/ns/persistentvolumeclaims");
    assert.equal(req!.query.toString(), "dryRun=All&limit=5");
    assert.equal(req!.headers["user-agent"], "csi-provisioner/v9.8.7");
    assert.equal(req!.headers.accept, "application/json");
    assert.equal(req!.headers["accept-encoding"], "gzip");
    assert.equal(req!.headers["content-type"], "application/json");
  });

  it("decodes gzip-encoded answers", async () => {
    const big = {
      items: Array.from({ length: 500 }, (_, i) => ({ metadata: { name: `pv-${i}` } })),
    };
    server.handler = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
      res.end(gzipSync(JSON.stringify(big)));
    };
    const res = await transport().request({ method: "GET", path: "/api/v1/persistentvolumes" });
    assert.deepEqual(res.json, big);
  });

  it("drains without parsing an answer the caller discards; the connection is reused", async () => {
    // Not JSON: a parse would fail the request, so success shows the body was not parsed.
    server.handler = (_req, res) => {
      res.writeHead(201, { "content-type": "application/json" });
      res.end("{not json");
    };
    const t = transport();
    const first = await t.request({
      method: "POST",
      path: "/api/v1/namespaces/ns/events",
      body: {},
      discardBody: true,
    });
    assert.equal(first.status, 201);
    assert.equal(first.json, undefined);
    const parsed = await t
      .request({ method: "POST", path: "/api/v1/namespaces/ns/events", body: {} })
      .catch((e: unknown) => e);
    assert.ok(parsed instanceof KubeApiError);
    assert.match(parsed.message, /the response body is not valid JSON/);
    // The discarded body was read to its end, so both requests shared one connection.
    assert.equal(new Set(server.requests.map((r) => r.remotePort)).size, 1);
  });

  it("still parses an error answer of a discarding request into a KubeApiError", async () => {
    server.handler = (_req, res) =>
      sendJson(res, 409, statusBody(409, "Conflict", "the object has been modified"));
    const err = await transport()
      .request({
        method: "PATCH",
        path: "/api/v1/persistentvolumes/pv-1",
        body: {},
        discardBody: true,
        target: "persistentvolumes pv-1",
      })
      .catch((e: unknown) => e);
    assert.ok(isConflict(err));
    assert.match((err as Error).message, /409 Conflict: the object has been modified/);
  });

  it("turns each error answer into a KubeApiError", async () => {
    server.handler = (_req, res) =>
      sendJson(res, 409, statusBody(409, "Conflict", "the object has been modified"));
    const err = await transport()
      .request({
        method: "PUT",
        path: "/api/v1/persistentvolumes/pv-1",
        body: {},
        target: "persistentvolumes pv-1",
      })
      .catch((e: unknown) => e);
    assert.ok(err instanceof KubeApiError);
    assert.ok(isConflict(err));
    assert.equal(
      err.message,
      "Update persistentvolumes pv-1: 409 Conflict: the object has been modified",
    );
  });

  it("maps an error answer that is not a Status by its HTTP code", async () => {
    server.handler = (_req, res) => {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("404 page not found");
    };
    const err = await transport()
      .request({ method: "DELETE", path: "/apis/nope/v1/things/x" })
      .catch((e: unknown) => e);
    assert.ok(isNotFound(err));
    assert.match((err as Error).message, /404 page not found/);
  });

  it("reports a refused connection as a transport error", async () => {
    const t = new KubeTransport({
      connection: { server: "http://127.0.0.1:1", tls: {}, auth: noAuth, source: "test" },
      version: "v1",
      clock,
      random: () => 0.5,
      idempotentRetries: 0,
    });
    const err = await t
      .request({ method: "GET", path: "/api/v1/nodes", verb: "list", target: "nodes" })
      .catch((e: unknown) => e);
    assert.ok(isTransport(err));
    assert.equal((err as KubeApiError).status, 0);
    assert.match((err as Error).message, /^List nodes: .*ECONNREFUSED/);
  });

  it("honours Retry-After on 429 and then succeeds", async () => {
    let n = 0;
    server.handler = (_req, res) => {
      if (++n <= 2) {
        res.setHeader("retry-after", "3");
        return sendJson(
          res,
          429,
          statusBody(429, "TooManyRequests", "slow down", { retryAfterSeconds: 3 }),
        );
      }
      sendJson(res, 201, { ok: true });
    };
    const p = transport().request({
      method: "POST",
      path: "/api/v1/namespaces/ns/secrets",
      body: {},
    });
    await clock.waitForSleepers(1);
    assert.equal(server.requests.length, 1);
    await clock.advance(2999);
    assert.equal(server.requests.length, 1);
    await clock.advance(1);
    await clock.waitForSleepers(1);
    assert.equal(server.requests.length, 2);
    await clock.advance(3000);
    const res = await p;
    assert.deepEqual(res.json, { ok: true });
    assert.equal(server.requests.length, 3);
  });

  it("gives up after maxRetries 429 answers with the Retry-After in the error", async () => {
    server.handler = (_req, res) => {
      res.setHeader("retry-after", "2");
      sendJson(res, 429, statusBody(429, "TooManyRequests", "slow down"));
    };
    const p = transport({ maxRetries: 1 })
      .request({ method: "GET", path: "/api/v1/nodes" })
      .catch((e: unknown) => e);
    await clock.waitForSleepers(1);
    await clock.advance(2000);
    const err = await p;
    assert.ok(isTooManyRequests(err));
    assert.equal((err as KubeApiError).retryAfterSeconds, 2);
    assert.equal(server.requests.length, 2);
  });

  it("retries a GET after a 5xx with back-off, but not a POST", async () => {
    let n = 0;
    server.handler = (_req, res) => {
      if (++n === 1) return sendJson(res, 503, statusBody(503, "ServiceUnavailable", "starting"));
      sendJson(res, 200, { ok: n });
    };
    const p = transport().request({ method: "GET", path: "/api/v1/nodes" });
    await clock.waitForSleepers(1);
    await clock.advance(500);
    assert.deepEqual((await p).json, { ok: 2 });

    server.handler = (_req, res) => sendJson(res, 500, statusBody(500, "InternalError", "etcd"));
    server.requests.length = 0;
    const err = await transport()
      .request({ method: "POST", path: "/api/v1/namespaces/ns/secrets", body: {} })
      .catch((e: unknown) => e);
    assert.ok(isInternalError(err));
    assert.equal(server.requests.length, 1);
  });

  it("invalidates the credentials after a 401 and retries once", async () => {
    let generation = 1;
    const invalidations: number[] = [];
    const auth: AuthProvider = {
      credentials: async () => ({ headers: { Authorization: `Bearer t${generation}` } }),
      invalidate: (sentAt) => {
        invalidations.push(sentAt);
        generation++;
      },
    };
    server.handler = (req, res) =>
      req.headers.authorization === "Bearer t2"
        ? sendJson(res, 200, { ok: true })
        : sendJson(res, 401, statusBody(401, "Unauthorized", "Unauthorized"));
    const t = new KubeTransport({
      connection: { server: server.url, tls: {}, auth, source: "test" },
      version: "v1",
      clock,
      random: () => 0.5,
    });
    assert.deepEqual((await t.request({ method: "GET", path: "/api" })).json, { ok: true });
    assert.deepEqual(invalidations, [clock.now()]);
    assert.deepEqual(
      server.requests.map((r) => r.headers.authorization),
      ["Bearer t1", "Bearer t2"],
    );
  });

  it("waits for the rate limiter before each request", async () => {
    server.handler = (_req, res) => sendJson(res, 200, {});
    const t = transport({ rateLimiter: new TokenBucket({ qps: 1, burst: 1, clock }) });
    await t.request({ method: "GET", path: "/a" });
    const second = t.request({ method: "GET", path: "/b" });
    await clock.waitForSleepers(1);
    assert.deepEqual(
      server.requests.map((r) => r.path),
      ["/a"],
    );
    await clock.advance(1000);
    await second;
    assert.deepEqual(
      server.requests.map((r) => r.path),
      ["/a", "/b"],
    );
  });

  it("rejects with the signal's reason when aborted", async () => {
    server.handler = () => {};
    const ac = new AbortController();
    const p = transport().request({ method: "GET", path: "/hang", signal: ac.signal });
    while (server.requests.length === 0) await new Promise((r) => setImmediate(r));
    ac.abort(new Error("shutting down"));
    await assert.rejects(p, /shutting down/);
  });
});

describe("KubeTransport write fence", () => {
  let server: Loopback;
  let clock: FakeClock;
  const transport = (o: Partial<KubeTransportOptions> = {}) =>
    new KubeTransport({
      connection: { server: server.url, tls: {}, auth: noAuth, source: "test" },
      version: "v9.8.7",
      clock,
      random: () => 0.5,
      ...o,
    });
  const turn = () => new Promise((r) => setImmediate(r));

  before(async () => {
    server = await startLoopback({});
  });
  beforeEach(() => {
    clock = new FakeClock();
    server.requests.length = 0;
  });
  afterEach(() => closeIdleConnections());
  after(() => server.close());

  it("rejects writes waiting for the rate limiter and later ones; reads go on; reopens", async () => {
    server.handler = (_req, res) => sendJson(res, 200, {});
    const t = transport({ rateLimiter: new TokenBucket({ qps: 1, burst: 1, clock }) });
    await t.request({ method: "GET", path: "/first" });
    const queued = t.request({ method: "PUT", path: "/queued", body: {} });
    await clock.waitForSleepers(1);
    assert.equal(await t.closeWrites(), true, "nothing was on the wire");
    const err = await queued.then(
      () => undefined,
      (e) => e,
    );
    assert.ok(isTransport(err), "a transport KubeApiError");
    assert.match(String(err.message), /writes are stopped/);
    await assert.rejects(t.request({ method: "POST", path: "/later", body: {} }), isTransport);
    await clock.advance(1000);
    await t.request({ method: "GET", path: "/read" });
    t.openWrites();
    await clock.advance(1000);
    await t.request({ method: "POST", path: "/again", body: {} });
    assert.deepEqual(
      server.requests.map((r) => r.path),
      ["/first", "/read", "/again"],
    );
  });

  it("a write on the wire is answered even when its caller gives up; the fence waits for it", async () => {
    let answer: () => void = () => {};
    const arrived: string[] = [];
    server.handler = (req, res) => {
      arrived.push(req.path);
      answer = () => sendJson(res, 201, {});
    };
    const t = transport();
    const caller = new AbortController();
    const write = t.request({ method: "POST", path: "/pv", body: {}, signal: caller.signal });
    while (arrived.length === 0) await turn();
    caller.abort(new Error("cancelled"));
    await assert.rejects(write, /cancelled/);
    assert.equal(t.writesOnWire, 1, "the request itself was not cut");

    let fenced = false;
    const closing = t.closeWrites().then((v) => {
      fenced = v;
    });
    for (let i = 0; i < 5; i++) await turn();
    assert.equal(fenced, false, "not fenced while the write is unanswered");
    answer();
    await closing;
    assert.equal(fenced, true);
    assert.equal(t.writesOnWire, 0);
  });

  it("gives up waiting at the deadline", async () => {
    const arrived: string[] = [];
    server.handler = (req) => {
      arrived.push(req.path);
    };
    const t = transport({ abandonWriteMs: 5_000 });
    const caller = new AbortController();
    const write = t.request({ method: "PUT", path: "/hang", body: {}, signal: caller.signal });
    while (arrived.length === 0) await turn();
    const deadline = new AbortController();
    const closing = t.closeWrites(deadline.signal);
    deadline.abort();
    assert.equal(await closing, false);
    caller.abort(new Error("cancelled"));
    await assert.rejects(write, /cancelled/);
    await clock.advance(5_000); // the abandoned write's connection is closed
    while (t.writesOnWire > 0) await turn();
  });
});

describe("KubeTransport.stream()", () => {
  let server: Loopback;
  let clock: FakeClock;
  before(async () => {
    server = await startLoopback({});
  });
  beforeEach(() => {
    clock = new FakeClock();
  });
  afterEach(() => closeIdleConnections());
  after(() => server.close());

  const transport = (o: Partial<KubeTransportOptions> = {}) =>
    new KubeTransport({
      connection: { server: server.url, tls: {}, auth: noAuth, source: "test" },
      version: "v1",
      clock,
      random: () => 0.5,
      ...o,
    });

  it("splits lines across chunks and counts a malformed line without stopping", async () => {
    const ev = (i: number) =>
      JSON.stringify({ type: "ADDED", object: { metadata: { name: `pv-${i}` } } });
    const text = `${ev(1)}\n${ev(2)}\n{"type":"ADDED","obj\n\n${ev(3)}\n${ev(4)}`;
    server.handler = async (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      // Cut the text into 7-byte chunks, flushed one by one.
      for (let i = 0; i < text.length; i += 7) {
        res.write(text.slice(i, i + 7));
        await new Promise((r) => setImmediate(r));
      }
      res.end();
    };
    const logger = memoryLogger(clock);
    const seen: MalformedLine[] = [];
    const t = transport({ logger, onMalformedLine: (m) => seen.push(m) });
    const names: string[] = [];
    const stream = await t.stream<{ object: { metadata: { name: string } } }>({
      method: "GET",
      path: "/api/v1/persistentvolumes",
      query: { watch: "true" },
    });
    for await (const e of stream) names.push(e.object.metadata.name);
    assert.deepEqual(names, ["pv-1", "pv-2", "pv-3", "pv-4"]);
    assert.equal(t.malformedLines, 1);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.line, '{"type":"ADDED","obj');
    assert.match(seen[0]!.error, /invalid JSON/);
    assert.ok(logger.lines.some((l) => l.includes("malformed line")));
    assert.ok(!logger.lines.some((l) => l.includes('"obj')), "the line's content is not logged");
  });

  it("splits a multi-byte character across chunks correctly", async () => {
    const bytes = Buffer.from(`${JSON.stringify({ name: "vol-ü€" })}\n`);
    server.handler = async (_req, res) => {
      res.writeHead(200);
      for (const b of bytes) {
        res.write(Buffer.from([b]));
        await new Promise((r) => setImmediate(r));
      }
      res.end();
    };
    const out: unknown[] = [];
    for await (const v of await transport().stream({ method: "GET", path: "/w" })) out.push(v);
    assert.deepEqual(out, [{ name: "vol-ü€" }]);
  });

  it("hands values that fail the shape check to the malformed-line handler", async () => {
    server.handler = (_req, res) => res.end('{"type":"ADDED","object":{}}\n[1,2]\n');
    const perStream: MalformedLine[] = [];
    const t = transport();
    const out: unknown[] = [];
    const stream = await t.stream({
      method: "GET",
      path: "/w",
      check: (v) => typeof v === "object" && v !== null && "type" in v,
      onMalformedLine: (m) => perStream.push(m),
    });
    for await (const v of stream) out.push(v);
    assert.equal(out.length, 1);
    assert.deepEqual(
      perStream.map((m) => [m.line, m.error]),
      [["[1,2]", "unexpected shape"]],
    );
    assert.equal(t.malformedLines, 1);
  });

  it("rejects with a KubeApiError when the stream is refused", async () => {
    server.handler = (_req, res) =>
      sendJson(res, 410, statusBody(410, "Expired", "too old resource version"));
    const err = await transport()
      .stream({ method: "GET", path: "/w", verb: "watch", target: "persistentvolumes" })
      .catch((e: unknown) => e);
    assert.ok(isGone(err));
  });

  it("closes the connection when the consumer stops iterating", async () => {
    let closed!: () => void;
    const serverSawClose = new Promise<void>((r) => {
      closed = r;
    });
    server.handler = (_req, res) => {
      res.writeHead(200);
      res.write('{"n":1}\n');
      res.on("close", () => closed());
    };
    const stream = await transport().stream<{ n: number }>({ method: "GET", path: "/w" });
    for await (const v of stream) {
      assert.equal(v.n, 1);
      break;
    }
    await serverSawClose;
  });

  it("rejects with the abort reason and closes the connection on abort", async () => {
    let closed!: () => void;
    const serverSawClose = new Promise<void>((r) => {
      closed = r;
    });
    server.handler = (_req, res) => {
      res.writeHead(200);
      res.write('{"n":1}\n');
      res.on("close", () => closed());
    };
    const ac = new AbortController();
    const stream = await transport().stream<{ n: number }>({
      method: "GET",
      path: "/w",
      signal: ac.signal,
    });
    const first = await stream.next();
    assert.deepEqual(first.value, { n: 1 });
    const pending = stream.next();
    ac.abort(new Error("stop watching"));
    await assert.rejects(pending, /stop watching/);
    await serverSawClose;
  });

  it("reads a watch on a connection of its own and closes it on abort; the pool is untouched", async () => {
    let watchClosed!: () => void;
    const serverSawWatchClose = new Promise<void>((r) => {
      watchClosed = r;
    });
    const ports: Record<string, number[]> = { get: [], watch: [] };
    server.handler = (req, res, raw) => {
      const port = raw.socket.remotePort ?? 0;
      if (req.path === "/get") {
        ports.get!.push(port);
        sendJson(res, 200, {});
        return;
      }
      ports.watch!.push(port);
      res.writeHead(200);
      res.write('{"n":1}\n');
      raw.socket.on("close", () => watchClosed());
    };
    const t = transport();
    await t.request({ method: "GET", path: "/get" });
    const ac = new AbortController();
    const stream = await t.stream<{ n: number }>({ method: "GET", path: "/w", signal: ac.signal });
    assert.deepEqual((await stream.next()).value, { n: 1 });
    const pending = stream.next();
    ac.abort(new Error("stop watching"));
    await assert.rejects(pending, /stop watching/);
    await serverSawWatchClose;
    await t.request({ method: "GET", path: "/get" });
    assert.equal(ports.watch!.length, 1);
    assert.ok(
      !ports.get!.includes(ports.watch![0]!),
      "the watch did not take the pooled connection",
    );
    assert.equal(ports.get![1], ports.get![0], "the pooled connection was reused after the watch");
  });

  it("decodes a gzip-encoded watch as it streams", async () => {
    let more!: () => void;
    const secondWanted = new Promise<void>((r) => {
      more = r;
    });
    server.handler = async (_req, res) => {
      res.writeHead(200, { "content-encoding": "gzip" });
      const gz = createGzip();
      gz.pipe(res);
      gz.write('{"n":1}\n{"n":');
      gz.flush();
      await secondWanted;
      gz.end("2}\n");
    };
    const stream = await transport().stream<{ n: number }>({ method: "GET", path: "/w" });
    // The first line arrives while the server still holds the rest back.
    assert.deepEqual((await stream.next()).value, { n: 1 });
    more();
    const rest: unknown[] = [];
    for await (const v of stream) rest.push(v);
    assert.deepEqual(rest, [{ n: 2 }]);
  });

  it("rejects with a transport error when the connection breaks mid-stream", async () => {
    server.handler = (_req, res) => {
      res.writeHead(200);
      res.write('{"n":1}\n');
      setImmediate(() => res.socket?.destroy());
    };
    const stream = await transport().stream({
      method: "GET",
      path: "/w",
      verb: "watch",
      target: "nodes",
    });
    const err = await (async () => {
      for await (const _ of stream) {
        // drain
      }
    })().catch((e: unknown) => e);
    assert.ok(isTransport(err), String(err));
  });
});
