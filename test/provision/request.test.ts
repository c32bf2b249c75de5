// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are StorageClass secret templates, not JS templates.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type JsonValue, toJson } from "@bufbuild/protobuf";
import {
  CreateVolumeRequestSchema,
  PluginCapability_Service_Type as Plugin,
  ControllerServiceCapability_RPC_Type as Rpc,
} from "../../src/gen/csi/v1/csi_pb.js";
import type { PersistentVolumeClaim, StorageClass } from "../../src/kube/objects.ts";
import {
  type BuildRequestResult,
  buildCreateVolumeRequest,
  type ProvisionerConfig,
} from "../../src/provision/request.ts";
import {
  claim,
  cloneSource,
  config,
  DRIVER,
  lookups,
  PV_NAME,
  secret,
  snapshotSource,
  storageClass,
  UID,
  type World,
  withCapabilities,
} from "./fixtures.ts";

const P = "csi.storage.k8s.io/";
const ZONE = "topology.example.com/zone";

/** The JSON of the request every row starts from: RWO, 1Gi, no parameters. */
function request(overrides: Record<string, JsonValue> = {}): Record<string, JsonValue> {
  return {
    name: PV_NAME,
    capacityRange: { requiredBytes: "1073741824" },
    volumeCapabilities: [{ mount: {}, accessMode: { mode: "SINGLE_NODE_WRITER" } }],
    ...overrides,
  };
}

interface Row {
  name: string;
  config?: Partial<ProvisionerConfig>;
  claim?: PersistentVolumeClaim;
  storageClass?: StorageClass | null;
  world?: World;
  /** The exact request (as protobuf JSON) of an `ok` result. */
  request?: Record<string, JsonValue>;
  /** Or the failure. */
  error?: { outcome: "finished" | "noChange" | "reschedule"; message: RegExp };
  populator?: true;
  /** Further checks on the result. */
  check?: (result: BuildRequestResult) => void;
}

const SNAPSHOT_SOURCE = {
  apiGroup: "snapshot.storage.k8s.io",
  kind: "VolumeSnapshot",
  name: "snap",
};
const CLONE_SOURCE = { kind: "PersistentVolumeClaim", name: "src" };
const SECRET_PARAMS = {
  [`${P}provisioner-secret-name`]: "${pvc.name}-creds",
  [`${P}provisioner-secret-namespace`]: "${pvc.namespace}",
};

