/**
 * The part of kube-controller-manager's PersistentVolume controller that the local mode needs,
 * since no kube-controller-manager runs there:
 *
 * - a pending claim whose StorageClass names a provisioner gets the
 *   `volume.kubernetes.io/storage-provisioner` annotation (and its beta twin), which is how the
 *   sidecar learns that a claim is for it;
 * - a PV whose claimRef names a pending claim is bound to it (claim `spec.volumeName`, both
 *   phases `Bound`, the claim's capacity and access modes);
 * - a bound PV whose claim was deleted becomes `Released`, which starts deletion;
 * - a claim that names no StorageClass gets the default one (retroactive default StorageClass
 *   assignment); one that cannot be provisioned — `storageClassName: ""`, or a class that does
 *   not exist — gets kube-controller-manager's event (`FailedBinding`, `ProvisioningFailed`)
 *   and one log line, instead of staying Pending in silence.
 *
 * Each phase change of a claim is one readable log line: claim, phase, volume, time taken.
 */
import { createEventRecorder, subject } from "../controller/events.ts";
import { type QueueController, runSyncWorkers } from "../controller/manager.ts";
import { WorkQueue } from "../controller/workqueue.ts";
import type { KubeApi, ResourceClient } from "../kube/api.ts";
import { isConflict, isNotFound } from "../kube/errors.ts";
import { Informer } from "../kube/informer.ts";
import type { PersistentVolume, PersistentVolumeClaim, StorageClass } from "../kube/objects.ts";
import { resources } from "../kube/resources.ts";
import {
  ANN_BETA_STORAGE_CLASS,
  ANN_BETA_STORAGE_PROVISIONER,
  ANN_STORAGE_PROVISIONER,
  claimStorageClassName,
} from "../provision/should-provision.ts";
import type { Clock, Random } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";

export interface BinderOptions {
  api: KubeApi;
  clock: Clock;
  random: Random;
  logger: Logger;
}

type Key = `claim:${string}` | `volume:${string}`;

/** kube-controller-manager's event for a claim with no class and no volume to bind. */
const NO_CLASS_MESSAGE =
  "no persistent volumes available for this claim and no storage class is set";
const ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class";

function claimKey(c: PersistentVolumeClaim): string {
  return `${c.metadata.namespace}/${c.metadata.name}`;
}

/**
 * What kube-controller-manager does about a claim's class before anything is provisioned: a
 * claim that names no class gets the default one (retroactive default StorageClass assignment);
 * a claim that cannot be provisioned — `storageClassName: ""`, or a class that does not exist,
 * with no volume of its own to bind — is told why, once: its event and one log line.
 */
function createClassCheck(
  o: BinderOptions,
  classes: Informer<StorageClass>,
  volumes: Informer<PersistentVolume>,
) {
  const pvcs = o.api.resource(resources.persistentVolumeClaims);
  const events = createEventRecorder({
    events: o.api.resource(resources.coreEvents),
    clock: o.clock,
    logger: o.logger,
    component: "persistentvolume-controller",
  });
  /** Claims told why they cannot be provisioned (by uid → the reason), so it is said once. */
  const told = new Map<string, string>();
  const tell = (
    c: PersistentVolumeClaim,
    type: "Normal" | "Warning",
    reason: string,
    message: string,
  ) => {
    const uid = c.metadata.uid ?? "";
    if (told.get(uid) === message) return;
    told.set(uid, message);
    o.logger.warn(`Claim ${claimKey(c)} cannot be provisioned: ${message}`, {
      claim: claimKey(c),
      reason,
    });
    events.event(subject(c, "v1", "PersistentVolumeClaim"), type, reason, message);
  };
  const defaultClass = (): StorageClass | undefined =>
    classes.store
      .list()
      .filter((sc) => sc.metadata.annotations?.[ANN_DEFAULT_CLASS] === "true")
      .sort((a, b) =>
        // The newest default wins, as in Kubernetes.
        (b.metadata.creationTimestamp ?? "").localeCompare(a.metadata.creationTimestamp ?? ""),
      )[0];
  /** Gives `c` the default class; `wait` either way (the update brings the claim back). */
  const assignDefault = async (c: PersistentVolumeClaim): Promise<{ kind: "wait" }> => {
    const def = defaultClass();
    if (!def) {
      tell(c, "Normal", "FailedBinding", NO_CLASS_MESSAGE);
      return { kind: "wait" };
    }
    const live = await pvcs.get(c.metadata.name ?? "", c.metadata.namespace);
    if (live.spec.storageClassName !== undefined) return { kind: "wait" };
    await pvcs.update({ ...live, spec: { ...live.spec, storageClassName: def.metadata.name } });
    o.logger.info(`Claim ${claimKey(c)} gets the default StorageClass ${def.metadata.name}`, {
      claim: claimKey(c),
      storageClass: def.metadata.name,
    });
    return { kind: "wait" };
  };

  return {
    /** Forgets a deleted claim. */
    forget(uid: string): void {
      told.delete(uid);
    },
    /** Whether `c` can go on to provisioning (with its class) or binding, or must wait. */
    async check(
      c: PersistentVolumeClaim,
    ): Promise<{ kind: "wait" } | { kind: "go"; storageClass: StorageClass | undefined }> {
      const uid = c.metadata.uid ?? "";
      const annotations = c.metadata.annotations ?? {};
      const named =
        c.spec.storageClassName !== undefined || Object.hasOwn(annotations, ANN_BETA_STORAGE_CLASS);
      if (!named) return assignDefault(c);
      const className = claimStorageClassName(c);
      const sc = className === "" ? undefined : classes.store.get(className);
      if (!sc && !volumes.store.list().some((v) => v.spec.claimRef?.uid === uid)) {
        if (className === "") tell(c, "Normal", "FailedBinding", NO_CLASS_MESSAGE);
        else {
          const message = `storageclass.storage.k8s.io "${className}" not found`;
          tell(c, "Warning", "ProvisioningFailed", message);
        }
        return { kind: "wait" };
      }
      told.delete(uid);
      return { kind: "go", storageClass: sc };
    },
  };
}

