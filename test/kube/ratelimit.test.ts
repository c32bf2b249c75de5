import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createRateLimiter, TokenBucket, unlimited } from "../../src/kube/ratelimit.ts";
import { FakeClock } from "../support/fake-clock.ts";

/** Starts `n` acquisitions and reports which have resolved. */
function startMany(
  limiter: { acquire(s?: AbortSignal): Promise<void> },
  n: number,
  signal?: AbortSignal,
) {
  const done: number[] = [];
  const all = Array.from({ length: n }, (_, i) =>
    limiter.acquire(signal).then(() => void done.push(i)),
  );
  return { done, all };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

describe("TokenBucket", () => {
  it("lets a full burst through at once, then one request per 1/qps", async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ qps: 2, burst: 3, clock });
    const { done } = startMany(bucket, 5);
    await settle();
    assert.deepEqual(done, [0, 1, 2]);
    await clock.advance(499);
    assert.deepEqual(done, [0, 1, 2]);
    await clock.advance(1);
    assert.deepEqual(done, [0, 1, 2, 3]);
    await clock.advance(500);
    assert.deepEqual(done, [0, 1, 2, 3, 4]);
  });

  it("serves waiting normal-priority callers before low-priority ones", async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ qps: 1, burst: 1, clock });
    await bucket.acquire();
    const order: string[] = [];
    const low = [0, 1].map((i) =>
      bucket.acquire(undefined, "low").then(() => order.push(`low${i}`)),
    );
    const normal = [0, 1].map((i) => bucket.acquire().then(() => order.push(`normal${i}`)));
    await clock.advance(4000);
    await Promise.all([...low, ...normal]);
    assert.deepEqual(order, ["normal0", "normal1", "low0", "low1"]);
  });

  it("lets a low-priority caller take a token only from a full bucket", async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ qps: 2, burst: 3, clock });
    let events = 0;
    await bucket.acquire(undefined, "low"); // full bucket: at once
    events++;
    const event = bucket.acquire(undefined, "low").then(() => events++);
    await settle();
    assert.equal(events, 1, "two tokens left of three: the event waits");
    // The burst stays for the normal requests that come next.
    const { done } = startMany(bucket, 2);
    await settle();
    assert.deepEqual(done, [0, 1]);
    assert.equal(events, 1);
    // Empty now; the event goes once the bucket has refilled (3 tokens at 2/s), not at 1.
    await clock.advance(1499);
    assert.equal(events, 1);
    await clock.advance(1);
    await event;
    assert.equal(events, 2);
    assert.equal(Math.round(bucket.tokens), 2);
  });

  it("a normal caller arriving while a low one waits for a full bucket waits only for one token", async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ qps: 1, burst: 5, clock });
    const { done: first } = startMany(bucket, 5);
    await settle();
    assert.equal(first.length, 5);
    let event = false;
    void bucket.acquire(undefined, "low").then(() => {
      event = true;
    });
    await clock.waitForSleepers(1); // the timer for a full bucket: 5 s
    const normal = startMany(bucket, 1);
    await clock.advance(1000);
    assert.deepEqual(normal.done, [0], "served after 1 s, not after the low caller's 5 s");
    assert.equal(event, false);
    await clock.advance(4000);
    assert.equal(event, false, "the normal caller took a token: 4 of 5");
    await clock.advance(1000);
    assert.equal(event, true);
  });

  it("keepBurst(false) lets low-priority callers take any token (a stopping controller's last events)", async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ qps: 1, burst: 5, clock });
    startMany(bucket, 5);
    await settle();
    const events: number[] = [];
    for (const i of [0, 1]) void bucket.acquire(undefined, "low").then(() => events.push(i));
    await clock.advance(1000);
    assert.equal(events.length, 0, "one token of five: held back");
    bucket.keepBurst(false);
    await settle();
    assert.deepEqual(events, [0], "the token there goes at once");
    await clock.advance(1000);
    assert.deepEqual(events, [0, 1]);
    bucket.keepBurst(true);
    const later = bucket.acquire(undefined, "low").then(() => events.push(2));
    await clock.advance(4000);
    assert.deepEqual(events, [0, 1], "4 of 5 tokens: held back again");
    await clock.advance(1000);
    await later;
    assert.deepEqual(events, [0, 1, 2]);
  });

  it("serves an expedited caller first, also one that was already waiting", async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ qps: 1, burst: 1, clock });
    await bucket.acquire();
    const order: string[] = [];
    const stopping = new AbortController();
    const normal = [0, 1].map((i) => bucket.acquire().then(() => order.push(`normal${i}`)));
    const save = bucket
      .acquire(undefined, "normal", stopping.signal)
      .then(() => order.push("pv save"));
    const low = bucket.acquire(undefined, "low").then(() => order.push("event"));
    stopping.abort(); // the save, queued last among the normal ones, moves ahead
    const late = bucket
      .acquire(undefined, "normal", stopping.signal)
      .then(() => order.push("late pv save"));
    await clock.advance(5000);
    await Promise.all([...normal, save, low, late]);
    assert.deepEqual(order, ["pv save", "late pv save", "normal0", "normal1", "event"]);
  });

  it("a waiting caller rejects when its fence aborts, and its place goes to the next", async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ qps: 1, burst: 1, clock });
    await bucket.acquire();
    const fence = new AbortController();
    const fenced = bucket.acquire(undefined, "normal", undefined, fence.signal);
    const other = bucket.acquire();
    let otherDone = false;
    void other.then(() => {
      otherDone = true;
    });
    fence.abort(new Error("writes stopped"));
    await assert.rejects(fenced, /writes stopped/);
    await clock.advance(1000);
    await settle();
    assert.equal(otherDone, true, "the next caller gets the token");
    await assert.rejects(
      bucket.acquire(undefined, "normal", undefined, fence.signal),
      /writes stopped/,
      "an aborted fence rejects at once",
    );
    await assert.rejects(
      unlimited.acquire(undefined, "normal", undefined, fence.signal),
      /writes stopped/,
    );
  });

  it("an expedited caller that aborts gives its place back", async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ qps: 1, burst: 1, clock });
    await bucket.acquire();
    const stopping = new AbortController();
    const cancel = new AbortController();
    const save = bucket.acquire(cancel.signal, "normal", stopping.signal);
    const other = bucket.acquire();
    stopping.abort();
    cancel.abort(new Error("cancelled"));
    await assert.rejects(save, /cancelled/);
    await clock.advance(1000);
    await other;
    assert.equal(bucket.tokens, 0);
  });

  it("refills up to the burst size only", async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ qps: 10, burst: 2, clock });
    await bucket.acquire();
    await bucket.acquire();
    await clock.advance(60_000);
    assert.equal(bucket.tokens, 2);
    const { done } = startMany(bucket, 3);
    await settle();
    assert.deepEqual(done, [0, 1]);
    await clock.advance(100);
    assert.deepEqual(done, [0, 1, 2]);
  });

  it("gives the token back when a waiting caller aborts", async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ qps: 1, burst: 1, clock });
    await bucket.acquire();
    const ac = new AbortController();
    const waiting = bucket.acquire(ac.signal);
    await clock.waitForSleepers(1);
    assert.ok(bucket.tokens < 0);
    ac.abort(new Error("stop"));
    await assert.rejects(waiting, /stop/);
    await clock.advance(1000);
    assert.equal(bucket.tokens, 1);
    await bucket.acquire();
  });

  it("rejects at once when the signal is already aborted", async () => {
    const bucket = new TokenBucket({ qps: 1, burst: 1, clock: new FakeClock() });
    await assert.rejects(bucket.acquire(AbortSignal.abort(new Error("gone"))), /gone/);
    assert.equal(bucket.tokens, 1);
  });
});

