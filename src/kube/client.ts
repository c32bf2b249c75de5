/**
 * The typed API ({@link KubeApi} / {@link ResourceClient} from `api.ts`) over a
 * {@link KubeTransport}: REST paths from `resources.ts`, query parameters, patch content types,
 * DeleteOptions. One transport per rate-limit budget; `createKubeApi` per transport.
 *
 * Objects are passed through as JSON: list items come back as the server sends them (without
 * `apiVersion` / `kind`); `create` fills in `apiVersion` and `kind` when the object lacks them.
 * Watch events are yielded as decoded, ERROR events included (their object is a metav1.Status;
 * `KubeApiError.fromStatus` turns one into an error); lines that are not `{type, object}` are
 * reported as malformed by the transport.
 */
import type {
  CallOptions,
  DeleteOptions,
  DiscardResult,
  KubeApi,
  LatestOption,
  ListOptions,
  PatchType,
  ResourceClient,
  WatchOptions,
  WatchStream,
  WriteOptions,
} from "./api.ts";
import type { KubeList, KubeObject, WatchEvent } from "./objects.ts";
import { apiVersionOf, type Resource, resourcePath } from "./resources.ts";
import type { KubeTransport } from "./transport.ts";

/** Content-Type of each patch type. */
export const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  merge: "application/merge-patch+json",
  strategic: "application/strategic-merge-patch+json",
  json: "application/json-patch+json",
};

/** A KubeApi whose calls go through `transport` (and its rate limiter). */
export function createKubeApi(transport: KubeTransport): KubeApi {
  const clients = new Map<Resource, ResourceClient<KubeObject>>();
  return {
    resource<T extends KubeObject>(r: Resource<T>): ResourceClient<T> {
      let c = clients.get(r as Resource);
      if (!c) {
        c = new HttpResourceClient<KubeObject>(transport, r as Resource);
        clients.set(r as Resource, c);
      }
      return c as unknown as ResourceClient<T>;
    },
  };
}

function isWatchEvent(v: unknown): boolean {
  if (typeof v !== "object" || v === null) return false;
  const e = v as { type?: unknown; object?: unknown };
  return typeof e.type === "string" && typeof e.object === "object" && e.object !== null;
}

function writeQuery(opts: WriteOptions | undefined): Record<string, string | undefined> {
  return {
    dryRun: opts?.dryRun ? "All" : undefined,
    fieldManager: opts?.fieldManager,
  };
}

class HttpResourceClient<T extends KubeObject> implements ResourceClient<T> {
  readonly resource: Resource<T>;
  #t: KubeTransport;

  constructor(transport: KubeTransport, resource: Resource<T>) {
    this.#t = transport;
    this.resource = resource;
  }

