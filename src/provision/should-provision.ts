/**
 * Which claims and volumes are ours, and what to do with them (upstream library `shouldProvision`,
 * external-provisioner `ShouldProvision` / `checkNode`, and the library's `syncVolume` decisions:
 * `isProvisionerForVolume`, `handleProtectionFinalizer`, `shouldDelete`; external-provisioner
 * `canDeleteVolume`). All pure: the caches are read through the inputs.
 */
import type {
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
  VolumeAttachment,
} from "../kube/objects.ts";

export const ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner";
export const ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner";
export const ANN_MIGRATED_TO = "pv.kubernetes.io/migrated-to";
export const ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node";
export const ANN_ALPHA_SELECTED_NODE = "volume.alpha.kubernetes.io/selected-node";
export const ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class";
/** Set on every provisioned PV to the StorageClass's provisioner. */
export const ANN_DYNAMICALLY_PROVISIONED = "pv.kubernetes.io/provisioned-by";
/** The PV finalizer that makes a PV deleted before its claim still delete its volume. */
export const FINALIZER_PV = "external-provisioner.volume.kubernetes.io/finalizer";

/**
 * The provisioner a claim asks for: `volume.kubernetes.io/storage-provisioner`, or when that
 * annotation is absent, `volume.beta.kubernetes.io/storage-provisioner`.
 */
export function claimProvisionerName(claim: PersistentVolumeClaim): string | undefined {
  const annotations = claim.metadata.annotations;
  if (!annotations) return undefined;
  if (Object.hasOwn(annotations, ANN_STORAGE_PROVISIONER))
    return annotations[ANN_STORAGE_PROVISIONER];
  return annotations[ANN_BETA_STORAGE_PROVISIONER];
}

/**
 * The claim's StorageClass name: the beta annotation `volume.beta.kubernetes.io/storage-class`
 * when present, else `spec.storageClassName`, else `""`.
 */
export function claimStorageClassName(claim: PersistentVolumeClaim): string {
  const annotations = claim.metadata.annotations ?? {};
  if (Object.hasOwn(annotations, ANN_BETA_STORAGE_CLASS))
    return annotations[ANN_BETA_STORAGE_CLASS]!;
  return claim.spec.storageClassName ?? "";
}

/** The PV's class: the beta annotation first, then `spec.storageClassName`, else `""`. */
export function volumeStorageClassName(pv: PersistentVolume): string {
  const annotations = pv.metadata.annotations ?? {};
  if (Object.hasOwn(annotations, ANN_BETA_STORAGE_CLASS))
    return annotations[ANN_BETA_STORAGE_CLASS]!;
  return pv.spec.storageClassName ?? "";
}

/**
 * The node the scheduler selected for the claim (`volume.kubernetes.io/selected-node`, or the
 * alpha annotation), `undefined` when none (or empty).
 */
export function claimSelectedNode(claim: PersistentVolumeClaim): string | undefined {
  const annotations = claim.metadata.annotations ?? {};
  for (const key of [ANN_SELECTED_NODE, ANN_ALPHA_SELECTED_NODE]) {
    if (Object.hasOwn(annotations, key)) return annotations[key] || undefined;
  }
  return undefined;
}

/**
 * Whether the claim's storage-provisioner annotation (with its beta fallback) names `driverName`,
 * or one of `additionalNames` while `pv.kubernetes.io/migrated-to` names `driverName` (a claim of
 * an in-tree plugin this driver took over). Allocates nothing: informers ask it of every claim.
 */
export function isClaimForDriver(
  claim: PersistentVolumeClaim,
  driverName: string,
  additionalNames: readonly string[] = [],
): boolean {
  const requested = claimProvisionerName(claim);
  if (requested === driverName) return true;
  if (requested === undefined || !additionalNames.includes(requested)) return false;
  return claim.metadata.annotations?.[ANN_MIGRATED_TO] === driverName;
}

/**
 * Whether a PV needs the volume controller now: it is this driver's (see
 * {@link isProvisionerForVolume}) and its finalizer must be added or removed
 * ({@link finalizerAction}) or its volume deleted ({@link shouldDelete}). Any other PV would sync
 * to nothing.
 */
