/**
 * The claim and volume controllers, and the informers every peer controller shares. Claims are
 * queued by UID, volumes by PV name; `--worker-threads` workers on each (run by the manager);
 * the intent journal makes provisioning crash-safe. The composition root (`sidecar.ts`) builds
 * these, the capacity, clone-protection and snapshot-sweep controllers, and the manager.
 */

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
import type { ProvisionerConfig, ProvisionLookups } from "../provision/request.ts";
import { buildCreateVolumeRequest } from "../provision/request.ts";
import { claimProvisionerName } from "../provision/should-provision.ts";
import type { Clock, Random } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { ClaimSyncer } from "./claims.ts";
import { byCloneSource, CLONE_SOURCE_INDEX } from "./clone-protection.ts";
import type { EventRecorder } from "./events.ts";
import type { IntentJournal } from "./journal.ts";
import { createLookups } from "./lookups.ts";
import type { QueueController, SharedInformer } from "./manager.ts";
import { capacityFitsRequest, createNodeOwnership } from "./node-ownership.ts";
import { ATTACHMENTS_BY_PV, VolumeSyncer } from "./volumes.ts";
import { WorkQueue } from "./workqueue.ts";

/** The informers the peer controllers share (one watch per resource). */
export interface SharedInformers {
  claims: Informer<PersistentVolumeClaim>;
  volumes: Informer<PersistentVolume>;
  classes: Informer<StorageClass>;
  /** When the driver has PUBLISH_UNPUBLISH_VOLUME. */
  attachments?: Informer<VolumeAttachment>;
  /** When topology is in use outside node mode. */
  csiNodes?: Informer<CSINode>;
  nodes?: Informer<Node>;
  /** Every informer above, to start and wait for. */
  all: SharedInformer[];
}

export interface SharedInformersOptions {
  api: KubeApi;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** Watch VolumeAttachments (the driver has PUBLISH_UNPUBLISH_VOLUME). */
  watchAttachments: boolean;
  /** Watch Nodes and CSINodes (topology or capacity segments, not in node mode). */
  watchNodes: boolean;
  /** Called while a streaming list decodes many objects (see `ReflectorOptions`). */
  collectGarbage?: () => void;
}

export function createSharedInformers(o: SharedInformersOptions): SharedInformers {
  const base = {
    clock: o.clock,
    random: o.random,
    logger: o.logger,
    collectGarbage: o.collectGarbage,
  };
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
    // Only claims are looked up by UID (their work queue is keyed by it).
    uidIndex: false,
  });
  const classes = new Informer<StorageClass>({
    ...base,
    client: o.api.resource(resources.storageClasses),
    project: projectStorageClass,
    uidIndex: false,
  });
  const attachments = o.watchAttachments
    ? new Informer<VolumeAttachment>({
        ...base,
        client: o.api.resource(resources.volumeAttachments),
        project: projectVolumeAttachment,
        indexers: { [ATTACHMENTS_BY_PV]: volumeAttachmentsByPv },
        uidIndex: false,
      })
    : undefined;
  const csiNodes = o.watchNodes
    ? new Informer<CSINode>({
        ...base,
        client: o.api.resource(resources.csiNodes),
        project: projectCSINode,
        uidIndex: false,
      })
    : undefined;
  const nodes = o.watchNodes
    ? new Informer<Node>({
        ...base,
        client: o.api.resource(resources.nodes),
        project: projectNode,
        uidIndex: false,
      })
    : undefined;
  const all = [claims, volumes, classes, attachments, csiNodes, nodes].filter(
    (i) => i !== undefined,
  );
  return { claims, volumes, classes, attachments, csiNodes, nodes, all };
}

/** `--node-deployment`: this node, its topology from NodeGetInfo, and ownership settings. */
export interface NodeMode {
  name: string;
  segments: Record<string, string>;
  immediateBinding: boolean;
  baseDelayMs: number;
  maxDelayMs: number;
}

/** What the capacity controller wants to hear from provisioning and deletion. */
export interface CapacityHooks {
  onProvisioned(pv: PersistentVolume): void;
  onProvisionFailed(className: string): void;
  onDeleted(pv: PersistentVolume): void;
}

export interface ProvisionControllersOptions {
  api: KubeApi;
  driver: CsiDriver;
  config: ProvisionerConfig;
  identity: string;
  informers: SharedInformers;
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
  /** See `ClaimSyncerOptions.slowEventMs`. */
  slowEventMs?: number;
  node?: NodeMode;
  capacity?: CapacityHooks;
}

export interface ProvisionControllers {
  claims: QueueController<string>;
  volumes: QueueController<string>;
}

