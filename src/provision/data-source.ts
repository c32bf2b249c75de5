/**
 * Claim data sources (upstream `dataSource`, `getPVCSource`, `getSnapshotSource`, `IsGranted`):
 * which object a claim is populated from, and the checks that make a clone or a snapshot restore
 * safe, given the looked-up objects.
 */
import { create } from "@bufbuild/protobuf";
import { type VolumeContentSource, VolumeContentSourceSchema } from "../gen/csi/v1/csi_pb.js";
import type {
  KubeObject,
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
  VolumeSnapshot,
  VolumeSnapshotContent,
} from "../kube/objects.ts";
import { parseQuantity } from "./quantity.ts";

export const SNAPSHOT_KIND = "VolumeSnapshot";
export const SNAPSHOT_API_GROUP = "snapshot.storage.k8s.io";
export const PVC_KIND = "PersistentVolumeClaim";
/** Added to a clone's source PVC while the clone is provisioned. */
export const CLONE_PROTECTION_FINALIZER = "provisioner.storage.kubernetes.io/cloning-protection";
/** Added to a restore's source VolumeSnapshot while the restore is provisioned. */
export const SNAPSHOT_PROTECTION_FINALIZER =
  "provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection";
/** On a VolumeSnapshotContent: allows a restore to change the volume mode. */
export const ANN_ALLOW_VOLUME_MODE_CHANGE =
  "snapshot.storage.kubernetes.io/allow-volume-mode-change";

/** A claim's data source, normalised from `spec.dataSource` or `spec.dataSourceRef`. */
export interface DataSource {
  kind: string;
  name: string;
  /** `""` for the core group. */
  apiGroup: string;
  /** The claim's namespace unless a cross-namespace `dataSourceRef` names another. */
  namespace: string;
}

/**
 * The claim's data source: `spec.dataSource` (in the claim's namespace), else
 * `spec.dataSourceRef`, whose `namespace` needs the CrossNamespaceVolumeDataSource feature gate.
 * `undefined` when there is none. Throws for a cross-namespace reference with the gate off.
 */
export function claimDataSource(
  claim: PersistentVolumeClaim,
  crossNamespaceVolumeDataSource = false,
): DataSource | undefined {
  const namespace = claim.metadata.namespace ?? "";
  const ds = claim.spec.dataSource;
  if (ds) return { kind: ds.kind, name: ds.name, apiGroup: ds.apiGroup ?? "", namespace };
  const ref = claim.spec.dataSourceRef;
  if (!ref) return undefined;
  if (ref.namespace && !crossNamespaceVolumeDataSource) {
    throw new Error(
      "dataSourceRef namespace specified but the CrossNamespaceVolumeDataSource feature is disabled",
    );
  }
  return {
    kind: ref.kind,
    name: ref.name,
    apiGroup: ref.apiGroup ?? "",
    namespace: ref.namespace || namespace,
  };
}

/** The fields of a gateway.networking.k8s.io/v1beta1 ReferenceGrant that are read. */
export interface ReferenceGrant extends KubeObject {
  spec: {
    from: { group: string; kind: string; namespace: string }[];
    to: { group: string; kind: string; name?: string }[];
  };
}

/**
 * Whether a ReferenceGrant in the source's namespace allows `claim` to use its cross-namespace
 * `dataSourceRef` (from: core PersistentVolumeClaims of the claim's namespace; to: the source's
 * group and kind, any name or this name). Throws `accessing ... isn't allowed` otherwise.
 */
export function checkReferenceGrant(
  claim: PersistentVolumeClaim,
  source: DataSource,
  grants: readonly ReferenceGrant[],
): void {
  const claimNamespace = claim.metadata.namespace ?? "";
  for (const grant of grants) {
    if (grant.metadata.namespace !== source.namespace) continue;
    const validFrom = grant.spec.from.some(
      (from) => from.group === "" && from.kind === PVC_KIND && from.namespace === claimNamespace,
    );
    if (!validFrom) continue;
    const allowed = grant.spec.to.some(
      (to) =>
        to.group === source.apiGroup &&
        to.kind === source.kind &&
        (!to.name || to.name === source.name),
    );
    if (allowed) return;
  }
  throw new Error(
    `accessing ${source.namespace}/${source.name} of ${source.kind} dataSource from ${claimNamespace}/${claim.metadata.name} isn't allowed`,
  );
}

function storageRequest(claim: PersistentVolumeClaim): string | undefined {
  return claim.spec.resources?.requests?.storage;
}

function requestedBytes(claim: PersistentVolumeClaim): bigint {
  const request = storageRequest(claim);
  return request === undefined ? 0n : parseQuantity(request);
}

