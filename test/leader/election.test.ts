import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { EventRecorder, EventSubject } from "../../src/controller/events.ts";
import type { Lease } from "../../src/kube/objects.ts";
import {
  createLeaderElector,
  type ElectionOutcome,
  type LeaderElectionOptions,
  leaderIdentity,
  leaseNameForDriver,
  sanitizeName,
} from "../../src/leader/election.ts";
import { nullLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { deferred, MemoryLeases, settle } from "./memory-leases.ts";

const NS = "kube-system";
const NAME = "fake-csi-k8s-io";

interface Recorded {
  subject: EventSubject;
  type: string;
  reason: string;
  message: string;
}

function recorder(into: Recorded[]): EventRecorder {
  return {
    event(subject, type, reason, message) {
      into.push({ subject, type, reason, message });
      return () => false;
    },
    flush: async () => {},
  };
}

/** The leader's work: runs until its signal aborts; with `hold`, until `finish()` as well. */
function work(hold = false) {
  const w = {
    terms: 0,
    active: false,
    signals: [] as AbortSignal[],
    finish: () => {},
    async lead(signal: AbortSignal) {
      w.terms++;
      w.active = true;
      w.signals.push(signal);
      await new Promise<void>((r) => {
        if (signal.aborted) r();
        else signal.addEventListener("abort", () => r(), { once: true });
      });
      if (hold) await new Promise<void>((r) => (w.finish = r));
      w.active = false;
    },
  };
  return w;
}

function world() {
  const clock = new FakeClock();
  const leases = new MemoryLeases();
  const replicas: { stop: AbortController; done: Promise<ElectionOutcome> }[] = [];

  /** Starts a replica campaigning with `identity`. */
  const replica = (
    identity: string,
    opts: Partial<LeaderElectionOptions> & { hold?: boolean } = {},
  ) => {
    const events: Recorded[] = [];
    const statuses: boolean[] = [];
    const w = work(opts.hold);
    const elector = createLeaderElector({
      leases,
      namespace: NS,
      name: NAME,
      identity,
      clock,
      random: () => 0,
      logger: nullLogger,
      recorder: recorder(events),
      onStatus: (s) => statuses.push(s),
      releaseOnCancel: true,
      ...opts,
    });
    const stop = new AbortController();
    const done = elector.run((s) => w.lead(s), stop.signal);
    replicas.push({ stop, done });
    return { elector, events, statuses, work: w, stop: () => stop.abort(), done };
  };

  /** Moves the fake clock in steps, letting every replica react after each. */
  const advance = async (ms: number, step = 250) => {
    for (let left = ms; left > 0; left -= step) {
      await clock.advance(Math.min(step, left));
      await settle();
    }
  };

  const lease = () => leases.stored(NAME, NS);

  const close = async () => {
    for (const r of replicas) r.stop.abort();
    await Promise.all(replicas.map((r) => r.done.catch(() => {})));
  };

  return { clock, leases, replica, advance, lease, close };
}

describe("leader election: names", () => {
  it("names the Lease after the driver as upstream does", () => {
    assert.equal(leaseNameForDriver("hostpath.csi.k8s.io"), "hostpath-csi-k8s-io");
    assert.equal(leaseNameForDriver("example.com/my_driver"), "example-com-my-driver");
    assert.equal(leaseNameForDriver("driver."), "driver-X");
  });

  it("sanitises identities like client-go's sanitizeName", () => {
    assert.equal(sanitizeName("node_1.example"), "node-1-example");
    assert.equal(sanitizeName("pod-"), "pod-X");
  });

  it("campaigns as the pod when POD_NAME is known, else as the host", () => {
    assert.equal(
      leaderIdentity("csi-provisioner-7d9f-abcde", "node-1"),
      "csi-provisioner-7d9f-abcde",
    );
    assert.equal(leaderIdentity(undefined, "node-1"), "node-1");
    assert.equal(leaderIdentity("", "node-1"), "node-1");
  });
});

describe("leader election", () => {
  it("creates the Lease, leads, and records a LeaderElection event on it", async () => {
    const w = world();
    const a = w.replica("replica-a", { labels: { team: "storage" } });
    await settle();
    assert.equal(a.elector.leading, true);
    assert.equal(a.work.active, true);
    assert.deepEqual(a.statuses, [true]);
    const lease = w.lease()!;
    assert.equal(lease.spec.holderIdentity, "replica-a");
    assert.equal(lease.spec.leaseDurationSeconds, 15);
    assert.equal(lease.spec.leaseTransitions, 0);
    assert.equal(lease.metadata.labels?.team, "storage");
    assert.equal(a.events.length, 1);
    const ev = a.events[0]!;
    assert.deepEqual(
      { type: ev.type, reason: ev.reason, message: ev.message },
      { type: "Normal", reason: "LeaderElection", message: "replica-a became leader" },
    );
    assert.equal(ev.subject.kind, "Lease");
    assert.equal(ev.subject.apiVersion, "coordination.k8s.io/v1");
    assert.equal(ev.subject.metadata.name, NAME);
    assert.equal(ev.subject.metadata.namespace, NS);
    assert.equal(ev.subject.metadata.uid, lease.metadata.uid);
    await w.close();
  });

  it("holds the Lease under its sanitised identity", async () => {
    const w = world();
    const a = w.replica("node_1.example");
    await settle();
    assert.equal(w.lease()!.spec.holderIdentity, "node-1-example");
    assert.equal(a.events[0]!.message, "node-1-example became leader");
    await w.close();
  });

  it("renews with one write per retry period and no read", async () => {
    const w = world();
    const a = w.replica("replica-a");
    await settle();
    const gets = w.leases.calls.get;
    const updates = w.leases.calls.update;
    await w.advance(60_000);
    assert.equal(a.elector.leading, true);
    assert.equal(w.leases.calls.get, gets, "the leader renews without reading the Lease");
    assert.equal(w.leases.calls.update - updates, 12);
    assert.equal(
      w.lease()!.spec.renewTime,
      new Date(w.clock.now()).toISOString().replace("Z", "000Z"),
    );
    await w.close();
  });

  it("on stop, lets the work finish, then releases the Lease", async () => {
    const w = world();
    const a = w.replica("replica-a", { hold: true });
    await settle();
    a.stop();
    await settle();
    assert.equal(a.work.signals[0]!.aborted, true);
    assert.equal(w.lease()!.spec.holderIdentity, "replica-a", "not released while work runs");
    a.work.finish();
    assert.equal(await a.done, "stopped");
    const lease = w.lease()!;
    assert.equal(lease.spec.holderIdentity, "");
    assert.equal(lease.spec.leaseDurationSeconds, 1);
    assert.deepEqual(a.statuses, [true, false]);
    assert.deepEqual(
      a.events.map((e) => e.message),
      ["replica-a became leader"],
      "upstream's binary writes no 'stopped leading' event",
    );
    await w.close();
  });

  it("releases as soon as the work hands off, while its best-effort tail goes on", async () => {
    const w = world();
    const tail = deferred();
    let handedOff = false;
    const elector = createLeaderElector({
      leases: w.leases,
      namespace: NS,
      name: NAME,
      identity: "replica-a",
      clock: w.clock,
      random: () => 0,
      logger: nullLogger,
      releaseOnCancel: true,
    });
    const stop = new AbortController();
    const done = elector.run(async (signal, handOff) => {
      handOff(); // ignored: not stopping yet
      await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
      handOff();
      handedOff = true;
      await tail.promise; // e.g. events still flushing
    }, stop.signal);
    await settle();
    assert.equal(w.lease()!.spec.holderIdentity, "replica-a", "an early hand-off is ignored");
    stop.abort();
    await settle();
    assert.equal(handedOff, true);
    assert.equal(w.lease()!.spec.holderIdentity, "", "released before the work ended");
    assert.equal(elector.leading, false);
    tail.resolve();
    assert.equal(await done, "stopped");
  });

  it("does not release when the work says its writes may still land (handOff(false))", async () => {
    const w = world();
    const tail = deferred();
    const elector = createLeaderElector({
      leases: w.leases,
      namespace: NS,
      name: NAME,
      identity: "replica-a",
      clock: w.clock,
      random: () => 0,
      logger: nullLogger,
      releaseOnCancel: true,
    });
    const stop = new AbortController();
    const done = elector.run(async (signal, handOff) => {
      await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
      handOff(false);
      await tail.promise;
    }, stop.signal);
    await settle();
    const before = w.leases.calls.update;
    stop.abort();
    await settle();
    tail.resolve();
    assert.equal(await done, "stopped");
    assert.equal(w.lease()!.spec.holderIdentity, "replica-a", "left to expire, not released");
    assert.equal(w.leases.calls.update, before, "no write to the Lease after the stop");
    assert.equal(elector.leading, false);
  });

  it("keeps the Lease on stop when release is off (upstream's default)", async () => {
    const w = world();
    const a = w.replica("replica-a", { releaseOnCancel: false });
    await settle();
    a.stop();
    assert.equal(await a.done, "stopped");
    assert.equal(w.lease()!.spec.holderIdentity, "replica-a");
    assert.equal(w.lease()!.spec.leaseDurationSeconds, 15);
    await w.close();
  });

  it("a standby never leads while the leader renews", async () => {
    const w = world();
    const a = w.replica("replica-a");
    await settle();
    const b = w.replica("replica-b");
    await w.advance(60_000);
    assert.equal(a.elector.leading, true);
    assert.equal(b.elector.leading, false);
    assert.equal(b.work.terms, 0);
    assert.deepEqual(b.statuses, []);
    assert.equal(b.elector.leader, "replica-a");
    await w.close();
  });

  it("a standby takes a released Lease at once, without waiting for its next poll", async () => {
    const w = world();
    const a = w.replica("replica-a");
    await settle();
    const b = w.replica("replica-b");
    await settle();
    const t0 = w.clock.now();
    a.stop();
    assert.equal(await a.done, "stopped");
    await settle();
    assert.equal(w.clock.now(), t0, "no time passed");
    assert.equal(b.elector.leading, true);
    assert.equal(b.work.active, true);
    assert.equal(a.work.active, false);
    const lease = w.lease()!;
    assert.equal(lease.spec.holderIdentity, "replica-b");
    assert.equal(lease.spec.leaseTransitions, 1);
    assert.deepEqual(
      b.events.map((e) => e.message),
      ["replica-b became leader"],
    );
    await w.close();
  });

  it("without the watch, a standby takes a released Lease only at its next poll", async () => {
    const w = world();
    const a = w.replica("replica-a");
    await settle();
    const b = w.replica("replica-b", { watch: false });
    await settle();
    a.stop();
    await a.done;
    await settle();
    assert.equal(b.elector.leading, false);
    await w.advance(5_000);
    assert.equal(b.elector.leading, true);
    await w.close();
  });

  it("a standby takes an abandoned Lease exactly when it expires", async () => {
    const w = world();
    // A stops without releasing, as if killed: the Lease stays until it expires.
    const a = w.replica("replica-a", { releaseOnCancel: false });
    await settle();
    const b = w.replica("replica-b");
    await settle();
    a.stop();
    await a.done;
    await w.advance(14_750);
    assert.equal(b.elector.leading, false, "the Lease has not expired yet");
    await w.advance(250);
    assert.equal(b.elector.leading, true);
    assert.equal(w.lease()!.spec.holderIdentity, "replica-b");
    await w.close();
  });

  it("retries a failed renewal within the renew deadline and keeps leading", async () => {
    const w = world();
    const a = w.replica("replica-a");
    await settle();
    w.leases.fail(["update", "get"], 3);
    await w.advance(20_000);
    assert.equal(a.elector.leading, true);
    assert.equal(a.work.terms, 1);
    assert.equal(a.work.signals[0]!.aborted, false, "the work was never interrupted");
    assert.deepEqual(a.statuses, [true]);
    await w.close();
  });

  it("after the renew deadline, stops the work, then campaigns again instead of exiting", async () => {
    const w = world();
    const a = w.replica("replica-a");
    await settle();
    w.leases.fail(["update", "get", "create"], Number.POSITIVE_INFINITY);
    await w.advance(10_000);
    assert.equal(a.elector.leading, false);
    assert.equal(a.work.signals[0]!.aborted, true);
    assert.equal(a.work.active, false);
    assert.deepEqual(a.statuses, [true, false]);
    assert.deepEqual(
      a.events.map((e) => e.message),
      ["replica-a became leader"],
    );
    w.leases.heal();
    await w.advance(5_000);
    assert.equal(a.elector.leading, true, "it won the Lease again");
    assert.equal(a.work.terms, 2);
    assert.equal(a.work.active, true);
    assert.deepEqual(a.statuses, [true, false, true]);
    await w.close();
  });

  it("bounds a renewal that hangs by the renew deadline", async () => {
    const w = world();
    const a = w.replica("replica-a");
    await settle();
    w.leases.hang(["update", "get"]);
    await w.advance(9_750);
    assert.equal(a.elector.leading, true);
    await w.advance(250);
    assert.equal(a.elector.leading, false);
    assert.equal(a.work.active, false);
    await w.close();
  });

  it("stops at once when the watch shows another holder, and waits out that holder's Lease", async () => {
    const w = world();
    const a = w.replica("replica-a");
    await settle();
    const t0 = w.clock.now();
    const lease = w.lease()!;
    const now = new Date(t0).toISOString().replace("Z", "000Z");
    w.leases.put({
      ...lease,
      spec: { ...lease.spec, holderIdentity: "intruder", renewTime: now, acquireTime: now },
    } satisfies Lease);
    await settle();
    assert.equal(w.clock.now(), t0, "no time passed");
    assert.equal(a.elector.leading, false);
    assert.equal(a.work.active, false);
    await w.advance(14_750);
    assert.equal(a.elector.leading, false, "the intruder's Lease is still valid");
    await w.advance(250);
    assert.equal(a.elector.leading, true);
    assert.equal(w.lease()!.spec.leaseTransitions, 1);
    await w.close();
  });

  it("reports failed when the work does not stop after the Lease was lost", async () => {
    const w = world();
    const a = w.replica("replica-a", { hold: true, stopTimeoutMs: 3_000 });
    await settle();
    const lease = w.lease()!;
    w.leases.put({ ...lease, spec: { ...lease.spec, holderIdentity: "intruder" } });
    await settle();
    assert.equal(a.work.signals[0]!.aborted, true);
    await w.advance(3_000);
    assert.equal(await a.done, "failed");
    await w.close();
  });

  it("reports failed and releases the Lease when the work ends on its own", async () => {
    const w = world();
    const clock = w.clock;
    const leases = w.leases;
    const elector = createLeaderElector({
      leases,
      namespace: NS,
      name: NAME,
      identity: "replica-a",
      clock,
      random: () => 0,
      logger: nullLogger,
      releaseOnCancel: false,
    });
    const outcome = await elector.run(async () => {}, new AbortController().signal);
    assert.equal(outcome, "failed");
    assert.equal(w.lease()!.spec.holderIdentity, "");
    assert.equal(elector.leading, false);
  });

  it("re-opens a dropped watch and still hands over at once", async () => {
    const w = world();
    const a = w.replica("replica-a");
    await settle();
    const b = w.replica("replica-b");
    await settle();
    assert.equal(w.leases.openWatches, 2);
    w.leases.dropWatches();
    await settle();
    assert.equal(w.leases.openWatches, 0);
    await w.advance(5_000);
    assert.equal(w.leases.openWatches, 2);
    a.stop();
    await a.done;
    await settle();
    assert.equal(b.elector.leading, true);
    await w.close();
  });

  it("is healthy while renewing and when not leading", async () => {
    const w = world();
    const a = w.replica("replica-a");
    const b = w.replica("replica-b");
    await settle();
    await w.advance(30_000);
    assert.equal(a.elector.healthy(), true);
    assert.equal(b.elector.healthy(), true);
    await w.close();
  });
});
