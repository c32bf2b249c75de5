/**
 * metav1.Status bodies, shaped exactly like kube-apiserver's (`kind: Status`, `apiVersion: v1`,
 * `metadata: {}`, `status: Failure`, `message`, `reason`, `details`, `code`), and the error type
 * the server's layers throw to answer with one.
 */
import type { Status } from "../../kube/objects.ts";

type Details = NonNullable<Status["details"]>;
export type Cause = NonNullable<Details["causes"]>[number];

/** A failure answered to the client as a Status body with `status.code` as the HTTP status. */
export class ApiError extends Error {
  readonly status: Status;
  /** Extra response headers (`Retry-After`). */
  readonly headers: Record<string, string>;

  constructor(status: Status, headers: Record<string, string> = {}) {
    super(status.message ?? status.reason ?? "API error");
    this.name = "ApiError";
    this.status = status;
    this.headers = headers;
  }

  get code(): number {
    return this.status.code ?? 500;
  }
}

/** Which resource an error is about: `group` is "" for the core group. */
export interface QualifiedResource {
  group: string;
  plural: string;
}

/** `persistentvolumeclaims` or `storageclasses.storage.k8s.io`, as Kubernetes prints it. */
export function qualifiedName(r: QualifiedResource): string {
  return r.group === "" ? r.plural : `${r.plural}.${r.group}`;
}

export function failure(
  code: number,
  reason: string,
  message: string,
  details?: Details,
  headers?: Record<string, string>,
): ApiError {
  const status: Status = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
  };
  if (details !== undefined) status.details = details;
  status.code = code;
  return new ApiError(status, headers);
}

function resourceDetails(r: QualifiedResource, name: string): Details {
  const d: Details = { name };
  if (r.group !== "") d.group = r.group;
  d.kind = r.plural;
  return d;
}

export function notFound(r: QualifiedResource, name: string): ApiError {
  return failure(
    404,
    "NotFound",
    `${qualifiedName(r)} "${name}" not found`,
    resourceDetails(r, name),
  );
}

export function alreadyExists(r: QualifiedResource, name: string): ApiError {
  return failure(
    409,
    "AlreadyExists",
    `${qualifiedName(r)} "${name}" already exists`,
    resourceDetails(r, name),
  );
}

export const modifiedMessage =
  "the object has been modified; please apply your changes to the latest version and try again";

export function conflict(r: QualifiedResource, name: string, cause = modifiedMessage): ApiError {
  return failure(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualifiedName(r)} "${name}": ${cause}`,
    resourceDetails(r, name),
  );
}

/**
 * 409 Conflict from a failed DELETE precondition: Kubernetes' storage layer names the object by
 * its kind (`StorageClass.storage.k8s.io "x"`, details.kind `StorageClass`), not its resource.
 */
export function preconditionConflict(
  r: { group: string; kind: string },
  name: string,
  cause: string,
): ApiError {
  const label = r.group === "" ? r.kind : `${r.kind}.${r.group}`;
  const d: Details = { name };
  if (r.group !== "") d.group = r.group;
  d.kind = r.kind;
  return failure(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${label} "${name}": ${cause}`,
    d,
  );
}

/**
 * 422 Invalid, one cause per field error, as `field.ErrorList.ToAggregate()` prints them (the
 * message lists each distinct error once; the causes keep duplicates). `label` is how the
 * message names the kind: default `Kind.group` (`StorageClass.storage.k8s.io`), or `Kind` for
 * the core group. `details.name` is left out when the name is empty.
 */
export function invalid(
  group: string,
  kind: string,
  name: string,
  causes: { type: string; field: string; message: string }[],
  label = group === "" ? kind : `${kind}.${group}`,
): ApiError {
  const parts = [...new Set(causes.map((c) => `${c.field}: ${c.message}`))];
  const joined = parts.length === 1 ? parts[0] : `[${parts.join(", ")}]`;
  const details: Details = {};
  if (name !== "") details.name = name;
  if (group !== "") details.group = group;
  if (kind !== "") details.kind = kind;
  // metav1.StatusCause serialises its type as "reason".
  details.causes = causes.map((c) => ({ reason: c.type, message: c.message, field: c.field }));
  return failure(422, "Invalid", `${label} "${name}" is invalid: ${joined}`, details);
}

export function badRequest(message: string): ApiError {
  return failure(400, "BadRequest", message);
}

export function methodNotAllowed(): ApiError {
  return failure(
    405,
    "MethodNotAllowed",
    "the server does not allow this method on the requested resource",
    {},
  );
}

export function pathNotFound(): ApiError {
  return failure(404, "NotFound", "the server could not find the requested resource", {});
}

/** 415 for a body in a format the server does not decode (no details, as kube-apiserver). */
export function unsupportedMediaType(accepted: string[], why?: string): ApiError {
  return failure(
    415,
    "UnsupportedMediaType",
    `the body of the request was in an unknown format - accepted media types include: ${accepted.join(", ")}${why ? ` (${why})` : ""}`,
  );
}

/** 415 for a PATCH whose Content-Type is no patch type, worded as kube-apiserver words it. */
export function unsupportedPatchType(): ApiError {
  return failure(415, "UnsupportedMediaType", "415: Unsupported Media Type", {});
}

export function notAcceptable(accepted: string[]): ApiError {
  return failure(
    406,
    "NotAcceptable",
    `only the following media types are accepted: ${accepted.join(", ")}`,
  );
}

export function expired(message: string): ApiError {
  return failure(410, "Expired", message);
}

export function tooManyRequests(retryAfterSeconds: number): ApiError {
  return failure(
    429,
    "TooManyRequests",
    "Too many requests, please try again later.",
    { retryAfterSeconds },
    { "Retry-After": String(retryAfterSeconds) },
  );
}

export function internalError(message: string): ApiError {
  return failure(500, "InternalError", `Internal error occurred: ${message}`, {
    causes: [{ message }],
  });
}

/** The reason Kubernetes gives a Status with this HTTP code when nothing more specific fits. */
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
      return "Expired";
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
      return code >= 500 ? "InternalError" : "BadRequest";
  }
}
