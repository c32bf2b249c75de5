/**
 * Provisioning of one claim: the claim queue's handler.
 *
 * `syncClaim(uid)` looks at the cached claim and the intent journal and takes one step:
 * provision (record intent → CreateVolume → save PV → clear intent), clean up after a claim that
 * went away while its volume may exist (replay CreateVolume by name → DeleteVolume → clear
 * intent), or nothing. It returns what the queue should do next, as a value; it never throws for
 * an expected failure.
 *
 * Where this departs from upstream, on purpose:
 * - Crash safety: the intent is in the API before the first CreateVolume (see `journal.ts`), so
 *   a restart or a claim deleted mid-provision never leaks a volume (upstream #486, #311).
 * - A PV create answered AlreadyExists is success only when that PV is bound to this claim's
 *   UID (upstream #1469 accepts any, and leaks a volume when it is not).
 * - After this controller saved a claim's PV it never calls CreateVolume for that claim again
 *   unless a fresh read of the claim shows it still exists and is unbound (#1469's race).
 * - The `Provisioning` event is written only for an attempt that is retried or still running
 *   after `slowEventMs`, instead of before every attempt: one API write fewer per volume.
 * - Hand-over: once `stopping` aborts (the leader is stopping), no new CreateVolume starts (the
 *   intent, if recorded, stays for the next leader) and the PV of a volume already created is
 *   saved ahead of every other request waiting for the API budget.
 */

import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CsiDriver } from "../csi/client.ts";
import { grpcCodeName } from "../csi/errors.ts";
import {
  type CreateVolumeRequest,
  CreateVolumeRequestSchema,
  type CreateVolumeResponse,
} from "../gen/csi/v1/csi_pb.js";
import type { KubeApi, ResourceClient } from "../kube/api.ts";
import { isAlreadyExists, isConflict, isNotFound } from "../kube/errors.ts";
import type { Informer } from "../kube/informer.ts";
import type {
  KubeObject,
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
} from "../kube/objects.ts";
import { resources } from "../kube/resources.ts";
import type { ProvisionerMetrics } from "../metrics/provisioner-metrics.ts";
import {
  classForProvisioning,
  csiSourceOfVolume,
  migratedProvisionerNames,
  volumeForMigratedClaim,
} from "../migration/registry.ts";
import { supportsTopology } from "../provision/capabilities.ts";
import { volumeNameForClaim } from "../provision/names.ts";
import { classifyCreateVolumeError } from "../provision/outcome.ts";
import { buildPersistentVolume, volumeBelongsToClaim } from "../provision/pv.ts";
import {
  buildCreateVolumeRequest,
  type PreparedRequest,
  type ProvisionerConfig,
  type ProvisionLookups,
} from "../provision/request.ts";
import { secretCredentials } from "../provision/secrets.ts";
import {
  ANN_ALPHA_SELECTED_NODE,
  ANN_SELECTED_NODE,
  isClaimForDriver,
  shouldProvision,
} from "../provision/should-provision.ts";
import type { TopologyMemo } from "../provision/topology.ts";
import type { Clock, Random } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import type { EventRecorder, EventSubject } from "./events.ts";
import type { Intent, IntentJournal } from "./journal.ts";
import type { NodeOwnership } from "./node-ownership.ts";
import { pendingSnapshotSources } from "./snapshot-sweep.ts";

/** What the claim queue does after a sync. */
export type ClaimSyncResult =
  /** Nothing more to do: forget the claim's back-off. */
  | { kind: "done" }
  /** Try again after the claim's exponential back-off. */
  | { kind: "retry"; reason: string }
  /** Try again after `--retry-interval-max` (an infeasible request, upstream's slow set). */
  | { kind: "retrySlow"; reason: string }
  /** Do not retry before `at` (ms since epoch) unless something changes; keep the back-off. */
  | { kind: "wait"; at: number };

