/**
 * PVC + StorageClass -> CreateVolumeRequest (upstream `prepareProvision`), step for step:
 *
 *  1. a StorageClass is required;
 *  2. the data source (`dataSource`, else `dataSourceRef`; a cross-namespace one needs the gate
 *     and a ReferenceGrant);
 *  3. its kind: a VolumeSnapshot (API group `snapshot.storage.k8s.io`) or a PVC clone; any other
 *     kind is left to an external populator (a `populator` result, not an error);
 *  4. the driver capabilities (CONTROLLER_SERVICE, CREATE_DELETE_VOLUME, and CREATE_DELETE_SNAPSHOT,
 *     CLONE_VOLUME or MODIFY_VOLUME as needed);
 *  5. `spec.selector` is rejected;
 *  6. the deterministic name; the fsType; the capacity; the volume capabilities;
 *  7. the content source (clone or snapshot checks, on the looked-up objects);
 *  8. topology;
 *  9. the secrets (the provisioner secret is read through `lookups.getSecret`);
 * 10. the parameters (reserved keys stripped, `--extra-create-metadata`);
 * 11. the VolumeAttributesClass (its driver must match; its parameters become
 *     `mutable_parameters`).
 *
 * Everything the API knows comes in through {@link ProvisionLookups}; nothing else is read, and
 * nothing is written: the controller adds the source-protection finalizer the result names, and
 * emits the events. The Secret's data is read here (an async `getSecret`), so the returned
 * request is complete; it carries credentials and must never be logged or persisted.
 *
 * Outcomes of a failure follow upstream: configuration errors are `finished`; errors reading or
 * validating the data source, topology, secrets or the VolumeAttributesClass are `noChange`; a
 * selected Node or CSINode that vanished is `reschedule`.
 */
import { create } from "@bufbuild/protobuf";
import {
  ControllerServiceCapability_RPC_Type,
  type CreateVolumeRequest,
  CreateVolumeRequestSchema,
  type VolumeContentSource,
} from "../gen/csi/v1/csi_pb.js";
import type {
  CSINode,
  Node,
  PersistentVolume,
  PersistentVolumeClaim,
  Secret,
  StorageClass,
  VolumeAttributesClass,
  VolumeSnapshot,
  VolumeSnapshotContent,
} from "../kube/objects.ts";
import type { Random } from "../util/clock.ts";
import { errorText as errorMessage } from "../util/errors.ts";
import {
  buildVolumeCapabilities,
  type DriverCapabilities,
  missingCapability,
  supportsTopology,
} from "./capabilities.ts";
import { addClaimMetadata } from "./claim-metadata.ts";
import {
  CLONE_PROTECTION_FINALIZER,
  checkReferenceGrant,
  claimDataSource,
  cloneContentSource,
  type DataSource,
  PVC_KIND,
  type ReferenceGrant,
  SNAPSHOT_API_GROUP,
  SNAPSHOT_KIND,
  SNAPSHOT_PROTECTION_FINALIZER,
  snapshotContentSource,
} from "./data-source.ts";
import { volumeNameForClaim } from "./names.ts";
import { mayReschedule as mayRescheduleFor } from "./outcome.ts";
import { buildCreateParameters, resolveFsType } from "./parameters.ts";
import { INT64_MAX, parseQuantity } from "./quantity.ts";
import {
  resolveSecretReference,
  SECRET_KINDS,
  type SecretReferences,
  secretCredentials,
} from "./secrets.ts";
import { claimSelectedNode } from "./should-provision.ts";
import { accessibilityRequirements, type TopologyMemo } from "./topology.ts";

/** The provisioner's fixed configuration: flags, feature gates and what the driver reported. */
export interface ProvisionerConfig {
  /** The driver name (GetPluginInfo). */
  driverName: string;
  /** GetPluginCapabilities and ControllerGetCapabilities. */
  capabilities: DriverCapabilities;
  /** `--volume-name-prefix`; default `pvc`. */
  volumeNamePrefix: string;
  /** `--volume-name-uuid-length`; default -1. */
  volumeNameUuidLength: number;
  /** `--default-fstype`; default `""`. */
  defaultFsType?: string;
  /** `--extra-create-metadata`; default false. */
  extraCreateMetadata?: boolean;
  /** `--claim-metadata-prefixes`; default none (see `claim-metadata.ts`). */
  claimMetadataPrefixes?: readonly string[];
  /** `--strict-topology`; default false. */
  strictTopology?: boolean;
  /** `--immediate-topology`; default true. */
  immediateTopology?: boolean;
  /** `--prevent-volume-mode-conversion`; default true. */
  preventVolumeModeConversion?: boolean;
  /** `--controller-publish-readonly`; default false. Read by `buildPersistentVolume`. */
  controllerPublishReadOnly?: boolean;
  /** `--feature-gates`. */
  features?: {
    /** `Topology`; default true. */
    topology?: boolean;
    /** `VolumeAttributesClass`; default true. */
    volumeAttributesClass?: boolean;
    /** `CrossNamespaceVolumeDataSource`; default false. */
    crossNamespaceVolumeDataSource?: boolean;
  };
}

