/**
 * Provisioning, one row per behaviour, in the spirit of upstream's `provisionTestcases`: each row
 * runs the real sidecar against the test API server and the fake CSI driver and asserts the exact
 * CreateVolumeRequest(s) sent, the exact PV written (or none) and the claim's events. The runner
 * is `test/support/table.ts`; the behaviour is reference §2.2–2.7.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import {
  ControllerServiceCapability_RPC_Type as Cap,
  TopologySchema,
} from "../../src/gen/csi/v1/csi_pb.js";
import type {
  KubeObject,
  PersistentVolume,
  PersistentVolumeAccessMode,
  StorageClass,
  VolumeSnapshot,
} from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { DRIVER, startHarness, storageClass } from "../support/sidecar-harness.ts";
import {
  blockCapability,
  editVolume,
  expectedPv,
  gib,
  mountCapability,
  runRow,
  tableClaim,
} from "../support/table.ts";

/** A distinct, fixed claim UID per row. */
let next = 0;
function newUid(): string {
  next++;
  return `0a0b0c0d-0000-4000-8000-${String(next).padStart(12, "0")}`;
}

/** A secret template token, e.g. `tok("pvc.name")` is `${pvc.name}`. */
const tok = (name: string) => `\${${name}}`;

function secret(namespace: string, name: string, data: Record<string, string>): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name, namespace },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, btoa(v)])),
  };
}

function sc(name: string, extra: Partial<StorageClass> = {}): StorageClass {
  return storageClass(name, extra);
}

const SNW = "SINGLE_NODE_WRITER";
const ROX = "MULTI_NODE_READER_ONLY";

describe("provisioning table: the CreateVolumeRequest and the PV", () => {
  it("provisions a plain claim: name, capacity, one Mount capability, parameters passed through", () => {
    const uid = newUid();
    const c = tableClaim("data", "standard", uid, { size: "5Gi" });
    return runRow({
      objects: [sc("standard", { parameters: { tier: "gold", replicas: "3" } })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(5) },
          volumeCapabilities: [mountCapability(SNW)],
          parameters: { tier: "gold", replicas: "3" },
        },
      ],
      pv: expectedPv(c, { capacity: "5Gi" }),
    });
  });

  it("with --extra-create-metadata adds the pvc/name, pvc/namespace and pv/name parameters", () => {
    const uid = newUid();
    const c = tableClaim("meta", "standard", uid, { namespace: "team-a" });
    return runRow({
      args: ["--extra-create-metadata"],
      objects: [sc("standard", { parameters: { tier: "gold" } })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          parameters: {
            tier: "gold",
            "csi.storage.k8s.io/pvc/name": "meta",
            "csi.storage.k8s.io/pvc/namespace": "team-a",
            "csi.storage.k8s.io/pv/name": `pvc-${uid}`,
          },
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi" }),
    });
  });

  it("takes the fsType from the deprecated fstype key and still passes the key to the driver", () => {
    const uid = newUid();
    const c = tableClaim("old-fs", "ext3", uid);
    return runRow({
      objects: [sc("ext3", { parameters: { fstype: "ext3" } })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW, "ext3")],
          parameters: { fstype: "ext3" },
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", csi: { fsType: "ext3" } }),
    });
  });

  it("reads the deprecated fstype key case-insensitively", () => {
    const uid = newUid();
    const c = tableClaim("old-fs-caps", "xfs-caps", uid);
    return runRow({
      objects: [sc("xfs-caps", { parameters: { FSType: "xfs" } })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW, "xfs")],
          parameters: { FSType: "xfs" },
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", csi: { fsType: "xfs" } }),
    });
  });

  it("takes the fsType from csi.storage.k8s.io/fstype and strips the key", () => {
    const uid = newUid();
    const c = tableClaim("new-fs", "xfs", uid);
    return runRow({
      objects: [sc("xfs", { parameters: { "csi.storage.k8s.io/fstype": "xfs" } })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW, "xfs")],
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", csi: { fsType: "xfs" } }),
    });
  });

  it("fails a class that names the fsType with both keys, without calling the driver", () => {
    const uid = newUid();
    return runRow({
      objects: [
        sc("both-fs", { parameters: { fstype: "ext4", "csi.storage.k8s.io/fstype": "xfs" } }),
      ],
      claim: tableClaim("two-fs", "both-fs", uid),
      createVolume: [],
      events: [
        {
          type: "Warning",
          reason: "ProvisioningFailed",
          message: /fstype.*both.*"fstype".*"csi\.storage\.k8s\.io\/fstype"/,
        },
      ],
    });
  });

  it("uses --default-fstype when the class names no fsType", () => {
    const uid = newUid();
    const c = tableClaim("default-fs", "standard", uid);
    return runRow({
      args: ["--default-fstype=ext4"],
      objects: [sc("standard")],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW, "ext4")],
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", csi: { fsType: "ext4" } }),
    });
  });

  it("prefers the class's fsType over --default-fstype", () => {
    const uid = newUid();
    const c = tableClaim("class-fs", "xfs", uid);
    return runRow({
      args: ["--default-fstype=ext4"],
      objects: [sc("xfs", { parameters: { "csi.storage.k8s.io/fstype": "xfs" } })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW, "xfs")],
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", csi: { fsType: "xfs" } }),
    });
  });

  it("sends the class's mount options as mount_flags and puts them on the PV", () => {
    const uid = newUid();
    const c = tableClaim("mounted", "opts", uid);
    return runRow({
      objects: [sc("opts", { mountOptions: ["noatime", "nfsvers=4.1"] })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW, "", ["noatime", "nfsvers=4.1"])],
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", spec: { mountOptions: ["noatime", "nfsvers=4.1"] } }),
    });
  });

  it("asks for a Block volume without fsType for a Block claim, and writes a Block PV", () => {
    const uid = newUid();
    const c = tableClaim("raw", "block", uid, { volumeMode: "Block" });
    return runRow({
      objects: [
        sc("block", {
          parameters: { "csi.storage.k8s.io/fstype": "ext4" },
          mountOptions: ["noatime"],
        }),
      ],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [blockCapability(SNW)],
        },
      ],
      pv: expectedPv(c, {
        capacity: "1Gi",
        spec: { volumeMode: "Block", mountOptions: ["noatime"] },
      }),
    });
  });

  it("fails a class with an unknown csi.storage.k8s.io/ parameter, without calling the driver", () => {
    const uid = newUid();
    return runRow({
      objects: [sc("bogus", { parameters: { "csi.storage.k8s.io/bogus": "x" } })],
      claim: tableClaim("bogus", "bogus", uid),
      createVolume: [],
      events: [
        { type: "Warning", reason: "ProvisioningFailed", message: "csi.storage.k8s.io/bogus" },
      ],
    });
  });
});

