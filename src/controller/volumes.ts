/**
 * Deletion of one PV: the volume queue's handler (reference §2.9).
 *
 * For every PV this driver owns: keep the `external-provisioner.volume.kubernetes.io/finalizer`
 * in line with the reclaim policy; once the PV is `Released` with reclaim policy `Delete`, refuse
 * while a VolumeAttachment still names it, call DeleteVolume with the deletion secrets, delete
 * the PV and remove the finalizer. The finalizer is removed only after the backend volume is
 * gone, so a PV deleted before its claim still gets its volume deleted (HonorPVReclaimPolicy).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { CsiDriver } from "../csi/client.ts";
import type { KubeApi } from "../kube/api.ts";
import { isNotFound } from "../kube/errors.ts";
import type { Informer } from "../kube/informer.ts";
import type { PersistentVolume, StorageClass, VolumeAttachment } from "../kube/objects.ts";
import { resources } from "../kube/resources.ts";
import type { ProvisionerMetrics } from "../metrics/provisioner-metrics.ts";
import {
  classForDeletion,
  csiNodeAffinityOfVolume,
  csiSourceOfVolume,
  migratedProvisionerNames,
} from "../migration/registry.ts";
import type { ProvisionLookups } from "../provision/request.ts";
import { deletionSecret, secretCredentials } from "../provision/secrets.ts";
import {
  attachedMessage,
  blockingAttachment,
  FINALIZER_PV,
  finalizerAction,
  isProvisionerForVolume,
  shouldDelete,
  volumeNeedsAction,
  volumeStorageClassName,
  withFinalizer,
  withoutFinalizer,
} from "../provision/should-provision.ts";
import { volumeIsAccessible } from "../provision/topology.ts";
import type { Clock } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { rpcErrorText } from "./claims.ts";
import type { EventRecorder, EventSubject } from "./events.ts";

export type VolumeSyncResult = { kind: "done" } | { kind: "retry"; reason: string };

export interface VolumeSyncerOptions {
  api: KubeApi;
  driver: CsiDriver;
  driverName: string;
  volumes: Informer<PersistentVolume>;
  classes: Informer<StorageClass>;
  /** Present when the driver has PUBLISH_UNPUBLISH_VOLUME; indexed by `pv`. */
  attachments?: Informer<VolumeAttachment>;
  lookups: ProvisionLookups;
  events: EventRecorder;
  metrics?: ProvisionerMetrics;
  clock: Clock;
  logger: Logger;
  /** `--node-deployment`: this node's topology; PVs not reachable from it are someone else's. */
  nodeSegments?: Record<string, string>;
  /** Told about every PV whose volume was deleted (capacity tracking refreshes). */
  onDeleted?: (pv: PersistentVolume) => void;
}

/** Name of the VolumeAttachment index by PV name. */
export const ATTACHMENTS_BY_PV = "pv";

function subject(pv: PersistentVolume): EventSubject {
  return { apiVersion: "v1", kind: "PersistentVolume", metadata: pv.metadata };
}

interface DeleteState {
  start: number;
  volumeDeleted: boolean;
  pvDeleted: boolean;
  done?: boolean;
}

export class VolumeSyncer {
  readonly #o: VolumeSyncerOptions;
  /** PVs (by UID) whose deletion this process has begun: what is done already. */
  readonly #deleting = new Map<string, DeleteState>();

  /** The names a PV of this driver may carry: the driver's, and its in-tree plugin's. */
  readonly #names: readonly string[];

  constructor(opts: VolumeSyncerOptions) {
    this.#o = opts;
    this.#names = [opts.driverName, ...migratedProvisionerNames(opts.driverName)];
  }

  /**
   * Whether a sync of `pv` could do anything, asked by the informer's handler before it queues the
   * PV: yes for this driver's PVs whose finalizer must change or whose volume must be deleted, and
   * for a PV whose deletion this process has begun. A Bound PV with its finalizer, or another
   * driver's PV, would sync to nothing, so a restart does not queue every PV of the cluster.
   */
  needsSync(pv: PersistentVolume): boolean {
    return this.#deleting.has(pv.metadata.uid ?? "") || volumeNeedsAction(pv, this.#names);
  }

  /** Called when a PV left the cache. */
  forgetVolume(uid: string): void {
    this.#deleting.delete(uid);
  }

