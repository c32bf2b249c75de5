/**
 * The part of kube-controller-manager's PersistentVolume controller that the local mode needs,
 * since no kube-controller-manager runs there:
 *
 * - a pending claim whose StorageClass names a provisioner gets the
 *   `volume.kubernetes.io/storage-provisioner` annotation (and its beta twin), which is how the
 *   sidecar learns that a claim is for it;
 * - a PV whose claimRef names a pending claim is bound to it (claim `spec.volumeName`, both
 *   phases `Bound`, the claim's capacity and access modes);
 * - a bound PV whose claim was deleted becomes `Released`, which starts deletion.
 *
 * Each phase change of a claim is one readable log line: claim, phase, volume, time taken.
 */
import { runWorkers, WorkQueue } from "../controller/workqueue.ts";
import type { KubeApi } from "../kube/api.ts";
import { isConflict, isNotFound } from "../kube/errors.ts";
import { Informer } from "../kube/informer.ts";
import type { PersistentVolume, PersistentVolumeClaim, StorageClass } from "../kube/objects.ts";
import { resources } from "../kube/resources.ts";
import {
  ANN_BETA_STORAGE_PROVISIONER,
  ANN_STORAGE_PROVISIONER,
  claimStorageClassName,
} from "../provision/should-provision.ts";
import type { Clock, Random } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";

export interface BinderOptions {
  api: KubeApi;
  clock: Clock;
  random: Random;
  logger: Logger;
}

type Key = `claim:${string}` | `volume:${string}`;

function claimKey(c: PersistentVolumeClaim): string {
  return `${c.metadata.namespace}/${c.metadata.name}`;
}