export interface ClaimSyncerOptions {
  api: KubeApi;
  driver: CsiDriver;
  config: ProvisionerConfig;
  /** `storage.kubernetes.io/csiProvisionerIdentity` of the PVs this process writes. */
  identity: string;
  claims: Informer<PersistentVolumeClaim>;
  volumes: Informer<PersistentVolume>;
  classes: Informer<StorageClass>;
  lookups: ProvisionLookups;
  journal: IntentJournal;
  events: EventRecorder;
  metrics?: ProvisionerMetrics;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** `--retry-interval-max` in ms: how long an infeasible claim waits. */
  retryMaxMs: number;
  /** Failures so far for a claim (from its queue), to tell a retry from a first attempt. */
  failures: (uid: string) => number;
  /** An attempt still running after this long writes the `Provisioning` event. Default 5 s. */
  slowEventMs?: number;
  /** Delete tries for a volume that came back too small, within one `--timeout`. Default 5. */
  cleanupTries?: number;
  /** `--node-deployment`: decides whether this node provisions a claim. */
  ownership?: NodeOwnership;
  /** Told about every saved PV (capacity tracking refreshes its topology segments). */
  onProvisioned?: (pv: PersistentVolume) => void;
  /** Told about a failed attempt (other than "no change") for a StorageClass. */
  onProvisionFailed?: (storageClassName: string) => void;
  /** Told how long a PV save waited for the client-side API budget. */
  onApiWait?: (storageClassName: string, ms: number) => void;
}

/** A step not taken because the process is handing over; the next leader takes it. */
const handedOver: ClaimSyncResult = {
  kind: "retry",
  reason: "the provisioner is stopping; the next leader continues from the intent",
};

const isSignal = (s: AbortSignal | undefined): s is AbortSignal => s !== undefined;

const PROVISIONING_MESSAGE = (key: string) =>
  `External provisioner is provisioning volume for claim "${key}"`;

function claimKey(c: { metadata: { namespace?: string; name?: string } }): string {
  return `${c.metadata.namespace}/${c.metadata.name}`;
}

function claimSubject(c: PersistentVolumeClaim): EventSubject {
  return { apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: c.metadata };
}

/** Upstream's wording of a driver error in events: `rpc error: code = X desc = Y`. */
export function rpcErrorText(err: unknown): string {
  if (err instanceof ConnectError)
    return `rpc error: code = ${grpcCodeName(err.code)} desc = ${err.rawMessage}`;
  return err instanceof Error ? err.message : String(err);
}

export class ClaimSyncer {
  readonly #o: ClaimSyncerOptions;
  /** Topology requirements of claims whose CreateVolume may be in flight (upstream #1413). */
  readonly #memos = new Map<string, TopologyMemo>();
  /** Claims whose PV this process saved: UID → PV name (guards against #1469). */
  readonly #provisioned = new Map<string, string>();
  /** PVs built but not yet saved: UID → PV; retried without calling the driver again. */
  readonly #unsaved = new Map<string, PersistentVolume>();
  /** Claims whose StorageClass did not exist: class name → claim UIDs. */
  readonly #waitingForClass = new Map<string, Set<string>>();
  /** Infeasible claims: UID → when to retry and the StorageClass UID it failed with. */
  readonly #infeasible = new Map<string, { until: number; classUid: string | undefined }>();

  /** The in-tree provisioner names this driver answers to (CSI migration). */
  readonly #migratedNames: readonly string[];

  constructor(opts: ClaimSyncerOptions) {
    this.#o = opts;
    this.#migratedNames = migratedProvisionerNames(opts.config.driverName);
  }

