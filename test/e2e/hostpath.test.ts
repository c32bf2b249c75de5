/**
 * End-to-end scenarios against the real peers: the compiled provisioner, as the
 * `csi-provisioner` ServiceAccount bound to deploy/rbac.yaml, against kube-apiserver,
 * kube-controller-manager, csi-driver-host-path's `hostpathplugin` (topology on, simulated
 * capacity), and external-snapshotter's `snapshot-controller` + `csi-snapshotter`.
 *
 *   export E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)
 *   scripts/build.sh linux-x64              # or E2E_PROVISIONER=/path/to/csi-provisioner
 *   node_modules/.bin/node --test --test-concurrency=1 test/e2e/hostpath.test.ts
 *
 * One cluster and one provisioner for the file; the scenarios run concurrently, each in its own
 * namespace and with its own StorageClasses. The last test checks, through the driver's
 * ListVolumes, that no volume was leaked or duplicated.
 *
 * Skipped when E2E_BIN_DIR is not set. E2E_VERBOSE=1 prints every line the processes log;
 * E2E_KEEP_DIR=1 keeps the cluster's directory (logs, driver state).
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type {
  CoreEvent,
  CSIStorageCapacity,
  KubeList,
  PersistentVolume,
  PersistentVolumeClaim,
  VolumeSnapshot,
  VolumeSnapshotContent,
} from "../../src/kube/objects.ts";
import { type Cluster, type CsiCall, HOSTPATH_TOPOLOGY_KEY, startCluster } from "./cluster.ts";
import {
  ensureOwnerPod,
  ensureSnapshotClass,
  installSnapshotCrds,
  type OwnerPod,
  type Sidecar,
  type SnapshotChain,
  startSidecar,
  startSnapshotChain,
} from "./peers.ts";
import {
  e2eBinDir as binDir,
  claimPath,
  clusterWatchTarget,
  eventually,
  type Kube,
  killAllStarted,
  kube,
  verboseLog as log,
  skipWithoutBinDir as skip,
  volumePath,
  watchPath,
  withDriver,
} from "./support.ts";

const TEST_TIMEOUT_MS = 240_000;
const NODE = "e2e-node";
const GIB = 1024 ** 3;
/** hostpathplugin --capacity: "fast" for the capacity scenario alone, "std" for the others. */
const FAST_BYTES = 10 * GIB;
const PV_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer";
const CLONE_FINALIZER = "provisioner.storage.kubernetes.io/cloning-protection";
const SNAPSHOT_FINALIZER = "provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection";
const ALLOW_MODE_CHANGE = "snapshot.storage.kubernetes.io/allow-volume-mode-change";
const SNAPSHOT_API = "/apis/snapshot.storage.k8s.io/v1";

let cluster: Cluster;
let k: Kube;
let chain: SnapshotChain | undefined;
let ours: Sidecar | undefined;
let owner: OwnerPod;

/** The node's topology segment, as hostpathplugin reports it and the Node carries it. */
const SEGMENT = { [HOSTPATH_TOPOLOGY_KEY]: NODE };

type Claim = PersistentVolumeClaim;
type Volume = PersistentVolume;

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

const pvNameOf = (c: Claim) => `pvc-${c.metadata.uid}`;
const isMethod = (c: CsiCall, m: string) => c.Method === `/csi.v1.Controller/${m}`;

function createCalls(pvName: string): CsiCall[] {
  return cluster.csiCalls().filter((c) => isMethod(c, "CreateVolume") && c.Request.name === pvName);
}

function deleteCalls(volumeId: string): CsiCall[] {
  return cluster
    .csiCalls()
    .filter((c) => isMethod(c, "DeleteVolume") && c.Request.volume_id === volumeId);
}

interface CreateRequest {
  name?: string;
  capacity_range?: { required_bytes?: number };
  parameters?: Record<string, string>;
  volume_capabilities?: {
    AccessType?: { Mount?: { fs_type?: string }; Block?: Record<string, never> };
    access_mode?: { mode?: number };
  }[];
  accessibility_requirements?: {
    requisite?: { segments?: Record<string, string> }[];
    preferred?: { segments?: Record<string, string> }[];
  };
  volume_content_source?: {
    Type?: {
      Volume?: { volume_id?: string };
      Snapshot?: { snapshot_id?: string };
    };
  };
}

