/**
 * The provisioning controller end to end in-process: the real sidecar against the test API
 * server (real HTTP, real watches) and the fake CSI driver (real gRPC on a unix socket).
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { INTENT_ANNOTATION_PREFIX, JOURNAL_LABEL } from "../../src/controller/journal.ts";
import {
  ControllerServiceCapability_RPC_Type as Cap,
  CreateVolumeRequestSchema,
} from "../../src/gen/csi/v1/csi_pb.js";
import type { CoreEvent, Lease, PersistentVolume } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { FINALIZER_PV } from "../../src/provision/should-provision.ts";
import { fail, hangForever } from "../support/fake-driver.ts";
import {
  claim,
  DRIVER,
  type Harness,
  releaseVolumesOf,
  startHarness,
  storageClass,
} from "../support/sidecar-harness.ts";
import { eventually } from "../support/wait.ts";

const FAST = ["--kube-api-qps=1000", "--kube-api-burst=1000"];

function events(h: Harness, reason?: string): CoreEvent[] {
  return h.apiserver
    .objects(resources.coreEvents)
    .filter((e) => reason === undefined || e.reason === reason);
}

function intents(h: Harness): string[] {
  const out: string[] = [];
  for (const lease of h.apiserver.objects(resources.leases, "kube-system") as Lease[]) {
    if (lease.metadata.labels?.[JOURNAL_LABEL] !== "true") continue;
    for (const k of Object.keys(lease.metadata.annotations ?? {})) {
      if (k.startsWith(INTENT_ANNOTATION_PREFIX))
        out.push(k.slice(INTENT_ANNOTATION_PREFIX.length));
    }
  }
  return out;
}

function pvOf(h: Harness, uid: string): PersistentVolume | undefined {
  return h.apiserver.get(resources.persistentVolumes, `pvc-${uid}`);
}

describe("provisioning controller", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  it("sends the exact CreateVolumeRequest and writes the exact PV", async () => {
    await h.start(FAST);
    h.apiserver.put(
      storageClass("fast", {
        parameters: { tier: "gold", "csi.storage.k8s.io/fstype": "xfs" },
        mountOptions: ["noatime"],
      }),
    );
    const c = h.apiserver.put(
      claim("data", "fast", { size: "5Gi", accessModes: ["ReadWriteOnce"] }),
    );
    const uid = c.metadata.uid!;
    const pv = await h.apiserver.waitFor(() => pvOf(h, uid));
    const [call] = await h.driver.waitForCalls("createVolume");
    assert.deepEqual(toJson(CreateVolumeRequestSchema, call!.request), {
      name: `pvc-${uid}`,
      capacityRange: { requiredBytes: "5368709120" },
      volumeCapabilities: [
        {
          mount: { fsType: "xfs", mountFlags: ["noatime"] },
          accessMode: { mode: "SINGLE_NODE_WRITER" },
        },
      ],
      parameters: { tier: "gold" },
    });
    const identity =
      pv.spec.csi?.volumeAttributes?.["storage.kubernetes.io/csiProvisionerIdentity"];
    assert.match(identity ?? "", /^\d+-\d+-fake\.csi\.k8s\.io$/);
    assert.deepEqual(
      {
        metadata: {
          ...pv.metadata,
          uid: undefined,
          resourceVersion: undefined,
          creationTimestamp: undefined,
        },
        spec: pv.spec,
      },
      {
        metadata: {
          name: `pvc-${uid}`,
          annotations: {
            "pv.kubernetes.io/provisioned-by": DRIVER,
            "volume.kubernetes.io/provisioner-deletion-secret-name": "",
            "volume.kubernetes.io/provisioner-deletion-secret-namespace": "",
          },
          finalizers: ["external-provisioner.volume.kubernetes.io/finalizer"],
          uid: undefined,
          resourceVersion: undefined,
          creationTimestamp: undefined,
        },
        spec: {
          accessModes: ["ReadWriteOnce"],
          capacity: { storage: "5Gi" },
          claimRef: {
            apiVersion: "v1",
            kind: "PersistentVolumeClaim",
            namespace: "default",
            name: "data",
            uid,
            resourceVersion: c.metadata.resourceVersion,
          },
          csi: {
            driver: DRIVER,
            volumeHandle: `id-pvc-${uid}`,
            fsType: "xfs",
            volumeAttributes: { "storage.kubernetes.io/csiProvisionerIdentity": identity },
          },
          mountOptions: ["noatime"],
          persistentVolumeReclaimPolicy: "Delete",
          storageClassName: "fast",
          volumeMode: "Filesystem",
        },
      },
    );
    const succeeded = await h.apiserver.waitFor(() => events(h, "ProvisioningSucceeded")[0]);
    assert.equal(succeeded.message, `Successfully provisioned volume pvc-${uid}`);
    assert.equal(succeeded.involvedObject.uid, uid);
    await h.apiserver.waitFor(() => intents(h).length === 0);
  });

  it("deletes the backend volume and the PV once a Delete PV is released", async () => {
    await h.start(FAST);
    h.apiserver.put(storageClass("fast"));
    const c = h.apiserver.put(claim("gone", "fast"));
    const uid = c.metadata.uid!;
    await h.apiserver.waitFor(() => pvOf(h, uid));
    assert.equal(h.driver.volumes().size, 1);
    h.apiserver.remove(resources.persistentVolumeClaims, "gone", "default");
    releaseVolumesOf(h.apiserver, uid);
    await h.apiserver.waitFor(() => !pvOf(h, uid));
    const [del] = await h.driver.waitForCalls("deleteVolume");
    assert.equal(del!.request.volumeId, `id-pvc-${uid}`);
    assert.equal(h.driver.volumes().size, 0);
  });

  it("deletes with one DELETE and one PATCH, no conflict, and logs it once", async () => {
    await h.start(FAST);
    h.apiserver.put(storageClass("fast"));
    const c = h.apiserver.put(claim("once", "fast"));
    const uid = c.metadata.uid!;
    await h.apiserver.waitFor(() => pvOf(h, uid)?.metadata.finalizers?.length);
    // kube-controller-manager's pv-protection finalizer, removed by it once the PV is deleted.
    const pv = pvOf(h, uid)!;
    h.apiserver.put({
      ...pv,
      metadata: {
        ...pv.metadata,
        finalizers: ["kubernetes.io/pv-protection", ...(pv.metadata.finalizers ?? [])],
      },
    });
    h.apiserver.writes.reset();
    h.apiserver.remove(resources.persistentVolumeClaims, "once", "default");
    releaseVolumesOf(h.apiserver, uid);
    await h.apiserver.waitFor(() => pvOf(h, uid)?.metadata.deletionTimestamp);
    const deleting = pvOf(h, uid)!;
    h.apiserver.put({
      ...deleting,
      metadata: {
        ...deleting.metadata,
        finalizers: deleting.metadata.finalizers?.filter(
          (f) => f !== "kubernetes.io/pv-protection",
        ),
      },
    });
    await h.apiserver.waitFor(() => !pvOf(h, uid));
    await h.apiserver.waitFor(() => h.logs.some((l) => l.includes("Deleted volume")));
    assert.equal(h.driver.callsTo("deleteVolume").length, 1);
    const pvWrites = Object.entries(h.apiserver.writes.snapshot()).filter(([k]) =>
      k.endsWith(" persistentvolumes"),
    );
    assert.deepEqual(Object.fromEntries(pvWrites), {
      "delete persistentvolumes": 1,
      "patch persistentvolumes": 1,
    });
    assert.equal(h.logs.filter((l) => l.includes("Deleted volume")).length, 1);
  });

  it("keeps the volume of a Retain PV and leaves no finalizer on it", async () => {
    await h.start(FAST);
    h.apiserver.put(storageClass("keep", { reclaimPolicy: "Retain" }));
    const c = h.apiserver.put(claim("kept", "keep"));
    const uid = c.metadata.uid!;
    const pv = await h.apiserver.waitFor(() => pvOf(h, uid));
    assert.equal(pv.spec.persistentVolumeReclaimPolicy, "Retain");
    assert.deepEqual(pv.metadata.finalizers ?? [], []);
    releaseVolumesOf(h.apiserver, uid);
    await h.apiserver.waitFor(() => pvOf(h, uid)?.status?.phase === "Released");
    assert.equal(h.driver.callsTo("deleteVolume").length, 0);
    assert.equal(h.driver.volumes().size, 1);
  });

  it("resolves secret templates and sends the secret's data", async () => {
    await h.start(FAST);
    h.apiserver.put({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "creds-team-a", namespace: "team-a" },
      data: { password: btoa("s3cret") },
    });
    h.apiserver.put(
      storageClass("secret", {
        parameters: {
          // biome-ignore lint/suspicious/noTemplateCurlyInString: a StorageClass secret template
          "csi.storage.k8s.io/provisioner-secret-name": "creds-${pvc.namespace}",
          // biome-ignore lint/suspicious/noTemplateCurlyInString: a StorageClass secret template
          "csi.storage.k8s.io/provisioner-secret-namespace": "${pvc.namespace}",
        },
      }),
    );
    h.apiserver.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "team-a" } });
    const c = h.apiserver.put(claim("s", "secret", { namespace: "team-a" }));
    const pv = await h.apiserver.waitFor(() => pvOf(h, c.metadata.uid!));
    const [call] = h.driver.callsTo("createVolume");
    assert.deepEqual(call!.request.secrets, { password: "s3cret" });
    assert.deepEqual(call!.request.parameters, {});
    assert.equal(
      pv.metadata.annotations?.["volume.kubernetes.io/provisioner-deletion-secret-name"],
      "creds-team-a",
    );
    assert.equal(
      pv.metadata.annotations?.["volume.kubernetes.io/provisioner-deletion-secret-namespace"],
      "team-a",
    );
  });

  it("rejects a class with an unknown csi.storage.k8s.io/ parameter with an event and no volume", async () => {
    await h.start([...FAST, "--retry-interval-start=1h", "--retry-interval-max=2h"]);
    h.apiserver.put(storageClass("bad", { parameters: { "csi.storage.k8s.io/bogus": "x" } }));
    h.apiserver.put(claim("b", "bad"));
    const ev = await h.apiserver.waitFor(() => events(h, "ProvisioningFailed")[0]);
    assert.match(ev.message, /csi\.storage\.k8s\.io\/bogus/);
    assert.equal(h.driver.callsTo("createVolume").length, 0);
    assert.deepEqual(intents(h), []);
  });

  it("provisions a claim created before its StorageClass as soon as the class appears", async () => {
    // A one-hour back-off: only the class's arrival can bring the claim back in time.
    const sidecar = await h.start([
      ...FAST,
      "--retry-interval-start=1h",
      "--retry-interval-max=2h",
    ]);
    const c = h.apiserver.put(claim("early-bird", "later"));
    // The attempt without the class counts as a failed one (a metric, no event of its own).
    await eventually(
      "a failed attempt without the class",
      () => sidecar.metrics.provisionFailed.value({ class: "later", source: "" }) >= 1 || undefined,
      { timeoutMs: 5000, intervalMs: 5 },
    );
    h.apiserver.put(storageClass("later"));
    await h.apiserver.waitFor(() => pvOf(h, c.metadata.uid!));
    // Once ProvisioningSucceeded is there, an earlier event would be: a Normal one is written in
    // order, a Warning ahead of the Normal ones queued after it.
    await h.apiserver.waitFor(() => events(h, "ProvisioningSucceeded")[0]);
    // As upstream: a class missing from the cache (here: not created yet; mostly an informer
    // that lags behind the claim's) is no ProvisioningFailed event; kube-controller-manager
    // reports a class that really does not exist.
    assert.deepEqual(
      events(h, "ProvisioningFailed").map((e) => e.message),
      [],
    );
  });

  it("ignores claims for other provisioners and claims that are bound already", async () => {
    await h.start(FAST);
    h.apiserver.put(storageClass("fast"));
    h.apiserver.put(storageClass("other", { provisioner: "other.example.com" }));
    h.apiserver.put(
      claim("theirs", "other", {
        annotations: { "volume.kubernetes.io/storage-provisioner": "other.example.com" },
      }),
    );
    h.apiserver.put(claim("bound", "fast", { volumeName: "some-pv" }));
    const mine = h.apiserver.put(claim("mine", "fast"));
    await h.apiserver.waitFor(() => pvOf(h, mine.metadata.uid!));
    assert.equal(h.driver.callsTo("createVolume").length, 1);
  });

  it("queues at start only the claims and PVs that need work", async () => {
    h.apiserver.put(storageClass("fast"));
    const volume = (
      name: string,
      driver: string,
      phase: "Bound" | "Released",
      finalizers: string[],
    ): PersistentVolume => ({
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: {
        name,
        annotations: { "pv.kubernetes.io/provisioned-by": driver },
        ...(finalizers.length > 0 ? { finalizers } : {}),
      },
      spec: {
        accessModes: ["ReadWriteOnce"],
        capacity: { storage: "1Gi" },
        claimRef: { apiVersion: "v1", kind: "PersistentVolumeClaim", namespace: "default", name },
        csi: { driver, volumeHandle: `handle-${name}` },
        persistentVolumeReclaimPolicy: "Delete",
        storageClassName: "fast",
      },
      status: { phase },
    });
    // Nothing to do for these: a bound claim, another provisioner's claim, a Bound PV of this
    // driver with its finalizer, another driver's Released PV.
    h.apiserver.put(claim("settled", "fast", { volumeName: "settled" }));
    h.apiserver.put(
      claim("theirs", "fast", {
        annotations: { "volume.kubernetes.io/storage-provisioner": "other.example.com" },
      }),
    );
    h.apiserver.put(volume("settled", DRIVER, "Bound", [FINALIZER_PV]));
    h.apiserver.put(volume("foreign", "other.example.com", "Released", [FINALIZER_PV]));
    // Work: a claim to provision, a PV without its finalizer, a Released PV to delete.
    const pending = h.apiserver.put(claim("pending", "fast"));
    h.apiserver.put(volume("unprotected", DRIVER, "Bound", []));
    h.apiserver.put(volume("released", DRIVER, "Released", [FINALIZER_PV]));

    const s = await h.start(FAST);
    await h.apiserver.waitFor(() => pvOf(h, pending.metadata.uid!));
    await h.apiserver.waitFor(() =>
      h.apiserver
        .get(resources.persistentVolumes, "unprotected")
        ?.metadata.finalizers?.includes(FINALIZER_PV),
    );
    await h.apiserver.waitFor(() => !h.apiserver.get(resources.persistentVolumes, "released"));
    assert.deepEqual(
      h.driver.callsTo("deleteVolume").map((c) => c.request.volumeId),
      ["handle-released"],
    );
    assert.ok(h.apiserver.get(resources.persistentVolumes, "foreign"));
    assert.deepEqual(h.apiserver.get(resources.persistentVolumes, "settled")?.metadata.finalizers, [
      FINALIZER_PV,
    ]);
    // The claims that need nothing were never synced (a sync logs "Not provisioning claim").
    for (const name of ["settled", "theirs"]) {
      assert.equal(
        h.logs.some((l) => l.includes("Not provisioning claim") && l.includes(`default/${name}`)),
        false,
        name,
      );
    }
    // The volume queue took the two PVs that needed work and nothing else at start (a third add
    // is the deleted PV's last update, when it arrives after its sync ended).
    const adds = /workqueue_adds_total\{name="volumes"\} (\d+)/.exec(s.metrics.registry.render());
    assert.ok(Number(adds?.[1]) >= 2 && Number(adds?.[1]) < 4, `volume adds: ${adds?.[1]}`);
  });

  it("refuses to delete a volume a VolumeAttachment still references, then deletes it", async () => {
    await h.close();
    h = await startHarness({
      driver: { controllerCapabilities: [Cap.CREATE_DELETE_VOLUME, Cap.PUBLISH_UNPUBLISH_VOLUME] },
    });
    // The attachment exists before the sidecar starts, so its cache holds it from the first list.
    const uid = "0a0a0a0a-1111-2222-3333-444444444444";
    h.apiserver.put({
      apiVersion: "storage.k8s.io/v1",
      kind: "VolumeAttachment",
      metadata: { name: "va-1" },
      spec: {
        attacher: DRIVER,
        nodeName: "node-1",
        source: { persistentVolumeName: `pvc-${uid}` },
      },
    });
    h.apiserver.put(storageClass("fast"));
    await h.start(FAST);
    const base = claim("att", "fast");
    h.apiserver.put({ ...base, metadata: { ...base.metadata, uid } });
    await h.apiserver.waitFor(() => pvOf(h, uid));
    releaseVolumesOf(h.apiserver, uid);
    const ev = await h.apiserver.waitFor(() => events(h, "VolumeFailedDelete")[0]);
    assert.equal(ev.message, `persistentvolume pvc-${uid} is still attached to node node-1`);
    assert.equal(h.driver.callsTo("deleteVolume").length, 0);
    h.apiserver.remove(resources.volumeAttachments, "va-1");
    await h.apiserver.waitFor(() => !pvOf(h, uid));
    assert.equal(h.driver.volumes().size, 0);
  });
});

describe("optional controllers", () => {
  let h: Harness;
  afterEach(async () => {
    await h.close();
  });

  it("publishes CSIStorageCapacity objects with --enable-capacity", async () => {
    h = await startHarness();
    h.apiserver.put(storageClass("late", { volumeBindingMode: "WaitForFirstConsumer" }));
    await h.start([...FAST, "--enable-capacity", "--capacity-ownerref-level=-1"], {
      NAMESPACE: "kube-system",
    });
    const csc = await h.apiserver.waitFor(
      () => h.apiserver.objects(resources.csiStorageCapacities, "kube-system")[0],
    );
    assert.equal(csc.storageClassName, "late");
    assert.equal(csc.metadata.labels?.["csi.storage.k8s.io/drivername"], DRIVER);
    assert.equal(csc.metadata.labels?.["csi.storage.k8s.io/managed-by"], "external-provisioner");
    assert.ok(h.driver.callsTo("getCapacity").length >= 1);
  });

  it("in node-deployment mode provisions only claims selected for its node", async () => {
    h = await startHarness({ driver: { topology: { "topology.fake/node": "n1" }, nodeId: "n1" } });
    h.apiserver.put(storageClass("local", { volumeBindingMode: "WaitForFirstConsumer" }));
    await h.start([...FAST, "--node-deployment"], { NODE_NAME: "n1" });
    const other = h.apiserver.put(
      claim("other", "local", { annotations: { "volume.kubernetes.io/selected-node": "n2" } }),
    );
    const mine = h.apiserver.put(
      claim("mine", "local", { annotations: { "volume.kubernetes.io/selected-node": "n1" } }),
    );
    const pv = await h.apiserver.waitFor(() => pvOf(h, mine.metadata.uid!));
    assert.deepEqual(pv.spec.nodeAffinity?.required?.nodeSelectorTerms, [
      { matchExpressions: [{ key: "topology.fake/node", operator: "In", values: ["n1"] }] },
    ]);
    assert.equal(pvOf(h, other.metadata.uid!), undefined);
    assert.equal(h.driver.callsTo("createVolume").length, 1);
  });
});

describe("provisioning outcomes by gRPC code", () => {
  // Code → whether the driver may still be creating the volume (the intent must stay).
  const table: [Code, "inBackground" | "finished"][] = [
    [Code.Canceled, "inBackground"],
    [Code.Unknown, "finished"],
    [Code.InvalidArgument, "finished"],
    [Code.DeadlineExceeded, "inBackground"],
    [Code.NotFound, "finished"],
    [Code.AlreadyExists, "finished"],
    [Code.PermissionDenied, "finished"],
    [Code.ResourceExhausted, "finished"],
    [Code.FailedPrecondition, "finished"],
    [Code.Aborted, "inBackground"],
    [Code.OutOfRange, "finished"],
    [Code.Unimplemented, "finished"],
    [Code.Internal, "finished"],
    [Code.Unavailable, "inBackground"],
    [Code.DataLoss, "finished"],
    [Code.Unauthenticated, "finished"],
  ];
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
    // A long first back-off freezes the state right after the failed attempt.
    await h.start([...FAST, "--retry-interval-start=1h", "--retry-interval-max=2h"]);
    h.apiserver.put(storageClass("fast"));
  });
  afterEach(async () => {
    await h.close();
  });

  for (const [code, outcome] of table) {
    it(`${Code[code]} is ${outcome}: event, and the intent ${outcome === "inBackground" ? "kept" : "cleared"}`, async () => {
      h.driver.once("createVolume", fail(code, "driver says no"));
      const c = h.apiserver.put(claim(`c-${code}`, "fast"));
      const ev = await h.apiserver.waitFor(() => events(h, "ProvisioningFailed")[0]);
      // Upstream's texts: the gRPC error as it is; for InvalidArgument one event that says
      // retries are delayed.
      const rpcError = `rpc error: code = ${Code[code]} desc = driver says no`;
      assert.equal(
        ev.message,
        code === Code.InvalidArgument
          ? `Volume provisioning failed with infeasible error. Retries will be delayed. ${rpcError}`
          : rpcError,
      );
      // The journal removal is batched (1 s); wait for the state to settle either way.
      if (outcome === "inBackground") {
        assert.deepEqual(intents(h), [c.metadata.uid]);
      } else {
        await h.apiserver.waitFor(() => intents(h).length === 0);
      }
      assert.equal(pvOf(h, c.metadata.uid!), undefined);
    });
  }
});

describe("crash safety and races", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
    h.apiserver.put(storageClass("fast"));
  });
  afterEach(async () => {
    await h.close();
  });

  it("records the intent in the API before CreateVolume reaches the driver", async () => {
    await h.start(FAST);
    const held = h.driver.hold("createVolume");
    const c = h.apiserver.put(claim("early", "fast"));
    await held.arrived;
    assert.deepEqual(intents(h), [c.metadata.uid]);
    held.release();
    await h.apiserver.waitFor(() => pvOf(h, c.metadata.uid!));
  });

  it("deletes the volume of a claim deleted while CreateVolume was running", async () => {
    await h.start(FAST);
    const held = h.driver.hold("createVolume");
    const c = h.apiserver.put(claim("vanishing", "fast"));
    await held.arrived;
    h.apiserver.remove(resources.persistentVolumeClaims, "vanishing", "default");
    held.release();
    // Either the controller saw the deletion before CreateVolume returned and deleted the volume
    // at once, or it saved the PV first; then kube-controller-manager (played here) releases the
    // PV and the volume is deleted through it. Both must end with nothing left.
    const path = await h.apiserver.waitFor(() =>
      pvOf(h, c.metadata.uid!)
        ? "pv"
        : h.driver.callsTo("deleteVolume").length > 0 && h.driver.volumes().size === 0
          ? "direct"
          : undefined,
    );
    if (path === "pv") releaseVolumesOf(h.apiserver, c.metadata.uid!);
    await h.apiserver.waitFor(
      () => intents(h).length === 0 && h.driver.volumes().size === 0 && !pvOf(h, c.metadata.uid!),
    );
    assert.ok(h.driver.callsTo("deleteVolume").length >= 1);
  });

  it("after a crash between CreateVolume and the PV save, deletes the volume of a claim deleted meanwhile", async () => {
    const first = await h.start(FAST);
    // The driver creates the volume but the answer never comes back: the process "dies".
    h.driver.once("createVolume", async (_req, ctx) => {
      await ctx.next();
      return hangForever<"createVolume">()(_req, ctx);
    });
    const c = h.apiserver.put(claim("orphan", "fast"));
    await h.driver.waitForCalls("createVolume");
    assert.equal(h.driver.volumes().size, 1);
    await first.stop();
    h.apiserver.remove(resources.persistentVolumeClaims, "orphan", "default");
    assert.deepEqual(intents(h), [c.metadata.uid]);

    await h.start(FAST);
    await h.apiserver.waitFor(() => intents(h).length === 0 && h.driver.volumes().size === 0);
    assert.equal(pvOf(h, c.metadata.uid!), undefined);
  });

  it("after a crash mid-provision, finishes a surviving claim with exactly one volume", async () => {
    const first = await h.start(FAST);
    h.driver.once("createVolume", async (_req, ctx) => {
      await ctx.next();
      return hangForever<"createVolume">()(_req, ctx);
    });
    const c = h.apiserver.put(claim("survivor", "fast"));
    await h.driver.waitForCalls("createVolume");
    await first.stop();
    await h.start(FAST);
    await h.apiserver.waitFor(() => pvOf(h, c.metadata.uid!));
    await h.apiserver.waitFor(() => intents(h).length === 0);
    assert.equal(h.driver.volumes().size, 1);
  });

  it("retries a PV save that fails with 500 without calling CreateVolume again", async () => {
    await h.start(FAST);
    h.apiserver.failNext({
      method: "POST",
      pathPrefix: "/api/v1/persistentvolumes",
      status: 500,
      count: 2,
    });
    const c = h.apiserver.put(claim("flaky", "fast"));
    await h.apiserver.waitFor(() => pvOf(h, c.metadata.uid!));
    assert.equal(h.driver.callsTo("createVolume").length, 1);
    assert.equal(h.driver.volumes().size, 1);
  });

  it("does not take a PV of the same name bound to another claim as success", async () => {
    await h.start([...FAST, "--retry-interval-start=1h", "--retry-interval-max=2h"]);
    // The PV name is derived from the claim UID; pretend another claim already owns it.
    const uid = "11111111-2222-3333-4444-555555555555";
    h.apiserver.put({
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: `pvc-${uid}-x` },
      spec: { csi: { driver: DRIVER, volumeHandle: "someone-elses" } },
    });
    const held = h.driver.hold("createVolume");
    const c = h.apiserver.put({
      ...claim("clash", "fast"),
      metadata: { ...claim("clash", "fast").metadata, uid },
    });
    await held.arrived;
    // Meanwhile a foreign PV with the claim's PV name appears, bound to someone else.
    h.apiserver.put({
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: `pvc-${uid}` },
      spec: {
        csi: { driver: DRIVER, volumeHandle: "someone-elses" },
        claimRef: {
          kind: "PersistentVolumeClaim",
          namespace: "other",
          name: "theirs",
          uid: "other-uid",
        },
      },
    });
    held.release();
    const ev = await h.apiserver.waitFor(() =>
      events(h, "ProvisioningFailed").find((e) => e.message.includes("already exists")),
    );
    assert.match(ev.message, /belongs to claim other\/theirs/);
    // Our volume was deleted again; the foreign PV was left alone.
    await h.apiserver.waitFor(() => h.driver.volumes().size === 0);
    assert.equal(pvOf(h, c.metadata.uid!)?.spec.csi?.volumeHandle, "someone-elses");
  });

  it("stops cleanly and resolves 0", async () => {
    const s = await h.start(FAST);
    assert.equal(await s.stop(), 0);
  });
});

describe("write budget", () => {
  it("spends at most 3 API writes per provisioned volume, crash safety included", async () => {
    const h = await startHarness();
    try {
      h.apiserver.put(storageClass("fast"));
      const n = 200;
      const s = await h.start(FAST);
      h.apiserver.writes.reset();
      const uids: string[] = [];
      for (let i = 0; i < n; i++) uids.push(h.apiserver.put(claim(`w-${i}`, "fast")).metadata.uid!);
      await h.apiserver.waitFor(() => uids.every((u) => pvOf(h, u)));
      await s.stop();
      const writes = h.apiserver.writes.total;
      assert.equal(h.apiserver.objects(resources.persistentVolumes).length, n);
      assert.equal(h.driver.volumes().size, n);
      assert.deepEqual(intents(h), []);
      assert.ok(
        writes / n <= 3,
        `writes per volume ${writes / n}: ${JSON.stringify(h.apiserver.writes.snapshot())}`,
      );
    } finally {
      await h.close();
    }
  });
});

// Keeps ConnectError referenced for readers: driver failures reach the controller as ConnectError.
void ConnectError;