export interface CloneInput {
  claim: PersistentVolumeClaim;
  storageClass: StorageClass;
  source: DataSource;
  /** The source PVC from the cache; `undefined` when it does not exist. */
  sourceClaim: PersistentVolumeClaim | undefined;
  /** The source claim's PV (read from the API); `undefined` when it does not exist. */
  sourceVolume: PersistentVolume | undefined;
}

/**
 * The content source of a clone: the source claim must be Bound, not being deleted, have a
 * storageClassName (as must the new claim), be no larger than the new claim's request and name a
 * volume; that volume must be a CSI volume of this class's driver, bound to the source claim
 * (claimRef UID, namespace, name) and in phase Bound; and the volume modes must match.
 * Throws the first violated rule.
 */
export function cloneContentSource(input: CloneInput): VolumeContentSource {
  const { claim, source, sourceClaim, sourceVolume } = input;
  if (!sourceClaim) {
    // Upstream's words (its lister's NotFound names the resource in the singular).
    throw new Error(
      `error getting PVC ${source.name} (namespace ${JSON.stringify(source.namespace)}) from api server: persistentvolumeclaim ${JSON.stringify(source.name)} not found`,
    );
  }
  if (sourceClaim.status?.phase !== "Bound") {
    throw new Error(
      `the PVC DataSource ${source.name} must have a status of Bound, got ${JSON.stringify(sourceClaim.status?.phase ?? "")}`,
    );
  }
  if (sourceClaim.metadata.deletionTimestamp) {
    throw new Error(`the PVC DataSource ${source.name} is currently being deleted`);
  }
  if (sourceClaim.spec.storageClassName == null) {
    throw new Error(`the source PVC (${source.name}) storageclass cannot be empty`);
  }
  if (claim.spec.storageClassName == null) {
    throw new Error(`the requested PVC (${claim.metadata.name}) storageclass cannot be empty`);
  }
  const requested = requestedBytes(claim);
  const sourceSize = requestedBytes(sourceClaim);
  if (requested < sourceSize) {
    throw new Error(
      `error, new PVC request must be greater than or equal in size to the specified PVC data source, requested ${requested} but source is ${sourceSize}`,
    );
  }
  if (!sourceClaim.spec.volumeName) {
    throw new Error(`volume name is empty in source PVC ${source.name}`);
  }
  const notBound = (why: string) => new Error(`claim in dataSource not bound or invalid: ${why}`);
  if (!sourceVolume) throw notBound(`volume ${sourceClaim.spec.volumeName} not found`);
  const csi = sourceVolume.spec.csi;
  if (!csi) throw notBound(`volume ${sourceClaim.spec.volumeName} is not a CSI volume`);
  if (csi.driver !== input.storageClass.provisioner) {
    throw notBound(
      `volume ${sourceClaim.spec.volumeName} belongs to driver ${csi.driver}, not ${input.storageClass.provisioner}`,
    );
  }
  const ref = sourceVolume.spec.claimRef;
  if (!ref) throw notBound(`volume ${sourceClaim.spec.volumeName} is not bound`);
  if (
    ref.uid !== sourceClaim.metadata.uid ||
    ref.namespace !== sourceClaim.metadata.namespace ||
    ref.name !== sourceClaim.metadata.name
  ) {
    throw notBound(`volume ${sourceClaim.spec.volumeName} is bound to another claim`);
  }
  if (sourceVolume.status?.phase !== "Bound") {
    throw notBound(
      `volume ${sourceClaim.spec.volumeName} is in phase ${JSON.stringify(sourceVolume.status?.phase ?? "")}, not Bound`,
    );
  }
  const wantBlock = claim.spec.volumeMode === "Block";
  const sourceBlock = sourceVolume.spec.volumeMode === "Block";
  if (!wantBlock && sourceVolume.spec.volumeMode && sourceVolume.spec.volumeMode !== "Filesystem") {
    throw new Error(
      "the source PVC and destination PVCs must have the same volume mode for cloning: source is Block, but new PVC requested Filesystem",
    );
  }
  if (wantBlock && !sourceBlock) {
    throw new Error(
      "the source PVC and destination PVCs must have the same volume mode for cloning: source is Filesystem, but new PVC requested Block",
    );
  }
  return create(VolumeContentSourceSchema, {
    type: { case: "volume", value: { volumeId: csi.volumeHandle } },
  });
}

export interface SnapshotInput {
  claim: PersistentVolumeClaim;
  storageClass: StorageClass;
  source: DataSource;
  /** The VolumeSnapshot (read from the API); `undefined` when it does not exist. */
  snapshot: VolumeSnapshot | undefined;
  /** Its bound VolumeSnapshotContent (read from the API); `undefined` when missing. */
  content: VolumeSnapshotContent | undefined;
  /** `--prevent-volume-mode-conversion`; default true. */
  preventVolumeModeConversion: boolean;
}

/** Go's `strconv.ParseBool`. */
function parseGoBool(value: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(value)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(value)) return false;
  return undefined;
}

