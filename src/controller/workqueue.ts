/**
 * A rate-limited work queue with client-go's guarantees: a key is handed to at most one worker
 * at a time; adding a key that is queued is a no-op; adding a key that is being processed
 * queues it again once the worker calls `done`. Failed keys come back after a per-key
 * exponential delay (`retryStart` doubling up to `retryMax`), and `forget` resets that delay.
 *
 * There is deliberately no periodic resync: a key comes back only when it changed, when it
 * failed (at its back-off), or when a caller asks for it — so `--retry-interval-max` is the
 * real upper bound between retries (upstream #849 loses it to a 15-minute resync).
 */
import type { WorkQueueMetrics } from "../metrics/provisioner-metrics.ts";
import type { Clock } from "../util/clock.ts";

export type { WorkQueueMetrics };

export interface WorkQueueOptions {
  clock: Clock;
  /** First retry delay in ms (`--retry-interval-start`). */
  retryStartMs: number;
  /** Longest retry delay in ms (`--retry-interval-max`). */
  retryMaxMs: number;
  /** Name used in metrics (`claims`, `volumes`, ...). */
  name: string;
  /** Observes queue depth and latency; optional. */
  metrics?: WorkQueueMetrics;
}

/** Why a delayed add was cancelled: one shared reason (an abort without one makes an error). */
const CANCELLED = new Error("delayed add cancelled");

export class WorkQueue<K> {
  readonly #opts: WorkQueueOptions;
  readonly #queue: K[] = [];
  readonly #queued = new Set<K>();
  readonly #processing = new Set<K>();
  readonly #dirty = new Set<K>();
  readonly #failures = new Map<K, number>();
  readonly #delayed = new Map<K, { at: number; abort: AbortController }>();
  readonly #getters: { resolve: (k: K | undefined) => void; signal?: AbortSignal }[] = [];
  /**
   * Signals that already have this queue's abort listener: one per signal, not one per wait
   * (idle workers wait again after every key, and adding to a signal with many listeners is
   * linear in their number).
   */
  readonly #watched = new WeakSet<AbortSignal>();
  #shutdown = false;
  /** Metrics only: when each queued key was added and each processed key was taken (ms). */
  readonly #addedAt = new Map<K, number>();
  readonly #takenAt = new Map<K, number>();
  readonly #unregisterMetrics: (() => void) | undefined;

  constructor(opts: WorkQueueOptions) {
    this.#opts = opts;
    this.#unregisterMetrics = opts.metrics?.created?.(opts.name, () => this.#takenAt.values());
  }

  /** Metrics: `key` leaves the queue for a worker. */
  #taken(key: K): void {
    const m = this.#opts.metrics;
    if (!m?.waited) return;
    const now = this.#opts.clock.now();
    m.waited(this.#opts.name, (now - (this.#addedAt.get(key) ?? now)) / 1000);
    this.#addedAt.delete(key);
    this.#takenAt.set(key, now);
  }

  get length(): number {
    return this.#queue.length;
  }

