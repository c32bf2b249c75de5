/**
 * The provisioning controller: informers for claims, volumes, classes (and attachments, nodes
 * when the driver needs them), a claim queue keyed by claim UID and a volume queue keyed by PV
 * name, `--worker-threads` workers on each, and the intent journal that makes provisioning
 * crash-safe. `run(signal)` returns after `signal` aborts and every in-flight operation ended.
 */

import { type CapacityOwner, createCapacityController } from "../capacity/mod.ts";
import type { CsiDriver } from "../csi/client.ts";
import { ControllerServiceCapability_RPC_Type as Cap } from "../gen/csi/v1/csi_pb.js";
import type { KubeApi } from "../kube/api.ts";
import { Informer } from "../kube/informer.ts";
import type {
  CSINode,
  Node,
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
  VolumeAttachment,
} from "../kube/objects.ts";
import {
  projectCSINode,
  projectNode,
  projectPersistentVolume,
  projectPersistentVolumeClaim,
  projectStorageClass,
  projectVolumeAttachment,
  volumeAttachmentsByPv,
} from "../kube/projections.ts";
import { resources } from "../kube/resources.ts";
import type { LatencyMetrics } from "../metrics/latency-metrics.ts";
import type { ProvisionerMetrics } from "../metrics/provisioner-metrics.ts";
import { volumeNameForClaim } from "../provision/names.ts";
import type { ProvisionerConfig } from "../provision/request.ts";
import { buildCreateVolumeRequest } from "../provision/request.ts";
import { claimProvisionerName } from "../provision/should-provision.ts";
import type { Clock, Random } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { ClaimSyncer, type ClaimSyncResult } from "./claims.ts";
import {
  byCloneSource,
  CLONE_SOURCE_INDEX,
  createCloningProtectionController,
} from "./clone-protection.ts";
import type { EventRecorder } from "./events.ts";
import type { IntentJournal } from "./journal.ts";
import { createLookups } from "./lookups.ts";
import { capacityFitsRequest, createNodeOwnership } from "./node-ownership.ts";
import { createSnapshotSweepController } from "./snapshot-sweep.ts";
import { ATTACHMENTS_BY_PV, VolumeSyncer } from "./volumes.ts";
import { runWorkers, WorkQueue } from "./workqueue.ts";

export interface ProvisionControllerOptions {
  api: KubeApi;
  driver: CsiDriver;
  config: ProvisionerConfig;
  identity: string;
  journal: IntentJournal;
  events: EventRecorder;
  metrics?: ProvisionerMetrics;
  /** End-to-end latency histograms (`src/metrics/latency-metrics.ts`). */
  latency?: LatencyMetrics;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** `--worker-threads`: claim workers, and as many volume workers. */
  workerThreads: number;
  /** `--retry-interval-start`, ms. */
  retryStartMs: number;
  /** `--retry-interval-max`, ms. */
  retryMaxMs: number;
  /** Watch VolumeAttachments (the driver has PUBLISH_UNPUBLISH_VOLUME). */
  watchAttachments: boolean;
  /** Watch Nodes and CSINodes (topology is in use). */
  watchTopology: boolean;
  /** See `ClaimSyncerOptions.slowEventMs`. */
  slowEventMs?: number;
  /**
   * On stop, operations in flight get this long to finish before their calls are cancelled
   * (cancelling is safe: the intent journal covers them). Default 2 s, so that SIGTERM ends the
   * process well inside Kubernetes' 30 s grace period.
   */
  drainMs?: number;
  /** After the drain, how long batched journal and event writes may take. Default 1.5 s. */
  flushMs?: number;
  /** `--cloning-protection-threads`; the controller runs when the driver can clone. */
  cloningProtectionThreads?: number;
  /** `--snapshot-orphan-sweep-interval` in ms; the sweep runs when the driver has snapshots. */
  snapshotSweepIntervalMs?: number;
  /**
   * `--enable-capacity`: publish CSIStorageCapacity objects. `api` must be the client with the
   * capacity budget (`--kube-api-capacity-qps/-burst`).
   */
  capacity?: {
    api: KubeApi;
    namespace: string;
    owner: CapacityOwner | undefined;
    immediateBinding: boolean;
    pollIntervalMs: number;
    timeoutMs: number;
    workers: number;
  };
  /** Whether the driver reports topology (VOLUME_ACCESSIBILITY_CONSTRAINTS), for capacity segments. */
  capacityTopology?: boolean;
  /** `--node-deployment`: this node, its topology from NodeGetInfo, and ownership settings. */
  node?: {
    name: string;
    segments: Record<string, string>;
    immediateBinding: boolean;
    baseDelayMs: number;
    maxDelayMs: number;
  };
}

