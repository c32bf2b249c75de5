/**
 * A {@link FakeClock} that also records which sleeps were asked for, so a test can wait for "the
 * code under test is now waiting 1 s before its next try" even while other sleeps (per-call
 * deadlines) are pending, then move time on.
 */
import type { Clock } from "../../src/util/clock.ts";
import { FakeClock } from "../support/fake-clock.ts";

export class StepClock implements Clock {
  readonly fake = new FakeClock();
  /** Durations of every sleep requested, in order. */
  readonly sleeps: number[] = [];
  #waiters = new Set<() => void>();

  now(): number {
    return this.fake.now();
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    for (const wake of [...this.#waiters]) wake();
    return this.fake.sleep(ms, signal);
  }

  /** Resolves once `count` sleeps of exactly `ms` have been requested in total. */
  waitForSleeps(ms: number, count: number): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.sleeps.filter((s) => s === ms).length < count) return;
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
      check();
    });
  }

  advance(ms: number): Promise<void> {
    return this.fake.advance(ms);
  }
}
