import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runWorkers, WorkQueue } from "../../src/controller/workqueue.ts";
import { FakeClock } from "../support/fake-clock.ts";

function queue(clock = new FakeClock()) {
  return {
    clock,
    q: new WorkQueue<string>({ clock, retryStartMs: 1000, retryMaxMs: 8000, name: "t" }),
  };
}

describe("WorkQueue", () => {
  it("deduplicates keys that are already queued", async () => {
    const { q } = queue();
    q.add("a");
    q.add("a");
    q.add("b");
    assert.equal(q.length, 2);
    assert.equal(await q.get(), "a");
    assert.equal(await q.get(), "b");
  });

  it("hands a key to one worker at a time and re-queues it when added while processing", async () => {
    const { q } = queue();
    q.add("a");
    const k = await q.get();
    q.add("a");
    assert.equal(q.length, 0, "a key being processed is not queued twice");
    q.done(k!);
    assert.equal(q.length, 1);
    assert.equal(await q.get(), "a");
  });

  it("backs off exponentially per key up to the maximum and forgets on success", async () => {
    const { q } = queue();
    assert.deepEqual(
      [1, 2, 3, 4, 5].map(() => q.addRateLimited("a")),
      [1000, 2000, 4000, 8000, 8000],
    );
    assert.equal(q.failures("a"), 5);
    q.forget("a");
    assert.equal(q.nextDelay("a"), 1000);
  });

  it("delivers a rate-limited key only after its delay has passed", async () => {
    const { q, clock } = queue();
    q.addRateLimited("a");
    await clock.waitForSleepers(1);
    await clock.advance(999);
    assert.equal(q.length, 0);
    await clock.advance(1);
    assert.equal(q.length, 1);
  });

  it("lets an immediate add override a pending delayed add", async () => {
    const { q, clock } = queue();
    q.addAfter("a", 5000);
    q.add("a");
    assert.equal(q.length, 1);
    await q.get();
    q.done("a");
    await clock.advance(5000);
    assert.equal(q.length, 0, "the cancelled delayed add does not fire");
  });

  it("keeps the earlier of two delayed adds", async () => {
    const { q, clock } = queue();
    q.addAfter("a", 5000);
    q.addAfter("a", 1000);
    await clock.advance(1000);
    assert.equal(q.length, 1);
  });

  it("wakes a waiting getter when a key arrives and resolves undefined on shutdown", async () => {
    const { q } = queue();
    const pending = q.get();
    q.add("x");
    assert.equal(await pending, "x");
    const waiting = q.get();
    q.shutDown();
    assert.equal(await waiting, undefined);
  });

  it("runWorkers processes every key with bounded concurrency and drains on abort", async () => {
    const { q } = queue();
    const ac = new AbortController();
    let active = 0;
    let maxActive = 0;
    const seen: string[] = [];
    const releases: (() => void)[] = [];
    const running = runWorkers(
      q,
      2,
      async (k) => {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise<void>((r) => releases.push(r));
        seen.push(k);
        active--;
      },
      ac.signal,
    );
    for (const k of ["a", "b", "c"]) q.add(k);
    while (releases.length < 2) await new Promise((r) => setImmediate(r));
    assert.equal(maxActive, 2);
    releases.shift()!();
    while (releases.length < 2) await new Promise((r) => setImmediate(r));
    ac.abort();
    for (const r of releases.splice(0)) r();
    await running;
    assert.deepEqual(seen.sort(), ["a", "b", "c"]);
  });

  it("a waiting get resolves undefined when its signal aborts; one listener per signal, not per wait", async () => {
    const { q } = queue();
    const ac = new AbortController();
    const other = new AbortController();
    let added = 0;
    const add = ac.signal.addEventListener.bind(ac.signal);
    ac.signal.addEventListener = ((t: string, fn: EventListener, o?: AddEventListenerOptions) => {
      added++;
      add(t, fn, o);
    }) as typeof ac.signal.addEventListener;
    for (let i = 0; i < 5; i++) {
      const got = q.get(ac.signal);
      q.add(`k${i}`);
      assert.equal(await got, `k${i}`);
      q.done(`k${i}`);
    }
    const waiting = [q.get(ac.signal), q.get(ac.signal)];
    const unaffected = q.get(other.signal);
    ac.abort();
    assert.deepEqual(await Promise.all(waiting), [undefined, undefined]);
    assert.equal(added, 1, "one abort listener for the signal over seven waits");
    q.add("later");
    assert.equal(await unaffected, "later", "a getter of another signal still gets keys");
  });
});