export interface SnapshotSourceResult {
  contentSource: VolumeContentSource;
  /** Set when the claim asks for more than the snapshot's restore size (the driver must expand). */
  warning?: string;
}

/**
 * The content source of a snapshot restore: the snapshot exists and is not being deleted (unless
 * it still carries our source-protection finalizer, i.e. this restore already started), is bound
 * to a content that points back at it (UID, namespace, name) and belongs to this class's driver,
 * is ready to use and has a snapshot handle; the claim asks for at least the restore size; and with
 * `preventVolumeModeConversion` the volume mode may change only with the content's
 * `snapshot.storage.k8s.io/allow-volume-mode-change: "true"`. Throws the first violated rule.
 */
export function snapshotContentSource(input: SnapshotInput): SnapshotSourceResult {
  const { claim, source, snapshot, content } = input;
  const notBound = (why: string) => new Error(`snapshot ${source.name} not bound: ${why}`);
  if (!snapshot) {
    throw new Error(
      `error getting snapshot ${source.name} from api server: volumesnapshots.snapshot.storage.k8s.io ${JSON.stringify(source.name)} not found`,
    );
  }
  if (
    snapshot.metadata.deletionTimestamp &&
    !(snapshot.metadata.finalizers ?? []).includes(SNAPSHOT_PROTECTION_FINALIZER)
  ) {
    throw new Error(`snapshot ${source.name} is being deleted`);
  }
  const contentName = snapshot.status?.boundVolumeSnapshotContentName;
  if (!contentName) throw notBound("no bound VolumeSnapshotContent");
  if (!content) throw notBound(`VolumeSnapshotContent ${contentName} not found`);
  const ref = content.spec.volumeSnapshotRef;
  if (
    ref.uid !== snapshot.metadata.uid ||
    ref.namespace !== snapshot.metadata.namespace ||
    ref.name !== snapshot.metadata.name
  ) {
    throw notBound(`VolumeSnapshotContent ${contentName} is bound to another snapshot`);
  }
  if (content.spec.driver !== input.storageClass.provisioner) {
    throw notBound(
      `VolumeSnapshotContent ${contentName} belongs to driver ${content.spec.driver}, not ${input.storageClass.provisioner}`,
    );
  }
  if (snapshot.status?.readyToUse !== true) throw new Error(`snapshot ${source.name} is not Ready`);
  const handle = content.status?.snapshotHandle;
  if (handle === undefined) throw new Error(`snapshot handle ${source.name} is not available`);

  let warning: string | undefined;
  const restoreSize = snapshot.status?.restoreSize;
  if (restoreSize !== undefined) {
    const request = storageRequest(claim);
    if (request === undefined) {
      throw new Error(
        `error getting capacity for PVC ${claim.metadata.name} when creating snapshot ${snapshot.metadata.name}`,
      );
    }
    const requested = parseQuantity(request);
    const size = parseQuantity(restoreSize);
    if (requested < size) {
      throw new Error(
        `requested volume size ${requested} is less than the size ${size} for the source snapshot ${snapshot.metadata.name}`,
      );
    }
    if (requested > size) {
      warning = `requested volume size ${requested} is greater than the size ${size} for the source snapshot ${snapshot.metadata.name}; the volume plugin needs to handle volume expansion`;
    }
  }

  const sourceMode = content.spec.sourceVolumeMode;
  const claimMode = claim.spec.volumeMode;
  if (input.preventVolumeModeConversion && sourceMode && claimMode && sourceMode !== claimMode) {
    const key = `${claim.metadata.namespace}/${claim.metadata.name}`;
    const prefix = `requested volume ${key} modifies the mode of the source volume but does not have permission to do so`;
    const annotation = content.metadata.annotations?.[ANN_ALLOW_VOLUME_MODE_CHANGE];
    if (annotation === undefined) {
      throw new Error(
        `${prefix}. ${ANN_ALLOW_VOLUME_MODE_CHANGE} annotation is not present on snapshotcontent ${content.metadata.name}`,
      );
    }
    const allowed = parseGoBool(annotation);
    if (allowed === undefined) {
      throw new Error(
        `${prefix}. failed to convert ${ANN_ALLOW_VOLUME_MODE_CHANGE} annotation value to boolean with error: strconv.ParseBool: parsing ${JSON.stringify(annotation)}: invalid syntax`,
      );
    }
    if (!allowed) {
      throw new Error(
        `${prefix}. ${ANN_ALLOW_VOLUME_MODE_CHANGE} is set to false on snapshotcontent ${content.metadata.name}`,
      );
    }
  }

  const contentSource = create(VolumeContentSourceSchema, {
    type: { case: "snapshot", value: { snapshotId: handle } },
  });
  return warning === undefined ? { contentSource } : { contentSource, warning };
}
