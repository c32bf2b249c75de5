import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { toJson } from "@bufbuild/protobuf";
import { VolumeContentSourceSchema } from "../../src/gen/csi/v1/csi_pb.js";
import type { PersistentVolume, PersistentVolumeClaim } from "../../src/kube/objects.ts";
import {
  checkReferenceGrant,
  claimDataSource,
  cloneContentSource,
  type DataSource,
  type ReferenceGrant,
  snapshotContentSource,
} from "../../src/provision/data-source.ts";
import { claim, cloneSource, snapshotSource, storageClass } from "./fixtures.ts";

describe("claimDataSource()", () => {
  it("reads spec.dataSource in the claim's namespace", () => {
    assert.deepEqual(
      claimDataSource(claim({ dataSource: { kind: "PersistentVolumeClaim", name: "src" } })),
      { kind: "PersistentVolumeClaim", name: "src", apiGroup: "", namespace: "apps" },
    );
  });

  it("falls back to spec.dataSourceRef", () => {
    assert.deepEqual(
      claimDataSource(
        claim({
          dataSourceRef: { apiGroup: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: "s" },
        }),
      ),
      { kind: "VolumeSnapshot", name: "s", apiGroup: "snapshot.storage.k8s.io", namespace: "apps" },
    );
  });

  it("is undefined without a data source", () => {
    assert.equal(claimDataSource(claim()), undefined);
  });

  it("needs the CrossNamespaceVolumeDataSource gate for a dataSourceRef namespace", () => {
    const c = claim({
      dataSourceRef: { kind: "PersistentVolumeClaim", name: "src", namespace: "other" },
    });
    assert.throws(() => claimDataSource(c), /CrossNamespaceVolumeDataSource feature is disabled/);
    assert.deepEqual(claimDataSource(c, true), {
      kind: "PersistentVolumeClaim",
      name: "src",
      apiGroup: "",
      namespace: "other",
    });
  });
});

describe("checkReferenceGrant()", () => {
  const source: DataSource = {
    kind: "VolumeSnapshot",
    name: "s",
    apiGroup: "snapshot.storage.k8s.io",
    namespace: "other",
  };
  const grant = (
    to: ReferenceGrant["spec"]["to"],
    from = [{ group: "", kind: "PersistentVolumeClaim", namespace: "apps" }],
  ): ReferenceGrant => ({
    metadata: { name: "g", namespace: "other" },
    spec: { from, to },
  });

  it("accepts a grant from the claim's namespace to the source's kind, any name or its name", () => {
    checkReferenceGrant(claim(), source, [
      grant([{ group: "snapshot.storage.k8s.io", kind: "VolumeSnapshot" }]),
    ]);
    checkReferenceGrant(claim(), source, [
      grant([{ group: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: "s" }]),
    ]);
  });

  it("rejects grants that do not match", () => {
    const message = /accessing other\/s of VolumeSnapshot dataSource from apps\/data isn't allowed/;
    assert.throws(() => checkReferenceGrant(claim(), source, []), message);
    assert.throws(
      () =>
        checkReferenceGrant(claim(), source, [
          grant([{ group: "snapshot.storage.k8s.io", kind: "VolumeSnapshot", name: "t" }]),
        ]),
      message,
    );
    assert.throws(
      () => checkReferenceGrant(claim(), source, [grant([{ group: "", kind: "VolumeSnapshot" }])]),
      message,
    );
    assert.throws(
      () =>
        checkReferenceGrant(claim(), source, [
          grant(
            [{ group: "snapshot.storage.k8s.io", kind: "VolumeSnapshot" }],
            [{ group: "", kind: "PersistentVolumeClaim", namespace: "elsewhere" }],
          ),
        ]),
      message,
    );
  });
});

