import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { PersistentVolume } from "../../src/kube/objects.ts";
import {
  classForDeletion,
  classForProvisioning,
  csiNodeAffinityOfVolume,
  csiSourceOfVolume,
  MIGRATED_PLUGINS,
  migratedProvisionerNames,
  pluginForVolume,
  volumeForMigratedClaim,
} from "../../src/migration/registry.ts";
import { csiVolume, error, inTreeVolume, storageClass, value } from "./support.ts";

describe("migration registry", () => {
  const pairs: [string, string][] = [
    ["pd.csi.storage.gke.io", "kubernetes.io/gce-pd"],
    ["ebs.csi.aws.com", "kubernetes.io/aws-ebs"],
    ["cinder.csi.openstack.org", "kubernetes.io/cinder"],
    ["disk.csi.azure.com", "kubernetes.io/azure-disk"],
    ["file.csi.azure.com", "kubernetes.io/azure-file"],
    ["csi.vsphere.vmware.com", "kubernetes.io/vsphere-volume"],
    ["pxd.portworx.com", "kubernetes.io/portworx-volume"],
  ];
  for (const [driver, inTree] of pairs) {
    it(`${driver} also answers to ${inTree}`, () => {
      assert.deepEqual(migratedProvisionerNames(driver), [inTree]);
    });
  }

  it("knows exactly the seven migrated drivers", () => {
    assert.deepEqual(
      MIGRATED_PLUGINS.map((p) => [p.driverName, p.inTreeName]).sort(),
      [...pairs].sort(),
    );
    assert.deepEqual(migratedProvisionerNames("hostpath.csi.k8s.io"), []);
  });

  it("a CSI class is used as it is, also by a migrated driver", () => {
    const sc = storageClass("ebs.csi.aws.com", { type: "gp3" });
    assert.deepEqual(classForProvisioning("ebs.csi.aws.com", sc), {
      kind: "csi",
      storageClass: sc,
    });
    const inTree = storageClass("kubernetes.io/aws-ebs");
    assert.equal(classForProvisioning("hostpath.csi.k8s.io", inTree).kind, "csi");
  });

  it("another plugin's in-tree class is not translated", () => {
    const sc = storageClass("kubernetes.io/gce-pd", { zone: "a" });
    assert.equal(classForProvisioning("ebs.csi.aws.com", sc).kind, "csi");
  });

  it("the driver's in-tree class is translated", () => {
    const result = classForProvisioning(
      "ebs.csi.aws.com",
      storageClass("kubernetes.io/aws-ebs", { fstype: "xfs" }),
    );
    assert.equal(result.kind, "migrated");
    if (result.kind === "migrated") {
      assert.equal(result.plugin.inTreeName, "kubernetes.io/aws-ebs");
      assert.deepEqual(result.storageClass.parameters, { "csi.storage.k8s.io/fstype": "xfs" });
      assert.equal(result.storageClass.provisioner, "kubernetes.io/aws-ebs");
    }
  });

  it("a class that cannot be translated gives upstream's event text", () => {
    const result = classForProvisioning(
      "pd.csi.storage.gke.io",
      storageClass("kubernetes.io/gce-pd", { zone: "a" }, [
        { matchLabelExpressions: [{ key: "topology.kubernetes.io/zone", values: ["a"] }] },
      ]),
    );
    assert.deepEqual(result, {
      kind: "error",
      message:
        "failed to translate storage class: cannot simultaneously set allowed topologies and zone/zones parameters",
    });
  });

  it("volumeForMigratedClaim() keeps a CSI PV and translates a migrated one", () => {
    const pv = csiVolume({ driver: "ebs.csi.aws.com", volumeHandle: "vol-1" });
    assert.equal(value(volumeForMigratedClaim(undefined, pv)), pv);
    const plugin = MIGRATED_PLUGINS.find((p) => p.driverName === "ebs.csi.aws.com")!;
    assert.deepEqual(value(volumeForMigratedClaim(plugin, pv)).spec.awsElasticBlockStore, {
      volumeID: "vol-1",
    });
  });

  it("csiSourceOfVolume(): spec.csi, an in-tree source translated, or nothing", () => {
    const pv = csiVolume({ driver: "x", volumeHandle: "h" });
    assert.equal(value(csiSourceOfVolume(pv)!).volumeHandle, "h");
    const inTree = inTreeVolume("cinder", { volumeID: "c1" });
    assert.equal(pluginForVolume(inTree)?.driverName, "cinder.csi.openstack.org");
    assert.equal(value(csiSourceOfVolume(inTree)!).volumeHandle, "c1");
    assert.equal(csiSourceOfVolume(inTreeVolume("nfs", { server: "s", path: "/" })), undefined);
    assert.match(
      error(csiSourceOfVolume(inTreeVolume("awsElasticBlockStore", { volumeID: "aws://z/x" }))!),
      /Invalid format for AWS volume/,
    );
  });

  it("classForDeletion() translates the in-tree class of a migrated PV (its secret parameters)", () => {
    const pv = inTreeVolume("portworxVolume", { volumeID: "px" });
    const sc = storageClass("kubernetes.io/portworx-volume", {
      "openstorage.io/auth-secret-name": "s",
      "openstorage.io/auth-secret-namespace": "ns",
    });
    const translated = classForDeletion(pv, sc)!;
    assert.equal(translated.parameters?.["csi.storage.k8s.io/provisioner-secret-name"], "s");
    const csiClass = storageClass("pxd.portworx.com", { a: "b" });
    assert.equal(classForDeletion(pv, csiClass), csiClass);
    assert.equal(classForDeletion(pv, undefined), undefined);
  });

  it("csiNodeAffinityOfVolume(): in-tree zone keys become the driver's; CSI PVs keep theirs", () => {
    const inTree = inTreeVolume(
      "gcePersistentDisk",
      { pdName: "d" },
      { labels: { "topology.kubernetes.io/zone": "us-central1-a" } },
    );
    assert.deepEqual(csiNodeAffinityOfVolume(inTree), {
      required: {
        nodeSelectorTerms: [
          {
            matchExpressions: [
              { key: "topology.gke.io/zone", operator: "In", values: ["us-central1-a"] },
            ],
          },
        ],
      },
    });
    const affinity: PersistentVolume["spec"]["nodeAffinity"] = {
      required: {
        nodeSelectorTerms: [
          {
            matchExpressions: [
              { key: "topology.kubernetes.io/zone", operator: "In", values: ["z"] },
            ],
          },
        ],
      },
    };
    const csi = csiVolume({ driver: "pd.csi.storage.gke.io", volumeHandle: "h" });
    csi.spec.nodeAffinity = affinity;
    assert.equal(csiNodeAffinityOfVolume(csi), affinity);
    // Azure disk keeps its keys in both forms.
    const disk = inTreeVolume("azureDisk", { diskName: "d", diskURI: "u" });
    disk.spec.nodeAffinity = affinity;
    assert.equal(csiNodeAffinityOfVolume(disk), affinity);
  });
});
