/**
 * Storage capacity tracking (`--enable-capacity`, reference §2.13): publishes one
 * CSIStorageCapacity object per (topology segment, StorageClass) so that the scheduler can
 * place pods where there is room for their volumes.
 *
 * What it keeps in step:
 * - **Segments** ({@link ./topology.ts}): from CSINodes where the driver is registered and their
 *   Nodes' labels, recomputed on a `csitopology` queue whenever a Node's labels or a CSINode's
 *   topology keys for the driver change; in `--node-deployment` mode one fixed segment.
 * - **Work items**: every segment × every StorageClass with `provisioner == driver` (classes with
 *   Immediate binding only with `--capacity-for-immediate-binding`).
 * - **Objects**: the CSIStorageCapacity objects in the provisioner's namespace carrying this
 *   instance's labels, watched by an informer of its own. Each item adopts the object that
 *   matches its class and segment; an object no item wants (obsolete class or segment), or a
 *   second object for an item that already has one (duplicate), is deleted; an object of an
 *   item that someone else deleted is created again.
 *
 * Syncing an item (the `csistoragecapacity` queue, `--capacity-threads` workers) calls
 * `GetCapacity{parameters: class parameters, volume_capabilities: none, accessible_topology:
 * segment}` with `--timeout`, then creates the object (`generateName: csisc-`) or updates it when
 * the capacity, the maximum volume size or the owner reference differ; otherwise it writes
 * nothing. A failure (GetCapacity or API) writes nothing and retries the item with the queue's
 * per-item exponential back-off (`--retry-interval-start` … `--retry-interval-max`).
 *
 * Items are refreshed every `--capacity-poll-interval`, when a class or the topology changes,
 * and through {@link CapacityController.onProvisioned} / `onProvisionFailed` / `onDeleted`, which
 * the provisioning controllers call (upstream's `provisionWrapper`).
 *
 * As upstream, a created or updated object is not recorded from the API's answer but from the
 * informer's event, so the cache never goes back to an older state; an object deleted before
 * its event arrives therefore cannot be mistaken for a live one.
 *
 * The `api` must be the client on the capacity budget (`--kube-api-capacity-qps` /
 * `--kube-api-capacity-burst`): every CSIStorageCapacity list, watch and write goes through it.
 */

import { runSyncWorkers, type SyncResult } from "../controller/manager.ts";
import type { WorkQueueMetrics } from "../controller/workqueue.ts";
import { runWorkers, WorkQueue } from "../controller/workqueue.ts";
import type { CsiDriver } from "../csi/client.ts";
import { DEFAULT_CALL_TIMEOUT_MS } from "../csi/client.ts";
import { describeCsiError } from "../csi/errors.ts";
import type { KubeApi } from "../kube/api.ts";
import { isConflict, isKubeApiError, isNotFound } from "../kube/errors.ts";
import type { EventHandler, HandlerRegistration } from "../kube/informer.ts";
import { Informer } from "../kube/informer.ts";
import type {
  CSINode,
  CSIStorageCapacity,
  KubeObject,
  Node,
  PersistentVolume,
  StorageClass,
} from "../kube/objects.ts";
import { withoutManagedFields } from "../kube/projections.ts";
import { apiVersionOf, resources } from "../kube/resources.ts";
import type { ReadonlyStore } from "../kube/store.ts";
import type { Gauge, Registry } from "../metrics/registry.ts";
import { formatBinarySI, parseQuantity } from "../provision/quantity.ts";
import type { Clock, Random } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { nullLogger } from "../util/log.ts";
import {
  capacityLabelSelector,
  capacityLabels,
  DRIVER_NAME_LABEL,
  MANAGED_BY_LABEL,
  managedByValue,
} from "./names.ts";
import { type CapacityOwner, isControlledBy, ownerReferenceOf } from "./owner.ts";
import {
  describeSegment,
  driverTopologyKeys,
  labelSelectorOf,
  nodeSegments,
  type Segment,
  segmentFromMap,
  segmentKey,
  segmentToMap,
  volumeSegments,
} from "./topology.ts";

/** What the controller needs of an informer the caller owns and runs (an `Informer` fits). */
export interface SourceInformer<P extends KubeObject> {
  readonly store: ReadonlyStore<P>;
  addEventHandler(handler: EventHandler<P>): HandlerRegistration;
  waitForSync(signal?: AbortSignal): Promise<void>;
}

