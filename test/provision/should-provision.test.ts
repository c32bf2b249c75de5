import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type {
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
  VolumeAttachment,
} from "../../src/kube/objects.ts";
import {
  attachedMessage,
  blockingAttachment,
  claimProvisionerName,
  claimSelectedNode,
  claimStorageClassName,
  FINALIZER_PV,
  finalizerAction,
  isClaimForDriver,
  isProvisionerForVolume,
  nodeDeploymentDecision,
  shouldDelete,
  shouldProvision,
  volumeNeedsAction,
  volumeStorageClassName,
  withFinalizer,
  withoutFinalizer,
} from "../../src/provision/should-provision.ts";

const DRIVER = "csi.example.com";

function claim(
  annotations: Record<string, string>,
  spec: PersistentVolumeClaim["spec"] = {},
): PersistentVolumeClaim {
  return {
    metadata: { name: "data", namespace: "apps", uid: "u1", annotations },
    spec: { storageClassName: "fast", ...spec },
  };
}

const OURS = { "volume.kubernetes.io/storage-provisioner": DRIVER };
const CLASSES: Record<string, StorageClass> = {
  fast: { metadata: { name: "fast" }, provisioner: DRIVER, volumeBindingMode: "Immediate" },
  late: {
    metadata: { name: "late" },
    provisioner: DRIVER,
    volumeBindingMode: "WaitForFirstConsumer",
  },
  foreign: { metadata: { name: "foreign" }, provisioner: "other.example.com" },
  intree: { metadata: { name: "intree" }, provisioner: "kubernetes.io/gce-pd" },
};
const options = {
  driverName: DRIVER,
  getStorageClass: (name: string) => CLASSES[name],
};

describe("shouldProvision()", () => {
  it("provisions a claim annotated for this driver whose class names it", () => {
    assert.deepEqual(shouldProvision(claim(OURS), options), {
      kind: "provision",
      storageClass: CLASSES.fast,
      storageClassName: "fast",
      selectedNode: undefined,
    });
  });

  it("falls back to the beta storage-provisioner annotation", () => {
    const result = shouldProvision(
      claim({ "volume.beta.kubernetes.io/storage-provisioner": DRIVER }),
      options,
    );
    assert.equal(result.kind, "provision");
  });

  it("does not fall back when the GA annotation names another provisioner", () => {
    const result = shouldProvision(
      claim({
        "volume.kubernetes.io/storage-provisioner": "other",
        "volume.beta.kubernetes.io/storage-provisioner": DRIVER,
      }),
      options,
    );
    assert.equal(result.kind, "skip");
  });

  it("skips a claim without the annotation or for another provisioner", () => {
    assert.equal(shouldProvision(claim({}), options).kind, "skip");
    assert.deepEqual(
      shouldProvision(claim({ "volume.kubernetes.io/storage-provisioner": "x" }), options),
      {
        kind: "skip",
        reason: `Claim apps/data asks for provisioner "x", not ${DRIVER}`,
      },
    );
  });

  it("skips a bound claim", () => {
    assert.deepEqual(shouldProvision(claim(OURS, { volumeName: "pv-1" }), options), {
      kind: "skip",
      reason: "Claim apps/data is already bound to volume pv-1",
    });
  });

  it("reads the class from the beta annotation before spec.storageClassName", () => {
    const result = shouldProvision(
      claim({
        ...OURS,
        "volume.beta.kubernetes.io/storage-class": "late",
        "volume.kubernetes.io/selected-node": "n1",
      }),
      options,
    );
    assert.equal(result.kind === "provision" && result.storageClassName, "late");
  });

  it("waits for a missing StorageClass", () => {
    assert.deepEqual(shouldProvision(claim(OURS, { storageClassName: "gone" }), options), {
      kind: "noStorageClass",
      storageClassName: "gone",
      message: 'Cannot provision claim apps/data: StorageClass "gone" not found',
    });
  });

  it("skips a claim whose class names another provisioner", () => {
    const result = shouldProvision(claim(OURS, { storageClassName: "foreign" }), options);
    assert.equal(result.kind, "skip");
  });

  it("provisions WaitForFirstConsumer claims only once a node is selected", () => {
    assert.equal(shouldProvision(claim(OURS, { storageClassName: "late" }), options).kind, "skip");
    assert.equal(
      shouldProvision(
        claim({ ...OURS, "volume.kubernetes.io/selected-node": "" }, { storageClassName: "late" }),
        options,
      ).kind,
      "skip",
    );
    assert.deepEqual(
      shouldProvision(
        claim(
          { ...OURS, "volume.kubernetes.io/selected-node": "n1" },
          { storageClassName: "late" },
        ),
        options,
      ),
      {
        kind: "provision",
        storageClass: CLASSES.late,
        storageClassName: "late",
        selectedNode: "n1",
      },
    );
  });

  it("takes a migrated claim only with migrated-to naming the driver", () => {
    const migrating = { ...options, additionalProvisionerNames: ["kubernetes.io/gce-pd"] };
    const base = { "volume.kubernetes.io/storage-provisioner": "kubernetes.io/gce-pd" };
    assert.equal(
      shouldProvision(claim(base, { storageClassName: "intree" }), migrating).kind,
      "skip",
    );
    assert.equal(
      shouldProvision(
        claim({ ...base, "pv.kubernetes.io/migrated-to": DRIVER }, { storageClassName: "intree" }),
        migrating,
      ).kind,
      "provision",
    );
  });
});

