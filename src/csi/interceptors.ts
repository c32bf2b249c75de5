/**
 * What happens around every CSI call, as Connect interceptors on the driver's transport:
 *
 * - {@link callLogInterceptor}: at `-v=5`, the request and the response (or error), secrets
 *   redacted;
 * - {@link callRecordInterceptor}: one {@link CsiCallRecord} per call (method, gRPC code,
 *   duration) for the metrics;
 * - {@link callGuardInterceptor}: refuses a call on a lost connection, or one cancelled before
 *   it started, without touching the socket.
 *
 * The client (`client.ts`) puts them in this order, so that the record and the log also cover
 * the calls the guard refuses.
 */
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { describeCsiError, type GrpcCodeName, grpcCodeName, toConnectError } from "./errors.ts";
import { redactMessage } from "./redact.ts";

/** One finished CSI call, for metrics. */
export interface CsiCallRecord {
  /** Full gRPC method name, e.g. `/csi.v1.Controller/CreateVolume`. */
  readonly method: string;
  /** `OK`, or the gRPC-Go name of the error code (`DeadlineExceeded`, ...). */
  readonly code: GrpcCodeName;
  /** How long the call took, in ms, measured with the injected clock. */
  readonly durationMs: number;
  /** The call was made for a migrated in-tree volume (upstream's `migrated` metric label). */
  readonly migrated: boolean;
}

/** Marks a call as made for a migrated in-tree volume (see {@link CsiCallRecord.migrated}). */
export const MIGRATED_CALL = createContextKey(false, { description: "migrated CSI call" });

const fullName = (req: { service: { typeName: string }; method: { name: string } }) =>
  `/${req.service.typeName}/${req.method.name}`;

/** Logs every call's request and outcome at `-v=5`, secrets redacted. */
export function callLogInterceptor(logger: Logger): Interceptor {
  const v5 = logger.v(5);
  return (next) => async (req) => {
    if (!v5.enabled || req.stream) return next(req);
    const method = fullName(req);
    v5.info("GRPC call", { method, request: redactMessage(req.method.input, req.message) });
    try {
      const res = await next(req);
      if (!res.stream) {
        v5.info("GRPC response", {
          method,
          response: redactMessage(req.method.output, res.message),
        });
      }
      return res;
    } catch (err) {
      v5.info("GRPC error", { method, err: describeCsiError(err) });
      throw err;
    }
  };
}

/** Calls `onCall` once per finished call; a throwing observer is logged, never fails the call. */
export function callRecordInterceptor(o: {
  clock: Clock;
  logger: Logger;
  onCall: (record: CsiCallRecord) => void;
}): Interceptor {
  return (next) => async (req) => {
    const started = o.clock.now();
    const record = (code: GrpcCodeName) => {
      const method = fullName(req);
      try {
        o.onCall({
          method,
          code,
          durationMs: o.clock.now() - started,
          migrated: req.contextValues.get(MIGRATED_CALL),
        });
      } catch (error) {
        o.logger.warn("CSI call hook failed", { method, err: error });
      }
    };
    try {
      const res = await next(req);
      record("OK");
      return res;
    } catch (err) {
      record(grpcCodeName(toConnectError(err).code));
      throw err;
    }
  };
}

/**
 * Refuses a call whose signal already aborted (with its reason) or whose connection was lost
 * (`Unavailable`, naming the socket), before it reaches the socket.
 */
export function callGuardInterceptor(o: { socketPath: string; lost: () => boolean }): Interceptor {
  return (next) => async (req) => {
    if (req.signal.aborted) throw req.signal.reason;
    if (o.lost()) {
      throw new ConnectError(
        `the connection to the CSI driver at ${o.socketPath} was lost`,
        Code.Unavailable,
      );
    }
    return next(req);
  };
}
