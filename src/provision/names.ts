/**
 * Deterministic names and the provisioner identity.
 *
 * One claim maps to exactly one name, derived from its UID: `<prefix>-<uid>`
 * (`--volume-name-prefix`, `--volume-name-uuid-length`). That name is both the
 * `CreateVolumeRequest.name` (so that CreateVolume is idempotent across retries and restarts) and
 * the `PersistentVolume` name.
 *
 * Divergence from upstream, on purpose: upstream's library checks for an existing PV named
 * `"pvc-" + UID` (its default `volumeNameHook`) while external-provisioner names the PV and the
 * CSI volume `<prefix>-<uid>`. With a non-default prefix or UUID length the check looks for a PV
 * that can never exist. We use {@link makeVolumeName} for the PV, for the CSI request and for the
 * "already provisioned" check, so all three always agree. With the default flags
 * (`pvc`, `-1`) the names are identical to upstream's.
 */

import type { PersistentVolumeClaim } from "../kube/objects.ts";
import type { Clock, Random } from "../util/clock.ts";

/**
 * `<prefix>-<uid>`. With `uuidLength` -1 the UID is used verbatim, dashes included; with
 * `uuidLength` >= 0 its dashes are removed and it is truncated to that many characters (a length
 * beyond the UID keeps the whole UID, where upstream would crash).
 *
 * Throws when the prefix or the UID is empty, or when `uuidLength` is below -1.
 */
export function makeVolumeName(prefix: string, uid: string, uuidLength: number): string {
  if (prefix.length === 0) throw new Error("Invalid volume name: the volume name prefix is empty");
  if (uid.length === 0) throw new Error("Invalid volume name: the claim has no UID");
  if (uuidLength === -1) return `${prefix}-${uid}`;
  if (!Number.isInteger(uuidLength) || uuidLength < -1) {
    throw new Error(`Invalid volume name UUID length ${uuidLength}: must be -1 or at least 0`);
  }
  return `${prefix}-${uid.replaceAll("-", "").slice(0, uuidLength)}`;
}

export interface VolumeNameOptions {
  /** `--volume-name-prefix`; default `pvc`. */
  volumeNamePrefix: string;
  /** `--volume-name-uuid-length`; default -1 (the UID verbatim). */
  volumeNameUuidLength: number;
}

/** The PV name (and CSI volume name) of `claim`. Throws as {@link makeVolumeName}. */
export function volumeNameForClaim(
  claim: PersistentVolumeClaim,
  options: VolumeNameOptions,
): string {
  return makeVolumeName(
    options.volumeNamePrefix,
    claim.metadata.uid ?? "",
    options.volumeNameUuidLength,
  );
}

export interface IdentityOptions {
  clock: Clock;
  random: Random;
  /** The driver name from GetPluginInfo. */
  driverName: string;
  /** `NODE_NAME` in `--node-deployment` mode; unset otherwise. */
  nodeName?: string;
}

/**
 * The provisioner identity stored in every PV's
 * `volumeAttributes["storage.kubernetes.io/csiProvisionerIdentity"]`:
 * `<unixMillis>-<random 0..9999>-<driverName>`, plus `-<node>` in node mode.
 */
export function provisionerIdentity(options: IdentityOptions): string {
  const millis = Math.trunc(options.clock.now());
  const rand = Math.min(9999, Math.floor(options.random() * 10000));
  const identity = `${millis}-${rand}-${options.driverName}`;
  return options.nodeName ? `${identity}-${options.nodeName}` : identity;
}