/** Where the topology segments come from. */
export type CapacityTopology =
  /** Central mode: CSINodes and Nodes (the caller's shared informers). */
  | { csiNodes: SourceInformer<CSINode>; nodes: SourceInformer<Node> }
  /**
   * `--node-deployment`: the one segment of this node, NodeGetInfo's `accessible_topology`
   * segments (`{}` when the driver reports none: the object then selects every node).
   */
  | { fixedSegment: Readonly<Record<string, string>> };

export interface CapacityControllerOptions {
  /**
   * The Kubernetes API on the capacity budget: a separate transport built with
   * `--kube-api-capacity-qps` / `--kube-api-capacity-burst` (default 1 / 5). Used for the
   * CSIStorageCapacity informer and writes only.
   */
  api: KubeApi;
  /** The CSI driver; only `GetCapacity` is called. */
  driver: Pick<CsiDriver, "getCapacity">;
  /** The driver's name (GetPluginInfo); the `csi.storage.k8s.io/drivername` label. */
  driverName: string;
  /** Where the objects live: the `NAMESPACE` environment variable. */
  namespace: string;
  /**
   * The owner of the objects, from {@link resolveOwner} with `--capacity-ownerref-level`;
   * `undefined` (level -1) writes no owner reference.
   */
  owner?: CapacityOwner;
  /**
   * `NODE_NAME` in `--node-deployment` mode: the managed-by label becomes
   * `external-provisioner-<node>` (shortened to 63 characters). Default: none (central).
   */
  nodeName?: string;
  /** StorageClasses (the caller's shared informer, which the caller runs). */
  classes: SourceInformer<StorageClass>;
  topology: CapacityTopology;
  /** `--capacity-for-immediate-binding`: include classes with Immediate binding. Default false. */
  immediateBinding?: boolean;
  /** `--capacity-poll-interval` in ms; 0 or less turns polling off. Default 60 000. */
  pollIntervalMs?: number;
  /** `--timeout` in ms, the deadline of each GetCapacity. Default 10 000. */
  timeoutMs?: number;
  /** `--capacity-threads`. Default 1. */
  workers?: number;
  /** `--retry-interval-start` in ms: first retry delay of a failed item. Default 1 000. */
  retryStartMs?: number;
  /** `--retry-interval-max` in ms: longest retry delay. Default 300 000. */
  retryMaxMs?: number;
  /**
   * Registers `csistoragecapacities_desired_goal`, `csistoragecapacities_desired_current` and
   * `csistoragecapacities_obsolete` here. Default: no metrics.
   */
  registry?: Registry;
  /** Depth/adds/retries of the `csistoragecapacity` and `csitopology` queues. Default none. */
  queueMetrics?: WorkQueueMetrics;
  clock: Clock;
  random: Random;
  /** Default: discards. */
  logger?: Logger;
  /** Watch tuning of the CSIStorageCapacity informer (tests). Default: the reflector's. */
  minWatchTimeoutSeconds?: number;
  /** Told what each processed queue entry did (tests and tools). Default: nobody. */
  onEvent?: (event: CapacityEvent) => void;
}

/** What processing one queue entry did. */
export type CapacityEvent =
  | {
      /**
       * `created` / `updated` / `unchanged`: the item's object; `failed`: GetCapacity or the
       * write failed and the item is retried after `retryInMs`; `obsolete`: the item was gone by
       * the time it was processed.
       */
      kind: "created" | "updated" | "unchanged" | "failed" | "obsolete";
      storageClassName: string;
      segment: Segment;
      error?: string;
      retryInMs?: number;
    }
  | {
      /** `deleted`: an obsolete or duplicate object was deleted (or was gone already). */
      kind: "deleted" | "delete-failed";
      name: string;
      error?: string;
      retryInMs?: number;
    }
  | {
      /** The informer reports that an object no longer exists (whoever deleted it). */
      kind: "removed";
      name: string;
    }
  | {
      /** The informer delivered the object an item now publishes to. */
      kind: "adopted";
      name: string;
      storageClassName: string;
      segment: Segment;
    }
  | {
      /** The informers synced and the work items are known; workers start now. */
      kind: "prepared";
      segments: number;
      items: number;
    };

export interface CapacityStats {
  /** Objects that should exist: segments × eligible classes (the `desired_goal` gauge). */
  goal: number;
  /** Of those, how many exist (the `desired_current` gauge). */
  current: number;
  /** Managed objects that match no item and will be deleted (the `obsolete` gauge). */
  obsolete: number;
  /** Known topology segments. */
  segments: number;
  /** GetCapacity calls made / failed. */
  getCapacityCalls: number;
  getCapacityErrors: number;
  /** Successful writes. */
  creates: number;
  updates: number;
  deletes: number;
}

