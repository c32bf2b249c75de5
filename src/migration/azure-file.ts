/**
 * `kubernetes.io/azure-file` ↔ `file.csi.azure.com` (in-tree source `azureFile`).
 *
 * Class: as it is (the driver takes the in-tree parameters). PV: `shareName`, `secretName` and
 * `secretNamespace` come from the `sharename` / `secretname` / `secretnamespace` attributes and the
 * node-stage secret; what is missing comes from the handle `<rg>#<account>#<share>[#…]`
 * (secret `azure-storage-account-<account>-secret`, namespace `default`), and a resource group from
 * it is kept in the `kubernetes.io/azure-file-resource-group` annotation. Back to CSI (deletion)
 * the handle is `<rg>#<account>#<share>#<pv name>#<secret namespace>`.
 */
import type { CSIPersistentVolumeSource, PersistentVolume, StorageClass } from "../kube/objects.ts";
import {
  clone,
  failure,
  inTreeSource,
  type MigratedPlugin,
  ok,
  setInTreeSource,
  type Translated,
} from "./common.ts";

export const AZURE_FILE_DRIVER = "file.csi.azure.com";
export const AZURE_FILE_IN_TREE = "kubernetes.io/azure-file";
export const AZURE_FILE_RESOURCE_GROUP = "kubernetes.io/azure-file-resource-group";
const DEFAULT_SECRET_NAMESPACE = "default";

interface AzureFileSource {
  secretName: string;
  shareName: string;
  readOnly?: boolean;
  secretNamespace?: string;
}

/** The parts of an Azure File handle: resource group, account, share, disk name. */
export function azureFileShareInfo(
  handle: string,
): Translated<{ resourceGroup: string; account: string; share: string; disk: string }> {
  const parts = handle.split("#");
  if (parts.length < 3) {
    return failure(
      `error parsing volume id: ${JSON.stringify(handle)}, should at least contain two #`,
    );
  }
  return ok({
    resourceGroup: parts[0]!,
    account: parts[1]!,
    share: parts[2]!,
    disk: parts[3] ?? "",
  });
}

export const azureFile: MigratedPlugin = {
  inTreeName: AZURE_FILE_IN_TREE,
  driverName: AZURE_FILE_DRIVER,
  sourceField: "azureFile",

  translateClass(sc: StorageClass) {
    return ok(clone(sc));
  },

  toInTree(input: PersistentVolume) {
    const pv = clone(input);
    const csi = pv.spec.csi;
    if (!csi) return failure("pv is nil or CSI source not defined on pv");
    let shareName = "";
    let secretName = "";
    let secretNamespace: string | undefined;
    for (const [k, v] of Object.entries(csi.volumeAttributes ?? {})) {
      const lower = k.toLowerCase();
      if (lower === "sharename") shareName = v;
      else if (lower === "secretname") secretName = v;
      else if (lower === "secretnamespace") secretNamespace = v;
    }
    if (csi.nodeStageSecretRef?.name) {
      secretName = csi.nodeStageSecretRef.name;
      secretNamespace = csi.nodeStageSecretRef.namespace ?? "";
    }
    let resourceGroup = "";
    if (shareName === "" || secretName === "") {
      const info = azureFileShareInfo(csi.volumeHandle);
      if (!info.ok) return info;
      if (shareName === "") shareName = info.value.share;
      if (secretName === "") secretName = `azure-storage-account-${info.value.account}-secret`;
      resourceGroup = info.value.resourceGroup;
    }
    const source: AzureFileSource = { secretName, shareName };
    if (csi.readOnly) source.readOnly = true;
    source.secretNamespace = secretNamespace ?? DEFAULT_SECRET_NAMESPACE;
    setInTreeSource(pv, "azureFile", source);
    pv.metadata.annotations = pv.metadata.annotations ?? {};
    if (resourceGroup !== "") pv.metadata.annotations[AZURE_FILE_RESOURCE_GROUP] = resourceGroup;
    return ok(pv);
  },

  toCsi(pv: PersistentVolume) {
    const source = inTreeSource<AzureFileSource>(pv, "azureFile");
    if (!source) return failure("pv is nil or Azure File source not defined on pv");
    const secretName = source.secretName ?? "";
    const account = /azure-storage-account-(.+)-secret/.exec(secretName)?.[1] ?? secretName;
    const resourceGroup = pv.metadata.annotations?.[AZURE_FILE_RESOURCE_GROUP] ?? "";
    const namespace =
      source.secretNamespace !== undefined
        ? source.secretNamespace
        : (pv.spec.claimRef?.namespace ?? "");
    if (namespace === "") {
      return failure("could not find a secret namespace in PersistentVolumeSource or ClaimRef");
    }
    const share = source.shareName ?? "";
    const csi: CSIPersistentVolumeSource = {
      driver: AZURE_FILE_DRIVER,
      volumeHandle: `${resourceGroup}#${account}#${share}#${pv.metadata.name ?? ""}#${namespace}`,
      nodeStageSecretRef: { name: secretName, namespace },
      volumeAttributes: { sharename: share },
    };
    if (source.readOnly) csi.readOnly = true;
    return ok(csi);
  },
};