describe("provisioning table: access modes", () => {
  const table: [PersistentVolumeAccessMode, boolean, string][] = [
    ["ReadWriteOnce", false, "SINGLE_NODE_WRITER"],
    ["ReadOnlyMany", false, "MULTI_NODE_READER_ONLY"],
    ["ReadWriteMany", false, "MULTI_NODE_MULTI_WRITER"],
    ["ReadWriteOncePod", false, "SINGLE_NODE_WRITER"],
    ["ReadWriteOnce", true, "SINGLE_NODE_MULTI_WRITER"],
    ["ReadOnlyMany", true, "MULTI_NODE_READER_ONLY"],
    ["ReadWriteMany", true, "MULTI_NODE_MULTI_WRITER"],
    ["ReadWriteOncePod", true, "SINGLE_NODE_SINGLE_WRITER"],
  ];
  for (const [mode, multiWriter, csiMode] of table) {
    it(`maps ${mode} to ${csiMode} ${multiWriter ? "with" : "without"} SINGLE_NODE_MULTI_WRITER`, () => {
      const uid = newUid();
      const c = tableClaim("mode", "standard", uid, { accessModes: [mode] });
      return runRow({
        driver: {
          controllerCapabilities: multiWriter
            ? [Cap.CREATE_DELETE_VOLUME, Cap.SINGLE_NODE_MULTI_WRITER]
            : [Cap.CREATE_DELETE_VOLUME],
        },
        objects: [sc("standard")],
        claim: c,
        createVolume: [
          {
            name: `pvc-${uid}`,
            capacityRange: { requiredBytes: gib(1) },
            volumeCapabilities: [mountCapability(csiMode)],
          },
        ],
        pv: expectedPv(c, { capacity: "1Gi" }),
      });
    });
  }

  it("sends one capability per access mode, in the claim's order", () => {
    const uid = newUid();
    const c = tableClaim("modes", "standard", uid, {
      accessModes: ["ReadWriteOnce", "ReadOnlyMany"],
    });
    return runRow({
      objects: [sc("standard", { parameters: { "csi.storage.k8s.io/fstype": "ext4" } })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW, "ext4"), mountCapability(ROX, "ext4")],
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", csi: { fsType: "ext4" } }),
    });
  });
});

