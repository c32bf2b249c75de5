/**
 * The list/watch loop that keeps a cache in step with the API server.
 *
 * 1. Sync by a streaming list (the API's "watch-list", client-go's default since 1.35): one watch
 *    with `sendInitialEvents=true` and `resourceVersionMatch=NotOlderThan` carries every current
 *    object as ADDED, then a BOOKMARK annotated `k8s.io/initial-events-end`; the objects go to the
 *    sink as it ends and the same stream goes on with the changes. One request instead of one per
 *    page (each page costs a token of the client's rate limiter: 80 pages, 16 s at 5 QPS, for
 *    40,000 objects), served from the API server's watch cache instead of etcd, and each object is
 *    decoded and projected as its line arrives. A server that refuses it (400 / 422: before 1.27,
 *    or the WatchList feature off) or a stream that ends before that bookmark (a server that
 *    ignores the parameters) makes this reflector list in pages from then on:
 *    paginated (`limit`/`continue`). An expired continue token (410) restarts the list from
 *    scratch; if it expires a second time in the same attempt the list is done in one request.
 * 2. After a paged list, watch from its resourceVersion with `allowWatchBookmarks=true`. Every
 *    watch has a randomised `timeoutSeconds` in [5 min, 10 min) (client-go's spread), so that many
 *    clients do not reconnect in step.
 * 3. Events are applied to the sink as they are decoded; the resourceVersion of each event (and of
 *    each bookmark) becomes the point to resume from. resourceVersions are opaque strings, only
 *    ever compared for equality.
 * 4. How each end of a stream is handled:
 *    - the server ends it (its timeout): watch again at once from the last resourceVersion
 *      (unless it ended within a second without a single event: then back off, as client-go);
 *    - 410 Gone / Expired, as the HTTP answer or an in-band ERROR event: list again, and the sink
 *      replaces its content (the store emits deletes for vanished objects);
 *    - transport errors, 5xx, 429 (at least its Retry-After) and anything else: jittered
 *      exponential back-off, then watch again from the last resourceVersion, without a list;
 *    - a stream silent for longer than its `timeoutSeconds` plus a grace period is ended by a
 *      watchdog and watched again.
 * Everything stops when the signal aborts; `run()` then resolves.
 */
import type { Clock, Random } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { nullLogger } from "../util/log.ts";
import type { ResourceClient, WatchOptions } from "./api.ts";
import {
  isBadRequest,
  isGone,
  isInvalid,
  isKubeApiError,
  isTooManyRequests,
  KubeApiError,
} from "./errors.ts";
import type { KubeObject, Status, WatchEvent } from "./objects.ts";
import { objectKey } from "./store.ts";

/** How errors thrown by the client are classified. */
export interface ErrorPredicates {
  /** 410: the resourceVersion or continue token is too old (reason Gone or Expired). */
  isGone(e: unknown): boolean;
  /** 429 Too Many Requests. */
  isTooManyRequests(e: unknown): boolean;
  /** The server's Retry-After, in seconds, when it sent one. */
  retryAfterSeconds(e: unknown): number | undefined;
  /** The request was refused as invalid: 400 Bad Request or 422 Invalid. */
  isRejected(e: unknown): boolean;
}

/** The client's {@link KubeApiError} predicates. */
export const defaultErrorPredicates: ErrorPredicates = {
  isGone,
  isTooManyRequests,
  retryAfterSeconds: (e) => (isKubeApiError(e) ? e.retryAfterSeconds : undefined),
  isRejected: (e) => isBadRequest(e) || isInvalid(e),
};

export interface BackoffOptions {
  /** First delay. Default 800 ms. */
  initialMs?: number;
  /** Largest base delay (jitter comes on top, as in client-go). Default 30 s. */
  maxMs?: number;
  /** Growth per failure. Default 2. */
  factor?: number;
  /** Each delay is `base * (1 + jitter * random())`. Default 1, so at the cap: [30 s, 60 s). */
  jitter?: number;
  /** With no back-off for this long, the next one starts again from `initialMs`. Default 2 min. */
  resetAfterMs?: number;
}

