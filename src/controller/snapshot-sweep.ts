/**
 * The snapshot source-protection sweep (upstream `SnapshotFinalizerController`, 6.3.0 #1519).
 * A VolumeSnapshot that a claim is restored from carries the
 * `provisioner.storage.kubernetes.io/volumesnapshot-as-source-protection` finalizer while the
 * restore is provisioned; the claim controller removes it afterwards. When that step never ran
 * (a crash, a claim deleted mid-provision, a restore that failed for good) the finalizer is
 * orphaned and the snapshot can never be deleted. Every `--snapshot-orphan-sweep-interval` this
 * controller lists the VolumeSnapshots (paginated), collects the snapshots that claims in phase
 * `Pending` (or without a phase) still restore from (`dataSource` or `dataSourceRef`,
 * cross-namespace references included), and removes the finalizer from every other snapshot
 * that carries it (a VolumeSnapshot Update; the RBAC has `update`, not `patch`).
 *
 * Without permission to list VolumeSnapshots, or without the VolumeSnapshot API (404), it logs
 * once and stops.
 *
 * Where this departs from upstream, on purpose:
 * - A snapshot is released only when two sweeps in a row found it orphaned. The claim cache may
 *   lag behind a finalizer written a moment ago, by this process or by another provisioner
 *   instance (`--node-deployment`, or another driver's sidecar sharing the finalizer name), and
 *   releasing on one sighting could strip the protection from a restore in progress (the leak
 *   of upstream #1448). The cost: an orphan lives up to one interval longer.
 * - A snapshot whose bound VolumeSnapshotContent names another CSI driver is left to that
 *   driver's provisioner.
 * - No VolumeSnapshot informer: one paginated list per sweep instead of a cache of every
 *   snapshot in the cluster.
 */
import type { KubeApi } from "../kube/api.ts";
import { isConflict, isForbidden, isGone, isNotFound } from "../kube/errors.ts";
import type { Informer } from "../kube/informer.ts";
import type { PersistentVolumeClaim, VolumeSnapshot } from "../kube/objects.ts";
import { resources } from "../kube/resources.ts";
import {
  SNAPSHOT_API_GROUP,
  SNAPSHOT_KIND,
  SNAPSHOT_PROTECTION_FINALIZER,
} from "../provision/data-source.ts";
import type { Clock } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";

/**
 * `namespace/name` of the VolumeSnapshot `claim` is restored from (`spec.dataSource`, else
 * `spec.dataSourceRef` with its namespace), or `undefined`. A reference without an apiGroup
 * counts, as upstream counts it: keeping a finalizer too long is the safe mistake.
 */
export function snapshotSourceKey(claim: PersistentVolumeClaim): string | undefined {
  const namespace = claim.metadata.namespace ?? "";
  const ds = claim.spec.dataSource;
  if (ds && isSnapshotRef(ds)) return `${namespace}/${ds.name}`;
  const ref = claim.spec.dataSourceRef;
  if (ref && isSnapshotRef(ref)) return `${ref.namespace || namespace}/${ref.name}`;
  return undefined;
}

function isSnapshotRef(ref: { kind: string; apiGroup?: string | null }): boolean {
  return ref.kind === SNAPSHOT_KIND && (!ref.apiGroup || ref.apiGroup === SNAPSHOT_API_GROUP);
}

/**
 * The snapshots (`namespace/name`) that claims whose provisioning is not finished (phase
 * `Pending` or unset) restore from.
 */
export function pendingSnapshotSources(claims: Iterable<PersistentVolumeClaim>): Set<string> {
  const out = new Set<string>();
  for (const claim of claims) {
    const phase = claim.status?.phase ?? "";
    if (phase !== "" && phase !== "Pending") continue;
    const key = snapshotSourceKey(claim);
    if (key) out.add(key);
  }
  return out;
}

export interface SnapshotSweepOptions {
  api: KubeApi;
  /**
   * The shared claim informer (its store must keep the spec and `status.phase`). The sweep
   * waits for its first list: an empty cache would make every finalizer look orphaned.
   */
  claims: Pick<Informer<PersistentVolumeClaim>, "store" | "waitForSync">;
  clock: Clock;
  logger: Logger;
  /** `--snapshot-orphan-sweep-interval` in ms; 0 disables the sweep. Upstream default 300000 (5m). */
  intervalMs: number;
  /**
   * This provisioner's CSI driver: snapshots whose bound content names another driver are left
   * alone. Default: none (every orphaned finalizer is removed, as upstream does).
   */
  driverName?: string;
  /** VolumeSnapshots per list page. Default 500. */
  pageSize?: number;
}

/** What one sweep did. */
export interface SweepResult {
  /** Snapshots carrying the finalizer that no pending claim restores from. */
  orphaned: string[];
  /** Snapshots whose finalizer was removed. */
  released: string[];
}

export interface SnapshotSweepController {
  /** Sweeps now and then every interval until `signal` aborts, or stops as described above. */
  run(signal: AbortSignal): Promise<void>;
  /**
   * One sweep (for tests and tools; `run` calls it). Rejects with the API error when the list
   * fails; failures to update one snapshot are logged and leave it for the next sweep.
   */
  sweep(signal?: AbortSignal): Promise<SweepResult>;
}

function keyOf(s: VolumeSnapshot): string {
  return `${s.metadata.namespace}/${s.metadata.name}`;
}

