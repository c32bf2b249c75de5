/**
 * Driver errors: everything the driver (or the connection to it) fails with is a `ConnectError`
 * carrying a gRPC `Code`. This file names the codes the way gRPC-Go does (`codes.Code.String()`),
 * which is what upstream's metrics label and log lines show, and renders errors for messages.
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** gRPC status code names, as gRPC-Go prints them. `OK` is the success of a call. */
export type GrpcCodeName =
  | "OK"
  | "Canceled"
  | "Unknown"
  | "InvalidArgument"
  | "DeadlineExceeded"
  | "NotFound"
  | "AlreadyExists"
  | "PermissionDenied"
  | "ResourceExhausted"
  | "FailedPrecondition"
  | "Aborted"
  | "OutOfRange"
  | "Unimplemented"
  | "Internal"
  | "Unavailable"
  | "DataLoss"
  | "Unauthenticated";

const NAMES: Record<Code, GrpcCodeName> = {
  [Code.Canceled]: "Canceled",
  [Code.Unknown]: "Unknown",
  [Code.InvalidArgument]: "InvalidArgument",
  [Code.DeadlineExceeded]: "DeadlineExceeded",
  [Code.NotFound]: "NotFound",
  [Code.AlreadyExists]: "AlreadyExists",
  [Code.PermissionDenied]: "PermissionDenied",
  [Code.ResourceExhausted]: "ResourceExhausted",
  [Code.FailedPrecondition]: "FailedPrecondition",
  [Code.Aborted]: "Aborted",
  [Code.OutOfRange]: "OutOfRange",
  [Code.Unimplemented]: "Unimplemented",
  [Code.Internal]: "Internal",
  [Code.Unavailable]: "Unavailable",
  [Code.DataLoss]: "DataLoss",
  [Code.Unauthenticated]: "Unauthenticated",
};

/** Every non-OK code, in numeric order. */
export const ALL_ERROR_CODES: readonly Code[] = Object.keys(NAMES)
  .map(Number)
  .sort((a, b) => a - b) as Code[];

/** The gRPC-Go name of `code`; `undefined` (a success) is `OK`. */
export function grpcCodeName(code: Code | undefined): GrpcCodeName {
  if (code === undefined) return "OK";
  return NAMES[code] ?? "Unknown";
}

/** Socket error codes that mean "the driver cannot be reached", which gRPC calls Unavailable. */
const UNREACHABLE = new Set([
  "ENOENT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ENOTCONN",
  "EACCES",
]);

function socketErrorCode(error: unknown): string | undefined {
  const seen = new Set<unknown>();
  for (let e = error; e instanceof Error && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && UNREACHABLE.has(code)) return code;
  }
  return undefined;
}

/**
 * Normalises anything thrown by a call into a `ConnectError` (once, at the edge). A socket that
 * cannot be reached (`ENOENT`, `ECONNREFUSED`, ...) becomes `Unavailable`, as in gRPC-Go, instead
 * of connect-node's `Internal`.
 */
export function toConnectError(error: unknown): ConnectError {
  const e = ConnectError.from(error);
  if ((e.code === Code.Internal || e.code === Code.Unknown) && socketErrorCode(e) !== undefined) {
    return new ConnectError(e.rawMessage, Code.Unavailable, e.metadata, undefined, e);
  }
  return e;
}

/** `Unimplemented: unknown method` — the code name then the driver's message. */
export function describeCsiError(error: unknown): string {
  const e = ConnectError.from(error);
  const name = grpcCodeName(e.code);
  return e.rawMessage ? `${name}: ${e.rawMessage}` : name;
}

/** Whether `error` is a `ConnectError` with `code`. */
export function hasCode(error: unknown, code: Code): boolean {
  return error instanceof ConnectError && error.code === code;
}
