/**
 * The cloning-protection controller (upstream `CloningProtectionController`): a claim that is
 * the source of a clone carries the `provisioner.storage.kubernetes.io/cloning-protection`
 * finalizer while the clone is provisioned, so it cannot vanish mid-copy. Once the source is
 * being deleted and no clone of it is still pending, this controller removes the finalizer
 * (a PVC Update: GET, then PUT; the RBAC has `update`, not `patch`), and Kubernetes finishes
 * the deletion.
 *
 * A clone is "pending" while its phase is `Pending` (or not yet set) and its `dataSource` or
 * `dataSourceRef` (cross-namespace ones included) names the source claim.
 *
 * Beyond upstream: a change to a clone (it binds, it is deleted) queues its source at once, so a
 * source is released when its last clone finishes instead of at the next back-off retry; and
 * with the {@link CLONE_SOURCE_INDEX} index on the claim informer the pending clones of a
 * source are found without scanning the namespace (upstream #587 lists the whole namespace per
 * deleted claim).
 */
import type { KubeApi } from "../kube/api.ts";
import { isConflict, isNotFound } from "../kube/errors.ts";
import type { Informer } from "../kube/informer.ts";
import type { PersistentVolumeClaim } from "../kube/objects.ts";
import { resources } from "../kube/resources.ts";
import { splitKey } from "../kube/store.ts";
import { CLONE_PROTECTION_FINALIZER, PVC_KIND } from "../provision/data-source.ts";
import type { Clock } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { type QueueController, runSyncWorkers, type SyncResult } from "./manager.ts";
import { WorkQueue, type WorkQueueMetrics } from "./workqueue.ts";

/** Name of the optional claim-informer index {@link byCloneSource}. */
export const CLONE_SOURCE_INDEX = "cloneSource";

/**
 * `namespace/name` of the claim `claim` is cloned from (`spec.dataSource`, else
 * `spec.dataSourceRef` with its namespace), or `undefined` when it is no clone.
 */
export function cloneSourceKey(claim: PersistentVolumeClaim): string | undefined {
  const namespace = claim.metadata.namespace ?? "";
  const ds = claim.spec.dataSource;
  if (ds) return isClaimRef(ds) ? `${namespace}/${ds.name}` : undefined;
  const ref = claim.spec.dataSourceRef;
  if (ref && isClaimRef(ref)) return `${ref.namespace || namespace}/${ref.name}`;
  return undefined;
}

function isClaimRef(ref: { kind: string; apiGroup?: string | null }): boolean {
  return ref.kind === PVC_KIND && !ref.apiGroup;
}

/**
 * Index function for the claim informer: the source claim of a clone (see
 * {@link cloneSourceKey}). Register it as `indexers: { [CLONE_SOURCE_INDEX]: byCloneSource }`.
 */
export function byCloneSource(claim: PersistentVolumeClaim): string[] {
  const key = cloneSourceKey(claim);
  return key ? [key] : [];
}

/** Whether the claim's provisioning is not finished (phase `Pending` or unset). */
function isPending(claim: PersistentVolumeClaim): boolean {
  const phase = claim.status?.phase ?? "";
  return phase === "" || phase === "Pending";
}

function isProtectedAndDeleting(claim: PersistentVolumeClaim | undefined): boolean {
  return (
    !!claim?.metadata.deletionTimestamp &&
    (claim.metadata.finalizers ?? []).includes(CLONE_PROTECTION_FINALIZER)
  );
}

function keyOf(claim: PersistentVolumeClaim): string {
  return `${claim.metadata.namespace}/${claim.metadata.name}`;
}

export interface CloningProtectionOptions {
  api: KubeApi;
  /**
   * The shared claim informer. Its store must keep finalizers, `deletionTimestamp`, the spec
   * and `status.phase` (as `projectPersistentVolumeClaim` does). With an index named
   * {@link CLONE_SOURCE_INDEX} ({@link byCloneSource}) pending clones are looked up by index;
   * without it, by a scan of the cached claims.
   */
  claims: Informer<PersistentVolumeClaim>;
  clock: Clock;
  logger: Logger;
  /** `--cloning-protection-threads`: workers. Default 1. */
  threads?: number;
  /** First retry delay of a source that is still in use, in ms (`--retry-interval-start`). Default 1000. */
  retryStartMs?: number;
  /** Longest retry delay in ms (`--retry-interval-max`). Default 300000. */
  retryMaxMs?: number;
  /** Work-queue metrics; the queue is named `claims`, as upstream's. Default none. */
  metrics?: WorkQueueMetrics;
  /** Immediate re-tries of the Update after a conflict, before backing off. Default 5. */
  conflictRetries?: number;
}

export interface CloningProtectionController {
  /** Handles deleted source claims until `signal` aborts; resolves after in-flight work ends. */
  run(signal: AbortSignal): Promise<void>;
  /** The claims (`namespace/name`) queued, waiting for a retry or being handled. */
  readonly queued: number;
}