describe("cloneContentSource()", () => {
  const source: DataSource = {
    kind: "PersistentVolumeClaim",
    name: "src",
    apiGroup: "",
    namespace: "apps",
  };
  const target = claim({ dataSource: { kind: "PersistentVolumeClaim", name: "src" } });

  function clone(
    mutate: (world: {
      claims: PersistentVolumeClaim[];
      volumes: PersistentVolume[];
    }) => void = () => {},
    newClaim = target,
  ) {
    const world = cloneSource();
    mutate(world);
    return () =>
      cloneContentSource({
        claim: newClaim,
        storageClass: storageClass(),
        source,
        sourceClaim: world.claims[0],
        sourceVolume: world.volumes[0],
      });
  }

  it("uses the source volume's handle", () => {
    assert.deepEqual(toJson(VolumeContentSourceSchema, clone()()), {
      volume: { volumeId: "vol-src" },
    });
  });

  it("accepts a larger clone and matching Block modes", () => {
    clone(() => {}, claim({ resources: { requests: { storage: "2Gi" } } }))();
    clone(
      (w) => {
        w.volumes[0]!.spec.volumeMode = "Block";
      },
      claim({ volumeMode: "Block" }),
    )();
  });

  const rules: [
    string,
    (w: { claims: PersistentVolumeClaim[]; volumes: PersistentVolume[] }) => void,
    RegExp,
    PersistentVolumeClaim?,
  ][] = [
    [
      "a missing source claim",
      (w) => w.claims.pop(),
      /error getting PVC src \(namespace "apps"\) from api server: persistentvolumeclaim "src" not found$/,
    ],
    [
      "a source claim that is not Bound",
      (w) => (w.claims[0]!.status = { phase: "Pending" }),
      /must have a status of Bound, got "Pending"/,
    ],
    [
      "a source claim being deleted",
      (w) => (w.claims[0]!.metadata.deletionTimestamp = "2026-01-01T00:00:00Z"),
      /is currently being deleted/,
    ],
    [
      "a source claim without storageClassName",
      (w) => delete w.claims[0]!.spec.storageClassName,
      /the source PVC \(src\) storageclass cannot be empty/,
    ],
    [
      "a new claim without storageClassName",
      () => {},
      /the requested PVC \(data\) storageclass cannot be empty/,
      claim({ storageClassName: null }),
    ],
    [
      "a clone smaller than its source",
      (w) => (w.claims[0]!.spec.resources = { requests: { storage: "2Gi" } }),
      /requested 1073741824 but source is 2147483648/,
    ],
    [
      "a source claim without volume",
      (w) => delete w.claims[0]!.spec.volumeName,
      /volume name is empty in source PVC src/,
    ],
    [
      "a missing source volume",
      (w) => w.volumes.pop(),
      /not bound or invalid: volume pv-src not found/,
    ],
    [
      "a source volume that is not CSI",
      (w) => delete w.volumes[0]!.spec.csi,
      /not bound or invalid: volume pv-src is not a CSI volume/,
    ],
    [
      "a source volume of another driver",
      (w) => (w.volumes[0]!.spec.csi!.driver = "other"),
      /belongs to driver other, not test.csi.example.com/,
    ],
    [
      "a source volume without claimRef",
      (w) => delete w.volumes[0]!.spec.claimRef,
      /volume pv-src is not bound/,
    ],
    [
      "a source volume bound to another claim UID",
      (w) => (w.volumes[0]!.spec.claimRef!.uid = "x"),
      /bound to another claim/,
    ],
    [
      "a source volume bound to another claim name",
      (w) => (w.volumes[0]!.spec.claimRef!.name = "x"),
      /bound to another claim/,
    ],
    [
      "a source volume that is not Bound",
      (w) => (w.volumes[0]!.status = { phase: "Released" }),
      /in phase "Released", not Bound/,
    ],
    [
      "a Block source for a Filesystem clone",
      (w) => (w.volumes[0]!.spec.volumeMode = "Block"),
      /source is Block, but new PVC requested Filesystem/,
    ],
    [
      "a Filesystem source for a Block clone",
      () => {},
      /source is Filesystem, but new PVC requested Block/,
      claim({ volumeMode: "Block" }),
    ],
  ];
  for (const [what, mutate, message, newClaim] of rules) {
    it(`rejects ${what}`, () => {
      assert.throws(clone(mutate, newClaim ?? target), message);
    });
  }
});

