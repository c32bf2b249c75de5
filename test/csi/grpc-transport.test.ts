/**
 * The CSI gRPC transport against a raw HTTP/2 server on a unix socket, which answers what a
 * well-behaved driver would not: statuses in headers only, percent-encoded messages, HTTP
 * errors, other content types, resets, a connection that closes mid-call, bad frames. The happy
 * paths against a real gRPC server are in client.test.ts.
 */
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { afterEach, describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { createUnixGrpcTransport, type UnixGrpcTransport } from "../../src/csi/grpc-transport.ts";
import {
  codeFromHttpStatus,
  decodeGrpcMessage,
  decodeUnaryBody,
  encodeFrame,
  responseError,
} from "../../src/csi/grpc-wire.ts";
import {
  Controller,
  DeleteVolumeRequestSchema,
  Identity,
  ProbeResponseSchema,
} from "../../src/gen/csi/v1/csi_pb.js";
import { H2StreamError } from "../../src/runtime/unix-socket.ts";
import { tempSocketPath } from "../support/fake-driver.ts";

/** What the raw server saw of one request. */
interface Seen {
  headers: http2.IncomingHttpHeaders;
  body: Uint8Array;
}

type Answer = (stream: http2.ServerHttp2Stream, seen: Seen) => void;

function frame(bytes: Uint8Array): Buffer {
  return Buffer.from(encodeFrame(bytes));
}

describe("createUnixGrpcTransport()", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** A raw HTTP/2 server whose every stream is answered by `answer`. */
  async function serve(answer: Answer): Promise<{ path: string; seen: Seen[] }> {
    const socket = tempSocketPath();
    cleanups.push(socket.cleanup);
    const seen: Seen[] = [];
    const server = http2.createServer();
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on("session", (s) => {
      sessions.add(s);
      s.on("close", () => sessions.delete(s));
    });
    server.on("stream", (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const s = { headers, body: new Uint8Array(Buffer.concat(chunks)) };
        seen.push(s);
        answer(stream, s);
      });
      stream.on("error", () => {});
    });
    await new Promise<void>((resolve) => server.listen(socket.path, resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of sessions) s.destroy();
          server.close(() => resolve());
        }),
    );
    return { path: socket.path, seen };
  }

  async function open(path: string): Promise<UnixGrpcTransport> {
    const t = createUnixGrpcTransport({ socketPath: path });
    cleanups.push(() => t.close());
    await t.connect();
    return t;
  }

  const ok =
    (message: Uint8Array): Answer =>
    (stream) => {
      stream.respond(
        { ":status": 200, "content-type": "application/grpc" },
        { waitForTrailers: true },
      );
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame(message));
    };

  async function probeError(t: UnixGrpcTransport): Promise<ConnectError> {
    const error = await t.transport
      .unary(Identity.method.probe, undefined, undefined, undefined, {})
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(error instanceof ConnectError, `a ConnectError, got ${String(error)}`);
    return error;
  }

  it("sends one framed message with the gRPC headers and decodes the answer", async () => {
    const response = create(ProbeResponseSchema, { ready: true });
    const server = await serve(ok(toBinary(ProbeResponseSchema, response)));
    const t = await open(server.path);
    const res = await t.transport.unary(
      Controller.method.deleteVolume,
      undefined,
      undefined,
      { "grpc-timeout": "10S", "x-extra": "yes" },
      { volumeId: "vol-1", secrets: { a: "b" } },
    );
    // DeleteVolumeResponse has no fields: the ProbeResponse bytes decode as unknown fields.
    assert.equal(res.message.$typeName, "csi.v1.DeleteVolumeResponse");
    const [req] = server.seen;
    assert.equal(req!.headers[":method"], "POST");
    assert.equal(req!.headers[":path"], "/csi.v1.Controller/DeleteVolume");
    assert.equal(req!.headers["content-type"], "application/grpc+proto");
    assert.equal(req!.headers.te, "trailers");
    assert.equal(req!.headers["grpc-timeout"], "10S");
    assert.equal(req!.headers["x-extra"], "yes");
    const payload = decodeUnaryBody([req!.body]);
    assert.ok(payload);
    const sent = fromBinary(DeleteVolumeRequestSchema, payload);
    assert.equal(sent.volumeId, "vol-1");
    assert.deepEqual(sent.secrets, { a: "b" });
    assert.equal(res.trailer.get("grpc-status"), "0");
  });

  it("reads the status of a trailers-only response from its headers, message percent-decoded", async () => {
    const server = await serve((stream) => {
      stream.respond(
        {
          ":status": 200,
          "content-type": "application/grpc",
          "grpc-status": String(Code.NotFound),
          "grpc-message": encodeURIComponent("volume vol-1 not found: 100% gone"),
        },
        { endStream: true },
      );
    });
    const error = await probeError(await open(server.path));
    assert.equal(error.code, Code.NotFound);
    assert.equal(error.rawMessage, "volume vol-1 not found: 100% gone");
  });

  it("takes the status from the trailers after a message", async () => {
    const server = await serve((stream) => {
      stream.respond(
        { ":status": 200, "content-type": "application/grpc" },
        { waitForTrailers: true },
      );
      stream.on("wantTrailers", () =>
        stream.sendTrailers({
          "grpc-status": String(Code.ResourceExhausted),
          "grpc-message": "full",
        }),
      );
      stream.end(frame(new Uint8Array()));
    });
    const error = await probeError(await open(server.path));
    assert.equal(error.code, Code.ResourceExhausted);
    assert.equal(error.rawMessage, "full");
  });

  it("maps an HTTP error status by gRPC's table and names it", async () => {
    const server = await serve((stream) => {
      stream.respond({ ":status": 503, "content-type": "text/plain" });
      stream.end("busy");
    });
    const error = await probeError(await open(server.path));
    assert.equal(error.code, Code.Unavailable);
    assert.match(error.rawMessage, /HTTP 503/);
  });

  it("refuses a response that is not gRPC", async () => {
    const server = await serve((stream) => {
      stream.respond({ ":status": 200, "content-type": "application/json", "grpc-status": "0" });
      stream.end("{}");
    });
    const error = await probeError(await open(server.path));
    assert.equal(error.code, Code.Unknown);
    assert.match(error.rawMessage, /content-type "application\/json"/);
  });

  it("fails with Internal when the status is missing or the message is", async () => {
    const noStatus = await serve((stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      stream.end(frame(new Uint8Array()));
    });
    const a = await probeError(await open(noStatus.path));
    assert.equal(a.code, Code.Internal);
    assert.match(a.rawMessage, /no grpc-status/);

    const noMessage = await serve((stream) => {
      stream.respond(
        { ":status": 200, "content-type": "application/grpc", "grpc-status": "0" },
        { endStream: true },
      );
    });
    const b = await probeError(await open(noMessage.path));
    assert.equal(b.code, Code.Internal);
    assert.match(b.rawMessage, /no csi\.v1\.ProbeResponse message/);
  });

  it("fails with Internal on a message that does not decode", async () => {
    const server = await serve(ok(new Uint8Array([0x0a, 0x05, 0x01])));
    const error = await probeError(await open(server.path));
    assert.equal(error.code, Code.Internal);
    assert.match(error.rawMessage, /cannot decode csi\.v1\.ProbeResponse/);
  });

  it("fails with Internal when the driver resets the stream before answering", async () => {
    const server = await serve((stream) => stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR));
    const error = await probeError(await open(server.path));
    assert.equal(error.code, Code.Internal);
    assert.match(error.rawMessage, /reset the stream/);
  });

  it("maps how a stream ended: refused or cut -> Unavailable, cancelled -> Canceled, else Internal", async () => {
    // Bun's node:http2 reports every reset by the peer with rstCode 0, so the codes are checked
    // through a connection that fails as the runtime would.
    const cases: [number | undefined, Code][] = [
      [http2.constants.NGHTTP2_REFUSED_STREAM, Code.Unavailable],
      [undefined, Code.Unavailable],
      [http2.constants.NGHTTP2_CANCEL, Code.Canceled],
      [http2.constants.NGHTTP2_INTERNAL_ERROR, Code.Internal],
    ];
    for (const [rstCode, code] of cases) {
      const t = createUnixGrpcTransport({
        socketPath: "/nonexistent",
        connection: {
          connect: async () => {},
          exchange: () => Promise.reject(new H2StreamError("ended", rstCode)),
          onConnectionLost() {},
          lost: false,
          close() {},
        },
      });
      const error = await probeError(t);
      assert.equal(error.code, code, `rstCode ${rstCode}`);
      assert.ok(error.cause instanceof H2StreamError);
    }
  });

  it("fails a call in flight with Unavailable when the connection closes, and reports the loss once", async () => {
    const server = await serve((stream) => stream.session?.destroy());
    const t = await open(server.path);
    const losses: string[] = [];
    const lost = new Promise<void>((resolve) =>
      t.onConnectionLost((reason) => {
        losses.push(reason);
        resolve();
      }),
    );
    const error = await probeError(t);
    assert.equal(error.code, Code.Unavailable);
    await lost;
    assert.equal(t.lost, true);
    assert.ok(losses[0]!.includes(server.path), losses[0]);
    // Later calls fail at once, and the loss is not reported again.
    assert.equal((await probeError(t)).code, Code.Unavailable);
    assert.equal(losses.length, 1);
  });

  it("cancels the stream when the signal aborts, failing with the signal's reason", async () => {
    let reset: Promise<number> | undefined;
    const server = await serve((stream) => {
      reset = new Promise((resolve) => stream.on("close", () => resolve(stream.rstCode)));
    });
    const t = await open(server.path);
    const controller = new AbortController();
    const call = t.transport.unary(
      Identity.method.probe,
      controller.signal,
      undefined,
      undefined,
      {},
    );
    while (server.seen.length === 0) await new Promise((r) => setImmediate(r));
    const reason = new ConnectError("stop", Code.Canceled);
    controller.abort(reason);
    await assert.rejects(call, (e: unknown) => e === reason);
    assert.equal(await reset, http2.constants.NGHTTP2_CANCEL);
  });

  it("refuses streaming calls", async () => {
    const server = await serve(ok(new Uint8Array()));
    const t = await open(server.path);
    const error = await t.transport
      .stream(
        // CSI has no streaming method: any method descriptor stands in for one.
        Controller.method.deleteVolume as never,
        undefined,
        undefined,
        undefined,
        (async function* () {})(),
      )
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(error instanceof ConnectError);
    assert.equal(error.code, Code.Unimplemented);
  });

  it("rejects connect() with the socket error when nothing listens", async () => {
    const socket = tempSocketPath();
    cleanups.push(socket.cleanup);
    const t = createUnixGrpcTransport({ socketPath: socket.path });
    cleanups.push(() => t.close());
    await assert.rejects(t.connect(), (e: unknown) => (e as { code?: string }).code === "ENOENT");
    assert.equal(t.lost, false);
  });
});

