/**
 * Client-side rate limiting of API requests, as client-go's token bucket
 * (`flowcontrol.NewTokenBucketRateLimiter`): the bucket holds up to `burst` tokens, starts full,
 * refills at `qps` tokens per second, and every request takes one, waiting its turn (first come,
 * first served) when the bucket is empty.
 *
 * Values follow client-go's `rest.Config`: `qps` 0 means the default 5, `burst` 0 the default 10,
 * and a negative `qps` disables limiting. Each budget is its own instance: the main client
 * (`--kube-api-qps` / `--kube-api-burst`), the CSIStorageCapacity client
 * (`--kube-api-capacity-qps` / `--kube-api-capacity-burst`) and leader election.
 */
import type { Clock } from "../util/clock.ts";

/**
 * `"low"`: a request that waits behind every normal one (Normal events) and, while the limiter
 * keeps its burst for normal requests (the default, see {@link RateLimiter.keepBurst}), takes a
 * token only from a full bucket: it never spends the burst that the next normal requests may
 * need, so a PV create never waits behind such an event, not even one sent a moment before it.
 */
export type Priority = "normal" | "low";

export interface RateLimiter {
  /**
   * Resolves when the caller may send one request. Rejects with the signal's reason if it aborts
   * first; the token is then given back. Once `expedite` aborts (at once when it already has),
   * the caller goes ahead of every waiting caller that was not expedited: a leader that is
   * handing over saves the PVs of volumes already created before anything else. `fence`
   * rejects like `signal` (a second signal without the cost of combining the two per call).
   */
  acquire(
    signal?: AbortSignal,
    priority?: Priority,
    expedite?: AbortSignal,
    fence?: AbortSignal,
  ): Promise<void>;
  /**
   * Whether low-priority requests wait for a full bucket (true, the default). A controller that
   * is stopping turns it off: no normal request follows, so its last events need not wait.
   */
  keepBurst(keep: boolean): void;
}

export interface TokenBucketOptions {
  /** Tokens per second. 0 means client-go's default 5; negative disables limiting. */
  qps: number;
  /** Bucket size. 0 means client-go's default 10; values below 1 are raised to 1. */
  burst: number;
  clock: Clock;
}

/** client-go's `rest.DefaultQPS`. */
export const DEFAULT_QPS = 5;
/** client-go's `rest.DefaultBurst`. */
export const DEFAULT_BURST = 10;

/** A limiter that never waits. */
export const unlimited: RateLimiter = {
  acquire(signal, _priority, _expedite, fence) {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (fence?.aborted) return Promise.reject(fence.reason);
    return Promise.resolve();
  },
  keepBurst() {},
};

interface Waiter {
  resolve(): void;
  done: boolean;
}

/**
 * A token bucket with three waiting lines. A caller takes a token at once when one is there and
 * nobody it would wait behind waits; otherwise it queues, and each refilled token goes to the
 * first expedited caller, else the first normal-priority one, else — from a full bucket — the
 * first low-priority one.
 */
export class TokenBucket implements RateLimiter {
  readonly qps: number;
  readonly burst: number;
  #clock: Clock;
  #tokens: number;
  #last: number;
  #urgent: Waiter[] = [];
  #normal: Waiter[] = [];
  #low: Waiter[] = [];
  #timer: AbortController | undefined;
  #timerAt = 0;
  /** Tokens a low-priority caller needs in the bucket before it takes one. */
  #lowNeeds: number;

  constructor(opts: { qps: number; burst: number; clock: Clock }) {
    if (!(opts.qps > 0)) throw new RangeError(`qps must be positive, got ${opts.qps}`);
    this.qps = opts.qps;
    this.burst = Math.max(1, Math.floor(opts.burst));
    this.#clock = opts.clock;
    this.#tokens = this.burst;
    this.#lowNeeds = this.burst;
    this.#last = opts.clock.now();
  }

  keepBurst(keep: boolean): void {
    this.#lowNeeds = keep ? this.burst : 1;
    this.#schedule();
  }

  /** Tokens available now, less one per waiting caller (negative while callers wait). */
  get tokens(): number {
    this.#refill();
    return this.#tokens - this.#waiting();
  }

