/**
 * An informer: a {@link Reflector} that keeps a {@link Store} current, plus event handlers.
 *
 * Events are applied to the store the moment they are decoded, so `store.get()` is always as
 * fresh as the stream. Handlers are notified afterwards, off a queue per handler, in order: a
 * slow (async) handler delays only its own later notifications, never the decoding of the stream
 * nor the other handlers. A handler that throws (or rejects) is logged and the next notification
 * is delivered.
 */
import type { Clock, Random } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { nullLogger } from "../util/log.ts";
import type { KubeObject } from "./objects.ts";
import type {
  BackoffOptions,
  ErrorPredicates,
  ReflectorOptions,
  ReflectorSink,
  ReflectorStats,
} from "./reflector.ts";
import { Reflector } from "./reflector.ts";
import type { IndexFunc, ReadonlyStore, StoreEvent } from "./store.ts";
import { objectKey, Store } from "./store.ts";

export interface DeleteInfo {
  /**
   * True when the deletion was inferred from a relist (the object vanished while the watch was
   * down): `obj` is then the last state the cache knew, not the object's final state.
   */
  finalStateUnknown: boolean;
}

export interface EventHandler<P> {
  onAdd?(obj: P): void | Promise<void>;
  onUpdate?(old: P, obj: P): void | Promise<void>;
  onDelete?(obj: P, info: DeleteInfo): void | Promise<void>;
}

export interface HandlerRegistration {
  /** Stops notifications to this handler (queued ones are dropped). */
  remove(): void;
  /** Resolves once every notification queued so far has been handled. */
  drained(): Promise<void>;
}

export interface InformerStats extends ReflectorStats {
  /** Notifications queued and not yet handled, over all handlers. */
  pendingNotifications: number;
  /** Handler calls that threw or rejected. */
  handlerErrors: number;
}

export interface InformerOptions<T extends KubeObject, P extends KubeObject>
  extends Omit<ReflectorOptions<T>, "sink"> {
  /** What the store keeps of each object (see `projections.ts`). Default: the whole object. */
  project?: (obj: T) => P;
  /** Custom store indexes, for `store.byIndex(name, value)`. Default: none. */
  indexers?: Record<string, IndexFunc<P>>;
  /** Keep the store's UID index (`store.getByUid`). Default true. */
  uidIndex?: boolean;
  /**
   * Every this many milliseconds, each handler gets `onUpdate(obj, obj)` for every cached object
   * (upstream's resync, which re-queues work). 0 disables it. Default 0.
   */
  resyncPeriodMs?: number;
  clock: Clock;
  random: Random;
  logger?: Logger;
  backoff?: BackoffOptions;
  errors?: ErrorPredicates;
}

type Notification<P> =
  | StoreEvent<P>
  | { type: "resync"; obj: P }
  | { type: "relist-delete"; obj: P };

class Listener<P> {
  readonly #handler: EventHandler<P>;
  readonly #onError: (e: unknown, n: Notification<P>) => void;
  /** Objects the store held when the handler was added, delivered as adds before the queue. */
  #replay: readonly P[] = [];
  #replayAt = 0;
  #queue: Notification<P>[] = [];
  #head = 0;
  #pumping = false;
  #removed = false;
  #idle: (() => void)[] = [];

  constructor(handler: EventHandler<P>, onError: (e: unknown, n: Notification<P>) => void) {
    this.#handler = handler;
    this.#onError = onError;
  }

  get pending(): number {
    return this.#replay.length - this.#replayAt + this.#queue.length - this.#head;
  }

  /**
   * Delivers `objs` as adds ahead of everything pushed later, without a notification object
   * each: a handler added to a store of 20,000 objects would otherwise queue 20,000 of them.
   */
  replay(objs: readonly P[]): void {
    if (this.#removed || objs.length === 0) return;
    this.#replay = objs;
    this.#replayAt = 0;
    this.#schedule();
  }

  push(ns: readonly Notification<P>[]): void {
    if (this.#removed || ns.length === 0) return;
    for (const n of ns) this.#queue.push(n);
    this.#schedule();
  }

  drained(): Promise<void> {
    if (!this.#pumping) return Promise.resolve();
    return new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  remove(): void {
    this.#removed = true;
    this.#replay = [];
    this.#replayAt = 0;
    this.#queue = [];
    this.#head = 0;
  }

  #schedule(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    queueMicrotask(() => void this.#pump());
  }

  /**
   * Delivers in order until nothing is left. A handler that returns a promise is awaited before
   * the next notification; one that returns nothing costs no await (no promise, no microtask).
   */
  async #pump(): Promise<void> {
    while (!this.#removed) {
      let n: Notification<P> | undefined;
      let obj: P | undefined;
      if (this.#replayAt < this.#replay.length) {
        obj = this.#replay[this.#replayAt++]!;
        if (this.#replayAt === this.#replay.length) {
          this.#replay = [];
          this.#replayAt = 0;
        }
      } else if (this.#head < this.#queue.length) {
        n = this.#queue[this.#head]!;
        this.#queue[this.#head++] = undefined as unknown as Notification<P>;
        if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
          this.#queue = this.#queue.slice(this.#head);
          this.#head = 0;
        }
      } else {
        break;
      }
      try {
        const r = n ? this.#deliver(n) : this.#handler.onAdd?.(obj!);
        if (r !== undefined) await r;
      } catch (e) {
        this.#onError(e, n ?? { type: "add", obj: obj! });
      }
    }
    this.#pumping = false;
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  #deliver(n: Notification<P>): void | Promise<void> {
    const h = this.#handler;
    switch (n.type) {
      case "add":
        return h.onAdd?.(n.obj);
      case "update":
        return h.onUpdate?.(n.old, n.obj);
      case "resync":
        return h.onUpdate?.(n.obj, n.obj);
      case "delete":
        return h.onDelete?.(n.obj, { finalStateUnknown: false });
      case "relist-delete":
        return h.onDelete?.(n.obj, { finalStateUnknown: true });
    }
  }
}

export class Informer<T extends KubeObject, P extends KubeObject = T> {
  readonly #store: Store<T, P>;
  readonly #reflector: Reflector<T>;
  readonly #listeners = new Set<Listener<P>>();
  readonly #log: Logger;
  readonly #name: string;
  readonly #clock: Clock;
  readonly #resyncMs: number;
  #handlerErrors = 0;
  #started = false;

