/**
 * `kubernetes.io/azure-disk` ↔ `disk.csi.azure.com` (in-tree source `azureDisk`).
 *
 * Class: `zone` / `zones` → allowed topologies of `topology.disk.csi.azure.com/zone` (other
 * parameters, `fstype` too, are the driver's own); a numeric zone (`"0"`, a failure domain of a
 * region without zones) becomes `""`, which is what the driver reports there. PV: the handle is the
 * managed disk's URI (`…/subscriptions/…/resourceGroups/…/providers/Microsoft.Compute/disks/<name>`,
 * or a blob `https://…/vhds/<name>`); `diskName` is its last part; `cachingmode` and `fstype`
 * attributes carry over; the node affinity keeps the driver's keys.
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
  translateZonalClass,
} from "./common.ts";

export const AZURE_DISK_DRIVER = "disk.csi.azure.com";
export const AZURE_DISK_IN_TREE = "kubernetes.io/azure-disk";
export const AZURE_DISK_TOPOLOGY_KEY = "topology.disk.csi.azure.com/zone";
const MANAGED = "Managed";
const MANAGED_DISK_PATTERN =
  ".*/subscriptions/(?:.*)/resourceGroups/(?:.*)/providers/Microsoft.Compute/disks/(.+)";
const UNMANAGED_DISK_PATTERN = "http(?:.*)://(?:.*)/vhds/(.+)";

interface AzureDiskSource {
  diskName: string;
  diskURI: string;
  cachingMode?: string;
  fsType?: string;
  readOnly?: boolean;
  kind?: string;
}

/** The disk name of an Azure disk URI. */
export function azureDiskName(diskUri: string): Translated<string> {
  const managed = !(diskUri.length > 4 && diskUri.slice(0, 4).toLowerCase() === "http");
  const pattern = managed ? MANAGED_DISK_PATTERN : UNMANAGED_DISK_PATTERN;
  const match = new RegExp(pattern).exec(diskUri);
  if (!match || match[1] === undefined) {
    return failure(`could not get disk name from ${diskUri}, correct format: ${pattern}`);
  }
  return ok(match[1]);
}

export const azureDisk: MigratedPlugin = {
  inTreeName: AZURE_DISK_IN_TREE,
  driverName: AZURE_DISK_DRIVER,
  sourceField: "azureDisk",

  translateClass(sc: StorageClass) {
    const translated = translateZonalClass(sc, AZURE_DISK_TOPOLOGY_KEY, (_l, key, value, p) => {
      p[key] = value;
    });
    if (!translated.ok || !translated.value.allowedTopologies) return translated;
    for (const term of translated.value.allowedTopologies) {
      for (const e of term.matchLabelExpressions ?? []) {
        if (e.key === AZURE_DISK_TOPOLOGY_KEY) {
          e.values = e.values.map((v) => (/^[0-9]+$/.test(v) ? "" : v));
        }
      }
    }
    return translated;
  },

  toInTree(input: PersistentVolume) {
    const pv = clone(input);
    const csi = pv.spec.csi;
    if (!csi) return failure("pv is nil or CSI source not defined on pv");
    const name = azureDiskName(csi.volumeHandle);
    if (!name.ok) return name;
    // The pointers upstream sets are always present: fsType (even ""), readOnly, kind.
    const source: AzureDiskSource = {
      diskName: name.value,
      diskURI: csi.volumeHandle,
      fsType: csi.fsType ?? "",
      readOnly: csi.readOnly ?? false,
      kind: MANAGED,
    };
    for (const [k, v] of Object.entries(csi.volumeAttributes ?? {})) {
      const lower = k.toLowerCase();
      if (lower === "cachingmode" && v !== "") source.cachingMode = v;
      else if (lower === "fstype" && v !== "") source.fsType = v;
    }
    setInTreeSource(pv, "azureDisk", sortedSource(source));
    return ok(pv);
  },

  toCsi(pv: PersistentVolume) {
    const source = inTreeSource<AzureDiskSource>(pv, "azureDisk");
    if (!source) return failure("pv is nil or Azure Disk source not defined on pv");
    if (source.kind !== undefined && source.kind.toLowerCase() !== MANAGED.toLowerCase()) {
      return failure(`kind(${source.kind}) is not supported in csi migration`);
    }
    const csi: CSIPersistentVolumeSource = {
      driver: AZURE_DISK_DRIVER,
      volumeHandle: source.diskURI ?? "",
      volumeAttributes: { kind: MANAGED },
    };
    if (source.cachingMode !== undefined) csi.volumeAttributes!.cachingmode = source.cachingMode;
    if (source.fsType !== undefined) {
      if (source.fsType) csi.fsType = source.fsType;
      csi.volumeAttributes!.fstype = source.fsType;
    }
    if (source.readOnly) csi.readOnly = true;
    return ok(csi);
  },
};

/** The source with its fields in the API's order (diskName, diskURI, cachingMode, fsType, ...). */
function sortedSource(s: AzureDiskSource): AzureDiskSource {
  const out: AzureDiskSource = { diskName: s.diskName, diskURI: s.diskURI };
  if (s.cachingMode !== undefined) out.cachingMode = s.cachingMode;
  if (s.fsType !== undefined) out.fsType = s.fsType;
  if (s.readOnly !== undefined) out.readOnly = s.readOnly;
  if (s.kind !== undefined) out.kind = s.kind;
  return out;
}
