/**
 * The capacity controller wired as the run command wires it, against the test API server (real
 * HTTP, watches) and the fake CSI driver (real gRPC on a unix socket). Time is a FakeClock for
 * the controller and its informers; the API server keeps its own clock, never advanced, so
 * watches never time out. Waits are on events with a real-time deadline, never sleeps.
 */

import type {
  CapacityController,
  CapacityControllerOptions,
  CapacityEvent,
  CapacityStats,
} from "../../src/capacity/controller.ts";
import { createCapacityController } from "../../src/capacity/controller.ts";
import { DRIVER_NAME_LABEL, MANAGED_BY_LABEL } from "../../src/capacity/names.ts";
import type { CapacityOwner } from "../../src/capacity/owner.ts";
import { type CsiDriver, connectDriver } from "../../src/csi/client.ts";
import type { GetCapacityRequest } from "../../src/gen/csi/v1/csi_pb.js";
import type { KubeApi } from "../../src/kube/api.ts";
import { noAuth } from "../../src/kube/auth.ts";
import { createKubeApi } from "../../src/kube/client.ts";
import { Informer } from "../../src/kube/informer.ts";
import type {
  CSINode,
  CSIStorageCapacity,
  KubeObject,
  Node,
  StorageClass,
} from "../../src/kube/objects.ts";
import { projectCSINode, projectNode, projectStorageClass } from "../../src/kube/projections.ts";
import { resources } from "../../src/kube/resources.ts";
import { KubeTransport } from "../../src/kube/transport.ts";
import { Registry } from "../../src/metrics/registry.ts";
import { closeIdleConnections } from "../../src/runtime/https.ts";
import { systemClock } from "../../src/util/clock.ts";
import { nullLogger } from "../../src/util/log.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { type FakeDriver, startFakeDriver } from "../support/fake-driver.ts";
import { within } from "../support/wait.ts";

export { within };

export const DRIVER = "fake.csi.k8s.io";
export const NAMESPACE = "csi";
export const ZONE = "topology.fake.csi.k8s.io/zone";
/** StorageClass parameter the fake GetCapacity multiplies the zone's capacity by. */
export const MULTIPLIER = "multiplier";
export const Mi = 1024n ** 2n;
export const Gi = 1024n ** 3n;

export const OWNER: CapacityOwner = {
  apiVersion: "apps/v1",
  kind: "StatefulSet",
  name: "csi-provisioner",
  uid: "3b0f-owner-uid",
};

// ------------------------------------------------------------------------------------------------
// Objects

export function storageClass(
  name: string,
  opts: {
    provisioner?: string;
    immediate?: boolean;
    parameters?: Record<string, string>;
  } = {},
): StorageClass {
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: { name },
    provisioner: opts.provisioner ?? DRIVER,
    parameters: opts.parameters ?? {},
    reclaimPolicy: "Delete",
    volumeBindingMode: opts.immediate ? "Immediate" : "WaitForFirstConsumer",
  };
}

export function node(name: string, labels: Record<string, string>): Node {
  return { apiVersion: "v1", kind: "Node", metadata: { name, labels } };
}

export function csiNode(name: string, keys: string[] | null = [ZONE], driver = DRIVER): CSINode {
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "CSINode",
    metadata: { name },
    spec: { drivers: [{ name: driver, nodeID: `id-${name}`, topologyKeys: keys }] },
  };
}

/** A Node in `zone` with the driver registered on it (CSINode). */
export function zoneNode(name: string, zone: string): KubeObject[] {
  return [node(name, { [ZONE]: zone }), csiNode(name)];
}

export function capacityObject(
  name: string,
  opts: {
    storageClassName: string;
    zone?: string;
    capacity: string;
    maximumVolumeSize?: string;
    owner?: CapacityOwner | null;
    managedBy?: string;
    driver?: string;
  },
): CSIStorageCapacity {
  const owner = opts.owner === undefined ? OWNER : opts.owner;
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "CSIStorageCapacity",
    metadata: {
      name,
      namespace: NAMESPACE,
      labels: {
        [DRIVER_NAME_LABEL]: opts.driver ?? DRIVER,
        [MANAGED_BY_LABEL]: opts.managedBy ?? "external-provisioner",
      },
      ...(owner ? { ownerReferences: [{ ...owner, controller: true }] } : {}),
    },
    storageClassName: opts.storageClassName,
    nodeTopology: opts.zone === undefined ? {} : { matchLabels: { [ZONE]: opts.zone } },
    capacity: opts.capacity,
    ...(opts.maximumVolumeSize ? { maximumVolumeSize: opts.maximumVolumeSize } : {}),
  };
}