  /** Keys queued, delayed or being processed. */
  get size(): number {
    const all = new Set<K>([...this.#queued, ...this.#processing, ...this.#delayed.keys()]);
    return all.size;
  }

  get isShutdown(): boolean {
    return this.#shutdown;
  }

  /** Queues `key` now (cancelling a pending delayed add of it). */
  add(key: K): void {
    if (this.#shutdown) return;
    const delayed = this.#delayed.get(key);
    if (delayed) {
      delayed.abort.abort(CANCELLED);
      this.#delayed.delete(key);
    }
    if (this.#processing.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#opts.metrics?.added(this.#opts.name);
    const getter = this.#getters.shift();
    if (getter) {
      this.#processing.add(key);
      this.#taken(key);
      getter.resolve(key);
      return;
    }
    if (this.#opts.metrics?.waited) this.#addedAt.set(key, this.#opts.clock.now());
    this.#queued.add(key);
    this.#queue.push(key);
    this.#opts.metrics?.depth(this.#opts.name, this.#queue.length);
  }

  /** Queues `key` after `ms`; an earlier pending delay for it wins. */
  addAfter(key: K, ms: number): void {
    if (this.#shutdown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.#opts.clock.now() + ms;
    const existing = this.#delayed.get(key);
    if (existing && existing.at <= at) return;
    existing?.abort.abort(CANCELLED);
    const abort = new AbortController();
    this.#delayed.set(key, { at, abort });
    this.#opts.clock.sleep(ms, abort.signal).then(
      () => {
        if (this.#delayed.get(key)?.abort === abort) {
          this.#delayed.delete(key);
          this.add(key);
        }
      },
      () => {},
    );
  }

  /** The delay the next `addRateLimited(key)` will use. */
  nextDelay(key: K): number {
    const n = this.#failures.get(key) ?? 0;
    const d = this.#opts.retryStartMs * 2 ** n;
    return Math.min(Number.isFinite(d) ? d : this.#opts.retryMaxMs, this.#opts.retryMaxMs);
  }

  /** Queues `key` after its exponential back-off, and counts the failure. */
  addRateLimited(key: K): number {
    const delay = this.nextDelay(key);
    this.#failures.set(key, (this.#failures.get(key) ?? 0) + 1);
    this.#opts.metrics?.retried(this.#opts.name);
    this.addAfter(key, delay);
    return delay;
  }

  /** Number of failures recorded for `key` since the last `forget`. */
  failures(key: K): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Resets the back-off of `key`. */
  forget(key: K): void {
    this.#failures.delete(key);
  }

  /** Drops a pending delayed add of `key` (e.g. the object was deleted). */
  cancelDelayed(key: K): void {
    const d = this.#delayed.get(key);
    if (d) {
      d.abort.abort(CANCELLED);
      this.#delayed.delete(key);
    }
  }

  /**
   * Waits for the next key. Resolves `undefined` once the queue is shut down or `signal`
   * aborts, even if keys are still queued.
   */
  get(signal?: AbortSignal): Promise<K | undefined> {
    // Once stopping, keys still queued are left alone: they are re-derived on the next start.
    if (this.#shutdown || signal?.aborted) return Promise.resolve(undefined);
    const key = this.#queue.shift();
    if (key !== undefined) {
      this.#queued.delete(key);
      this.#processing.add(key);
      this.#opts.metrics?.depth(this.#opts.name, this.#queue.length);
      this.#taken(key);
      return Promise.resolve(key);
    }
    if (this.#shutdown || signal?.aborted) return Promise.resolve(undefined);
    if (signal && !this.#watched.has(signal)) {
      this.#watched.add(signal);
      signal.addEventListener(
        "abort",
        () => {
          const waiting = this.#getters.filter((g) => g.signal === signal);
          if (waiting.length === 0) return;
          this.#getters.splice(
            0,
            this.#getters.length,
            ...this.#getters.filter((g) => g.signal !== signal),
          );
          for (const g of waiting) g.resolve(undefined);
        },
        { once: true },
      );
    }
    return new Promise<K | undefined>((resolve) => {
      this.#getters.push({ resolve, signal });
    });
  }

  /** Marks `key` processed; re-queues it if it was added meanwhile. */
  done(key: K): void {
    this.#processing.delete(key);
    const taken = this.#takenAt.get(key);
    if (taken !== undefined) {
      this.#takenAt.delete(key);
      this.#opts.metrics?.worked?.(this.#opts.name, (this.#opts.clock.now() - taken) / 1000);
    }
    if (this.#dirty.delete(key)) this.add(key);
  }

  /** Stops handing out keys; pending getters resolve `undefined`, delays are cancelled. */
  shutDown(): void {
    if (!this.#shutdown) this.#unregisterMetrics?.();
    this.#shutdown = true;
    for (const d of this.#delayed.values()) d.abort.abort(CANCELLED);
    this.#delayed.clear();
    for (const g of this.#getters.splice(0)) g.resolve(undefined);
  }
}

/**
 * Runs `workers` loops that take keys from `queue` and call `handle`; resolves once the queue
 * is shut down or `signal` aborts, after the in-flight handlers have finished (drain).
 */
export async function runWorkers<K>(
  queue: WorkQueue<K>,
  workers: number,
  handle: (key: K) => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  const loop = async () => {
    for (;;) {
      const key = await queue.get(signal);
      if (key === undefined) return;
      try {
        await handle(key);
      } finally {
        queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, workers) }, loop));
}
