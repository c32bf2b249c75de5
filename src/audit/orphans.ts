/**
 * Orphaned-volume audit: the volumes the driver reports (`ListVolumes`, every page) that nothing
 * in the cluster explains. Volumes leak from many sources (upstream #486's crash window, the
 * provision/delete race of #1469, PVs deleted by hand, old sidecars), and vendors have written
 * their own reconcilers to find them.
 *
 * A volume is explained when:
 * - a PersistentVolume of this driver has it as `spec.csi.volumeHandle`;
 * - the intent journal holds a provisioning intent for its name or claim (a claim in flight,
 *   or a crash the sidecar is cleaning up after);
 * - its name is this sidecar's `<prefix>-<claim UID>` and that claim exists without a PV yet
 *   (provisioning in flight).
 *
 * The name of a volume is not part of ListVolumes; it is known when the driver uses it as the
 * volume ID, or returns it in the volume context as `csi.storage.k8s.io/pv/name` (drivers that
 * echo their parameters do, with `--extra-create-metadata`). Only a name of exactly the form
 * `<prefix>-<UUID>` yields a claim UID.
 *
 * Deletion (the running sidecar, `--orphan-delete`) is allowed only for an orphan whose name is
 * `<prefix>-<UUID>` with this sidecar's prefix, whose claim no longer exists, that no intent
 * and no PV references (checked again with a live read right before DeleteVolume), and that has
 * stayed an orphan for the grace period across audits of this process.
 */
import type { CsiDriver } from "../csi/client.ts";
import {
  ControllerServiceCapability_RPC_Type as Cap,
  Controller,
  type ListVolumesResponse_Entry,
} from "../gen/csi/v1/csi_pb.js";
import type { PersistentVolume, PersistentVolumeClaim } from "../kube/objects.ts";

/** The volume-context key that carries the PV name with `--extra-create-metadata`. */
export const PV_NAME_CONTEXT_KEY = "csi.storage.k8s.io/pv/name";

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

export interface OrphanedVolume {
  volumeId: string;
  /** Bytes, when the driver reports it. */
  capacityBytes: number | undefined;
  /** The CreateVolume name, when it can be known (see the module doc). */
  name: string | undefined;
  /** The claim UID encoded in a `<prefix>-<UUID>` name. */
  claimUid: string | undefined;
  /** Whether a claim with that UID exists; undefined without a claim UID. */
  claimExists: boolean | undefined;
  /** The driver's VolumeCondition (ListVolumes status or ControllerGetVolume), if it offers one. */
  condition: { abnormal: boolean; message: string } | undefined;
  /** Whether `--orphan-delete` may delete it (before the grace period and the live re-check). */
  deletable: boolean;
}

export type AuditResult =
  | { kind: "unsupported"; message: string }
  | { kind: "ok"; volumes: number; orphans: OrphanedVolume[] };

export interface AuditInput {
  driver: Pick<CsiDriver, "listVolumes" | "call">;
  /** The driver's name (PVs of other drivers explain nothing). */
  driverName: string;
  controllerCapabilities: ReadonlySet<Cap>;
  /** `--volume-name-prefix`. */
  volumeNamePrefix: string;
  /** Every PV in the cluster. */
  volumes: readonly PersistentVolume[];
  /** Every PVC in the cluster. */
  claims: readonly PersistentVolumeClaim[];
  /** The intent journal's intents: claim UID and PV (= volume) name. */
  intents: readonly { uid: string; pvName: string }[];
  signal?: AbortSignal;
}

/** The claim UID of a name of exactly the form `<prefix>-<UUID>`, else undefined. */
export function claimUidOf(name: string | undefined, prefix: string): string | undefined {
  if (!name) return undefined;
  const escaped = prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const m = new RegExp(`^${escaped}-(${UUID})$`).exec(name);
  return m?.[1];
}

