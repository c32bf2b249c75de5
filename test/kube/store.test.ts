import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type {
  CSINode,
  Node,
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
  VolumeAttachment,
} from "../../src/kube/objects.ts";
import {
  byNamespace,
  lastAppliedAnnotation,
  projectCSINode,
  projectNode,
  projectPersistentVolume,
  projectPersistentVolumeClaim,
  projectStorageClass,
  projectVolumeAttachment,
  StringPool,
  volumeAttachmentsByPv,
  withoutManagedFields,
} from "../../src/kube/projections.ts";
import type { StoreEvent } from "../../src/kube/store.ts";
import { objectKey, Store, splitKey } from "../../src/kube/store.ts";

interface Obj {
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string };
  spec?: { node?: string };
  [k: string]: unknown;
}

function obj(name: string, rv: string, uid = `uid-${name}`, node?: string, namespace = "ns"): Obj {
  const o: Obj = { metadata: { name, namespace, uid, resourceVersion: rv } };
  if (node) o.spec = { node };
  return o;
}

function show(events: StoreEvent<Obj>[]): string[] {
  return events.map((e) =>
    e.type === "update"
      ? `update ${objectKey(e.obj)} ${e.old.metadata.resourceVersion}->${e.obj.metadata.resourceVersion}`
      : `${e.type} ${objectKey(e.obj)}@${e.obj.metadata.resourceVersion}`,
  );
}

const managedFields = [
  {
    manager: "kube-controller-manager",
    operation: "Update",
    apiVersion: "v1",
    time: "2026-01-01T00:00:00Z",
    fieldsType: "FieldsV1",
    fieldsV1: { "f:metadata": { "f:annotations": { ".": {} } } },
  },
];

describe("objectKey() and splitKey()", () => {
  it("uses namespace/name for namespaced objects and name for cluster-scoped ones", () => {
    assert.equal(objectKey({ metadata: { name: "a", namespace: "ns" } }), "ns/a");
    assert.equal(objectKey({ metadata: { name: "pv-1" } }), "pv-1");
    assert.deepEqual(splitKey("ns/a"), { namespace: "ns", name: "a" });
    assert.deepEqual(splitKey("pv-1"), { name: "pv-1" });
  });
});