describe("createRateLimiter()", () => {
  it("uses client-go's defaults 5 qps / burst 10 for zeros", () => {
    const l = createRateLimiter({ qps: 0, burst: 0, clock: new FakeClock() });
    assert.ok(l instanceof TokenBucket);
    assert.equal(l.qps, 5);
    assert.equal(l.burst, 10);
  });

  it("disables limiting for a negative qps", async () => {
    const l = createRateLimiter({ qps: -1, burst: 0, clock: new FakeClock() });
    assert.equal(l, unlimited);
    const { done } = startMany(l, 100);
    await settle();
    assert.equal(done.length, 100);
  });

  it("keeps separate budgets separate", async () => {
    const clock = new FakeClock();
    const main = createRateLimiter({ qps: 5, burst: 1, clock });
    const capacity = createRateLimiter({ qps: 1, burst: 1, clock });
    await main.acquire();
    await capacity.acquire();
    const a = startMany(main, 1);
    const b = startMany(capacity, 1);
    await clock.advance(200);
    assert.deepEqual([a.done.length, b.done.length], [1, 0]);
    await clock.advance(800);
    assert.deepEqual([a.done.length, b.done.length], [1, 1]);
  });

  it("raises a burst below 1 to 1", () => {
    const l = createRateLimiter({ qps: 3, burst: -4, clock: new FakeClock() }) as TokenBucket;
    assert.equal(l.burst, 1);
  });
});
