// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are StorageClass secret templates, not JS templates.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  type CreateVolumeResponse,
  CreateVolumeResponseSchema,
  PluginCapability_Service_Type as Plugin,
  ControllerServiceCapability_RPC_Type as Rpc,
} from "../../src/gen/csi/v1/csi_pb.js";
import type {
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
} from "../../src/kube/objects.ts";
import {
  type BuildVolumeInput,
  buildPersistentVolume,
  volumeBelongsToClaim,
} from "../../src/provision/pv.ts";
import {
  buildCreateVolumeRequest,
  type PreparedRequest,
  type ProvisionerConfig,
} from "../../src/provision/request.ts";
import {
  claim,
  config,
  DRIVER,
  GI,
  lookups,
  PV_NAME,
  secret,
  storageClass,
  UID,
  type World,
  withCapabilities,
} from "./fixtures.ts";

const IDENTITY = "1700000000000-1234-test.csi.example.com";
const ZONE = "topology.example.com/zone";
const P = "csi.storage.k8s.io/";

/** The PV every row starts from: 1Gi RWO from class `fast` (reclaim Delete). */
function volume(
  overrides: {
    metadata?: Partial<PersistentVolume["metadata"]>;
    spec?: Partial<PersistentVolume["spec"]>;
    csi?: Partial<NonNullable<PersistentVolume["spec"]["csi"]>>;
  } = {},
): PersistentVolume {
  return {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: {
      name: PV_NAME,
      annotations: {
        "pv.kubernetes.io/provisioned-by": DRIVER,
        "volume.kubernetes.io/provisioner-deletion-secret-name": "",
        "volume.kubernetes.io/provisioner-deletion-secret-namespace": "",
      },
      finalizers: ["external-provisioner.volume.kubernetes.io/finalizer"],
      ...overrides.metadata,
    },
    spec: {
      accessModes: ["ReadWriteOnce"],
      capacity: { storage: "1Gi" },
      claimRef: {
        kind: "PersistentVolumeClaim",
        namespace: "apps",
        name: "data",
        uid: UID,
        apiVersion: "v1",
        resourceVersion: "42",
      },
      csi: {
        driver: DRIVER,
        volumeHandle: "vol-1",
        volumeAttributes: { "storage.kubernetes.io/csiProvisionerIdentity": IDENTITY },
        ...overrides.csi,
      },
      storageClassName: "fast",
      persistentVolumeReclaimPolicy: "Delete",
      ...overrides.spec,
    },
  };
}

interface Row {
  name: string;
  config?: Partial<ProvisionerConfig>;
  claim?: PersistentVolumeClaim;
  storageClass?: StorageClass;
  world?: World;
  response?: MessageInitShape<typeof CreateVolumeResponseSchema>;
  input?: Partial<BuildVolumeInput>;
  want:
    | PersistentVolume
    | { kind: "tooSmall" | "contentSourceMissing"; volumeId: string; message: string };
}

