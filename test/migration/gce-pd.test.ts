import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gcePd, gceRegionFromZones, pdNameFromHandle } from "../../src/migration/gce-pd.ts";
import {
  csiVolume,
  error,
  inTreeVolume,
  nodeTerm,
  storageClass,
  value,
  zoneTerm,
} from "./support.ts";

const KEY = "topology.gke.io/zone";
const ZONE = "topology.kubernetes.io/zone";
const REGION = "topology.kubernetes.io/region";
const BETA_ZONE = "failure-domain.beta.kubernetes.io/zone";
const HANDLE = "projects/p1/zones/us-central1-a/disks/pvc-1";
const csi = (handle: string, extra: object = {}) => ({
  driver: "pd.csi.storage.gke.io",
  volumeHandle: handle,
  ...extra,
});

describe("gce-pd StorageClass translation", () => {
  it("fstype → csi.storage.k8s.io/fstype, type and replication-type stay", () => {
    const sc = value(
      gcePd.translateClass(
        storageClass("kubernetes.io/gce-pd", {
          type: "pd-ssd",
          fstype: "ext4",
          "replication-type": "none",
        }),
      ),
    );
    assert.deepEqual(sc.parameters, {
      type: "pd-ssd",
      "csi.storage.k8s.io/fstype": "ext4",
      "replication-type": "none",
    });
  });

  it("zone / zones → allowed topologies of topology.gke.io/zone", () => {
    const one = value(
      gcePd.translateClass(storageClass("kubernetes.io/gce-pd", { zone: "us-central1-a" })),
    );
    assert.deepEqual(one.allowedTopologies, [zoneTerm(KEY, "us-central1-a")]);
    const two = value(
      gcePd.translateClass(
        storageClass("kubernetes.io/gce-pd", { zones: "us-central1-a,us-central1-b" }),
      ),
    );
    assert.deepEqual(two.allowedTopologies, [zoneTerm(KEY, "us-central1-a", "us-central1-b")]);
    assert.deepEqual(two.parameters, {});
  });

  it("zone allowed topologies → topology.gke.io/zone", () => {
    const sc = value(
      gcePd.translateClass(
        storageClass("kubernetes.io/gce-pd", {}, [zoneTerm(BETA_ZONE, "us-central1-a")]),
      ),
    );
    assert.deepEqual(sc.allowedTopologies, [zoneTerm(KEY, "us-central1-a")]);
  });

  it("zones next to allowed topologies is upstream's error", () => {
    const result = gcePd.translateClass(
      storageClass("kubernetes.io/gce-pd", { zones: "a,b" }, [zoneTerm(ZONE, "a")]),
    );
    assert.equal(
      error(result),
      "cannot simultaneously set allowed topologies and zone/zones parameters",
    );
  });
});

describe("gce-pd PV to in-tree", () => {
  it("pdName is the handle's disk, zone and region labels from the driver's zone", () => {
    const pv = value(
      gcePd.toInTree(
        csiVolume(csi(HANDLE, { fsType: "ext4" }), { terms: [nodeTerm([KEY, ["us-central1-a"]])] }),
      ),
    );
    assert.deepEqual(pv.spec.gcePersistentDisk, { pdName: "pvc-1", fsType: "ext4" });
    assert.equal(pv.spec.csi, undefined);
    assert.deepEqual(pv.spec.nodeAffinity?.required?.nodeSelectorTerms, [
      nodeTerm([ZONE, ["us-central1-a"]], [REGION, ["us-central1"]]),
    ]);
    assert.deepEqual(pv.metadata.labels, { [REGION]: "us-central1", [ZONE]: "us-central1-a" });
  });

  it("an empty partition attribute is no partition; a number is", () => {
    const none = value(
      gcePd.toInTree(csiVolume(csi(HANDLE, { volumeAttributes: { partition: "" } }))),
    );
    assert.deepEqual(none.spec.gcePersistentDisk, { pdName: "pvc-1" });
    const two = value(
      gcePd.toInTree(csiVolume(csi(HANDLE, { volumeAttributes: { partition: "2" } }))),
    );
    assert.deepEqual(two.spec.gcePersistentDisk, { pdName: "pvc-1", partition: 2 });
  });

  it("a handle of another shape is upstream's error", () => {
    const result = gcePd.toInTree(csiVolume(csi("0f1e2d3c-uuid")));
    assert.equal(
      error(result),
      "failed to get id components.Got: 1, wanted 6 components or more. ",
    );
  });

  it("a zone of another shape cannot be translated", () => {
    const result = gcePd.toInTree(csiVolume(csi(HANDLE), { terms: [nodeTerm([KEY, ["zone1"]])] }));
    assert.match(
      error(result),
      /Failed to handle region topology\. error: zone in unexpected format, expected: \{locale\}-\{region\}-\{zone\}, got: zone1$/,
    );
  });

  it("pdNameFromHandle() reads regional handles too", () => {
    assert.equal(value(pdNameFromHandle("projects/p/regions/us-central1/disks/d")), "d");
  });

  it("gceRegionFromZones() rejects zones of two regions", () => {
    assert.equal(
      error(gceRegionFromZones(["us-central1-a", "europe-west1-b"])),
      "multiple or no regions gotten from zones, got: map[europe-west1:{} us-central1:{}]",
    );
  });
});

describe("gce-pd PV to CSI (deletion)", () => {
  const handle = (labels?: Record<string, string>) =>
    value(
      gcePd.toCsi(inTreeVolume("gcePersistentDisk", { pdName: "d1", fsType: "ext4" }, { labels })),
    ).volumeHandle;

  it("one zone label → a zonal handle of project UNSPECIFIED", () => {
    assert.equal(
      handle({ [ZONE]: "us-central1-a" }),
      "projects/UNSPECIFIED/zones/us-central1-a/disks/d1",
    );
    assert.equal(
      handle({ [BETA_ZONE]: "us-central1-b" }),
      "projects/UNSPECIFIED/zones/us-central1-b/disks/d1",
    );
  });

  it("several zones → a regional handle", () => {
    assert.equal(
      handle({ [ZONE]: "us-central1-a__us-central1-b" }),
      "projects/UNSPECIFIED/regions/us-central1/disks/d1",
    );
  });

  it("no zone → zone UNSPECIFIED", () => {
    assert.equal(handle(), "projects/UNSPECIFIED/zones/UNSPECIFIED/disks/d1");
  });

  it("the CSI source has the fsType and the partition attribute", () => {
    const source = value(
      gcePd.toCsi(inTreeVolume("gcePersistentDisk", { pdName: "d1", partition: 1 })),
    );
    assert.deepEqual(source, {
      driver: "pd.csi.storage.gke.io",
      volumeHandle: "projects/UNSPECIFIED/zones/UNSPECIFIED/disks/d1",
      volumeAttributes: { partition: "1" },
    });
  });
});
