/**
 * `kubernetes.io/gce-pd` ↔ `pd.csi.storage.gke.io` (in-tree source `gcePersistentDisk`).
 *
 * Class: `fstype` → `csi.storage.k8s.io/fstype`; `zone` / `zones` → allowed topologies of
 * `topology.gke.io/zone`. PV: the handle `projects/<p>/zones|regions/<z>/disks/<name>` gives
 * `pdName`; zones become zone labels with the region (`us-central1-a` → `us-central1`). Back to
 * CSI (deletion) the handle is rebuilt from `pdName` and the zone label, project `UNSPECIFIED`.
 */
import type { CSIPersistentVolumeSource, PersistentVolume, StorageClass } from "../kube/objects.ts";
import {
  atoi,
  clone,
  failure,
  fsTypeParam,
  inTreeSource,
  LABEL_BETA_ZONE,
  LABEL_ZONE,
  type MigratedPlugin,
  MULTI_ZONE_DELIMITER,
  ok,
  setInTreeSource,
  singleRegion,
  type Translated,
  topologyError,
  topologyToCsi,
  topologyToInTree,
  translateZonalClass,
} from "./common.ts";

export const GCE_PD_DRIVER = "pd.csi.storage.gke.io";
export const GCE_PD_IN_TREE = "kubernetes.io/gce-pd";
export const GCE_PD_TOPOLOGY_KEY = "topology.gke.io/zone";
/** Project (or zone) of a handle rebuilt from an in-tree PV. */
export const UNSPECIFIED = "UNSPECIFIED";
const HANDLE_PARTS = 6;

interface GcePdSource {
  pdName: string;
  fsType?: string;
  partition?: number;
  readOnly?: boolean;
}

/** The region of GCE zones `{locale}-{region}-{zone}`. */
export function gceRegionFromZones(zones: string[]): Translated<string> {
  return singleRegion(zones, (zone) => {
    const parts = zone.split("-");
    if (parts.length !== 3) {
      return failure(`zone in unexpected format, expected: {locale}-{region}-{zone}, got: ${zone}`);
    }
    return ok(parts.slice(0, 2).join("-"));
  });
}

/** The disk name of a PD CSI handle (its sixth `/`-separated part). */
export function pdNameFromHandle(handle: string): Translated<string> {
  const parts = handle.split("/");
  if (parts.length < HANDLE_PARTS) {
    return failure(
      `failed to get id components.Got: ${parts.length}, wanted ${HANDLE_PARTS} components or more. `,
    );
  }
  return ok(parts[5]!);
}

export const gcePd: MigratedPlugin = {
  inTreeName: GCE_PD_IN_TREE,
  driverName: GCE_PD_DRIVER,
  sourceField: "gcePersistentDisk",

  translateClass(sc: StorageClass) {
    return translateZonalClass(sc, GCE_PD_TOPOLOGY_KEY, fsTypeParam);
  },

  toInTree(input: PersistentVolume) {
    const pv = clone(input);
    const csi = pv.spec.csi;
    if (!csi) return failure("pv is nil or CSI source not defined on pv");
    const name = pdNameFromHandle(csi.volumeHandle);
    if (!name.ok) return name;
    const source: GcePdSource = { pdName: name.value };
    if (csi.fsType) source.fsType = csi.fsType;
    if (csi.readOnly) source.readOnly = true;
    const partition = csi.volumeAttributes?.partition;
    if (partition) {
      const n = atoi(partition);
      if (!n.ok) return failure(`Failed to convert partition ${partition} to integer: ${n.error}`);
      if (n.value !== 0) source.partition = n.value;
    }
    const topology = topologyToInTree(pv, GCE_PD_TOPOLOGY_KEY, gceRegionFromZones);
    if (!topology.ok) return failure(topologyError(pv, topology.error));
    setInTreeSource(pv, "gcePersistentDisk", source);
    return ok(pv);
  },

  toCsi(pv: PersistentVolume) {
    const source = inTreeSource<GcePdSource>(pv, "gcePersistentDisk");
    if (!source) return failure("pv is nil or GCE Persistent Disk source not defined on pv");
    const labels = pv.metadata.labels ?? {};
    const zonesLabel = labels[LABEL_BETA_ZONE] || labels[LABEL_ZONE] || "";
    const zones = zonesLabel.split(MULTI_ZONE_DELIMITER);
    const pdName = source.pdName ?? "";
    let handle: string;
    if (zones.length === 1 && zones[0] !== "") {
      handle = `projects/${UNSPECIFIED}/zones/${zones[0]}/disks/${pdName}`;
    } else if (zones.length > 1) {
      const region = gceRegionFromZones(zones);
      if (!region.ok) return failure(`failed to get region from zones: ${region.error}`);
      handle = `projects/${UNSPECIFIED}/regions/${region.value}/disks/${pdName}`;
    } else {
      handle = `projects/${UNSPECIFIED}/zones/${UNSPECIFIED}/disks/${pdName}`;
    }
    const csi: CSIPersistentVolumeSource = {
      driver: GCE_PD_DRIVER,
      volumeHandle: handle,
      volumeAttributes: { partition: source.partition ? String(source.partition) : "" },
    };
    if (source.fsType) csi.fsType = source.fsType;
    if (source.readOnly) csi.readOnly = true;
    return ok(csi);
  },

  nodeAffinityToCsi(pv: PersistentVolume) {
    return topologyToCsi(pv, GCE_PD_TOPOLOGY_KEY);
  },
};