export function volumeNeedsAction(pv: PersistentVolume, knownNames: readonly string[]): boolean {
  return (
    isProvisionerForVolume(pv, knownNames) && (finalizerAction(pv) !== "none" || shouldDelete(pv))
  );
}

export interface ShouldProvisionOptions {
  /** The driver name (GetPluginInfo). */
  driverName: string;
  /** Further names this provisioner answers to; default none. */
  additionalProvisionerNames?: readonly string[];
  /** A StorageClass from the cache by name; `undefined` when it does not exist. */
  getStorageClass: (name: string) => StorageClass | undefined;
}

export type ShouldProvisionResult =
  | {
      kind: "provision";
      storageClass: StorageClass;
      /** The claim's class name (see {@link claimStorageClassName}), the PV's storageClassName. */
      storageClassName: string;
      selectedNode: string | undefined;
    }
  /** Not ours, or nothing to do now: drop the claim silently (no event). */
  | { kind: "skip"; reason: string }
  /** Ours, but its StorageClass does not exist (yet): retry later. */
  | { kind: "noStorageClass"; storageClassName: string; message: string };

/**
 * Whether to provision `claim`:
 * - `spec.volumeName` must be empty;
 * - the storage-provisioner annotation (with its beta fallback) must name this driver (or an
 *   additional name) and, when it names an additional name, `pv.kubernetes.io/migrated-to` must
 *   name the driver;
 * - its StorageClass must exist and name a known provisioner;
 * - with `WaitForFirstConsumer`, the claim needs a selected node.
 *
 * The caller still checks that no PV of the claim's deterministic name exists.
 */
export function shouldProvision(
  claim: PersistentVolumeClaim,
  options: ShouldProvisionOptions,
): ShouldProvisionResult {
  const key = `${claim.metadata.namespace}/${claim.metadata.name}`;
  if (claim.spec.volumeName) {
    return {
      kind: "skip",
      reason: `Claim ${key} is already bound to volume ${claim.spec.volumeName}`,
    };
  }
  const known = (name: string | undefined) =>
    name !== undefined &&
    (name === options.driverName || (options.additionalProvisionerNames ?? []).includes(name));
  if (!isClaimForDriver(claim, options.driverName, options.additionalProvisionerNames)) {
    const requested = claimProvisionerName(claim);
    return {
      kind: "skip",
      reason: `Claim ${key} asks for provisioner ${JSON.stringify(requested ?? "")}, not ${options.driverName}`,
    };
  }
  const storageClassName = claimStorageClassName(claim);
  const storageClass = options.getStorageClass(storageClassName);
  if (!storageClass) {
    return {
      kind: "noStorageClass",
      storageClassName,
      message: `Cannot provision claim ${key}: StorageClass ${JSON.stringify(storageClassName)} not found`,
    };
  }
  if (!known(storageClass.provisioner)) {
    return {
      kind: "skip",
      reason: `Claim ${key}: StorageClass ${storageClassName} names provisioner ${storageClass.provisioner}, not ${options.driverName}`,
    };
  }
  const selectedNode = claimSelectedNode(claim);
  if (storageClass.volumeBindingMode === "WaitForFirstConsumer" && !selectedNode) {
    return { kind: "skip", reason: `Claim ${key} waits for its first consumer (no selected node)` };
  }
  return { kind: "provision", storageClass, storageClassName, selectedNode };
}

export interface NodeDeploymentOptions {
  /** `NODE_NAME`: this instance's node. */
  nodeName: string;
  /** `--node-deployment-immediate-binding`; default true. */
  immediateBinding: boolean;
}

/**
 * In `--node-deployment` mode, whether this instance handles `claim`: `provision` when the claim
 * selected this node, `ignore` when it selected another node or waits for one, and `becomeOwner`
 * for an Immediate-binding claim without a node (the controller then tries to set
 * `selected-node` to this node after its back-off and capacity check).
 */
