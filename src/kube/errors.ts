/**
 * The one error type of the Kubernetes API layer. An answer from the API server (kind `"api"`) is
 * built from its metav1.Status body, or from the HTTP status alone when the body is not a Status;
 * a failure to get an answer at all (connection refused, TLS, reset, credentials plugin) is kind
 * `"transport"` with `status` 0. The transport converts once, at the edge; everything above it
 * classifies errors only through the predicates here, which follow client-go's
 * `k8s.io/apimachinery/pkg/api/errors` (a reason wins; the HTTP code decides when the reason is
 * unknown).
 *
 * An aborted call rejects with the signal's reason, not with a `KubeApiError`.
 */
import type { Status } from "./objects.ts";

export type KubeErrorKind = "api" | "transport";

/** Status details as the API server sends them (`causes`, `retryAfterSeconds`, ...). */
export type StatusDetails = NonNullable<Status["details"]>;

export interface KubeApiErrorInit {
  kind: KubeErrorKind;
  /** HTTP status code; 0 for transport failures. */
  status: number;
  /** metav1.StatusReason (`NotFound`, `Conflict`, ...); "" when unknown. */
  reason: string;
  /** The Kubernetes verb: get, list, watch, create, update, patch, delete. */
  verb: string;
  /** What was addressed: `persistentvolumeclaims ns/name`, or the request path. */
  target: string;
  /** The server's message, or the transport failure's. */
  detail: string;
  details?: StatusDetails;
  retryAfterSeconds?: number;
  cause?: unknown;
}

export class KubeApiError extends Error {
  override readonly name = "KubeApiError";
  readonly kind: KubeErrorKind;
  /** HTTP status code; 0 for transport failures. */
  readonly status: number;
  /** metav1.StatusReason; "" when the server gave none. */
  readonly reason: string;
  readonly verb: string;
  readonly target: string;
  readonly details: StatusDetails | undefined;
  /** From the Status details or the `Retry-After` header. */
  readonly retryAfterSeconds: number | undefined;

  constructor(init: KubeApiErrorInit) {
    const verb = init.verb.charAt(0).toUpperCase() + init.verb.slice(1);
    const code =
      init.kind === "api" ? ` ${[init.status, init.reason].filter(Boolean).join(" ")}:` : "";
    super(`${verb} ${init.target}:${code} ${init.detail}`, { cause: init.cause });
    this.kind = init.kind;
    this.status = init.status;
    this.reason = init.reason;
    this.verb = init.verb;
    this.target = init.target;
    this.details = init.details;
    this.retryAfterSeconds = init.retryAfterSeconds;
  }

  /**
   * Builds the error for a non-2xx answer. `body` is the parsed JSON body (a metav1.Status when
   * the API server produced it) or the raw text; `retryAfter` the `Retry-After` header.
   */
  static fromResponse(opts: {
    verb: string;
    target: string;
    status: number;
    body: unknown;
    retryAfter?: string | undefined;
  }): KubeApiError {
    const { status, body } = opts;
    const st = isStatus(body) ? body : undefined;
    const reason = st?.reason || reasonForCode(status);
    let detail: string;
    if (st?.message) detail = st.message;
    else if (typeof body === "string" && body.trim() !== "") detail = truncate(body.trim(), 300);
    else if (body !== undefined && st === undefined) detail = truncate(JSON.stringify(body), 300);
    else detail = `the server responded with HTTP ${status}`;
    const header = parseRetryAfter(opts.retryAfter);
    const fromDetails = st?.details?.retryAfterSeconds;
    return new KubeApiError({
      kind: "api",
      status: st?.code || status,
      reason,
      verb: opts.verb,
      target: opts.target,
      detail,
      details: st?.details,
      retryAfterSeconds: fromDetails !== undefined && fromDetails > 0 ? fromDetails : header,
    });
  }

  /** Builds the error for a request that got no answer. */
  static transport(opts: { verb: string; target: string; cause: unknown }): KubeApiError {
    const c = opts.cause;
    const detail = c instanceof Error ? c.message || c.name : String(c);
    return new KubeApiError({
      kind: "transport",
      status: 0,
      reason: "",
      verb: opts.verb,
      target: opts.target,
      detail,
      cause: c,
    });
  }

