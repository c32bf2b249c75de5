/**
 * The manager's side of a fast hand-over: one budget from the stop to the hand-off. Syncs are
 * told at once that the process is stopping (no new CreateVolume), secondary loops stop at once,
 * operations still running at the budget less the flush reserve are cancelled (their intents
 * stay for the next leader), the intent journal flushes in what is left, and only once the write
 * fence says no write of the term can reach the API any more may the elector release the Lease.
 * The fake clock makes every step an ordered event; nothing here measures time.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  createManager,
  type Elector,
  type ManagerOptions,
  type QueueController,
  type SyncResult,
} from "../../src/controller/manager.ts";
import { WorkQueue } from "../../src/controller/workqueue.ts";
import { nullLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { deferred, settle } from "./memory-leases.ts";

const until = (signal: AbortSignal) =>
  new Promise<void>((r) => {
    if (signal.aborted) r();
    else signal.addEventListener("abort", () => r(), { once: true });
  });

/**
 * A world of one claim-like controller with two keys in flight at the stop: `quick` finishes
 * once told the process stops (a PV save that gets its token), `slow` runs until cancelled (a
 * CreateVolume that does not return in time).
 */
function world(
  order: string[],
  opts: Partial<ManagerOptions> & { fenceAnswers?: "yes" | "never" } = {},
) {
  const clock = new FakeClock();
  const queue = new WorkQueue<string>({
    clock,
    retryStartMs: 10,
    retryMaxMs: 1_000,
    name: "claims",
  });
  const sync = async (
    key: string,
    signal: AbortSignal,
    stopping: AbortSignal,
  ): Promise<SyncResult> => {
    order.push(`started ${key}`);
    await until(stopping);
    if (key === "quick") {
      order.push("quick finished");
      return { kind: "done" };
    }
    await until(signal);
    order.push("slow cancelled");
    return { kind: "retry" };
  };
  const controller: QueueController<string> = {
    what: "Claim",
    keyField: "uid",
    queue,
    workers: 2,
    start() {
      queue.add("quick");
      queue.add("slow");
    },
    sync,
  };
  const manager = createManager({
    clock,
    logger: nullLogger,
    build: () => ({
      informers: [],
      controllers: [controller],
      runnables: [
        {
          name: "sweep",
          async run(signal) {
            await until(signal);
            order.push("sweep stopped");
          },
        },
      ],
    }),
    fence: {
      open: () => order.push("fence opened"),
      async close(deadline) {
        order.push("fence closing");
        if (opts.fenceAnswers === "never") {
          await until(deadline);
          return false;
        }
        return true;
      },
    },
    retryMaxMs: 1_000,
    ...opts,
  });
  return { clock, manager };
}

/** An elector that leads at once and records the hand-off. */
function elector(order: string[]): Elector {
  return {
    async run(lead, signal) {
      await lead(signal, (safe) => order.push(`hand-off safe=${safe}`));
      order.push("work ended");
      return "stopped";
    },
  };
}