  constructor(opts: InformerOptions<T, P>) {
    this.#store = new Store<T, P>({
      project: opts.project,
      indexers: opts.indexers,
      uidIndex: opts.uidIndex,
    });
    const sink: ReflectorSink<T> = {
      // List items are projected page by page (prepare), so replace() receives projections.
      prepare: (obj) => this.#store.project(obj) as unknown as T,
      // Before any handler is registered (the first list) no delta is built: a handler added
      // later gets the store's content as adds.
      replace: (items, rv) =>
        this.#dispatch(
          this.#store.replaceProjected(items as unknown as P[], rv, this.#listeners.size > 0),
          true,
        ),
      apply: (type, obj) => {
        const events = type === "DELETED" ? this.#store.delete(obj) : this.#store.upsert(obj);
        this.#store.setResourceVersion(obj.metadata.resourceVersion);
        this.#dispatch(events, false);
      },
      bookmark: (rv) => this.#store.setResourceVersion(rv),
    };
    this.#reflector = new Reflector<T>({ ...opts, sink });
    const resource = (opts.client as { resource?: { plural?: string } }).resource;
    this.#name = opts.name ?? resource?.plural ?? "objects";
    this.#log = (opts.logger ?? nullLogger).with({ resource: this.#name });
    this.#clock = opts.clock;
    this.#resyncMs = opts.resyncPeriodMs ?? 0;
  }

  /** The cache. Read it; never write to it. */
  get store(): ReadonlyStore<P> {
    return this.#store;
  }

  get lastSyncResourceVersion(): string | undefined {
    return this.#reflector.lastSyncResourceVersion;
  }

  /** True once the first list is in the store (handlers may still be catching up). */
  hasSynced(): boolean {
    return this.#reflector.hasSynced();
  }

  /** Resolves once the first list is in the store; rejects when `signal` aborts or it stops first. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    return this.#reflector.waitForSync(signal);
  }

  /** Resolves once the informer has seen resourceVersion `rv` (equality; for tests and tools). */
  waitForResourceVersion(rv: string, signal?: AbortSignal): Promise<void> {
    return this.#reflector.waitForResourceVersion(rv, signal);
  }

  get stats(): InformerStats {
    let pending = 0;
    for (const l of this.#listeners) pending += l.pending;
    return {
      ...this.#reflector.stats,
      events: { ...this.#reflector.stats.events },
      pendingNotifications: pending,
      handlerErrors: this.#handlerErrors,
    };
  }

  /**
   * Registers handlers. When the store already holds objects, the handler first gets `onAdd`
   * for each of them, so it sees the same history as one registered before the first list.
   */
  addEventHandler(handler: EventHandler<P>): HandlerRegistration {
    const listener = new Listener<P>(handler, (e, n) => {
      this.#handlerErrors++;
      const key = objectKey(n.obj);
      this.#log.error(`Event handler for ${this.#name} ${key} failed: ${errorText(e)}`, {
        event: n.type,
      });
    });
    this.#listeners.add(listener);
    listener.replay(this.#store.list());
    return {
      remove: () => {
        listener.remove();
        this.#listeners.delete(listener);
      },
      drained: () => listener.drained(),
    };
  }

  /** Resolves once every handler has handled every notification queued so far. */
  async drained(): Promise<void> {
    await Promise.all([...this.#listeners].map((l) => l.drained()));
  }

  /**
   * Lists, watches and notifies until `signal` aborts; queued notifications are then dropped.
   * An informer runs once.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#started) throw new Error(`Informer for ${this.#name} can run only once`);
    this.#started = true;
    const resync = this.#resyncMs > 0 ? this.#resyncLoop(signal) : Promise.resolve();
    try {
      await this.#reflector.run(signal);
    } finally {
      await resync;
      for (const l of this.#listeners) l.remove();
      this.#listeners.clear();
    }
  }

  #dispatch(events: StoreEvent<P>[], fromRelist: boolean): void {
    if (events.length === 0) return;
    const ns: Notification<P>[] = fromRelist
      ? events.map((e) => (e.type === "delete" ? { type: "relist-delete", obj: e.obj } : e))
      : events;
    for (const l of this.#listeners) l.push(ns);
  }

  async #resyncLoop(signal: AbortSignal): Promise<void> {
    for (;;) {
      try {
        await this.#clock.sleep(this.#resyncMs, signal);
      } catch {
        return;
      }
      if (!this.#reflector.hasSynced()) continue;
      const ns = this.#store.list().map((obj): Notification<P> => ({ type: "resync", obj }));
      for (const l of this.#listeners) l.push(ns);
    }
  }
}
