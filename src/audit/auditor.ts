/**
 * The running sidecar's periodic orphan audit (`--orphan-audit-interval`, off by default), run
 * by the leader: exports how many orphans the last audit found and when it ran, logs each
 * orphan once, and with `--orphan-delete` deletes the ones `orphans.ts` calls deletable after
 * they stayed orphans for `--orphan-grace-period` — each only after a live re-read of the PVs,
 * the claims and the intent journal, with one log line per deletion. Without `--orphan-delete`
 * (the default) it logs what it would delete: a dry run.
 */
import type { CsiDriver } from "../csi/client.ts";
import type { ControllerServiceCapability_RPC_Type } from "../gen/csi/v1/csi_pb.js";
import type { ResourceClient } from "../kube/api.ts";
import type { PersistentVolume, PersistentVolumeClaim } from "../kube/objects.ts";
import type { Counter, Gauge, Registry } from "../metrics/registry.ts";
import type { Clock } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { type AuditInput, auditOrphans, type OrphanedVolume } from "./orphans.ts";

export const ORPHANS_GAUGE = "controller_persistentvolume_orphans";
export const AUDIT_TIME_GAUGE = "controller_persistentvolume_orphan_audit_timestamp_seconds";
export const DELETED_COUNTER = "controller_persistentvolume_orphans_deleted_total";

export interface OrphanMetrics {
  orphans: Gauge;
  lastAudit: Gauge;
  deleted: Counter;
}

/** Registers the audit's families once per registry (a new leadership term reuses them). */
const registered = new WeakMap<Registry, OrphanMetrics>();
export function registerOrphanMetrics(registry: Registry): OrphanMetrics {
  const known = registered.get(registry);
  if (known) return known;
  const m: OrphanMetrics = {
    orphans: registry.gauge(
      ORPHANS_GAUGE,
      "Volumes the CSI driver lists that no PersistentVolume, provisioning intent or claim in flight explains, at the last audit. deletable=true: this sidecar's name form, claim gone.",
      ["deletable"],
    ),
    lastAudit: registry.gauge(
      AUDIT_TIME_GAUGE,
      "Unix time of the last completed orphaned-volume audit.",
    ),
    deleted: registry.counter(DELETED_COUNTER, "Orphaned volumes deleted with --orphan-delete."),
  };
  registered.set(registry, m);
  return m;
}

export interface OrphanAuditorOptions {
  driver: AuditInput["driver"] & Pick<CsiDriver, "deleteVolume">;
  driverName: string;
  controllerCapabilities: ReadonlySet<ControllerServiceCapability_RPC_Type>;
  volumeNamePrefix: string;
  /** PVs and claims as cached by the informers. */
  volumes: () => readonly PersistentVolume[];
  claims: () => readonly PersistentVolumeClaim[];
  /** The intent journal's current intents. */
  intents: () => readonly { uid: string; pvName: string }[];
  /** Live reads from the API, right before a deletion. */
  liveVolumes: (signal: AbortSignal) => Promise<readonly PersistentVolume[]>;
  liveClaims: (signal: AbortSignal) => Promise<readonly PersistentVolumeClaim[]>;
  /** `--orphan-audit-interval`, ms (> 0). */
  intervalMs: number;
  /** `--orphan-delete`. */
  deleteOrphans: boolean;
  /** `--orphan-grace-period`, ms. */
  graceMs: number;
  clock: Clock;
  logger: Logger;
  metrics: OrphanMetrics;
}

export interface OrphanAuditor {
  run(signal: AbortSignal): Promise<void>;
  /** One audit now (tests); resolves with the orphans found. */
  auditOnce(signal: AbortSignal): Promise<OrphanedVolume[]>;
}

