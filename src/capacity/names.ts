/**
 * Labels of the CSIStorageCapacity objects this provisioner manages (reference §2.13).
 *
 * Every object carries `csi.storage.k8s.io/drivername=<driver>` and
 * `csi.storage.k8s.io/managed-by=<id>`; the informer watches only objects with both, so several
 * provisioners (one per node in `--node-deployment` mode) can share a namespace without touching
 * each other's objects. The id is `external-provisioner`, or in node mode
 * `external-provisioner-<node>` shortened to a valid label value as upstream does (#1334).
 */

/** Label naming the CSI driver of a CSIStorageCapacity object. */
export const DRIVER_NAME_LABEL = "csi.storage.k8s.io/drivername";
/** Label naming the provisioner instance that manages a CSIStorageCapacity object. */
export const MANAGED_BY_LABEL = "csi.storage.k8s.io/managed-by";
/** The managed-by value of a central (not per-node) provisioner. */
export const MANAGED_BY_CENTRAL = "external-provisioner";
/** Longest label value (and DNS-1035 label). */
export const MAX_LABEL_LENGTH = 63;

/** FNV-1a, 32 bit, of the UTF-8 bytes of `text`, as 8 lower-case hex digits (Go `fnv.New32a`). */
export function fnv32aHex(text: string): string {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash = (hash ^ byte) >>> 0;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}

/**
 * `base-suffix`, or when that is longer than `maxLength`, a shortened form identical to upstream's
 * `getNameWithMaxLength` (from OpenShift's namer):
 * - if there is room for part of the base: `<base truncated>-<hash(base)>-<suffix>`;
 * - otherwise the suffix is dropped: `<base, at most maxLength-9>-<hash(base-suffix)>`, cut to
 *   `maxLength` (just the hash when the base is empty).
 *
 * Names are ASCII (node names are DNS subdomains), so string length equals byte length.
 */
export function nameWithMaxLength(base: string, suffix: string, maxLength: number): string {
  const name = base === "" ? suffix : `${base}-${suffix}`;
  if (name.length <= maxLength) return name;
  const baseLength = maxLength - 10 - suffix.length;
  if (baseLength <= 0) {
    const prefix = base.slice(0, Math.max(0, maxLength - 9));
    const short = prefix === "" ? fnv32aHex(name) : `${prefix}-${fnv32aHex(name)}`;
    return short.slice(0, maxLength);
  }
  return `${base.slice(0, baseLength)}-${fnv32aHex(base)}-${suffix}`;
}

/**
 * The `csi.storage.k8s.io/managed-by` value: `external-provisioner`, or with `nodeName`
 * (`--node-deployment`) `external-provisioner-<node>` shortened to 63 characters.
 */
export function managedByValue(nodeName?: string): string {
  if (nodeName === undefined || nodeName === "") return MANAGED_BY_CENTRAL;
  return nameWithMaxLength(MANAGED_BY_CENTRAL, nodeName, MAX_LABEL_LENGTH);
}

/** The labels of every object this instance manages. */
export function capacityLabels(driverName: string, managedBy: string): Record<string, string> {
  return { [DRIVER_NAME_LABEL]: driverName, [MANAGED_BY_LABEL]: managedBy };
}

/** The label selector of the CSIStorageCapacity watch (keys sorted, as client-go prints it). */
export function capacityLabelSelector(driverName: string, managedBy: string): string {
  return `${DRIVER_NAME_LABEL}=${driverName},${MANAGED_BY_LABEL}=${managedBy}`;
}