/**
 * Reads from the API or the caches. A getter answers `undefined` for an object that does not
 * exist and throws for any other failure (the attempt then ends with `noChange`).
 */
export interface ProvisionLookups {
  /** A Secret by API GET (the provisioner secret). */
  getSecret(namespace: string, name: string): Promise<Secret | undefined>;
  /** A PVC from the cache (a clone's source). */
  getClaim(namespace: string, name: string): Promise<PersistentVolumeClaim | undefined>;
  /** A PV by API GET (a clone source's volume). */
  getVolume(name: string): Promise<PersistentVolume | undefined>;
  /** A VolumeSnapshot by API GET. */
  getVolumeSnapshot(namespace: string, name: string): Promise<VolumeSnapshot | undefined>;
  /** A VolumeSnapshotContent by API GET. */
  getVolumeSnapshotContent(name: string): Promise<VolumeSnapshotContent | undefined>;
  /** A VolumeAttributesClass by API GET. */
  getVolumeAttributesClass(name: string): Promise<VolumeAttributesClass | undefined>;
  /** A namespace's labels by API GET (may be cached); needed only with `--claim-metadata-prefixes`. */
  getNamespaceLabels?(name: string): Promise<Readonly<Record<string, string>> | undefined>;
  /** ReferenceGrants of a namespace; needed only with CrossNamespaceVolumeDataSource. */
  listReferenceGrants?(namespace: string): Promise<ReferenceGrant[]>;
  /** Every CSINode (cache); read only when topology is in use. */
  csiNodes(): readonly CSINode[];
  /** Every Node (cache); read only when topology is in use. */
  nodes(): readonly Node[];
}

export interface BuildRequestInput {
  config: ProvisionerConfig;
  claim: PersistentVolumeClaim;
  /** The claim's StorageClass; `undefined` when missing. */
  storageClass: StorageClass | undefined;
  /** Default: the claim's `volume.kubernetes.io/selected-node` (or alpha) annotation. */
  selectedNode?: string;
  lookups: ProvisionLookups;
  /** Shuffles CSINodes for immediate-binding topology. */
  random: Random;
  /** The topology memo of the previous attempt for this claim (see `topology.ts`). */
  topologyMemo?: TopologyMemo;
}

/** A finalizer the controller must put on the data source before CreateVolume. */
export interface SourceProtection {
  kind: typeof PVC_KIND | typeof SNAPSHOT_KIND;
  namespace: string;
  name: string;
  finalizer: string;
  /** Whether the looked-up source already has it (then nothing needs writing). */
  present: boolean;
}

export interface PreparedRequest {
  kind: "ok";
  /** The complete request, credentials included: never log or persist it. */
  request: CreateVolumeRequest;
  /** The PV name; equal to `request.name`. */
  pvName: string;
  /** The fsType (`""` for none); the PV gets it unless the claim is Block. */
  fsType: string;
  /** The secret references of every kind the class names. */
  secretRefs: SecretReferences;
  /** Whether topology is in use (gate and driver capability). */
  supportsTopology: boolean;
  selectedNode: string | undefined;
  /** Whether a ResourceExhausted CreateVolume may be answered by rescheduling. */
  mayReschedule: boolean;
  /** To keep for the next attempt while provisioning may be in progress (topology only). */
  topologyMemo: TopologyMemo | undefined;
  /** The normalised data source, when the claim has one. */
  dataSource: DataSource | undefined;
  sourceProtection: SourceProtection | undefined;
  /** The VolumeAttributesClass name used (gate on, set on the claim). */
  volumeAttributesClassName: string | undefined;
  /** Things worth a warning log: deprecated keys, a restore larger than its snapshot. */
  warnings: string[];
}

