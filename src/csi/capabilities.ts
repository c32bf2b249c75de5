/**
 * The driver's capability responses as plain typed values: what `GetPluginCapabilities` and
 * `ControllerGetCapabilities` advertise, with the names the CSI spec gives them.
 */
import {
  type ControllerGetCapabilitiesResponse,
  ControllerServiceCapability_RPC_Type,
  ControllerServiceCapability_RPC_TypeSchema,
  type GetPluginCapabilitiesResponse,
  PluginCapability_Service_Type,
  PluginCapability_Service_TypeSchema,
  PluginCapability_VolumeExpansion_Type,
  PluginCapability_VolumeExpansion_TypeSchema,
} from "../gen/csi/v1/csi_pb.js";

export {
  ControllerServiceCapability_RPC_Type as ControllerCapability,
  PluginCapability_Service_Type as PluginServiceCapability,
  PluginCapability_VolumeExpansion_Type as VolumeExpansionCapability,
};

/** What `GetPluginCapabilities` advertised. */
export interface PluginCapabilities {
  /** `Service` capabilities, UNKNOWN excluded. */
  readonly services: ReadonlySet<PluginCapability_Service_Type>;
  /** `VolumeExpansion` capabilities, UNKNOWN excluded. */
  readonly volumeExpansion: ReadonlySet<PluginCapability_VolumeExpansion_Type>;
  /** CONTROLLER_SERVICE: the driver runs the Controller service (required by this sidecar). */
  readonly controllerService: boolean;
  /** VOLUME_ACCESSIBILITY_CONSTRAINTS: volumes may not be reachable from every node (topology). */
  readonly volumeAccessibilityConstraints: boolean;
  /** GROUP_CONTROLLER_SERVICE: the driver runs the GroupController service. */
  readonly groupControllerService: boolean;
  /** SNAPSHOT_METADATA_SERVICE: the driver runs the SnapshotMetadata service. */
  readonly snapshotMetadataService: boolean;
  /** VolumeExpansion ONLINE. */
  readonly onlineExpansion: boolean;
  /** VolumeExpansion OFFLINE. */
  readonly offlineExpansion: boolean;
}

/** What `ControllerGetCapabilities` advertised, UNKNOWN excluded. */
export type ControllerCapabilities = ReadonlySet<ControllerServiceCapability_RPC_Type>;

/** Summarises a `GetPluginCapabilitiesResponse`; entries without a type are skipped (upstream). */
export function summarizePluginCapabilities(
  response: GetPluginCapabilitiesResponse,
): PluginCapabilities {
  const services = new Set<PluginCapability_Service_Type>();
  const volumeExpansion = new Set<PluginCapability_VolumeExpansion_Type>();
  for (const cap of response.capabilities) {
    if (cap.type.case === "service") {
      const t = cap.type.value.type;
      if (t !== PluginCapability_Service_Type.UNKNOWN) services.add(t);
    } else if (cap.type.case === "volumeExpansion") {
      const t = cap.type.value.type;
      if (t !== PluginCapability_VolumeExpansion_Type.UNKNOWN) volumeExpansion.add(t);
    }
  }
  return {
    services,
    volumeExpansion,
    controllerService: services.has(PluginCapability_Service_Type.CONTROLLER_SERVICE),
    volumeAccessibilityConstraints: services.has(
      PluginCapability_Service_Type.VOLUME_ACCESSIBILITY_CONSTRAINTS,
    ),
    groupControllerService: services.has(PluginCapability_Service_Type.GROUP_CONTROLLER_SERVICE),
    snapshotMetadataService: services.has(PluginCapability_Service_Type.SNAPSHOT_METADATA_SERVICE),
    onlineExpansion: volumeExpansion.has(PluginCapability_VolumeExpansion_Type.ONLINE),
    offlineExpansion: volumeExpansion.has(PluginCapability_VolumeExpansion_Type.OFFLINE),
  };
}

/** Summarises a `ControllerGetCapabilitiesResponse`. Entries without an RPC type are skipped. */
export function summarizeControllerCapabilities(
  response: ControllerGetCapabilitiesResponse,
): ControllerCapabilities {
  const caps = new Set<ControllerServiceCapability_RPC_Type>();
  for (const cap of response.capabilities) {
    if (cap.type.case !== "rpc") continue;
    const t = cap.type.value.type;
    if (t !== ControllerServiceCapability_RPC_Type.UNKNOWN) caps.add(t);
  }
  return caps;
}

function enumName(
  schema: { value: Record<number, { name: string } | undefined> },
  value: number,
): string {
  return schema.value[value]?.name ?? `UNKNOWN_${value}`;
}

/** Spec name of a controller capability, e.g. `CREATE_DELETE_VOLUME` (`UNKNOWN_<n>` if newer). */
export function controllerCapabilityName(cap: ControllerServiceCapability_RPC_Type): string {
  return enumName(ControllerServiceCapability_RPC_TypeSchema, cap);
}

/** Spec name of a plugin service capability, e.g. `CONTROLLER_SERVICE`. */
export function pluginServiceCapabilityName(cap: PluginCapability_Service_Type): string {
  return enumName(PluginCapability_Service_TypeSchema, cap);
}

/** Spec name of a volume expansion capability, e.g. `ONLINE`. */
export function volumeExpansionCapabilityName(cap: PluginCapability_VolumeExpansion_Type): string {
  return enumName(PluginCapability_VolumeExpansion_TypeSchema, cap);
}

/**
 * Every advertised plugin capability by name, services first then `VolumeExpansion.<TYPE>`, each
 * group in enum order.
 */
export function pluginCapabilityNames(caps: PluginCapabilities): string[] {
  return [
    ...[...caps.services].sort((a, b) => a - b).map(pluginServiceCapabilityName),
    ...[...caps.volumeExpansion]
      .sort((a, b) => a - b)
      .map((t) => `VolumeExpansion.${volumeExpansionCapabilityName(t)}`),
  ];
}

/** Every advertised controller capability by name, in enum order. */
export function controllerCapabilityNames(caps: ControllerCapabilities): string[] {
  return [...caps].sort((a, b) => a - b).map(controllerCapabilityName);
}