function volumeIdOf(c: CsiCall): string {
  return (c.Response as { volume?: { volume_id?: string } } | null)?.volume?.volume_id ?? "";
}

/** The one successful CreateVolume call for `pvName`. */
function theCreateCall(pvName: string): { req: CreateRequest; volumeId: string } {
  const ok = createCalls(pvName).filter((c) => c.Error === "");
  assert.equal(ok.length, 1, `successful CreateVolume calls for ${pvName}: ${ok.length}`);
  return { req: ok[0]!.Request as CreateRequest, volumeId: volumeIdOf(ok[0]!) };
}

async function storageClass(
  name: string,
  mode: "Immediate" | "WaitForFirstConsumer",
  opts: { reclaimPolicy?: "Delete" | "Retain"; parameters?: Record<string, string> } = {},
): Promise<void> {
  await k.ensureStorageClass(name, cluster.driverName, {
    reclaimPolicy: opts.reclaimPolicy ?? "Delete",
    volumeBindingMode: mode,
    parameters: { kind: "std", ...opts.parameters },
  });
}

/** The PV's required node affinity, as [key, operator, values] triples. */
function nodeAffinity(pv: Volume): unknown {
  const spec = pv.spec as {
    nodeAffinity?: {
      required?: {
        nodeSelectorTerms?: {
          matchExpressions?: { key: string; operator: string; values?: string[] }[];
        }[];
      };
    };
  };
  return spec.nodeAffinity?.required?.nodeSelectorTerms?.map((t) =>
    (t.matchExpressions ?? []).map((e) => [e.key, e.operator, e.values]),
  );
}

/** Deletes the claim and waits until its PV and the driver's volume are gone. */
async function deleteAndWait(ns: string, name: string, pvName: string, volumeId: string) {
  await k.call("DELETE", claimPath(ns, name));
  await k.waitGone(`PV ${pvName} to be deleted`, volumePath(pvName));
  await eventually(`volume ${volumeId} to be gone from ListVolumes`, async () =>
    (await cluster.listVolumes()).some((v) => v.id === volumeId) ? undefined : true,
  );
  assert.ok(
    deleteCalls(volumeId).some((c) => c.Error === ""),
    `no successful DeleteVolume for ${volumeId}`,
  );
}

/** Parses a Kubernetes quantity ("10Gi", "7516192768", "512Mi") into bytes. */
function bytesOf(q: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?)([KMGTPE]i?|k)?$/.exec(q ?? "");
  assert.ok(m, `not a quantity: ${q}`);
  const binary: Record<string, number> = { Ki: 1, Mi: 2, Gi: 3, Ti: 4, Pi: 5, Ei: 6 };
  const decimal: Record<string, number> = { k: 1, K: 1, M: 2, G: 3, T: 4, P: 5, E: 6 };
  const unit = m[2] ?? "";
  const factor =
    unit in binary ? 1024 ** binary[unit]! : unit in decimal ? 1000 ** decimal[unit]! : 1;
  return Number(m[1]) * factor;
}

/* ------------------------------------------------------------------------ */
/* The cluster                                                               */
/* ------------------------------------------------------------------------ */