export type BuildRequestResult =
  | PreparedRequest
  | {
      kind: "error";
      outcome: "finished" | "noChange" | "reschedule";
      /** The cause, in upstream's words where it has them (the ProvisioningFailed event). */
      message: string;
      /** Set when topology ran: keep it (noChange) or drop it (finished, reschedule). */
      topologyMemo?: TopologyMemo;
    }
  | {
      /** Another controller populates the volume: emit the Normal event, stop, no retry. */
      kind: "populator";
      /** The event message: `Assuming an external populator will provision the volume`. */
      message: string;
      dataSource: DataSource;
    };

/** Builds the CreateVolumeRequest for a claim, or says why not (see the module doc). */
export async function buildCreateVolumeRequest(
  input: BuildRequestInput,
): Promise<BuildRequestResult> {
  const { config, claim, lookups } = input;
  let topologyMemo: TopologyMemo | undefined;
  const fail = (
    outcome: "finished" | "noChange" | "reschedule",
    cause: string,
  ): BuildRequestResult => {
    const result: BuildRequestResult = { kind: "error", outcome, message: cause };
    if (topologyMemo) result.topologyMemo = topologyMemo;
    return result;
  };
  const features = config.features ?? {};
  const warnings: string[] = [];

  // 1. StorageClass.
  const storageClass = input.storageClass;
  if (!storageClass) return fail("finished", "its StorageClass was not found");

  // 2. Data source.
  let dataSource: DataSource | undefined;
  try {
    dataSource = claimDataSource(claim, features.crossNamespaceVolumeDataSource ?? false);
    if (dataSource && dataSource.namespace !== claim.metadata.namespace) {
      if (!lookups.listReferenceGrants) {
        throw new Error("cannot check ReferenceGrants: no lookup configured");
      }
      checkReferenceGrant(
        claim,
        dataSource,
        await lookups.listReferenceGrants(dataSource.namespace),
      );
    }
  } catch (error) {
    return fail("finished", errorMessage(error));
  }

  // 3. Data source kind.
  let snapshot = false;
  let clone = false;
  if (dataSource) {
    if (dataSource.name === "") {
      return fail("finished", `the PVC source not found for PVC ${claim.metadata.name ?? ""}`);
    }
    if (dataSource.kind === SNAPSHOT_KIND) {
      if (dataSource.apiGroup !== SNAPSHOT_API_GROUP) {
        return fail(
          "finished",
          `the PVC source does not belong to the right APIGroup. Expected ${SNAPSHOT_API_GROUP}, Got ${dataSource.apiGroup}`,
        );
      }
      snapshot = true;
    } else if (dataSource.kind === PVC_KIND && dataSource.apiGroup === "") {
      clone = true;
    } else {
      return {
        kind: "populator",
        message: "Assuming an external populator will provision the volume",
        dataSource,
      };
    }
  }

  // 4. VolumeAttributesClass and driver capabilities.
  const vacName =
    (features.volumeAttributesClass ?? true)
      ? claim.spec.volumeAttributesClassName || undefined
      : undefined;
  const missing = missingCapability(config.capabilities, {
    snapshot,
    clone,
    modifyVolume: vacName !== undefined,
  });
  if (missing) return fail("finished", missing);

  // 5. Selector.
  if (claim.spec.selector != null) return fail("finished", "claim Selector is not supported");

  // 6. Name, fsType, capacity, capabilities.
  let pvName: string;
  let fsType: string;
  let requiredBytes: bigint;
  let volumeCapabilities: CreateVolumeRequest["volumeCapabilities"];
  try {
    pvName = volumeNameForClaim(claim, config);
    const fs = resolveFsType(storageClass.parameters, config.defaultFsType ?? "");
    fsType = fs.fsType;
    if (fs.deprecatedKey) {
      warnings.push(
        `StorageClass parameter "${fs.deprecatedKey}" is deprecated and will be removed in a future release, please use "csi.storage.k8s.io/fstype" instead`,
      );
    }
    const request = claim.spec.resources?.requests?.storage;
    requiredBytes = request === undefined ? 0n : parseQuantity(request);
    if (requiredBytes < 0n || requiredBytes > INT64_MAX) {
      throw new Error(`storage request ${request} is out of range`);
    }
    volumeCapabilities = buildVolumeCapabilities({
      accessModes: claim.spec.accessModes ?? [],
      fsType,
      mountOptions: storageClass.mountOptions ?? [],
      supportsSingleNodeMultiWriter: config.capabilities.controller.has(
        ControllerServiceCapability_RPC_Type.SINGLE_NODE_MULTI_WRITER,
      ),
      ...(claim.spec.volumeMode ? { volumeMode: claim.spec.volumeMode } : {}),
    });
  } catch (error) {
    return fail("finished", errorMessage(error));
  }

  // 7. Content source.
  let volumeContentSource: VolumeContentSource | undefined;
  let sourceProtection: SourceProtection | undefined;
  if (dataSource) {
    try {
      const found = await resolveContentSource(input, storageClass, dataSource, clone);
      volumeContentSource = found.contentSource;
      sourceProtection = found.protection;
      if (found.warning) warnings.push(found.warning);
    } catch (error) {
      const describe = `DataSource Type ${dataSource.kind} by Name ${dataSource.name}`;
      return fail("noChange", `error getting handle for ${describe}: ${errorMessage(error)}`);
    }
  }

  // 8. Topology.
  const topology = supportsTopology(config.capabilities, features.topology ?? true);
  const selectedNode = input.selectedNode ?? claimSelectedNode(claim);
  let accessibility: CreateVolumeRequest["accessibilityRequirements"];
  if (topology) {
    const result = accessibilityRequirements({
      driverName: config.driverName,
      claimName: claim.metadata.name ?? "",
      strictTopology: config.strictTopology ?? false,
      immediateTopology: config.immediateTopology ?? true,
      csiNodes: lookups.csiNodes(),
      nodes: lookups.nodes(),
      random: input.random,
      ...(storageClass.allowedTopologies
        ? { allowedTopologies: storageClass.allowedTopologies }
        : {}),
      ...(selectedNode ? { selectedNode } : {}),
      ...(input.topologyMemo ? { memo: input.topologyMemo } : {}),
    });
    topologyMemo = result.memo;
    if (result.kind === "error") {
      return result.reschedule
        ? fail("reschedule", result.message)
        : fail("noChange", `error generating accessibility requirements: ${result.message}`);
    }
    accessibility = result.requirement;
  }

  // 9. Secrets.
  const resolved = await resolveSecrets(claim, storageClass, pvName, lookups);
  if ("problem" in resolved) return fail("noChange", resolved.problem);
  const { secretRefs, secrets } = resolved;

  // 10. Parameters.
  let parameters: Record<string, string>;
  try {
    parameters = buildCreateParameters({
      parameters: storageClass.parameters,
      extraCreateMetadata: config.extraCreateMetadata ?? false,
      pvcName: claim.metadata.name ?? "",
      pvcNamespace: claim.metadata.namespace ?? "",
      pvName,
    });
  } catch (error) {
    return fail(
      "finished",
      `failed to strip CSI Parameters of prefixed keys: ${errorMessage(error)}`,
    );
  }
  const metadataProblem = await addClaimMetadata(
    parameters,
    config.claimMetadataPrefixes,
    claim,
    lookups.getNamespaceLabels?.bind(lookups),
  );
  if (metadataProblem) return fail("noChange", metadataProblem);

  // 11. VolumeAttributesClass.
  let mutableParameters: Record<string, string> = {};
  if (vacName !== undefined) {
    const vac = await volumeAttributesClassParameters(vacName, lookups, config.driverName);
    if ("problem" in vac) return fail(vac.outcome, vac.problem);
    mutableParameters = vac.parameters;
  }

  const request = create(CreateVolumeRequestSchema, {
    name: pvName,
    capacityRange: { requiredBytes },
    volumeCapabilities,
    parameters,
    secrets,
    mutableParameters,
    ...(volumeContentSource ? { volumeContentSource } : {}),
    ...(accessibility ? { accessibilityRequirements: accessibility } : {}),
  });

  return {
    kind: "ok",
    request,
    pvName,
    fsType,
    secretRefs,
    supportsTopology: topology,
    selectedNode,
    mayReschedule: mayRescheduleFor(topology, selectedNode),
    topologyMemo,
    dataSource,
    sourceProtection,
    volumeAttributesClassName: vacName,
    warnings,
  };
}

