/**
 * Leader election in the real sidecar: two replicas against the test API server and the fake
 * CSI driver. Only the leader provisions; on SIGTERM the leader drains, releases the Lease and
 * the standby takes over at once (through its watch on the Lease), and no claim gets a second
 * volume across the hand-over.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { INTENT_ANNOTATION_PREFIX, JOURNAL_LABEL } from "../../src/controller/journal.ts";
import type { CoreEvent, Lease } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { startApiServer } from "../support/apiserver.ts";
import { claim, type Harness, startHarness, storageClass } from "../support/sidecar-harness.ts";
import { eventually } from "../support/wait.ts";

const FAST = ["--kube-api-qps=1000", "--kube-api-burst=1000", "--leader-election"];
const LEASE = "fake-csi-k8s-io";

function lease(h: Harness): Lease | undefined {
  return h.apiserver.get(resources.leases, LEASE, "kube-system");
}

/** Claim UIDs with an intent in the journal's Leases. */
function intents(h: Harness): string[] {
  const out: string[] = [];
  for (const l of h.apiserver.objects(resources.leases, "kube-system") as Lease[]) {
    if (l.metadata.labels?.[JOURNAL_LABEL] !== "true") continue;
    for (const k of Object.keys(l.metadata.annotations ?? {})) {
      if (k.startsWith(INTENT_ANNOTATION_PREFIX))
        out.push(k.slice(INTENT_ANNOTATION_PREFIX.length));
    }
  }
  return out;
}

function leaderEvents(h: Harness): CoreEvent[] {
  return h.apiserver
    .objects(resources.coreEvents, "kube-system")
    .filter((e) => e.reason === "LeaderElection");
}

