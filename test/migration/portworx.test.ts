import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { portworx } from "../../src/migration/portworx.ts";
import { csiVolume, inTreeVolume, storageClass, value } from "./support.ts";

const secretKeys = (what: "name" | "namespace", v: string) =>
  Object.fromEntries(
    [
      "provisioner",
      "controller-publish",
      "node-publish",
      "node-stage",
      "controller-expand",
      "node-expand",
    ].map((k) => [`csi.storage.k8s.io/${k}-secret-${what}`, v]),
  );

describe("portworx StorageClass translation", () => {
  it("the openstorage auth secret becomes all six CSI secrets; other parameters stay", () => {
    const sc = value(
      portworx.translateClass(
        storageClass("kubernetes.io/portworx-volume", {
          repl: "2",
          "openstorage.io/auth-secret-name": "px-secret",
          "openstorage.io/auth-secret-namespace": "kube-system",
        }),
      ),
    );
    assert.deepEqual(sc.parameters, {
      repl: "2",
      ...secretKeys("name", "px-secret"),
      ...secretKeys("namespace", "kube-system"),
    });
  });

  it("no parameters stay none", () => {
    const sc = value(portworx.translateClass(storageClass("kubernetes.io/portworx-volume")));
    assert.equal(sc.parameters, undefined);
  });
});

describe("portworx PV", () => {
  it("to in-tree: the handle is the volumeID", () => {
    const pv = value(
      portworx.toInTree(
        csiVolume({
          driver: "pxd.portworx.com",
          volumeHandle: "px-1",
          fsType: "ext4",
          readOnly: true,
        }),
      ),
    );
    assert.deepEqual(pv.spec.portworxVolume, { volumeID: "px-1", fsType: "ext4", readOnly: true });
    assert.equal(pv.spec.csi, undefined);
  });

  it("to CSI: the auth-secret annotations become the secret refs", () => {
    const source = value(
      portworx.toCsi(
        inTreeVolume(
          "portworxVolume",
          { volumeID: "px-1" },
          {
            annotations: {
              "openstorage.io/auth-secret-name": "s",
              "openstorage.io/auth-secret-namespace": "ns",
            },
          },
        ),
      ),
    );
    const ref = { name: "s", namespace: "ns" };
    assert.deepEqual(source, {
      driver: "pxd.portworx.com",
      volumeHandle: "px-1",
      volumeAttributes: {},
      controllerPublishSecretRef: ref,
      nodeStageSecretRef: ref,
      nodePublishSecretRef: ref,
      controllerExpandSecretRef: ref,
      nodeExpandSecretRef: ref,
    });
  });
});