export function createCloningProtectionController(
  opts: CloningProtectionOptions,
): CloningProtectionController {
  const { claims, logger } = opts;
  const pvcs = opts.api.resource(resources.persistentVolumeClaims);
  const conflictRetries = opts.conflictRetries ?? 5;
  const queue = new WorkQueue<string>({
    clock: opts.clock,
    retryStartMs: opts.retryStartMs ?? 1000,
    retryMaxMs: opts.retryMaxMs ?? 300_000,
    name: "claims",
    metrics: opts.metrics,
  });

  let indexed: boolean | undefined;
  /** Claims that clone `sourceKey` and are not provisioned yet. */
  const pendingClones = (sourceKey: string): PersistentVolumeClaim[] => {
    if (indexed === undefined) {
      try {
        claims.store.byIndex(CLONE_SOURCE_INDEX, "");
        indexed = true;
      } catch {
        indexed = false;
      }
    }
    const candidates = indexed
      ? claims.store.byIndex(CLONE_SOURCE_INDEX, sourceKey)
      : claims.store.list().filter((c) => cloneSourceKey(c) === sourceKey);
    return candidates.filter(isPending);
  };

  /** Queues the claim itself when it is a protected source being deleted. */
  const consider = (claim: PersistentVolumeClaim) => {
    if (isProtectedAndDeleting(claim)) queue.add(keyOf(claim));
  };
  /** Queues the source of a clone when that source waits for its clones. */
  const considerSource = (claim: PersistentVolumeClaim | undefined) => {
    const source = claim && cloneSourceKey(claim);
    if (source && isProtectedAndDeleting(claims.store.get(source))) queue.add(source);
  };

  const removeFinalizer = async (
    namespace: string,
    name: string,
    uid: string | undefined,
    signal: AbortSignal,
  ): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      let live: PersistentVolumeClaim;
      try {
        live = await pvcs.get(name, namespace, { signal });
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
      if (uid !== undefined && live.metadata.uid !== uid) return;
      const finalizers = live.metadata.finalizers ?? [];
      if (!finalizers.includes(CLONE_PROTECTION_FINALIZER)) return;
      try {
        await pvcs.update(
          {
            ...live,
            metadata: {
              ...live.metadata,
              finalizers: finalizers.filter((f) => f !== CLONE_PROTECTION_FINALIZER),
            },
          },
          { signal },
        );
        return;
      } catch (err) {
        if (isNotFound(err)) return;
        if (!isConflict(err) || attempt >= conflictRetries) throw err;
      }
    }
  };

  /** One claim: remove its finalizer once no pending clone needs it any more. */
  const sync = async (key: string, signal: AbortSignal): Promise<SyncResult> => {
    const claim = claims.store.get(key);
    if (!isProtectedAndDeleting(claim)) return { kind: "done" };
    const clones = pendingClones(key);
    if (clones.length > 0) {
      logger.v(4).info("Claim is being deleted but still is the source of pending clones", {
        claim: key,
        clones: clones.slice(0, 5).map(keyOf),
        retryMs: queue.nextDelay(key),
      });
      return { kind: "retry", reason: "the claim is the source of pending clones" };
    }
    const { namespace = "", name } = splitKey(key);
    try {
      await removeFinalizer(namespace, name, claim?.metadata.uid, signal);
      logger.v(2).info("Removed the cloning-protection finalizer", { claim: key });
      return { kind: "done" };
    } catch (err) {
      if (!signal.aborted) {
        logger.warn(`Cannot remove the cloning-protection finalizer from claim ${key}`, {
          err: errorText(err),
          retryMs: queue.nextDelay(key),
        });
      }
      return { kind: "retry", reason: errorText(err) };
    }
  };
  const controller: QueueController<string> = {
    what: "Cloning-protection claim",
    keyField: "claim",
    queue,
    workers: opts.threads ?? 1,
    sync,
  };

  return {
    get queued() {
      return queue.size;
    },
    async run(signal) {
      const registration = claims.addEventHandler({
        onAdd: (c) => consider(c),
        onUpdate: (old, c) => {
          consider(c);
          considerSource(c);
          if (cloneSourceKey(old) !== cloneSourceKey(c)) considerSource(old);
        },
        onDelete: (c) => considerSource(c),
      });
      const stop = () => queue.shutDown();
      signal.addEventListener("abort", stop, { once: true });
      try {
        // Deciding that a source has no pending clones needs the whole cache.
        try {
          await claims.waitForSync(signal);
        } catch {
          return;
        }
        logger.v(2).info("Started the cloning-protection controller", {
          workers: Math.max(1, opts.threads ?? 1),
        });
        await runSyncWorkers(
          controller,
          { clock: opts.clock, logger, retryMaxMs: opts.retryMaxMs ?? 300_000 },
          signal,
          signal,
        );
      } finally {
        signal.removeEventListener("abort", stop);
        queue.shutDown();
        registration.remove();
      }
    },
  };
}