describe("provisioning table: secrets", () => {
  it("reads the provisioner secret by name and namespace and records it for deletion", () => {
    const uid = newUid();
    const c = tableClaim("creds", "secured", uid);
    return runRow({
      objects: [
        secret("storage-secrets", "prov-creds", { username: "admin", password: "hunter2" }),
        sc("secured", {
          parameters: {
            "csi.storage.k8s.io/provisioner-secret-name": "prov-creds",
            "csi.storage.k8s.io/provisioner-secret-namespace": "storage-secrets",
            tier: "gold",
          },
        }),
      ],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          parameters: { tier: "gold" },
          secrets: { username: "admin", password: "hunter2" },
        },
      ],
      pv: expectedPv(c, {
        capacity: "1Gi",
        annotations: {
          "volume.kubernetes.io/provisioner-deletion-secret-name": "prov-creds",
          "volume.kubernetes.io/provisioner-deletion-secret-namespace": "storage-secrets",
        },
      }),
    });
  });

  it("applies the default csi.storage.k8s.io/secret-name to every kind of secret", () => {
    const uid = newUid();
    const c = tableClaim("defaults", "shared", uid);
    const ref = { name: "all-creds", namespace: "storage-secrets" };
    return runRow({
      objects: [
        secret("storage-secrets", "all-creds", { key: "v" }),
        sc("shared", {
          parameters: {
            "csi.storage.k8s.io/secret-name": "all-creds",
            "csi.storage.k8s.io/secret-namespace": "storage-secrets",
          },
        }),
      ],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          secrets: { key: "v" },
        },
      ],
      pv: expectedPv(c, {
        capacity: "1Gi",
        annotations: {
          "volume.kubernetes.io/provisioner-deletion-secret-name": "all-creds",
          "volume.kubernetes.io/provisioner-deletion-secret-namespace": "storage-secrets",
          "volume.kubernetes.io/controller-modify-secret-name": "all-creds",
          "volume.kubernetes.io/controller-modify-secret-namespace": "storage-secrets",
        },
        csi: {
          controllerPublishSecretRef: ref,
          nodeStageSecretRef: ref,
          nodePublishSecretRef: ref,
          controllerExpandSecretRef: ref,
          nodeExpandSecretRef: ref,
        },
      }),
    });
  });

  // biome-ignore lint/suspicious/noTemplateCurlyInString: the test name lists the template tokens
  it("resolves ${pv.name}, ${pvc.name}, ${pvc.namespace} and ${pvc.annotations['k']} templates", () => {
    const uid = newUid();
    const c = tableClaim("db", "templated", uid, {
      namespace: "team-a",
      annotations: { "example.com/secret": "db-creds" },
    });
    return runRow({
      objects: [
        secret("team-a", "db-creds", { token: "t0k3n" }),
        sc("templated", {
          parameters: {
            "csi.storage.k8s.io/provisioner-secret-name": tok(
              "pvc.annotations['example.com/secret']",
            ),
            "csi.storage.k8s.io/provisioner-secret-namespace": tok("pvc.namespace"),
            "csi.storage.k8s.io/node-publish-secret-name": `${tok("pvc.name")}-publish`,
            "csi.storage.k8s.io/node-publish-secret-namespace": tok("pvc.namespace"),
            "csi.storage.k8s.io/controller-publish-secret-name": tok("pv.name"),
            "csi.storage.k8s.io/controller-publish-secret-namespace": tok("pv.name"),
            "csi.storage.k8s.io/node-stage-secret-name": `stage-${tok("pvc.namespace")}`,
            "csi.storage.k8s.io/node-stage-secret-namespace": "storage-secrets",
          },
        }),
      ],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          secrets: { token: "t0k3n" },
        },
      ],
      pv: expectedPv(c, {
        capacity: "1Gi",
        annotations: {
          "volume.kubernetes.io/provisioner-deletion-secret-name": "db-creds",
          "volume.kubernetes.io/provisioner-deletion-secret-namespace": "team-a",
        },
        csi: {
          nodePublishSecretRef: { name: "db-publish", namespace: "team-a" },
          controllerPublishSecretRef: { name: `pvc-${uid}`, namespace: `pvc-${uid}` },
          nodeStageSecretRef: { name: "stage-team-a", namespace: "storage-secrets" },
        },
      }),
    });
  });

  it("puts the node-stage, node-publish, controller-publish and -expand refs on the PV and the modify ref in annotations", () => {
    const uid = newUid();
    const c = tableClaim("refs", "refs", uid);
    const p = (kind: string, name: string) => ({
      [`csi.storage.k8s.io/${kind}-secret-name`]: name,
      [`csi.storage.k8s.io/${kind}-secret-namespace`]: "storage-secrets",
    });
    const ref = (name: string) => ({ name, namespace: "storage-secrets" });
    return runRow({
      objects: [
        sc("refs", {
          parameters: {
            ...p("controller-publish", "cp"),
            ...p("node-stage", "ns"),
            ...p("node-publish", "np"),
            ...p("controller-expand", "ce"),
            ...p("node-expand", "ne"),
            ...p("controller-modify", "cm"),
          },
        }),
      ],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
        },
      ],
      pv: expectedPv(c, {
        capacity: "1Gi",
        annotations: {
          "volume.kubernetes.io/controller-modify-secret-name": "cm",
          "volume.kubernetes.io/controller-modify-secret-namespace": "storage-secrets",
        },
        csi: {
          controllerPublishSecretRef: ref("cp"),
          nodeStageSecretRef: ref("ns"),
          nodePublishSecretRef: ref("np"),
          controllerExpandSecretRef: ref("ce"),
          nodeExpandSecretRef: ref("ne"),
        },
      }),
    });
  });

  it("honours the deprecated csiProvisionerSecretName style keys and passes them through", () => {
    const uid = newUid();
    const c = tableClaim("legacy", "legacy", uid);
    const parameters = {
      csiProvisionerSecretName: "old-creds",
      csiProvisionerSecretNamespace: "storage-secrets",
      csiNodePublishSecretName: "old-publish",
      csiNodePublishSecretNamespace: "storage-secrets",
    };
    return runRow({
      objects: [
        secret("storage-secrets", "old-creds", { user: "legacy" }),
        sc("legacy", { parameters }),
      ],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          parameters,
          secrets: { user: "legacy" },
        },
      ],
      pv: expectedPv(c, {
        capacity: "1Gi",
        annotations: {
          "volume.kubernetes.io/provisioner-deletion-secret-name": "old-creds",
          "volume.kubernetes.io/provisioner-deletion-secret-namespace": "storage-secrets",
        },
        csi: { nodePublishSecretRef: { name: "old-publish", namespace: "storage-secrets" } },
      }),
    });
  });

  const failures: [string, Record<string, string>, RegExp][] = [
    [
      "a secret name without a namespace",
      { "csi.storage.k8s.io/provisioner-secret-name": "creds" },
      /either name and namespace for Provisioner secrets specified, Both must be specified/,
    ],
    [
      "a secret namespace without a name",
      { "csi.storage.k8s.io/node-stage-secret-namespace": "storage-secrets" },
      /either name and namespace for NodeStage secrets specified, Both must be specified/,
    ],
    [
      "both the deprecated and the prefixed key",
      {
        csiProvisionerSecretName: "a",
        csiProvisionerSecretNamespace: "storage-secrets",
        "csi.storage.k8s.io/provisioner-secret-name": "b",
        "csi.storage.k8s.io/provisioner-secret-namespace": "storage-secrets",
      },
      /Provisioner secrets specified in parameters with both "csi" and "csi\.storage\.k8s\.io\/" keys/,
    ],
    [
      "an unknown template token",
      {
        "csi.storage.k8s.io/provisioner-secret-name": tok("pvc.uid"),
        "csi.storage.k8s.io/provisioner-secret-namespace": "storage-secrets",
      },
      /invalid tokens: \["pvc\.uid"\]/,
    ],
    [
      "a namespace template with a name-only token",
      {
        "csi.storage.k8s.io/provisioner-secret-name": "creds",
        "csi.storage.k8s.io/provisioner-secret-namespace": tok("pvc.name"),
      },
      /invalid tokens: \["pvc\.name"\]/,
    ],
    [
      "a name that is not a DNS-1123 subdomain",
      {
        "csi.storage.k8s.io/provisioner-secret-name": "Bad_Name",
        "csi.storage.k8s.io/provisioner-secret-namespace": "storage-secrets",
      },
      /"Bad_Name".*not a valid secret name/,
    ],
    [
      "a template resolving to a namespace that is not a DNS-1123 label",
      {
        "csi.storage.k8s.io/node-publish-secret-name": "creds",
        "csi.storage.k8s.io/node-publish-secret-namespace": `ns.${tok("pvc.namespace")}`,
      },
      /"ns\.default".*not a valid namespace name/,
    ],
    [
      "a provisioner secret that does not exist",
      {
        "csi.storage.k8s.io/provisioner-secret-name": "missing",
        "csi.storage.k8s.io/provisioner-secret-namespace": "storage-secrets",
      },
      /error getting secret missing in namespace storage-secrets: secrets "missing" not found/,
    ],
  ];
  for (const [what, parameters, message] of failures) {
    it(`fails a class with ${what}: ProvisioningFailed and no CreateVolume`, () =>
      runRow({
        objects: [sc("broken", { parameters })],
        claim: tableClaim("broken", "broken", newUid()),
        createVolume: [],
        events: [{ type: "Warning", reason: "ProvisioningFailed", message }],
      }));
  }
});