const ROWS: Row[] = [
  {
    name: "builds the PV of a plain claim",
    want: volume(),
  },
  {
    name: "uses the requested size when the driver reports capacity 0",
    response: { volume: { volumeId: "vol-1", capacityBytes: 0n } },
    want: volume(),
  },
  {
    name: "uses the driver's capacity when it is larger, in canonical BinarySI",
    response: { volume: { volumeId: "vol-1", capacityBytes: 1_500_000_000n } },
    want: volume({ spec: { capacity: { storage: "1500000000" } } }),
  },
  {
    name: "refuses a volume smaller than requested",
    response: { volume: { volumeId: "vol-1", capacityBytes: GI - 1n } },
    want: {
      kind: "tooSmall",
      volumeId: "vol-1",
      message: "created volume capacity 1073741823 less than requested capacity 1073741824",
    },
  },
  {
    name: "merges the volume context into the attributes after the identity",
    response: {
      volume: {
        volumeId: "vol-1",
        capacityBytes: GI,
        volumeContext: { a: "1", "storage.kubernetes.io/csiProvisionerIdentity": "driver-set" },
      },
    },
    want: volume({
      csi: {
        volumeAttributes: { "storage.kubernetes.io/csiProvisionerIdentity": "driver-set", a: "1" },
      },
    }),
  },
  {
    name: "sets the fsType of a Filesystem volume",
    storageClass: storageClass({ parameters: { [`${P}fstype`]: "xfs" } }),
    want: volume({ csi: { fsType: "xfs" } }),
  },
  {
    name: "sets no fsType on a Block volume, and its volume mode",
    claim: claim({ volumeMode: "Block" }),
    storageClass: storageClass({ parameters: { [`${P}fstype`]: "xfs" } }),
    want: volume({ spec: { volumeMode: "Block" } }),
  },
  {
    name: "copies a Filesystem volume mode",
    claim: claim({ volumeMode: "Filesystem" }),
    config: { defaultFsType: "ext4" },
    want: volume({ spec: { volumeMode: "Filesystem" }, csi: { fsType: "ext4" } }),
  },
  {
    name: "sets readOnly with --controller-publish-readonly when ROX is the only access mode",
    claim: claim({ accessModes: ["ReadOnlyMany"] }),
    config: { controllerPublishReadOnly: true },
    want: volume({ spec: { accessModes: ["ReadOnlyMany"] }, csi: { readOnly: true } }),
  },
  {
    name: "does not set readOnly with more access modes",
    claim: claim({ accessModes: ["ReadOnlyMany", "ReadWriteOnce"] }),
    config: { controllerPublishReadOnly: true },
    want: volume({ spec: { accessModes: ["ReadOnlyMany", "ReadWriteOnce"] } }),
  },
  {
    name: "does not set readOnly without the flag",
    claim: claim({ accessModes: ["ReadOnlyMany"] }),
    want: volume({ spec: { accessModes: ["ReadOnlyMany"] } }),
  },
  {
    name: "references the five secrets and annotates the deletion and modify secrets",
    storageClass: storageClass({
      parameters: {
        [`${P}provisioner-secret-name`]: "prov",
        [`${P}provisioner-secret-namespace`]: "ns",
        [`${P}controller-publish-secret-name`]: "cp",
        [`${P}controller-publish-secret-namespace`]: "ns",
        [`${P}node-stage-secret-name`]: "${pvc.name}-ns",
        [`${P}node-stage-secret-namespace`]: "${pvc.namespace}",
        [`${P}node-publish-secret-name`]: "np",
        [`${P}node-publish-secret-namespace`]: "ns",
        [`${P}controller-expand-secret-name`]: "ce",
        [`${P}controller-expand-secret-namespace`]: "ns",
        [`${P}node-expand-secret-name`]: "ne",
        [`${P}node-expand-secret-namespace`]: "ns",
        [`${P}controller-modify-secret-name`]: "cm",
        [`${P}controller-modify-secret-namespace`]: "ns",
      },
    }),
    world: { secrets: [secret("ns", "prov", { k: "v" })] },
    want: volume({
      metadata: {
        annotations: {
          "pv.kubernetes.io/provisioned-by": DRIVER,
          "volume.kubernetes.io/provisioner-deletion-secret-name": "prov",
          "volume.kubernetes.io/provisioner-deletion-secret-namespace": "ns",
          "volume.kubernetes.io/controller-modify-secret-name": "cm",
          "volume.kubernetes.io/controller-modify-secret-namespace": "ns",
        },
      },
      csi: {
        controllerPublishSecretRef: { name: "cp", namespace: "ns" },
        nodeStageSecretRef: { name: "data-ns", namespace: "apps" },
        nodePublishSecretRef: { name: "np", namespace: "ns" },
        controllerExpandSecretRef: { name: "ce", namespace: "ns" },
        nodeExpandSecretRef: { name: "ne", namespace: "ns" },
      },
    }),
  },
  {
    name: "copies the reclaim policy and leaves the finalizer off a Retain volume",
    storageClass: storageClass({ reclaimPolicy: "Retain" }),
    want: (() => {
      const v = volume({ spec: { persistentVolumeReclaimPolicy: "Retain" } });
      delete v.metadata.finalizers;
      return v;
    })(),
  },
  {
    name: "keeps the finalizer and leaves the policy to the API server when the class has none",
    storageClass: (() => {
      const c = storageClass();
      delete c.reclaimPolicy;
      return c;
    })(),
    want: (() => {
      const v = volume();
      delete v.spec.persistentVolumeReclaimPolicy;
      return v;
    })(),
  },
  {
    name: "copies the class's mount options",
    storageClass: storageClass({ mountOptions: ["noatime"] }),
    want: volume({ spec: { mountOptions: ["noatime"] } }),
  },
  {
    name: "takes storageClassName from the claim's beta annotation",
    claim: claim(
      {},
      {
        annotations: {
          "volume.kubernetes.io/storage-provisioner": DRIVER,
          "volume.beta.kubernetes.io/storage-class": "legacy",
        },
      },
    ),
    want: volume({ spec: { storageClassName: "legacy" } }),
  },
  {
    name: "sets the node affinity from accessible_topology when topology is in use",
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
    response: {
      volume: {
        volumeId: "vol-1",
        capacityBytes: GI,
        accessibleTopology: [{ segments: { [ZONE]: "z1" } }, { segments: { [ZONE]: "z2" } }],
      },
    },
    want: volume({
      spec: {
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: ZONE, operator: "In", values: ["z1"] }] },
              { matchExpressions: [{ key: ZONE, operator: "In", values: ["z2"] }] },
            ],
          },
        },
      },
    }),
  },
  {
    name: "sets no node affinity without topology support",
    response: {
      volume: {
        volumeId: "vol-1",
        capacityBytes: GI,
        accessibleTopology: [{ segments: { [ZONE]: "z1" } }],
      },
    },
    want: volume(),
  },
  {
    name: "sets no node affinity for an empty accessible_topology",
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
    want: volume(),
  },
  {
    name: "sets the VolumeAttributesClass name",
    config: { capabilities: withCapabilities([], [Rpc.MODIFY_VOLUME]) },
    claim: claim({ volumeAttributesClassName: "gold" }),
    world: { vacs: [{ metadata: { name: "gold" }, driverName: DRIVER }] },
    want: volume({ spec: { volumeAttributesClassName: "gold" } }),
  },
];

