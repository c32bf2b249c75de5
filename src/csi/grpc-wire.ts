/**
 * The gRPC wire format of a unary call, runtime-neutral (the HTTP/2 stream lives in
 * `src/runtime/unix-socket.ts`):
 *
 * - a message travels as one length-prefixed frame: a flag byte (bit 0: compressed), a 4-byte
 *   big-endian length, the protobuf bytes. This client never compresses and does not announce
 *   `grpc-accept-encoding`, so a compressed response is a protocol error;
 * - the outcome is `grpc-status` (and the percent-encoded `grpc-message`) in the trailers, or in
 *   the headers of a trailers-only response;
 * - a response that is not HTTP 200 maps to a code by gRPC's HTTP-to-status table.
 *
 * Everything here returns or builds a `ConnectError`, the one error type of the driver edge.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { H2Fields } from "../runtime/unix-socket.ts";

/** `content-type` of the requests, and the prefix every response must carry. */
export const GRPC_CONTENT_TYPE = "application/grpc+proto";

/** The 5-byte prefix followed by `payload`, uncompressed. */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(5 + payload.byteLength);
  const n = payload.byteLength;
  frame[1] = n >>> 24;
  frame[2] = (n >>> 16) & 0xff;
  frame[3] = (n >>> 8) & 0xff;
  frame[4] = n & 0xff;
  frame.set(payload, 5);
  return frame;
}

/**
 * The one message of a unary response, from the body's chunks. Fails with `Internal` on a
 * compressed or truncated frame, or on more than one message; `undefined` for an empty body
 * (the caller then reports the status, or the missing message).
 */
export function decodeUnaryBody(chunks: readonly Uint8Array[]): Uint8Array | undefined {
  let body: Uint8Array;
  if (chunks.length === 0) return undefined;
  if (chunks.length === 1) body = chunks[0]!;
  else {
    let total = 0;
    for (const c of chunks) total += c.byteLength;
    body = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      body.set(c, at);
      at += c.byteLength;
    }
  }
  if (body.byteLength === 0) return undefined;
  if (body.byteLength < 5) {
    throw new ConnectError("protocol error: truncated gRPC frame header", Code.Internal);
  }
  const flags = body[0]!;
  const length = ((body[1]! << 24) | (body[2]! << 16) | (body[3]! << 8) | body[4]!) >>> 0;
  if ((flags & 1) !== 0) {
    throw new ConnectError(
      "protocol error: the driver sent a compressed message, but no compression was negotiated",
      Code.Internal,
    );
  }
  if (body.byteLength < 5 + length) {
    throw new ConnectError(
      `protocol error: gRPC frame of ${length} bytes truncated at ${body.byteLength - 5}`,
      Code.Internal,
    );
  }
  if (body.byteLength > 5 + length) {
    throw new ConnectError(
      "protocol error: more than one message in a unary response",
      Code.Unimplemented,
    );
  }
  return body.subarray(5, 5 + length);
}

/** `grpc-message` is percent-encoded UTF-8; a malformed escape is kept as sent. */
export function decodeGrpcMessage(value: string): string {
  if (!value.includes("%")) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** gRPC's mapping of a non-200 HTTP status to a code (a 200 without `grpc-status` is Unknown). */
export function codeFromHttpStatus(status: number): Code {
  switch (status) {
    case 400:
      return Code.Internal;
    case 401:
      return Code.Unauthenticated;
    case 403:
      return Code.PermissionDenied;
    case 404:
      return Code.Unimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return Code.Unavailable;
    default:
      return Code.Unknown;
  }
}

function field(fields: H2Fields | undefined, name: string): string | undefined {
  const v = fields?.[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.join(", ") : String(v);
}

/** The fields other than HTTP/2 pseudo-headers, as `Headers` (the error's metadata). */
export function toHeaders(fields: H2Fields | undefined): Headers {
  const h = new Headers();
  if (fields === undefined) return h;
  for (const name of Object.keys(fields)) {
    if (name.startsWith(":")) continue;
    const v = field(fields, name);
    if (v !== undefined) h.append(name, v);
  }
  return h;
}

/**
 * The error a finished response stands for, or `undefined` for a success: HTTP status, then
 * `content-type`, then `grpc-status` from the trailers or, in a trailers-only response, from the
 * headers.
 */
export function responseError(
  headers: H2Fields | undefined,
  trailers: H2Fields | undefined,
): ConnectError | undefined {
  const status = Number(field(headers, ":status") ?? 0);
  if (status !== 200) {
    return new ConnectError(
      `HTTP ${status} from the driver instead of a gRPC response`,
      codeFromHttpStatus(status),
      toHeaders(headers),
    );
  }
  const contentType = field(headers, "content-type") ?? "";
  if (!contentType.startsWith("application/grpc")) {
    return new ConnectError(
      `unexpected content-type "${contentType}" from the driver`,
      Code.Unknown,
      toHeaders(headers),
    );
  }
  const source = field(trailers, "grpc-status") !== undefined ? trailers : headers;
  const raw = field(source, "grpc-status");
  if (raw === undefined) {
    return new ConnectError("protocol error: the response has no grpc-status", Code.Internal);
  }
  const code = Number(raw);
  if (code === 0) return undefined;
  const valid = Number.isInteger(code) && code >= 1 && code <= 16;
  const message = decodeGrpcMessage(field(source, "grpc-message") ?? "");
  return new ConnectError(
    valid ? message : `invalid grpc-status ${JSON.stringify(raw)}${message ? `: ${message}` : ""}`,
    valid ? (code as Code) : Code.Unknown,
    toHeaders(source),
  );
}