export function nodeDeploymentDecision(
  claim: PersistentVolumeClaim,
  storageClass: StorageClass,
  options: NodeDeploymentOptions,
): "provision" | "ignore" | "becomeOwner" {
  const selected = claim.metadata.annotations?.[ANN_SELECTED_NODE] ?? "";
  if (selected === options.nodeName) return "provision";
  if (selected !== "") return "ignore";
  return storageClass.volumeBindingMode === "Immediate" && options.immediateBinding
    ? "becomeOwner"
    : "ignore";
}

/**
 * Whether this provisioner is responsible for `pv`: its `pv.kubernetes.io/provisioned-by` (or
 * `pv.kubernetes.io/migrated-to`) is a known name; for a PV without `provisioned-by` (statically
 * provisioned), its `spec.csi.driver` is known, or, without `spec.csi`, its `migrated-to` is.
 */
export function isProvisionerForVolume(
  pv: PersistentVolume,
  knownNames: readonly string[],
): boolean {
  const annotations = pv.metadata.annotations ?? {};
  const known = (name: string | undefined) => name !== undefined && knownNames.includes(name);
  if (Object.hasOwn(annotations, ANN_DYNAMICALLY_PROVISIONED)) {
    return known(annotations[ANN_DYNAMICALLY_PROVISIONED]) || known(annotations[ANN_MIGRATED_TO]);
  }
  if (pv.spec.csi) return known(pv.spec.csi.driver);
  return known(annotations[ANN_MIGRATED_TO]);
}

/**
 * What to do with the PV finalizer (upstream `handleProtectionFinalizer` with `AddFinalizer(true)`):
 * - `add` when the reclaim policy is Delete, the PV is Bound and not being deleted, and the
 *   finalizer is missing (this also covers existing and statically provisioned CSI PVs);
 * - `remove` when the reclaim policy is Retain or Recycle and the finalizer is present;
 * - `none` otherwise.
 */
export function finalizerAction(pv: PersistentVolume): "add" | "remove" | "none" {
  const has = (pv.metadata.finalizers ?? []).includes(FINALIZER_PV);
  const policy = pv.spec.persistentVolumeReclaimPolicy;
  if (policy === "Retain" || policy === "Recycle") return has ? "remove" : "none";
  if (
    policy === "Delete" &&
    !has &&
    !pv.metadata.deletionTimestamp &&
    pv.status?.phase === "Bound"
  ) {
    return "add";
  }
  return "none";
}

/** `finalizers` with `finalizer` appended when missing. */
export function withFinalizer(
  finalizers: readonly string[] | undefined,
  finalizer = FINALIZER_PV,
): string[] {
  const list = [...(finalizers ?? [])];
  if (!list.includes(finalizer)) list.push(finalizer);
  return list;
}

/** `finalizers` without any `finalizer`. */
export function withoutFinalizer(
  finalizers: readonly string[] | undefined,
  finalizer = FINALIZER_PV,
): string[] {
  return (finalizers ?? []).filter((f) => f !== finalizer);
}

/**
 * Whether the backend volume of `pv` should be deleted: the PV is `Released` with reclaim policy
 * `Delete`, and it is not a PV being deleted whose finalizer is already gone (its volume was
 * deleted).
 */
export function shouldDelete(pv: PersistentVolume): boolean {
  const has = (pv.metadata.finalizers ?? []).includes(FINALIZER_PV);
  if (!has && pv.metadata.deletionTimestamp) return false;
  return pv.status?.phase === "Released" && pv.spec.persistentVolumeReclaimPolicy === "Delete";
}

/**
 * A VolumeAttachment that still references `pvName`, which blocks DeleteVolume, or `undefined`.
 * Pass `[]` when the driver has no `PUBLISH_UNPUBLISH_VOLUME` capability (nothing is checked).
 */
export function blockingAttachment(
  pvName: string,
  attachments: readonly VolumeAttachment[],
): VolumeAttachment | undefined {
  return attachments.find((va) => va.spec.source.persistentVolumeName === pvName);
}

/** The error of {@link blockingAttachment}: `persistentvolume X is still attached to node Y`. */
export function attachedMessage(pvName: string, attachment: VolumeAttachment): string {
  return `persistentvolume ${pvName} is still attached to node ${attachment.spec.nodeName}`;
}
