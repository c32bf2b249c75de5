/**
 * The event recorder on its own, against an in-memory events client: the Event it writes, the
 * aggregation of repeats into `count` (a PATCH within the window, a new Event after it), unique
 * names, withdrawal, the queue bound, flush with and without a deadline, and failures.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  createEventRecorder,
  type EventRecorderOptions,
  type EventSubject,
} from "../../src/controller/events.ts";
import type { ResourceClient } from "../../src/kube/api.ts";
import type { CoreEvent } from "../../src/kube/objects.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { within } from "../support/wait.ts";

interface Call {
  verb: "create" | "patch";
  name: string;
  namespace: string;
  body: unknown;
  priority: unknown;
}

/**
 * Records writes; `hold()` makes writes (or only those of one rate-limiter priority) wait until
 * `release()`; `failNext` fails the next one.
 */
function fakeEvents() {
  const calls: Call[] = [];
  let gate: Promise<void> | undefined;
  let gated: string | undefined;
  let open: (() => void) | undefined;
  let failures = 0;
  const written = new Set<() => void>();
  const pass = async (priority: string | undefined) => {
    if (gate && (gated === undefined || gated === priority)) await gate;
    if (failures > 0) {
      failures--;
      throw new Error("injected failure");
    }
  };
  const notify = () => {
    for (const w of written) w();
  };
  const client = {
    async create(obj: CoreEvent, opts?: { priority?: string }) {
      await pass(opts?.priority);
      calls.push({
        verb: "create",
        name: obj.metadata.name ?? "",
        namespace: obj.metadata.namespace ?? "",
        body: obj,
        priority: opts?.priority,
      });
      notify();
      return obj;
    },
    async patch(
      name: string,
      _type: string,
      body: unknown,
      namespace: string,
      opts?: { priority?: string },
    ) {
      await pass(opts?.priority);
      calls.push({ verb: "patch", name, namespace, body, priority: opts?.priority });
      notify();
      return {} as CoreEvent;
    },
  } as unknown as ResourceClient<CoreEvent>;
  return {
    client,
    calls,
    hold(priority?: string) {
      gated = priority;
      gate = new Promise((r) => {
        open = r;
      });
    },
    release() {
      gate = undefined;
      open?.();
    },
    failNext(n = 1) {
      failures += n;
    },
    /** Resolves once `n` writes happened. */
    writes(n: number): Promise<void> {
      return within(
        new Promise<void>((resolve) => {
          const check = () => {
            if (calls.length >= n) {
              written.delete(check);
              resolve();
            }
          };
          written.add(check);
          check();
        }),
        5000,
        () => `${n} event writes (have ${calls.length})`,
      );
    },
  };
}

const claim: EventSubject = {
  apiVersion: "v1",
  kind: "PersistentVolumeClaim",
  metadata: { name: "data", namespace: "apps", uid: "uid-1", resourceVersion: "7" },
};
const volume: EventSubject = {
  apiVersion: "v1",
  kind: "PersistentVolume",
  metadata: { name: "pvc-1", uid: "uid-2" },
};

function setup(extra: Partial<EventRecorderOptions> = {}) {
  const clock = new FakeClock(Date.UTC(2026, 0, 1, 12, 0, 0));
  const events = fakeEvents();
  const logger = memoryLogger(clock, 4);
  const recorder = createEventRecorder({
    events: events.client,
    clock,
    logger,
    component: "hostpath.csi.k8s.io_node-1_abc",
    host: "node-1",
    ...extra,
  });
  return { clock, events, logger, recorder };
}