export function createOrphanAuditor(o: OrphanAuditorOptions): OrphanAuditor {
  /** Volume ID → when this process first saw it deletable. */
  const firstSeen = new Map<string, number>();
  const reported = new Set<string>();
  let unsupportedLogged = false;

  const describe = (v: OrphanedVolume) => ({
    volumeId: v.volumeId,
    name: v.name ?? "",
    claimUid: v.claimUid ?? "",
    capacityBytes: v.capacityBytes ?? 0,
  });

  const deleteIfStillOrphaned = async (v: OrphanedVolume, signal: AbortSignal) => {
    // Live re-check: a PV, a claim or an intent that appeared since the cached audit wins.
    const [pvs, claims] = await Promise.all([o.liveVolumes(signal), o.liveClaims(signal)]);
    const referenced = pvs.some(
      (pv) => pv.spec.csi?.volumeHandle === v.volumeId || pv.metadata.name === v.name,
    );
    const claimBack = claims.some((c) => c.metadata.uid === v.claimUid);
    const intent = o.intents().some((i) => i.uid === v.claimUid || i.pvName === v.name);
    if (referenced || claimBack || intent) {
      firstSeen.delete(v.volumeId);
      return;
    }
    if (!o.deleteOrphans) {
      o.logger.info("Would delete orphaned volume (dry run; --orphan-delete deletes)", describe(v));
      return;
    }
    try {
      await o.driver.deleteVolume({ volumeId: v.volumeId }, { signal });
      firstSeen.delete(v.volumeId);
      o.metrics.deleted.inc();
      o.logger.info("Deleted orphaned volume", describe(v));
    } catch (err) {
      o.logger.warn("Could not delete orphaned volume", { ...describe(v), err: errorText(err) });
    }
  };

  const auditOnce = async (signal: AbortSignal): Promise<OrphanedVolume[]> => {
    const result = await auditOrphans({
      driver: o.driver,
      driverName: o.driverName,
      controllerCapabilities: o.controllerCapabilities,
      volumeNamePrefix: o.volumeNamePrefix,
      volumes: o.volumes(),
      claims: o.claims(),
      intents: o.intents(),
      signal,
    });
    if (result.kind === "unsupported") {
      if (!unsupportedLogged) o.logger.warn(result.message);
      unsupportedLogged = true;
      return [];
    }
    const now = o.clock.now();
    const current = new Set(result.orphans.map((v) => v.volumeId));
    for (const id of [...firstSeen.keys()]) if (!current.has(id)) firstSeen.delete(id);
    for (const id of [...reported]) if (!current.has(id)) reported.delete(id);
    let deletable = 0;
    for (const v of result.orphans) {
      if (!reported.has(v.volumeId)) {
        reported.add(v.volumeId);
        o.logger.info("Found orphaned volume", { ...describe(v), deletable: v.deletable });
      }
      if (!v.deletable) continue;
      deletable++;
      const seen = firstSeen.get(v.volumeId) ?? now;
      firstSeen.set(v.volumeId, seen);
      if (now - seen >= o.graceMs) await deleteIfStillOrphaned(v, signal);
    }
    o.metrics.orphans.set({ deletable: "true" }, deletable);
    o.metrics.orphans.set({ deletable: "false" }, result.orphans.length - deletable);
    o.metrics.lastAudit.set(undefined, Math.floor(o.clock.now() / 1000));
    return result.orphans;
  };

  return {
    auditOnce,
    async run(signal) {
      while (!signal.aborted) {
        try {
          await auditOnce(signal);
        } catch (err) {
          if (signal.aborted) return;
          o.logger.warn("Orphaned-volume audit failed", { err: errorText(err) });
        }
        try {
          await o.clock.sleep(o.intervalMs, signal);
        } catch {
          return;
        }
      }
    },
  };
}

/** Every object of a resource, one page of 500 at a time. */
export async function listEverything<T extends PersistentVolume | PersistentVolumeClaim>(
  client: ResourceClient<T>,
  signal?: AbortSignal,
): Promise<T[]> {
  const out: T[] = [];
  let cont: string | undefined;
  do {
    const page = await client.list({ limit: 500, continue: cont, signal });
    out.push(...page.items);
    cont = page.metadata.continue || undefined;
  } while (cont);
  return out;
}