describe("Store", () => {
  it("adds, updates and deletes objects and keeps the UID index in step", () => {
    const s = new Store<Obj>();
    assert.deepEqual(show(s.upsert(obj("a", "1"))), ["add ns/a@1"]);
    assert.deepEqual(show(s.upsert(obj("a", "2"))), ["update ns/a 1->2"]);
    assert.equal(s.get("ns/a")?.metadata.resourceVersion, "2");
    assert.equal(s.getByUid("uid-a")?.metadata.resourceVersion, "2");
    assert.deepEqual(show(s.delete(obj("a", "3"))), ["delete ns/a@3"]);
    assert.equal(s.get("ns/a"), undefined);
    assert.equal(s.getByUid("uid-a"), undefined);
    assert.equal(s.size, 0);
  });

  it("reports a re-created object (same key, new UID) as a delete then an add", () => {
    const s = new Store<Obj>();
    s.upsert(obj("a", "1", "u1"));
    assert.deepEqual(show(s.upsert(obj("a", "5", "u2"))), ["delete ns/a@1", "add ns/a@5"]);
    assert.equal(s.getByUid("u1"), undefined);
    assert.equal(s.getByUid("u2")?.metadata.resourceVersion, "5");
  });

  it("ignores the delete of an object it does not hold or holds under another UID", () => {
    const s = new Store<Obj>();
    assert.deepEqual(s.delete(obj("x", "1")), []);
    s.upsert(obj("a", "1", "u1"));
    assert.deepEqual(s.delete(obj("a", "2", "u-old")), []);
    assert.equal(s.size, 1);
  });

  it("replaces its content with a list and returns deletes, then adds and updates", () => {
    const s = new Store<Obj>();
    s.replace([obj("a", "1"), obj("b", "2"), obj("c", "3", "u-c1")], "3");
    const delta = s.replace(
      [obj("b", "2"), obj("c", "7", "u-c2"), obj("d", "8"), obj("e", "9")],
      "9",
    );
    assert.deepEqual(show(delta), [
      "delete ns/a@1",
      "delete ns/c@3",
      "add ns/c@7",
      "add ns/d@8",
      "add ns/e@9",
    ]);
    const d2 = s.replace([obj("b", "10"), obj("c", "7", "u-c2"), obj("d", "8")], "10");
    assert.deepEqual(show(d2), ["delete ns/e@9", "update ns/b 2->10"]);
    assert.equal(s.resourceVersion, "10");
    assert.deepEqual(s.keys().sort(), ["ns/b", "ns/c", "ns/d"]);
    assert.equal(s.getByUid("u-c1"), undefined);
    assert.equal(s.getByUid("u-c2")?.metadata.name, "c");
  });

  it("fills an empty store from a list in list order, with indexes, and builds no delta unless asked", () => {
    const indexers = { node: (o: Obj) => (o.spec?.node ? [o.spec.node] : []) };
    const listed = () => [obj("b", "2", "ub", "n1"), obj("a", "1", "ua", "n1"), obj("c", "3")];
    const quiet = new Store<Obj>({ indexers });
    assert.deepEqual(quiet.replaceProjected(listed(), "3", false), []);
    assert.deepEqual(quiet.keys(), ["ns/b", "ns/a", "ns/c"]);
    assert.equal(quiet.getByUid("ua")?.metadata.name, "a");
    assert.deepEqual(
      quiet.byIndex("node", "n1").map((o) => o.metadata.name),
      ["b", "a"],
    );
    assert.equal(quiet.resourceVersion, "3");
    // Later lists still report the delta, and `emit: false` leaves it out there too.
    assert.deepEqual(show(quiet.replaceProjected([obj("a", "4", "ua")], "4")), [
      "delete ns/b@2",
      "delete ns/c@3",
      "update ns/a 1->4",
    ]);
    assert.deepEqual(quiet.replaceProjected([obj("d", "5")], "5", false), []);
    assert.deepEqual(quiet.keys(), ["ns/d"]);
    assert.deepEqual(quiet.byIndex("node", "n1"), []);

    const loud = new Store<Obj>({ indexers });
    assert.deepEqual(show(loud.replaceProjected(listed(), "3")), [
      "add ns/b@2",
      "add ns/a@1",
      "add ns/c@3",
    ]);
  });

  it("keeps no UID index when told not to, and says so when asked by UID", () => {
    const s = new Store<Obj>({ uidIndex: false });
    s.replace([obj("a", "1", "ua"), obj("b", "2", "ub")], "2");
    s.upsert(obj("a", "3", "ua2"));
    s.delete(obj("b", "4", "ub"));
    assert.deepEqual(s.keys(), ["ns/a"]);
    assert.equal(s.get("ns/a")?.metadata.uid, "ua2");
    assert.throws(() => s.getByUid("ua2"), /keeps no UID index/);
  });

  it("takes an object listed twice into an empty store as an add, then an update", () => {
    const s = new Store<Obj>();
    const delta = s.replace([obj("a", "1"), obj("b", "2"), obj("a", "3")], "3");
    assert.deepEqual(show(delta), ["add ns/a@1", "add ns/b@2", "update ns/a 1->3"]);
    assert.equal(s.get("ns/a")?.metadata.resourceVersion, "3");
    assert.equal(s.size, 2);
  });

  it("compares resourceVersions for equality only", () => {
    const s = new Store<Obj>();
    s.upsert(obj("a", "10"));
    // "9" < "10" as numbers and > "10" as strings: neither matters, they differ.
    assert.deepEqual(show(s.replace([obj("a", "9")], "9")), ["update ns/a 10->9"]);
    assert.deepEqual(s.replace([obj("a", "9")], "9"), []);
  });

  it("maintains custom indexes across updates and deletes", () => {
    const s = new Store<Obj>({
      indexers: { node: (o) => (o.spec?.node ? [o.spec.node] : []) },
    });
    s.upsert(obj("a", "1", "ua", "n1"));
    s.upsert(obj("b", "1", "ub", "n1"));
    s.upsert(obj("c", "1", "uc"));
    assert.deepEqual(
      s
        .byIndex("node", "n1")
        .map((o) => o.metadata.name)
        .sort(),
      ["a", "b"],
    );
    s.upsert(obj("a", "2", "ua", "n2"));
    assert.deepEqual(
      s.byIndex("node", "n1").map((o) => o.metadata.name),
      ["b"],
    );
    assert.deepEqual(
      s.byIndex("node", "n2").map((o) => o.metadata.name),
      ["a"],
    );
    s.delete(obj("b", "3", "ub", "n1"));
    assert.deepEqual(s.byIndex("node", "n1"), []);
    s.replace([obj("c", "1", "uc", undefined)], "5");
    assert.deepEqual(s.byIndex("node", "n2"), []);
    assert.throws(() => s.byIndex("nope", "x"), /Unknown store index: nope/);
  });

  it("caches the projection, not the object", () => {
    const s = new Store<Obj, Obj>({
      project: (o) => ({ metadata: o.metadata }),
    });
    s.upsert({ ...obj("a", "1"), spec: { node: "n" }, big: "x".repeat(1000) });
    assert.deepEqual(s.get("ns/a"), { metadata: obj("a", "1").metadata });
  });

  it("indexes cluster-scoped objects by name", () => {
    const s = new Store<Obj>();
    s.upsert({ metadata: { name: "pv-1", uid: "u", resourceVersion: "1" } });
    assert.equal(s.get("pv-1")?.metadata.uid, "u");
  });
});

