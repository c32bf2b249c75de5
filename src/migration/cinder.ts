/**
 * `kubernetes.io/cinder` ↔ `cinder.csi.openstack.org` (in-tree source `cinder`).
 *
 * Class: `fstype` → `csi.storage.k8s.io/fstype`, every other parameter (`availability` too) kept;
 * zone allowed topologies → `topology.cinder.csi.openstack.org/zone`. PV: the handle is the
 * `volumeID`; zones become zone labels (no region: it cannot be derived from a Cinder zone).
 */
import type { CSIPersistentVolumeSource, PersistentVolume, StorageClass } from "../kube/objects.ts";
import {
  clone,
  failure,
  fsTypeParam,
  inTreeSource,
  type MigratedPlugin,
  ok,
  setInTreeSource,
  topologyError,
  topologyToCsi,
  topologyToInTree,
  translateAllowedTopologies,
} from "./common.ts";

export const CINDER_DRIVER = "cinder.csi.openstack.org";
export const CINDER_IN_TREE = "kubernetes.io/cinder";
export const CINDER_TOPOLOGY_KEY = "topology.cinder.csi.openstack.org/zone";

interface CinderSource {
  volumeID: string;
  fsType?: string;
  readOnly?: boolean;
}

export const cinder: MigratedPlugin = {
  inTreeName: CINDER_IN_TREE,
  driverName: CINDER_DRIVER,
  sourceField: "cinder",

  translateClass(sc: StorageClass) {
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(sc.parameters ?? {})) {
      fsTypeParam(k.toLowerCase(), k, v, params);
    }
    const out = clone(sc);
    if ((sc.allowedTopologies ?? []).length > 0) {
      out.allowedTopologies = translateAllowedTopologies(
        sc.allowedTopologies!,
        CINDER_TOPOLOGY_KEY,
      );
    }
    out.parameters = params;
    return ok(out);
  },

  toInTree(input: PersistentVolume) {
    const pv = clone(input);
    const csi = pv.spec.csi;
    if (!csi) return failure("pv is nil or CSI source not defined on pv");
    const source: CinderSource = { volumeID: csi.volumeHandle };
    if (csi.fsType) source.fsType = csi.fsType;
    if (csi.readOnly) source.readOnly = true;
    const topology = topologyToInTree(pv, CINDER_TOPOLOGY_KEY);
    if (!topology.ok) return failure(topologyError(pv, topology.error));
    setInTreeSource(pv, "cinder", source);
    return ok(pv);
  },

  toCsi(pv: PersistentVolume) {
    const source = inTreeSource<CinderSource>(pv, "cinder");
    if (!source) return failure("pv is nil or Cinder not defined on pv");
    const csi: CSIPersistentVolumeSource = {
      driver: CINDER_DRIVER,
      volumeHandle: source.volumeID ?? "",
      volumeAttributes: {},
    };
    if (source.fsType) csi.fsType = source.fsType;
    if (source.readOnly) csi.readOnly = true;
    return ok(csi);
  },

  nodeAffinityToCsi(pv: PersistentVolume) {
    return topologyToCsi(pv, CINDER_TOPOLOGY_KEY);
  },
};