describe("provisioning table: which claims are provisioned", () => {
  it("rejects a claim with spec.selector", () =>
    runRow({
      objects: [sc("standard")],
      claim: tableClaim("picky", "standard", newUid(), {
        selector: { matchLabels: { disk: "ssd" } },
      }),
      createVolume: [],
      events: [
        {
          type: "Warning",
          reason: "ProvisioningFailed",
          message: "claim Selector is not supported",
        },
      ],
    }));

  it("ignores a claim for another provisioner", () =>
    runRow({
      objects: [sc("theirs", { provisioner: "other.example.com" })],
      claim: tableClaim("theirs", "theirs", newUid(), {
        annotations: { "volume.kubernetes.io/storage-provisioner": "other.example.com" },
      }),
      createVolume: [],
      ignored: true,
    }));

  it("ignores a claim annotated for this driver whose class names another provisioner", () =>
    runRow({
      objects: [sc("theirs", { provisioner: "other.example.com" })],
      claim: tableClaim("mixed", "theirs", newUid()),
      createVolume: [],
      ignored: true,
    }));

  it("ignores a claim that is already bound to a volume", () =>
    runRow({
      objects: [sc("standard")],
      claim: tableClaim("bound", "standard", newUid(), { volumeName: "some-pv" }),
      createVolume: [],
      ignored: true,
    }));

  it("provisions a claim that names the driver only in the beta storage-provisioner annotation", () => {
    const uid = newUid();
    const base = tableClaim("beta", "standard", uid);
    const c = {
      ...base,
      metadata: {
        ...base.metadata,
        annotations: { "volume.beta.kubernetes.io/storage-provisioner": DRIVER },
      },
    };
    return runRow({
      objects: [sc("standard")],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi" }),
    });
  });

  it("ignores a WaitForFirstConsumer claim without a selected node", () =>
    runRow({
      objects: [sc("late", { volumeBindingMode: "WaitForFirstConsumer" })],
      claim: tableClaim("waiting", "late", newUid()),
      createVolume: [],
      ignored: true,
    }));

  it("provisions a WaitForFirstConsumer claim once it has a selected node", () => {
    const uid = newUid();
    const c = tableClaim("scheduled", "late", uid, {
      annotations: { "volume.kubernetes.io/selected-node": "node-1" },
    });
    return runRow({
      objects: [
        sc("late", { volumeBindingMode: "WaitForFirstConsumer" }),
        { apiVersion: "v1", kind: "Node", metadata: { name: "node-1" } },
      ],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi" }),
    });
  });

  it("reschedules a claim whose selected node does not exist (driver without topology)", async () => {
    const h = await startHarness();
    try {
      h.apiserver.put(sc("late", { volumeBindingMode: "WaitForFirstConsumer" }));
      await h.start(["--kube-api-qps=1000", "--kube-api-burst=1000"]);
      const c = tableClaim("lost-node", "late", newUid(), {
        annotations: { "volume.kubernetes.io/selected-node": "gone-node" },
      });
      h.apiserver.put(c);
      await h.apiserver.waitFor(() => {
        const live = h.apiserver.get(resources.persistentVolumeClaims, "lost-node", "default");
        return live && !live.metadata.annotations?.["volume.kubernetes.io/selected-node"];
      });
      // Events wait for a full rate-limiter bucket: the event may come a moment later.
      const ev = await h.apiserver.waitFor(() =>
        h.apiserver.objects(resources.coreEvents).find((e) => e.reason === "ProvisioningFailed"),
      );
      assert.match(ev?.message ?? "", /failed to get target node: nodes "gone-node" not found/);
      assert.equal(h.driver.callsTo("createVolume").length, 0);
    } finally {
      await h.close();
    }
  });
});