describe("leader election in the sidecar", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  it("records upstream's LeaderElection event on the Lease, from <driver>/<identity>", async () => {
    await h.start(FAST, { POD_NAME: "csi-provisioner-a" });
    const ev = await h.apiserver.waitFor(() => leaderEvents(h)[0]);
    assert.equal(lease(h)?.spec.holderIdentity, "csi-provisioner-a");
    assert.equal(ev.type, "Normal");
    assert.equal(ev.message, "csi-provisioner-a became leader");
    assert.equal(ev.involvedObject.kind, "Lease");
    assert.equal(ev.involvedObject.apiVersion, "coordination.k8s.io/v1");
    assert.equal(ev.involvedObject.name, LEASE);
    assert.equal(ev.involvedObject.namespace, "kube-system");
    assert.equal(ev.involvedObject.uid, lease(h)?.metadata.uid);
    assert.equal(ev.source?.component, "fake.csi.k8s.io/csi-provisioner-a");
  });

  it("campaigns as the host name without POD_NAME", async () => {
    await h.start(FAST);
    await h.apiserver.waitFor(() => lease(h)?.spec.holderIdentity === "test-host-1");
  });

  it("hands over on stop at once, and no claim is provisioned twice", async () => {
    const a = await h.start(FAST, { POD_NAME: "replica-a" });
    await h.apiserver.waitFor(() => lease(h)?.spec.holderIdentity === "replica-a");
    const b = await h.start(FAST, { POD_NAME: "replica-b" });
    h.apiserver.put(storageClass("fast"));
    for (let i = 0; i < 5; i++) h.apiserver.put(claim(`before-${i}`, "fast"));
    await h.apiserver.waitFor(() => h.apiserver.objects(resources.persistentVolumes).length === 5);

    // A claim whose CreateVolume is still running when the leader is told to stop.
    const held = h.driver.hold("createVolume");
    h.apiserver.put(claim("during", "fast"));
    await held.arrived;
    const stopped = a.stop();
    held.release();
    assert.equal(await stopped, 0);
    await h.apiserver.waitFor(() => lease(h)?.spec.holderIdentity === "replica-b");

    for (let i = 0; i < 3; i++) h.apiserver.put(claim(`after-${i}`, "fast"));
    await h.apiserver.waitFor(() => h.apiserver.objects(resources.persistentVolumes).length === 9);

    const claims = h.apiserver.objects(resources.persistentVolumeClaims);
    const pvs = h.apiserver.objects(resources.persistentVolumes);
    assert.equal(new Set(pvs.map((pv) => pv.spec.claimRef?.uid)).size, 9, "one PV per claim");
    assert.deepEqual(
      new Set(pvs.map((pv) => pv.spec.claimRef?.uid)),
      new Set(claims.map((c) => c.metadata.uid)),
    );
    const names = [...h.driver.volumes().values()].map((v) => v.name).sort();
    assert.equal(names.length, 9, "one backend volume per claim");
    assert.deepEqual(names, pvs.map((pv) => pv.metadata.name).sort());

    assert.deepEqual(
      leaderEvents(h)
        .map((e) => e.message)
        .sort(),
      ["replica-a became leader", "replica-b became leader"],
    );
    assert.equal(lease(h)?.spec.leaseTransitions, 1);
    assert.equal(await b.stop(), 0);
    assert.equal(lease(h)?.spec.holderIdentity, "", "released on stop");
  });
  it("leaves a CreateVolume that outlasts the hand-over budget to the standby, which finishes it from the intent", async () => {
    const a = await h.start(FAST, { POD_NAME: "replica-a" });
    await h.apiserver.waitFor(() => lease(h)?.spec.holderIdentity === "replica-a");
    const b = await h.start(FAST, { POD_NAME: "replica-b" });
    h.apiserver.put(storageClass("fast"));
    // The leader's CreateVolume does not return before the budget ends; the standby's replay
    // is held too, so that the state at the take-over can be looked at.
    const leaders = h.driver.hold("createVolume");
    const standbys = h.driver.hold("createVolume");
    const c = h.apiserver.put(claim("slow", "fast"));
    const uid = c.metadata.uid!;
    await leaders.arrived;

    assert.equal(await a.stop(), 0);
    assert.ok(
      h.logs.some((l) => l.includes("Cancelling operations still in flight")),
      "the leader cancelled the call at the end of its budget",
    );
    const replay = await standbys.arrived;
    assert.equal(lease(h)?.spec.holderIdentity, "replica-b");
    assert.equal(replay.request.name, `pvc-${uid}`, "the same volume name: an idempotent replay");
    assert.deepEqual(intents(h), [uid], "the intent survived the hand-over");
    assert.equal(h.apiserver.objects(resources.persistentVolumes).length, 0);

    // The abandoned call reaches the backend after all; the replay then finds its volume.
    leaders.release();
    await eventually("the abandoned CreateVolume to finish", () =>
      h.driver.volumes().size === 1 ? true : undefined,
    );
    standbys.release();
    const pv = await h.apiserver.waitFor(() =>
      h.apiserver.objects(resources.persistentVolumes).find((p) => p.spec.claimRef?.uid === uid),
    );
    await h.apiserver.waitFor(() => intents(h).length === 0);
    assert.equal(h.apiserver.objects(resources.persistentVolumes).length, 1, "one PV");
    assert.deepEqual(
      [...h.driver.volumes().values()].map((v) => v.name),
      [pv.metadata.name],
      "one backend volume",
    );
    assert.equal(await b.stop(), 0);
  });
});

