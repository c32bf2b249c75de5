import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { azureDisk, azureDiskName } from "../../src/migration/azure-disk.ts";
import {
  csiVolume,
  error,
  inTreeVolume,
  nodeTerm,
  storageClass,
  value,
  zoneTerm,
} from "./support.ts";

const KEY = "topology.disk.csi.azure.com/zone";
const ZONE = "topology.kubernetes.io/zone";
const URI = "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Compute/disks/pvc-1";

describe("azure-disk StorageClass translation", () => {
  it("parameters stay as they are (fstype too), zone → the driver's key", () => {
    const sc = value(
      azureDisk.translateClass(
        storageClass("kubernetes.io/azure-disk", {
          skuName: "Premium_LRS",
          kind: "Managed",
          cachingMode: "ReadOnly",
          fstype: "xfs",
          zone: "eastus-1",
        }),
      ),
    );
    assert.deepEqual(sc.parameters, {
      skuName: "Premium_LRS",
      kind: "Managed",
      cachingMode: "ReadOnly",
      fstype: "xfs",
    });
    assert.deepEqual(sc.allowedTopologies, [zoneTerm(KEY, "eastus-1")]);
  });

  it('a numeric zone (a region without zones) becomes ""', () => {
    const sc = value(
      azureDisk.translateClass(
        storageClass("kubernetes.io/azure-disk", {}, [
          {
            matchLabelExpressions: [
              { key: ZONE, values: ["0", "eastus-2"] },
              { key: "topology.kubernetes.io/region", values: ["1"] },
            ],
          },
        ]),
      ),
    );
    assert.deepEqual(sc.allowedTopologies, [
      {
        matchLabelExpressions: [
          { key: KEY, values: ["", "eastus-2"] },
          { key: "topology.kubernetes.io/region", values: ["1"] },
        ],
      },
    ]);
  });

  it("zones next to allowed topologies is upstream's error", () => {
    const result = azureDisk.translateClass(
      storageClass("kubernetes.io/azure-disk", { zones: "1,2" }, [zoneTerm(ZONE, "1")]),
    );
    assert.equal(
      error(result),
      "cannot simultaneously set allowed topologies and zone/zones parameters",
    );
  });
});

describe("azure-disk PV to in-tree", () => {
  it("managed disk URI: diskName, kind Managed, fsType and readOnly always set", () => {
    const pv = value(
      azureDisk.toInTree(
        csiVolume(
          { driver: "disk.csi.azure.com", volumeHandle: URI, volumeAttributes: {} },
          { terms: [nodeTerm([KEY, ["eastus-1"]])] },
        ),
      ),
    );
    assert.deepEqual(pv.spec.azureDisk, {
      diskName: "pvc-1",
      diskURI: URI,
      fsType: "",
      readOnly: false,
      kind: "Managed",
    });
    // The node affinity keeps the driver's keys; no labels.
    assert.deepEqual(pv.spec.nodeAffinity?.required?.nodeSelectorTerms, [
      nodeTerm([KEY, ["eastus-1"]]),
    ]);
    assert.equal(pv.metadata.labels, undefined);
  });

  it("cachingmode and fstype attributes (any case) win", () => {
    const pv = value(
      azureDisk.toInTree(
        csiVolume({
          driver: "disk.csi.azure.com",
          volumeHandle: URI,
          fsType: "ext4",
          volumeAttributes: { cachingMode: "ReadOnly", FSType: "xfs" },
        }),
      ),
    );
    assert.deepEqual(pv.spec.azureDisk, {
      diskName: "pvc-1",
      diskURI: URI,
      cachingMode: "ReadOnly",
      fsType: "xfs",
      readOnly: false,
      kind: "Managed",
    });
  });

  it("blob URIs: the name after /vhds/", () => {
    assert.equal(
      value(azureDiskName("https://acct.blob.core.windows.net/vhds/disk1.vhd")),
      "disk1.vhd",
    );
  });

  it("a handle of another shape is upstream's error", () => {
    const result = azureDisk.toInTree(
      csiVolume({ driver: "disk.csi.azure.com", volumeHandle: "abc" }),
    );
    assert.equal(
      error(result),
      "could not get disk name from abc, correct format: .*/subscriptions/(?:.*)/resourceGroups/(?:.*)/providers/Microsoft.Compute/disks/(.+)",
    );
  });
});

describe("azure-disk PV to CSI (deletion)", () => {
  it("the handle is the disk URI; caching mode and fsType become attributes", () => {
    const source = value(
      azureDisk.toCsi(
        inTreeVolume("azureDisk", {
          diskName: "pvc-1",
          diskURI: URI,
          cachingMode: "ReadWrite",
          fsType: "ext4",
          readOnly: false,
          kind: "Managed",
        }),
      ),
    );
    assert.deepEqual(source, {
      driver: "disk.csi.azure.com",
      volumeHandle: URI,
      fsType: "ext4",
      volumeAttributes: { kind: "Managed", cachingmode: "ReadWrite", fstype: "ext4" },
    });
  });

  it("an unmanaged kind cannot be migrated", () => {
    const result = azureDisk.toCsi(
      inTreeVolume("azureDisk", { diskName: "d", diskURI: "u", kind: "Shared" }),
    );
    assert.equal(error(result), "kind(Shared) is not supported in csi migration");
  });
});
