/**
 * CreateVolumeResponse -> PersistentVolume (upstream `Provision` after CreateVolume, plus what
 * the library adds: claimRef, finalizer, storageClassName, `pv.kubernetes.io/provisioned-by`).
 *
 * Two answers of the driver are not a PV: a volume smaller than requested (`tooSmall`) and a
 * claim with a data source whose volume came back without `content_source`
 * (`contentSourceMissing`). For both the controller deletes the volume (DeleteVolume with the
 * provisioner secret) and retries: the outcome is `inBackground`.
 *
 * Divergence from upstream, on purpose: upstream's library puts the PV finalizer on every PV it
 * creates and its volume controller removes it again at once when the reclaim policy is Retain or
 * Recycle. We leave it off such PVs in the first place: the same end state without the PATCH.
 */
import type { CreateVolumeResponse, Volume } from "../gen/csi/v1/csi_pb.js";
import { VolumeCapability_AccessMode_Mode } from "../gen/csi/v1/csi_pb.js";
import type {
  CSIPersistentVolumeSource,
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
} from "../kube/objects.ts";
import { formatBinarySI } from "./quantity.ts";
import type { PreparedRequest } from "./request.ts";
import { secretAnnotations } from "./secrets.ts";
import {
  ANN_DYNAMICALLY_PROVISIONED,
  claimStorageClassName,
  FINALIZER_PV,
} from "./should-provision.ts";
import { nodeAffinityFromTopology } from "./topology.ts";

/** `volumeAttributes` key of the provisioner identity. */
export const PROVISIONER_IDENTITY_KEY = "storage.kubernetes.io/csiProvisionerIdentity";

export interface BuildVolumeInput {
  claim: PersistentVolumeClaim;
  storageClass: StorageClass;
  /** The `ok` result of `buildCreateVolumeRequest` for this claim. */
  prepared: Pick<
    PreparedRequest,
    | "request"
    | "pvName"
    | "fsType"
    | "secretRefs"
    | "supportsTopology"
    | "volumeAttributesClassName"
  >;
  /** The driver's answer. */
  response: CreateVolumeResponse;
  /** The driver name (GetPluginInfo). */
  driverName: string;
  /** The provisioner identity (see `provisionerIdentity`). */
  identity: string;
  /** `--controller-publish-readonly`; default false. */
  controllerPublishReadOnly?: boolean;
  /** The CrossNamespaceVolumeDataSource feature gate; default false. */
  crossNamespaceVolumeDataSource?: boolean;
}

export type BuildVolumeResult =
  | { kind: "ok"; volume: PersistentVolume }
  | {
      kind: "tooSmall" | "contentSourceMissing";
      /** The volume to delete. */
      volumeId: string;
      /** `created volume capacity X less than requested capacity Y` / `volume content source missing`. */
      message: string;
    };

function hasDataSource(claim: PersistentVolumeClaim, crossNamespace: boolean): boolean {
  if (claim.spec.dataSource) return true;
  return crossNamespace && !!claim.spec.dataSourceRef?.namespace;
}

/** The PV for a created volume (see the module doc). */
export function buildPersistentVolume(input: BuildVolumeInput): BuildVolumeResult {
  const { claim, storageClass, prepared } = input;
  const volume: Volume | undefined = input.response.volume;
  const volumeId = volume?.volumeId ?? "";
  const requested = prepared.request.capacityRange?.requiredBytes ?? 0n;
  let capacity = volume?.capacityBytes ?? 0n;
  if (capacity === 0n) {
    // CSI allows 0 for "unknown" (NFS-like backends); the API server does not.
    capacity = requested;
  } else if (capacity < requested) {
    return {
      kind: "tooSmall",
      volumeId,
      message: `created volume capacity ${capacity} less than requested capacity ${requested}`,
    };
  }
  if (
    hasDataSource(claim, input.crossNamespaceVolumeDataSource ?? false) &&
    !volume?.contentSource
  ) {
    return { kind: "contentSourceMissing", volumeId, message: "volume content source missing" };
  }

  const capabilities = prepared.request.volumeCapabilities;
  const readOnly =
    (input.controllerPublishReadOnly ?? false) &&
    capabilities.length === 1 &&
    capabilities[0]!.accessMode?.mode === VolumeCapability_AccessMode_Mode.MULTI_NODE_READER_ONLY;

  const refs = prepared.secretRefs;
  const csi: CSIPersistentVolumeSource = {
    driver: input.driverName,
    volumeHandle: volumeId,
    volumeAttributes: {
      [PROVISIONER_IDENTITY_KEY]: input.identity,
      ...(volume?.volumeContext ?? {}),
    },
  };
  if (claim.spec.volumeMode !== "Block" && prepared.fsType !== "") csi.fsType = prepared.fsType;
  if (readOnly) csi.readOnly = true;
  if (refs.controllerPublish) csi.controllerPublishSecretRef = { ...refs.controllerPublish };
  if (refs.nodeStage) csi.nodeStageSecretRef = { ...refs.nodeStage };
  if (refs.nodePublish) csi.nodePublishSecretRef = { ...refs.nodePublish };
  if (refs.controllerExpand) csi.controllerExpandSecretRef = { ...refs.controllerExpand };
  if (refs.nodeExpand) csi.nodeExpandSecretRef = { ...refs.nodeExpand };

  const spec: PersistentVolume["spec"] = {
    accessModes: [...(claim.spec.accessModes ?? [])],
    capacity: { storage: formatBinarySI(capacity) },
    claimRef: {
      kind: "PersistentVolumeClaim",
      namespace: claim.metadata.namespace ?? "",
      name: claim.metadata.name ?? "",
      uid: claim.metadata.uid ?? "",
      apiVersion: "v1",
      resourceVersion: claim.metadata.resourceVersion ?? "",
    },
    csi,
    storageClassName: claimStorageClassName(claim),
  };
  if (storageClass.mountOptions && storageClass.mountOptions.length > 0) {
    spec.mountOptions = [...storageClass.mountOptions];
  }
  if (storageClass.reclaimPolicy) spec.persistentVolumeReclaimPolicy = storageClass.reclaimPolicy;
  if (claim.spec.volumeMode) spec.volumeMode = claim.spec.volumeMode;
  if (prepared.supportsTopology) {
    const affinity = nodeAffinityFromTopology(volume?.accessibleTopology);
    if (affinity) spec.nodeAffinity = affinity;
  }
  if (prepared.volumeAttributesClassName) {
    spec.volumeAttributesClassName = prepared.volumeAttributesClassName;
  }

  const policy = storageClass.reclaimPolicy;
  const pv: PersistentVolume = {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: {
      name: prepared.pvName,
      annotations: {
        [ANN_DYNAMICALLY_PROVISIONED]: storageClass.provisioner,
        ...secretAnnotations(refs),
      },
      ...(policy === "Retain" || policy === "Recycle" ? {} : { finalizers: [FINALIZER_PV] }),
    },
    spec,
  };
  return { kind: "ok", volume: pv };
}

/**
 * Whether an existing PV (a create answered AlreadyExists) is this claim's: its claimRef names the
 * claim's UID, namespace and name. Anything else is another claim's volume and must not be taken
 * for success (upstream #1469).
 */
export function volumeBelongsToClaim(pv: PersistentVolume, claim: PersistentVolumeClaim): boolean {
  const ref = pv.spec.claimRef;
  return (
    !!ref &&
    !!claim.metadata.uid &&
    ref.uid === claim.metadata.uid &&
    ref.namespace === claim.metadata.namespace &&
    ref.name === claim.metadata.name
  );
}