export interface CapacityController {
  /**
   * Waits for the informers to sync, then publishes capacity until `signal` aborts; resolves
   * once the workers have finished their current item and the informer has stopped. Runs once.
   */
  run(signal: AbortSignal): Promise<void>;
  /**
   * A volume was provisioned: refresh the items of the segments of its node affinity, or, when
   * it has none, of its StorageClass.
   */
  onProvisioned(pv: PersistentVolume): void;
  /** Provisioning failed (other than "no change"): refresh the items of the class. */
  onProvisionFailed(storageClassName: string): void;
  /** A volume was deleted: refresh the items of the segments of its node affinity. */
  onDeleted(pv: PersistentVolume): void;
  readonly stats: CapacityStats;
}

interface Item {
  readonly key: string;
  readonly className: string;
  readonly segment: Segment;
  readonly segmentId: string;
  /** The object this item publishes to, as the informer last saw it. */
  object?: CSIStorageCapacity;
}

/** Store index of the CSIStorageCapacity informer: the item key an object matches. */
const BY_ITEM = "item";
const ITEM_PREFIX = "item\u0000";
const DELETE_PREFIX = "delete\u0000";

function itemKey(className: string, segmentId: string): string {
  return `${ITEM_PREFIX}${className}\u0000${segmentId}`;
}

function sameQuantity(text: string | undefined, value: bigint | undefined): boolean {
  if (text === undefined || value === undefined) return text === undefined && value === undefined;
  try {
    return parseQuantity(text) === value;
  } catch {
    return false;
  }
}

/**
 * The key of the item an object would serve: its class and the segment its `nodeTopology`
 * selects. `undefined` for a selector that is not a plain `matchLabels` (no item wants it).
 */
function itemKeyOfObject(obj: CSIStorageCapacity): string | undefined {
  const sel = obj.nodeTopology;
  if (!sel || typeof sel !== "object") return undefined;
  if ((sel.matchExpressions?.length ?? 0) > 0) return undefined;
  return itemKey(obj.storageClassName ?? "", segmentKey(segmentFromMap(sel.matchLabels ?? {})));
}

export function createCapacityController(options: CapacityControllerOptions): CapacityController {
  return new Controller(options);
}

/** Which controller the capacity gauges of a registry report. */
const metricsOwners = new WeakMap<Registry, { current: Controller }>();