/** The volume's name, when the ID or the volume context gives it away. */
export function volumeNameOf(
  volumeId: string,
  context: Readonly<Record<string, string>> | undefined,
  prefix: string,
): string | undefined {
  const fromContext = context?.[PV_NAME_CONTEXT_KEY];
  if (fromContext) return fromContext;
  return claimUidOf(volumeId, prefix) ? volumeId : undefined;
}

/** Every entry of ListVolumes, following `next_token`. */
async function listAll(
  driver: AuditInput["driver"],
  signal?: AbortSignal,
): Promise<ListVolumesResponse_Entry[]> {
  const out: ListVolumesResponse_Entry[] = [];
  const seen = new Set<string>();
  let token = "";
  for (;;) {
    const page = await driver.listVolumes({ maxEntries: 0, startingToken: token }, { signal });
    out.push(...page.entries);
    token = page.nextToken;
    if (!token) return out;
    if (seen.has(token)) throw new Error(`ListVolumes returned next_token ${token} twice`);
    seen.add(token);
  }
}

export async function auditOrphans(input: AuditInput): Promise<AuditResult> {
  const caps = input.controllerCapabilities;
  if (!caps.has(Cap.LIST_VOLUMES)) {
    return {
      kind: "unsupported",
      message: `CSI driver ${input.driverName} does not offer LIST_VOLUMES: its volumes cannot be listed, so orphans cannot be found`,
    };
  }
  const entries = await listAll(input.driver, input.signal);
  const handles = new Set<string>();
  const pvNames = new Set<string>();
  const claimsWithPv = new Set<string>();
  for (const pv of input.volumes) {
    if (pv.spec.claimRef?.uid) claimsWithPv.add(pv.spec.claimRef.uid);
    if (pv.spec.csi?.driver !== input.driverName) continue;
    handles.add(pv.spec.csi.volumeHandle);
    if (pv.metadata.name) pvNames.add(pv.metadata.name);
  }
  const claimUids = new Set(input.claims.map((c) => c.metadata.uid ?? ""));
  const intentUids = new Set(input.intents.map((i) => i.uid));
  const intentNames = new Set(input.intents.map((i) => i.pvName));

  const orphans: OrphanedVolume[] = [];
  for (const e of entries) {
    const v = e.volume;
    if (!v || handles.has(v.volumeId)) continue;
    const name = volumeNameOf(v.volumeId, v.volumeContext, input.volumeNamePrefix);
    const claimUid = claimUidOf(name, input.volumeNamePrefix);
    if (name && intentNames.has(name)) continue;
    if (claimUid && intentUids.has(claimUid)) continue;
    const claimExists = claimUid ? claimUids.has(claimUid) : undefined;
    // A claim that exists and has no PV yet: its provisioning is in flight.
    if (claimUid && claimExists && !claimsWithPv.has(claimUid)) continue;
    let condition = e.status?.volumeCondition
      ? { abnormal: e.status.volumeCondition.abnormal, message: e.status.volumeCondition.message }
      : undefined;
    if (!condition && caps.has(Cap.GET_VOLUME) && caps.has(Cap.VOLUME_CONDITION)) {
      condition = await volumeCondition(input.driver, v.volumeId, input.signal);
    }
    orphans.push({
      volumeId: v.volumeId,
      capacityBytes: v.capacityBytes > 0n ? Number(v.capacityBytes) : undefined,
      name,
      claimUid,
      claimExists,
      condition,
      deletable:
        claimUid !== undefined && claimExists === false && name !== undefined && !pvNames.has(name),
    });
  }
  return { kind: "ok", volumes: entries.length, orphans };
}

async function volumeCondition(
  driver: AuditInput["driver"],
  volumeId: string,
  signal?: AbortSignal,
): Promise<{ abnormal: boolean; message: string } | undefined> {
  try {
    const r = await driver.call(Controller.method.controllerGetVolume, { volumeId }, { signal });
    const c = r.status?.volumeCondition;
    return c ? { abnormal: c.abnormal, message: c.message } : undefined;
  } catch {
    return undefined;
  }
}