/**
 * The content source of a clone or a restore, and the finalizer its source needs; throws when
 * a lookup fails or the source cannot be used.
 */
async function resolveContentSource(
  input: BuildRequestInput,
  storageClass: StorageClass,
  dataSource: DataSource,
  clone: boolean,
): Promise<{
  contentSource: VolumeContentSource | undefined;
  protection: SourceProtection;
  warning?: string;
}> {
  const { claim, lookups, config } = input;
  if (clone) {
    const sourceClaim = await lookups.getClaim(dataSource.namespace, dataSource.name);
    const volumeName = sourceClaim?.spec.volumeName;
    const sourceVolume = volumeName ? await lookups.getVolume(volumeName) : undefined;
    return {
      contentSource: cloneContentSource({
        claim,
        storageClass,
        source: dataSource,
        sourceClaim,
        sourceVolume,
      }),
      protection: {
        kind: PVC_KIND,
        namespace: dataSource.namespace,
        name: dataSource.name,
        finalizer: CLONE_PROTECTION_FINALIZER,
        present: (sourceClaim?.metadata.finalizers ?? []).includes(CLONE_PROTECTION_FINALIZER),
      },
    };
  }
  const snap = await lookups.getVolumeSnapshot(dataSource.namespace, dataSource.name);
  const contentName = snap?.status?.boundVolumeSnapshotContentName;
  const content = contentName ? await lookups.getVolumeSnapshotContent(contentName) : undefined;
  const result = snapshotContentSource({
    claim,
    storageClass,
    source: dataSource,
    snapshot: snap,
    content,
    preventVolumeModeConversion: config.preventVolumeModeConversion ?? true,
  });
  return {
    contentSource: result.contentSource,
    protection: {
      kind: SNAPSHOT_KIND,
      namespace: dataSource.namespace,
      name: dataSource.name,
      finalizer: SNAPSHOT_PROTECTION_FINALIZER,
      present: (snap?.metadata.finalizers ?? []).includes(SNAPSHOT_PROTECTION_FINALIZER),
    },
    ...(result.warning ? { warning: result.warning } : {}),
  };
}