before(
  async () => {
    if (!binDir) return;
    cluster = await startCluster({
      binDir,
      driver: "hostpath",
      enableTopology: true,
      capacity: [`fast=${FAST_BYTES}`, "std=900Gi"],
      log,
      keepWorkDir: Boolean(process.env.E2E_KEEP_DIR),
    });
    k = kube((m, p, b, o) => cluster.request(m, p, b, o));
    // The node, as kubelet and the driver's node plugin would register it.
    await k.ensure("/api/v1/nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: NODE, labels: { ...SEGMENT, "kubernetes.io/hostname": NODE } },
    });
    await k.ensure("/apis/storage.k8s.io/v1/csinodes", {
      apiVersion: "storage.k8s.io/v1",
      kind: "CSINode",
      metadata: { name: NODE },
      spec: {
        drivers: [
          { name: cluster.driverName, nodeID: NODE, topologyKeys: [HOSTPATH_TOPOLOGY_KEY] },
        ],
      },
    });
    const [pod] = await Promise.all([
      ensureOwnerPod(cluster),
      installSnapshotCrds(cluster, binDir).then(async () => {
        chain = await startSnapshotChain(cluster, { binDir: binDir!, log });
      }),
    ]);
    owner = pod;
    ours = await startSidecar(cluster, {
      flavour: "ours",
      binDir,
      args: [
        "-v=5",
        "--enable-capacity",
        "--capacity-poll-interval=2s",
        "--capacity-ownerref-level=1",
        "--retry-interval-max=4s",
      ],
      env: { NAMESPACE: owner.namespace, POD_NAME: owner.podName },
      log,
    });
  },
  { timeout: TEST_TIMEOUT_MS },
);

after(
  async () => {
    await ours?.stop();
    await chain?.stop();
    await killAllStarted();
    if (process.env.E2E_KEEP_DIR && cluster) console.error(`e2e: kept ${cluster.dir}`);
    await cluster?.stop();
  },
  { timeout: TEST_TIMEOUT_MS },
);

/** Runs a scenario; a failure carries the tail of the provisioner's log. */
async function withLogs(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof Error && ours) {
      err.message += `\n--- last lines of ${ours.process.name} (${ours.process.logFile}) ---\n${ours.process.tail(40)}`;
    }
    throw err;
  }
}

/* ------------------------------------------------------------------------ */
/* The scenarios                                                             */
/* ------------------------------------------------------------------------ */

