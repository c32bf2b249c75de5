/**
 * PVC access modes and volume mode -> CSI `VolumeCapability` (upstream `getVolumeCapabilities`
 * with csi-lib-utils `accessmodes.ToCSIAccessMode`), and the driver-capability checks made before
 * provisioning.
 */
import { create } from "@bufbuild/protobuf";
import {
  ControllerServiceCapability_RPC_Type,
  PluginCapability_Service_Type,
  type VolumeCapability,
  VolumeCapability_AccessMode_Mode,
  VolumeCapabilitySchema,
} from "../gen/csi/v1/csi_pb.js";
import type { PersistentVolumeAccessMode, PersistentVolumeMode } from "../kube/objects.ts";

/** What the driver reported in GetPluginCapabilities and ControllerGetCapabilities. */
export interface DriverCapabilities {
  plugin: ReadonlySet<PluginCapability_Service_Type>;
  controller: ReadonlySet<ControllerServiceCapability_RPC_Type>;
}

/**
 * The CSI access mode of one PVC access mode. With the driver's `SINGLE_NODE_MULTI_WRITER`
 * controller capability, ReadWriteOnce maps to `SINGLE_NODE_MULTI_WRITER` and ReadWriteOncePod to
 * `SINGLE_NODE_SINGLE_WRITER`; without it both map to `SINGLE_NODE_WRITER`.
 * Throws for a mode Kubernetes does not define.
 */
export function toCsiAccessMode(
  mode: PersistentVolumeAccessMode,
  supportsSingleNodeMultiWriter: boolean,
): VolumeCapability_AccessMode_Mode {
  switch (mode) {
    case "ReadWriteOncePod":
      return supportsSingleNodeMultiWriter
        ? VolumeCapability_AccessMode_Mode.SINGLE_NODE_SINGLE_WRITER
        : VolumeCapability_AccessMode_Mode.SINGLE_NODE_WRITER;
    case "ReadWriteMany":
      return VolumeCapability_AccessMode_Mode.MULTI_NODE_MULTI_WRITER;
    case "ReadOnlyMany":
      return VolumeCapability_AccessMode_Mode.MULTI_NODE_READER_ONLY;
    case "ReadWriteOnce":
      return supportsSingleNodeMultiWriter
        ? VolumeCapability_AccessMode_Mode.SINGLE_NODE_MULTI_WRITER
        : VolumeCapability_AccessMode_Mode.SINGLE_NODE_WRITER;
    default:
      throw new Error(`Unsupported access mode ${JSON.stringify(mode)}`);
  }
}

export interface VolumeCapabilitiesInput {
  /** `claim.spec.accessModes`, in order; one capability is produced per entry. */
  accessModes: readonly PersistentVolumeAccessMode[];
  /** `claim.spec.volumeMode`; only `Block` selects the block access type. */
  volumeMode?: PersistentVolumeMode;
  /** The resolved fsType (see `resolveFsType`); ignored for Block. */
  fsType: string;
  /** `storageClass.mountOptions`, sent as `mount_flags`; ignored for Block. */
  mountOptions?: readonly string[];
  /** The driver's `SINGLE_NODE_MULTI_WRITER` controller capability. */
  supportsSingleNodeMultiWriter: boolean;
}

/** One `VolumeCapability` per access mode: Block, or Mount with fsType and mount flags. */
export function buildVolumeCapabilities(input: VolumeCapabilitiesInput): VolumeCapability[] {
  return input.accessModes.map((accessMode) => {
    const mode = toCsiAccessMode(accessMode, input.supportsSingleNodeMultiWriter);
    return create(VolumeCapabilitySchema, {
      accessMode: { mode },
      accessType:
        input.volumeMode === "Block"
          ? { case: "block", value: {} }
          : {
              case: "mount",
              value: { fsType: input.fsType, mountFlags: [...(input.mountOptions ?? [])] },
            },
    });
  });
}

export interface RequiredCapabilities {
  /** Restoring from a VolumeSnapshot: needs `CREATE_DELETE_SNAPSHOT`. */
  snapshot?: boolean;
  /** Cloning a PVC: needs `CLONE_VOLUME`. */
  clone?: boolean;
  /** A VolumeAttributesClass on the claim: needs `MODIFY_VOLUME`. */
  modifyVolume?: boolean;
}

/**
 * Why the driver cannot serve a provisioning request, or `undefined` when it can. Always needs the
 * `CONTROLLER_SERVICE` plugin capability and the `CREATE_DELETE_VOLUME` controller capability.
 */
export function missingCapability(
  capabilities: DriverCapabilities,
  required: RequiredCapabilities = {},
): string | undefined {
  if (!capabilities.plugin.has(PluginCapability_Service_Type.CONTROLLER_SERVICE)) {
    return "CSI driver does not support dynamic provisioning: plugin CONTROLLER_SERVICE capability is not reported";
  }
  const controller = capabilities.controller;
  if (!controller.has(ControllerServiceCapability_RPC_Type.CREATE_DELETE_VOLUME)) {
    return "CSI driver does not support dynamic provisioning: controller CREATE_DELETE_VOLUME capability is not reported";
  }
  if (
    required.snapshot &&
    !controller.has(ControllerServiceCapability_RPC_Type.CREATE_DELETE_SNAPSHOT)
  ) {
    return "CSI driver does not support snapshot restore: controller CREATE_DELETE_SNAPSHOT capability is not reported";
  }
  if (required.clone && !controller.has(ControllerServiceCapability_RPC_Type.CLONE_VOLUME)) {
    return "CSI driver does not support clone operations: controller CLONE_VOLUME capability is not reported";
  }
  if (
    required.modifyVolume &&
    !controller.has(ControllerServiceCapability_RPC_Type.MODIFY_VOLUME)
  ) {
    return "CSI driver does not support VolumeAttributesClass: controller MODIFY_VOLUME capability is not reported";
  }
  return undefined;
}

/**
 * Whether topology is in use: the `Topology` feature gate (default on) and the driver's
 * `VOLUME_ACCESSIBILITY_CONSTRAINTS` plugin capability.
 */
export function supportsTopology(capabilities: DriverCapabilities, topologyGate = true): boolean {
  return (
    topologyGate &&
    capabilities.plugin.has(PluginCapability_Service_Type.VOLUME_ACCESSIBILITY_CONSTRAINTS)
  );
}