/**
 * The secret references the class names (every kind) and the provisioner secret's credentials,
 * or the problem (a bad template, a secret that cannot be read).
 */
async function resolveSecrets(
  claim: PersistentVolumeClaim,
  storageClass: StorageClass,
  pvName: string,
  lookups: ProvisionLookups,
): Promise<
  { secretRefs: SecretReferences; secrets: Record<string, string> } | { problem: string }
> {
  const templateClaim = {
    name: claim.metadata.name ?? "",
    namespace: claim.metadata.namespace ?? "",
    ...(claim.metadata.annotations ? { annotations: claim.metadata.annotations } : {}),
  };
  const secretRefs: SecretReferences = {};
  let secrets: Record<string, string> = {};
  for (const kind of SECRET_KINDS) {
    let ref: ReturnType<typeof resolveSecretReference>;
    try {
      ref = resolveSecretReference(kind, storageClass.parameters, pvName, templateClaim);
    } catch (error) {
      return { problem: errorMessage(error) };
    }
    if (!ref) continue;
    secretRefs[kind] = ref;
    if (kind === "provisioner") {
      const where = `error getting secret ${ref.name} in namespace ${ref.namespace}`;
      try {
        const secret = await lookups.getSecret(ref.namespace ?? "", ref.name ?? "");
        if (!secret) return { problem: `${where}: secrets ${JSON.stringify(ref.name)} not found` };
        secrets = secretCredentials(secret);
      } catch (error) {
        return { problem: `${where}: ${errorMessage(error)}` };
      }
    }
  }
  return { secretRefs, secrets };
}

/** The parameters of VolumeAttributesClass `name`, or why it cannot be used. */
async function volumeAttributesClassParameters(
  name: string,
  lookups: ProvisionLookups,
  driverName: string,
): Promise<
  { parameters: Record<string, string> } | { outcome: "finished" | "noChange"; problem: string }
> {
  let vac: VolumeAttributesClass | undefined;
  try {
    vac = await lookups.getVolumeAttributesClass(name);
  } catch (error) {
    return { outcome: "noChange", problem: errorMessage(error) };
  }
  if (!vac) {
    return {
      outcome: "noChange",
      problem: `volumeattributesclasses.storage.k8s.io ${JSON.stringify(name)} not found`,
    };
  }
  if (vac.driverName !== driverName) {
    return {
      outcome: "finished",
      problem: `VAC ${name} referenced in PVC is for driver ${vac.driverName} which does not match driver name ${driverName}`,
    };
  }
  return { parameters: { ...(vac.parameters ?? {}) } };
}
