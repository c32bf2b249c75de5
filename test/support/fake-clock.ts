/**
 * A fake {@link Clock} for tests: time moves only when a test says so.
 */
import type { Clock } from "../../src/util/clock.ts";

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

/**
 * A clock whose time moves only when a test says so. `advance(ms)` fires every sleeper whose
 * deadline has been reached, in deadline order, letting promise callbacks run in between.
 */
export class FakeClock implements Clock {
  #now: number;
  #sleepers: { at: number; seq: number; resolve: () => void }[] = [];
  #seq = 0;
  #waiters: (() => void)[] = [];

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      const entry = { at: this.#now + Math.max(0, ms), seq: this.#seq++, resolve: () => {} };
      const onAbort = () => {
        this.#sleepers = this.#sleepers.filter((s) => s !== entry);
        reject(abortReason(signal!));
      };
      entry.resolve = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#sleepers.push(entry);
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  /** Number of pending sleeps. */
  get pending(): number {
    return this.#sleepers.length;
  }

  /** Resolves once at least `count` sleeps are pending (lets a test wait for a loop to park). */
  async waitForSleepers(count = 1): Promise<void> {
    while (this.#sleepers.length < count) {
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /** Moves time forward by `ms`, waking sleepers whose deadline passes. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      this.#sleepers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#sleepers[0];
      if (!next || next.at > target) break;
      this.#sleepers.shift();
      this.#now = Math.max(this.#now, next.at);
      next.resolve();
      // Let the woken code run up to its next await before waking the next sleeper.
      for (let i = 0; i < 10; i++) await Promise.resolve();
    }
    this.#now = target;
  }
}