/** Runs until `signal` aborts. */
export async function runBinder(o: BinderOptions, signal: AbortSignal): Promise<void> {
  const base = { clock: o.clock, random: o.random };
  const claims = new Informer<PersistentVolumeClaim>({
    ...base,
    client: o.api.resource(resources.persistentVolumeClaims),
  });
  const volumes = new Informer<PersistentVolume>({
    ...base,
    client: o.api.resource(resources.persistentVolumes),
  });
  const classes = new Informer<StorageClass>({
    ...base,
    client: o.api.resource(resources.storageClasses),
  });
  const queue = new WorkQueue<Key>({
    clock: o.clock,
    retryStartMs: 100,
    retryMaxMs: 5000,
    name: "dev-binder",
  });
  /** When each claim last changed phase (by uid), for the time-taken log field. */
  const phaseSince = new Map<string, number>();
  /** When each bound volume's claim was deleted (by volume name), for the volume's last line. */
  const releasedSince = new Map<string, number>();
  const pvcs = o.api.resource(resources.persistentVolumeClaims);
  const pvs = o.api.resource(resources.persistentVolumes);

  const secondsSince = (since: number | undefined): number | undefined =>
    since === undefined ? undefined : Math.max(0, Math.round((o.clock.now() - since) / 10) / 100);

  /**
   * One line per phase change of a claim. `seconds` is the time the change took: from first
   * seeing the claim to Pending (0), from Pending to Bound, from the last change to Deleted (from
   * the claim's creation when the change before happened in an earlier run).
   */
  const logPhase = (c: PersistentVolumeClaim, phase: string, volume?: string) => {
    const uid = c.metadata.uid ?? "";
    const created = Date.parse(c.metadata.creationTimestamp ?? "");
    const since = phaseSince.get(uid) ?? (Number.isNaN(created) ? undefined : created);
    o.logger.info(`Claim ${claimKey(c)} is ${phase}`, {
      claim: claimKey(c),
      phase,
      volume,
      seconds: secondsSince(since),
    });
    if (phase === "Deleted") phaseSince.delete(uid);
    else phaseSince.set(uid, o.clock.now());
  };

  const syncClaim = async (uid: string) => {
    const c = claims.store.getByUid(uid);
    if (!c || c.metadata.deletionTimestamp || c.status?.phase === "Bound") return;
    // Half bound (a failure between setting spec.volumeName and the status): finish the binding.
    if (c.spec.volumeName) {
      const pv = volumes.store.get(c.spec.volumeName);
      if (pv?.spec.claimRef?.uid === uid) await bind(c, pv);
      return;
    }
    if (!phaseSince.has(uid)) {
      phaseSince.set(uid, o.clock.now());
      logPhase(c, "Pending");
    }
    const sc = classes.store.get(claimStorageClassName(c));
    const annotations = c.metadata.annotations ?? {};
    if (sc && !annotations[ANN_STORAGE_PROVISIONER]) {
      const live = await pvcs.get(c.metadata.name ?? "", c.metadata.namespace);
      live.metadata.annotations = {
        ...live.metadata.annotations,
        [ANN_STORAGE_PROVISIONER]: sc.provisioner,
        [ANN_BETA_STORAGE_PROVISIONER]: sc.provisioner,
      };
      await pvcs.update(live);
      return;
    }
    const pv = volumes.store.list().find((v) => v.spec.claimRef?.uid === uid);
    if (pv) await bind(c, pv);
  };

  const bind = async (c: PersistentVolumeClaim, pv: PersistentVolume) => {
    const name = pv.metadata.name ?? "";
    const livePv = await pvs.get(name);
    if (livePv.status?.phase !== "Bound") {
      await pvs.updateStatus({ ...livePv, status: { ...livePv.status, phase: "Bound" } });
    }
    // Each step is skipped when done already, so that a retry after a failed one completes.
    let live = await pvcs.get(c.metadata.name ?? "", c.metadata.namespace);
    if (live.metadata.uid !== c.metadata.uid) return;
    if (live.spec.volumeName && live.spec.volumeName !== name) return;
    if (!live.spec.volumeName) {
      live.spec.volumeName = name;
      live.metadata.annotations = {
        ...live.metadata.annotations,
        "pv.kubernetes.io/bind-completed": "yes",
        "pv.kubernetes.io/bound-by-controller": "yes",
      };
      live = await pvcs.update(live);
    }
    if (live.status?.phase === "Bound") return;
    await pvcs.updateStatus({
      ...live,
      status: {
        ...live.status,
        phase: "Bound",
        accessModes: livePv.spec.accessModes,
        capacity: livePv.spec.capacity,
      },
    });
    logPhase(c, "Bound", name);
  };

  const syncVolume = async (name: string) => {
    const pv = volumes.store.get(name);
    const ref = pv?.spec.claimRef;
    if (!pv || !ref?.uid || pv.status?.phase === "Released" || pv.metadata.deletionTimestamp)
      return;
    const c = claims.store.getByUid(ref.uid);
    if (c) {
      if (c.status?.phase !== "Bound") queue.add(`claim:${ref.uid}`);
      return;
    }
    // Make sure the claim is really gone, not just late in the cache.
    try {
      const live = await pvcs.get(ref.name ?? "", ref.namespace);
      if (live.metadata.uid === ref.uid) return;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const live = await pvs.get(name);
    await pvs.updateStatus({ ...live, status: { ...live.status, phase: "Released" } });
    o.logger.info(`Volume ${name} is Released`, {
      claim: `${ref.namespace}/${ref.name}`,
      volume: name,
      phase: "Released",
    });
  };

  claims.addEventHandler({
    onAdd: (c) => queue.add(`claim:${c.metadata.uid}`),
    onUpdate: (_o, c) => queue.add(`claim:${c.metadata.uid}`),
    onDelete: (c) => {
      const bound = volumes.store.list().filter((pv) => pv.spec.claimRef?.uid === c.metadata.uid);
      logPhase(c, "Deleted", c.spec.volumeName || bound[0]?.metadata.name);
      for (const pv of bound) {
        releasedSince.set(pv.metadata.name ?? "", o.clock.now());
        queue.add(`volume:${pv.metadata.name}`);
      }
    },
  });
  // A claim may arrive before its StorageClass: look at unbound claims again when a class appears.
  classes.addEventHandler({
    onAdd: () => {
      for (const c of claims.store.list())
        if (!c.spec.volumeName) queue.add(`claim:${c.metadata.uid}`);
    },
  });
  volumes.addEventHandler({
    onAdd: (v) => queue.add(`volume:${v.metadata.name}`),
    onUpdate: (_o, v) => queue.add(`volume:${v.metadata.name}`),
    onDelete: (v) => {
      const name = v.metadata.name ?? "";
      const ref = v.spec.claimRef;
      if (ref) {
        // The time taken counts from the claim's deletion, when this run saw it.
        o.logger.info(`Volume ${name} is deleted`, {
          claim: `${ref.namespace}/${ref.name}`,
          volume: name,
          phase: "Deleted",
          seconds: secondsSince(releasedSince.get(name)),
        });
      }
      releasedSince.delete(name);
    },
  });

  const runs = [claims, volumes, classes].map((i) => i.run(signal).catch(() => {}));
  try {
    await Promise.all([claims, volumes, classes].map((i) => i.waitForSync(signal)));
  } catch {
    await Promise.all(runs);
    return;
  }
  await runWorkers(
    queue,
    1,
    async (key) => {
      try {
        if (key.startsWith("claim:")) await syncClaim(key.slice(6));
        else await syncVolume(key.slice(7));
        queue.forget(key);
      } catch (err) {
        if (signal.aborted) return;
        if (!isConflict(err)) o.logger.v(2).info("Binder will retry", { key, err });
        queue.addRateLimited(key);
      }
    },
    signal,
  );
  queue.shutDown();
  await Promise.all(runs);
}