describe("provisioning table: capacity", () => {
  it("gives the PV the requested size when the driver answers capacity 0", () => {
    const uid = newUid();
    const c = tableClaim("unknown-size", "standard", uid, { size: "3Gi" });
    return runRow({
      objects: [sc("standard")],
      script: ({ h }) => {
        h.driver.once(
          "createVolume",
          editVolume((v) => {
            v.capacityBytes = 0n;
          }),
        );
      },
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(3) },
          volumeCapabilities: [mountCapability(SNW)],
        },
      ],
      pv: expectedPv(c, { capacity: "3Gi" }),
    });
  });

  it("deletes a volume smaller than requested and creates it again", () => {
    const uid = newUid();
    const c = tableClaim("too-small", "standard", uid, { size: "2Gi" });
    const request = {
      name: `pvc-${uid}`,
      capacityRange: { requiredBytes: gib(2) },
      volumeCapabilities: [mountCapability(SNW)],
    };
    return runRow({
      objects: [sc("standard")],
      script: ({ h }) => {
        h.driver.once(
          "createVolume",
          editVolume((v) => {
            v.capacityBytes = 1024n ** 3n;
          }),
        );
      },
      claim: c,
      createVolume: [request, request],
      deleteVolume: [`id-pvc-${uid}`],
      events: [
        {
          type: "Warning",
          reason: "ProvisioningFailed",
          message: `created volume capacity ${gib(1)} less than requested capacity ${gib(2)}`,
        },
      ],
      pv: expectedPv(c, { capacity: "2Gi" }),
    });
  });

  it("gives the PV the driver's larger size, formatted as a BinarySI quantity", () => {
    const uid = newUid();
    const c = tableClaim("bigger", "standard", uid, { size: "1Gi" });
    return runRow({
      objects: [sc("standard")],
      script: ({ h }) => {
        h.driver.once(
          "createVolume",
          editVolume((v) => {
            v.capacityBytes = (3n * 1024n ** 3n) / 2n;
          }),
        );
      },
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
        },
      ],
      pv: expectedPv(c, { capacity: "1536Mi" }),
    });
  });

  it("writes a size that is no whole power-of-1024 multiple as plain bytes", () => {
    const uid = newUid();
    const c = tableClaim("odd", "standard", uid, { size: "1G" });
    return runRow({
      objects: [sc("standard")],
      script: ({ h }) => {
        h.driver.once(
          "createVolume",
          editVolume((v) => {
            v.capacityBytes = 1_000_000_001n;
          }),
        );
      },
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: "1000000000" },
          volumeCapabilities: [mountCapability(SNW)],
        },
      ],
      pv: expectedPv(c, { capacity: "1000000001" }),
    });
  });
});