const ROWS: Row[] = [
  {
    name: "builds the request of a plain claim",
    storageClass: storageClass({ parameters: { pool: "gold" } }),
    request: request({ parameters: { pool: "gold" } }),
    check: (r) => {
      assert.ok(r.kind === "ok");
      assert.equal(r.pvName, PV_NAME);
      assert.equal(r.fsType, "");
      assert.deepEqual(r.secretRefs, {});
      assert.equal(r.supportsTopology, false);
      assert.equal(r.mayReschedule, false);
      assert.deepEqual(r.warnings, []);
    },
  },
  {
    name: "adds the claim and PV names with --extra-create-metadata",
    config: { extraCreateMetadata: true },
    request: request({
      parameters: {
        [`${P}pvc/name`]: "data",
        [`${P}pvc/namespace`]: "apps",
        [`${P}pv/name`]: PV_NAME,
      },
    }),
  },
  {
    name: "names the volume with --volume-name-prefix and --volume-name-uuid-length",
    config: { volumeNamePrefix: "vol", volumeNameUuidLength: 10 },
    request: request({ name: "vol-2d2a1f9e1c" }),
  },
  {
    name: "rejects an empty --volume-name-prefix",
    config: { volumeNamePrefix: "" },
    error: { outcome: "finished", message: /the volume name prefix is empty/ },
  },
  {
    name: "rejects a claim without UID",
    claim: claim({}, { uid: "" }),
    error: { outcome: "finished", message: /the claim has no UID/ },
  },
  {
    name: "sends the fsType of csi.storage.k8s.io/fstype",
    storageClass: storageClass({ parameters: { [`${P}fstype`]: "xfs" } }),
    request: request({
      volumeCapabilities: [
        { mount: { fsType: "xfs" }, accessMode: { mode: "SINGLE_NODE_WRITER" } },
      ],
    }),
    check: (r) => assert.equal(r.kind === "ok" && r.fsType, "xfs"),
  },
  {
    name: "sends the deprecated fstype key, passes it through, and warns",
    storageClass: storageClass({ parameters: { fsType: "ext3" } }),
    request: request({
      parameters: { fsType: "ext3" },
      volumeCapabilities: [
        { mount: { fsType: "ext3" }, accessMode: { mode: "SINGLE_NODE_WRITER" } },
      ],
    }),
    check: (r) => assert.match(r.kind === "ok" ? r.warnings[0]! : "", /"fsType" is deprecated/),
  },
  {
    name: "falls back to --default-fstype",
    config: { defaultFsType: "ext4" },
    request: request({
      volumeCapabilities: [
        { mount: { fsType: "ext4" }, accessMode: { mode: "SINGLE_NODE_WRITER" } },
      ],
    }),
  },
  {
    name: "rejects both fstype keys",
    storageClass: storageClass({ parameters: { fstype: "ext4", [`${P}fstype`]: "xfs" } }),
    error: {
      outcome: "finished",
      message:
        /^fstype specified in parameters with both "fstype" and "csi.storage.k8s.io\/fstype" keys$/,
    },
  },
  {
    name: "sends the class's mount options as mount flags",
    storageClass: storageClass({ mountOptions: ["noatime", "nfsvers=4.1"] }),
    request: request({
      volumeCapabilities: [
        {
          mount: { mountFlags: ["noatime", "nfsvers=4.1"] },
          accessMode: { mode: "SINGLE_NODE_WRITER" },
        },
      ],
    }),
  },
  {
    name: "sends one capability per access mode",
    claim: claim({
      accessModes: ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"],
    }),
    request: request({
      volumeCapabilities: [
        { mount: {}, accessMode: { mode: "SINGLE_NODE_WRITER" } },
        { mount: {}, accessMode: { mode: "MULTI_NODE_READER_ONLY" } },
        { mount: {}, accessMode: { mode: "MULTI_NODE_MULTI_WRITER" } },
        { mount: {}, accessMode: { mode: "SINGLE_NODE_WRITER" } },
      ],
    }),
  },
  {
    name: "uses the single-node multi-writer modes when the driver supports them",
    config: { capabilities: withCapabilities([], [Rpc.SINGLE_NODE_MULTI_WRITER]) },
    claim: claim({ accessModes: ["ReadWriteOnce", "ReadWriteOncePod"] }),
    request: request({
      volumeCapabilities: [
        { mount: {}, accessMode: { mode: "SINGLE_NODE_MULTI_WRITER" } },
        { mount: {}, accessMode: { mode: "SINGLE_NODE_SINGLE_WRITER" } },
      ],
    }),
  },
  {
    name: "sends a Block capability for a Block claim, without fsType",
    claim: claim({ volumeMode: "Block" }),
    storageClass: storageClass({ parameters: { [`${P}fstype`]: "xfs" }, mountOptions: ["ro"] }),
    request: request({
      volumeCapabilities: [{ block: {}, accessMode: { mode: "SINGLE_NODE_WRITER" } }],
    }),
  },
  {
    name: "rejects an unknown access mode",
    claim: claim({ accessModes: ["ReadWriteAll" as never] }),
    error: { outcome: "finished", message: /Unsupported access mode "ReadWriteAll"/ },
  },
  {
    name: "sends size 0 for a claim without storage request",
    claim: claim({ resources: {} }),
    request: request({ capacityRange: {} }),
  },
  {
    name: "rounds a fractional size up to whole bytes",
    claim: claim({ resources: { requests: { storage: "1500m" } } }),
    request: request({ capacityRange: { requiredBytes: "2" } }),
  },
  {
    name: "rejects a storage request that is not a quantity",
    claim: claim({ resources: { requests: { storage: "lots" } } }),
    error: { outcome: "finished", message: /Invalid quantity "lots"/ },
  },
  {
    name: "rejects a storage request beyond int64",
    claim: claim({ resources: { requests: { storage: "16Ei" } } }),
    error: { outcome: "finished", message: /storage request 16Ei is out of range/ },
  },
  {
    name: "strips the reserved parameters",
    storageClass: storageClass({
      parameters: {
        a: "1",
        [`${P}fstype`]: "ext4",
        [`${P}node-stage-secret-name`]: "s",
        [`${P}node-stage-secret-namespace`]: "n",
      },
    }),
    request: request({
      parameters: { a: "1" },
      volumeCapabilities: [
        { mount: { fsType: "ext4" }, accessMode: { mode: "SINGLE_NODE_WRITER" } },
      ],
    }),
    check: (r) =>
      assert.deepEqual(r.kind === "ok" && r.secretRefs, {
        nodeStage: { name: "s", namespace: "n" },
      }),
  },
  {
    name: "rejects an unknown reserved parameter",
    storageClass: storageClass({ parameters: { [`${P}provisioner-secret`]: "x" } }),
    error: {
      outcome: "finished",
      message:
        /^failed to strip CSI Parameters of prefixed keys: found unknown parameter key "csi.storage.k8s.io\/provisioner-secret" with reserved namespace csi.storage.k8s.io\/$/,
    },
  },
  {
    name: "rejects a claim selector",
    claim: claim({ selector: { matchLabels: { a: "b" } } }),
    error: {
      outcome: "finished",
      message: /^claim Selector is not supported$/,
    },
  },
  {
    name: "fails without StorageClass",
    storageClass: null,
    error: { outcome: "finished", message: /its StorageClass was not found/ },
  },
  {
    name: "needs the CONTROLLER_SERVICE plugin capability",
    config: {
      capabilities: { plugin: new Set(), controller: new Set([Rpc.CREATE_DELETE_VOLUME]) },
    },
    error: { outcome: "finished", message: /plugin CONTROLLER_SERVICE capability is not reported/ },
  },
  {
    name: "needs the CREATE_DELETE_VOLUME controller capability",
    config: {
      capabilities: { plugin: new Set([Plugin.CONTROLLER_SERVICE]), controller: new Set() },
    },
    error: {
      outcome: "finished",
      message: /controller CREATE_DELETE_VOLUME capability is not reported/,
    },
  },
  {
    name: "reads the provisioner secret and sends its data",
    storageClass: storageClass({ parameters: SECRET_PARAMS }),
    world: { secrets: [secret("apps", "data-creds", { user: "admin", password: "s3cret" })] },
    request: request({ secrets: { user: "admin", password: "s3cret" } }),
    check: (r) => {
      assert.ok(r.kind === "ok");
      assert.deepEqual(r.secretRefs, { provisioner: { name: "data-creds", namespace: "apps" } });
    },
  },
  {
    name: "uses the default secret for every kind",
    storageClass: storageClass({
      parameters: { [`${P}secret-name`]: "default", [`${P}secret-namespace`]: "kube-system" },
    }),
    world: { secrets: [secret("kube-system", "default", { token: "t" })] },
    request: request({ secrets: { token: "t" } }),
    check: (r) => {
      assert.ok(r.kind === "ok");
      const ref = { name: "default", namespace: "kube-system" };
      assert.deepEqual(r.secretRefs, {
        provisioner: ref,
        controllerPublish: ref,
        nodeStage: ref,
        nodePublish: ref,
        controllerExpand: ref,
        nodeExpand: ref,
        controllerModify: ref,
      });
    },
  },
  {
    name: "passes the deprecated secret keys through to the driver",
    storageClass: storageClass({
      parameters: { csiProvisionerSecretName: "old", csiProvisionerSecretNamespace: "apps" },
    }),
    world: { secrets: [secret("apps", "old", { k: "v" })] },
    request: request({
      parameters: { csiProvisionerSecretName: "old", csiProvisionerSecretNamespace: "apps" },
      secrets: { k: "v" },
    }),
  },
  {
    name: "retries when the provisioner secret does not exist",
    storageClass: storageClass({ parameters: SECRET_PARAMS }),
    error: {
      outcome: "noChange",
      message:
        /^error getting secret data-creds in namespace apps: secrets "data-creds" not found$/,
    },
  },
  {
    name: "retries when the provisioner secret cannot be read",
    storageClass: storageClass({ parameters: SECRET_PARAMS }),
    world: { failing: ["getSecret"] },
    error: {
      outcome: "noChange",
      message: /^error getting secret data-creds in namespace apps: the server is currently unable/,
    },
  },
  {
    name: "reports a secret template with an unknown token",
    storageClass: storageClass({
      parameters: {
        [`${P}node-publish-secret-name`]: "${pvc.uid}",
        [`${P}node-publish-secret-namespace`]: "x",
      },
    }),
    error: {
      outcome: "noChange",
      message: /^error resolving value "\$\{pvc.uid\}": invalid tokens: \["pvc.uid"\]$/,
    },
  },
  {
    name: "reports a secret namespace that is not a DNS-1123 label",
    storageClass: storageClass({
      parameters: {
        [`${P}controller-expand-secret-name`]: "s",
        [`${P}controller-expand-secret-namespace`]: "No",
      },
    }),
    error: {
      outcome: "noChange",
      message: /^"No" is not a valid namespace name$/,
    },
  },
  {
    name: "reports the deprecated and the prefixed secret key together",
    storageClass: storageClass({
      parameters: {
        csiNodeStageSecretName: "a",
        [`${P}node-stage-secret-name`]: "b",
        [`${P}node-stage-secret-namespace`]: "n",
      },
    }),
    error: {
      outcome: "noChange",
      message:
        /^failed to get name and namespace template from params: NodeStage secrets specified in parameters with both "csi" and "csi.storage.k8s.io\/" keys$/,
    },
  },
  {
    name: "leaves an unknown data source kind to an external populator, before any capability check",
    config: { capabilities: { plugin: new Set(), controller: new Set() } },
    claim: claim({ dataSourceRef: { apiGroup: "populator.example.com", kind: "Blob", name: "b" } }),
    populator: true,
  },
  {
    name: "rejects a VolumeSnapshot data source of another API group",
    config: { capabilities: withCapabilities([], [Rpc.CREATE_DELETE_SNAPSHOT]) },
    claim: claim({ dataSource: { apiGroup: "example.com", kind: "VolumeSnapshot", name: "snap" } }),
    error: {
      outcome: "finished",
      message:
        /^the PVC source does not belong to the right APIGroup. Expected snapshot.storage.k8s.io, Got example.com$/,
    },
  },
  {
    name: "needs CREATE_DELETE_SNAPSHOT to restore a snapshot",
    claim: claim({ dataSource: SNAPSHOT_SOURCE }),
    error: {
      outcome: "finished",
      message: /controller CREATE_DELETE_SNAPSHOT capability is not reported/,
    },
  },
  {
    name: "restores a snapshot",
    config: { capabilities: withCapabilities([], [Rpc.CREATE_DELETE_SNAPSHOT]) },
    claim: claim({ dataSource: SNAPSHOT_SOURCE }),
    world: snapshotSource(),
    request: request({ volumeContentSource: { snapshot: { snapshotId: "snap-handle" } } }),
    check: (r) => {
      assert.ok(r.kind === "ok");
      assert.deepEqual(r.sourceProtection, {
        kind: "VolumeSnapshot",
        namespace: "apps",
        name: "snap",
        finalizer: "provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection",
        present: false,
      });
      assert.deepEqual(r.dataSource, {
        kind: "VolumeSnapshot",
        name: "snap",
        apiGroup: "snapshot.storage.k8s.io",
        namespace: "apps",
      });
    },
  },
  {
    name: "retries a restore whose snapshot does not exist",
    config: { capabilities: withCapabilities([], [Rpc.CREATE_DELETE_SNAPSHOT]) },
    claim: claim({ dataSource: SNAPSHOT_SOURCE }),
    error: {
      outcome: "noChange",
      message:
        /^error getting handle for DataSource Type VolumeSnapshot by Name snap: error getting snapshot snap from api server: volumesnapshots.snapshot.storage.k8s.io "snap" not found$/,
    },
  },
  {
    name: "retries a restore when the snapshot cannot be read",
    config: { capabilities: withCapabilities([], [Rpc.CREATE_DELETE_SNAPSHOT]) },
    claim: claim({ dataSource: SNAPSHOT_SOURCE }),
    world: { ...snapshotSource(), failing: ["getVolumeSnapshot"] },
    error: { outcome: "noChange", message: /the server is currently unable to handle the request/ },
  },
  {
    name: "needs CLONE_VOLUME to clone",
    claim: claim({ dataSource: CLONE_SOURCE }),
    error: { outcome: "finished", message: /controller CLONE_VOLUME capability is not reported/ },
  },
  {
    name: "clones a claim",
    config: { capabilities: withCapabilities([], [Rpc.CLONE_VOLUME]) },
    claim: claim({ dataSource: CLONE_SOURCE }),
    world: cloneSource(),
    request: request({ volumeContentSource: { volume: { volumeId: "vol-src" } } }),
    check: (r) =>
      assert.deepEqual(r.kind === "ok" && r.sourceProtection, {
        kind: "PersistentVolumeClaim",
        namespace: "apps",
        name: "src",
        finalizer: "provisioner.storage.kubernetes.io/cloning-protection",
        present: false,
      }),
  },
  {
    name: "retries a clone whose source is not bound",
    config: { capabilities: withCapabilities([], [Rpc.CLONE_VOLUME]) },
    claim: claim({ dataSource: CLONE_SOURCE }),
    world: cloneSource({ volume: { claimRef: { name: "other", namespace: "apps", uid: "x" } } }),
    error: { outcome: "noChange", message: /claim in dataSource not bound or invalid/ },
  },
  {
    name: "reads the data source from dataSourceRef",
    config: { capabilities: withCapabilities([], [Rpc.CLONE_VOLUME]) },
    claim: claim({ dataSourceRef: CLONE_SOURCE }),
    world: cloneSource(),
    request: request({ volumeContentSource: { volume: { volumeId: "vol-src" } } }),
  },
  {
    name: "rejects a cross-namespace dataSourceRef without the feature gate",
    claim: claim({ dataSourceRef: { ...SNAPSHOT_SOURCE, namespace: "other" } }),
    error: { outcome: "finished", message: /CrossNamespaceVolumeDataSource feature is disabled/ },
  },
  {
    name: "rejects a cross-namespace dataSourceRef that no ReferenceGrant allows",
    config: {
      capabilities: withCapabilities([], [Rpc.CREATE_DELETE_SNAPSHOT]),
      features: { crossNamespaceVolumeDataSource: true },
    },
    claim: claim({ dataSourceRef: { ...SNAPSHOT_SOURCE, namespace: "other" } }),
    error: {
      outcome: "finished",
      message: /accessing other\/snap of VolumeSnapshot dataSource from apps\/data isn't allowed/,
    },
  },
  {
    name: "restores a granted cross-namespace snapshot",
    config: {
      capabilities: withCapabilities([], [Rpc.CREATE_DELETE_SNAPSHOT]),
      features: { crossNamespaceVolumeDataSource: true },
    },
    claim: claim({ dataSourceRef: { ...SNAPSHOT_SOURCE, namespace: "other" } }),
    world: (() => {
      const w = snapshotSource();
      w.snapshots[0]!.metadata.namespace = "other";
      w.contents[0]!.spec.volumeSnapshotRef.namespace = "other";
      return {
        ...w,
        grants: [
          {
            metadata: { name: "g", namespace: "other" },
            spec: {
              from: [{ group: "", kind: "PersistentVolumeClaim", namespace: "apps" }],
              to: [{ group: "snapshot.storage.k8s.io", kind: "VolumeSnapshot" }],
            },
          },
        ],
      };
    })(),
    request: request({ volumeContentSource: { snapshot: { snapshotId: "snap-handle" } } }),
  },
  {
    name: "sends the VolumeAttributesClass parameters as mutable parameters",
    config: { capabilities: withCapabilities([], [Rpc.MODIFY_VOLUME]) },
    claim: claim({ volumeAttributesClassName: "gold" }),
    world: {
      vacs: [{ metadata: { name: "gold" }, driverName: DRIVER, parameters: { iops: "3000" } }],
    },
    request: request({ mutableParameters: { iops: "3000" } }),
    check: (r) => assert.equal(r.kind === "ok" && r.volumeAttributesClassName, "gold"),
  },
  {
    name: "needs MODIFY_VOLUME for a VolumeAttributesClass",
    claim: claim({ volumeAttributesClassName: "gold" }),
    error: { outcome: "finished", message: /controller MODIFY_VOLUME capability is not reported/ },
  },
  {
    name: "rejects a VolumeAttributesClass of another driver",
    config: { capabilities: withCapabilities([], [Rpc.MODIFY_VOLUME]) },
    claim: claim({ volumeAttributesClassName: "gold" }),
    world: { vacs: [{ metadata: { name: "gold" }, driverName: "other" }] },
    error: {
      outcome: "finished",
      message:
        /^VAC gold referenced in PVC is for driver other which does not match driver name test.csi.example.com$/,
    },
  },
  {
    name: "retries when the VolumeAttributesClass does not exist",
    config: { capabilities: withCapabilities([], [Rpc.MODIFY_VOLUME]) },
    claim: claim({ volumeAttributesClassName: "gold" }),
    error: {
      outcome: "noChange",
      message: /^volumeattributesclasses.storage.k8s.io "gold" not found$/,
    },
  },
  {
    name: "ignores the VolumeAttributesClass with the feature gate off",
    config: { features: { volumeAttributesClass: false } },
    claim: claim({ volumeAttributesClassName: "gold" }),
    request: request(),
  },
  {
    name: "sends the aggregated topology for immediate binding",
    config: { capabilities: withCapabilities([Plugin.VOLUME_ACCESSIBILITY_CONSTRAINTS], []) },
    world: {
      csiNodes: [
        {
          metadata: { name: "n1" },
          spec: { drivers: [{ name: DRIVER, nodeID: "n1", topologyKeys: [ZONE] }] },
        },
      ],
      nodes: [{ metadata: { name: "n1", labels: { [ZONE]: "z1" } } }],
    },
    request: request({
      accessibilityRequirements: {
        requisite: [{ segments: { [ZONE]: "z1" } }],
        preferred: [{ segments: { [ZONE]: "z1" } }],
      },
    }),
    check: (r) => {
      assert.ok(r.kind === "ok");
      assert.equal(r.supportsTopology, true);
      assert.equal(r.mayReschedule, false);
      assert.deepEqual(r.topologyMemo, { topologyKeys: [ZONE], requisite: [{ [ZONE]: "z1" }] });
    },
  },
  {
    name: "sends the selected node's topology for late binding, and may reschedule",
    config: {
      capabilities: withCapabilities([Plugin.VOLUME_ACCESSIBILITY_CONSTRAINTS], []),
      strictTopology: true,
    },
    claim: claim(
      {},
      {
        annotations: {
          "volume.kubernetes.io/storage-provisioner": DRIVER,
          "volume.kubernetes.io/selected-node": "n2",
        },
      },
    ),
    world: {
      csiNodes: [
        {
          metadata: { name: "n2" },
          spec: { drivers: [{ name: DRIVER, nodeID: "n2", topologyKeys: [ZONE] }] },
        },
      ],
      nodes: [{ metadata: { name: "n2", labels: { [ZONE]: "z2" } } }],
    },
    request: request({
      accessibilityRequirements: {
        requisite: [{ segments: { [ZONE]: "z2" } }],
        preferred: [{ segments: { [ZONE]: "z2" } }],
      },
    }),
    check: (r) => {
      assert.ok(r.kind === "ok");
      assert.equal(r.selectedNode, "n2");
      assert.equal(r.mayReschedule, true);
    },
  },
  {
    name: "asks to reschedule when the selected node is gone",
    config: { capabilities: withCapabilities([Plugin.VOLUME_ACCESSIBILITY_CONSTRAINTS], []) },
    claim: claim(
      {},
      {
        annotations: {
          "volume.kubernetes.io/storage-provisioner": DRIVER,
          "volume.kubernetes.io/selected-node": "n2",
        },
      },
    ),
    error: {
      outcome: "reschedule",
      message: /^failed to get selected CSINode n2: csinode.storage.k8s.io "n2" not found$/,
    },
    check: (r) => assert.deepEqual(r.kind === "error" && r.topologyMemo, {}),
  },
  {
    name: "retries when no topology is available",
    config: { capabilities: withCapabilities([Plugin.VOLUME_ACCESSIBILITY_CONSTRAINTS], []) },
    error: {
      outcome: "noChange",
      message: /^error generating accessibility requirements: no available topology found$/,
    },
  },
  {
    name: "sends no topology with the Topology gate off",
    config: {
      capabilities: withCapabilities([Plugin.VOLUME_ACCESSIBILITY_CONSTRAINTS], []),
      features: { topology: false },
    },
    request: request(),
    check: (r) => assert.equal(r.kind === "ok" && r.supportsTopology, false),
  },
];

