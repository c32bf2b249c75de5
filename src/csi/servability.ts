/**
 * The verdict `probe` prints: can this sidecar serve the driver, and which of its features the
 * driver's capabilities switch on. The rules are upstream's (reference §1.3, §2.3, §2.9,
 * §2.13).
 */
import {
  type ControllerCapabilities,
  ControllerCapability,
  type PluginCapabilities,
} from "./capabilities.ts";

/** A feature of the sidecar that depends on a driver capability. */
export type FeatureKey =
  | "topology"
  | "cloning"
  | "snapshots"
  | "capacity"
  | "singleNodeMultiWriter"
  | "attachmentCheck"
  | "modifyVolume";

export interface Feature {
  readonly key: FeatureKey;
  /** Short human name, e.g. `Topology`. */
  readonly title: string;
  /** The capability that switches it on, as the spec names it. */
  readonly capability: string;
  /** Whether the driver advertises that capability. */
  readonly enabled: boolean;
  /** One line: what the sidecar does, given `enabled`. */
  readonly explanation: string;
}

export interface Verdict {
  /** True when the driver has CONTROLLER_SERVICE and CREATE_DELETE_VOLUME. */
  readonly servable: boolean;
  /** Why the driver cannot be served; empty when servable. */
  readonly problems: readonly string[];
  /** Every feature, in a fixed order. */
  readonly features: readonly Feature[];
}

interface FeatureRule {
  key: FeatureKey;
  title: string;
  capability: string;
  has: (plugin: PluginCapabilities, controller: ControllerCapabilities) => boolean;
  on: string;
  off: string;
}

const RULES: readonly FeatureRule[] = [
  {
    key: "topology",
    title: "Topology",
    capability: "VOLUME_ACCESSIBILITY_CONSTRAINTS",
    has: (p) => p.volumeAccessibilityConstraints,
    on: "CreateVolume gets accessibility requirements from node topology and allowedTopologies; PVs get node affinity",
    off: "CreateVolume gets no accessibility requirements and PVs get no node affinity",
  },
  {
    key: "cloning",
    title: "Cloning",
    capability: "CLONE_VOLUME",
    has: (_p, c) => c.has(ControllerCapability.CLONE_VOLUME),
    on: "claims with a PersistentVolumeClaim data source are provisioned as clones",
    off: "claims with a PersistentVolumeClaim data source are rejected",
  },
  {
    key: "snapshots",
    title: "Snapshot restore",
    capability: "CREATE_DELETE_SNAPSHOT",
    has: (_p, c) => c.has(ControllerCapability.CREATE_DELETE_SNAPSHOT),
    on: "claims with a VolumeSnapshot data source are restored from the snapshot",
    off: "claims with a VolumeSnapshot data source are rejected",
  },
  {
    key: "capacity",
    title: "Capacity tracking",
    capability: "GET_CAPACITY",
    has: (_p, c) => c.has(ControllerCapability.GET_CAPACITY),
    on: "--enable-capacity publishes CSIStorageCapacity objects from GetCapacity",
    off: "--enable-capacity has nothing to publish: the driver does not report capacity",
  },
  {
    key: "singleNodeMultiWriter",
    title: "Single-node multi-writer",
    capability: "SINGLE_NODE_MULTI_WRITER",
    has: (_p, c) => c.has(ControllerCapability.SINGLE_NODE_MULTI_WRITER),
    on: "ReadWriteOnce maps to SINGLE_NODE_MULTI_WRITER and ReadWriteOncePod to SINGLE_NODE_SINGLE_WRITER",
    off: "ReadWriteOnce and ReadWriteOncePod both map to SINGLE_NODE_WRITER",
  },
  {
    key: "attachmentCheck",
    title: "Attachment check on delete",
    capability: "PUBLISH_UNPUBLISH_VOLUME",
    has: (_p, c) => c.has(ControllerCapability.PUBLISH_UNPUBLISH_VOLUME),
    on: "DeleteVolume waits until no VolumeAttachment refers to the volume",
    off: "DeleteVolume does not check VolumeAttachments (the driver does not attach volumes)",
  },
  {
    key: "modifyVolume",
    title: "VolumeAttributesClass",
    capability: "MODIFY_VOLUME",
    has: (_p, c) => c.has(ControllerCapability.MODIFY_VOLUME),
    on: "claims with a VolumeAttributesClass pass its parameters to CreateVolume as mutable_parameters",
    off: "claims with a VolumeAttributesClass are rejected",
  },
];

/** Judges whether this sidecar can serve a driver with these capabilities, and how. */
export function assessServability(
  plugin: PluginCapabilities,
  controller: ControllerCapabilities,
): Verdict {
  const problems: string[] = [];
  if (!plugin.controllerService) {
    problems.push(
      "the driver does not advertise the CONTROLLER_SERVICE plugin capability: it has no Controller service to create volumes with",
    );
  }
  if (!controller.has(ControllerCapability.CREATE_DELETE_VOLUME)) {
    problems.push(
      "the driver does not advertise the CREATE_DELETE_VOLUME controller capability: it cannot create or delete volumes",
    );
  }
  const features = RULES.map((rule): Feature => {
    const enabled = rule.has(plugin, controller);
    return {
      key: rule.key,
      title: rule.title,
      capability: rule.capability,
      enabled,
      explanation: enabled ? rule.on : rule.off,
    };
  });
  return { servable: problems.length === 0, problems, features };
}
