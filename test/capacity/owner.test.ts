import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type CapacityOwner,
  isControlledBy,
  ownerReferenceOf,
  resolveOwner,
  resourceForKind,
} from "../../src/capacity/owner.ts";
import type { KubeObject, OwnerReference } from "../../src/kube/objects.ts";
import { MemoryKube } from "./fake-kube.ts";

const ns = "storage";

function ref(apiVersion: string, kind: string, name: string, uid: string): OwnerReference {
  return { apiVersion, kind, name, uid, controller: true };
}

function obj(name: string, uid: string, owners: OwnerReference[] = [], namespace = ns): KubeObject {
  return { metadata: { name, namespace, uid, ownerReferences: owners } };
}

const deployment = ref("apps/v1", "Deployment", "csi-provisioner", "uid-deploy");
const replicaSet = ref("apps/v1", "ReplicaSet", "csi-provisioner-5d8f", "uid-rs");
const statefulSet = ref("apps/v1", "StatefulSet", "csi-hostpath", "uid-sts");

describe("resolveOwner()", () => {
  const cases: {
    name: string;
    objects: [group: string, plural: string, obj: KubeObject][];
    pod?: string;
    level: number;
    expected?: CapacityOwner;
    error?: RegExp;
    gets?: string[];
  }[] = [
    {
      name: "gives no owner at level -1 without reading anything",
      objects: [],
      level: -1,
      expected: undefined,
      gets: [],
    },
    {
      name: "fails when the pod does not exist",
      objects: [],
      level: 0,
      error: /cannot get Pod storage\/csi-0: .*not found/,
    },
    {
      name: "gives the pod itself at level 0",
      objects: [["", "pods", obj("csi-0", "uid-pod")]],
      level: 0,
      expected: { apiVersion: "v1", kind: "Pod", name: "csi-0", uid: "uid-pod" },
      gets: ["/pods csi-0"],
    },
    {
      name: "fails at level 1 when the pod has no controller",
      objects: [["", "pods", obj("csi-0", "uid-pod", [{ ...statefulSet, controller: false }])]],
      level: 1,
      error: /Pod storage\/csi-0 has no controlling owner/,
    },
    {
      name: "gives the StatefulSet at level 1 from the pod alone",
      objects: [["", "pods", obj("csi-0", "uid-pod", [statefulSet])]],
      level: 1,
      expected: {
        apiVersion: "apps/v1",
        kind: "StatefulSet",
        name: "csi-hostpath",
        uid: "uid-sts",
      },
      gets: ["/pods csi-0"],
    },
    {
      name: "follows the controller, not the first owner",
      objects: [
        [
          "",
          "pods",
          obj("csi-0", "uid-pod", [
            { ...ref("v1", "ConfigMap", "x", "uid-cm"), controller: false },
            replicaSet,
          ]),
        ],
      ],
      level: 1,
      expected: {
        apiVersion: "apps/v1",
        kind: "ReplicaSet",
        name: "csi-provisioner-5d8f",
        uid: "uid-rs",
      },
    },
    {
      name: "walks pod → ReplicaSet → Deployment at level 2",
      objects: [
        ["", "pods", obj("csi-0", "uid-pod", [replicaSet])],
        ["apps", "replicasets", obj("csi-provisioner-5d8f", "uid-rs", [deployment])],
      ],
      level: 2,
      expected: {
        apiVersion: "apps/v1",
        kind: "Deployment",
        name: "csi-provisioner",
        uid: "uid-deploy",
      },
      gets: ["/pods csi-0", "apps/replicasets csi-provisioner-5d8f"],
    },
    {
      name: "fails at level 2 when the ReplicaSet is missing",
      objects: [["", "pods", obj("csi-0", "uid-pod", [replicaSet])]],
      level: 2,
      error: /cannot get ReplicaSet storage\/csi-provisioner-5d8f/,
    },
    {
      name: "fails at level 2 when the ReplicaSet is in another namespace",
      objects: [
        ["", "pods", obj("csi-0", "uid-pod", [replicaSet])],
        ["apps", "replicasets", obj("csi-provisioner-5d8f", "uid-rs", [deployment], "other")],
      ],
      level: 2,
      error: /cannot get ReplicaSet/,
    },
    {
      name: "fails at level 3 when the Deployment has no controller",
      objects: [
        ["", "pods", obj("csi-0", "uid-pod", [replicaSet])],
        ["apps", "replicasets", obj("csi-provisioner-5d8f", "uid-rs", [deployment])],
        ["apps", "deployments", obj("csi-provisioner", "uid-deploy")],
      ],
      level: 3,
      error: /Deployment storage\/csi-provisioner has no controlling owner/,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const kube = new MemoryKube();
      for (const [group, plural, o] of c.objects) kube.add(group, plural, o);
      const result = resolveOwner(kube, ns, c.pod ?? "csi-0", c.level);
      if (c.error) {
        await assert.rejects(result, c.error);
        return;
      }
      assert.deepEqual(await result, c.expected);
      if (c.gets) {
        assert.deepEqual(
          kube.gets.map((g) => `${g.group}/${g.plural} ${g.name}`),
          c.gets,
        );
        assert.ok(kube.gets.every((g) => g.namespace === ns));
      }
    });
  }
});

describe("resourceForKind()", () => {
  it("maps workload kinds to their REST resources", () => {
    assert.deepEqual(resourceForKind("apps/v1", "DaemonSet"), {
      group: "apps",
      version: "v1",
      plural: "daemonsets",
      kind: "DaemonSet",
      namespaced: true,
    });
    assert.equal(resourceForKind("v1", "Pod").group, "");
    assert.equal(resourceForKind("v1", "ReplicationController").plural, "replicationcontrollers");
    assert.equal(resourceForKind("batch/v1", "Job").plural, "jobs");
    assert.equal(resourceForKind("example.com/v1", "Policy").plural, "policies");
    assert.equal(resourceForKind("example.com/v1", "Gateway").plural, "gateways");
  });
});

describe("ownerReferenceOf() and isControlledBy()", () => {
  const owner: CapacityOwner = {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    name: "csi",
    uid: "u1",
  };

  it("writes a controller reference without blockOwnerDeletion", () => {
    assert.deepEqual(ownerReferenceOf(owner), { ...owner, controller: true });
  });

  it("recognises only a controller reference with the owner's UID", () => {
    assert.equal(isControlledBy(obj("x", "1", [ownerReferenceOf(owner)]), owner), true);
    assert.equal(
      isControlledBy(obj("x", "1", [{ ...ownerReferenceOf(owner), controller: false }]), owner),
      false,
    );
    assert.equal(
      isControlledBy(obj("x", "1", [{ ...ownerReferenceOf(owner), uid: "u2" }]), owner),
      false,
    );
    assert.equal(isControlledBy(obj("x", "1"), owner), false);
  });
});
