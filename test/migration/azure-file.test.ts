import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { azureFile } from "../../src/migration/azure-file.ts";
import { csiVolume, error, inTreeVolume, storageClass, value } from "./support.ts";

const RG = "kubernetes.io/azure-file-resource-group";

describe("azure-file StorageClass translation", () => {
  it("is the class as it is", () => {
    const input = storageClass("kubernetes.io/azure-file", {
      skuName: "Standard_LRS",
      location: "eastus",
    });
    assert.deepEqual(value(azureFile.translateClass(input)), input);
  });
});

describe("azure-file PV to in-tree", () => {
  it("share and secret from the handle rg#account#share#…, resource group annotated", () => {
    const pv = value(
      azureFile.toInTree(
        csiVolume({
          driver: "file.csi.azure.com",
          volumeHandle: "rg1#acct1#pvc-1###ns",
          volumeAttributes: {},
        }),
      ),
    );
    assert.deepEqual(pv.spec.azureFile, {
      secretName: "azure-storage-account-acct1-secret",
      shareName: "pvc-1",
      secretNamespace: "default",
    });
    assert.equal(pv.metadata.annotations?.[RG], "rg1");
  });

  it("attributes and the node-stage secret come first; then nothing is read from the handle", () => {
    const pv = value(
      azureFile.toInTree(
        csiVolume({
          driver: "file.csi.azure.com",
          volumeHandle: "not-parsed",
          readOnly: true,
          volumeAttributes: { shareName: "s1", secretName: "ignored" },
          nodeStageSecretRef: { name: "sec", namespace: "app" },
        }),
      ),
    );
    assert.deepEqual(pv.spec.azureFile, {
      secretName: "sec",
      shareName: "s1",
      readOnly: true,
      secretNamespace: "app",
    });
    assert.equal(pv.metadata.annotations?.[RG], undefined);
  });

  it("a handle without two # is upstream's error", () => {
    const result = azureFile.toInTree(
      csiVolume({ driver: "file.csi.azure.com", volumeHandle: "a#b" }),
    );
    assert.equal(error(result), 'error parsing volume id: "a#b", should at least contain two #');
  });
});

describe("azure-file PV to CSI (deletion)", () => {
  it("handle rg#account#share#pv#namespace, account from the secret's name", () => {
    const source = value(
      azureFile.toCsi(
        inTreeVolume(
          "azureFile",
          {
            secretName: "azure-storage-account-acct1-secret",
            shareName: "share1",
            secretNamespace: "default",
          },
          { annotations: { [RG]: "rg1" } },
        ),
      ),
    );
    assert.deepEqual(source, {
      driver: "file.csi.azure.com",
      volumeHandle: "rg1#acct1#share1#pvc-1#default",
      nodeStageSecretRef: { name: "azure-storage-account-acct1-secret", namespace: "default" },
      volumeAttributes: { sharename: "share1" },
    });
  });

  it("without a secret namespace, the claim's namespace; another secret name is the account", () => {
    const source = value(
      azureFile.toCsi(
        inTreeVolume(
          "azureFile",
          { secretName: "mysecret", shareName: "s" },
          { claimNamespace: "app" },
        ),
      ),
    );
    assert.equal(source.volumeHandle, "#mysecret#s#pvc-1#app");
  });

  it("no namespace at all is upstream's error", () => {
    const result = azureFile.toCsi(
      inTreeVolume("azureFile", { secretName: "x", shareName: "s" }, { claimNamespace: "" }),
    );
    assert.equal(
      error(result),
      "could not find a secret namespace in PersistentVolumeSource or ClaimRef",
    );
  });
});