describe("csi-provisioner against hostpathplugin and the snapshot chain", {
  concurrency: true,
}, () => {
  it(
    "Immediate binding: provisions with the cluster's topology, deletes with the claim; Retain keeps the volume",
    {
      skip,
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        const ns = "hp-immediate";
        await k.ensureNamespace(ns);
        await storageClass("hp-immediate", "Immediate", {
          parameters: { "csi.storage.k8s.io/fstype": "ext4" },
        });
        await storageClass("hp-retain", "Immediate", { reclaimPolicy: "Retain" });
        const created = await k.createClaim(ns, "data", "hp-immediate", { size: "2Gi" });
        const kept = await k.createClaim(ns, "kept", "hp-retain");
        const pvName = pvNameOf(created);
        const bound = await k.waitBound(ns, ["data", "kept"]);
        assert.equal(bound.get("data")!.spec.volumeName, pvName);

        const { req, volumeId } = theCreateCall(pvName);
        assert.equal(req.capacity_range?.required_bytes, 2 * GIB);
        assert.deepEqual(req.parameters, { kind: "std" });
        assert.equal(req.volume_capabilities?.[0]?.AccessType?.Mount?.fs_type, "ext4");
        // ReadWriteOnce: hostpathplugin has SINGLE_NODE_MULTI_WRITER, so that mode.
        assert.equal(
          req.volume_capabilities?.[0]?.access_mode?.mode,
          7,
          "SINGLE_NODE_MULTI_WRITER",
        );
        // Immediate binding: the topology of every node that runs the driver (--immediate-topology).
        assert.deepEqual(req.accessibility_requirements?.requisite, [{ segments: SEGMENT }]);
        assert.deepEqual(req.accessibility_requirements?.preferred, [{ segments: SEGMENT }]);

        const pv = (await k.volume(pvName))!;
        assert.equal(pv.spec.csi?.driver, cluster.driverName);
        assert.equal(pv.spec.csi?.volumeHandle, volumeId);
        assert.equal(pv.spec.csi?.fsType, "ext4");
        assert.equal(pv.spec.capacity?.storage, "2Gi");
        assert.deepEqual(nodeAffinity(pv), [[[HOSTPATH_TOPOLOGY_KEY, "In", [NODE]]]]);
        assert.ok(pv.metadata.finalizers?.includes(PV_FINALIZER), `${pv.metadata.finalizers}`);
        const onDriver = (await cluster.listVolumes()).find((v) => v.id === volumeId);
        assert.equal(onDriver?.name, pvName);
        assert.equal(onDriver?.capacityBytes, BigInt(2 * GIB));
        const succeeded = await k.waitEvent(ns, "data", "ProvisioningSucceeded");
        assert.equal(succeeded.message, `Successfully provisioned volume ${pvName}`);

        await deleteAndWait(ns, "data", pvName, volumeId);

        // Retain: the PV is Released and keeps its volume; the provisioner never deletes it.
        const keptPv = pvNameOf(kept);
        const keptId = theCreateCall(keptPv).volumeId;
        assert.equal((await k.volume(keptPv))?.metadata.finalizers?.includes(PV_FINALIZER), false);
        await k.call("DELETE", claimPath(ns, "kept"));
        await eventually("the Retain PV to be Released", async () =>
          (await k.volume(keptPv))?.status?.phase === "Released" ? true : undefined,
        );
        assert.deepEqual(deleteCalls(keptId), []);
        assert.ok((await cluster.listVolumes()).some((v) => v.id === keptId));
        // The administrator's part: delete the PV and the volume by hand.
        await k.call("DELETE", volumePath(keptPv));
        await k.waitGone(`PV ${keptPv} to be deleted`, volumePath(keptPv));
        assert.deepEqual(deleteCalls(keptId), [], "the provisioner deleted a retained volume");
        await deleteOnDriver(keptId);
      }),
  );

  it(
    "WaitForFirstConsumer: provisions on the selected node only, with its topology and node affinity",
    {
      skip,
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        const ns = "hp-wffc";
        await k.ensureNamespace(ns);
        await storageClass("hp-wffc", "WaitForFirstConsumer");
        const late = await k.createClaim(ns, "late", "hp-wffc");
        const pvName = pvNameOf(late);
        // kube-controller-manager has seen the claim and left it to the scheduler.
        await k.waitEvent(ns, "late", "WaitForFirstConsumer");
        assert.deepEqual(createCalls(pvName), []);
        assert.equal((await k.claim(ns, "late"))?.status?.phase, "Pending");

        await k.annotate(claimPath(ns, "late"), { "volume.kubernetes.io/selected-node": NODE });
        await k.waitBound(ns, ["late"]);
        const { req, volumeId } = theCreateCall(pvName);
        assert.deepEqual(req.accessibility_requirements?.requisite, [{ segments: SEGMENT }]);
        assert.deepEqual(req.accessibility_requirements?.preferred, [{ segments: SEGMENT }]);
        const pv = (await k.volume(pvName))!;
        assert.deepEqual(nodeAffinity(pv), [[[HOSTPATH_TOPOLOGY_KEY, "In", [NODE]]]]);
        assert.equal(pv.spec.claimRef?.uid, late.metadata.uid);
        await deleteAndWait(ns, "late", pvName, volumeId);
      }),
  );

  it(
    "clones a PVC: the source carries the cloning-protection finalizer until it is deleted",
    {
      skip,
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        const ns = "hp-clone";
        await k.ensureNamespace(ns);
        await storageClass("hp-clone", "Immediate");
        const source = await k.createClaim(ns, "source", "hp-clone");
        await k.waitBound(ns, ["source"]);
        const sourceId = theCreateCall(pvNameOf(source)).volumeId;
        const watch = watchPath<Claim>(
          clusterWatchTarget(cluster),
          `${claimPath(ns)}?fieldSelector=${encodeURIComponent("metadata.name=source")}`,
        );
        try {
          const copy = await k.createClaim(ns, "copy", "hp-clone", {
            dataSource: { kind: "PersistentVolumeClaim", name: "source" },
          });
          await k.waitBound(ns, ["copy"]);
          const { req, volumeId } = theCreateCall(pvNameOf(copy));
          assert.equal(req.volume_content_source?.Type?.Volume?.volume_id, sourceId);
          await watch.waitFor("the cloning-protection finalizer on the source", (e) =>
            Boolean(e.object.metadata.finalizers?.includes(CLONE_FINALIZER)),
          );
          // It stays while the source lives, and goes when the source is deleted.
          const live = await k.claim(ns, "source");
          assert.ok(live?.metadata.finalizers?.includes(CLONE_FINALIZER));
          await k.call("DELETE", claimPath(ns, "source"));
          // Deleted means every finalizer was removed, the cloning protection included (the
          // DELETED event carries the object as it was before the last finalizer went).
          await watch.waitFor("the source to be deleted", (e) => e.type === "DELETED");
          await k.waitGone("the source's PV to be deleted", volumePath(pvNameOf(source)));
          await deleteAndWait(ns, "copy", pvNameOf(copy), volumeId);
        } finally {
          watch.stop();
        }
      }),
  );

  it(
    "restores a VolumeSnapshot taken by snapshot-controller and csi-snapshotter; refuses a volume mode change until the content allows it",
    {
      skip,
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        const ns = "hp-snapshot";
        await k.ensureNamespace(ns);
        await storageClass("hp-snapshot", "Immediate");
        await ensureSnapshotClass(cluster, "hp-snapshot");
        // Small volumes: a Block restore makes hostpathplugin fallocate a file of the claim's size.
        const origin = await k.createClaim(ns, "origin", "hp-snapshot", { size: "16Mi" });
        await k.waitBound(ns, ["origin"]);
        await k.call("POST", `${SNAPSHOT_API}/namespaces/${ns}/volumesnapshots`, {
          apiVersion: "snapshot.storage.k8s.io/v1",
          kind: "VolumeSnapshot",
          metadata: { name: "snap", namespace: ns },
          spec: {
            volumeSnapshotClassName: "hp-snapshot",
            source: { persistentVolumeClaimName: "origin" },
          },
        });
        const snapPath = `${SNAPSHOT_API}/namespaces/${ns}/volumesnapshots/snap`;
        const snap = await eventually("the VolumeSnapshot to be ready to use", async () => {
          const s = await k.get<VolumeSnapshot>(snapPath);
          return s?.status?.readyToUse ? s : undefined;
        });
        const contentPath = `${SNAPSHOT_API}/volumesnapshotcontents/${snap.status!.boundVolumeSnapshotContentName}`;
        const content = (await k.get<VolumeSnapshotContent>(contentPath))!;
        const snapshotId = content.status?.snapshotHandle;
        assert.ok(snapshotId, "no snapshot handle");

        const watch = watchPath<VolumeSnapshot>(
          clusterWatchTarget(cluster),
          `${SNAPSHOT_API}/namespaces/${ns}/volumesnapshots?fieldSelector=${encodeURIComponent("metadata.name=snap")}`,
        );
        try {
          const dataSource = {
            apiGroup: "snapshot.storage.k8s.io",
            kind: "VolumeSnapshot",
            name: "snap",
          };
          const restored = await k.createClaim(ns, "restored", "hp-snapshot", {
            size: "16Mi",
            dataSource,
          });
          await k.waitBound(ns, ["restored"]);
          const { req, volumeId } = theCreateCall(pvNameOf(restored));
          assert.equal(req.volume_content_source?.Type?.Snapshot?.snapshot_id, snapshotId);
          await watch.waitFor("the source-protection finalizer on the snapshot", (e) =>
            Boolean(e.object.metadata.finalizers?.includes(SNAPSHOT_FINALIZER)),
          );
          await eventually("the source-protection finalizer to be removed", async () =>
            (await k.get<VolumeSnapshot>(snapPath))?.metadata.finalizers?.includes(
              SNAPSHOT_FINALIZER,
            )
              ? undefined
              : true,
          );

          // --prevent-volume-mode-conversion (default true): a Filesystem snapshot into a Block
          // claim fails until the VolumeSnapshotContent carries the allow annotation.
          const block = await k.createClaim(ns, "as-block", "hp-snapshot", {
            size: "16Mi",
            volumeMode: "Block",
            dataSource,
          });
          const refused: CoreEvent = await k.waitEvent(ns, "as-block", "ProvisioningFailed");
          assert.equal(refused.type, "Warning");
          assert.match(refused.message ?? "", /mode/i);
          assert.deepEqual(createCalls(pvNameOf(block)), []);
          await k.annotate(contentPath, { [ALLOW_MODE_CHANGE]: "true" });
          await k.waitBound(ns, ["as-block"]);
          const blockCreate = theCreateCall(pvNameOf(block));
          assert.ok(
            blockCreate.req.volume_capabilities?.[0]?.AccessType?.Block,
            "not a Block volume",
          );
          assert.equal(
            blockCreate.req.volume_content_source?.Type?.Snapshot?.snapshot_id,
            snapshotId,
          );
          assert.equal((await k.volume(pvNameOf(block)))?.spec.volumeMode, "Block");

          await deleteAndWait(ns, "restored", pvNameOf(restored), volumeId);
          await deleteAndWait(ns, "as-block", pvNameOf(block), blockCreate.volumeId);
          await k.call("DELETE", snapPath);
          await k.waitGone("the VolumeSnapshot to be deleted", snapPath);
          await deleteAndWait(
            ns,
            "origin",
            pvNameOf(origin),
            theCreateCall(pvNameOf(origin)).volumeId,
          );
        } finally {
          watch.stop();
        }
      }),
  );

  it(
    "publishes CSIStorageCapacity per StorageClass and node, owned by its ReplicaSet, and shrinks it after provisioning",
    {
      skip,
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        const ns = "hp-capacity";
        await k.ensureNamespace(ns);
        await storageClass("hp-capacity", "WaitForFirstConsumer", { parameters: { kind: "fast" } });
        const capacities = async () =>
          (
            await k.call<KubeList<CSIStorageCapacity>>(
              "GET",
              `/apis/storage.k8s.io/v1/namespaces/${owner.namespace}/csistoragecapacities`,
            )
          ).items.filter((c) => c.storageClassName === "hp-capacity");
        const capacityIs = (bytes: number) =>
          eventually(`the hp-capacity capacity to be ${bytes} bytes`, async () => {
            const list = await capacities();
            return list.length === 1 && bytesOf(list[0]!.capacity) === bytes ? list[0] : undefined;
          });

        const full = await capacityIs(FAST_BYTES);
        assert.deepEqual(full.nodeTopology, { matchLabels: SEGMENT });
        assert.deepEqual(
          full.metadata.ownerReferences?.map((o) => [
            o.apiVersion,
            o.kind,
            o.name,
            o.uid,
            o.controller,
          ]),
          [["apps/v1", "ReplicaSet", owner.replicaSet.name, owner.replicaSet.uid, true]],
        );

        const claim = await k.createClaim(ns, "fat", "hp-capacity", {
          size: "3Gi",
          annotations: { "volume.kubernetes.io/selected-node": NODE },
        });
        await k.waitBound(ns, ["fat"]);
        const { req, volumeId } = theCreateCall(pvNameOf(claim));
        assert.deepEqual(req.parameters, { kind: "fast" });
        await capacityIs(FAST_BYTES - 3 * GIB);
        await deleteAndWait(ns, "fat", pvNameOf(claim), volumeId);
        await capacityIs(FAST_BYTES);
      }),
  );
});

describe("after the scenarios", () => {
  it("leaves no volume behind: every volume ListVolumes reports belongs to a PV, one per name", {
    skip,
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const volumes = await cluster.listVolumes();
    const pvs = (await k.call<KubeList<Volume>>("GET", volumePath())).items;
    const handles = new Set(pvs.map((pv) => pv.spec.csi?.volumeHandle));
    const leaked = volumes.filter((v) => !handles.has(v.id));
    assert.deepEqual(
      leaked.map((v) => `${v.id} (${v.name})`),
      [],
      "volumes on the driver without a PV",
    );
    const names = volumes.map((v) => v.name);
    assert.equal(new Set(names).size, names.length, `duplicate names: ${names.join(", ")}`);
  });
});

/** DeleteVolume straight on the driver (what an administrator does with a retained volume). */
async function deleteOnDriver(volumeId: string): Promise<void> {
  await withDriver(cluster.csiSocket, (driver) => driver.deleteVolume({ volumeId, secrets: {} }));
}