describe("provisioning table: names and read-only publishing", () => {
  it("names the volume and the PV <--volume-name-prefix>-<uid>", () => {
    const uid = newUid();
    const c = tableClaim("prefixed", "standard", uid);
    return runRow({
      args: ["--volume-name-prefix=vol"],
      objects: [sc("standard")],
      claim: c,
      createVolume: [
        {
          name: `vol-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
        },
      ],
      pv: expectedPv(c, { name: `vol-${uid}`, capacity: "1Gi" }),
    });
  });

  it("with --volume-name-uuid-length strips the UID's dashes and truncates it", () => {
    const uid = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    const c = tableClaim("short", "standard", uid);
    return runRow({
      args: ["--volume-name-prefix=vol", "--volume-name-uuid-length=12"],
      objects: [sc("standard")],
      claim: c,
      createVolume: [
        {
          name: "vol-3f2504e04f89",
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
        },
      ],
      pv: expectedPv(c, { name: "vol-3f2504e04f89", capacity: "1Gi" }),
    });
  });

  it("with --controller-publish-readonly marks the PV of a ReadOnlyMany-only claim read-only", () => {
    const uid = newUid();
    const c = tableClaim("reader", "standard", uid, { accessModes: ["ReadOnlyMany"] });
    return runRow({
      args: ["--controller-publish-readonly"],
      objects: [sc("standard")],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(ROX)],
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", csi: { readOnly: true } }),
    });
  });

  it("with --controller-publish-readonly leaves a claim with more access modes than ReadOnlyMany writable", () => {
    const uid = newUid();
    const c = tableClaim("mixed-reader", "standard", uid, {
      accessModes: ["ReadOnlyMany", "ReadWriteOnce"],
    });
    return runRow({
      args: ["--controller-publish-readonly"],
      objects: [sc("standard")],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(ROX), mountCapability(SNW)],
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi" }),
    });
  });

  it("without --controller-publish-readonly leaves a ReadOnlyMany PV writable", () => {
    const uid = newUid();
    const c = tableClaim("reader", "standard", uid, { accessModes: ["ReadOnlyMany"] });
    return runRow({
      objects: [sc("standard")],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(ROX)],
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi" }),
    });
  });
});

describe("provisioning table: topology", () => {
  const ZONE = "topology.fake.csi.k8s.io/zone";
  const RACK = "topology.fake.csi.k8s.io/rack";
  const driver = { topology: { [ZONE]: "a" } };
  // Three nodes in zones a, b, c run the driver; n4 runs neither the driver nor has a zone.
  const cluster: KubeObject[] = [
    ...["a", "b", "c"].flatMap((zone, i): KubeObject[] => [
      {
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: `n${i + 1}`, labels: { [ZONE]: zone, "kubernetes.io/os": "linux" } },
      },
      {
        apiVersion: "storage.k8s.io/v1",
        kind: "CSINode",
        metadata: { name: `n${i + 1}` },
        spec: { drivers: [{ name: DRIVER, nodeID: `n${i + 1}`, topologyKeys: [ZONE] }] },
      },
    ]),
    { apiVersion: "v1", kind: "Node", metadata: { name: "n4", labels: {} } },
    {
      apiVersion: "storage.k8s.io/v1",
      kind: "CSINode",
      metadata: { name: "n4" },
      spec: { drivers: [] },
    },
  ];
  const zone = (z: string) => ({ segments: { [ZONE]: z } });
  const affinity = (z: string): Partial<PersistentVolume["spec"]> => ({
    nodeAffinity: {
      required: {
        nodeSelectorTerms: [{ matchExpressions: [{ key: ZONE, operator: "In", values: [z] }] }],
      },
    },
  });

  it("for immediate binding sends every zone of the cluster, rotated for StatefulSet spreading", () => {
    const uid = newUid();
    // FNV-1 32 of "www" is 946209706; 946209706 % 3 = 1: preferred starts at the second zone.
    const c = tableClaim("www", "immediate", uid);
    return runRow({
      driver,
      objects: [...cluster, sc("immediate")],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          accessibilityRequirements: {
            requisite: [zone("a"), zone("b"), zone("c")],
            preferred: [zone("b"), zone("c"), zone("a")],
          },
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", spec: affinity("b") }),
    });
  });

  it("sends the class's allowedTopologies, sorted, as requisite", () => {
    const uid = newUid();
    // StatefulSet claim "data-db-2": FNV-1 32 of "db" is 1836525763; (1836525763 + 2) % 2 = 1.
    const c = tableClaim("data-db-2", "allowed", uid);
    return runRow({
      driver,
      objects: [
        ...cluster,
        sc("allowed", {
          allowedTopologies: [{ matchLabelExpressions: [{ key: ZONE, values: ["c", "a"] }] }],
        }),
      ],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          accessibilityRequirements: {
            requisite: [zone("a"), zone("c")],
            preferred: [zone("c"), zone("a")],
          },
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", spec: affinity("c") }),
    });
  });

  it("for a selected node sends the cluster's zones with the node's zone preferred first", () => {
    const uid = newUid();
    const c = tableClaim("late", "late", uid, {
      annotations: { "volume.kubernetes.io/selected-node": "n2" },
    });
    return runRow({
      driver,
      objects: [...cluster, sc("late", { volumeBindingMode: "WaitForFirstConsumer" })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          accessibilityRequirements: {
            requisite: [zone("a"), zone("b"), zone("c")],
            preferred: [zone("b"), zone("c"), zone("a")],
          },
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", spec: affinity("b") }),
    });
  });

  it("with --strict-topology sends only the selected node's zone", () => {
    const uid = newUid();
    const c = tableClaim("strict", "late", uid, {
      annotations: { "volume.kubernetes.io/selected-node": "n3" },
    });
    return runRow({
      driver,
      args: ["--strict-topology"],
      objects: [...cluster, sc("late", { volumeBindingMode: "WaitForFirstConsumer" })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          accessibilityRequirements: { requisite: [zone("c")], preferred: [zone("c")] },
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", spec: affinity("c") }),
    });
  });

  it("with --strict-topology fails a selected node outside the class's allowedTopologies", () =>
    runRow({
      driver,
      args: ["--strict-topology"],
      objects: [
        ...cluster,
        sc("late-allowed", {
          volumeBindingMode: "WaitForFirstConsumer",
          allowedTopologies: [{ matchLabelExpressions: [{ key: ZONE, values: ["a"] }] }],
        }),
      ],
      claim: tableClaim("outside", "late-allowed", newUid(), {
        annotations: { "volume.kubernetes.io/selected-node": "n2" },
      }),
      createVolume: [],
      events: [
        { type: "Warning", reason: "ProvisioningFailed", message: "not in allowed topologies" },
      ],
    }));

  it("with --immediate-topology=false sends no requirements for immediate binding", () => {
    const uid = newUid();
    const c = tableClaim("anywhere", "immediate", uid);
    return runRow({
      driver,
      args: ["--immediate-topology=false"],
      objects: [...cluster, sc("immediate")],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
        },
      ],
      // The fake driver places a volume without requirements in its own zone, a.
      pv: expectedPv(c, { capacity: "1Gi", spec: affinity("a") }),
    });
  });

  it("builds the PV's node affinity from accessible_topology: one term per topology, keys sorted", () => {
    const uid = newUid();
    const c = tableClaim("spread", "immediate", uid, { accessModes: ["ReadWriteMany"] });
    return runRow({
      driver,
      args: ["--immediate-topology=false"],
      objects: [...cluster, sc("immediate")],
      script: ({ h }) => {
        h.driver.once(
          "createVolume",
          editVolume((v) => {
            v.accessibleTopology = [
              create(TopologySchema, { segments: { [ZONE]: "a", [RACK]: "r1" } }),
              create(TopologySchema, zone("b")),
            ];
          }),
        );
      },
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability("MULTI_NODE_MULTI_WRITER")],
        },
      ],
      pv: expectedPv(c, {
        capacity: "1Gi",
        spec: {
          nodeAffinity: {
            required: {
              nodeSelectorTerms: [
                {
                  matchExpressions: [
                    { key: RACK, operator: "In", values: ["r1"] },
                    { key: ZONE, operator: "In", values: ["a"] },
                  ],
                },
                { matchExpressions: [{ key: ZONE, operator: "In", values: ["b"] }] },
              ],
            },
          },
        },
      }),
    });
  });
});

describe("provisioning table: data sources", () => {
  const SOURCE_UID = "50000000-0000-4000-8000-000000000001";
  const SNAPSHOT_UID = "50000000-0000-4000-8000-000000000002";
  const CLONE_FINALIZER = "provisioner.storage.kubernetes.io/cloning-protection";
  const SNAPSHOT_FINALIZER =
    "provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection";
  const cloneCaps = [Cap.CREATE_DELETE_VOLUME, Cap.CLONE_VOLUME];
  const snapshotCaps = [Cap.CREATE_DELETE_VOLUME, Cap.CREATE_DELETE_SNAPSHOT];

  // A bound source claim and its PV, as kube-controller-manager leaves them.
  const source: KubeObject[] = [
    {
      ...tableClaim("golden", "standard", SOURCE_UID, { volumeName: "pv-golden" }),
      status: { phase: "Bound" },
    },
    {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: "pv-golden" },
      spec: {
        accessModes: ["ReadWriteOnce"],
        capacity: { storage: "1Gi" },
        csi: { driver: DRIVER, volumeHandle: "id-golden" },
        claimRef: {
          apiVersion: "v1",
          kind: "PersistentVolumeClaim",
          namespace: "default",
          name: "golden",
          uid: SOURCE_UID,
        },
        persistentVolumeReclaimPolicy: "Delete",
        storageClassName: "standard",
        volumeMode: "Filesystem",
      },
      status: { phase: "Bound" },
    },
  ];
  const cloneSource = { kind: "PersistentVolumeClaim", name: "golden" };

  const snapshot: KubeObject[] = [
    {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshot",
      metadata: { name: "nightly", namespace: "default", uid: SNAPSHOT_UID },
      spec: { source: { persistentVolumeClaimName: "golden" } },
      status: {
        boundVolumeSnapshotContentName: "snapcontent-1",
        readyToUse: true,
        restoreSize: "1Gi",
      },
    },
    {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshotContent",
      metadata: { name: "snapcontent-1" },
      spec: {
        volumeSnapshotRef: {
          apiVersion: "snapshot.storage.k8s.io/v1",
          kind: "VolumeSnapshot",
          namespace: "default",
          name: "nightly",
          uid: SNAPSHOT_UID,
        },
        driver: DRIVER,
        deletionPolicy: "Delete",
        source: { volumeHandle: "id-golden" },
        sourceVolumeMode: "Filesystem",
      },
      status: { snapshotHandle: "snap-id-1", readyToUse: true },
    },
  ];
  const snapshotSource = {
    apiGroup: "snapshot.storage.k8s.io",
    kind: "VolumeSnapshot",
    name: "nightly",
  };

  it("clones a bound claim: volume content source and the cloning-protection finalizer", () => {
    const uid = newUid();
    const c = tableClaim("copy", "standard", uid, {
      dataSource: cloneSource,
      dataSourceRef: cloneSource,
    });
    return runRow({
      driver: { controllerCapabilities: cloneCaps },
      objects: [sc("standard"), ...source],
      script: ({ h }) => {
        h.driver.addVolume({ name: "golden", volumeId: "id-golden" });
      },
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          volumeContentSource: { volume: { volumeId: "id-golden" } },
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi" }),
      check: ({ h }) => {
        const golden = h.apiserver.get(resources.persistentVolumeClaims, "golden", "default");
        assert.deepEqual(
          golden?.metadata.finalizers,
          [CLONE_FINALIZER],
          "the source claim carries the cloning-protection finalizer",
        );
      },
    });
  });

  it("fails a clone when the driver lacks CLONE_VOLUME", () =>
    runRow({
      objects: [sc("standard"), ...source],
      claim: tableClaim("copy", "standard", newUid(), {
        dataSource: cloneSource,
        dataSourceRef: cloneSource,
      }),
      createVolume: [],
      events: [{ type: "Warning", reason: "ProvisioningFailed", message: "CLONE_VOLUME" }],
    }));

  it("restores a snapshot: snapshot content source, protected by a finalizer while it runs", () => {
    const uid = newUid();
    const c = tableClaim("restored", "standard", uid, {
      dataSource: snapshotSource,
      dataSourceRef: snapshotSource,
    });
    let finalizersDuringCreate: string[] | undefined;
    return runRow({
      driver: { controllerCapabilities: snapshotCaps },
      objects: [sc("standard"), ...snapshot],
      script: ({ h }) => {
        h.driver.once("createVolume", (_req, ctx) => {
          const snap = h.apiserver.get<VolumeSnapshot>(
            resources.volumeSnapshots,
            "nightly",
            "default",
          );
          finalizersDuringCreate = snap?.metadata.finalizers;
          return ctx.next();
        });
      },
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          volumeContentSource: { snapshot: { snapshotId: "snap-id-1" } },
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi" }),
      check: async ({ h, settle }) => {
        assert.deepEqual(
          finalizersDuringCreate,
          [SNAPSHOT_FINALIZER],
          "the snapshot carries the source-protection finalizer while CreateVolume runs",
        );
        await settle("the source-protection finalizer removed after the restore", () => {
          const snap = h.apiserver.get(resources.volumeSnapshots, "nightly", "default");
          return snap && (snap.metadata.finalizers ?? []).length === 0;
        });
      },
    });
  });

  it("fails a snapshot restore when the driver lacks CREATE_DELETE_SNAPSHOT", () =>
    runRow({
      objects: [sc("standard"), ...snapshot],
      claim: tableClaim("restored", "standard", newUid(), {
        dataSource: snapshotSource,
        dataSourceRef: snapshotSource,
      }),
      createVolume: [],
      events: [
        { type: "Warning", reason: "ProvisioningFailed", message: "CREATE_DELETE_SNAPSHOT" },
      ],
    }));

  it("leaves a claim with another kind of data source to an external populator", () => {
    const populated = { apiGroup: "populators.example.com", kind: "Dataset", name: "imagenet" };
    return runRow({
      objects: [sc("standard")],
      claim: tableClaim("populated", "standard", newUid(), {
        dataSource: populated,
        dataSourceRef: populated,
      }),
      createVolume: [],
      events: [
        {
          type: "Normal",
          reason: "Provisioning",
          message: "Assuming an external populator will provision the volume",
        },
      ],
    });
  });
});

describe("provisioning table: VolumeAttributesClass", () => {
  const vac = (driverName: string): KubeObject => ({
    apiVersion: "storage.k8s.io/v1",
    kind: "VolumeAttributesClass",
    metadata: { name: "gold" },
    driverName,
    parameters: { iops: "3000", throughput: "125" },
  });
  const modifyCaps = [Cap.CREATE_DELETE_VOLUME, Cap.MODIFY_VOLUME];

  it("sends the class's parameters as mutable_parameters and names the class on the PV", () => {
    const uid = newUid();
    const c = tableClaim("tuned", "standard", uid, { volumeAttributesClassName: "gold" });
    return runRow({
      driver: { controllerCapabilities: modifyCaps },
      objects: [sc("standard"), vac(DRIVER)],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
          mutableParameters: { iops: "3000", throughput: "125" },
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", spec: { volumeAttributesClassName: "gold" } }),
    });
  });

  it("fails a VolumeAttributesClass of another driver", () =>
    runRow({
      driver: { controllerCapabilities: modifyCaps },
      objects: [sc("standard"), vac("other.example.com")],
      claim: tableClaim("tuned", "standard", newUid(), { volumeAttributesClassName: "gold" }),
      createVolume: [],
      events: [{ type: "Warning", reason: "ProvisioningFailed", message: "other.example.com" }],
    }));

  it("fails a VolumeAttributesClass when the driver lacks MODIFY_VOLUME", () =>
    runRow({
      objects: [sc("standard"), vac(DRIVER)],
      claim: tableClaim("tuned", "standard", newUid(), { volumeAttributesClassName: "gold" }),
      createVolume: [],
      events: [{ type: "Warning", reason: "ProvisioningFailed", message: "MODIFY_VOLUME" }],
    }));
});

describe("provisioning table: reclaim policy", () => {
  it("writes reclaim policy Delete with the PV finalizer and provisioned-by", () => {
    const uid = newUid();
    const c = tableClaim("scratch", "delete", uid);
    return runRow({
      objects: [sc("delete", { reclaimPolicy: "Delete" })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
        },
      ],
      pv: expectedPv(c, {
        capacity: "1Gi",
        reclaimPolicy: "Delete",
        finalizers: ["external-provisioner.volume.kubernetes.io/finalizer"],
        annotations: { "pv.kubernetes.io/provisioned-by": DRIVER },
      }),
    });
  });

  it("writes reclaim policy Retain without the PV finalizer", () => {
    const uid = newUid();
    const c = tableClaim("keep", "retain", uid);
    return runRow({
      objects: [sc("retain", { reclaimPolicy: "Retain" })],
      claim: c,
      createVolume: [
        {
          name: `pvc-${uid}`,
          capacityRange: { requiredBytes: gib(1) },
          volumeCapabilities: [mountCapability(SNW)],
        },
      ],
      pv: expectedPv(c, { capacity: "1Gi", reclaimPolicy: "Retain", finalizers: [] }),
    });
  });
});
