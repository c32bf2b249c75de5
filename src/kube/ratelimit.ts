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

export interface RateLimiter {
  /**
   * Resolves when the caller may send one request. Rejects with the signal's reason if it aborts
   * first; the token is then given back.
   */
  acquire(signal?: AbortSignal): Promise<void>;
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
  acquire(signal) {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return Promise.resolve();
  },
};

/**
 * A token bucket. Waiting callers reserve their token up front (the balance may go negative), so
 * they are served in order and each sleeps exactly until its token has been refilled.
 */
export class TokenBucket implements RateLimiter {
  readonly qps: number;
  readonly burst: number;
  #clock: Clock;
  #tokens: number;
  #last: number;

  constructor(opts: { qps: number; burst: number; clock: Clock }) {
    if (!(opts.qps > 0)) throw new RangeError(`qps must be positive, got ${opts.qps}`);
    this.qps = opts.qps;
    this.burst = Math.max(1, Math.floor(opts.burst));
    this.#clock = opts.clock;
    this.#tokens = this.burst;
    this.#last = opts.clock.now();
  }

  /** Tokens available now (negative while callers wait). */
  get tokens(): number {
    this.#refill();
    return this.#tokens;
  }

  async acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw signal.reason;
    this.#refill();
    this.#tokens -= 1;
    if (this.#tokens >= 0) return;
    const waitMs = Math.ceil((-this.#tokens / this.qps) * 1000);
    try {
      await this.#clock.sleep(waitMs, signal);
    } catch (err) {
      this.#refill();
      this.#tokens = Math.min(this.burst, this.#tokens + 1);
      throw err;
    }
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
