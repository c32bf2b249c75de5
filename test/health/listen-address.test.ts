/**
 * `--http-endpoint` listens where Go's `net.Listen("tcp", address)` would: an empty or
 * unspecified host on both IPv4 and IPv6 (so the liveness probe answers in an IPv6-only cluster),
 * any other host as given. Runs on Bun, Deno and Node (scripts/test.sh), connecting for real over
 * 127.0.0.1 and ::1.
 */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { afterEach, describe, it } from "node:test";
import { parseListenAddress } from "../../src/health/http-endpoint.ts";
import { noIpv6, type ServedServer, serve } from "../../src/runtime/serve.ts";

/** "ok", or the error code of a TCP connect to host:port. */
function tryConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve("ok");
    });
    socket.once("error", (err: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve(err.code ?? err.message);
    });
  });
}

describe("parseListenAddress()", () => {
  it("maps an empty or unspecified host to :: (both families), as Go does", () => {
    for (const address of [":8080", "0.0.0.0:8080", "[::]:8080"]) {
      assert.deepEqual(parseListenAddress(address), { hostname: "::", port: 8080 }, address);
    }
  });

  it("keeps any other host as given", () => {
    assert.deepEqual(parseListenAddress("127.0.0.1:9090"), { hostname: "127.0.0.1", port: 9090 });
    assert.deepEqual(parseListenAddress("[::1]:9090"), { hostname: "::1", port: 9090 });
    assert.deepEqual(parseListenAddress("localhost:1"), { hostname: "localhost", port: 1 });
    assert.throws(() => parseListenAddress("8080"), /Invalid listen address "8080"/);
  });
});

describe("the diagnostics server's listen address", () => {
  let server: ServedServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function listenOn(address: string): Promise<ServedServer> {
    server = await serve(async () => new Response("ok\n"), parseListenAddress(address));
    return server;
  }

  it("answers over IPv4 and IPv6 for --http-endpoint=:port", async () => {
    const s = await listenOn(":0");
    assert.equal(await tryConnect("127.0.0.1", s.port), "ok");
    assert.equal(await tryConnect("::1", s.port), "ok");
    assert.match(s.url, /^http:\/\/\[::\]:\d+$/);
    const res = await fetch(`http://[::1]:${s.port}/`);
    assert.equal(await res.text(), "ok\n");
  });

  it("answers over IPv4 and IPv6 for 0.0.0.0:port, as Go's wildcard", async () => {
    const s = await listenOn("0.0.0.0:0");
    assert.equal(await tryConnect("127.0.0.1", s.port), "ok");
    assert.equal(await tryConnect("::1", s.port), "ok");
  });

  it("listens on an explicit IPv4 host only", async () => {
    const s = await listenOn("127.0.0.1:0");
    assert.equal(await tryConnect("127.0.0.1", s.port), "ok");
    assert.equal(await tryConnect("::1", s.port), "ECONNREFUSED");
  });

  it("listens on an explicit IPv6 host only", async () => {
    const s = await listenOn("[::1]:0");
    assert.equal(await tryConnect("::1", s.port), "ok");
    assert.equal(await tryConnect("127.0.0.1", s.port), "ECONNREFUSED");
    assert.match(s.url, /^http:\/\/\[::1\]:\d+$/);
  });

  it("falls back to IPv4 only when the kernel has no IPv6", () => {
    const err = (code: string) => Object.assign(new Error(code), { code });
    assert.equal(noIpv6(err("EAFNOSUPPORT")), true);
    assert.equal(noIpv6(err("EPROTONOSUPPORT")), true);
    assert.equal(noIpv6(err("EADDRINUSE")), false);
    assert.equal(noIpv6(undefined), false);
  });
});
