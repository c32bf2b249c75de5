/**
 * CSI migration through the real sidecar (in-process) against the test API server and the fake
 * CSI driver started under a migrated driver's name: claims of in-tree StorageClasses as
 * kube-controller-manager hands them over (storage-provisioner = the CSI driver, migrated-to set),
 * provisioned into in-tree PVs and deleted through their CSI form.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import type {
  CoreEvent,
  KubeObject,
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
} from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import type { FakeDriverOptions } from "../support/fake-driver.ts";
import {
  claim,
  type Harness,
  type RunningSidecar,
  releaseVolumesOf,
  startHarness,
} from "../support/sidecar-harness.ts";
import { editVolume } from "../support/table.ts";

const FAST = ["--kube-api-qps=1000", "--kube-api-burst=1000"];

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

let sidecar: RunningSidecar | undefined;

async function start(driver: FakeDriverOptions, objects: KubeObject[] = []): Promise<Harness> {
  h = await startHarness({ driver, verbose: !!process.env.MIGRATION_VERBOSE });
  for (const o of objects) h.apiserver.put(o);
  sidecar = await h.start(FAST);
  return h;
}

function inTreeClass(
  provisioner: string,
  parameters: Record<string, string>,
  extra: Partial<StorageClass> = {},
): StorageClass {
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: { name: "in-tree" },
    provisioner,
    parameters,
    reclaimPolicy: "Delete",
    volumeBindingMode: "Immediate",
    ...extra,
  };
}

/** A claim of the in-tree class as kube-controller-manager annotates it under migration. */
function migratedClaim(name: string, driverName: string): PersistentVolumeClaim {
  return claim(name, "in-tree", {
    annotations: {
      "volume.kubernetes.io/storage-provisioner": driverName,
      "volume.beta.kubernetes.io/storage-provisioner": driverName,
      "pv.kubernetes.io/migrated-to": driverName,
    },
  });
}

const pvOf = (uid: string) =>
  h!.apiserver.objects(resources.persistentVolumes).find((v) => v.spec.claimRef?.uid === uid);
const eventsOf = (uid: string): CoreEvent[] =>
  h!.apiserver.objects(resources.coreEvents).filter((e) => e.involvedObject.uid === uid);

async function deleteAndWait(uid: string): Promise<string> {
  releaseVolumesOf(h!.apiserver, uid);
  await h!.apiserver.waitFor(() => !pvOf(uid));
  const calls = await h!.driver.waitForCalls("deleteVolume");
  return calls[0]!.request.volumeId;
}

