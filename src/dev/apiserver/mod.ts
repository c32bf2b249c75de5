/**
 * An in-process Kubernetes API server on loopback, speaking the REST and watch protocol (JSON)
 * for the resources the provisioner touches, plus namespaces, pods (empty, for `kubectl
 * describe`) and core v1 events (a view of events.k8s.io/v1). Controllers are tested against it
 * over real HTTP; `kubectl` works against it (the dev mode's embedded API).
 *
 * ```ts
 * const api = await startApiServer({ clock });
 * await fetch(`${api.url}/api/v1/persistentvolumes`);
 * api.failNext({ verb: "create", resource: "persistentvolumes", status: 500 });
 * api.writes.count({ verb: "create", resource: resources.persistentVolumes });
 * await api.close();
 * ```
 *
 * Behaviour worth knowing (each checked against Kubernetes; `test/e2e/apiserver-conformance.test.ts`
 * runs the same calls against a real kube-apiserver and compares the answers):
 * - One global resourceVersion counter (decimal strings); a bounded history of changes serves
 *   watch resumption and paginated lists at a consistent resourceVersion. Older versions are
 *   "compacted": a list continue answers HTTP 410 (reason Expired), a watch answers 200 with an
 *   in-band ERROR event carrying a 410 Status, then ends.
 * - Watch with resourceVersion unset or "0" starts with synthetic ADDED events for every
 *   matching object; with a resourceVersion it replays the changes after it.
 *   `sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan`) ends the initial events
 *   with a BOOKMARK annotated `k8s.io/initial-events-end`.
 * - An object leaving a watch's selector is sent as DELETED (its previous state), one entering
 *   it as ADDED.
 * - Create resets status for resources with a status subresource (PV and PVC then get
 *   `status.phase: Pending`), applies Kubernetes' defaults (PV reclaim policy Retain, volume
 *   mode Filesystem, StorageClass reclaim policy Delete and binding mode Immediate, Secret type
 *   Opaque). Updates to the main resource keep the stored status. A `/status` write keeps the
 *   stored spec; for PV, PVC, Node and Namespace it saves the metadata sent with it, for custom
 *   resources and VolumeAttachment it keeps the stored metadata too. Use `put()` to seed objects
 *   exactly as given.
 * - As the Go decoder does: quantities come back canonical (`1024Mi` → `1Gi`), times in UTC
 *   (`metav1.Time` to the second; `metav1.MicroTime` must have six fractional digits), unset
 *   non-pointer times as `null` (events, conditions), empty labels, annotations and finalizers
 *   are left out. A malformed quantity or time answers 400 (422 when a patch produced it).
 * - Immutable fields answer 422: a claim's spec (but a first `volumeName`), a volume's source
 *   and volume mode, a class's provisioner, parameters, reclaim policy and binding mode.
 * - Lists of built-in kinds carry items without `apiVersion` and `kind` (custom resources keep
 *   them, and an empty `continue`); watch events carry them.
 * - DELETE of an object with finalizers sets `deletionTimestamp` and answers the object; the
 *   update that removes the last finalizer deletes it and answers the updated object (the watch
 *   sees DELETED with the last stored state). DELETE answers the deleted object (as PV, PVC and
 *   most built-ins do). `propagationPolicy` is ignored (no garbage collector). Deleting a
 *   namespace deletes its objects at once.
 * - An update that changes nothing writes nothing (no new resourceVersion, no event).
 * - Strategic merge patch follows the Go struct tags for the fields the provisioner uses:
 *   `metadata.finalizers` is merged (`patchStrategy:"merge"`), not replaced, and merged lists
 *   are ordered as Kubernetes orders them (new elements first); custom resources (snapshots)
 *   answer 415 to it, as in Kubernetes. A JSON patch that does not apply answers 422 with
 *   Kubernetes' generic message. Server-side apply answers 415 (Kubernetes applies it).
 * - Label selectors are parsed by a port of Kubernetes' grammar, with its error messages.
 * - No admission plugins and no controllers: volumes and claims get no `pv-protection` /
 *   `pvc-protection` finalizers, claims are not bound, volumes stay `Pending`.
 */
