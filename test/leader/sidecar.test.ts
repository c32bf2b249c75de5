/**
 * Leader election in the real sidecar: two replicas against the test API server and the fake
 * CSI driver. Only the leader provisions; on SIGTERM the leader drains, releases the Lease and
 * the standby takes over at once (through its watch on the Lease), and no claim gets a second
 * volume across the hand-over.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { CoreEvent, Lease } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { claim, type Harness, startHarness, storageClass } from "../support/sidecar-harness.ts";

const FAST = ["--kube-api-qps=1000", "--kube-api-burst=1000", "--leader-election"];
const LEASE = "fake-csi-k8s-io";

function lease(h: Harness): Lease | undefined {
  return h.apiserver.get(resources.leases, LEASE, "kube-system");
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
});