describe("CSI migration (test API server, fake driver)", () => {
  it("aws-ebs: translated request, awsElasticBlockStore PV, deleted by its volume id", async () => {
    await start({ name: "ebs.csi.aws.com" }, [
      inTreeClass("kubernetes.io/aws-ebs", { type: "gp2", fsType: "xfs", iopsPerGB: "10" }),
    ]);
    const c = h!.apiserver.put(migratedClaim("ebs", "ebs.csi.aws.com"));
    const uid = c.metadata.uid!;
    const pv = await h!.apiserver.waitFor(() => pvOf(uid));
    const [create] = h!.driver.callsTo("createVolume");
    assert.deepEqual(create!.request.parameters, {
      type: "gp2",
      iopsPerGB: "10",
      allowautoiopspergbincrease: "true",
    });
    const mount = create!.request.volumeCapabilities[0]!.accessType;
    assert.equal(mount.case === "mount" ? mount.value.fsType : "", "xfs");

    assert.equal(pv.spec.csi, undefined);
    assert.deepEqual(pv.spec.awsElasticBlockStore, { volumeID: `id-pvc-${uid}`, fsType: "xfs" });
    assert.equal(
      pv.metadata.annotations?.["pv.kubernetes.io/provisioned-by"],
      "kubernetes.io/aws-ebs",
    );
    assert.deepEqual(pv.metadata.finalizers, [
      "external-provisioner.volume.kubernetes.io/finalizer",
    ]);
    await h!.apiserver.waitFor(() =>
      eventsOf(uid).some((e) => e.reason === "ProvisioningSucceeded"),
    );

    assert.equal(await deleteAndWait(uid), `id-pvc-${uid}`);
    assert.equal(h!.driver.volumes().size, 0);
    // Upstream's metrics of a migrated driver: every call labelled, migrated volumes "true".
    const text = sidecar!.metrics.registry.render();
    for (const [method, migrated] of [
      ["Controller/CreateVolume", "true"],
      ["Controller/DeleteVolume", "true"],
      ["Identity/Probe", "false"],
    ]) {
      assert.match(
        text,
        new RegExp(
          `csi_sidecar_operations_seconds_count\\{driver_name="[^"]+",grpc_status_code="OK",method_name="/csi.v1.${method}",migrated="${migrated}"\\} [1-9]`,
        ),
      );
    }
  });

  it("gce-pd with zone topology: labels and region; deleted by the rebuilt handle", async () => {
    await start(
      { name: "pd.csi.storage.gke.io", topology: { "topology.gke.io/zone": "us-central1-b" } },
      [inTreeClass("kubernetes.io/gce-pd", { type: "pd-ssd", zone: "us-central1-a" })],
    );
    h!.driver.on(
      "createVolume",
      editVolume((v) => {
        v.volumeId = `projects/p1/zones/us-central1-a/disks/${v.volumeId.slice(3)}`;
      }),
    );
    const c = h!.apiserver.put(migratedClaim("pd", "pd.csi.storage.gke.io"));
    const uid = c.metadata.uid!;
    const pv = await h!.apiserver.waitFor(() => pvOf(uid));
    const [create] = h!.driver.callsTo("createVolume");
    assert.deepEqual(create!.request.parameters, { type: "pd-ssd" });
    assert.deepEqual(
      create!.request.accessibilityRequirements?.requisite.map((t) => t.segments),
      [{ "topology.gke.io/zone": "us-central1-a" }],
    );
    assert.deepEqual(pv.spec.gcePersistentDisk, { pdName: `pvc-${uid}` });
    assert.deepEqual(pv.spec.nodeAffinity?.required?.nodeSelectorTerms, [
      {
        matchExpressions: [
          { key: "topology.kubernetes.io/zone", operator: "In", values: ["us-central1-a"] },
          { key: "topology.kubernetes.io/region", operator: "In", values: ["us-central1"] },
        ],
      },
    ]);
    assert.deepEqual(pv.metadata.labels, {
      "topology.kubernetes.io/zone": "us-central1-a",
      "topology.kubernetes.io/region": "us-central1",
    });
    assert.equal(
      await deleteAndWait(uid),
      `projects/UNSPECIFIED/zones/us-central1-a/disks/pvc-${uid}`,
    );
  });

  it("portworx: the openstorage secret is the provisioner secret, also for deletion", async () => {
    const secret: KubeObject = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "px-auth", namespace: "kube-system" },
      data: { token: btoa("t0k3n") },
    } as KubeObject;
    await start({ name: "pxd.portworx.com" }, [
      secret,
      inTreeClass("kubernetes.io/portworx-volume", {
        repl: "2",
        "openstorage.io/auth-secret-name": "px-auth",
        "openstorage.io/auth-secret-namespace": "kube-system",
      }),
    ]);
    const c = h!.apiserver.put(migratedClaim("px", "pxd.portworx.com"));
    const uid = c.metadata.uid!;
    const pv = await h!.apiserver.waitFor(() => pvOf(uid));
    const [create] = h!.driver.callsTo("createVolume");
    assert.deepEqual(create!.request.parameters, { repl: "2" });
    assert.deepEqual(create!.request.secrets, { token: "t0k3n" });
    assert.deepEqual(pv.spec.portworxVolume, { volumeID: `id-pvc-${uid}` });
    assert.equal(
      pv.metadata.annotations?.["volume.kubernetes.io/provisioner-deletion-secret-name"],
      "px-auth",
    );
    assert.equal(await deleteAndWait(uid), `id-pvc-${uid}`);
    const [del] = h!.driver.callsTo("deleteVolume");
    assert.deepEqual(del!.request.secrets, { token: "t0k3n" });
  });

  it("a class that cannot be translated: upstream's event text, no CreateVolume", async () => {
    await start({ name: "ebs.csi.aws.com" }, [
      inTreeClass(
        "kubernetes.io/aws-ebs",
        { zone: "us-east-1a" },
        {
          allowedTopologies: [
            {
              matchLabelExpressions: [
                { key: "topology.kubernetes.io/zone", values: ["us-east-1b"] },
              ],
            },
          ],
        },
      ),
    ]);
    const c = h!.apiserver.put(migratedClaim("bad", "ebs.csi.aws.com"));
    const uid = c.metadata.uid!;
    const event = await h!.apiserver.waitFor(() =>
      eventsOf(uid).find((e) => e.reason === "ProvisioningFailed"),
    );
    assert.equal(event.type, "Warning");
    assert.equal(
      event.message,
      "failed to translate storage class: cannot simultaneously set allowed topologies and zone/zones parameters",
    );
    assert.equal(h!.driver.callsTo("createVolume").length, 0);
    assert.equal(pvOf(uid), undefined);
  });

  it("a volume whose topology has no in-tree form is deleted and the event says why", async () => {
    // The driver reports a topology key of its own: the PV cannot be written in in-tree form.
    await start({ name: "ebs.csi.aws.com", topology: { "topology.hostpath.csi/node": "n1" } }, [
      inTreeClass(
        "kubernetes.io/aws-ebs",
        { type: "gp3" },
        {
          allowedTopologies: [
            { matchLabelExpressions: [{ key: "topology.hostpath.csi/node", values: ["n1"] }] },
          ],
        },
      ),
    ]);
    const c = h!.apiserver.put(migratedClaim("topo", "ebs.csi.aws.com"));
    const uid = c.metadata.uid!;
    const event = await h!.apiserver.waitFor(() =>
      eventsOf(uid).find((e) => e.reason === "ProvisioningFailed"),
    );
    assert.equal(
      event.message,
      `failed to translate topology of PersistentVolume pvc-${uid}: Failed to handle region topology. error: no zones specified; volume id-pvc-${uid} was deleted`,
    );
    const deletes = await h!.driver.waitForCalls("deleteVolume");
    assert.equal(deletes[0]!.request.volumeId, `id-pvc-${uid}`);
    assert.equal(pvOf(uid), undefined);
  });

  it("an in-tree claim not handed over (no migrated-to) is left alone", async () => {
    await start({ name: "ebs.csi.aws.com" }, [inTreeClass("kubernetes.io/aws-ebs", {})]);
    const c = h!.apiserver.put(
      claim("legacy", "in-tree", {
        annotations: { "volume.kubernetes.io/storage-provisioner": "kubernetes.io/aws-ebs" },
      }),
    );
    // A CSI claim created after it is provisioned by the same (first in, first out) queue.
    h!.apiserver.put(inTreeClass("ebs.csi.aws.com", {}, { metadata: { name: "csi" } }));
    const later = h!.apiserver.put(
      claim("csi", "csi", {
        annotations: { "volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com" },
      }),
    );
    const csiPv: PersistentVolume = await h!.apiserver.waitFor(() => pvOf(later.metadata.uid!));
    assert.equal(csiPv.spec.csi?.driver, "ebs.csi.aws.com");
    assert.equal(pvOf(c.metadata.uid!), undefined);
    assert.equal(h!.driver.callsTo("createVolume").length, 1);
  });

  it("an in-tree PV provisioned before migration is deleted by its EBS volume id", async () => {
    await start({ name: "ebs.csi.aws.com" }, [inTreeClass("kubernetes.io/aws-ebs", {})]);
    // As the in-tree provisioner wrote it, and kube-controller-manager marked it migrated.
    h!.apiserver.put({
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: {
        name: "pvc-legacy",
        labels: { "topology.kubernetes.io/zone": "us-east-1a" },
        annotations: {
          "pv.kubernetes.io/provisioned-by": "kubernetes.io/aws-ebs",
          "pv.kubernetes.io/migrated-to": "ebs.csi.aws.com",
        },
      },
      spec: {
        accessModes: ["ReadWriteOnce"],
        capacity: { storage: "1Gi" },
        awsElasticBlockStore: { volumeID: "aws://us-east-1a/vol-0legacy", fsType: "ext4" },
        claimRef: {
          kind: "PersistentVolumeClaim",
          namespace: "default",
          name: "old",
          uid: "u-old",
        },
        persistentVolumeReclaimPolicy: "Delete",
        storageClassName: "in-tree",
      },
      status: { phase: "Released" },
    } as PersistentVolume);
    await h!.apiserver.waitFor(() => !h!.apiserver.get(resources.persistentVolumes, "pvc-legacy"));
    const [del] = await h!.driver.waitForCalls("deleteVolume");
    assert.equal(del!.request.volumeId, "vol-0legacy");
  });
});
