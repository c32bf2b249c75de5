import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { cinder } from "../../src/migration/cinder.ts";
import {
  csiVolume,
  error,
  inTreeVolume,
  nodeTerm,
  storageClass,
  value,
  zoneTerm,
} from "./support.ts";

const KEY = "topology.cinder.csi.openstack.org/zone";
const ZONE = "topology.kubernetes.io/zone";

describe("cinder StorageClass translation", () => {
  it("fstype → csi.storage.k8s.io/fstype; availability and type stay parameters", () => {
    const sc = value(
      cinder.translateClass(
        storageClass("kubernetes.io/cinder", { type: "ssd", availability: "nova", fsType: "xfs" }),
      ),
    );
    assert.deepEqual(sc.parameters, {
      type: "ssd",
      availability: "nova",
      "csi.storage.k8s.io/fstype": "xfs",
    });
    assert.equal(sc.allowedTopologies, undefined);
  });

  it("zone allowed topologies → the driver's zone key", () => {
    const sc = value(
      cinder.translateClass(
        storageClass("kubernetes.io/cinder", undefined, [zoneTerm(ZONE, "nova")]),
      ),
    );
    assert.deepEqual(sc.allowedTopologies, [zoneTerm(KEY, "nova")]);
    assert.deepEqual(sc.parameters, {});
  });
});

describe("cinder PV to in-tree", () => {
  it("the handle is the volumeID; the zone label without a region", () => {
    const pv = value(
      cinder.toInTree(
        csiVolume(
          { driver: "cinder.csi.openstack.org", volumeHandle: "5a1b", fsType: "ext4" },
          { terms: [nodeTerm([KEY, ["nova"]])] },
        ),
      ),
    );
    assert.deepEqual(pv.spec.cinder, { volumeID: "5a1b", fsType: "ext4" });
    assert.deepEqual(pv.spec.nodeAffinity?.required?.nodeSelectorTerms, [
      nodeTerm([ZONE, ["nova"]]),
    ]);
    assert.deepEqual(pv.metadata.labels, { [ZONE]: "nova" });
  });

  it("another driver's topology keys are kept as they are", () => {
    const pv = value(
      cinder.toInTree(
        csiVolume(
          { driver: "cinder.csi.openstack.org", volumeHandle: "5a1b" },
          { terms: [nodeTerm(["topology.hostpath.csi/node", ["n1"]])] },
        ),
      ),
    );
    assert.deepEqual(pv.spec.nodeAffinity?.required?.nodeSelectorTerms, [
      nodeTerm(["topology.hostpath.csi/node", ["n1"]]),
    ]);
    assert.equal(pv.metadata.labels, undefined);
  });

  it("the CSI source of an in-tree PV", () => {
    assert.deepEqual(
      value(cinder.toCsi(inTreeVolume("cinder", { volumeID: "5a1b", readOnly: true }))),
      {
        driver: "cinder.csi.openstack.org",
        volumeHandle: "5a1b",
        volumeAttributes: {},
        readOnly: true,
      },
    );
    assert.equal(
      error(cinder.toCsi(inTreeVolume("rbd", {}))),
      "pv is nil or Cinder not defined on pv",
    );
  });
});