describe("StringPool", () => {
  it("returns equal strings, stops growing at its bound and passes long strings through", () => {
    const pool = new StringPool(2, 5);
    assert.equal(pool.intern("a"), "a");
    assert.equal(pool.intern("b"), "b");
    assert.equal(pool.intern("c"), "c");
    assert.equal(pool.size, 2);
    assert.equal(pool.intern("toolong"), "toolong");
    assert.equal(pool.size, 2);
    assert.equal(pool.intern(undefined), undefined);
    assert.equal(pool.intern(42), 42);
  });
});

describe("projections", () => {
  const meta = {
    name: "claim",
    namespace: "ns",
    uid: "u-1",
    resourceVersion: "42",
    generation: 1,
    creationTimestamp: "2026-01-01T00:00:00Z",
    labels: { app: "db" },
    annotations: {
      "volume.kubernetes.io/storage-provisioner": "hostpath.csi.k8s.io",
      [lastAppliedAnnotation]: '{"kind":"PersistentVolumeClaim"}',
    },
    finalizers: ["kubernetes.io/pvc-protection"],
    managedFields,
  };

  it("keeps what the claim controller reads of a PVC and drops managedFields", () => {
    const claim: PersistentVolumeClaim = {
      metadata: { ...meta, deletionTimestamp: "2026-01-02T00:00:00Z" },
      spec: {
        accessModes: ["ReadWriteOnce"],
        resources: { requests: { storage: "1Gi" } },
        storageClassName: "fast",
        volumeMode: "Filesystem",
      },
      status: { phase: "Pending", capacity: { storage: "1Gi" }, accessModes: ["ReadWriteOnce"] },
    };
    assert.deepEqual(projectPersistentVolumeClaim(claim), {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: {
        name: "claim",
        namespace: "ns",
        uid: "u-1",
        resourceVersion: "42",
        creationTimestamp: "2026-01-01T00:00:00Z",
        labels: { app: "db" },
        annotations: { "volume.kubernetes.io/storage-provisioner": "hostpath.csi.k8s.io" },
        finalizers: ["kubernetes.io/pvc-protection"],
        deletionTimestamp: "2026-01-02T00:00:00Z",
      },
      spec: claim.spec,
      status: { phase: "Pending" },
    });
  });

  it("keeps what the volume controller reads of a PV", () => {
    const pv: PersistentVolume = {
      metadata: {
        name: "pvc-u-1",
        uid: "u-pv",
        resourceVersion: "7",
        managedFields,
        finalizers: ["f"],
      },
      spec: {
        capacity: { storage: "1Gi" },
        claimRef: { namespace: "ns", name: "claim", uid: "u-1" },
        csi: { driver: "d", volumeHandle: "h" },
        persistentVolumeReclaimPolicy: "Delete",
      },
      status: { phase: "Bound", lastPhaseTransitionTime: "2026-01-01T00:00:00Z" },
    };
    const p = projectPersistentVolume(pv);
    assert.deepEqual(p.metadata, {
      name: "pvc-u-1",
      uid: "u-pv",
      resourceVersion: "7",
      finalizers: ["f"],
    });
    assert.equal(p.spec, pv.spec);
    assert.deepEqual(p.status, { phase: "Bound" });
    assert.equal(p.kind, "PersistentVolume");
    const released = projectPersistentVolume({
      ...pv,
      status: { phase: "Released", lastPhaseTransitionTime: "2026-01-03T00:00:00Z" },
    });
    assert.deepEqual(released.status, {
      phase: "Released",
      lastPhaseTransitionTime: "2026-01-03T00:00:00Z",
    });
  });

  it("keeps a StorageClass whole except managedFields", () => {
    const sc: StorageClass = {
      metadata: { name: "fast", uid: "u", resourceVersion: "1", managedFields, labels: { a: "b" } },
      provisioner: "d",
      parameters: { type: "ssd" },
      reclaimPolicy: "Delete",
      volumeBindingMode: "WaitForFirstConsumer",
      allowedTopologies: [{ matchLabelExpressions: [{ key: "zone", values: ["a"] }] }],
    };
    const p = projectStorageClass(sc);
    assert.equal(p.metadata.managedFields, undefined);
    assert.deepEqual(p.metadata.labels, { a: "b" });
    assert.deepEqual(p.parameters, { type: "ssd" });
    assert.deepEqual(p.allowedTopologies, sc.allowedTopologies);
    assert.equal(p.volumeBindingMode, "WaitForFirstConsumer");
    assert.equal(sc.metadata.managedFields, managedFields, "the input is not mutated");
  });

  it("reduces VolumeAttachments, CSINodes and Nodes to what is read", () => {
    const va: VolumeAttachment = {
      metadata: { name: "csi-123", uid: "u", resourceVersion: "1", managedFields },
      spec: { attacher: "d", nodeName: "n1", source: { persistentVolumeName: "pv-1" } },
      status: { attached: true, attachmentMetadata: { a: "b" } },
    };
    assert.deepEqual(projectVolumeAttachment(va), {
      apiVersion: "storage.k8s.io/v1",
      kind: "VolumeAttachment",
      metadata: { name: "csi-123", uid: "u", resourceVersion: "1" },
      spec: { attacher: "d", nodeName: "n1", source: { persistentVolumeName: "pv-1" } },
    });
    assert.deepEqual(volumeAttachmentsByPv(va), ["pv-1"]);
    assert.deepEqual(
      volumeAttachmentsByPv({ ...va, spec: { ...va.spec, source: { inlineVolumeSpec: {} } } }),
      [],
    );

    const csiNode: CSINode = {
      metadata: { name: "n1", uid: "u", resourceVersion: "1", managedFields },
      spec: { drivers: [{ name: "d", nodeID: "n1", topologyKeys: ["zone"] }] },
    };
    assert.deepEqual(projectCSINode(csiNode).spec, csiNode.spec);
    assert.equal(projectCSINode(csiNode).metadata.managedFields, undefined);

    const node: Node = {
      metadata: {
        name: "n1",
        uid: "u",
        resourceVersion: "1",
        labels: { zone: "a" },
        managedFields,
      },
      spec: { podCIDR: "10.0.0.0/24" },
      status: { capacity: { cpu: "4" }, images: [] },
    };
    assert.deepEqual(projectNode(node), {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "n1", uid: "u", resourceVersion: "1", labels: { zone: "a" } },
    });
  });

  it("drops managedFields and the last-applied annotation from any object", () => {
    const o = withoutManagedFields({
      metadata: {
        name: "x",
        managedFields,
        annotations: { [lastAppliedAnnotation]: "{}", a: "b" },
      },
      data: 1,
    });
    assert.deepEqual(o, { metadata: { name: "x", annotations: { a: "b" } }, data: 1 });
    assert.deepEqual(byNamespace({ metadata: { name: "x", namespace: "ns" } }), ["ns"]);
    assert.deepEqual(byNamespace({ metadata: { name: "x" } }), []);
  });

  it("adds no fields while interning strings", () => {
    const claim = JSON.parse(
      '{"metadata":{"name":"c","namespace":"ns"},"spec":{"accessModes":["ReadWriteOnce"]},"status":{}}',
    ) as PersistentVolumeClaim;
    assert.deepEqual(projectPersistentVolumeClaim(claim).spec, { accessModes: ["ReadWriteOnce"] });
    const pv = JSON.parse(
      '{"metadata":{"name":"p"},"spec":{"csi":{"driver":"d","volumeHandle":"h"},"claimRef":{"name":"c"}}}',
    ) as PersistentVolume;
    assert.deepEqual(projectPersistentVolume(pv).spec, {
      csi: { driver: "d", volumeHandle: "h" },
      claimRef: { name: "c" },
    });
  });

  it("tolerates objects with missing parts", () => {
    const claim = { metadata: { name: "c" } } as unknown as PersistentVolumeClaim;
    assert.deepEqual(projectPersistentVolumeClaim(claim), {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "c" },
      spec: {},
    });
    const va = { metadata: { name: "v" } } as unknown as VolumeAttachment;
    assert.deepEqual(projectVolumeAttachment(va).spec, { attacher: "", nodeName: "", source: {} });
  });
});
