/**
 * An in-memory, scripted stand-in for one API resource: list (paginated, consistent snapshots,
 * expiring continue tokens) and watch (history replay from a resourceVersion, bookmarks, 410 for
 * compacted history) with fault injection. For reflector and informer tests that must not depend
 * on HTTP; the same scenarios also run against the real test API server where it exists.
 *
 * resourceVersions are opaque strings here on purpose ("rv-1a"): code that parses them as
 * numbers fails.
 */
import { setImmediate } from "node:timers";
import type { ListOptions, ResourceClient, WatchOptions, WatchStream } from "../../src/kube/api.ts";
import { noAuth } from "../../src/kube/auth.ts";
import { createKubeApi } from "../../src/kube/client.ts";
import { KubeApiError } from "../../src/kube/errors.ts";
import type {
  KubeList,
  KubeObject,
  PersistentVolumeClaim,
  Status,
  WatchEvent,
} from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { objectKey } from "../../src/kube/store.ts";
import { KubeTransport } from "../../src/kube/transport.ts";
import type { Clock } from "../../src/util/clock.ts";
import type { ApiServer } from "../support/apiserver.ts";
import { startApiServer } from "../support/apiserver.ts";
import { seededRandom } from "../support/seeded-random.ts";

/** An API answer with a metav1.Status body, as the HTTP client reports it. */
export function apiError(
  code: number,
  reason: string,
  message = reason,
  retryAfterSeconds?: number,
): KubeApiError {
  const body: Status = {
    kind: "Status",
    apiVersion: "v1",
    status: "Failure",
    code,
    reason,
    message,
  };
  if (retryAfterSeconds !== undefined) body.details = { retryAfterSeconds };
  return KubeApiError.fromResponse({ verb: "watch", target: "fake", status: code, body });
}

/** A connection that broke (no API answer), as the HTTP client reports it. */
export function transportError(message = "socket hang up"): KubeApiError {
  return KubeApiError.transport({ verb: "watch", target: "fake", cause: new Error(message) });
}

export const gone = () => apiError(410, "Expired", "too old resource version");
export const internalError = () => apiError(500, "InternalError", "etcd is sad");
export const tooManyRequests = (after = 3) => apiError(429, "TooManyRequests", "slow down", after);

export function goneStatus(): Status {
  return {
    kind: "Status",
    apiVersion: "v1",
    status: "Failure",
    code: 410,
    reason: "Expired",
    message: "too old resource version",
  };
}

/** A push-driven async iterable that honours an AbortSignal. */
class Channel<E> implements AsyncIterable<E> {
  #items: E[] = [];
  #ended = false;
  #error: unknown;
  #failed = false;
  #wake: (() => void) | undefined;
  readonly signal: AbortSignal | undefined;