describe("isClaimForDriver()", () => {
  const inTree = "kubernetes.io/gce-pd";
  it("agrees with shouldProvision() on whose claim it is", () => {
    const cases: [Record<string, string>, boolean][] = [
      [OURS, true],
      [{ "volume.beta.kubernetes.io/storage-provisioner": DRIVER }, true],
      [
        {
          "volume.kubernetes.io/storage-provisioner": "other.example.com",
          "volume.beta.kubernetes.io/storage-provisioner": DRIVER,
        },
        false,
      ],
      [{ "volume.kubernetes.io/storage-provisioner": "other.example.com" }, false],
      [{}, false],
      [{ "volume.kubernetes.io/storage-provisioner": inTree }, false],
      [
        {
          "volume.kubernetes.io/storage-provisioner": inTree,
          "pv.kubernetes.io/migrated-to": DRIVER,
        },
        true,
      ],
      [
        {
          "volume.kubernetes.io/storage-provisioner": inTree,
          "pv.kubernetes.io/migrated-to": "other.example.com",
        },
        false,
      ],
    ];
    const migrating = { ...options, additionalProvisionerNames: [inTree] };
    for (const [annotations, ours] of cases) {
      const c = claim(annotations, { storageClassName: "fast" });
      assert.equal(isClaimForDriver(c, DRIVER, [inTree]), ours, JSON.stringify(annotations));
      assert.equal(
        shouldProvision(c, migrating).kind !== "skip",
        ours,
        JSON.stringify(annotations),
      );
    }
    // Without the additional name, a migrated claim is not this driver's.
    const migrated = claim({
      "volume.kubernetes.io/storage-provisioner": inTree,
      "pv.kubernetes.io/migrated-to": DRIVER,
    });
    assert.equal(isClaimForDriver(migrated, DRIVER), false);
    assert.equal(isClaimForDriver({ metadata: { name: "bare" }, spec: {} }, DRIVER), false);
  });
});

describe("claim helpers", () => {
  it("read the provisioner, class and selected node", () => {
    assert.equal(claimProvisionerName(claim({})), undefined);
    assert.equal(
      claimProvisionerName(claim({ "volume.kubernetes.io/storage-provisioner": "" })),
      "",
    );
    assert.equal(claimStorageClassName(claim({}, { storageClassName: null })), "");
    assert.equal(
      claimStorageClassName(claim({ "volume.beta.kubernetes.io/storage-class": "" })),
      "",
    );
    assert.equal(
      claimSelectedNode(claim({ "volume.alpha.kubernetes.io/selected-node": "old" })),
      "old",
    );
    assert.equal(
      claimSelectedNode(
        claim({
          "volume.kubernetes.io/selected-node": "new",
          "volume.alpha.kubernetes.io/selected-node": "old",
        }),
      ),
      "new",
    );
    assert.equal(claimSelectedNode(claim({})), undefined);
  });
});