describe("snapshotContentSource()", () => {
  const source: DataSource = {
    kind: "VolumeSnapshot",
    name: "snap",
    apiGroup: "snapshot.storage.k8s.io",
    namespace: "apps",
  };

  function restore(
    world = snapshotSource(),
    newClaim = claim(),
    preventVolumeModeConversion = true,
  ) {
    return snapshotContentSource({
      claim: newClaim,
      storageClass: storageClass(),
      source,
      snapshot: world.snapshots[0],
      content: world.contents[0],
      preventVolumeModeConversion,
    });
  }

  it("uses the content's snapshot handle", () => {
    const result = restore();
    assert.deepEqual(toJson(VolumeContentSourceSchema, result.contentSource), {
      snapshot: { snapshotId: "snap-handle" },
    });
    assert.equal(result.warning, undefined);
  });

  it("warns when the claim is larger than the restore size", () => {
    const result = restore(
      snapshotSource(),
      claim({ resources: { requests: { storage: "2Gi" } } }),
    );
    assert.match(
      result.warning!,
      /requested volume size 2147483648 is greater than the size 1073741824/,
    );
  });

  it("continues with a snapshot being deleted that carries our source-protection finalizer", () => {
    restore(
      snapshotSource({
        snapshot: {
          deletionTimestamp: "2026-01-01T00:00:00Z",
          finalizers: ["provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection"],
        },
      }),
    );
  });

  it("allows a mode change with the annotation, or without the prevention flag", () => {
    const block = claim({ volumeMode: "Block" });
    const changed = { content: { sourceVolumeMode: "Filesystem" as const } };
    restore(
      snapshotSource({
        ...changed,
        contentAnnotations: { "snapshot.storage.kubernetes.io/allow-volume-mode-change": "true" },
      }),
      block,
    );
    restore(snapshotSource(changed), block, false);
    restore(snapshotSource({ content: { sourceVolumeMode: "Block" } }), block);
  });

  const rules: [
    string,
    ReturnType<typeof snapshotSource> | "missing",
    RegExp,
    PersistentVolumeClaim?,
  ][] = [
    [
      "a missing snapshot",
      "missing",
      /error getting snapshot snap from api server: volumesnapshots.snapshot.storage.k8s.io "snap" not found$/,
    ],
    [
      "a snapshot being deleted",
      snapshotSource({ snapshot: { deletionTimestamp: "2026-01-01T00:00:00Z" } }),
      /snapshot snap is being deleted/,
    ],
    [
      "an unbound snapshot",
      snapshotSource({ status: { boundVolumeSnapshotContentName: undefined } }),
      /snapshot snap not bound: no bound VolumeSnapshotContent/,
    ],
    [
      "a content bound to another snapshot",
      snapshotSource({
        content: { volumeSnapshotRef: { name: "snap", namespace: "apps", uid: "other" } },
      }),
      /snapshot snap not bound: VolumeSnapshotContent snapcontent-1 is bound to another snapshot/,
    ],
    [
      "a content of another driver",
      snapshotSource({ content: { driver: "other" } }),
      /belongs to driver other, not test.csi.example.com/,
    ],
    [
      "a snapshot that is not ready",
      snapshotSource({ status: { readyToUse: false } }),
      /snapshot snap is not Ready/,
    ],
    [
      "a content without handle",
      snapshotSource({ contentStatus: null }),
      /snapshot handle snap is not available/,
    ],
    [
      "a claim smaller than the restore size",
      snapshotSource({ status: { restoreSize: "2Gi" } }),
      /requested volume size 1073741824 is less than the size 2147483648/,
    ],
    [
      "a claim without size when the snapshot has one",
      snapshotSource(),
      /error getting capacity for PVC data/,
      claim({ resources: {} }),
    ],
    [
      "a mode change without the annotation",
      snapshotSource({ content: { sourceVolumeMode: "Filesystem" } }),
      /requested volume apps\/data modifies the mode of the source volume but does not have permission to do so\. snapshot.storage.kubernetes.io\/allow-volume-mode-change annotation is not present on snapshotcontent snapcontent-1/,
      claim({ volumeMode: "Block" }),
    ],
    [
      "a mode change the annotation forbids",
      snapshotSource({
        content: { sourceVolumeMode: "Filesystem" },
        contentAnnotations: { "snapshot.storage.kubernetes.io/allow-volume-mode-change": "False" },
      }),
      /is set to false on snapshotcontent snapcontent-1/,
      claim({ volumeMode: "Block" }),
    ],
    [
      "a mode change annotation that is not a boolean",
      snapshotSource({
        content: { sourceVolumeMode: "Filesystem" },
        contentAnnotations: { "snapshot.storage.kubernetes.io/allow-volume-mode-change": "yes" },
      }),
      /do so\. failed to convert snapshot.storage.kubernetes.io\/allow-volume-mode-change annotation value to boolean with error: strconv.ParseBool: parsing "yes": invalid syntax$/,
      claim({ volumeMode: "Block" }),
    ],
  ];
  for (const [what, world, message, newClaim] of rules) {
    it(`rejects ${what}`, () => {
      const w = world === "missing" ? { snapshots: [], contents: [] } : world;
      assert.throws(() => restore(w, newClaim ?? claim()), message);
    });
  }

  it("rejects a missing content", () => {
    const w = snapshotSource();
    assert.throws(
      () => restore({ snapshots: w.snapshots, contents: [] }),
      /VolumeSnapshotContent snapcontent-1 not found/,
    );
  });
});