export interface ProvisionController {
  /** Runs until `signal` aborts; resolves after the workers drained. */
  run(signal: AbortSignal): Promise<void>;
  /** Resolves once every informer has listed (for tests and readiness). */
  synced(signal?: AbortSignal): Promise<void>;
  readonly claimQueue: WorkQueue<string>;
  readonly volumeQueue: WorkQueue<string>;
}

export function createProvisionController(o: ProvisionControllerOptions): ProvisionController {
  const base = { clock: o.clock, random: o.random, logger: o.logger };
  const claims = new Informer<PersistentVolumeClaim>({
    ...base,
    client: o.api.resource(resources.persistentVolumeClaims),
    project: projectPersistentVolumeClaim,
    indexers: { [CLONE_SOURCE_INDEX]: byCloneSource },
  });
  const volumes = new Informer<PersistentVolume>({
    ...base,
    client: o.api.resource(resources.persistentVolumes),
    project: projectPersistentVolume,
  });
  const classes = new Informer<StorageClass>({
    ...base,
    client: o.api.resource(resources.storageClasses),
    project: projectStorageClass,
  });
  const attachments = o.watchAttachments
    ? new Informer<VolumeAttachment>({
        ...base,
        client: o.api.resource(resources.volumeAttachments),
        project: projectVolumeAttachment,
        indexers: { [ATTACHMENTS_BY_PV]: volumeAttachmentsByPv },
      })
    : undefined;
  // Nodes and CSINodes: for topology, and for capacity tracking's segments (not in node mode,
  // where NodeGetInfo describes the only node).
  const needNodes =
    (o.watchTopology || (o.capacity !== undefined && o.capacityTopology === true)) && !o.node;
  const csiNodes = needNodes
    ? new Informer<CSINode>({
        ...base,
        client: o.api.resource(resources.csiNodes),
        project: projectCSINode,
      })
    : undefined;
  const nodes = needNodes
    ? new Informer<Node>({
        ...base,
        client: o.api.resource(resources.nodes),
        project: projectNode,
      })
    : undefined;
  const informers = [claims, volumes, classes, attachments, csiNodes, nodes].filter(
    (i): i is NonNullable<typeof i> => i !== undefined,
  );

  const queueOpts = {
    clock: o.clock,
    retryStartMs: o.retryStartMs,
    retryMaxMs: o.retryMaxMs,
    metrics: o.metrics?.workQueue,
  };
  const claimQueue = new WorkQueue<string>({ ...queueOpts, name: "claims" });
  const volumeQueue = new WorkQueue<string>({ ...queueOpts, name: "volumes" });
  const baseLookups = createLookups({ api: o.api, claims, csiNodes, nodes, clock: o.clock });
  // In node mode this instance sees only its own node, described by NodeGetInfo (as upstream,
  // which builds static Node and CSINode objects instead of watching every Node).
  const node = o.node;
  const lookups = node
    ? {
        ...baseLookups,
        csiNodes: (): CSINode[] => [
          {
            metadata: { name: node.name },
            spec: {
              drivers: [
                {
                  name: o.config.driverName,
                  nodeID: node.name,
                  topologyKeys: Object.keys(node.segments),
                },
              ],
            },
          },
        ],
        nodes: (): Node[] => [{ metadata: { name: node.name, labels: node.segments } }],
      }
    : baseLookups;
  const ownership = node
    ? createNodeOwnership({
        api: o.api,
        nodeName: node.name,
        immediateBinding: node.immediateBinding,
        baseDelayMs: node.baseDelayMs,
        maxDelayMs: node.maxDelayMs,
        clock: o.clock,
        random: o.random,
        logger: o.logger,
        getClaim: (uid) => claims.store.getByUid(uid),
        getCapacity: o.config.capabilities.controller.has(Cap.GET_CAPACITY)
          ? async (claim, storageClass, signal) => {
              const prepared = await buildCreateVolumeRequest({
                config: o.config,
                claim,
                storageClass,
                selectedNode: node.name,
                lookups,
                random: o.random,
              });
              if (prepared.kind !== "ok")
                throw new Error(prepared.kind === "error" ? prepared.message : prepared.message);
              return capacityFitsRequest(o.driver, prepared.request, signal);
            }
          : undefined,
      })
    : undefined;

  const capacity = o.capacity
    ? createCapacityController({
        api: o.capacity.api,
        driver: o.driver,
        driverName: o.config.driverName,
        namespace: o.capacity.namespace,
        owner: o.capacity.owner,
        nodeName: node?.name,
        classes,
        topology: node
          ? { fixedSegment: node.segments }
          : csiNodes && nodes
            ? { csiNodes, nodes }
            : { fixedSegment: {} },
        immediateBinding: o.capacity.immediateBinding,
        pollIntervalMs: o.capacity.pollIntervalMs,
        timeoutMs: o.capacity.timeoutMs,
        workers: o.capacity.workers,
        retryStartMs: o.retryStartMs,
        retryMaxMs: o.retryMaxMs,
        registry: o.metrics?.registry,
        queueMetrics: o.metrics?.workQueue,
        clock: o.clock,
        random: o.random,
        logger: o.logger,
      })
    : undefined;
  const claimSyncer = new ClaimSyncer({
    api: o.api,
    driver: o.driver,
    config: o.config,
    identity: o.identity,
    claims,
    volumes,
    classes,
    lookups,
    journal: o.journal,
    events: o.events,
    metrics: o.metrics,
    clock: o.clock,
    random: o.random,
    logger: o.logger,
    retryMaxMs: o.retryMaxMs,
    failures: (uid) => claimQueue.failures(uid),
    slowEventMs: o.slowEventMs,
    ownership,
    onProvisioned: (pv) => {
      capacity?.onProvisioned(pv);
      const ref = pv.spec.claimRef;
      o.latency?.provisioned(claims.store.get(`${ref?.namespace}/${ref?.name}`), pv);
    },
    onProvisionFailed: capacity ? (className) => capacity.onProvisionFailed(className) : undefined,
    onApiWait: o.latency && ((className, ms) => o.latency?.apiWait(className, ms)),
  });
  const volumeSyncer = new VolumeSyncer({
    api: o.api,
    driver: o.driver,
    driverName: o.config.driverName,
    volumes,
    classes,
    attachments,
    lookups,
    events: o.events,
    metrics: o.metrics,
    clock: o.clock,
    logger: o.logger,
    nodeSegments: node?.segments,
    onDeleted: (pv) => {
      capacity?.onDeleted(pv);
      o.latency?.deleted(pv);
    },
  });
  const caps = o.config.capabilities.controller;
  const cloneProtection =
    o.cloningProtectionThreads !== undefined && caps.has(Cap.CLONE_VOLUME)
      ? createCloningProtectionController({
          api: o.api,
          claims,
          clock: o.clock,
          logger: o.logger,
          threads: o.cloningProtectionThreads,
          retryStartMs: o.retryStartMs,
          retryMaxMs: o.retryMaxMs,
          metrics: o.metrics?.workQueue,
        })
      : undefined;
  const snapshotSweep =
    o.snapshotSweepIntervalMs !== undefined && caps.has(Cap.CREATE_DELETE_SNAPSHOT)
      ? createSnapshotSweepController({
          api: o.api,
          claims,
          clock: o.clock,
          logger: o.logger,
          intervalMs: o.snapshotSweepIntervalMs,
          driverName: o.config.driverName,
        })
      : undefined;

  const applyClaimResult = (uid: string, r: ClaimSyncResult) => {
    switch (r.kind) {
      case "done":
        claimQueue.forget(uid);
        return;
      case "retry": {
        const delay = claimQueue.addRateLimited(uid);
        o.logger.v(4).info("Claim will be retried", { uid, delayMs: delay, reason: r.reason });
        return;
      }
      case "retrySlow":
        claimQueue.addAfter(uid, o.retryMaxMs);
        return;
      case "wait":
        claimQueue.addAfter(uid, Math.max(0, r.at - o.clock.now()));
        return;
    }
  };

  let synced: Promise<void> | undefined;

  /** A claim for this driver deleted before it got a PV (for the end-to-end latency). */
  const isAbandoned = (c: PersistentVolumeClaim): boolean => {
    if (c.spec.volumeName || claimProvisionerName(c) !== o.config.driverName) return false;
    try {
      return !volumes.store.get(volumeNameForClaim(c, o.config));
    } catch {
      return false;
    }
  };

  return {
    claimQueue,
    volumeQueue,
    synced(signal) {
      return Promise.all(informers.map((i) => i.waitForSync(signal))).then(() => {});
    },
    async run(signal) {
      const stopInformers = new AbortController();
      const informerRuns = informers.map((i) =>
        i.run(stopInformers.signal).catch((err) => o.logger.error("Informer stopped", { err })),
      );
      try {
        synced ??= Promise.all(informers.map((i) => i.waitForSync(signal))).then(() => {});
        await synced;
      } catch {
        stopInformers.abort();
        await Promise.all(informerRuns);
        return;
      }

      // Crash recovery: every recorded intent gets a sync (finish it, or clean up after it).
      const intents = await o.journal.load(signal);
      if (intents.length > 0) {
        o.logger.info("Resuming provisioning intents left by an earlier run", {
          count: intents.length,
        });
      }
      for (const i of intents) claimQueue.add(i.uid);

      claims.addEventHandler({
        onAdd: (c) => claimQueue.add(c.metadata.uid ?? ""),
        onUpdate: (_old, c) => claimQueue.add(c.metadata.uid ?? ""),
        onDelete: (c) => {
          const uid = c.metadata.uid ?? "";
          if (o.latency && isAbandoned(c)) o.latency.abandoned(c);
          claimSyncer.forgetClaim(uid);
          ownership?.forget(uid);
          // Still synced once: an intent may name a volume that must now be deleted.
          if (o.journal.get(uid)) claimQueue.add(uid);
          else {
            claimQueue.cancelDelayed(uid);
            claimQueue.forget(uid);
          }
        },
      });
      // A claim whose StorageClass was missing waits for its back-off; a new class wakes it now.
      classes.addEventHandler({
        onAdd: (sc) => {
          for (const uid of claimSyncer.takeClaimsWaitingFor(sc.metadata.name ?? "")) {
            claimQueue.add(uid);
          }
        },
      });
      volumes.addEventHandler({
        onAdd: (v) => volumeQueue.add(v.metadata.name ?? ""),
        onUpdate: (_old, v) => volumeQueue.add(v.metadata.name ?? ""),
        onDelete: (v) => {
          volumeSyncer.forgetVolume(v.metadata.uid ?? "");
          volumeQueue.cancelDelayed(v.metadata.name ?? "");
          volumeQueue.forget(v.metadata.name ?? "");
        },
      });

      // Operations get their own signal: a stop lets them finish for `drainMs`, then cancels.
      const ops = new AbortController();
      const opSignal = ops.signal;
      const workers = Math.max(1, o.workerThreads);
      const claimWorkers = runWorkers(
        claimQueue,
        workers,
        async (uid) => {
          let r: ClaimSyncResult;
          try {
            r = await claimSyncer.syncClaim(uid, opSignal);
          } catch (err) {
            r = { kind: "retry", reason: err instanceof Error ? err.message : String(err) };
            o.logger.error("Claim sync failed", { uid, err });
          }
          if (!opSignal.aborted) applyClaimResult(uid, r);
        },
        signal,
      );
      const volumeWorkers = runWorkers(
        volumeQueue,
        workers,
        async (name) => {
          let r: Awaited<ReturnType<VolumeSyncer["syncVolume"]>>;
          try {
            r = await volumeSyncer.syncVolume(name, opSignal);
          } catch (err) {
            r = { kind: "retry", reason: err instanceof Error ? err.message : String(err) };
            o.logger.error("Volume sync failed", { volume: name, err });
          }
          if (opSignal.aborted) return;
          if (r.kind === "done") volumeQueue.forget(name);
          else volumeQueue.addRateLimited(name);
        },
        signal,
      );
      const side = [
        cloneProtection?.run(opSignal),
        snapshotSweep?.run(opSignal),
        capacity?.run(opSignal),
      ].map((p) => p?.catch((err) => o.logger.error("A secondary controller stopped", { err })));
      o.logger.info("Started provisioning controller", { driver: o.config.driverName, workers });
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener("abort", () => resolve(), { once: true });
      });
      claimQueue.shutDown();
      volumeQueue.shutDown();
      const grace = new AbortController();
      o.clock.sleep(o.drainMs ?? 2000, grace.signal).then(
        () => {
          o.logger.info("Cancelling operations still in flight");
          ops.abort(new Error("the provisioner is stopping"));
        },
        () => {},
      );
      await Promise.all([claimWorkers, volumeWorkers]);
      grace.abort();
      ops.abort();
      await Promise.all(side);
      // Batched intent removals and events still waiting for the API budget get a short while
      // together, then are left: the process must end well inside Kubernetes' grace period. An
      // intent left behind costs nothing but a check at the next start.
      const deadline = new AbortController();
      const timer = new AbortController();
      o.clock.sleep(o.flushMs ?? 1500, timer.signal).then(
        () => deadline.abort(),
        () => {},
      );
      const journalFlushed = o.journal
        .flush()
        .catch((err) => o.logger.warn("Could not flush the intent journal", { err }));
      await Promise.all([
        Promise.race([
          journalFlushed,
          new Promise<void>((r) =>
            deadline.signal.addEventListener("abort", () => r(), { once: true }),
          ),
        ]),
        o.events.flush(deadline.signal),
      ]);
      timer.abort();
      stopInformers.abort();
      await Promise.all(informerRuns);
      o.logger.info("Provisioning controller stopped");
    },
  };
}