describe("nodeDeploymentDecision()", () => {
  const opts = { nodeName: "n1", immediateBinding: true };
  it("provisions claims that selected this node and ignores other nodes'", () => {
    const cls = CLASSES.fast!;
    assert.equal(
      nodeDeploymentDecision(claim({ "volume.kubernetes.io/selected-node": "n1" }), cls, opts),
      "provision",
    );
    assert.equal(
      nodeDeploymentDecision(claim({ "volume.kubernetes.io/selected-node": "n2" }), cls, opts),
      "ignore",
    );
  });

  it("tries to become the owner of an Immediate claim only with --node-deployment-immediate-binding", () => {
    assert.equal(nodeDeploymentDecision(claim({}), CLASSES.fast!, opts), "becomeOwner");
    assert.equal(
      nodeDeploymentDecision(claim({}), CLASSES.fast!, { ...opts, immediateBinding: false }),
      "ignore",
    );
    assert.equal(nodeDeploymentDecision(claim({}), CLASSES.late!, opts), "ignore");
  });
});

function pv(
  overrides: {
    annotations?: Record<string, string>;
    finalizers?: string[];
    deletionTimestamp?: string;
    phase?: NonNullable<PersistentVolume["status"]>["phase"];
    policy?: PersistentVolume["spec"]["persistentVolumeReclaimPolicy"];
    csiDriver?: string;
  } = {},
): PersistentVolume {
  return {
    metadata: {
      name: "pvc-u1",
      ...(overrides.annotations ? { annotations: overrides.annotations } : {}),
      ...(overrides.finalizers ? { finalizers: overrides.finalizers } : {}),
      ...(overrides.deletionTimestamp ? { deletionTimestamp: overrides.deletionTimestamp } : {}),
    },
    spec: {
      ...(overrides.policy ? { persistentVolumeReclaimPolicy: overrides.policy } : {}),
      ...(overrides.csiDriver ? { csi: { driver: overrides.csiDriver, volumeHandle: "v" } } : {}),
    },
    status: { phase: overrides.phase ?? "Bound" },
  };
}

describe("isProvisionerForVolume()", () => {
  const known = [DRIVER, "kubernetes.io/gce-pd"];
  it("owns PVs provisioned by a known name", () => {
    assert.equal(
      isProvisionerForVolume(
        pv({ annotations: { "pv.kubernetes.io/provisioned-by": DRIVER } }),
        known,
      ),
      true,
    );
    assert.equal(
      isProvisionerForVolume(
        pv({ annotations: { "pv.kubernetes.io/provisioned-by": "x" } }),
        known,
      ),
      false,
    );
  });

  it("owns PVs migrated to a known name", () => {
    assert.equal(
      isProvisionerForVolume(
        pv({
          annotations: {
            "pv.kubernetes.io/provisioned-by": "x",
            "pv.kubernetes.io/migrated-to": DRIVER,
          },
        }),
        known,
      ),
      true,
    );
  });

  it("owns static CSI PVs of a known driver", () => {
    assert.equal(isProvisionerForVolume(pv({ csiDriver: DRIVER }), known), true);
    assert.equal(isProvisionerForVolume(pv({ csiDriver: "x" }), known), false);
    // provisioned-by wins over the CSI driver
    assert.equal(
      isProvisionerForVolume(
        pv({ csiDriver: DRIVER, annotations: { "pv.kubernetes.io/provisioned-by": "x" } }),
        known,
      ),
      false,
    );
  });

  it("owns non-CSI static PVs only by migrated-to", () => {
    assert.equal(isProvisionerForVolume(pv(), known), false);
    assert.equal(
      isProvisionerForVolume(
        pv({ annotations: { "pv.kubernetes.io/migrated-to": DRIVER } }),
        known,
      ),
      true,
    );
  });
});

describe("finalizerAction()", () => {
  it("adds the finalizer to a Bound PV with reclaim Delete", () => {
    assert.equal(finalizerAction(pv({ policy: "Delete" })), "add");
  });

  it("does not add it twice, to a PV being deleted, or before it is Bound", () => {
    assert.equal(finalizerAction(pv({ policy: "Delete", finalizers: [FINALIZER_PV] })), "none");
    assert.equal(
      finalizerAction(pv({ policy: "Delete", deletionTimestamp: "2026-01-01T00:00:00Z" })),
      "none",
    );
    assert.equal(finalizerAction(pv({ policy: "Delete", phase: "Released" })), "none");
    assert.equal(finalizerAction(pv({ policy: "Delete", phase: "Available" })), "none");
  });

  it("removes it with reclaim Retain or Recycle", () => {
    assert.equal(
      finalizerAction(pv({ policy: "Retain", finalizers: ["a", FINALIZER_PV] })),
      "remove",
    );
    assert.equal(finalizerAction(pv({ policy: "Recycle", finalizers: [FINALIZER_PV] })), "remove");
    assert.equal(finalizerAction(pv({ policy: "Retain" })), "none");
  });

  it("edits finalizer lists", () => {
    assert.deepEqual(withFinalizer(["a"]), ["a", FINALIZER_PV]);
    assert.deepEqual(withFinalizer([FINALIZER_PV]), [FINALIZER_PV]);
    assert.deepEqual(withoutFinalizer(["a", FINALIZER_PV]), ["a"]);
    assert.deepEqual(withoutFinalizer(undefined), []);
  });
});