  constructor(signal: AbortSignal | undefined) {
    this.signal = signal;
    signal?.addEventListener("abort", () => this.#kick(), { once: true });
  }

  get closed(): boolean {
    return this.#ended || this.#failed || this.signal?.aborted === true;
  }

  push(e: E): void {
    if (this.closed) return;
    this.#items.push(e);
    this.#kick();
  }

  end(): void {
    this.#ended = true;
    this.#kick();
  }

  fail(err: unknown): void {
    this.#failed = true;
    this.#error = err;
    this.#kick();
  }

  #kick(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<E> {
    for (;;) {
      if (this.signal?.aborted) throw this.signal.reason;
      if (this.#items.length > 0) {
        yield this.#items.shift()!;
        continue;
      }
      if (this.#failed) throw this.#error;
      if (this.#ended) return;
      await new Promise<void>((r) => {
        this.#wake = r;
      });
    }
  }
}

interface HistoryEntry<T> {
  n: number;
  type: "ADDED" | "MODIFIED" | "DELETED";
  obj: T;
}

interface Watcher<T extends KubeObject> {
  channel: Channel<WatchEvent<T>>;
  opts: WatchOptions;
}

export interface FakeWatchServerOptions {
  /** How a watch from a compacted resourceVersion is refused. Default "event". */
  goneAs?: "event" | "http";
  /**
   * A watch with `sendInitialEvents` (a streaming list): "supported" sends the current objects as
   * ADDED and then a bookmark annotated `k8s.io/initial-events-end` (1.27+ with WatchList on);
   * "rejected" answers 422 (WatchList off, or a server before 1.27); "ignored" treats it as a
   * plain watch with no resourceVersion (a server that does not know the parameter): the objects
   * as ADDED and no end bookmark. Default "supported".
   */
  watchList?: "supported" | "rejected" | "ignored";
}

export type FakeObject = KubeObject & { spec?: Record<string, unknown> };

export class FakeWatchServer<T extends KubeObject = FakeObject> {
  #n = 0;
  #uid = 0;
  #compactedTo = 0;
  #objects = new Map<string, T>();
  #history: HistoryEntry<T>[] = [];
  #watchers = new Set<Watcher<T>>();
  #snapshots = new Map<string, { n: number; items: T[] }>();
  #token = 0;
  #failList: unknown[] = [];
  #failWatch: unknown[] = [];
  #silentWatches = 0;
  #goneAs: "event" | "http";
  #watchList: "supported" | "rejected" | "ignored";
  /** Every list and watch call, in order. */
  readonly calls: ({ op: "list"; opts: ListOptions } | { op: "watch"; opts: WatchOptions })[] = [];
  /** Runs at the start of every list call (lets a test compact between pages). */
  beforeList: ((opts: ListOptions) => void) | undefined;

  constructor(opts: FakeWatchServerOptions = {}) {
    this.#goneAs = opts.goneAs ?? "event";
    this.#watchList = opts.watchList ?? "supported";
  }

  static rv(n: number): string {
    return `rv-${n.toString(36)}`;
  }

  #parse(rv: string): number | undefined {
    const m = /^rv-([0-9a-z]+)$/.exec(rv);
    return m ? Number.parseInt(m[1]!, 36) : undefined;
  }

  /** The resourceVersion of the latest write. */
  get resourceVersion(): string {
    return FakeWatchServer.rv(this.#n);
  }

  get watchCalls() {
    return this.calls.filter((c) => c.op === "watch").map((c) => c.opts as WatchOptions);
  }

  get listCalls() {
    return this.calls.filter((c) => c.op === "list").map((c) => c.opts as ListOptions);
  }

  /** Streams currently open. */
  get openWatches(): number {
    let n = 0;
    for (const w of this.#watchers) if (!w.channel.closed) n++;
    return n;
  }

  /** The current objects by key (deep copies). */
  state(): Map<string, T> {
    return new Map([...this.#objects].map(([k, v]) => [k, structuredClone(v)]));
  }

  #record(type: HistoryEntry<T>["type"], obj: T): void {
    const entry = { n: this.#n, type, obj: structuredClone(obj) };
    this.#history.push(entry);
    for (const w of this.#watchers) {
      if (w.channel.closed) {
        this.#watchers.delete(w);
        continue;
      }
      w.channel.push({ type, object: structuredClone(obj) });
    }
  }

  create(obj: T): T {
    const key = objectKey(obj);
    if (this.#objects.has(key)) throw apiError(409, "AlreadyExists");
    this.#n++;
    const stored = structuredClone(obj);
    stored.metadata.uid = `uid-${++this.#uid}`;
    stored.metadata.resourceVersion = FakeWatchServer.rv(this.#n);
    this.#objects.set(key, stored);
    this.#record("ADDED", stored);
    return structuredClone(stored);
  }

  update(key: string, mutate: (obj: T) => void): T {
    const cur = this.#objects.get(key);
    if (!cur) throw apiError(404, "NotFound");
    this.#n++;
    const next = structuredClone(cur);
    mutate(next);
    next.metadata.resourceVersion = FakeWatchServer.rv(this.#n);
    this.#objects.set(key, next);
    this.#record("MODIFIED", next);
    return structuredClone(next);
  }

  delete(key: string): void {
    const cur = this.#objects.get(key);
    if (!cur) throw apiError(404, "NotFound");
    this.#n++;
    this.#objects.delete(key);
    const final = structuredClone(cur);
    final.metadata.resourceVersion = FakeWatchServer.rv(this.#n);
    this.#record("DELETED", final);
  }

  /** Forgets history and expires continue tokens: watches from older versions get 410. */
  compact(): void {
    this.#compactedTo = this.#n;
    this.#history = [];
    this.#snapshots.clear();
  }

  /** Ends every open stream: with `err` (a broken connection) or normally (server timeout). */
  dropWatches(err?: unknown): void {
    for (const w of this.#watchers) {
      if (err === undefined) w.channel.end();
      else w.channel.fail(err);
    }
    this.#watchers.clear();
  }

  /** Sends an in-band event to every open stream (bookmarks, errors, garbage). */
  sendRaw(event: unknown): void {
    for (const w of this.#watchers) w.channel.push(event as WatchEvent<T>);
  }

  /** Reports an undecodable line to every open stream's `onMalformedLine`, as the client does. */
  sendUndecodable(line: string): void {
    for (const w of this.#watchers) {
      const report = (w.opts as { onMalformedLine?: (i: { line: string; error: string }) => void })
        .onMalformedLine;
      report?.({ line, error: "Unexpected token" });
    }
  }

  /** Sends a bookmark at the current resourceVersion to every open stream. */
  bookmark(): void {
    this.sendRaw({
      type: "BOOKMARK",
      object: { metadata: { resourceVersion: this.resourceVersion } },
    });
  }

  failNextList(err: unknown): void {
    this.#failList.push(err);
  }

  failNextWatch(err: unknown): void {
    this.#failWatch.push(err);
  }

  /** The next `count` watches open but never send anything nor end (until aborted). */
  silenceNextWatches(count = 1): void {
    this.#silentWatches += count;
  }

  /** The client the code under test uses. */
  client(): Pick<ResourceClient<T>, "list" | "watch"> {
    return {
      list: (opts = {}) => this.#list(opts),
      watch: (opts = {}) => this.#watch(opts),
    };
  }

  async #list(opts: ListOptions): Promise<KubeList<T>> {
    this.calls.push({ op: "list", opts: { ...opts, signal: undefined } });
    await Promise.resolve();
    this.beforeList?.(opts);
    const fault = this.#failList.shift();
    if (fault !== undefined) throw fault;
    let snap: { n: number; items: T[] };
    let offset = 0;
    if (opts.continue) {
      const [id, off] = opts.continue.split(":");
      const s = this.#snapshots.get(id!);
      if (!s) {
        throw apiError(410, "Expired", "The provided continue parameter is too old");
      }
      snap = s;
      offset = Number(off);
    } else {
      const items = [...this.#objects.values()]
        .sort((a, b) => objectKey(a).localeCompare(objectKey(b)))
        .map((o) => structuredClone(o));
      snap = { n: this.#n, items };
    }
    const limit = opts.limit && opts.limit > 0 ? opts.limit : snap.items.length;
    const items = snap.items.slice(offset, offset + limit);
    const metadata: KubeList<T>["metadata"] = { resourceVersion: FakeWatchServer.rv(snap.n) };
    if (offset + limit < snap.items.length) {
      const id = `c${++this.#token}`;
      this.#snapshots.set(id, snap);
      metadata.continue = `${id}:${offset + limit}`;
    }
    return { metadata, items };
  }

  async #watch(opts: WatchOptions): Promise<WatchStream<T>> {
    this.calls.push({ op: "watch", opts: { ...opts, signal: undefined } });
    await Promise.resolve();
    const fault = this.#failWatch.shift();
    if (fault !== undefined) throw fault;
    if (opts.signal?.aborted) throw opts.signal.reason;
    const channel = new Channel<WatchEvent<T>>(opts.signal);
    if (this.#silentWatches > 0) {
      this.#silentWatches--;
      return channel; // never registered: nothing is ever pushed
    }
    const rv = opts.resourceVersion;
    if (opts.sendInitialEvents && this.#watchList !== "ignored") {
      if (this.#watchList === "rejected") {
        throw apiError(
          422,
          "Invalid",
          "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
        );
      }
      if (opts.resourceVersionMatch !== "NotOlderThan" || rv) {
        throw apiError(
          422,
          "Invalid",
          "resourceVersionMatch: Forbidden (fake: only NotOlderThan, no rv)",
        );
      }
      const items = [...this.#objects.values()].sort((a, b) =>
        objectKey(a).localeCompare(objectKey(b)),
      );
      for (const o of items) channel.push({ type: "ADDED", object: structuredClone(o) });
      channel.push({
        type: "BOOKMARK",
        object: {
          metadata: {
            resourceVersion: this.resourceVersion,
            annotations: { "k8s.io/initial-events-end": "true" },
          },
        } as unknown as T,
      });
    } else if (!rv) {
      for (const o of this.#objects.values()) {
        channel.push({ type: "ADDED", object: structuredClone(o) });
      }
    } else {
      const from = this.#parse(rv);
      if (from === undefined) throw apiError(400, "BadRequest", `bad rv ${rv}`);
      if (from < this.#compactedTo) {
        if (this.#goneAs === "http") throw gone();
        channel.push({ type: "ERROR", object: goneStatus() as unknown as T });
        channel.end();
        return channel;
      }
      for (const e of this.#history) {
        if (e.n > from) channel.push({ type: e.type, object: structuredClone(e.obj) });
      }
    }
    this.#watchers.add({ channel, opts });
    return channel;
  }
}

/**
 * Lets pending promise callbacks and I/O run until `cond` holds; throws (naming `what`) after
 * `turns` event-loop turns. Waiting on a condition, not sleeping for a time.
 */
export async function until(cond: () => boolean, what: string, turns = 2000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (cond()) return;
    // Mostly immediates; now and then a zero-delay timer, which some runtimes' socket code needs.
    if (i % 10 === 9) await new Promise<void>((r) => setTimeout(r, 0));
    else await new Promise<void>((r) => setImmediate(r));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

/** A few event-loop turns: lets in-flight promise chains settle. */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}

export function pvc(name: string, n = 0, namespace = "ns"): FakeObject {
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name, namespace },
    spec: { n },
  };
}

/** The real HTTP client against the test API server, both on `clock`. */
export async function startHttpBackend(clock: Clock): Promise<{
  api: ApiServer;
  pvcs: ResourceClient<PersistentVolumeClaim>;
  transport: KubeTransport;
  close: () => Promise<void>;
}> {
  const api = await startApiServer({ clock, random: seededRandom(7), bookmarkIntervalMs: 0 });
  const transport = new KubeTransport({
    connection: { server: api.url, tls: {}, auth: noAuth, source: "test" },
    version: "test",
    clock,
    random: () => 0,
    // Let the reflector see every failure: no transport-level retries.
    maxRetries: 0,
    idempotentRetries: 0,
  });
  const pvcs = createKubeApi(transport).resource(resources.persistentVolumeClaims);
  return { api, pvcs, transport, close: () => api.close() };
}

/** Creates a PVC-like object for each name. */
export function createAll(s: FakeWatchServer, names: readonly string[]): void {
  for (const n of names) s.create(pvc(n));
}