import type { KubeObject } from "../../kube/objects.ts";
import type { Resource } from "../../kube/resources.ts";
import { nodeTextFiles } from "../../runtime/files.ts";
import { serve } from "../../runtime/serve.ts";
import { type Clock, type Random, systemClock } from "../../util/clock.ts";
import { type Logger, nullLogger } from "../../util/log.ts";
import { createHandler, type VersionInfo } from "./handler.ts";
import { namespacesResource, servedFor, servedForObject, servedResources } from "./kinds.ts";
import { Persister, parseState, type StateFiles } from "./persist.ts";
import { Registry, uuidFrom } from "./registry.ts";
import { RequestCounter, type RequestHook } from "./requests.ts";
import { keyOf, VersionedStore } from "./store.ts";
import type { WatchSession } from "./watch.ts";

export type { VersionInfo } from "./handler.ts";
export { coreEventsResource, namespacesResource, podsResource } from "./kinds.ts";
export type { StateFiles } from "./persist.ts";
export type { CountQuery, RequestHook, RequestInfo, RequestVerdict } from "./requests.ts";
export { RequestCounter } from "./requests.ts";

export interface ApiServerOptions {
  /** Time for creationTimestamp, deletionTimestamp, watch timeouts, bookmarks, latency and persistence debounce; default the system clock. */
  clock?: Clock;
  /** Randomness for generateName suffixes (and UIDs unless `uid` is given); default `Math.random`. */
  random?: Random;
  /** Generates `metadata.uid`; default a version-4 UUID from `random`. */
  uid?: () => string;
  /** Interface to listen on; default `127.0.0.1`. */
  hostname?: string;
  /** TCP port; default 0 (any free port). */
  port?: number;
  /** Serve HTTPS with this PEM certificate and key; default plain HTTP. */
  tls?: { cert: string; key: string };
  /** Closes the server when aborted. */
  signal?: AbortSignal;
  /** Changes kept for watch resumption and consistent pagination; default 10000. */
  historyLimit?: number;
  /** Period of BOOKMARK events on watches that allow them; default 60000 ms; 0 turns them off (`bookmark()` still sends one). */
  bookmarkIntervalMs?: number;
  /** How long a watch without `timeoutSeconds` (or with 0) stays open; default 1800 s; 0 without end. */
  watchTimeoutSeconds?: number;
  /** Answer 400 to field selectors a resource does not support, as Kubernetes does; default true. */
  strictFieldSelectors?: boolean;
  /** Namespaces that exist at start (when no saved state is loaded); default `default`, `kube-system`, `kube-public`, `kube-node-lease`. */
  namespaces?: string[];
  /** Objects stored at start through `put()` (needs `apiVersion` and `kind`). */
  objects?: KubeObject[];
  /** Directory keeping the state across restarts (`state.json`); default none (in memory). */
  dataDir?: string;
  /** File access for `dataDir`; default the local file system (`src/runtime/files.ts`). */
  files?: StateFiles & { join?(...parts: string[]): string };
  /** Delay between a change and the write that saves it; default 100 ms. */
  persistDebounceMs?: number;
  /** What `/version` reports; default Kubernetes v1.36.0. */
  version?: VersionInfo;
  /** Logs failures inside the server; default silent. */
  logger?: Logger;
  /** Sees each request first and may delay or fail it (the tests' fault injection); default none. */
  onRequest?: RequestHook;
}

export interface ApiServer {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly port: number;
  /** The latest resourceVersion (a decimal string). */
  readonly resourceVersion: string;
  /** Mutating requests (create, update, patch, delete, deletecollection) as received, failed ones included. */
  readonly writes: RequestCounter;
  /** Every request as received, by verb (get, list, watch, …) and resource. */
  readonly requests: RequestCounter;
  /** Number of open watch streams. */
  readonly openWatches: number;
  /** A kubeconfig (YAML) pointing at this server, for kubectl and client loaders. */
  kubeconfig(opts?: { namespace?: string; name?: string }): string;
  /** Copies of the stored objects of a resource, sorted by namespace and name. */
  objects<T extends KubeObject>(resource: Resource<T>, namespace?: string): T[];
  /** A copy of one object (namespace default `default`), or undefined. */
  get<T extends KubeObject>(resource: Resource<T>, name: string, namespace?: string): T | undefined;
  /**
   * Stores an object as given (no defaults, no validation, no namespace check), creating or
   * replacing it; fills in uid, creationTimestamp and namespace `default` when missing.
   * The resource comes from `apiVersion` and `kind` unless given. Watches see the change.
   */
  put<T extends KubeObject>(obj: T, resource?: Resource<T>): T;
  /** Deletes an object at once, ignoring finalizers; returns whether it existed. */
  remove(resource: Resource, name: string, namespace?: string): boolean;
  /** Resolves with `check()`'s first truthy value, checked now and after every change. */
  waitFor<R>(
    check: () => R | undefined | null | false,
    opts?: { signal?: AbortSignal },
  ): Promise<R>;
  /**
   * Resolves once exactly `count` watch streams are open (checked now and whenever one opens or
   * ends): lets a test wait until a client has (re-)established its watch.
   */
  waitForWatches(count: number, opts?: { signal?: AbortSignal }): Promise<void>;
  /** Ends every open watch: abruptly (connection cut) by default, or cleanly. Returns how many. */
  dropWatches(opts?: { graceful?: boolean }): number;
  /** Sends a BOOKMARK now on every watch that allows them; returns how many. */
  bookmark(): number;
  /** Drops the change history: older resourceVersions answer 410 Gone. */
  compact(): void;
  /** Writes pending state to `dataDir` now. */
  flush(): Promise<void>;
  /** Ends open watches cleanly, saves the state, frees the port. */
  close(): Promise<void>;
}