class Controller implements CapacityController {
  readonly #o: CapacityControllerOptions;
  readonly #log: Logger;
  readonly #managedBy: string;
  readonly #client;
  readonly #queue: WorkQueue<string>;
  readonly #topologyQueue: WorkQueue<string>;
  /** Known segments by id. */
  #segments = new Map<string, Segment>();
  /** Desired objects by item key. */
  readonly #items = new Map<string, Item>();
  /** UID of an adopted object → item key. */
  readonly #byUid = new Map<string, string>();
  /** Objects queued for deletion, by name. */
  readonly #pendingDeletes = new Map<string, { uid: string | undefined }>();
  #informer: Informer<CSIStorageCapacity> | undefined;
  #started = false;
  #counters = {
    getCapacityCalls: 0,
    getCapacityErrors: 0,
    creates: 0,
    updates: 0,
    deletes: 0,
  };

  constructor(o: CapacityControllerOptions) {
    this.#o = o;
    this.#log = (o.logger ?? nullLogger).with({ controller: "capacity" });
    this.#managedBy = managedByValue(o.nodeName);
    this.#client = o.api.resource(resources.csiStorageCapacities);
    const retryStartMs = o.retryStartMs ?? 1_000;
    const retryMaxMs = o.retryMaxMs ?? 300_000;
    this.#queue = new WorkQueue<string>({
      clock: o.clock,
      retryStartMs,
      retryMaxMs,
      name: "csistoragecapacity",
      metrics: o.queueMetrics,
    });
    this.#topologyQueue = new WorkQueue<string>({
      clock: o.clock,
      retryStartMs,
      retryMaxMs,
      name: "csitopology",
      metrics: o.queueMetrics,
    });
    if (o.registry) this.#registerMetrics(o.registry);
  }

  get stats(): CapacityStats {
    let current = 0;
    for (const item of this.#items.values()) if (item.object) current++;
    return {
      goal: this.#items.size,
      current,
      obsolete: this.#countObsolete(),
      segments: this.#segments.size,
      ...this.#counters,
    };
  }

  #registerMetrics(registry: Registry): void {
    // A replica that lost and regained leadership builds a new controller: the gauges are
    // registered once per registry and report the newest controller.
    const existing = metricsOwners.get(registry);
    if (existing) {
      existing.current = this;
      return;
    }
    const owner = { current: this as Controller };
    metricsOwners.set(registry, owner);
    const gauges: [Gauge, keyof CapacityStats][] = [
      [
        registry.gauge(
          "csistoragecapacities_desired_goal",
          "Number of CSIStorageCapacity objects that are supposed to be managed automatically.",
        ),
        "goal",
      ],
      [
        registry.gauge(
          "csistoragecapacities_desired_current",
          "Number of CSIStorageCapacity objects that exist and are supposed to be managed automatically.",
        ),
        "current",
      ],
      [
        registry.gauge(
          "csistoragecapacities_obsolete",
          "Number of CSIStorageCapacity objects that exist and will be deleted automatically. Objects that exist and may need an update are not considered obsolete and therefore not included in this value.",
        ),
        "obsolete",
      ],
    ];
    registry.onCollect(() => {
      const s = owner.current.stats;
      for (const [gauge, field] of gauges) gauge.set(undefined, s[field]);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Lifecycle

  async run(signal: AbortSignal): Promise<void> {
    if (this.#started) throw new Error("The capacity controller can run only once");
    this.#started = true;
    const o = this.#o;
    this.#log.info("Starting capacity controller", {
      namespace: o.namespace,
      managedBy: this.#managedBy,
      owner: o.owner ? `${o.owner.kind} ${o.owner.name}` : "none",
    });
    const informer = new Informer<CSIStorageCapacity>({
      client: this.#client,
      clock: o.clock,
      random: o.random,
      logger: o.logger,
      name: "csistoragecapacities",
      namespace: o.namespace,
      labelSelector: capacityLabelSelector(o.driverName, this.#managedBy),
      project: withoutManagedFields,
      indexers: {
        [BY_ITEM]: (obj) => {
          const key = this.#isManaged(obj) ? itemKeyOfObject(obj) : undefined;
          return key === undefined ? [] : [key];
        },
      },
      minWatchTimeoutSeconds: o.minWatchTimeoutSeconds,
    });
    this.#informer = informer;
    const informerDone = informer.run(signal).catch((e) => {
      this.#log.error(`CSIStorageCapacity informer stopped: ${errorText(e)}`);
    });
    const registrations: HandlerRegistration[] = [];
    const tasks: Promise<void>[] = [];
    try {
      const waits: Promise<void>[] = [o.classes.waitForSync(signal), informer.waitForSync(signal)];
      if ("csiNodes" in o.topology) {
        waits.push(o.topology.csiNodes.waitForSync(signal), o.topology.nodes.waitForSync(signal));
      }
      await Promise.all(waits);
      if (signal.aborted) return;

      // Everything from here to the handler registrations runs without an await, so no event
      // can slip between the snapshot taken from the stores and the handlers.
      this.#setSegments(this.#computeSegments());
      for (const sc of o.classes.store.list()) this.#onClass(sc);
      for (const obj of informer.store.list()) this.#onCapacity(obj);
      this.#log.v(3).info("Capacity controller prepared", {
        segments: this.#segments.size,
        items: this.#items.size,
        objects: informer.store.size,
      });
      this.#emit({ kind: "prepared", segments: this.#segments.size, items: this.#items.size });
      registrations.push(
        o.classes.addEventHandler({
          onAdd: (sc) => this.#onClass(sc),
          onUpdate: (old, sc) => this.#onClass(sc, !sameLabels(old.parameters, sc.parameters)),
          onDelete: (sc) => this.#onClassDeleted(sc),
        }),
        informer.addEventHandler({
          onAdd: (obj) => this.#onCapacity(obj),
          onUpdate: (_old, obj) => this.#onCapacity(obj),
          onDelete: (obj) => this.#onCapacityDeleted(obj),
        }),
      );
      if ("csiNodes" in o.topology) {
        const t = o.topology;
        const recompute = () => this.#topologyQueue.add("segments");
        registrations.push(
          t.csiNodes.addEventHandler({
            onAdd: recompute,
            onUpdate: (old, obj) => {
              const before = driverTopologyKeys(old, o.driverName);
              const after = driverTopologyKeys(obj, o.driverName);
              if (JSON.stringify(before) !== JSON.stringify(after)) recompute();
            },
            onDelete: recompute,
          }),
          t.nodes.addEventHandler({
            onAdd: recompute,
            onUpdate: (old, obj) => {
              if (!sameLabels(old.metadata.labels, obj.metadata.labels)) recompute();
            },
            onDelete: recompute,
          }),
        );
        tasks.push(
          runWorkers(
            this.#topologyQueue,
            1,
            async (key) => {
              this.#setSegments(this.#computeSegments());
              this.#topologyQueue.forget(key);
            },
            signal,
          ),
        );
      }
      const workers = Math.max(1, o.workers ?? 1);
      tasks.push(
        runSyncWorkers(
          {
            what: "Capacity item",
            keyField: "item",
            queue: this.#queue,
            workers,
            sync: (key) => this.#handle(key, signal),
          },
          { clock: o.clock, logger: this.#log, retryMaxMs: o.retryMaxMs ?? 300_000 },
          signal,
          signal,
        ),
      );
      tasks.push(this.#pollLoop(signal));
      this.#log.info("Started capacity controller", { workers });
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener("abort", () => resolve(), { once: true });
      });
    } catch (e) {
      if (!signal.aborted) throw e;
    } finally {
      this.#queue.shutDown();
      this.#topologyQueue.shutDown();
      for (const r of registrations) r.remove();
      await Promise.all(tasks);
      await informerDone;
      this.#log.info("Stopped capacity controller");
    }
  }

  async #pollLoop(signal: AbortSignal): Promise<void> {
    const interval = this.#o.pollIntervalMs ?? 60_000;
    if (interval <= 0) return;
    for (;;) {
      try {
        await this.#o.clock.sleep(interval, signal);
      } catch {
        return;
      }
      this.#log.v(5).info("Refreshing all capacity items", { items: this.#items.size });
      for (const item of this.#items.values()) this.#queue.add(item.key);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Refresh hooks

  onProvisioned(pv: PersistentVolume): void {
    const segments = volumeSegments(pv);
    if (segments !== undefined) {
      this.#refreshSegments(segments);
      return;
    }
    const className = pv.spec?.storageClassName;
    if (className) this.onProvisionFailed(className);
  }

  onProvisionFailed(storageClassName: string): void {
    for (const item of this.#items.values()) {
      if (item.className === storageClassName) this.#queue.add(item.key);
    }
  }

  onDeleted(pv: PersistentVolume): void {
    const segments = volumeSegments(pv);
    if (segments !== undefined) this.#refreshSegments(segments);
  }

  #refreshSegments(segments: readonly Segment[]): void {
    const ids = new Set(segments.map(segmentKey));
    for (const item of this.#items.values()) {
      if (ids.has(item.segmentId)) this.#queue.add(item.key);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Desired state: segments × classes

  #computeSegments(): Segment[] {
    const t = this.#o.topology;
    if ("fixedSegment" in t) return [segmentFromMap(t.fixedSegment)];
    return nodeSegments(this.#o.driverName, t.csiNodes.store.list(), (name) =>
      t.nodes.store.get(name),
    );
  }

  #setSegments(next: readonly Segment[]): void {
    const fresh = new Map<string, Segment>();
    for (const s of next) fresh.set(segmentKey(s), s);
    const added = [...fresh.keys()].filter((id) => !this.#segments.has(id));
    const removed = [...this.#segments.keys()].filter((id) => !fresh.has(id));
    if (added.length === 0 && removed.length === 0) return;
    this.#log.v(3).info("Topology changed", {
      added: added.map((id) => describeSegment(fresh.get(id)!)),
      removed: removed.map((id) => describeSegment(this.#segments.get(id)!)),
    });
    this.#segments = fresh;
    for (const sc of this.#o.classes.store.list()) {
      if (!this.#eligible(sc)) continue;
      const className = sc.metadata.name ?? "";
      for (const id of added) this.#addItem(className, fresh.get(id)!);
      for (const id of removed) this.#removeItem(itemKey(className, id));
    }
  }

  #eligible(sc: StorageClass): boolean {
    if (sc.provisioner !== this.#o.driverName) return false;
    return this.#o.immediateBinding === true || sc.volumeBindingMode !== "Immediate";
  }

  /**
   * A class appeared or changed: add its items (each new one is queued). Items that exist are
   * queued again only with `refresh` (its parameters changed), so the replay of known classes
   * when the handler is registered costs no GetCapacity.
   */
  #onClass(sc: StorageClass, refresh = false): void {
    const className = sc.metadata.name ?? "";
    if (!this.#eligible(sc)) {
      // A class that stopped qualifying (or never did) has no items.
      this.#removeClass(className);
      if (sc.provisioner === this.#o.driverName) {
        this.#log.v(3).info("Ignoring storage class with immediate binding", {
          storageclass: className,
        });
      }
      return;
    }
    for (const segment of this.#segments.values()) this.#addItem(className, segment, refresh);
  }

  #onClassDeleted(sc: StorageClass): void {
    this.#removeClass(sc.metadata.name ?? "");
  }

  #removeClass(className: string): void {
    for (const item of [...this.#items.values()]) {
      if (item.className === className) this.#removeItem(item.key);
    }
  }

  /** Adds the item of a class and segment and queues it; an existing one only with `refresh`. */
  #addItem(className: string, segment: Segment, refresh = false): void {
    const segmentId = segmentKey(segment);
    const key = itemKey(className, segmentId);
    if (this.#items.has(key) && !refresh) return;
    if (!this.#items.has(key)) {
      const item: Item = { key, className, segment, segmentId };
      this.#items.set(key, item);
      this.#adoptLeftover(item);
    }
    this.#queue.add(key);
  }

  #removeItem(key: string): void {
    const item = this.#items.get(key);
    if (!item) return;
    this.#items.delete(key);
    this.#queue.cancelDelayed(key);
    this.#queue.forget(key);
    if (item.object) {
      this.#byUid.delete(item.object.metadata.uid ?? "");
      this.#queueDelete(item.object);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Actual state: the CSIStorageCapacity informer

  #isManaged(obj: CSIStorageCapacity): boolean {
    const labels = obj.metadata.labels ?? {};
    return (
      labels[DRIVER_NAME_LABEL] === this.#o.driverName &&
      labels[MANAGED_BY_LABEL] === this.#managedBy
    );
  }

  #adopt(item: Item, obj: CSIStorageCapacity): void {
    item.object = obj;
    const uid = obj.metadata.uid;
    if (uid) this.#byUid.set(uid, item.key);
    const name = obj.metadata.name ?? "";
    this.#pendingDeletes.delete(name);
    this.#emit({
      kind: "adopted",
      name,
      storageClassName: item.className,
      segment: item.segment,
    });
  }

  #onCapacity(obj: CSIStorageCapacity): void {
    const uid = obj.metadata.uid ?? "";
    const heldBy = this.#byUid.get(uid);
    const holder = heldBy === undefined ? undefined : this.#items.get(heldBy);
    if (!this.#isManaged(obj)) {
      // Someone changed its labels: it is not ours any more; publish a new one.
      if (holder) {
        this.#log.v(5).info("CSIStorageCapacity was taken over by someone else; re-creating it", {
          capacity: obj.metadata.name,
        });
        this.#release(holder);
        this.#queue.add(holder.key);
      }
      return;
    }
    if (holder) {
      holder.object = obj;
      return;
    }
    const key = itemKeyOfObject(obj);
    const item = key === undefined ? undefined : this.#items.get(key);
    if (item && !item.object) {
      this.#log.v(5).info("Found CSIStorageCapacity for item", {
        capacity: obj.metadata.name,
        storageclass: item.className,
        segment: describeSegment(item.segment),
      });
      this.#adopt(item, obj);
      return;
    }
    this.#log
      .v(5)
      .info(
        item ? "Deleting duplicate CSIStorageCapacity" : "Deleting obsolete CSIStorageCapacity",
        { capacity: obj.metadata.name, storageclass: obj.storageClassName },
      );
    this.#queueDelete(obj);
  }

  #onCapacityDeleted(obj: CSIStorageCapacity): void {
    const name = obj.metadata.name ?? "";
    const pending = this.#pendingDeletes.get(name);
    if (pending && (pending.uid === undefined || pending.uid === obj.metadata.uid)) {
      this.#pendingDeletes.delete(name);
    }
    const heldBy = this.#byUid.get(obj.metadata.uid ?? "");
    const holder = heldBy === undefined ? undefined : this.#items.get(heldBy);
    this.#emit({ kind: "removed", name });
    if (!holder) return;
    this.#log.v(5).info("CSIStorageCapacity was deleted by someone else; re-creating it", {
      capacity: name,
      storageclass: holder.className,
    });
    this.#release(holder);
    this.#queue.add(holder.key);
  }

  /** Forgets the item's object (gone, or no longer ours) and adopts a spare one if there is one. */
  #release(item: Item): void {
    const uid = item.object?.metadata.uid;
    if (uid !== undefined) this.#byUid.delete(uid);
    item.object = undefined;
    this.#adoptLeftover(item, uid);
  }

  /**
   * Lets an item without object adopt a managed object that matches it and that no item holds
   * (one queued for deletion as a duplicate or as obsolete), instead of creating another.
   */
  #adoptLeftover(item: Item, exceptUid?: string): void {
    const spare = this.#informer?.store.byIndex(BY_ITEM, item.key).find((obj) => {
      const uid = obj.metadata.uid ?? "";
      return uid !== exceptUid && !this.#byUid.has(uid);
    });
    if (spare) this.#adopt(item, spare);
  }

  #queueDelete(obj: CSIStorageCapacity): void {
    const name = obj.metadata.name ?? "";
    if (name === "") return;
    this.#pendingDeletes.set(name, { uid: obj.metadata.uid });
    this.#queue.add(`${DELETE_PREFIX}${name}`);
  }

  #countObsolete(): number {
    const informer = this.#informer;
    if (!informer) return 0;
    let n = 0;
    for (const obj of informer.store.list()) {
      if (!this.#isManaged(obj)) continue;
      const key = itemKeyOfObject(obj);
      if (key === undefined || !this.#items.has(key)) n++;
    }
    return n;
  }

  // ---------------------------------------------------------------------------------------------
  // Workers

  /** One item (or a leftover to delete): its sync result for the shared worker loop. */
  async #handle(key: string, signal: AbortSignal): Promise<SyncResult> {
    const deleting = key.startsWith(DELETE_PREFIX);
    const item = deleting ? undefined : this.#items.get(key);
    try {
      if (deleting) {
        const name = key.slice(DELETE_PREFIX.length);
        await this.#delete(name, signal);
        this.#emit({ kind: "deleted", name });
      } else {
        const kind = await this.#sync(key, signal);
        if (item) this.#emit({ kind, storageClassName: item.className, segment: item.segment });
      }
      return { kind: "done" };
    } catch (e) {
      const error = errorText(e);
      if (signal.aborted) return { kind: "retry", reason: error };
      // The back-off this failure gets once the worker loop applies the result.
      const retryInMs = this.#queue.nextDelay(key);
      this.#log.warn(error, { failures: this.#queue.failures(key) + 1, retryInMs });
      if (deleting) {
        this.#emit({
          kind: "delete-failed",
          name: key.slice(DELETE_PREFIX.length),
          error,
          retryInMs,
        });
      } else if (item) {
        this.#emit({
          kind: "failed",
          storageClassName: item.className,
          segment: item.segment,
          error,
          retryInMs,
        });
      }
      return { kind: "retry", reason: error };
    }
  }

  #emit(event: CapacityEvent): void {
    try {
      this.#o.onEvent?.(event);
    } catch (e) {
      this.#log.error(`Capacity event observer failed: ${errorText(e)}`);
    }
  }

  async #sync(
    key: string,
    signal: AbortSignal,
  ): Promise<"created" | "updated" | "unchanged" | "obsolete"> {
    const item = this.#items.get(key);
    if (!item) return "obsolete";
    const sc = this.#o.classes.store.get(item.className);
    if (!sc) return "obsolete"; // the class is gone; its delete event removes the item
    const where = `storage class ${item.className}, segment ${describeSegment(item.segment)}`;
    this.#log.v(5).info("Refreshing capacity", {
      storageclass: item.className,
      segment: describeSegment(item.segment),
    });

    this.#counters.getCapacityCalls++;
    let available: bigint;
    let maximum: bigint | undefined;
    try {
      const resp = await this.#o.driver.getCapacity(
        {
          parameters: { ...(sc.parameters ?? {}) },
          volumeCapabilities: [],
          accessibleTopology: { segments: segmentToMap(item.segment) },
        },
        { signal, timeoutMs: this.#o.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS },
      );
      available = resp.availableCapacity;
      maximum = resp.maximumVolumeSize;
    } catch (e) {
      this.#counters.getCapacityErrors++;
      throw new Error(`GetCapacity for ${where} failed: ${describeCsiError(e)}`, { cause: e });
    }
    // The desired state may have changed while the driver answered.
    if (this.#items.get(key) !== item) return "obsolete";
    const capacity = formatBinarySI(available);
    const maximumVolumeSize = maximum === undefined ? undefined : formatBinarySI(maximum);
    const owner = this.#o.owner;
    const existing = item.object;

    if (!existing) {
      const obj: CSIStorageCapacity = {
        apiVersion: apiVersionOf(resources.csiStorageCapacities),
        kind: resources.csiStorageCapacities.kind,
        metadata: {
          generateName: "csisc-",
          namespace: this.#o.namespace,
          labels: capacityLabels(this.#o.driverName, this.#managedBy),
          ...(owner ? { ownerReferences: [ownerReferenceOf(owner)] } : {}),
        },
        storageClassName: item.className,
        nodeTopology: labelSelectorOf(item.segment),
        capacity,
        ...(maximumVolumeSize === undefined ? {} : { maximumVolumeSize }),
      };
      let created: CSIStorageCapacity;
      try {
        created = await this.#client.create(obj, { signal });
      } catch (e) {
        throw new Error(`Cannot create CSIStorageCapacity for ${where}: ${errorText(e)}`, {
          cause: e,
        });
      }
      this.#counters.creates++;
      this.#log.v(5).info("Created CSIStorageCapacity", {
        capacity: created.metadata?.name,
        storageclass: item.className,
        segment: describeSegment(item.segment),
        quantity: capacity,
      });
      return "created";
    }

    const ownerOk = owner === undefined || isControlledBy(existing, owner);
    if (
      sameQuantity(existing.capacity, available) &&
      sameQuantity(existing.maximumVolumeSize, maximum) &&
      ownerOk
    ) {
      this.#log.v(5).info("CSIStorageCapacity is up to date", {
        capacity: existing.metadata.name,
        quantity: capacity,
      });
      return "unchanged";
    }
    const next: CSIStorageCapacity = {
      ...existing,
      apiVersion: apiVersionOf(resources.csiStorageCapacities),
      kind: resources.csiStorageCapacities.kind,
      metadata: {
        ...existing.metadata,
        // Our reference replaces another controller reference (an object can have only one,
        // and the API server rejects a second); other references stay.
        ...(ownerOk
          ? {}
          : {
              ownerReferences: [
                ...(existing.metadata.ownerReferences ?? []).filter((r) => r.controller !== true),
                ownerReferenceOf(owner!),
              ],
            }),
      },
      capacity,
    };
    if (maximumVolumeSize === undefined) delete next.maximumVolumeSize;
    else next.maximumVolumeSize = maximumVolumeSize;
    const name = existing.metadata.name ?? "";
    let saved: CSIStorageCapacity;
    try {
      saved = await this.#client.update(next, { signal });
    } catch (e) {
      if (isNotFound(e) && this.#items.get(key) === item && item.object === existing) {
        // Deleted under us and the event has not arrived yet: create it anew.
        this.#release(item);
      }
      throw new Error(
        `Cannot update CSIStorageCapacity ${this.#o.namespace}/${name} for ${where}: ${errorText(e)}`,
        { cause: e },
      );
    }
    // The next sync compares with (and updates from) what was just written, not with the cached
    // object the watch has not replaced yet: a refresh in between would send the old
    // resourceVersion and fail with a conflict.
    if (this.#items.get(key) === item && item.object === existing) item.object = saved;
    this.#counters.updates++;
    this.#log.v(5).info("Updated CSIStorageCapacity", {
      capacity: name,
      quantity: capacity,
      maximumVolumeSize,
    });
    return "updated";
  }

  async #delete(name: string, signal: AbortSignal): Promise<void> {
    const pending = this.#pendingDeletes.get(name);
    if (!pending) return; // gone already, or adopted by a new item
    if (pending.uid !== undefined && this.#byUid.has(pending.uid)) {
      this.#pendingDeletes.delete(name);
      return;
    }
    try {
      await this.#client.delete(name, this.#o.namespace, { uid: pending.uid, signal });
      this.#counters.deletes++;
      this.#log.v(5).info("Deleted CSIStorageCapacity", { capacity: name });
    } catch (e) {
      // NotFound: gone already. Conflict: the UID precondition failed, so the object of that
      // name is another one, which the informer judges on its own.
      if (!(isNotFound(e) || (isKubeApiError(e) && isConflict(e)))) {
        throw new Error(
          `Cannot delete CSIStorageCapacity ${this.#o.namespace}/${name}: ${errorText(e)}`,
          { cause: e },
        );
      }
    }
    if (this.#pendingDeletes.get(name) === pending) this.#pendingDeletes.delete(name);
  }
}

function sameLabels(
  a: Readonly<Record<string, string>> | undefined,
  b: Readonly<Record<string, string>> | undefined,
): boolean {
  const x = a ?? {};
  const y = b ?? {};
  const keys = Object.keys(x);
  if (keys.length !== Object.keys(y).length) return false;
  return keys.every((k) => Object.hasOwn(y, k) && x[k] === y[k]);
}