  async syncVolume(name: string, signal?: AbortSignal): Promise<VolumeSyncResult> {
    const o = this.#o;
    const pv = o.volumes.store.get(name);
    if (!pv || !isProvisionerForVolume(pv, this.#names)) return { kind: "done" };
    // An in-tree PV (CSI migration) is compared in the driver's topology keys.
    if (o.nodeSegments && !volumeIsAccessible(csiNodeAffinityOfVolume(pv), o.nodeSegments)) {
      return { kind: "done" };
    }

    const action = finalizerAction(pv);
    if (action !== "none") {
      const finalizers =
        action === "add"
          ? withFinalizer(pv.metadata.finalizers)
          : withoutFinalizer(pv.metadata.finalizers);
      try {
        await this.#patchFinalizers(pv, finalizers, signal);
      } catch (err) {
        if (isNotFound(err)) return { kind: "done" };
        return {
          kind: "retry",
          reason: `Cannot update the finalizers of PersistentVolume ${name}: ${errorText(err)}`,
        };
      }
    }
    if (!shouldDelete(pv) || this.#deleting.get(pv.metadata.uid ?? "")?.done) {
      return { kind: "done" };
    }
    return this.#delete(pv, signal);
  }

  async #patchFinalizers(pv: PersistentVolume, finalizers: string[], signal?: AbortSignal) {
    // A merge patch replaces the list; the resourceVersion makes it a compare-and-swap.
    await this.#o.api
      .resource(resources.persistentVolumes)
      .patch(
        pv.metadata.name ?? "",
        "merge",
        { metadata: { finalizers, resourceVersion: pv.metadata.resourceVersion } },
        undefined,
        { signal, discardResult: true },
      );
  }

  async #delete(pv: PersistentVolume, signal?: AbortSignal): Promise<VolumeSyncResult> {
    const o = this.#o;
    const name = pv.metadata.name ?? "";
    const className = volumeStorageClassName(pv);
    const labels = { class: className };
    const failed = (message: string): VolumeSyncResult => {
      o.events.event(subject(pv), "Warning", "VolumeFailedDelete", message);
      o.metrics?.deleteFailed.inc(labels);
      o.logger.info("Deleting volume failed", { volume: name, err: message });
      return { kind: "retry", reason: message };
    };
    // An in-tree PV of the plugin this driver took over (CSI migration) is deleted by its CSI form.
    const source = csiSourceOfVolume(pv);
    if (!source) {
      return failed(`PersistentVolume ${name} has no CSI source: cannot delete its volume`);
    }
    if (!source.ok) return failed(source.error);
    const csi = source.value;

    if (o.attachments) {
      const va = blockingAttachment(name, o.attachments.store.byIndex(ATTACHMENTS_BY_PV, name));
      if (va) return failed(attachedMessage(name, va));
    }

    let secrets: Record<string, string> = {};
    const ds = deletionSecret(pv, classForDeletion(pv, o.classes.store.get(className)));
    if (ds.kind === "secret") {
      try {
        const secret = await o.lookups.getSecret(ds.ref.namespace, ds.ref.name);
        if (secret) secrets = secretCredentials(secret);
        else
          o.logger.warn("Deletion secret not found; deleting without it", {
            volume: name,
            secret: `${ds.ref.namespace}/${ds.ref.name}`,
          });
      } catch (err) {
        o.logger.warn("Cannot read the deletion secret; deleting without it", {
          volume: name,
          err,
        });
      }
    }

    const uid = pv.metadata.uid ?? "";
    let state = this.#deleting.get(uid);
    if (!state) {
      state = { start: o.clock.now(), volumeDeleted: false, pvDeleted: false };
      this.#deleting.set(uid, state);
    }
    if (!state.volumeDeleted) {
      try {
        await o.driver.deleteVolume(
          { volumeId: csi.volumeHandle, secrets },
          { signal, migrated: csi !== pv.spec.csi },
        );
      } catch (err) {
        // NotFound means the volume is already gone: deleting it is done (CSI says DeleteVolume
        // should answer OK then, but some drivers do not).
        if (!(err instanceof ConnectError && err.code === Code.NotFound)) {
          return failed(rpcErrorText(err));
        }
      }
      state.volumeDeleted = true;
    }

    // One DELETE (unless the PV is already being deleted), then one PATCH that takes our
    // finalizer out of the list without a resourceVersion: kube-controller-manager removes its
    // own pv-protection finalizer at the same time, and a compare-and-swap would lose that race
    // (409) and cost a retry. The UID in the patch makes sure it is still the same PV.
    const pvs = o.api.resource(resources.persistentVolumes);
    if (!state.pvDeleted && !pv.metadata.deletionTimestamp) {
      try {
        await pvs.delete(name, undefined, { uid, signal });
      } catch (err) {
        if (!isNotFound(err)) {
          return {
            kind: "retry",
            reason: `Cannot delete PersistentVolume ${name}: ${errorText(err)}`,
          };
        }
        return this.#deleted(pv, state);
      }
      state.pvDeleted = true;
    }
    if ((pv.metadata.finalizers ?? []).includes(FINALIZER_PV)) {
      try {
        await pvs.patch(
          name,
          "strategic",
          { metadata: { uid, "$deleteFromPrimitiveList/finalizers": [FINALIZER_PV] } },
          undefined,
          { signal, discardResult: true },
        );
      } catch (err) {
        if (!isNotFound(err)) {
          return {
            kind: "retry",
            reason: `Cannot remove the finalizer of PersistentVolume ${name}: ${errorText(err)}`,
          };
        }
      }
    }
    return this.#deleted(pv, state);
  }

  /** The volume and its PV are gone (or going): log and count it, once. */
  #deleted(pv: PersistentVolume, state: DeleteState): VolumeSyncResult {
    const o = this.#o;
    if (!state.done) {
      state.done = true;
      const labels = { class: volumeStorageClassName(pv) };
      const seconds = (o.clock.now() - state.start) / 1000;
      o.metrics?.deleteTotal.inc(labels);
      o.metrics?.deleteDuration.observe(labels, seconds);
      o.logger.info("Deleted volume", {
        volume: pv.metadata.name ?? "",
        volumeId: pv.spec.csi?.volumeHandle,
        seconds,
      });
      o.onDeleted?.(pv);
    }
    return { kind: "done" };
  }
}