describe("createEventRecorder()", () => {
  it("writes a core/v1 Event as client-go's recorder does, a Normal one at low priority", async () => {
    const { events, recorder } = setup();
    recorder.event(claim, "Normal", "Provisioning", "External provisioner is provisioning");
    await recorder.flush();
    assert.equal(events.calls.length, 1);
    const [call] = events.calls;
    assert.equal(call?.verb, "create");
    assert.equal(call?.priority, "low");
    const ev = call?.body as CoreEvent;
    // <object>.<hex nanoseconds of the event time>
    const nanos = BigInt(Date.UTC(2026, 0, 1, 12, 0, 0)) * 1_000_000n;
    assert.equal(ev.metadata.name, `data.${nanos.toString(16)}`);
    assert.equal(ev.metadata.namespace, "apps");
    assert.deepEqual(ev.involvedObject, {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      name: "data",
      namespace: "apps",
      uid: "uid-1",
      resourceVersion: "7",
    });
    assert.deepEqual(ev.source, { component: "hostpath.csi.k8s.io_node-1_abc", host: "node-1" });
    assert.equal(ev.count, 1);
    assert.equal(ev.firstTimestamp, "2026-01-01T12:00:00Z");
    assert.equal(ev.lastTimestamp, "2026-01-01T12:00:00Z");
    assert.equal(ev.type, "Normal");
    assert.equal(ev.reason, "Provisioning");
  });

  it("puts events of cluster-scoped objects in default, and never reuses a name", async () => {
    const { events, recorder } = setup();
    recorder.event(volume, "Warning", "VolumeFailedDelete", "busy");
    recorder.event(volume, "Warning", "VolumeFailedDelete", "still busy");
    await recorder.flush();
    assert.deepEqual(
      events.calls.map((c) => c.namespace),
      ["default", "default"],
    );
    const [a, b] = events.calls.map((c) => c.name);
    assert.notEqual(a, b, "two events in the same millisecond get distinct names");
  });

  it("counts a repeat within ten minutes with a PATCH, and writes a new Event after that", async () => {
    const { clock, events, recorder } = setup();
    recorder.event(claim, "Warning", "ProvisioningFailed", "no space");
    await recorder.flush();
    await clock.advance(60_000);
    recorder.event(claim, "Warning", "ProvisioningFailed", "no space");
    await recorder.flush();
    assert.deepEqual(
      events.calls.map((c) => c.verb),
      ["create", "patch"],
    );
    assert.equal(events.calls[1]?.name, events.calls[0]?.name);
    assert.deepEqual(events.calls[1]?.body, {
      count: 2,
      lastTimestamp: "2026-01-01T12:01:00Z",
      message: "no space",
    });
    // A different message is a different event.
    recorder.event(claim, "Warning", "ProvisioningFailed", "quota exceeded");
    await recorder.flush();
    assert.equal(events.calls[2]?.verb, "create");
    // Past the window since the last repeat: a new Event again.
    await clock.advance(10 * 60_000 + 1);
    recorder.event(claim, "Warning", "ProvisioningFailed", "no space");
    await recorder.flush();
    assert.equal(events.calls[3]?.verb, "create");
    assert.notEqual(events.calls[3]?.name, events.calls[0]?.name);
  });

  it("writes Warning events at normal priority, not held back by Normal ones waiting for the budget", async () => {
    const { events, recorder, logger } = setup();
    // Normal events wait (as for a full rate-limiter bucket while PV writes keep it busy).
    events.hold("low");
    recorder.event(claim, "Normal", "ProvisioningSucceeded", "ok");
    recorder.event(volume, "Normal", "Other", "queued behind");
    recorder.event(claim, "Warning", "ProvisioningFailed", "why it failed");
    await events.writes(1);
    assert.deepEqual(
      events.calls.map((c) => [(c.body as CoreEvent).reason, c.priority]),
      [["ProvisioningFailed", "normal"]],
    );
    // A repeat of the Warning is a PATCH of its count, also at normal priority.
    recorder.event(claim, "Warning", "ProvisioningFailed", "why it failed");
    await events.writes(2);
    assert.deepEqual(
      events.calls.map((c) => [c.verb, c.priority]),
      [
        ["create", "normal"],
        ["patch", "normal"],
      ],
    );
    // flush waits for both queues.
    let flushed = false;
    const flushing = recorder.flush().then(() => {
      flushed = true;
    });
    await Promise.resolve();
    assert.equal(flushed, false, "the Normal events are not written yet");
    events.release();
    await flushing;
    assert.deepEqual(
      events.calls.map((c) => (c.body as CoreEvent).reason ?? c.verb),
      ["ProvisioningFailed", "patch", "ProvisioningSucceeded", "Other"],
    );
    assert.equal(events.calls.filter((c) => c.priority === "low").length, 2);
    assert.ok(!logger.lines.some((l) => l.includes("Could not record event")));
  });

  it("writes an event queued in any turn after its loop's last write (none is stranded)", async () => {
    // The writing loop ends a few microtask turns after its last write returns; an event queued
    // in between must start a new loop or be taken by the old one, whichever turn it comes in.
    for (let turns = 0; turns < 12; turns++) {
      const clock = new FakeClock(0);
      const reasons: string[] = [];
      let bothWritten: () => void = () => {};
      const both = new Promise<void>((r) => {
        bothWritten = r;
      });
      let recorder: ReturnType<typeof createEventRecorder> | undefined;
      const client = {
        async create(obj: CoreEvent) {
          reasons.push(obj.reason ?? "");
          if (reasons.length === 2) bothWritten();
          if (obj.reason === "First") {
            let p = Promise.resolve();
            for (let i = 0; i < turns; i++) p = p.then(() => undefined);
            void p.then(() => recorder?.event(claim, "Normal", "Late", "late"));
          }
          return obj;
        },
      } as unknown as ResourceClient<CoreEvent>;
      recorder = createEventRecorder({
        events: client,
        clock,
        logger: memoryLogger(clock, 0),
        component: "c",
      });
      recorder.event(claim, "Normal", "First", "first");
      await within(
        both,
        2000,
        () => `the event queued ${turns} turns after the first write (written: ${reasons})`,
      );
      await recorder.flush();
      assert.deepEqual(reasons, ["First", "Late"]);
    }
  });

  it("withdraws a queued event of either type, but not one already written", async () => {
    const { events, recorder } = setup();
    events.hold();
    recorder.event(claim, "Warning", "ProvisioningFailed", "taken by its writer");
    const warning = recorder.event(claim, "Warning", "ProvisioningFailed", "queued");
    recorder.event(claim, "Normal", "Provisioning", "taken by its writer");
    const normal = recorder.event(claim, "Normal", "Provisioning", "queued");
    assert.equal(warning(), true);
    assert.equal(normal(), true);
    events.release();
    await recorder.flush();
    assert.deepEqual(events.calls.map((c) => (c.body as CoreEvent).message).sort(), [
      "taken by its writer",
      "taken by its writer",
    ]);
  });

  it("withdraws an event still waiting for the API, but not one already written", async () => {
    const { events, recorder, logger } = setup();
    events.hold();
    const first = recorder.event(claim, "Normal", "Provisioning", "first");
    const second = recorder.event(claim, "Normal", "Provisioning", "second");
    // The first is being written (held); the second waits in the queue.
    assert.equal(second(), true);
    assert.equal(second(), false, "withdrawn once");
    events.release();
    await recorder.flush();
    assert.equal(first(), false, "already written");
    assert.deepEqual(
      events.calls.map((c) => (c.body as CoreEvent).message),
      ["first"],
    );
    assert.ok(logger.lines.some((l) => l.includes("Event withdrawn before it was written")));
  });

  it("bounds both queues together", async () => {
    const { events, recorder, logger } = setup({ maxQueued: 2 });
    events.hold();
    recorder.event(claim, "Normal", "A", "a"); // taken by the Normal writer at once
    recorder.event(claim, "Warning", "B", "b"); // taken by the Warning writer at once
    recorder.event(claim, "Normal", "C", "c");
    recorder.event(claim, "Warning", "D", "d");
    assert.equal(recorder.event(claim, "Warning", "E", "e")(), false);
    assert.equal(
      logger.lines.filter((l) => l.includes("Event queue full; dropping event")).length,
      1,
    );
    events.release();
    await recorder.flush();
    assert.deepEqual(events.calls.map((c) => (c.body as CoreEvent).reason).sort(), [
      "A",
      "B",
      "C",
      "D",
    ]);
  });

  it("drops events beyond the queue bound, with a log line", async () => {
    const { events, recorder, logger } = setup({ maxQueued: 2 });
    events.hold();
    recorder.event(claim, "Normal", "A", "a"); // taken by the writer at once
    recorder.event(claim, "Normal", "B", "b");
    recorder.event(claim, "Normal", "C", "c");
    const dropped = recorder.event(claim, "Normal", "D", "d");
    assert.equal(dropped(), false);
    assert.ok(logger.lines.some((l) => l.includes("Event queue full; dropping event")));
    events.release();
    await recorder.flush();
    assert.deepEqual(
      events.calls.map((c) => (c.body as CoreEvent).reason),
      ["A", "B", "C"],
    );
  });

  it("flush waits for every queued event; at its deadline it drops the rest and says how many", async () => {
    const { events, recorder, logger } = setup();
    events.hold();
    for (const r of ["A", "B", "C"]) recorder.event(claim, "Normal", r, r);
    const deadline = new AbortController();
    const flushed = recorder.flush(deadline.signal);
    deadline.abort();
    await within(flushed, 5000, "flush to give up at its deadline");
    assert.ok(
      logger.lines.some(
        (l) => l.includes("Dropping events not written before shutdown") && l.includes("count=2"),
      ),
      logger.lines.join("\n"),
    );
    events.release();
    await events.writes(1);
    await recorder.flush();
    assert.deepEqual(
      events.calls.map((c) => (c.body as CoreEvent).reason),
      ["A"],
    );
  });

  it("logs and drops an event the API refuses, and goes on with the next; a failed PATCH creates", async () => {
    const { clock, events, recorder, logger } = setup();
    events.failNext();
    recorder.event(claim, "Warning", "ProvisioningFailed", "lost");
    recorder.event(claim, "Normal", "Provisioning", "kept");
    await recorder.flush();
    assert.deepEqual(
      events.calls.map((c) => (c.body as CoreEvent).message),
      ["kept"],
    );
    assert.ok(logger.lines.some((l) => l.includes("Could not record event")));
    await clock.advance(1000);
    events.failNext();
    recorder.event(claim, "Normal", "Provisioning", "kept");
    await recorder.flush();
    assert.deepEqual(
      events.calls.map((c) => c.verb),
      ["create", "create"],
      "the repeat's PATCH failed, so a new Event was created",
    );
  });
});
