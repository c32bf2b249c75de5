import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { vsphereVolume } from "../../src/migration/vsphere-volume.ts";
import { csiVolume, inTreeVolume, nodeTerm, storageClass, value, zoneTerm } from "./support.ts";

const ZONE_KEY = "topology.csi.vmware.com/zone";
const REGION_KEY = "topology.csi.vmware.com/region";
const ZONE = "topology.kubernetes.io/zone";
const REGION = "topology.kubernetes.io/region";

describe("vsphere-volume StorageClass translation", () => {
  it("known parameters mapped, unknown dropped, csimigration added", () => {
    const sc = value(
      vsphereVolume.translateClass(
        storageClass("kubernetes.io/vsphere-volume", {
          fstype: "ext4",
          storagePolicyName: "gold",
          datastore: "ds1",
          diskformat: "thin",
          hostFailuresToTolerate: "1",
          forceProvisioning: "true",
          cacheReservation: "10",
          diskStripes: "2",
          objectSpaceReservation: "30",
          iopsLimit: "100",
          unknownparam: "x",
          "csi.storage.k8s.io/provisioner-secret-name": "dropped",
        }),
      ),
    );
    assert.deepEqual(sc.parameters, {
      "csi.storage.k8s.io/fstype": "ext4",
      storagepolicyname: "gold",
      "datastore-migrationparam": "ds1",
      "diskformat-migrationparam": "thin",
      "hostfailurestotolerate-migrationparam": "1",
      "forceprovisioning-migrationparam": "true",
      "cachereservation-migrationparam": "10",
      "diskstripes-migrationparam": "2",
      "objectspacereservation-migrationparam": "30",
      "iopslimit-migrationparam": "100",
      csimigration: "true",
    });
  });

  it("zone allowed topologies → topology.csi.vmware.com/zone", () => {
    const sc = value(
      vsphereVolume.translateClass(
        storageClass("kubernetes.io/vsphere-volume", undefined, [zoneTerm(ZONE, "z1")]),
      ),
    );
    assert.deepEqual(sc.allowedTopologies, [zoneTerm(ZONE_KEY, "z1")]);
    assert.deepEqual(sc.parameters, { csimigration: "true" });
  });
});

describe("vsphere-volume PV", () => {
  it("to in-tree: volumePath from initialvolumefilepath; zone and region labels (first value)", () => {
    const pv = value(
      vsphereVolume.toInTree(
        csiVolume(
          {
            driver: "csi.vmware.vsphere.com",
            volumeHandle: "fcd-1",
            fsType: "ext4",
            volumeAttributes: {
              initialvolumefilepath: "[ds1] kubevols/pvc-1.vmdk",
              type: "vSphere CNS Block Volume",
            },
          },
          { terms: [nodeTerm([ZONE_KEY, ["z2", "z1"]], [REGION_KEY, ["r1"]])] },
        ),
      ),
    );
    assert.deepEqual(pv.spec.vsphereVolume, {
      volumePath: "[ds1] kubevols/pvc-1.vmdk",
      fsType: "ext4",
    });
    assert.deepEqual(pv.spec.nodeAffinity?.required?.nodeSelectorTerms, [
      nodeTerm([ZONE, ["z2", "z1"]], [REGION, ["r1"]]),
    ]);
    assert.deepEqual(pv.metadata.labels, { [ZONE]: "z1", [REGION]: "r1" });
  });

  it("to in-tree without the path attribute: an empty volumePath (the API rejects it)", () => {
    const pv = value(
      vsphereVolume.toInTree(csiVolume({ driver: "csi.vsphere.vmware.com", volumeHandle: "x" })),
    );
    assert.deepEqual(pv.spec.vsphereVolume, { volumePath: "" });
  });

  it("to CSI: the handle is the volume path; the storage policy an attribute", () => {
    const source = value(
      vsphereVolume.toCsi(
        inTreeVolume("vsphereVolume", {
          volumePath: "[ds1] a.vmdk",
          fsType: "ext4",
          storagePolicyName: "gold",
        }),
      ),
    );
    assert.deepEqual(source, {
      driver: "csi.vsphere.vmware.com",
      volumeHandle: "[ds1] a.vmdk",
      fsType: "ext4",
      volumeAttributes: { storagepolicyname: "gold" },
    });
  });
});

describe("vsphere-volume PV node affinity in the driver's keys (node deployment)", () => {
  it("zone and region keys renamed, or added from the labels", () => {
    const renamed = inTreeVolume("vsphereVolume", { volumePath: "p" });
    renamed.spec.nodeAffinity = {
      required: { nodeSelectorTerms: [nodeTerm([ZONE, ["z1"]], [REGION, ["r1"]])] },
    };
    assert.deepEqual(vsphereVolume.nodeAffinityToCsi!(renamed)?.required?.nodeSelectorTerms, [
      nodeTerm([ZONE_KEY, ["z1"]], [REGION_KEY, ["r1"]]),
    ]);
    const added = inTreeVolume(
      "vsphereVolume",
      { volumePath: "p" },
      { labels: { [ZONE]: "z1", [REGION]: "r1" } },
    );
    assert.deepEqual(vsphereVolume.nodeAffinityToCsi!(added)?.required?.nodeSelectorTerms, [
      nodeTerm([ZONE_KEY, ["z1"]], [REGION_KEY, ["r1"]]),
    ]);
  });
});
