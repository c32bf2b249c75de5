/**
 * `kubernetes.io/portworx-volume` ↔ `pxd.portworx.com` (in-tree source `portworxVolume`).
 *
 * Class: `openstorage.io/auth-secret-name` / `-namespace` become the six CSI secret parameters
 * (provisioner, controller-publish, node-stage, node-publish, controller-expand, node-expand);
 * every other parameter is kept. PV: the handle is the `volumeID`. Back to CSI, the
 * `openstorage.io/auth-secret-*` annotations of the PV (when both are set) become its secret refs.
 */
import type {
  CSIPersistentVolumeSource,
  PersistentVolume,
  SecretReference,
  StorageClass,
} from "../kube/objects.ts";
import {
  clone,
  failure,
  inTreeSource,
  type MigratedPlugin,
  ok,
  setInTreeSource,
} from "./common.ts";

export const PORTWORX_DRIVER = "pxd.portworx.com";
export const PORTWORX_IN_TREE = "kubernetes.io/portworx-volume";
const AUTH_SECRET_NAME = "openstorage.io/auth-secret-name";
const AUTH_SECRET_NAMESPACE = "openstorage.io/auth-secret-namespace";
const SECRET_KINDS = [
  "provisioner",
  "controller-publish",
  "node-publish",
  "node-stage",
  "controller-expand",
  "node-expand",
];

interface PortworxSource {
  volumeID: string;
  fsType?: string;
  readOnly?: boolean;
}

export const portworx: MigratedPlugin = {
  inTreeName: PORTWORX_IN_TREE,
  driverName: PORTWORX_DRIVER,
  sourceField: "portworxVolume",

  translateClass(sc: StorageClass) {
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(sc.parameters ?? {})) {
      const lower = k.toLowerCase();
      if (lower === AUTH_SECRET_NAME) {
        for (const kind of SECRET_KINDS) params[`csi.storage.k8s.io/${kind}-secret-name`] = v;
      } else if (lower === AUTH_SECRET_NAMESPACE) {
        for (const kind of SECRET_KINDS) params[`csi.storage.k8s.io/${kind}-secret-namespace`] = v;
      } else params[k] = v;
    }
    const out = clone(sc);
    if (Object.keys(params).length > 0) out.parameters = params;
    out.provisioner = PORTWORX_DRIVER;
    return ok(out);
  },

  toInTree(input: PersistentVolume) {
    const pv = clone(input);
    const csi = pv.spec.csi;
    if (!csi) return failure("pv is nil or CSI source not defined on pv");
    const source: PortworxSource = { volumeID: csi.volumeHandle };
    if (csi.fsType) source.fsType = csi.fsType;
    if (csi.readOnly) source.readOnly = true;
    setInTreeSource(pv, "portworxVolume", source);
    return ok(pv);
  },

  toCsi(pv: PersistentVolume) {
    const source = inTreeSource<PortworxSource>(pv, "portworxVolume");
    if (!source) return failure("pv is nil or PortworxVolume not defined on pv");
    const annotations = pv.metadata.annotations ?? {};
    const csi: CSIPersistentVolumeSource = {
      driver: PORTWORX_DRIVER,
      volumeHandle: source.volumeID ?? "",
      volumeAttributes: {},
    };
    if (source.fsType) csi.fsType = source.fsType;
    if (
      Object.hasOwn(annotations, AUTH_SECRET_NAME) &&
      Object.hasOwn(annotations, AUTH_SECRET_NAMESPACE)
    ) {
      const ref = (): SecretReference => ({
        name: annotations[AUTH_SECRET_NAME]!,
        namespace: annotations[AUTH_SECRET_NAMESPACE]!,
      });
      csi.controllerPublishSecretRef = ref();
      csi.nodeStageSecretRef = ref();
      csi.nodePublishSecretRef = ref();
      csi.controllerExpandSecretRef = ref();
      csi.nodeExpandSecretRef = ref();
    }
    return ok(csi);
  },
};