async function build(row: Row): Promise<{ result: BuildRequestResult; calls: string[] }> {
  const l = lookups(row.world);
  const result = await buildCreateVolumeRequest({
    config: config(row.config),
    claim: row.claim ?? claim(),
    storageClass: row.storageClass === null ? undefined : (row.storageClass ?? storageClass()),
    lookups: l,
    random: () => 0,
  });
  return { result, calls: l.calls };
}

describe("buildCreateVolumeRequest()", () => {
  for (const row of ROWS) {
    it(row.name, async () => {
      const { result } = await build(row);
      if (row.request) {
        assert.equal(result.kind, "ok", result.kind === "error" ? result.message : result.kind);
        if (result.kind !== "ok") return;
        assert.deepEqual(toJson(CreateVolumeRequestSchema, result.request), row.request);
        assert.equal(result.pvName, result.request.name);
      } else if (row.error) {
        assert.equal(result.kind, "error");
        if (result.kind !== "error") return;
        assert.equal(result.outcome, row.error.outcome, result.message);
        // Upstream's event text is the cause alone (no claim prefix: the event names the claim).
        assert.doesNotMatch(result.message, /Cannot provision claim/);
        assert.match(result.message, row.error.message);
      } else if (row.populator) {
        assert.deepEqual(result, {
          kind: "populator",
          message: "Assuming an external populator will provision the volume",
          dataSource: {
            kind: "Blob",
            name: "b",
            apiGroup: "populator.example.com",
            namespace: "apps",
          },
        });
      }
      row.check?.(result);
    });
  }

  it("reads nothing it does not need", async () => {
    const { calls } = await build({ name: "plain" });
    assert.deepEqual(calls, []);
  });

  it("reads the source claim, then its volume, for a clone", async () => {
    const { calls } = await build(ROWS.find((r) => r.name === "clones a claim")!);
    assert.deepEqual(calls, ["getClaim apps/src", "getVolume pv-src"]);
  });

  it("reads the snapshot, then its content, for a restore", async () => {
    const { calls } = await build(ROWS.find((r) => r.name === "restores a snapshot")!);
    assert.deepEqual(calls, [
      "getVolumeSnapshot apps/snap",
      "getVolumeSnapshotContent snapcontent-1",
    ]);
  });

  it("marks a source protection finalizer that is already present", async () => {
    const world = cloneSource();
    world.claims[0]!.metadata.finalizers = ["provisioner.storage.kubernetes.io/cloning-protection"];
    const { result } = await build({
      name: "clone again",
      config: { capabilities: withCapabilities([], [Rpc.CLONE_VOLUME]) },
      claim: claim({ dataSource: CLONE_SOURCE }),
      world,
    });
    assert.equal(result.kind === "ok" && result.sourceProtection?.present, true);
  });

  it("replays the topology memo of a previous attempt", async () => {
    const topologyConfig = config({
      capabilities: withCapabilities([Plugin.VOLUME_ACCESSIBILITY_CONSTRAINTS], []),
    });
    const selected = claim(
      {},
      {
        annotations: {
          "volume.kubernetes.io/storage-provisioner": DRIVER,
          "volume.kubernetes.io/selected-node": "n2",
        },
      },
    );
    const first = await buildCreateVolumeRequest({
      config: topologyConfig,
      claim: selected,
      storageClass: storageClass(),
      lookups: lookups({
        csiNodes: [
          {
            metadata: { name: "n2" },
            spec: { drivers: [{ name: DRIVER, nodeID: "n2", topologyKeys: [ZONE] }] },
          },
        ],
        nodes: [
          { metadata: { name: "n1", labels: { [ZONE]: "z1" } } },
          { metadata: { name: "n2", labels: { [ZONE]: "z2" } } },
        ],
      }),
      random: () => 0,
    });
    assert.ok(first.kind === "ok");
    // The node and its CSINode are gone; the memo keeps the requirements identical.
    const again = await buildCreateVolumeRequest({
      config: topologyConfig,
      claim: selected,
      storageClass: storageClass(),
      lookups: lookups({}),
      random: () => 0,
      topologyMemo: first.topologyMemo!,
    });
    assert.ok(again.kind === "ok");
    assert.deepEqual(
      toJson(CreateVolumeRequestSchema, again.request),
      toJson(CreateVolumeRequestSchema, first.request),
    );
    const json = toJson(CreateVolumeRequestSchema, again.request) as Record<string, JsonValue>;
    assert.deepEqual(json.accessibilityRequirements, {
      requisite: [{ segments: { [ZONE]: "z1" } }, { segments: { [ZONE]: "z2" } }],
      preferred: [{ segments: { [ZONE]: "z2" } }, { segments: { [ZONE]: "z1" } }],
    });
  });

  it("takes the selected node from the input over the claim", async () => {
    const result = await buildCreateVolumeRequest({
      config: config(),
      claim: claim(),
      storageClass: storageClass(),
      selectedNode: "n3",
      lookups: lookups(),
      random: () => 0,
    });
    assert.equal(result.kind === "ok" && result.selectedNode, "n3");
    assert.equal(UID.length, 36);
  });
});