/**
 * Lookups of nodes and CSINodes. In node mode this instance sees only its own node, described
 * by NodeGetInfo (as upstream, which builds static Node and CSINode objects instead of
 * watching every Node).
 */
function lookupsFor(o: ProvisionControllersOptions): ProvisionLookups {
  const { claims, csiNodes, nodes } = o.informers;
  const base = createLookups({ api: o.api, claims, csiNodes, nodes, clock: o.clock });
  const node = o.node;
  if (!node) return base;
  return {
    ...base,
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
  };
}

/** Node mode: which claims this node takes, and whether it has the capacity for them. */
function ownershipFor(o: ProvisionControllersOptions, node: NodeMode, lookups: ProvisionLookups) {
  return createNodeOwnership({
    api: o.api,
    nodeName: node.name,
    immediateBinding: node.immediateBinding,
    baseDelayMs: node.baseDelayMs,
    maxDelayMs: node.maxDelayMs,
    clock: o.clock,
    random: o.random,
    logger: o.logger,
    getClaim: (uid) => o.informers.claims.store.getByUid(uid),
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
          if (prepared.kind !== "ok") throw new Error(prepared.message);
          return capacityFitsRequest(o.driver, prepared.request, signal);
        }
      : undefined,
  });
}

/** The claim controller (provisioning) and the volume controller (deletion). */
export function createProvisionControllers(o: ProvisionControllersOptions): ProvisionControllers {
  const { claims, volumes, classes, attachments } = o.informers;
  const queueOpts = {
    clock: o.clock,
    retryStartMs: o.retryStartMs,
    retryMaxMs: o.retryMaxMs,
    metrics: o.metrics?.workQueue,
  };
  const claimQueue = new WorkQueue<string>({ ...queueOpts, name: "claims" });
  const volumeQueue = new WorkQueue<string>({ ...queueOpts, name: "volumes" });
  const lookups = lookupsFor(o);
  const ownership = o.node ? ownershipFor(o, o.node, lookups) : undefined;
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
      o.capacity?.onProvisioned(pv);
      const ref = pv.spec.claimRef;
      o.latency?.provisioned(claims.store.get(`${ref?.namespace}/${ref?.name}`), pv);
    },
    onProvisionFailed: o.capacity
      ? (className) => o.capacity?.onProvisionFailed(className)
      : undefined,
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
    nodeSegments: o.node?.segments,
    onDeleted: (pv) => {
      o.capacity?.onDeleted(pv);
      o.latency?.deleted(pv);
    },
  });
  /** A claim for this driver deleted before it got a PV (for the end-to-end latency). */
  const isAbandoned = (c: PersistentVolumeClaim): boolean => {
    if (c.spec.volumeName || claimProvisionerName(c) !== o.config.driverName) return false;
    try {
      return !volumes.store.get(volumeNameForClaim(c, o.config));
    } catch {
      return false;
    }
  };
  const workers = Math.max(1, o.workerThreads);

  const claimController: QueueController<string> = {
    what: "Claim",
    keyField: "uid",
    queue: claimQueue,
    workers,
    async start(signal) {
      // Crash recovery: every recorded intent gets a sync (finish it, or clean up after it).
      const intents = await o.journal.load(signal);
      if (intents.length > 0) {
        o.logger.info("Resuming provisioning intents left by an earlier run", {
          count: intents.length,
        });
      }
      for (const i of intents) claimQueue.add(i.uid);
      const enqueue = (c: PersistentVolumeClaim) => {
        if (claimSyncer.needsSync(c)) claimQueue.add(c.metadata.uid ?? "");
      };
      claims.addEventHandler({
        onAdd: enqueue,
        onUpdate: (_old, c) => enqueue(c),
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
    },
    sync: (uid, signal, stopping) => claimSyncer.syncClaim(uid, signal, stopping),
  };

  const volumeController: QueueController<string> = {
    what: "Volume",
    keyField: "volume",
    queue: volumeQueue,
    workers,
    start() {
      const enqueue = (v: PersistentVolume) => {
        if (volumeSyncer.needsSync(v)) volumeQueue.add(v.metadata.name ?? "");
      };
      volumes.addEventHandler({
        onAdd: enqueue,
        onUpdate: (_old, v) => enqueue(v),
        onDelete: (v) => {
          volumeSyncer.forgetVolume(v.metadata.uid ?? "");
          volumeQueue.cancelDelayed(v.metadata.name ?? "");
          volumeQueue.forget(v.metadata.name ?? "");
        },
      });
    },
    sync: (name, signal) => volumeSyncer.syncVolume(name, signal),
  };

  return { claims: claimController, volumes: volumeController };
}