  /** `persistentvolumeclaims ns/name`, or `persistentvolumes name`. */
  #target(name: string, namespace?: string, sub?: string): string {
    const r = this.resource;
    const t =
      r.namespaced && namespace ? `${r.plural} ${namespace}/${name}` : `${r.plural} ${name}`;
    return sub ? `${t} (${sub})` : t;
  }

  #collectionTarget(namespace?: string): string {
    const r = this.resource;
    return r.namespaced && namespace ? `${r.plural} in namespace ${namespace}` : r.plural;
  }

  /** Namespaced objects need a namespace; cluster-scoped ones ignore it. */
  #objectPath(verb: string, name: string, namespace?: string, sub?: string): string {
    const r = this.resource;
    if (!name) throw new TypeError(`Cannot ${verb} ${r.plural}: the name is empty`);
    if (r.namespaced && !namespace) {
      throw new TypeError(`Cannot ${verb} ${r.plural} ${name}: a namespace is required`);
    }
    return resourcePath(r, r.namespaced ? namespace : undefined, name, sub);
  }

  async get(name: string, namespace?: string, opts?: CallOptions): Promise<T> {
    const res = await this.#t.request<T>({
      method: "GET",
      path: this.#objectPath("get", name, namespace),
      signal: opts?.signal,
      priority: opts?.priority,
      expedite: opts?.expedite,
      onThrottled: opts?.onThrottled,
      verb: "get",
      target: this.#target(name, namespace),
    });
    return res.json;
  }

  async list(opts?: ListOptions): Promise<KubeList<T>> {
    const res = await this.#t.request<KubeList<T>>({
      method: "GET",
      path: resourcePath(this.resource, opts?.namespace),
      query: {
        labelSelector: opts?.labelSelector,
        fieldSelector: opts?.fieldSelector,
        limit: opts?.limit,
        continue: opts?.continue,
        resourceVersion: opts?.resourceVersion,
        resourceVersionMatch: opts?.resourceVersionMatch,
      },
      signal: opts?.signal,
      priority: opts?.priority,
      expedite: opts?.expedite,
      onThrottled: opts?.onThrottled,
      verb: "list",
      target: this.#collectionTarget(opts?.namespace),
    });
    const list = (res.json ?? {}) as KubeList<T>;
    list.metadata ??= {};
    list.items ??= [];
    return list;
  }

  async watch(opts?: WatchOptions): Promise<WatchStream<T>> {
    return this.#t.stream<WatchEvent<T>>({
      method: "GET",
      path: resourcePath(this.resource, opts?.namespace),
      query: {
        watch: "true",
        labelSelector: opts?.labelSelector,
        fieldSelector: opts?.fieldSelector,
        resourceVersion: opts?.resourceVersion,
        allowWatchBookmarks: opts?.allowWatchBookmarks ? "true" : undefined,
        sendInitialEvents: opts?.sendInitialEvents ? "true" : undefined,
        resourceVersionMatch: opts?.resourceVersionMatch,
        timeoutSeconds: opts?.timeoutSeconds,
      },
      signal: opts?.signal,
      priority: opts?.priority,
      expedite: opts?.expedite,
      onThrottled: opts?.onThrottled,
      verb: "watch",
      target: this.#collectionTarget(opts?.namespace),
      check: isWatchEvent,
      onMalformedLine: opts?.onMalformedLine,
    });
  }

  // One signature for both of ResourceClient's overloads: with `discardResult` the answer's
  // `json` is undefined, which only the interface's first overload promises its callers.
  async create(obj: T, opts?: WriteOptions & LatestOption<T> & Partial<DiscardResult>): Promise<T> {
    const r = this.resource;
    const ns = obj.metadata?.namespace;
    const label = obj.metadata?.name ?? `${obj.metadata?.generateName ?? ""}*`;
    if (r.namespaced && !ns) {
      throw new TypeError(`Cannot create ${r.plural} ${label}: metadata.namespace is required`);
    }
    const typed = (o: T) => ({
      ...o,
      apiVersion: o.apiVersion ?? apiVersionOf(r),
      kind: o.kind ?? r.kind,
    });
    const latest = opts?.latest;
    const res = await this.#t.request<T>({
      method: "POST",
      path: resourcePath(r, r.namespaced ? ns : undefined),
      query: writeQuery(opts),
      body: typed(obj),
      bodyAtSend: latest && (() => typed(latest())),
      signal: opts?.signal,
      priority: opts?.priority,
      expedite: opts?.expedite,
      onThrottled: opts?.onThrottled,
      verb: "create",
      target: this.#target(label, ns),
      discardBody: opts?.discardResult,
    });
    return res.json;
  }

  update(obj: T, opts?: WriteOptions & LatestOption<T>): Promise<T> {
    return this.#put(obj, undefined, opts);
  }

  updateStatus(obj: T, opts?: WriteOptions): Promise<T> {
    return this.#put(obj, "status", opts);
  }

  async #put(obj: T, sub: string | undefined, opts?: WriteOptions & LatestOption<T>): Promise<T> {
    const r = this.resource;
    const { name = "", namespace } = obj.metadata ?? {};
    const typed = (o: T) => ({
      ...o,
      apiVersion: o.apiVersion ?? apiVersionOf(r),
      kind: o.kind ?? r.kind,
    });
    const latest = opts?.latest;
    const res = await this.#t.request<T>({
      method: "PUT",
      path: this.#objectPath("update", name, namespace, sub),
      query: writeQuery(opts),
      body: typed(obj),
      bodyAtSend: latest && (() => typed(latest())),
      signal: opts?.signal,
      priority: opts?.priority,
      expedite: opts?.expedite,
      onThrottled: opts?.onThrottled,
      verb: "update",
      target: this.#target(name, namespace, sub),
    });
    return res.json;
  }

  async patch(
    name: string,
    type: PatchType,
    patch: unknown,
    namespace?: string,
    opts?: WriteOptions & { subresource?: string } & Partial<DiscardResult>,
  ): Promise<T> {
    const contentType = PATCH_CONTENT_TYPES[type];
    if (contentType === undefined) throw new TypeError(`Unknown patch type ${String(type)}`);
    const res = await this.#t.request<T>({
      method: "PATCH",
      path: this.#objectPath("patch", name, namespace, opts?.subresource),
      query: writeQuery(opts),
      body: patch,
      contentType,
      signal: opts?.signal,
      priority: opts?.priority,
      expedite: opts?.expedite,
      onThrottled: opts?.onThrottled,
      verb: "patch",
      target: this.#target(name, namespace, opts?.subresource),
      discardBody: opts?.discardResult,
    });
    return res.json;
  }

  async delete(name: string, namespace?: string, opts?: DeleteOptions): Promise<void> {
    const body: Record<string, unknown> = { apiVersion: "v1", kind: "DeleteOptions" };
    if (opts?.uid !== undefined || opts?.resourceVersion !== undefined) {
      const preconditions: Record<string, string> = {};
      if (opts.uid !== undefined) preconditions.uid = opts.uid;
      if (opts.resourceVersion !== undefined) preconditions.resourceVersion = opts.resourceVersion;
      body.preconditions = preconditions;
    }
    if (opts?.propagationPolicy !== undefined) body.propagationPolicy = opts.propagationPolicy;
    await this.#t.request({
      method: "DELETE",
      path: this.#objectPath("delete", name, namespace),
      body,
      signal: opts?.signal,
      priority: opts?.priority,
      expedite: opts?.expedite,
      onThrottled: opts?.onThrottled,
      verb: "delete",
      target: this.#target(name, namespace),
      // The answer (the object or a Status) is not used.
      discardBody: true,
    });
  }
}
