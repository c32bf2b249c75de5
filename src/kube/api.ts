/**
 * The typed Kubernetes API as the rest of the program sees it. Implemented over HTTP by
 * `client.ts`; every failure is a `KubeApiError` (see `errors.ts`).
 */
import type { KubeList, KubeObject, WatchEvent } from "./objects.ts";
import type { Priority } from "./ratelimit.ts";
import type { Resource } from "./resources.ts";

export type PatchType = "merge" | "strategic" | "json";

export interface CallOptions {
  signal?: AbortSignal;
  /** Place in the client-side rate limiter's lines (see `Priority`); default `"normal"`. */
  priority?: Priority;
  /** Once this aborts, the request goes ahead of every other one waiting for the rate limiter. */
  expedite?: AbortSignal;
  /** Told how long the request waited for the client-side rate limiter, in ms (each try). */
  onThrottled?: (ms: number) => void;
}

export interface ListOptions extends CallOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continue?: string;
  resourceVersion?: string;
  resourceVersionMatch?: "Exact" | "NotOlderThan";
}

export interface WatchOptions extends CallOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  resourceVersion?: string;
  allowWatchBookmarks?: boolean;
  timeoutSeconds?: number;
  /**
   * A streaming list ("watch-list"): the stream first carries every current object as ADDED,
   * then a BOOKMARK annotated `k8s.io/initial-events-end`, then the changes. Needs
   * `resourceVersionMatch: "NotOlderThan"`.
   */
  sendInitialEvents?: boolean;
  resourceVersionMatch?: "NotOlderThan";
  /** Told about every stream line that is not a watch event (it is skipped, never fatal). */
  onMalformedLine?: (info: { line: string; error: string }) => void;
}

export interface DeleteOptions extends CallOptions {
  /** Precondition: delete only the object with this UID. */
  uid?: string;
  /** Precondition: delete only at this resourceVersion. */
  resourceVersion?: string;
  propagationPolicy?: "Orphan" | "Background" | "Foreground";
}

export interface WriteOptions extends CallOptions {
  /** Server-side dry run. */
  dryRun?: boolean;
  fieldManager?: string;
}

/**
 * For a write whose answer the caller does not read: the answer is drained without being parsed
 * and the call resolves to undefined. A burst's PV creates, events, finalizer patches and deletes
 * all answer with the whole object, and parsing answers nobody reads cost ~3 % of the sidecar's
 * JavaScript thread (bench/README.md).
 */
export interface DiscardResult {
  discardResult: true;
}

/**
 * For create and update: called when the request has its rate-limiter token, just before it is
 * sent (again on every retry); the object it returns is sent instead of `obj`. A writer that
 * group-commits (the intent journal) folds in what arrived while the request waited its turn.
 */
export interface LatestOption<T> {
  latest?: () => T;
}

/**
 * A watch stream: async-iterates decoded events; ends when the server closes the stream or the
 * signal aborts. Transport failures surface as a thrown `KubeApiError`.
 */
export type WatchStream<T extends KubeObject> = AsyncIterable<WatchEvent<T>>;

export interface ResourceClient<T extends KubeObject> {
  readonly resource: Resource<T>;
  get(name: string, namespace?: string, opts?: CallOptions): Promise<T>;
  list(opts?: ListOptions): Promise<KubeList<T>>;
  watch(opts?: WatchOptions): Promise<WatchStream<T>>;
  create(obj: T, opts: WriteOptions & LatestOption<T> & DiscardResult): Promise<T | undefined>;
  create(obj: T, opts?: WriteOptions & LatestOption<T>): Promise<T>;
  /** PUT of the whole object; 409 Conflict when its resourceVersion is stale. */
  update(obj: T, opts?: WriteOptions & LatestOption<T>): Promise<T>;
  /** PUT to the status subresource. */
  updateStatus(obj: T, opts?: WriteOptions): Promise<T>;
  patch(
    name: string,
    type: PatchType,
    patch: unknown,
    namespace: string | undefined,
    opts: WriteOptions & { subresource?: string } & DiscardResult,
  ): Promise<T | undefined>;
  patch(
    name: string,
    type: PatchType,
    patch: unknown,
    namespace?: string,
    opts?: WriteOptions & { subresource?: string },
  ): Promise<T>;
  delete(name: string, namespace?: string, opts?: DeleteOptions): Promise<void>;
}

/** Factory of typed clients, one per resource. */
export interface KubeApi {
  resource<T extends KubeObject>(r: Resource<T>): ResourceClient<T>;
}
