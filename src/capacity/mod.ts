/**
 * Storage capacity tracking (`--enable-capacity`): the CSIStorageCapacity controller, the owner
 * lookup for `--capacity-ownerref-level`, and the label and topology helpers.
 */
export type {
  CapacityController,
  CapacityControllerOptions,
  CapacityEvent,
  CapacityStats,
  CapacityTopology,
  SourceInformer,
} from "./controller.ts";
export { createCapacityController } from "./controller.ts";
export {
  capacityLabelSelector,
  capacityLabels,
  DRIVER_NAME_LABEL,
  MANAGED_BY_CENTRAL,
  MANAGED_BY_LABEL,
  managedByValue,
  nameWithMaxLength,
} from "./names.ts";
export type { CapacityOwner } from "./owner.ts";
export { resolveOwner } from "./owner.ts";
export type { Segment } from "./topology.ts";
export { nodeSegments, segmentFromMap } from "./topology.ts";