describe("shouldDelete()", () => {
  it("deletes Released PVs with reclaim Delete", () => {
    assert.equal(shouldDelete(pv({ phase: "Released", policy: "Delete" })), true);
    assert.equal(
      shouldDelete(
        pv({
          phase: "Released",
          policy: "Delete",
          finalizers: [FINALIZER_PV],
          deletionTimestamp: "t",
        }),
      ),
      true,
    );
  });

  it("keeps other phases and policies", () => {
    assert.equal(shouldDelete(pv({ phase: "Bound", policy: "Delete" })), false);
    assert.equal(shouldDelete(pv({ phase: "Failed", policy: "Delete" })), false);
    assert.equal(shouldDelete(pv({ phase: "Released", policy: "Retain" })), false);
  });

  it("skips a PV being deleted whose finalizer is already gone", () => {
    assert.equal(
      shouldDelete(pv({ phase: "Released", policy: "Delete", deletionTimestamp: "t" })),
      false,
    );
  });
});

describe("volumeNeedsAction()", () => {
  const ours = { "pv.kubernetes.io/provisioned-by": DRIVER };
  it("is true for this driver's PVs whose finalizer must change or whose volume must go", () => {
    assert.equal(volumeNeedsAction(pv({ annotations: ours, policy: "Delete" }), [DRIVER]), true);
    assert.equal(
      volumeNeedsAction(pv({ annotations: ours, policy: "Retain", finalizers: [FINALIZER_PV] }), [
        DRIVER,
      ]),
      true,
    );
    assert.equal(
      volumeNeedsAction(
        pv({ annotations: ours, policy: "Delete", phase: "Released", finalizers: [FINALIZER_PV] }),
        [DRIVER],
      ),
      true,
    );
  });

  it("is false for a Bound PV with its finalizer, a Retain PV without it, and other drivers' PVs", () => {
    assert.equal(
      volumeNeedsAction(pv({ annotations: ours, policy: "Delete", finalizers: [FINALIZER_PV] }), [
        DRIVER,
      ]),
      false,
    );
    assert.equal(volumeNeedsAction(pv({ annotations: ours, policy: "Retain" }), [DRIVER]), false);
    assert.equal(
      volumeNeedsAction(
        pv({
          annotations: { "pv.kubernetes.io/provisioned-by": "other.example.com" },
          policy: "Delete",
          phase: "Released",
        }),
        [DRIVER],
      ),
      false,
    );
  });
});

describe("blockingAttachment()", () => {
  const va = (pvName: string, nodeName: string): VolumeAttachment => ({
    metadata: { name: `va-${pvName}` },
    spec: { attacher: DRIVER, nodeName, source: { persistentVolumeName: pvName } },
  });

  it("finds a VolumeAttachment of the PV", () => {
    const found = blockingAttachment("pv-1", [va("pv-2", "n2"), va("pv-1", "n1")]);
    assert.equal(found?.metadata.name, "va-pv-1");
    assert.equal(
      attachedMessage("pv-1", found!),
      "persistentvolume pv-1 is still attached to node n1",
    );
    assert.equal(blockingAttachment("pv-3", [va("pv-1", "n1")]), undefined);
  });
});

describe("volumeStorageClassName()", () => {
  it("reads the beta annotation first", () => {
    const v = pv({ annotations: { "volume.beta.kubernetes.io/storage-class": "old" } });
    v.spec.storageClassName = "new";
    assert.equal(volumeStorageClassName(v), "old");
    assert.equal(volumeStorageClassName({ ...v, metadata: { name: "x" } }), "new");
  });
});