export function createSnapshotSweepController(opts: SnapshotSweepOptions): SnapshotSweepController {
  const { logger, clock } = opts;
  const snapshots = opts.api.resource(resources.volumeSnapshots);
  const contents = opts.api.resource(resources.volumeSnapshotContents);
  const pageSize = opts.pageSize ?? 500;
  /** UIDs of the snapshots the previous sweep found orphaned. */
  let suspects = new Set<string>();
  let updateForbiddenLogged = false;

  const listAll = async (signal?: AbortSignal): Promise<VolumeSnapshot[]> => {
    for (let restart = 0; ; restart++) {
      const items: VolumeSnapshot[] = [];
      let token: string | undefined;
      try {
        do {
          const page = await snapshots.list({ limit: pageSize, continue: token, signal });
          items.push(...page.items);
          token = page.metadata.continue || undefined;
        } while (token);
        return items;
      } catch (err) {
        // The continue token expired mid-list: start over once.
        if (!isGone(err) || token === undefined || restart > 0) throw err;
      }
    }
  };

  /** False when the snapshot's bound content belongs to another driver. */
  const isOurs = async (s: VolumeSnapshot, signal?: AbortSignal): Promise<boolean> => {
    const contentName = s.status?.boundVolumeSnapshotContentName;
    if (!opts.driverName || !contentName) return true;
    try {
      const content = await contents.get(contentName, undefined, { signal });
      return !content.spec?.driver || content.spec.driver === opts.driverName;
    } catch (err) {
      if (signal?.aborted) throw err;
      // Gone, forbidden or failing: nobody else can claim it either.
      return true;
    }
  };

  /** Removes the finalizer; true when it is gone from the snapshot. */
  const release = async (s: VolumeSnapshot, signal?: AbortSignal): Promise<boolean> => {
    const key = keyOf(s);
    try {
      await snapshots.update(
        {
          ...s,
          metadata: {
            ...s.metadata,
            finalizers: (s.metadata.finalizers ?? []).filter(
              (f) => f !== SNAPSHOT_PROTECTION_FINALIZER,
            ),
          },
        },
        { signal },
      );
      logger.info("Removed the orphaned source-protection finalizer from the snapshot", {
        snapshot: key,
      });
      return true;
    } catch (err) {
      if (signal?.aborted) throw err;
      if (isNotFound(err)) return true;
      if (isConflict(err)) {
        // Changed since the list: the next sweep looks at it again.
        logger.v(4).info("Snapshot changed during the sweep; trying again next time", {
          snapshot: key,
        });
      } else if (isForbidden(err)) {
        if (!updateForbiddenLogged) {
          updateForbiddenLogged = true;
          logger.warn(
            `Cannot remove the orphaned source-protection finalizer from snapshot ${key}: ${errorText(err)}`,
          );
        }
      } else {
        logger.warn(
          `Cannot remove the orphaned source-protection finalizer from snapshot ${key}: ${errorText(err)}`,
        );
      }
      return false;
    }
  };

  const sweep = async (signal?: AbortSignal): Promise<SweepResult> => {
    // List first, then read the cache: a finalizer in this list was written for a claim the
    // cache had already seen, unless another instance wrote it (see the two-sweep rule).
    const all = await listAll(signal);
    const referenced = pendingSnapshotSources(opts.claims.store.list());
    const orphaned: string[] = [];
    const released: string[] = [];
    const nextSuspects = new Set<string>();
    for (const s of all) {
      if (signal?.aborted) break;
      if (!(s.metadata.finalizers ?? []).includes(SNAPSHOT_PROTECTION_FINALIZER)) continue;
      const key = keyOf(s);
      if (referenced.has(key)) continue;
      orphaned.push(key);
      const uid = s.metadata.uid ?? key;
      if (!suspects.has(uid)) {
        nextSuspects.add(uid);
        continue;
      }
      if (!(await isOurs(s, signal))) continue;
      if (await release(s, signal)) released.push(key);
      else nextSuspects.add(uid);
    }
    suspects = nextSuspects;
    if (orphaned.length > 0) {
      logger.v(4).info("Swept snapshot source-protection finalizers", {
        orphaned: orphaned.length,
        released: released.length,
      });
    }
    return { orphaned, released };
  };

  return {
    sweep,
    async run(signal) {
      if (!(opts.intervalMs > 0)) {
        logger.v(2).info("The snapshot source-protection sweep is disabled");
        return;
      }
      try {
        await opts.claims.waitForSync(signal);
      } catch {
        return;
      }
      logger.v(2).info("Started the snapshot source-protection sweep", {
        intervalMs: opts.intervalMs,
      });
      for (;;) {
        try {
          await sweep(signal);
        } catch (err) {
          if (signal.aborted) return;
          if (isForbidden(err)) {
            logger.info(
              `Stopped the snapshot source-protection sweep: listing VolumeSnapshots is forbidden: ${errorText(err)}`,
            );
            return;
          }
          if (isNotFound(err)) {
            logger.info(
              `Stopped the snapshot source-protection sweep: the VolumeSnapshot API is not served: ${errorText(err)}`,
            );
            return;
          }
          logger.warn(`Snapshot source-protection sweep failed: ${errorText(err)}`);
        }
        try {
          await clock.sleep(opts.intervalMs, signal);
        } catch {
          return;
        }
      }
    },
  };
}