/** The open watches; tells a listener whenever one opens or ends. */
class WatchSet extends Set<WatchSession> {
  readonly #onChange: () => void;
  constructor(onChange: () => void) {
    super();
    this.#onChange = onChange;
  }
  override add(w: WatchSession): this {
    super.add(w);
    this.#onChange?.();
    return this;
  }
  override delete(w: WatchSession): boolean {
    const had = super.delete(w);
    if (had) this.#onChange();
    return had;
  }
}

const defaultNamespaces = ["default", "kube-system", "kube-public", "kube-node-lease"];

function yamlString(s: string): string {
  return JSON.stringify(s);
}

/** A kubeconfig for the server at `url` (no credentials; TLS not verified when `tls`). */
function kubeconfigYaml(
  url: string,
  tls: boolean,
  o: { name?: string; namespace?: string },
): string {
  const name = o.name ?? "csi-provisioner-dev";
  const lines = [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: ${yamlString(name)}`,
    "  cluster:",
    `    server: ${yamlString(url)}`,
  ];
  if (tls) lines.push("    insecure-skip-tls-verify: true");
  lines.push(
    "contexts:",
    `- name: ${yamlString(name)}`,
    "  context:",
    `    cluster: ${yamlString(name)}`,
    `    user: ${yamlString(name)}`,
    `    namespace: ${yamlString(o.namespace ?? "default")}`,
    `current-context: ${yamlString(name)}`,
    "preferences: {}",
    "users:",
    `- name: ${yamlString(name)}`,
    "  user: {}",
    "",
  );
  return lines.join("\n");
}

/**
 * The first truthy `check()`: now, or after one of the notifications `subscribe` delivers.
 * Rejects when `check` throws or `signal` aborts.
 */
function waitUntil<R>(
  subscribe: (listener: () => void) => () => void,
  check: () => R | undefined | null | false,
  signal?: AbortSignal,
): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    const first = check();
    if (first) {
      resolve(first);
      return;
    }
    const done = () => {
      unsubscribe();
      signal?.removeEventListener("abort", onAbort);
    };
    const onAbort = () => {
      done();
      reject(signal?.reason ?? new Error("Wait aborted"));
    };
    const unsubscribe = subscribe(() => {
      let v: R | undefined | null | false;
      try {
        v = check();
      } catch (err) {
        done();
        reject(err);
        return;
      }
      if (v) {
        done();
        resolve(v);
      }
    });
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Starts the server; resolves once it listens. */
export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const clock = opts.clock ?? systemClock;
  const random = opts.random ?? Math.random;
  const logger = opts.logger ?? nullLogger;
  const store = new VersionedStore(opts.historyLimit ?? 10_000);
  const registry = new Registry({
    store,
    clock,
    random,
    uid: opts.uid ?? uuidFrom(random),
    strictFieldSelectors: opts.strictFieldSelectors,
  });
  const requests = new RequestCounter();
  const writes = new RequestCounter();
  const watchListeners = new Set<() => void>();
  const watches = new WatchSet(() => {
    for (const l of [...watchListeners]) l();
  });

  const files = opts.files ?? nodeTextFiles;
  let persister: Persister | undefined;
  let loaded = false;
  if (opts.dataDir !== undefined) {
    const path = files.join ? files.join(opts.dataDir, "state.json") : `${opts.dataDir}/state.json`;
    const text = await files.read(path);
    if (text !== undefined) {
      const state = parseState(text, path);
      store.load(state, (bucket, obj) => {
        const res = servedResources.find((r) => r.bucket === bucket);
        return keyOf(
          (res?.namespaced ?? true) ? obj.metadata.namespace : undefined,
          obj.metadata.name!,
        );
      });
      loaded = true;
    }
    persister = new Persister({
      store,
      files,
      path,
      clock,
      debounceMs: opts.persistDebounceMs ?? 100,
      logger,
    });
  }
  const nsRes = servedFor(namespacesResource);
  const wanted = loaded ? ["default"] : (opts.namespaces ?? defaultNamespaces);
  for (const ns of wanted) {
    if (!store.get(nsRes.bucket, ns)) registry.create(nsRes, undefined, { metadata: { name: ns } });
  }

  const resolve = (obj: KubeObject, resource?: Resource) => {
    if (resource) return servedFor(resource);
    const res = servedForObject(obj);
    if (!res)
      throw new Error(`Unknown apiVersion and kind: ${String(obj.apiVersion)} ${String(obj.kind)}`);
    return res;
  };
  for (const obj of opts.objects ?? []) registry.put(resolve(obj), obj);

  const handler = createHandler({
    registry,
    clock,
    onRequest: opts.onRequest,
    requests,
    writes,
    watches,
    bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 60_000,
    defaultWatchTimeoutSeconds: opts.watchTimeoutSeconds ?? 1800,
    version: opts.version ?? { major: "1", minor: "36", gitVersion: "v1.36.0" },
    logger,
  });
  const server = await serve(handler, { hostname: opts.hostname, port: opts.port, tls: opts.tls });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      for (const w of [...watches]) w.end();
      await server.close();
      await persister?.close();
    })();
    return closing;
  };
  if (opts.signal) {
    if (opts.signal.aborted) void close();
    else opts.signal.addEventListener("abort", () => void close(), { once: true });
  }

  const api: ApiServer = {
    url: server.url,
    port: server.port,
    get resourceVersion() {
      return String(store.resourceVersion);
    },
    writes,
    requests,
    get openWatches() {
      return watches.size;
    },
    kubeconfig: (o = {}) => kubeconfigYaml(server.url, Boolean(opts.tls), o),
    objects<T extends KubeObject>(resource: Resource<T>, namespace?: string): T[] {
      const res = servedFor(resource);
      return store
        .entries(res.bucket)
        .filter(([key]) => !namespace || !res.namespaced || key.startsWith(`${namespace}/`))
        .map(([, o]) => registry.present(res, o) as T);
    },
    get<T extends KubeObject>(
      resource: Resource<T>,
      name: string,
      namespace?: string,
    ): T | undefined {
      const res = servedFor(resource);
      const stored = store.get(
        res.bucket,
        keyOf(res.namespaced ? (namespace ?? "default") : undefined, name),
      );
      return stored ? (registry.present(res, stored) as T) : undefined;
    },
    put<T extends KubeObject>(obj: T, resource?: Resource<T>): T {
      return registry.put(resolve(obj, resource), obj) as T;
    },
    remove(resource, name, namespace) {
      return registry.remove(servedFor(resource), namespace, name);
    },
    waitFor<R>(
      check: () => R | undefined | null | false,
      o: { signal?: AbortSignal } = {},
    ): Promise<R> {
      return waitUntil((l) => store.subscribe(l), check, o.signal);
    },
    async waitForWatches(count, o = {}) {
      // An aborted signal wins over a count already reached (checked first, as before).
      if (o.signal?.aborted) throw o.signal.reason ?? new Error("Wait aborted");
      const subscribe = (l: () => void) => {
        watchListeners.add(l);
        return () => watchListeners.delete(l);
      };
      await waitUntil(subscribe, () => watches.size === count, o.signal);
    },
    dropWatches(o = {}) {
      const open = [...watches];
      for (const w of open) {
        if (o.graceful) w.end();
        else w.drop();
      }
      return open.length;
    },
    bookmark() {
      let n = 0;
      for (const w of [...watches]) if (w.sendBookmark()) n++;
      return n;
    },
    compact() {
      store.compact();
    },
    async flush() {
      await persister?.flush();
    },
    close,
  };
  return api;
}
