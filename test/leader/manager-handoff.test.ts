/**
 * The manager's side of a fast hand-over: on a clean stop it tells the elector it may release
 * the Lease once the intent journal is flushed, without waiting for best-effort writes (events).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createManager, type Elector } from "../../src/controller/manager.ts";
import { nullLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { deferred, settle } from "./memory-leases.ts";

describe("manager hand-off", () => {
  it("hands off after the journal flush, before the events flush", async () => {
    const order: string[] = [];
    const journal = deferred();
    const events = deferred();
    const elector: Elector = {
      async run(lead, signal) {
        await lead(signal, () => order.push("hand-off"));
        order.push("work ended");
        return "stopped";
      },
    };
    const manager = createManager({
      clock: new FakeClock(),
      logger: nullLogger,
      build: () => ({ informers: [], controllers: [] }),
      handOffFlushers: [
        async () => {
          await journal.promise;
          order.push("journal flushed");
        },
      ],
      flushers: [
        async () => {
          await events.promise;
          order.push("events flushed");
        },
      ],
      retryMaxMs: 1_000,
      elector,
    });
    const stop = new AbortController();
    const done = manager.run(stop.signal);
    await settle();
    stop.abort();
    await settle();
    assert.deepEqual(order, [], "nothing is handed off before the journal is flushed");
    journal.resolve();
    await settle();
    assert.deepEqual(order, ["journal flushed", "hand-off"]);
    events.resolve();
    assert.equal(await done, "stopped");
    assert.deepEqual(order, ["journal flushed", "hand-off", "events flushed", "work ended"]);
  });
});