/** Jittered exponential back-off that resets after a healthy period (client-go's manager). */
export class Backoff {
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #initial: number;
  readonly #max: number;
  readonly #factor: number;
  readonly #jitter: number;
  readonly #resetAfter: number;
  #current: number;
  #last: number | undefined;

  constructor(clock: Clock, random: Random, opts: BackoffOptions = {}) {
    this.#clock = clock;
    this.#random = random;
    this.#initial = opts.initialMs ?? 800;
    this.#max = opts.maxMs ?? 30_000;
    this.#factor = opts.factor ?? 2;
    this.#jitter = opts.jitter ?? 1;
    this.#resetAfter = opts.resetAfterMs ?? 120_000;
    this.#current = this.#initial;
  }

  /** The next delay in milliseconds. */
  next(): number {
    const now = this.#clock.now();
    if (this.#last !== undefined && now - this.#last > this.#resetAfter) this.reset();
    this.#last = now;
    const base = this.#current;
    this.#current = Math.min(this.#max, this.#current * this.#factor);
    return Math.round(base * (1 + this.#jitter * this.#random()));
  }

  reset(): void {
    this.#current = this.#initial;
  }
}

export type WatchEventCounts = Record<
  "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR",
  number
>;

export interface ReflectorStats {
  /** Complete lists (the first one included), paged or streamed. */
  lists: number;
  /** Lists received as a watch's initial events (a streaming list). */
  streamedLists: number;
  /** Lists after the first (410 Gone). */
  relists: number;
  /** Pages fetched. */
  listPages: number;
  /** Continue tokens that had expired. */
  expiredContinues: number;
  /** Watch requests made. */
  watches: number;
  /** Watch requests after the first. */
  watchRestarts: number;
  /** Streams ended by the watchdog. */
  watchdogTimeouts: number;
  /** 410 Gone / Expired answers and ERROR events. */
  gone: number;
  /** Failed list or watch requests and error ends of streams (410 excluded). */
  errors: number;
  /** Back-off waits. */
  backoffs: number;
  /** Events by type. */
  events: WatchEventCounts;
  /** Events or list items without a usable object (no metadata, no name, no resourceVersion). */
  malformed: number;
  /** Events of a type this loop does not know. */
  unknownType: number;
}

/** Where the reflector delivers what it learns. */
export interface ReflectorSink<T extends KubeObject> {
  /** The complete, current content (after a list), each item passed through `prepare`. */
  replace(items: T[], resourceVersion: string | undefined): void;
  /**
   * Called on each list item as its page arrives; `replace` receives what it returns. Lets the
   * sink keep only what it needs (a projection) while later pages are read, so a long list never
   * holds every whole object at once.
   */
  prepare?(item: T): T;
  /** One ADDED / MODIFIED / DELETED event. May throw: that is counted as malformed. */
  apply(type: "ADDED" | "MODIFIED" | "DELETED", obj: T): void;
  /** A bookmark: the cache is current at this resourceVersion. */
  bookmark?(resourceVersion: string): void;
}

export interface ReflectorOptions<T extends KubeObject> {
  client: Pick<ResourceClient<T>, "list" | "watch">;
  sink: ReflectorSink<T>;
  clock: Clock;
  random: Random;
  /** Default: drops everything. */
  logger?: Logger;
  /** Used in log lines and messages. Default: the resource's plural, or "objects". */
  name?: string;
  /** Watch one namespace. Default: all namespaces. */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Sync by a streaming list while the server supports it (see above). Default true. */
  streamingList?: boolean;
  /**
   * Called after every {@link garbageEvery} objects of a streaming list: a full collection of
   * the garbage their decoding left (see `runtime/memory.ts`). Default: none.
   */
  collectGarbage?: () => void;
  /** Items per list page, when listing in pages; 0 lists in one request. Default 500. */
  pageSize?: number;
  /** Watch timeouts are drawn from [min, 2 × min). Default 300 s. */
  minWatchTimeoutSeconds?: number;
  /** The watchdog ends a stream silent for its timeout plus this long. Default 30 s. */
  watchdogGraceMs?: number;
  /** Default: client-go's 800 ms doubling to 30 s, jitter 1, reset after 2 min. */
  backoff?: BackoffOptions;
  /** Default: {@link defaultErrorPredicates}. */
  errors?: ErrorPredicates;
}

type WatchOutcome =
  | { kind: "aborted" }
  | { kind: "ended"; events: number; durationMs: number }
  | { kind: "watchdog" }
  | { kind: "gone"; cause: unknown }
  | { kind: "error"; cause: unknown }
  /** A streaming list refused by the server (it does not support it). */
  | { kind: "rejected"; cause: unknown };

/** The annotation of the bookmark that ends a streaming list's initial events. */
const initialEventsEnd = "k8s.io/initial-events-end";

/** Objects of a streaming list between two calls of `collectGarbage` (~2 MB of JSON). */
export const garbageEvery = 1000;

/** A streaming list being received: what the sink prepared of each object so far. */
interface InitialEvents<T> {
  items: T[];
  /** Events received. */
  count: number;
  /** Only once an event other than ADDED comes before the end (the API sends none). */
  byKey?: Map<string, T>;
}

function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === "object" && e !== null && typeof (e as Status).message === "string") {
    return (e as Status).message!;
  }
  return String(e);
}

/** Rejects as soon as `signal` aborts, without leaving `p`'s rejection unhandled. */
function raceAbort<V>(p: Promise<V>, signal: AbortSignal): Promise<V> {
  p.catch(() => {});
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<V>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** An object the cache can hold: metadata with a non-empty name. */
function isUsableObject(v: unknown): v is KubeObject {
  if (!isObject(v) || !isObject(v.metadata)) return false;
  const name = v.metadata.name;
  return typeof name === "string" && name !== "";
}

const watchdogReason = "watch stream silent past its timeout";

export class Reflector<T extends KubeObject> {
  readonly #o: ReflectorOptions<T>;
  readonly #log: Logger;
  readonly #name: string;
  readonly #errors: ErrorPredicates;
  readonly #backoff: Backoff;
  #lastRV: string | undefined;
  #synced = false;
  #running = false;
  /** A run has ended (and no new one started): pending waits reject. */
  #stopped = false;
  /** True from a list until the first watch after it delivers an event or ends otherwise. */
  #freshList = false;
  /** False once the server has shown it does not support streaming lists. */
  #streamingList: boolean;
  /** The streaming list in progress, until its end bookmark. */
  #initial: InitialEvents<T> | undefined;
  #waiters = new Set<() => void>();
  readonly stats: ReflectorStats = {
    lists: 0,
    streamedLists: 0,
    relists: 0,
    listPages: 0,
    expiredContinues: 0,
    watches: 0,
    watchRestarts: 0,
    watchdogTimeouts: 0,
    gone: 0,
    errors: 0,
    backoffs: 0,
    events: { ADDED: 0, MODIFIED: 0, DELETED: 0, BOOKMARK: 0, ERROR: 0 },
    malformed: 0,
    unknownType: 0,
  };

  constructor(opts: ReflectorOptions<T>) {
    this.#o = opts;
    const resource = (opts.client as Partial<ResourceClient<T>>).resource;
    this.#name = opts.name ?? resource?.plural ?? "objects";
    this.#log = (opts.logger ?? nullLogger).with({ resource: this.#name });
    this.#errors = opts.errors ?? defaultErrorPredicates;
    this.#backoff = new Backoff(opts.clock, opts.random, opts.backoff);
    this.#streamingList = opts.streamingList ?? true;
  }

  /** The resourceVersion of the last list, event or bookmark seen (opaque). */
  get lastSyncResourceVersion(): string | undefined {
    return this.#lastRV;
  }

  /** True once the first list has been delivered to the sink. */
  hasSynced(): boolean {
    return this.#synced;
  }

  /**
   * Resolves once the first list has been delivered; rejects when `signal` aborts or `run()`
   * ends first.
   */
  waitForSync(signal?: AbortSignal): Promise<void> {
    return this.#waitUntil(() => this.#synced, signal);
  }

  /**
   * Resolves once the last resourceVersion seen equals `rv` (equality only: resourceVersions
   * are opaque). Meant for tests and tools that know the server's latest resourceVersion.
   */
  waitForResourceVersion(rv: string, signal?: AbortSignal): Promise<void> {
    return this.#waitUntil(() => this.#lastRV === rv, signal);
  }

  #waitUntil(cond: () => boolean, signal?: AbortSignal): Promise<void> {
    if (cond()) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (cond()) {
          done();
          resolve();
        } else if (this.#stopped) {
          done();
          reject(new Error(`Reflector for ${this.#name} stopped before the condition was met`));
        }
      };
      const onAbort = () => {
        done();
        reject(signal!.reason);
      };
      const done = () => {
        this.#waiters.delete(check);
        signal?.removeEventListener("abort", onAbort);
      };
      this.#waiters.add(check);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  #setRV(rv: string | undefined): void {
    if (!rv || rv === this.#lastRV) return;
    this.#lastRV = rv;
    this.#notify();
  }

  /** Lists and watches until `signal` aborts. Never rejects because of the API server. */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#running) throw new Error(`Reflector for ${this.#name} is already running`);
    this.#running = true;
    this.#stopped = false;
    try {
      let needList = true;
      while (!signal.aborted) {
        if (needList && !this.#streamingList) {
          try {
            await this.#list(signal);
            needList = false;
          } catch (e) {
            if (signal.aborted) break;
            this.stats.errors++;
            const delay = this.#delayFor(e);
            this.#log.warn(`List of ${this.#name} failed: ${errorMessage(e)}`, {
              retryInMs: delay,
            });
            if (!(await this.#sleep(delay, signal))) break;
            continue;
          }
        }
        const streaming = needList;
        this.#initial = streaming ? { items: [], count: 0 } : undefined;
        const outcome = await this.#watchOnce(signal, streaming);
        const incomplete = this.#initial !== undefined;
        this.#initial = undefined;
        if (streaming && !incomplete) needList = false;
        if (streaming && incomplete && outcome.kind !== "aborted") {
          // Refused, or objects came and the stream ended without the end bookmark (a server
          // that ignores the parameters): this server does not do streaming lists.
          if (outcome.kind === "rejected" || (outcome.kind === "ended" && outcome.events > 0)) {
            this.#streamingList = false;
            const why =
              outcome.kind === "rejected"
                ? `the server refused it: ${errorMessage(outcome.cause)}`
                : "its stream ended before the initial events did";
            this.#log.info(
              `Streaming list of ${this.#name} not supported (${why}): listing in pages`,
            );
            continue;
          }
          // Failed, expired, silent, or ended before any object: stream it again after a while.
          this.stats.errors++;
          if (outcome.kind === "watchdog") this.stats.watchdogTimeouts++;
          const cause = "cause" in outcome ? outcome.cause : undefined;
          const delay = this.#delayFor(cause);
          const what =
            cause !== undefined
              ? errorMessage(cause)
              : outcome.kind === "watchdog"
                ? watchdogReason
                : "the stream ended before any object";
          this.#log.warn(`Streaming list of ${this.#name} failed: ${what}`, { retryInMs: delay });
          if (!(await this.#sleep(delay, signal))) return;
          continue;
        }
        if (outcome.kind !== "gone") this.#freshList = false;
        switch (outcome.kind) {
          case "aborted":
            return;
          case "ended":
            if (outcome.events === 0 && outcome.durationMs < 1000) {
              this.stats.errors++;
              const delay = this.#delayFor(undefined);
              this.#log.warn(
                `Watch of ${this.#name} ended within a second without events: backing off`,
                { retryInMs: delay },
              );
              if (!(await this.#sleep(delay, signal))) return;
            } else {
              this.#log.v(4).info(`Watch of ${this.#name} ended: watching again`, {
                resourceVersion: this.#lastRV,
                events: outcome.events,
              });
            }
            break;
          case "watchdog":
            this.stats.watchdogTimeouts++;
            this.#log.warn(`Watch of ${this.#name} went silent: restarting it`, {
              resourceVersion: this.#lastRV,
            });
            break;
          case "gone": {
            this.stats.gone++;
            needList = true;
            this.#log.info(
              `Watch of ${this.#name} expired: listing again: ${errorMessage(outcome.cause)}`,
              { resourceVersion: this.#lastRV },
            );
            // A 410 on the first watch after a list, before any event: do not hammer the server.
            if (this.#freshList) {
              if (!(await this.#sleep(this.#delayFor(outcome.cause), signal))) return;
            }
            break;
          }
          case "rejected":
          case "error": {
            this.stats.errors++;
            const delay = this.#delayFor(outcome.cause);
            this.#log.warn(`Watch of ${this.#name} failed: ${errorMessage(outcome.cause)}`, {
              resourceVersion: this.#lastRV,
              retryInMs: delay,
            });
            if (!(await this.#sleep(delay, signal))) return;
            break;
          }
        }
      }
    } finally {
      this.#running = false;
      this.#stopped = true;
      this.#notify();
    }
  }