  /**
   * Whether a sync of `claim` could do anything, asked by the informer's handler before it queues
   * the claim. No when the claim is bound (or for another provisioner) and nothing is kept for it
   * (no intent in the journal, no memo, no unsaved PV) and it is not being deleted: its sync would
   * end at once in "nothing to do". A restart then does not queue and sync every bound claim of
   * the cluster; at 20,000 claims those syncs were most of the start's RSS peak
   * (bench/README.md). A claim that changes is asked again.
   */
  needsSync(claim: PersistentVolumeClaim): boolean {
    const uid = claim.metadata.uid ?? "";
    if (this.#o.journal.get(uid) || this.#memos.has(uid) || this.#unsaved.has(uid)) return true;
    if (claim.metadata.deletionTimestamp) return true;
    if (claim.spec.volumeName) return false;
    return isClaimForDriver(claim, this.#o.config.driverName, this.#migratedNames);
  }

  /** The claims that found no StorageClass `name`, forgotten once returned. */
  takeClaimsWaitingFor(name: string): string[] {
    const uids = [...(this.#waitingForClass.get(name) ?? [])];
    this.#waitingForClass.delete(name);
    return uids;
  }

  /** Called when a claim is deleted from the cache: drop what was kept for it. */
  forgetClaim(uid: string): void {
    this.#provisioned.delete(uid);
    this.#infeasible.delete(uid);
  }

  /**
   * One step for the claim with `uid`. `signal` cancels it; `stopping` says the process is
   * handing over: no CreateVolume starts after it aborted, what is under way is finished.
   */
  async syncClaim(
    uid: string,
    signal?: AbortSignal,
    stopping?: AbortSignal,
  ): Promise<ClaimSyncResult> {
    const o = this.#o;
    const claim = o.claims.store.getByUid(uid);
    const intent = o.journal.get(uid);
    if (!claim || claim.metadata.deletionTimestamp) {
      this.#memos.delete(uid);
      this.#unsaved.delete(uid);
      return intent ? this.#cleanUpAfterClaim(intent, signal, stopping) : { kind: "done" };
    }

    const decision = shouldProvision(claim, {
      driverName: o.config.driverName,
      additionalProvisionerNames: this.#migratedNames,
      getStorageClass: (name) => o.classes.store.get(name),
    });
    if (decision.kind === "skip") {
      o.logger
        .v(5)
        .info("Not provisioning claim", { claim: claimKey(claim), reason: decision.reason });
      // The claim stopped being ours (bound elsewhere, annotation changed) after an intent was
      // recorded: its volume, if any, must go.
      if (intent) {
        // Bound to the volume of this very intent: provisioning finished; only the record is left.
        if (claim.spec.volumeName === intent.pvName) {
          o.journal.clear(uid);
          return { kind: "done" };
        }
        if (!o.volumes.store.get(intent.pvName))
          return this.#cleanUpAfterClaim(intent, signal, stopping);
      }
      return { kind: "done" };
    }
    if (decision.kind === "noStorageClass") {
      const waiting = this.#waitingForClass.get(decision.storageClassName) ?? new Set<string>();
      waiting.add(uid);
      this.#waitingForClass.set(decision.storageClassName, waiting);
      // No event, as upstream: kube-controller-manager annotates a claim for the driver only
      // once it found the class, so a class this cache lacks is nearly always one its informer
      // has not delivered yet (a "not found" warning would be false), and a class that is really
      // gone is reported on the claim by kube-controller-manager. A failed attempt all the same.
      const source = claim.spec.dataSource?.kind ?? claim.spec.dataSourceRef?.kind ?? "";
      o.metrics?.provisionFailed.inc({ class: decision.storageClassName, source });
      o.logger.info("Claim waits for its StorageClass", {
        claim: claimKey(claim),
        storageclass: decision.storageClassName,
      });
      return { kind: "retry", reason: decision.message };
    }

    if (o.ownership) {
      const decision2 = await o.ownership.decide(claim, decision.storageClass, signal);
      if (decision2 === "ignore") return { kind: "done" };
      if (decision2 === "retry")
        return { kind: "retry", reason: "this node lacks capacity for the claim" };
    }

    const pvName = volumeNameForClaim(claim, o.config);
    if (o.volumes.store.get(pvName)) {
      // Provisioned already (by us before a restart, or the PV was saved and the claim's
      // binding has not reached the cache yet).
      if (intent) o.journal.clear(uid);
      this.#memos.delete(uid);
      return { kind: "done" };
    }
    if (this.#provisioned.has(uid) && !(await this.#stillUnbound(claim, signal))) {
      return { kind: "done" };
    }

    const infeasible = this.#infeasible.get(uid);
    if (infeasible) {
      if (
        infeasible.classUid === decision.storageClass.metadata.uid &&
        o.clock.now() < infeasible.until
      ) {
        return { kind: "wait", at: infeasible.until };
      }
      this.#infeasible.delete(uid);
    }

    return this.#provision(
      claim,
      decision.storageClass,
      decision.storageClassName,
      decision.selectedNode,
      signal,
      stopping,
    );
  }

  async #stillUnbound(claim: PersistentVolumeClaim, signal?: AbortSignal): Promise<boolean> {
    try {
      const live = await this.#o.api
        .resource(resources.persistentVolumeClaims)
        .get(claim.metadata.name ?? "", claim.metadata.namespace, { signal });
      return (
        live.metadata.uid === claim.metadata.uid &&
        !live.spec.volumeName &&
        !live.metadata.deletionTimestamp
      );
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async #provision(
    claim: PersistentVolumeClaim,
    storageClass: StorageClass,
    storageClassName: string,
    selectedNode: string | undefined,
    signal?: AbortSignal,
    stopping?: AbortSignal,
  ): Promise<ClaimSyncResult> {
    const o = this.#o;
    const uid = claim.metadata.uid ?? "";
    const key = claimKey(claim);
    const subject = claimSubject(claim);
    const start = o.clock.now();
    const source = claim.spec.dataSource?.kind ?? claim.spec.dataSourceRef?.kind ?? "";
    const labels = { class: storageClassName, source };

    // The Provisioning event: at once for a retry, otherwise only if the attempt is slow.
    let announced = false;
    let withdraw: (() => boolean) | undefined;
    const announce = () => {
      if (announced) return;
      announced = true;
      withdraw = o.events.event(subject, "Normal", "Provisioning", PROVISIONING_MESSAGE(key));
    };
    const slowTimer = new AbortController();
    if (o.failures(uid) > 0) announce();
    else o.clock.sleep(o.slowEventMs ?? 5000, slowTimer.signal).then(announce, () => {});

    const fail = (message: string, result: ClaimSyncResult): ClaimSyncResult => {
      // A call this process cancelled because it is stopping is not the claim's failure.
      if (signal?.aborted) return result;
      o.events.event(subject, "Warning", "ProvisioningFailed", message);
      o.metrics?.provisionFailed.inc(labels);
      o.onProvisionFailed?.(storageClassName);
      o.logger.info("Provisioning failed", { claim: key, err: message });
      return result;
    };

    try {
      // A PV built by an earlier attempt that could not be saved: save it, no driver call.
      const unsaved = this.#unsaved.get(uid);
      if (unsaved) {
        const r = await this.#save(claim, unsaved, undefined, labels, start, signal, stopping);
        if (r.kind === "done") this.#withdrawStale(withdraw);
        return r;
      }

      // The selected node must exist (upstream's library GETs it); with topology the requirements
      // code reads it, without topology it is checked here. Gone → ask the scheduler again.
      if (
        selectedNode &&
        !o.ownership &&
        !supportsTopology(o.config.capabilities, o.config.features?.topology ?? true)
      ) {
        try {
          await o.api.resource(resources.nodes).get(selectedNode, undefined, { signal });
        } catch (err) {
          if (!isNotFound(err)) throw err;
          fail(`failed to get target node: nodes "${selectedNode}" not found`, { kind: "done" });
          return await this.#reschedule(claim, signal);
        }
      }

      // CSI migration: a class of the in-tree plugin this driver took over is translated.
      const migration = classForProvisioning(o.config.driverName, storageClass);
      if (migration.kind === "error") {
        return fail(migration.message, { kind: "retry", reason: migration.message });
      }
      const prepared = await buildCreateVolumeRequest({
        config: o.config,
        claim,
        storageClass: migration.storageClass,
        selectedNode,
        lookups: o.lookups,
        random: o.random,
        topologyMemo: this.#memos.get(uid),
      });
      if (prepared.kind === "populator") {
        announced = true;
        o.events.event(subject, "Normal", "Provisioning", prepared.message);
        return { kind: "done" };
      }
      if (prepared.kind === "error") {
        if (prepared.outcome === "noChange" && prepared.topologyMemo)
          this.#memos.set(uid, prepared.topologyMemo);
        else this.#memos.delete(uid);
        if (prepared.outcome === "reschedule" && selectedNode) {
          fail(prepared.message, { kind: "done" });
          return await this.#reschedule(claim, signal);
        }
        return fail(prepared.message, { kind: "retry", reason: prepared.message });
      }
      for (const w of prepared.warnings) o.logger.warn(w, { claim: key });
      if (prepared.topologyMemo) this.#memos.set(uid, prepared.topologyMemo);

      if (prepared.sourceProtection && !prepared.sourceProtection.present) {
        await this.#addSourceFinalizer(prepared.sourceProtection, signal);
      }

      // Crash safety: the intent is durable before the driver hears of the volume.
      const intent = this.#intentFor(claim, storageClassName, prepared);
      if (stopping?.aborted) return handedOver;
      try {
        await o.journal.record(
          intent,
          stopping ? AbortSignal.any([signal, stopping].filter(isSignal)) : signal,
        );
      } catch (err) {
        if (stopping?.aborted) return handedOver;
        return fail(`Cannot record the provisioning intent of claim ${key}: ${errorText(err)}`, {
          kind: "retry",
          reason: errorText(err),
        });
      }
      // Stopping: the next leader calls CreateVolume (the intent may already be stored; an
      // earlier attempt's volume may exist, so it is kept either way).
      if (stopping?.aborted) return handedOver;

      let response: CreateVolumeResponse;
      try {
        o.logger.v(2).info("Calling CreateVolume", { claim: key, volume: prepared.pvName });
        response = await o.driver.createVolume(prepared.request, {
          signal,
          migrated: migration.kind === "migrated",
        });
      } catch (err) {
        const failure = classifyCreateVolumeError(err, prepared.mayReschedule);
        // Upstream's event text: the gRPC error as it is.
        const message = rpcErrorText(err);
        if (failure.outcome === "inBackground") {
          // The driver may still be creating it: keep the intent and the topology memo.
          return fail(message, { kind: "retry", reason: message });
        }
        // Final: the driver says no volume exists for this request.
        o.journal.clear(uid);
        this.#memos.delete(uid);
        if (failure.outcome === "reschedule") {
          fail(message, { kind: "done" });
          return await this.#reschedule(claim, signal);
        }
        if (failure.infeasible) {
          // One event, in upstream's words.
          fail(
            `Volume provisioning failed with infeasible error. Retries will be delayed. ${message}`,
            {
              kind: "done",
            },
          );
          this.#infeasible.set(uid, {
            until: o.clock.now() + o.retryMaxMs,
            classUid: storageClass.metadata.uid,
          });
          return { kind: "retrySlow", reason: message };
        }
        return fail(message, { kind: "retry", reason: message });
      }

      if (!o.claims.store.getByUid(uid)) {
        // The claim was deleted while CreateVolume ran: no PV for a claim that is gone (it would
        // only be released and deleted again); delete the volume now.
        const intent = o.journal.get(uid);
        if (intent) return await this.#cleanUpAfterClaim(intent, signal, stopping);
      }
      const built = buildPersistentVolume({
        claim,
        storageClass,
        prepared,
        response,
        driverName: o.config.driverName,
        identity: o.identity,
        controllerPublishReadOnly: o.config.controllerPublishReadOnly,
        crossNamespaceVolumeDataSource: o.config.features?.crossNamespaceVolumeDataSource,
      });
      if (built.kind !== "ok") {
        // Unusable volume: delete it and try again; the intent stays until that succeeded.
        const deleted = await this.#deleteWithRetries(
          built.volumeId,
          prepared.request.secrets,
          signal,
        );
        const message = `${built.message}${deleted ? "" : "; deleting the volume failed, it will be retried"}`;
        return fail(message, { kind: "retry", reason: message });
      }
      built.volume.spec.storageClassName = storageClassName;
      const inTree = volumeForMigratedClaim(
        migration.kind === "migrated" ? migration.plugin : undefined,
        built.volume,
      );
      if (!inTree.ok) {
        // Upstream cannot delete this volume and retries forever; it is deleted here.
        const volumeId = built.volume.spec.csi?.volumeHandle ?? "";
        const deleted = await this.#deleteWithRetries(volumeId, prepared.request.secrets, signal);
        const message = `${inTree.error}; ${deleted ? `volume ${volumeId} was deleted` : `deleting volume ${volumeId} failed, it will be retried`}`;
        return fail(message, { kind: "retry", reason: message });
      }
      const saved = await this.#save(
        claim,
        inTree.value,
        prepared,
        labels,
        start,
        signal,
        stopping,
      );
      if (saved.kind === "done") this.#withdrawStale(withdraw);
      return saved;
    } catch (err) {
      // Unexpected (an API read failed): nothing is known to have happened; retry.
      return fail(`Cannot provision claim ${key}: ${errorText(err)}`, {
        kind: "retry",
        reason: errorText(err),
      });
    } finally {
      slowTimer.abort();
    }
  }

  /**
   * After a success: a `Provisioning` event still waiting for the API budget says nothing the
   * `ProvisioningSucceeded` event does not, so it is withdrawn instead of written.
   */
  #withdrawStale(withdraw: (() => boolean) | undefined): void {
    if (withdraw?.()) this.#o.logger.v(4).info("Withdrew a Provisioning event not yet written");
  }

  #intentFor(
    claim: PersistentVolumeClaim,
    storageClassName: string,
    prepared: PreparedRequest,
  ): Intent {
    const withoutSecrets = create(CreateVolumeRequestSchema, { ...prepared.request, secrets: {} });
    const intent: Intent = {
      uid: claim.metadata.uid ?? "",
      namespace: claim.metadata.namespace ?? "",
      name: claim.metadata.name ?? "",
      pvName: prepared.pvName,
      storageClass: storageClassName,
      request: toJson(CreateVolumeRequestSchema, withoutSecrets) as JsonValue,
    };
    const ref = prepared.secretRefs.provisioner;
    if (ref?.name && ref.namespace) intent.secretRef = { name: ref.name, namespace: ref.namespace };
    return intent;
  }

  /** Saves the PV; AlreadyExists counts only when that PV is this claim's. */
  async #save(
    claim: PersistentVolumeClaim,
    pv: PersistentVolume,
    prepared: PreparedRequest | undefined,
    labels: { class: string; source: string },
    start: number,
    signal?: AbortSignal,
    stopping?: AbortSignal,
  ): Promise<ClaimSyncResult> {
    const o = this.#o;
    const uid = claim.metadata.uid ?? "";
    const key = claimKey(claim);
    const pvName = pv.metadata.name ?? "";
    const subject = claimSubject(claim);
    const pvs = o.api.resource(resources.persistentVolumes);
    try {
      const onThrottled = o.onApiWait && ((ms: number) => o.onApiWait?.(labels.class, ms));
      // The volume exists: when stopping, its PV goes ahead of every other request in line.
      await pvs.create(pv, { signal, onThrottled, expedite: stopping, discardResult: true });
    } catch (err) {
      if (!isAlreadyExists(err)) {
        this.#unsaved.set(uid, pv);
        const message = `Cannot save PersistentVolume ${pvName} of claim ${key}: ${errorText(err)}`;
        o.events.event(subject, "Warning", "ProvisioningFailed", message);
        return { kind: "retry", reason: message };
      }
      const existing = await pvs.get(pvName, undefined, { signal });
      if (!volumeBelongsToClaim(existing, claim)) {
        this.#unsaved.delete(uid);
        // Someone else's PV holds the name. Our volume must not leak — unless the driver handed
        // back that very PV's volume (same name), which must not be deleted.
        const handle = (v: PersistentVolume) => {
          const source = csiSourceOfVolume(v);
          return source?.ok ? source.value.volumeHandle : "";
        };
        const ours = handle(pv);
        if (ours !== "" && handle(existing) !== ours) {
          await this.#deleteWithRetries(ours, prepared?.request.secrets ?? {}, signal);
        }
        o.journal.clear(uid);
        const ref = existing.spec.claimRef;
        const message = `PersistentVolume ${pvName} already exists and belongs to claim ${ref?.namespace}/${ref?.name} (uid ${ref?.uid}), not to ${key}`;
        o.events.event(subject, "Warning", "ProvisioningFailed", message);
        o.metrics?.provisionFailed.inc(labels);
        return { kind: "retrySlow", reason: message };
      }
    }
    this.#unsaved.delete(uid);
    this.#memos.delete(uid);
    this.#provisioned.set(uid, pvName);
    o.journal.clear(uid);
    const seconds = (o.clock.now() - start) / 1000;
    o.metrics?.provisionTotal.inc(labels);
    o.metrics?.provisionDuration.observe(labels, seconds);
    o.events.event(
      subject,
      "Normal",
      "ProvisioningSucceeded",
      `Successfully provisioned volume ${pvName}`,
    );
    o.onProvisioned?.(pv);
    o.logger.info("Provisioned volume", { claim: key, volume: pvName, seconds });
    const protection = prepared?.sourceProtection;
    if (protection?.kind === "VolumeSnapshot") {
      // Keep the finalizer while another pending claim still restores from the same snapshot.
      const others = o.claims.store.list().filter((c) => c.metadata.uid !== uid);
      if (!pendingSnapshotSources(others).has(`${protection.namespace}/${protection.name}`)) {
        await this.#removeSnapshotFinalizer(protection, signal);
      }
    }
    return { kind: "done" };
  }

  /** DeleteVolume with a few tries inside one `--timeout` (upstream's cleanupVolume). */
  async #deleteWithRetries(
    volumeId: string,
    secrets: Record<string, string>,
    signal?: AbortSignal,
  ) {
    const tries = this.#o.cleanupTries ?? 5;
    for (let i = 0; i < tries; i++) {
      try {
        await this.#o.driver.deleteVolume({ volumeId, secrets }, { signal });
        return true;
      } catch (err) {
        this.#o.logger.warn("Could not delete unusable volume", {
          volume: volumeId,
          err: rpcErrorText(err),
        });
        if (signal?.aborted) return false;
      }
    }
    return false;
  }

  /**
   * The claim is gone (or no longer ours) but an intent says a volume may exist: make sure it
   * does not. CreateVolume with the recorded name and inputs returns the volume's id (creating
   * it if the earlier call never reached the driver), then DeleteVolume removes it.
   */
  async #cleanUpAfterClaim(
    intent: Intent,
    signal?: AbortSignal,
    stopping?: AbortSignal,
  ): Promise<ClaimSyncResult> {
    const o = this.#o;
    const key = `${intent.namespace}/${intent.name}`;
    // The PV may have been saved: then its reclaim policy decides what happens to the volume.
    // The cache can lag this process's own writes (a watch throttled or relisting after an API
    // restart), so before deleting anything, the API itself is asked.
    let saved = o.volumes.store.get(intent.pvName) !== undefined;
    if (!saved) {
      try {
        await o.api.resource(resources.persistentVolumes).get(intent.pvName, undefined, { signal });
        saved = true;
      } catch (err) {
        if (!isNotFound(err)) {
          return {
            kind: "retry",
            reason: `Cannot check PersistentVolume ${intent.pvName}: ${errorText(err)}`,
          };
        }
      }
    }
    if (saved) {
      o.journal.clear(intent.uid);
      return { kind: "done" };
    }
    let request: CreateVolumeRequest;
    try {
      request = fromJson(CreateVolumeRequestSchema, intent.request);
    } catch (err) {
      o.logger.error(
        "Dropping unreadable provisioning intent; its volume may need manual deletion",
        {
          claim: key,
          volume: intent.pvName,
          err,
        },
      );
      o.journal.clear(intent.uid);
      return { kind: "done" };
    }
    let secrets: Record<string, string> = {};
    if (intent.secretRef) {
      try {
        const secret = await o.lookups.getSecret(intent.secretRef.namespace, intent.secretRef.name);
        if (secret) secrets = secretCredentials(secret);
      } catch (err) {
        return {
          kind: "retry",
          reason: `Cannot read secret of deleted claim ${key}: ${errorText(err)}`,
        };
      }
    }
    request.secrets = secrets;
    // Stopping: the replay is left to the next leader, with the intent.
    if (stopping?.aborted) return handedOver;
    let volumeId: string;
    try {
      const response = await o.driver.createVolume(request, { signal });
      volumeId = response.volume?.volumeId ?? "";
    } catch (err) {
      const failure = classifyCreateVolumeError(err, false);
      if (failure.outcome === "inBackground") {
        return {
          kind: "retry",
          reason: `Cleaning up after deleted claim ${key}: ${rpcErrorText(err)}`,
        };
      }
      // A final error: the driver has no volume for this request.
      o.journal.clear(intent.uid);
      o.logger.info("Claim was deleted before its volume was created; nothing to clean up", {
        claim: key,
      });
      return { kind: "done" };
    }
    if (volumeId !== "") {
      try {
        await o.driver.deleteVolume({ volumeId, secrets }, { signal });
      } catch (err) {
        if (!(err instanceof ConnectError && err.code === Code.NotFound)) {
          return {
            kind: "retry",
            reason: `Deleting volume ${volumeId} of deleted claim ${key}: ${rpcErrorText(err)}`,
          };
        }
      }
    }
    o.journal.clear(intent.uid);
    this.#memos.delete(intent.uid);
    o.logger.info("Deleted the volume of a claim deleted during provisioning", {
      claim: key,
      volume: intent.pvName,
      volumeId,
    });
    return { kind: "done" };
  }

  /** Drops the selected-node annotation so the scheduler picks again (upstream's Update). */
  async #reschedule(claim: PersistentVolumeClaim, signal?: AbortSignal): Promise<ClaimSyncResult> {
    const o = this.#o;
    const pvcs = o.api.resource(resources.persistentVolumeClaims);
    try {
      const live = await pvcs.get(claim.metadata.name ?? "", claim.metadata.namespace, { signal });
      if (live.metadata.uid !== claim.metadata.uid) return { kind: "done" };
      const annotations = { ...live.metadata.annotations };
      delete annotations[ANN_SELECTED_NODE];
      delete annotations[ANN_ALPHA_SELECTED_NODE];
      await pvcs.update({ ...live, metadata: { ...live.metadata, annotations } }, { signal });
      o.logger.info("Rescheduling claim: removed its selected node", { claim: claimKey(claim) });
      return { kind: "done" };
    } catch (err) {
      if (isNotFound(err)) return { kind: "done" };
      return {
        kind: "retry",
        reason: `Cannot reschedule claim ${claimKey(claim)}: ${errorText(err)}`,
      };
    }
  }

  async #addSourceFinalizer(
    p: NonNullable<PreparedRequest["sourceProtection"]>,
    signal?: AbortSignal,
  ): Promise<void> {
    const client: ResourceClient<KubeObject> =
      p.kind === "PersistentVolumeClaim"
        ? (this.#o.api.resource(resources.persistentVolumeClaims) as ResourceClient<KubeObject>)
        : (this.#o.api.resource(resources.volumeSnapshots) as ResourceClient<KubeObject>);
    for (let attempt = 0; ; attempt++) {
      const live = await client.get(p.name, p.namespace, { signal });
      const finalizers = live.metadata.finalizers ?? [];
      if (finalizers.includes(p.finalizer)) return;
      try {
        await client.update(
          { ...live, metadata: { ...live.metadata, finalizers: [...finalizers, p.finalizer] } },
          { signal },
        );
        return;
      } catch (err) {
        if (!isConflict(err) || attempt >= 3) throw err;
      }
    }
  }

  async #removeSnapshotFinalizer(
    p: NonNullable<PreparedRequest["sourceProtection"]>,
    signal?: AbortSignal,
  ): Promise<void> {
    const client = this.#o.api.resource(resources.volumeSnapshots);
    try {
      const live = await client.get(p.name, p.namespace, { signal });
      const finalizers = live.metadata.finalizers ?? [];
      if (!finalizers.includes(p.finalizer)) return;
      await client.update(
        {
          ...live,
          metadata: { ...live.metadata, finalizers: finalizers.filter((f) => f !== p.finalizer) },
        },
        { signal },
      );
    } catch (err) {
      if (!isNotFound(err)) {
        this.#o.logger.warn("Could not remove the snapshot source-protection finalizer", {
          snapshot: `${p.namespace}/${p.name}`,
          err,
        });
      }
    }
  }
}