async function prepare(row: Row): Promise<PreparedRequest> {
  const result = await buildCreateVolumeRequest({
    config: config(row.config),
    claim: row.claim ?? claim(),
    storageClass: row.storageClass ?? storageClass(),
    lookups: lookups(row.world),
    random: () => 0,
  });
  assert.equal(result.kind, "ok", result.kind === "error" ? result.message : result.kind);
  return result as PreparedRequest;
}

function response(row: Row): CreateVolumeResponse {
  return create(
    CreateVolumeResponseSchema,
    row.response ?? { volume: { volumeId: "vol-1", capacityBytes: GI } },
  );
}

describe("buildPersistentVolume()", () => {
  for (const row of ROWS) {
    it(row.name, async () => {
      const cfg = config(row.config);
      const result = buildPersistentVolume({
        claim: row.claim ?? claim(),
        storageClass: row.storageClass ?? storageClass(),
        prepared: await prepare(row),
        response: response(row),
        driverName: DRIVER,
        identity: IDENTITY,
        controllerPublishReadOnly: cfg.controllerPublishReadOnly ?? false,
        ...row.input,
      });
      if (
        "kind" in row.want &&
        (row.want.kind === "tooSmall" || row.want.kind === "contentSourceMissing")
      ) {
        assert.deepEqual(result, row.want);
      } else {
        assert.deepEqual(result, { kind: "ok", volume: row.want });
      }
    });
  }

  describe("for a claim with a data source", () => {
    const cloneClaim = claim({ dataSource: { kind: "PersistentVolumeClaim", name: "src" } });
    async function build(resp: Row["response"], crossNamespace = false, c = cloneClaim) {
      const prep = await prepare({ name: "plain", want: volume() });
      return buildPersistentVolume({
        claim: c,
        storageClass: storageClass(),
        prepared: prep,
        response: create(CreateVolumeResponseSchema, resp ?? {}),
        driverName: DRIVER,
        identity: IDENTITY,
        crossNamespaceVolumeDataSource: crossNamespace,
      });
    }

    it("refuses a volume without content_source", async () => {
      assert.deepEqual(await build({ volume: { volumeId: "vol-1", capacityBytes: GI } }), {
        kind: "contentSourceMissing",
        volumeId: "vol-1",
        message: "volume content source missing",
      });
    });

    it("accepts a volume with content_source", async () => {
      const result = await build({
        volume: {
          volumeId: "vol-1",
          capacityBytes: GI,
          contentSource: { type: { case: "volume", value: { volumeId: "vol-src" } } },
        },
      });
      assert.equal(result.kind, "ok");
    });

    it("checks a cross-namespace dataSourceRef only with the gate", async () => {
      const ref = claim({
        dataSourceRef: { kind: "PersistentVolumeClaim", name: "src", namespace: "other" },
      });
      const resp = { volume: { volumeId: "vol-1", capacityBytes: GI } };
      assert.equal((await build(resp, true, ref)).kind, "contentSourceMissing");
      assert.equal((await build(resp, false, ref)).kind, "ok");
    });

    it("checks the size first", async () => {
      assert.equal(
        (await build({ volume: { volumeId: "vol-1", capacityBytes: 1n } })).kind,
        "tooSmall",
      );
    });
  });
});

describe("volumeBelongsToClaim()", () => {
  it("matches the claimRef's UID, namespace and name", () => {
    const pv = volume();
    assert.equal(volumeBelongsToClaim(pv, claim()), true);
    assert.equal(volumeBelongsToClaim(pv, claim({}, { uid: "other" })), false);
    assert.equal(volumeBelongsToClaim(pv, claim({}, { name: "other" })), false);
    assert.equal(volumeBelongsToClaim(pv, claim({}, { namespace: "other" })), false);
    assert.equal(volumeBelongsToClaim({ ...pv, spec: {} }, claim()), false);
  });
});