/** Runs until `signal` aborts. */
export async function runBinder(o: BinderOptions, signal: AbortSignal): Promise<void> {
  const pvcs = o.api.resource(resources.persistentVolumeClaims);
  const pvs = o.api.resource(resources.persistentVolumes);
  const base = { clock: o.clock, random: o.random };
  const claims = new Informer<PersistentVolumeClaim>({ ...base, client: pvcs });
  const volumes = new Informer<PersistentVolume>({ ...base, client: pvs });
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
  const classCheck = createClassCheck(o, classes, volumes);
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
    const verdict = await classCheck.check(c);
    if (verdict.kind === "wait") return;
    const sc = verdict.storageClass;
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
    if (await bindClaim(pvcs, pvs, c, pv)) logPhase(c, "Bound", pv.metadata.name ?? "");
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
      classCheck.forget(c.metadata.uid ?? "");
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
  const controller: QueueController<Key> = {
    what: "Binder key",
    keyField: "key",
    queue,
    workers: 1,
    async sync(key) {
      try {
        if (key.startsWith("claim:")) await syncClaim(key.slice(6));
        else await syncVolume(key.slice(7));
        return { kind: "done" };
      } catch (err) {
        if (!signal.aborted && !isConflict(err))
          o.logger.v(2).info("Binder will retry", { key, err });
        return { kind: "retry", reason: errorText(err) };
      }
    },
  };
  await runSyncWorkers(
    controller,
    { clock: o.clock, logger: o.logger, retryMaxMs: 5000 },
    signal,
    signal,
  );
  queue.shutDown();
  await Promise.all(runs);
}

/**
 * Binds claim `c` to `pv`: the PV's phase, the claim's `spec.volumeName` and annotations, the
 * claim's status. Each step is skipped when done already, so that a retry after a failed one
 * completes. True when it made the claim Bound.
 */
async function bindClaim(
  pvcs: ResourceClient<PersistentVolumeClaim>,
  pvs: ResourceClient<PersistentVolume>,
  c: PersistentVolumeClaim,
  pv: PersistentVolume,
): Promise<boolean> {
  const name = pv.metadata.name ?? "";
  const livePv = await pvs.get(name);
  if (livePv.status?.phase !== "Bound") {
    await pvs.updateStatus({ ...livePv, status: { ...livePv.status, phase: "Bound" } });
  }
  let live = await pvcs.get(c.metadata.name ?? "", c.metadata.namespace);
  if (live.metadata.uid !== c.metadata.uid) return false;
  if (live.spec.volumeName && live.spec.volumeName !== name) return false;
  if (!live.spec.volumeName) {
    live.spec.volumeName = name;
    live.metadata.annotations = {
      ...live.metadata.annotations,
      "pv.kubernetes.io/bind-completed": "yes",
      "pv.kubernetes.io/bound-by-controller": "yes",
    };
    live = await pvcs.update(live);
  }
  if (live.status?.phase === "Bound") return false;
  await pvcs.updateStatus({
    ...live,
    status: {
      ...live.status,
      phase: "Bound",
      accessModes: livePv.spec.accessModes,
      capacity: livePv.spec.capacity,
    },
  });
  return true;
}
