/**
 * `kubernetes.io/vsphere-volume` ↔ `csi.vsphere.vmware.com` (in-tree source `vsphereVolume`).
 *
 * Class: only the parameters the driver understands survive: `fstype` →
 * `csi.storage.k8s.io/fstype`, `storagepolicyname` kept, `datastore`, `diskformat` and the vSAN
 * policy parameters get a `-migrationparam` suffix; any other parameter is dropped. `csimigration:
 * "true"` is added, which makes the driver return the disk's path in the `initialvolumefilepath`
 * attribute; zone allowed topologies → `topology.csi.vmware.com/zone`. PV: `volumePath` is that
 * attribute; the driver's zone and region keys become the zone and region labels.
 */
import type { CSIPersistentVolumeSource, PersistentVolume, StorageClass } from "../kube/objects.ts";
import {
  addTopology,
  CSI_FSTYPE_KEY,
  clone,
  FSTYPE_KEY,
  failure,
  inTreeSource,
  type MigratedPlugin,
  ok,
  renameTopologyKey,
  setInTreeSource,
  setLabelIfMissing,
  topologyLabels,
  topologyValues,
  translateAllowedTopologies,
} from "./common.ts";

export const VSPHERE_DRIVER = "csi.vsphere.vmware.com";
export const VSPHERE_IN_TREE = "kubernetes.io/vsphere-volume";
export const VSPHERE_ZONE_KEY = "topology.csi.vmware.com/zone";
export const VSPHERE_REGION_KEY = "topology.csi.vmware.com/region";
/** The attribute the driver returns the disk's path in when `csimigration` is set. */
export const VSPHERE_VOLUME_PATH_ATTRIBUTE = "initialvolumefilepath";

/** In-tree parameter (lower case) → the driver's parameter. */
const PARAMETERS: Record<string, string> = {
  [FSTYPE_KEY]: CSI_FSTYPE_KEY,
  storagepolicyname: "storagepolicyname",
  datastore: "datastore-migrationparam",
  diskformat: "diskformat-migrationparam",
  hostfailurestotolerate: "hostfailurestotolerate-migrationparam",
  forceprovisioning: "forceprovisioning-migrationparam",
  cachereservation: "cachereservation-migrationparam",
  diskstripes: "diskstripes-migrationparam",
  objectspacereservation: "objectspacereservation-migrationparam",
  iopslimit: "iopslimit-migrationparam",
};

interface VsphereSource {
  volumePath: string;
  fsType?: string;
  storagePolicyName?: string;
}

export const vsphereVolume: MigratedPlugin = {
  inTreeName: VSPHERE_IN_TREE,
  driverName: VSPHERE_DRIVER,
  sourceField: "vsphereVolume",

  translateClass(sc: StorageClass) {
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(sc.parameters ?? {})) {
      const to = PARAMETERS[k.toLowerCase()];
      if (to !== undefined && Object.hasOwn(PARAMETERS, k.toLowerCase())) params[to] = v;
    }
    params.csimigration = "true";
    const out = clone(sc);
    if ((sc.allowedTopologies ?? []).length > 0) {
      out.allowedTopologies = translateAllowedTopologies(sc.allowedTopologies!, VSPHERE_ZONE_KEY);
    }
    out.parameters = params;
    return ok(out);
  },

  toInTree(input: PersistentVolume) {
    const pv = clone(input);
    const csi = pv.spec.csi;
    if (!csi) return failure("pv is nil or CSI source not defined on pv");
    const source: VsphereSource = {
      volumePath: csi.volumeAttributes?.[VSPHERE_VOLUME_PATH_ATTRIBUTE] ?? "",
    };
    if (csi.fsType) source.fsType = csi.fsType;
    const { zone, region } = topologyLabels(pv);
    renameTopologyKey(pv, VSPHERE_ZONE_KEY, zone);
    renameTopologyKey(pv, VSPHERE_REGION_KEY, region);
    const zones = topologyValues(pv, zone);
    if (zones.length > 0) setLabelIfMissing(pv, zone, zones[0]!);
    const regions = topologyValues(pv, region);
    if (regions.length > 0) setLabelIfMissing(pv, region, regions[0]!);
    setInTreeSource(pv, "vsphereVolume", source);
    return ok(pv);
  },

  toCsi(pv: PersistentVolume) {
    const source = inTreeSource<VsphereSource>(pv, "vsphereVolume");
    if (!source) return failure("pv is nil or VsphereVolume not defined on pv");
    const csi: CSIPersistentVolumeSource = {
      driver: VSPHERE_DRIVER,
      volumeHandle: source.volumePath ?? "",
      volumeAttributes: {},
    };
    if (source.fsType) csi.fsType = source.fsType;
    if (source.storagePolicyName)
      csi.volumeAttributes!.storagepolicyname = source.storagePolicyName;
    return ok(csi);
  },

  nodeAffinityToCsi(input: PersistentVolume) {
    const pv = clone(input);
    const { zone, region } = topologyLabels(pv);
    for (const [from, to] of [
      [zone, VSPHERE_ZONE_KEY],
      [region, VSPHERE_REGION_KEY],
    ] as const) {
      if (topologyValues(pv, from).length > 0) renameTopologyKey(pv, from, to);
      else {
        const label = pv.metadata.labels?.[from];
        if (label) addTopology(pv, to, [label]);
      }
    }
    return pv.spec.nodeAffinity;
  },
};