  /**
   * Builds the error for an ERROR event inside a watch stream (its object is a Status), so a
   * reflector can classify it with the same predicates.
   */
  static fromStatus(verb: string, target: string, st: Status): KubeApiError {
    return KubeApiError.fromResponse({ verb, target, status: st.code ?? 500, body: st });
  }
}

function isStatus(v: unknown): v is Status {
  return (
    typeof v === "object" &&
    v !== null &&
    (v as { kind?: unknown }).kind === "Status" &&
    !Array.isArray(v)
  );
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

/** Seconds from a `Retry-After` header (delta-seconds form only, as the API server sends). */
export function parseRetryAfter(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const t = v.trim();
  if (!/^\d+$/.test(t)) return undefined;
  const n = Number(t);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The reason client-go assumes when the body carries none. */
export function reasonForCode(code: number): string {
  switch (code) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 406:
      return "NotAcceptable";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 413:
      return "RequestEntityTooLarge";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "Invalid";
    case 429:
      return "TooManyRequests";
    case 500:
      return "InternalError";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "Timeout";
    default:
      return "";
  }
}

function apiError(err: unknown): KubeApiError | undefined {
  return err instanceof KubeApiError && err.kind === "api" ? err : undefined;
}

/** metav1.StatusReason values client-go knows; any other reason lets the HTTP code decide. */
const KNOWN_REASONS = new Set([
  "Unauthorized",
  "Forbidden",
  "NotFound",
  "AlreadyExists",
  "Conflict",
  "Gone",
  "Invalid",
  "ServerTimeout",
  "StoreReadError",
  "Timeout",
  "TooManyRequests",
  "BadRequest",
  "MethodNotAllowed",
  "NotAcceptable",
  "RequestEntityTooLarge",
  "UnsupportedMediaType",
  "InternalError",
  "Expired",
  "ServiceUnavailable",
]);

/** True when the reason is `reason`, or the reason is not a known one and the code is `code`. */
function matches(err: unknown, reason: string, code?: number): boolean {
  const e = apiError(err);
  if (!e) return false;
  if (e.reason === reason) return true;
  return code !== undefined && !KNOWN_REASONS.has(e.reason) && e.status === code;
}

export function isKubeApiError(err: unknown): err is KubeApiError {
  return err instanceof KubeApiError;
}

/** The request got no answer (network, TLS, credentials). */
export function isTransport(err: unknown): boolean {
  return err instanceof KubeApiError && err.kind === "transport";
}

export function isNotFound(err: unknown): boolean {
  return matches(err, "NotFound", 404);
}

/** 409 with reason AlreadyExists: a create whose name is taken. */
export function isAlreadyExists(err: unknown): boolean {
  return matches(err, "AlreadyExists");
}

/** 409 Conflict: a write with a stale resourceVersion (not AlreadyExists). */
export function isConflict(err: unknown): boolean {
  return matches(err, "Conflict", 409);
}

/** 410 Gone, or reason Expired: the resourceVersion or continue token is too old; relist. */
export function isGone(err: unknown): boolean {
  return matches(err, "Gone", 410) || matches(err, "Expired");
}

export function isForbidden(err: unknown): boolean {
  return matches(err, "Forbidden", 403);
}

export function isUnauthorized(err: unknown): boolean {
  return matches(err, "Unauthorized", 401);
}

/** 422 Invalid: the object failed validation; `details.causes` names the fields. */
export function isInvalid(err: unknown): boolean {
  return matches(err, "Invalid", 422);
}

export function isBadRequest(err: unknown): boolean {
  return matches(err, "BadRequest", 400);
}

/** 429: throttled by API priority and fairness; `retryAfterSeconds` says when to come back. */
export function isTooManyRequests(err: unknown): boolean {
  return matches(err, "TooManyRequests", 429);
}

/** Reason ServerTimeout: the server could not finish in time; retry. */
export function isServerTimeout(err: unknown): boolean {
  return matches(err, "ServerTimeout");
}

/** Reason Timeout or HTTP 504: the request timed out at the server. */
export function isTimeout(err: unknown): boolean {
  return matches(err, "Timeout", 504);
}

export function isInternalError(err: unknown): boolean {
  return matches(err, "InternalError", 500);
}