/** One line per object, for order-independent comparison. */
export function summary(objects: readonly CSIStorageCapacity[]): string[] {
  return objects
    .map((o) => {
      const zone = o.nodeTopology?.matchLabels?.[ZONE] ?? "*";
      const owner = o.metadata.ownerReferences?.map((r) => r.uid).join("+") || "-";
      const max = o.maximumVolumeSize ? ` max=${o.maximumVolumeSize}` : "";
      return `${o.storageClassName}@${zone} ${o.capacity}${max} owner=${owner}`;
    })
    .sort();
}

// ------------------------------------------------------------------------------------------------
// Waiting

/** Records the controller's events; waits for one that matches. */
export class EventLog {
  readonly events: CapacityEvent[] = [];
  readonly #waiters = new Set<() => void>();

  push = (e: CapacityEvent): void => {
    this.events.push(e);
    for (const w of [...this.#waiters]) w();
  };

  count(pred: (e: CapacityEvent) => boolean): number {
    return this.events.filter(pred).length;
  }

  /** Resolves once at least `n` recorded events match `pred`. */
  waitFor(pred: (e: CapacityEvent) => boolean, n = 1, what = "controller events"): Promise<void> {
    const check = () => this.count(pred) >= n;
    if (check()) return Promise.resolve();
    let waiter: () => void = () => {};
    const p = new Promise<void>((resolve) => {
      waiter = () => {
        if (check()) {
          this.#waiters.delete(waiter);
          resolve();
        }
      };
      this.#waiters.add(waiter);
    });
    return within(
      p,
      5000,
      () =>
        `${what} (have ${this.count(pred)} of ${n}; events: ${JSON.stringify(this.events.map((e) => e.kind))})`,
    ).finally(() => this.#waiters.delete(waiter));
  }
}

export const is =
  (kind: CapacityEvent["kind"], storageClassName?: string) =>
  (e: CapacityEvent): boolean =>
    e.kind === kind &&
    (storageClassName === undefined ||
      ("storageClassName" in e && e.storageClassName === storageClassName));

// ------------------------------------------------------------------------------------------------
// The harness

export interface HarnessOptions
  extends Partial<
    Pick<
      CapacityControllerOptions,
      | "owner"
      | "nodeName"
      | "immediateBinding"
      | "pollIntervalMs"
      | "workers"
      | "retryStartMs"
      | "retryMaxMs"
      | "timeoutMs"
    >
  > {
  /** Objects in the API server at start (classes, nodes, CSINodes, capacities). */
  objects?: KubeObject[];
  /** `--node-deployment`: the fixed segment (no Node / CSINode informers). */
  fixedSegment?: Record<string, string>;
  /** Capacity per zone value (`*` for a request without the zone key); default 1Gi everywhere. */
  capacity?: Record<string, bigint>;
  /** Maximum volume size per zone value; default none. */
  maximumVolumeSize?: Record<string, bigint>;
  /** Omit the owner (level -1) instead of the default {@link OWNER}. */
  noOwner?: boolean;
  /** Scripts the fake driver before the controller starts (e.g. `once("getCapacity", …)`). */
  script?: (fake: FakeDriver) => void;
  /** Scripts the API server before the controller starts (e.g. `failNext(…)`). */
  apiScript?: (api: ApiServer) => void;
}

export interface Harness {
  api: ApiServer;
  kube: KubeApi;
  fake: FakeDriver;
  driver: CsiDriver;
  clock: FakeClock;
  registry: Registry;
  log: EventLog;
  controller: CapacityController;
  /** Capacity per zone the fake driver reports; change it at will. */
  capacity: Record<string, bigint>;
  maximumVolumeSize: Record<string, bigint>;
  /** Resolves when `run()` has resolved. */
  done: Promise<void>;
  /** The controller's stats at the moment it was prepared (before any worker ran). */
  prepared(): Promise<CapacityStats>;
  /** The CSIStorageCapacity objects in the namespace. */
  objects(): CSIStorageCapacity[];
  /** Waits until {@link summary} of the objects equals `expected`. */
  waitForObjects(expected: string[]): Promise<CSIStorageCapacity[]>;
  /** Writes (create/update/delete) of CSIStorageCapacity objects so far. */
  writes(verb: "create" | "update" | "delete"): number;
  stop(): Promise<void>;
}

export async function startHarness(o: HarnessOptions = {}): Promise<Harness> {
  const clock = new FakeClock();
  const api = await startApiServer({
    clock: new FakeClock(),
    namespaces: ["default", NAMESPACE],
    objects: o.objects ?? [],
    bookmarkIntervalMs: 0,
  });
  const fake = await startFakeDriver({ name: DRIVER });
  const capacity: Record<string, bigint> = { ...(o.capacity ?? { "*": Gi }) };
  const maximumVolumeSize: Record<string, bigint> = { ...(o.maximumVolumeSize ?? {}) };
  fake.on("getCapacity", (req: GetCapacityRequest) => {
    const zone = req.accessibleTopology?.segments[ZONE] ?? "*";
    const base = capacity[zone] ?? capacity["*"] ?? 0n;
    const multiplier = BigInt(req.parameters[MULTIPLIER] ?? "1");
    const max = maximumVolumeSize[zone] ?? maximumVolumeSize["*"];
    return {
      availableCapacity: base * multiplier,
      ...(max === undefined ? {} : { maximumVolumeSize: max }),
    };
  });
  o.script?.(fake);
  o.apiScript?.(api);
  // The driver connection measures its deadlines in real time: they never fire in these tests.
  const driver = await connectDriver({
    socketPath: fake.socketPath,
    clock: systemClock,
    logger: nullLogger,
  });
  const transport = new KubeTransport({
    connection: { server: api.url, tls: {}, auth: noAuth, source: "test" },
    version: "test",
    clock,
    random: () => 0.5,
    maxRetries: 0,
    idempotentRetries: 0,
  });
  const kube = createKubeApi(transport);
  const abort = new AbortController();
  const common = { clock, random: () => 0.5, minWatchTimeoutSeconds: 3600 };
  const classes = new Informer({
    client: kube.resource(resources.storageClasses),
    project: projectStorageClass,
    ...common,
  });
  const informers: Informer<KubeObject, KubeObject>[] = [
    classes as unknown as Informer<KubeObject>,
  ];
  let topology: CapacityControllerOptions["topology"];
  if (o.fixedSegment) {
    topology = { fixedSegment: o.fixedSegment };
  } else {
    const csiNodes = new Informer({
      client: kube.resource(resources.csiNodes),
      project: projectCSINode,
      ...common,
    });
    const nodes = new Informer({
      client: kube.resource(resources.nodes),
      project: projectNode,
      ...common,
    });
    informers.push(
      csiNodes as unknown as Informer<KubeObject>,
      nodes as unknown as Informer<KubeObject>,
    );
    topology = { csiNodes, nodes };
  }
  const registry = new Registry();
  const log = new EventLog();
  let preparedStats: (s: CapacityStats) => void = () => {};
  const prepared = new Promise<CapacityStats>((resolve) => {
    preparedStats = resolve;
  });
  const controller: CapacityController = createCapacityController({
    api: kube,
    driver,
    driverName: DRIVER,
    namespace: NAMESPACE,
    owner: o.noOwner ? undefined : (o.owner ?? OWNER),
    nodeName: o.nodeName,
    classes,
    topology,
    immediateBinding: o.immediateBinding,
    pollIntervalMs: o.pollIntervalMs,
    workers: o.workers,
    retryStartMs: o.retryStartMs,
    retryMaxMs: o.retryMaxMs,
    timeoutMs: o.timeoutMs,
    registry,
    clock,
    random: () => 0.5,
    minWatchTimeoutSeconds: 3600,
    onEvent: (e) => {
      if (e.kind === "prepared") preparedStats(controller.stats);
      log.push(e);
    },
  });
  const informersDone = Promise.all(informers.map((i) => i.run(abort.signal)));
  const done = controller.run(abort.signal);
  const objects = () => api.objects(resources.csiStorageCapacities, NAMESPACE);
  let stopped: Promise<void> | undefined;
  return {
    api,
    kube,
    fake,
    driver,
    clock,
    registry,
    log,
    controller,
    capacity,
    maximumVolumeSize,
    done,
    prepared: () => within(prepared, 5000, "the controller to prepare"),
    objects,
    waitForObjects(expected) {
      const want = [...expected].sort();
      const matches = () => {
        const all = objects();
        return JSON.stringify(summary(all)) === JSON.stringify(want) ? all : undefined;
      };
      return within(
        api.waitFor(matches),
        5000,
        () => `objects ${JSON.stringify(want)}, have ${JSON.stringify(summary(objects()))}`,
      );
    },
    writes(verb) {
      return api.writes.count({ verb, resource: resources.csiStorageCapacities });
    },
    stop() {
      stopped ??= (async () => {
        abort.abort();
        await within(done, 5000, "the controller to stop");
        await within(informersDone, 5000, "the informers to stop");
        driver.close();
        await fake.close();
        await api.close();
        closeIdleConnections();
      })();
      return stopped;
    },
  };
}