describe("grpc-wire", () => {
  it("frames a message with a zero flag and a big-endian length", () => {
    const f = encodeFrame(new Uint8Array(300).fill(7));
    assert.deepEqual([...f.subarray(0, 5)], [0, 0, 0, 1, 44]);
    assert.equal(f.byteLength, 305);
    assert.deepEqual(
      decodeUnaryBody([f.subarray(0, 3), f.subarray(3, 100), f.subarray(100)]),
      f.subarray(5),
    );
  });

  it("refuses compressed, truncated and repeated frames", () => {
    const f = encodeFrame(new Uint8Array([1, 2, 3]));
    const compressed = f.slice();
    compressed[0] = 1;
    assert.throws(
      () => decodeUnaryBody([compressed]),
      (e: ConnectError) => e.code === Code.Internal,
    );
    assert.throws(() => decodeUnaryBody([f.subarray(0, 6)]), /truncated/);
    assert.throws(() => decodeUnaryBody([f.subarray(0, 3)]), /truncated/);
    assert.throws(() => decodeUnaryBody([f, f]), /more than one message/);
    assert.equal(decodeUnaryBody([]), undefined);
  });

  it("decodes grpc-message and keeps a malformed escape as sent", () => {
    assert.equal(decodeGrpcMessage("a%20b%3A%20%C3%A9"), "a b: é");
    assert.equal(decodeGrpcMessage("50%"), "50%");
    assert.equal(decodeGrpcMessage("plain"), "plain");
  });

  it("maps HTTP statuses as gRPC does", () => {
    assert.equal(codeFromHttpStatus(400), Code.Internal);
    assert.equal(codeFromHttpStatus(401), Code.Unauthenticated);
    assert.equal(codeFromHttpStatus(403), Code.PermissionDenied);
    assert.equal(codeFromHttpStatus(404), Code.Unimplemented);
    for (const s of [429, 502, 503, 504]) assert.equal(codeFromHttpStatus(s), Code.Unavailable);
    assert.equal(codeFromHttpStatus(500), Code.Unknown);
  });

  it("treats an out-of-range grpc-status as Unknown and keeps it in the message", () => {
    const e = responseError(
      { ":status": 200, "content-type": "application/grpc" },
      { "grpc-status": "99", "grpc-message": "odd" },
    );
    assert.equal(e?.code, Code.Unknown);
    assert.match(e!.rawMessage, /invalid grpc-status "99": odd/);
    assert.equal(
      responseError(
        { ":status": 200, "content-type": "application/grpc+proto" },
        { "grpc-status": "0" },
      ),
      undefined,
    );
  });
});