  /** Back-off for a failure, at least the server's Retry-After for 429. */
  #delayFor(e: unknown): number {
    const delay = this.#backoff.next();
    if (e === undefined) return delay;
    if (this.#errors.isTooManyRequests(e)) {
      const after = this.#errors.retryAfterSeconds(e);
      if (after !== undefined && after * 1000 > delay) return after * 1000;
    }
    return delay;
  }

  /** False when the signal aborted during the wait. */
  async #sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    this.stats.backoffs++;
    try {
      await this.#o.clock.sleep(ms, signal);
      return true;
    } catch {
      return false;
    }
  }

  async #list(signal: AbortSignal): Promise<void> {
    const o = this.#o;
    let limit: number | undefined = (o.pageSize ?? 500) > 0 ? (o.pageSize ?? 500) : undefined;
    let items: T[] = [];
    let cont: string | undefined;
    let expiredBefore = false;
    let rv: string | undefined;
    for (;;) {
      let page: Awaited<ReturnType<typeof o.client.list>>;
      try {
        page = await raceAbort(
          o.client.list({
            namespace: o.namespace,
            labelSelector: o.labelSelector,
            fieldSelector: o.fieldSelector,
            limit,
            continue: cont,
            signal,
          }),
          signal,
        );
      } catch (e) {
        if (cont !== undefined && !signal.aborted && this.#errors.isGone(e)) {
          this.stats.expiredContinues++;
          this.#log.info(
            `List of ${this.#name} expired between pages: listing from the start: ${errorMessage(e)}`,
          );
          items = [];
          cont = undefined;
          // A second expiry in one attempt: the list is too slow to page; take it whole.
          if (expiredBefore) limit = undefined;
          expiredBefore = true;
          continue;
        }
        throw e;
      }
      this.stats.listPages++;
      const pageItems: unknown = page?.items;
      if (Array.isArray(pageItems)) {
        for (const item of pageItems) {
          if (isUsableObject(item))
            items.push(o.sink.prepare ? o.sink.prepare(item as T) : (item as T));
          else this.#malformed("List item without metadata.name", item);
        }
      } else if (pageItems !== null && pageItems !== undefined) {
        this.#malformed("List page whose items are not an array", pageItems);
      }
      rv = page?.metadata?.resourceVersion || rv;
      cont = page?.metadata?.continue || undefined;
      if (!cont) break;
    }
    if (!rv) this.#log.warn(`List of ${this.#name} carried no resourceVersion`);
    this.#delivered(items, rv, "paged");
  }

  /** Hands a complete list to the sink: the cache is in sync at `rv`. */
  #delivered(items: T[], rv: string | undefined, how: "paged" | "streamed"): void {
    try {
      this.#o.sink.replace(items, rv);
    } catch (e) {
      // The sink is ours; a failure here is a bug, but it must not stop the loop.
      this.#log.error(`Applying the list of ${this.#name} failed: ${errorMessage(e)}`);
      throw e;
    }
    this.stats.lists++;
    if (how === "streamed") this.stats.streamedLists++;
    if (this.stats.lists > 1) this.stats.relists++;
    this.#freshList = true;
    this.#lastRV = rv;
    this.#synced = true;
    this.#log.v(2).info(`Listed ${this.#name}`, { count: items.length, resourceVersion: rv, how });
    this.#notify();
  }

  /** One object of a streaming list's initial events, kept as the sink prepares it. */
  #collect(initial: InitialEvents<T>, type: "ADDED" | "MODIFIED" | "DELETED", obj: T): void {
    const prepare = this.#o.sink.prepare;
    if (++initial.count % garbageEvery === 0) this.#o.collectGarbage?.();
    if (type === "ADDED" && !initial.byKey) {
      initial.items.push(prepare ? prepare(obj) : obj);
      return;
    }
    initial.byKey ??= new Map(initial.items.map((i) => [objectKey(i), i]));
    if (type === "DELETED") initial.byKey.delete(objectKey(obj));
    else initial.byKey.set(objectKey(obj), prepare ? prepare(obj) : obj);
  }

  #malformed(what: string, value: unknown): void {
    this.stats.malformed++;
    let shown: string;
    try {
      shown = JSON.stringify(value)?.slice(0, 200) ?? String(value);
    } catch {
      shown = String(value);
    }
    this.#log.warn(`Malformed data from the ${this.#name} API: ${what}`, { value: shown });
  }

  /** One watch; `streaming`: a streaming list (no resourceVersion, initial events first). */
  async #watchOnce(signal: AbortSignal, streaming: boolean): Promise<WatchOutcome> {
    const o = this.#o;
    const clock = o.clock;
    const minTimeout = o.minWatchTimeoutSeconds ?? 300;
    const timeoutSeconds = Math.floor(minTimeout * (1 + o.random()));
    const silentLimitMs = timeoutSeconds * 1000 + (o.watchdogGraceMs ?? 30_000);

    const stream = new AbortController();
    const onAbort = () => stream.abort(signal.reason);
    if (signal.aborted) return { kind: "aborted" };
    signal.addEventListener("abort", onAbort, { once: true });

    // The watchdog: ends the stream (or a watch request that hangs) after a silence.
    const stopWatchdog = new AbortController();
    let lastActivity = clock.now();
    let watchdogFired = false;
    void (async () => {
      try {
        for (;;) {
          const wait = lastActivity + silentLimitMs - clock.now();
          if (wait <= 0) {
            watchdogFired = true;
            stream.abort(new Error(watchdogReason));
            return;
          }
          await clock.sleep(wait, stopWatchdog.signal);
        }
      } catch {
        // stopped
      }
    })();

    this.stats.watches++;
    if (this.stats.watches > 1) this.stats.watchRestarts++;
    const started = clock.now();
    let events = 0;
    let iterator: AsyncIterator<WatchEvent<T>> | undefined;
    let removeStreamAbort: (() => void) | undefined;
    let finished = false;
    try {
      const ws = await raceAbort(
        o.client.watch({
          namespace: o.namespace,
          labelSelector: o.labelSelector,
          fieldSelector: o.fieldSelector,
          ...(streaming
            ? { sendInitialEvents: true, resourceVersionMatch: "NotOlderThan" }
            : { resourceVersion: this.#lastRV }),
          allowWatchBookmarks: true,
          timeoutSeconds,
          signal: stream.signal,
          // Lines the client could not decode (not JSON, not {type, object}); counted here
          // once the client passes this through (it is not in `WatchOptions` yet).
          onMalformedLine: (info: { line: string; error: string }) =>
            this.#malformed(`Undecodable watch line: ${info.error}`, info.line),
        } as WatchOptions),
        stream.signal,
      );
      lastActivity = clock.now();
      iterator = ws[Symbol.asyncIterator]();
      const it = iterator;
      // One abort listener for the whole stream, rejecting the read in progress. (Racing each
      // read against one never-settling promise would leave a reaction on it per event, and with
      // it the event, until the stream ends.)
      let interrupt: ((reason: unknown) => void) | undefined;
      const onStreamAbort = () => interrupt?.(stream.signal.reason);
      stream.signal.addEventListener("abort", onStreamAbort, { once: true });
      removeStreamAbort = () => stream.signal.removeEventListener("abort", onStreamAbort);
      const read = (
        resolve: (r: IteratorResult<WatchEvent<T>>) => void,
        reject: (e: unknown) => void,
      ) => {
        interrupt = reject;
        it.next().then(resolve, reject);
      };
      for (;;) {
        if (stream.signal.aborted) throw stream.signal.reason;
        const r = await new Promise(read);
        if (r.done) {
          finished = true;
          return { kind: "ended", events, durationMs: clock.now() - started };
        }
        lastActivity = clock.now();
        events++;
        const verdict = this.#handleEvent(r.value);
        if (verdict) return verdict;
      }
    } catch (e) {
      if (signal.aborted) return { kind: "aborted" };
      if (watchdogFired) return { kind: "watchdog" };
      if (streaming && events === 0 && this.#errors.isRejected(e)) {
        return { kind: "rejected", cause: e };
      }
      if (this.#errors.isGone(e)) return { kind: "gone", cause: e };
      return { kind: "error", cause: e };
    } finally {
      stopWatchdog.abort();
      signal.removeEventListener("abort", onAbort);
      removeStreamAbort?.();
      if (!finished) {
        stream.abort(new Error("watch stream closed by the reflector"));
        iterator?.return?.()?.catch(() => {});
      }
    }
  }

  /** Applies one event; returns how the stream ends when the event ends it. */
  #handleEvent(ev: unknown): WatchOutcome | undefined {
    if (!isObject(ev)) {
      this.#malformed("Watch event that is not an object", ev);
      return undefined;
    }
    const type = ev.type;
    const obj = ev.object;
    switch (type) {
      case "ADDED":
      case "MODIFIED":
      case "DELETED": {
        this.stats.events[type]++;
        if (!isUsableObject(obj)) {
          this.#malformed(`${type} event without metadata.name`, ev);
          return undefined;
        }
        this.#freshList = false;
        const initial = this.#initial;
        try {
          if (initial) this.#collect(initial, type, obj as T);
          else this.#o.sink.apply(type, obj as T);
        } catch (e) {
          this.#malformed(`${type} event that could not be applied: ${errorMessage(e)}`, ev);
        }
        const rv = obj.metadata.resourceVersion;
        // A streaming list's objects are in sync only at its end bookmark's resourceVersion.
        if (typeof rv === "string" && rv !== "") {
          if (!initial) this.#setRV(rv);
        } else this.#malformed(`${type} event without metadata.resourceVersion`, ev);
        return undefined;
      }
      case "BOOKMARK": {
        this.stats.events.BOOKMARK++;
        const rv =
          isObject(obj) && isObject(obj.metadata) ? obj.metadata.resourceVersion : undefined;
        if (typeof rv !== "string" || rv === "") {
          this.#malformed("BOOKMARK event without metadata.resourceVersion", ev);
          return undefined;
        }
        const initial = this.#initial;
        if (initial) {
          const annotations =
            isObject(obj) && isObject(obj.metadata) ? obj.metadata.annotations : undefined;
          // Other bookmarks before the end say nothing about the cache: not in sync yet.
          if (!isObject(annotations) || annotations[initialEventsEnd] !== "true") return undefined;
          this.#delivered(
            initial.byKey ? [...initial.byKey.values()] : initial.items,
            rv,
            "streamed",
          );
          this.#initial = undefined;
          return undefined;
        }
        this.#freshList = false;
        this.#o.sink.bookmark?.(rv);
        this.#setRV(rv);
        return undefined;
      }
      case "ERROR": {
        this.stats.events.ERROR++;
        if (!isObject(obj)) this.#malformed("ERROR event without a Status", ev);
        const err = KubeApiError.fromStatus(
          "watch",
          this.#name,
          isObject(obj) ? (obj as Status) : {},
        );
        if (this.#errors.isGone(err)) {
          return { kind: "gone", cause: err };
        }
        return { kind: "error", cause: err };
      }
      default:
        this.stats.unknownType++;
        this.#log.warn(`Watch event of unknown type from the ${this.#name} API: skipped`, {
          type: String(type),
        });
        return undefined;
    }
  }
}

/** Runs a {@link Reflector} until `signal` aborts. */
export function runReflector<T extends KubeObject>(
  opts: ReflectorOptions<T>,
  signal: AbortSignal,
): Reflector<T> & { done: Promise<void> } {
  const r = new Reflector(opts);
  return Object.assign(r, { done: r.run(signal) });
}