describe("hand-over before CreateVolume", () => {
  it("a claim still recording its intent at the stop gets no CreateVolume from the old leader; the standby provisions it once", async () => {
    // Journal writes wait at the API server until the test lets them through.
    let holding = false;
    let arrived: () => void = () => {};
    const journalWrite = new Promise<void>((r) => {
      arrived = r;
    });
    let letThrough: () => void = () => {};
    const gate = new Promise<void>((r) => {
      letThrough = r;
    });
    /** After the stop: journal writes answered and writes of the election Lease, in order. */
    let stopping = false;
    const seen: string[] = [];
    const apiserver = await startApiServer({
      async onRequest(info) {
        // The journal's Lease: created (the election Lease exists already) or updated.
        const journal =
          info.resource === "leases" &&
          (info.verb === "create" ||
            (info.verb === "update" && info.path.includes("provisioning-intents")));
        if (holding && journal) {
          arrived();
          await gate;
          if (stopping) seen.push("journal write answered");
        } else if (stopping && info.verb === "update" && info.path.endsWith(`/leases/${LEASE}`)) {
          seen.push("election Lease written");
        }
        return undefined;
      },
    });
    const h = await startHarness({ apiserver });
    try {
      const a = await h.start(FAST, { POD_NAME: "replica-a" });
      await h.apiserver.waitFor(() => lease(h)?.spec.holderIdentity === "replica-a");
      const b = await h.start(FAST, { POD_NAME: "replica-b" });
      h.apiserver.put(storageClass("fast"));
      holding = true;
      const c = h.apiserver.put(claim("late", "fast"));
      await journalWrite;

      stopping = true;
      const stopped = a.stop();
      await eventually(
        "the leader to give the claim up",
        () =>
          h.logs.some((l) => l.includes("the next leader continues from the intent")) || undefined,
      );
      holding = false;
      letThrough(); // the write already sent lands; only then is the Lease released
      assert.equal(await stopped, 0);
      assert.equal(h.driver.callsTo("createVolume").length, 0, "no CreateVolume after the stop");

      const pv = await h.apiserver.waitFor(() =>
        h.apiserver
          .objects(resources.persistentVolumes)
          .find((p) => p.spec.claimRef?.uid === c.metadata.uid),
      );
      assert.equal(lease(h)?.spec.holderIdentity, "replica-b");
      assert.equal(
        seen[0],
        "journal write answered",
        "the Lease was released only after the old leader's last write was answered",
      );
      assert.ok(seen.includes("election Lease written"));
      assert.deepEqual(
        h.driver.callsTo("createVolume").map((call) => call.request.name),
        [pv.metadata.name],
        "one CreateVolume, by the standby",
      );
      assert.equal(await b.stop(), 0);
    } finally {
      letThrough();
      await h.close();
      await apiserver.close();
    }
  });

  it("never releases the Lease while a write sent before the stop is unanswered: it is left to expire", async () => {
    let holding = false;
    let arrived: () => void = () => {};
    const journalWrite = new Promise<void>((r) => {
      arrived = r;
    });
    let letThrough: () => void = () => {};
    const gate = new Promise<void>((r) => {
      letThrough = r;
    });
    let stopping = false;
    const seen: string[] = [];
    const apiserver = await startApiServer({
      async onRequest(info) {
        const journal =
          info.resource === "leases" &&
          (info.verb === "create" ||
            (info.verb === "update" && info.path.includes("provisioning-intents")));
        if (holding && journal) {
          arrived();
          await gate;
          if (stopping) seen.push("journal write answered");
        } else if (stopping && info.verb === "update" && info.path.endsWith(`/leases/${LEASE}`)) {
          seen.push("election Lease written");
        }
        return undefined;
      },
    });
    const h = await startHarness({ apiserver });
    const short = [
      ...FAST,
      "--leader-election-lease-duration=5s",
      "--leader-election-renew-deadline=1500ms",
      "--leader-election-retry-period=1s",
    ];
    try {
      const a = await h.start(short, { POD_NAME: "replica-a" });
      await h.apiserver.waitFor(() => lease(h)?.spec.holderIdentity === "replica-a");
      const b = await h.start(short, { POD_NAME: "replica-b" });
      h.apiserver.put(storageClass("fast"));
      holding = true;
      const c = h.apiserver.put(claim("stuck", "fast"));
      await journalWrite;

      // The journal write stays on the wire past the budget and the fence's wait (2.5 s in all,
      // well inside the 5 s lease, which was renewed at most 1 s before the stop).
      stopping = true;
      assert.equal(await a.stop(), 0);
      assert.ok(h.logs.some((l) => l.includes("not releasing the leader Lease")));
      assert.deepEqual(seen, [], "no write of the election Lease while the write is unanswered");
      assert.equal(lease(h)?.spec.holderIdentity, "replica-a", "not released");

      holding = false;
      letThrough();
      // The standby takes the Lease once it expires, and provisions the claim.
      await h.apiserver.waitFor(() => lease(h)?.spec.holderIdentity === "replica-b");
      assert.equal(seen[0], "journal write answered");
      const pv = await h.apiserver.waitFor(() =>
        h.apiserver
          .objects(resources.persistentVolumes)
          .find((p) => p.spec.claimRef?.uid === c.metadata.uid),
      );
      assert.deepEqual(
        h.driver.callsTo("createVolume").map((call) => call.request.name),
        [pv.metadata.name],
      );
      assert.equal(await b.stop(), 0);
    } finally {
      letThrough();
      await h.close();
      await apiserver.close();
    }
  });
});