describe("manager hand-over", () => {
  it("stops new work at once, cancels what is left at the budget, flushes the journal, fences writes, then hands off", async () => {
    const order: string[] = [];
    const w = world(order, {
      elector: elector(order),
      handOverMs: 1_500,
      flushReserveMs: 300,
      handOffFlushers: [
        async () => {
          order.push("journal flushed");
        },
      ],
      flushers: [
        async (deadline) => {
          await until(deadline);
          order.push("events cut");
        },
      ],
    });
    const stop = new AbortController();
    const done = w.manager.run(stop.signal);
    await settle();
    assert.deepEqual(order, ["fence opened", "started quick", "started slow"]);

    stop.abort();
    await settle();
    assert.deepEqual(
      new Set(order.slice(3)),
      new Set(["quick finished", "sweep stopped"]),
      "the stop reaches syncs and secondary loops at once; nothing is cancelled yet",
    );

    await w.clock.advance(1_199);
    await settle();
    assert.ok(
      !order.includes("slow cancelled"),
      "operations run until the budget less the reserve",
    );

    await w.clock.advance(1);
    await settle();
    assert.equal(await done, "stopped");
    assert.deepEqual(order.slice(5), [
      "slow cancelled",
      "journal flushed",
      "events cut",
      "fence closing",
      "hand-off safe=true",
      "work ended",
    ]);
  });

  it("calls onStarted once per term, after the fence opened and the workers run", async () => {
    const order: string[] = [];
    const w = world(order, { onStarted: () => order.push("on started") });
    const stop = new AbortController();
    const done = w.manager.run(stop.signal);
    await settle();
    assert.equal(order.filter((x) => x === "on started").length, 1);
    assert.ok(order.indexOf("on started") > order.indexOf("fence opened"));
    stop.abort();
    let ended = false;
    void done.then(() => {
      ended = true;
    });
    for (let i = 0; i < 20 && !ended; i++) {
      await w.clock.advance(500);
      await settle();
    }
    assert.ok(ended, "the manager stopped");
    assert.equal(order.filter((x) => x === "on started").length, 1);
  });

  it("hands off at the end of the budget even when the journal's flush cannot finish", async () => {
    const order: string[] = [];
    const journal = deferred();
    const w = world(order, {
      elector: elector(order),
      handOverMs: 1_500,
      flushReserveMs: 300,
      handOffFlushers: [() => journal.promise],
    });
    const stop = new AbortController();
    const done = w.manager.run(stop.signal);
    await settle();
    stop.abort();
    await settle();
    await w.clock.advance(1_200);
    await settle();
    assert.ok(order.includes("slow cancelled"));
    assert.ok(!order.includes("fence closing"), "the journal's flush gets the rest of the budget");

    await w.clock.advance(300);
    await settle();
    assert.equal(await done, "stopped");
    assert.deepEqual(order.slice(-3), ["fence closing", "hand-off safe=true", "work ended"]);
  });

  it("does not let the Lease go while a write already sent stays unanswered", async () => {
    const order: string[] = [];
    const w = world(order, {
      elector: elector(order),
      handOverMs: 1_500,
      fenceWaitMs: 1_000,
      fenceAnswers: "never",
    });
    const stop = new AbortController();
    const done = w.manager.run(stop.signal);
    await settle();
    stop.abort();
    await settle();
    await w.clock.advance(1_500);
    await settle();
    assert.equal(order.at(-1), "fence closing");
    await w.clock.advance(1_000);
    await settle();
    assert.equal(await done, "stopped");
    assert.deepEqual(order.slice(-2), ["hand-off safe=false", "work ended"]);
  });

  it("fences the writes of a term that stopped before its informers synced, and reopens them for the next", async () => {
    const order: string[] = [];
    let terms = 0;
    const manager = createManager({
      clock: new FakeClock(),
      logger: nullLogger,
      build: () => ({
        informers: [
          {
            run: async (signal) => until(signal),
            waitForSync: async (signal) => {
              await until(signal!);
              throw new Error("stopped");
            },
          },
        ],
        controllers: [],
      }),
      fence: {
        open: () => order.push(`open ${++terms}`),
        close: async () => {
          order.push(`close ${terms}`);
          return true;
        },
      },
      retryMaxMs: 1_000,
      elector: {
        async run(lead, signal) {
          const first = new AbortController();
          const p = lead(first.signal, (safe) => order.push(`hand-off safe=${safe}`));
          first.abort(); // the Lease was lost before the informers synced
          await p;
          await lead(signal, (safe) => order.push(`hand-off safe=${safe}`));
          return "stopped";
        },
      },
    });
    const stop = new AbortController();
    const done = manager.run(stop.signal);
    await settle();
    stop.abort();
    assert.equal(await done, "stopped");
    assert.deepEqual(order, [
      "open 1",
      "close 1",
      "hand-off safe=true",
      "open 2",
      "close 2",
      "hand-off safe=true",
    ]);
  });
});