  #waiting(): number {
    return this.#urgent.length + this.#normal.length + this.#low.length;
  }

  acquire(
    signal?: AbortSignal,
    priority: Priority = "normal",
    expedite?: AbortSignal,
    fence?: AbortSignal,
  ): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (fence?.aborted) return Promise.reject(fence.reason);
    this.#refill();
    // With a token left, only low-priority callers can be waiting (for a full bucket).
    if (
      this.#tokens >= 1 &&
      this.#urgent.length + this.#normal.length === 0 &&
      (priority !== "low" || (this.#low.length === 0 && this.#tokens >= this.#lowNeeds))
    ) {
      this.#tokens -= 1;
      return Promise.resolve();
    }
    let line = expedite?.aborted ? this.#urgent : priority === "low" ? this.#low : this.#normal;
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { resolve, done: false };
      line.push(w);
      const cleanups: (() => void)[] = [];
      for (const sig of [signal, fence]) {
        if (!sig) continue;
        const onAbort = () => {
          if (w.done) return;
          w.done = true;
          const i = line.indexOf(w);
          if (i >= 0) line.splice(i, 1);
          for (const c of cleanups) c();
          reject(sig.reason);
        };
        sig.addEventListener("abort", onAbort, { once: true });
        cleanups.push(() => sig.removeEventListener("abort", onAbort));
      }
      if (expedite && line !== this.#urgent) {
        const onExpedite = () => {
          if (w.done) return;
          const i = line.indexOf(w);
          if (i >= 0) line.splice(i, 1);
          line = this.#urgent;
          line.push(w);
        };
        expedite.addEventListener("abort", onExpedite, { once: true });
        cleanups.push(() => expedite.removeEventListener("abort", onExpedite));
      }
      if (cleanups.length > 0) {
        w.resolve = () => {
          for (const c of cleanups) c();
          resolve();
        };
      }
      this.#schedule();
    });
  }

  /** The next caller to serve when a token is there, removed from its line. */
  #next(): Waiter | undefined {
    if (this.#urgent.length > 0) return this.#urgent.shift();
    if (this.#normal.length > 0) return this.#normal.shift();
    if (this.#low.length > 0 && this.#tokens >= this.#lowNeeds) return this.#low.shift();
    return undefined;
  }

  #schedule(): void {
    this.#refill();
    while (this.#tokens >= 1) {
      const w = this.#next();
      if (!w) break;
      this.#tokens -= 1;
      w.done = true;
      w.resolve();
    }
    if (this.#waiting() === 0) return;
    // Only low-priority callers left: they may wait for a full bucket.
    const target = this.#waiting() === this.#low.length ? this.#lowNeeds : 1;
    const waitMs = Math.max(1, Math.ceil(((target - this.#tokens) / this.qps) * 1000));
    const at = this.#clock.now() + waitMs;
    if (this.#timer) {
      // A caller that needs fewer tokens than the one the timer waits for came in.
      if (at >= this.#timerAt) return;
      this.#timer.abort();
    }
    const ac = new AbortController();
    this.#timer = ac;
    this.#timerAt = at;
    this.#clock.sleep(waitMs, ac.signal).then(
      () => {
        if (this.#timer === ac) this.#timer = undefined;
        this.#schedule();
      },
      () => {
        if (this.#timer === ac) this.#timer = undefined;
      },
    );
  }

  #refill(): void {
    const now = this.#clock.now();
    const elapsed = now - this.#last;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.burst, this.#tokens + (elapsed * this.qps) / 1000);
      this.#last = now;
    }
  }
}

/** Builds the limiter for a `qps` / `burst` pair with client-go's defaults and off switch. */
export function createRateLimiter(opts: TokenBucketOptions): RateLimiter {
  if (opts.qps < 0) return unlimited;
  const qps = opts.qps === 0 ? DEFAULT_QPS : opts.qps;
  const burst = opts.burst === 0 ? DEFAULT_BURST : opts.burst;
  return new TokenBucket({ qps, burst, clock: opts.clock });
}
