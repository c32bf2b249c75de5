/**
 * The seven in-tree plugins whose volumes CSI drivers took over (CSI migration), and the three
 * questions the controllers ask:
 * - which extra provisioner name a driver answers to ({@link migratedProvisionerNames});
 * - a claim's StorageClass in the form CreateVolume needs ({@link classForProvisioning});
 * - the PV to save for a migrated claim ({@link volumeForMigratedClaim}) and the CSI source of an
 *   in-tree PV being deleted ({@link csiSourceOfVolume}).
 *
 * A driver not in the list sees none of this: every function then returns its input.
 */
import type { CSIPersistentVolumeSource, PersistentVolume, StorageClass } from "../kube/objects.ts";
import { awsEbs } from "./aws-ebs.ts";
import { azureDisk } from "./azure-disk.ts";
import { azureFile } from "./azure-file.ts";
import { cinder } from "./cinder.ts";
import type { MigratedPlugin, Translated } from "./common.ts";
import { gcePd } from "./gce-pd.ts";
import { portworx } from "./portworx.ts";
import { vsphereVolume } from "./vsphere-volume.ts";

export type { MigratedPlugin, Translated } from "./common.ts";

export const MIGRATED_PLUGINS: readonly MigratedPlugin[] = [
  gcePd,
  awsEbs,
  cinder,
  azureDisk,
  azureFile,
  vsphereVolume,
  portworx,
];

/** The plugin the CSI driver `driverName` took over from, if any. */
export function pluginForDriver(driverName: string): MigratedPlugin | undefined {
  return MIGRATED_PLUGINS.find((p) => p.driverName === driverName);
}

/** The plugin whose in-tree provisioner is `inTreeName`, if any. */
export function pluginForInTreeName(inTreeName: string): MigratedPlugin | undefined {
  return MIGRATED_PLUGINS.find((p) => p.inTreeName === inTreeName);
}

/** The plugin whose in-tree source `pv` has, if any. */
export function pluginForVolume(pv: PersistentVolume): MigratedPlugin | undefined {
  return MIGRATED_PLUGINS.find((p) => {
    const source = pv.spec[p.sourceField];
    return source !== undefined && source !== null;
  });
}

/** The in-tree provisioner names `driverName` also answers to: none, or its plugin's. */
export function migratedProvisionerNames(driverName: string): string[] {
  const plugin = pluginForDriver(driverName);
  return plugin ? [plugin.inTreeName] : [];
}

export type ClassForProvisioning =
  /** A CSI class: use it as it is. */
  | { kind: "csi"; storageClass: StorageClass }
  /** An in-tree class of the driver's plugin, translated: the PV goes back to in-tree form. */
  | { kind: "migrated"; storageClass: StorageClass; plugin: MigratedPlugin }
  /** An in-tree class that cannot be translated: `message` is upstream's event text. */
  | { kind: "error"; message: string };

/** The StorageClass CreateVolume is built from for a claim of `storageClass` by `driverName`. */
export function classForProvisioning(
  driverName: string,
  storageClass: StorageClass,
): ClassForProvisioning {
  const plugin = pluginForDriver(driverName);
  if (!plugin || storageClass.provisioner !== plugin.inTreeName) {
    return { kind: "csi", storageClass };
  }
  const translated = plugin.translateClass(storageClass);
  if (!translated.ok) {
    return { kind: "error", message: `failed to translate storage class: ${translated.error}` };
  }
  return { kind: "migrated", storageClass: translated.value, plugin };
}

/**
 * The PV to save for a claim: `pv` itself for a CSI class, its in-tree form for a migrated one
 * (an error when the driver's answer has no in-tree form: a handle or topology of the wrong shape).
 */
export function volumeForMigratedClaim(
  plugin: MigratedPlugin | undefined,
  pv: PersistentVolume,
): Translated<PersistentVolume> {
  if (!plugin) return { ok: true, value: pv };
  return plugin.toInTree(pv);
}

/**
 * The CSI source of a PV: `spec.csi`, or for an in-tree PV of a migrated plugin its translation
 * (an error when it cannot be translated), or `undefined` when the PV has neither.
 */
export function csiSourceOfVolume(
  pv: PersistentVolume,
): Translated<CSIPersistentVolumeSource> | undefined {
  const plugin = pluginForVolume(pv);
  if (plugin) return plugin.toCsi(pv);
  if (pv.spec.csi) return { ok: true, value: pv.spec.csi };
  return undefined;
}

/**
 * The node affinity of `pv` in its CSI driver's topology keys: an in-tree PV's translated (see
 * `MigratedPlugin.nodeAffinityToCsi`), any other PV's as it is.
 */
export function csiNodeAffinityOfVolume(
  pv: PersistentVolume,
): PersistentVolume["spec"]["nodeAffinity"] {
  const plugin = pluginForVolume(pv);
  return plugin?.nodeAffinityToCsi ? plugin.nodeAffinityToCsi(pv) : pv.spec.nodeAffinity;
}

/**
 * The class whose secrets deleting `pv` uses: the in-tree class translated when `pv` is a
 * migrated volume of it, else the class as it is (an untranslatable class as it is too: its
 * secret parameters are the in-tree ones).
 */
export function classForDeletion(
  pv: PersistentVolume,
  storageClass: StorageClass | undefined,
): StorageClass | undefined {
  const plugin = pluginForVolume(pv);
  if (!storageClass || !plugin || storageClass.provisioner !== plugin.inTreeName) {
    return storageClass;
  }
  const translated = plugin.translateClass(storageClass);
  return translated.ok ? translated.value : storageClass;
}
