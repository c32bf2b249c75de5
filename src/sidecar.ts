/**
 * The composition root of the sidecar (the default `run` command). Start-up does what upstream
 * does (reference §2.1): the driver connection and handshake, the Kubernetes configuration (read
 * while the driver answers: the first Probe is not kept waiting), then every peer controller —
 * claims, volumes, capacity, clone protection, snapshot sweep — run by one manager, behind
 * leader election when asked, until a termination signal drains them.
 *
 * Exit codes: 0 after a clean drain; 1 when start-up fails (one line naming the cause), the
 * controllers do not stop after the leader Lease was lost (a lost Lease otherwise stops the work
 * and campaigns again), or the driver connection is lost (then the reason is also written to
 * /dev/termination-log).
 */

import { createOrphanAuditor, listEverything, registerOrphanMetrics } from "./audit/auditor.ts";
import {
  type CapacityController,
  type CapacityOwner,
  createCapacityController,
  resolveOwner,
} from "./capacity/mod.ts";
import type { Config } from "./config/schema.ts";
import { createCloningProtectionController } from "./controller/clone-protection.ts";
import { createEventRecorder, type EventRecorder } from "./controller/events.ts";
import { createIntentJournal, type IntentJournal } from "./controller/journal.ts";
import { createManager, type Manager, type Peers, type Runnable } from "./controller/manager.ts";
import {
  createProvisionControllers,
  createSharedInformers,
  type NodeMode,
  type SharedInformers,
} from "./controller/provisioner.ts";
import { createSnapshotSweepController } from "./controller/snapshot-sweep.ts";
import { type CsiDriver, connectDriver } from "./csi/client.ts";
import { exitOnConnectionLoss } from "./csi/connection-loss.ts";
import { type DriverInfo, handshake } from "./csi/handshake.ts";
import { ControllerServiceCapability_RPC_Type as Cap } from "./gen/csi/v1/csi_pb.js";
import { createEndpointHandler, parseListenAddress } from "./health/http-endpoint.ts";
import type { KubeApi } from "./kube/api.ts";
import { createKubeApi } from "./kube/client.ts";
import { type KubeConnection, loadKubeConnection } from "./kube/config.ts";
import { createRateLimiter } from "./kube/ratelimit.ts";
import { resources } from "./kube/resources.ts";
import { KubeTransport } from "./kube/transport.ts";
import {
  createLeaderElector,
  type LeaderElector,
  leaderIdentity,
  leaseNameForDriver,
} from "./leader/election.ts";
import { type LatencyMetrics, registerLatencyMetrics } from "./metrics/latency-metrics.ts";
import {
  createProvisionerMetrics,
  type ProvisionerMetrics,
  UNKNOWN_DRIVER_NAME,
} from "./metrics/provisioner-metrics.ts";
import { migratedProvisionerNames } from "./migration/registry.ts";
import { provisionerIdentity } from "./provision/names.ts";
import type { ProvisionerConfig } from "./provision/request.ts";
import { normalJitPolicy } from "./runtime/jit.ts";
import { collectGarbage, releaseMemory } from "./runtime/memory.ts";
import type { ServedServer } from "./runtime/serve.ts";
import type { Clock, Random } from "./util/clock.ts";
import { errorText } from "./util/errors.ts";
import type { Logger } from "./util/log.ts";
import { VERSION } from "./version.ts";

export interface RunDeps {
  logger: Logger;
  signal: AbortSignal;
  clock: Clock;
  random: Random;
  env: Readonly<Record<string, string | undefined>>;
  readFile: (path: string) => string;
  hostname: string;
  /** A random UUID (the event source's instance id). */
  uuid: () => string;
  writeTerminationMessage: (message: string) => boolean;
  exit: (code: number) => void;
  processStats?: Parameters<typeof createProvisionerMetrics>[0];
}

/** What a started sidecar exposes to the `dev` command and to tests. */
export interface StartedSidecar {
  driver: CsiDriver;
  info: DriverInfo;
  api: KubeApi;
  metrics: ProvisionerMetrics;
  /** Resolves with the exit code once the sidecar stopped. */
  done: Promise<number>;
}

/** The namespace of the Lease objects: the flag, `POD_NAMESPACE`, the pod's own, `default`. */
export function leaseNamespace(config: Config, connection: KubeConnection): string {
  return config.leaderElectionNamespace || config.podNamespace || connection.namespace || "default";
}

/** The fixed provisioning configuration from flags and the driver's handshake. */
export function provisionerConfig(
  config: Config,
  info: DriverInfo,
  vacAvailable: boolean,
): ProvisionerConfig {
  const gates = config.featureGates;
  return {
    driverName: info.name,
    capabilities: {
      plugin: info.pluginCapabilities.services,
      controller: info.controllerCapabilities,
    },
    volumeNamePrefix: config.volumeNamePrefix,
    volumeNameUuidLength: config.volumeNameUuidLength,
    defaultFsType: config.defaultFstype,
    extraCreateMetadata: config.extraCreateMetadata,
    claimMetadataPrefixes: config.claimMetadataPrefixes,
    strictTopology: config.strictTopology,
    immediateTopology: config.immediateTopology,
    preventVolumeModeConversion: config.preventVolumeModeConversion,
    controllerPublishReadOnly: config.controllerPublishReadonly,
    features: {
      topology: gates.Topology,
      volumeAttributesClass: gates.VolumeAttributesClass && vacAvailable,
      crossNamespaceVolumeDataSource: gates.CrossNamespaceVolumeDataSource,
    },
  };
}

/**
 * Whether the API serves storage.k8s.io/v1 VolumeAttributesClasses. Upstream turns the gate off
 * when it was not set explicitly and the API is absent.
 */
async function volumeAttributesClassesServed(
  transport: KubeTransport,
  signal: AbortSignal,
): Promise<boolean> {
  try {
    const res = await transport.request<{ resources?: { name?: string }[] }>({
      method: "GET",
      path: "/apis/storage.k8s.io/v1",
      signal,
    });
    return (res.json.resources ?? []).some((r) => r.name === "volumeattributesclasses");
  } catch {
    return false;
  }
}

/** The `run` command: starts the sidecar and resolves with its exit code. */
export async function runSidecar(config: Config, deps: RunDeps): Promise<number> {
  try {
    const started = await startSidecar(config, deps);
    return await started.done;
  } catch (err) {
    if (deps.signal.aborted) return 0;
    deps.logger.error(errorText(err));
    return 1;
  }
}

/**
 * Starts the sidecar; rejects when start-up fails. `done` settles once it stopped. `kube`
 * overrides the Kubernetes connection (the `dev` command's embedded API).
 */
export async function startSidecar(
  config: Config,
  deps: RunDeps,
  kube?: KubeConnection,
): Promise<StartedSidecar> {
  const { logger, clock, random, signal } = deps;

  // 1. The driver: connect, probe until ready, learn its name and capabilities. It starts first:
  // the first Probe is what start-up waits on, and reading a kubeconfig (client-node) takes
  // longer than the whole handshake. The Kubernetes configuration is read once the handshake is
  // done, or after 1 s if the driver is not answering yet; an error there ends start-up at once.
  const metrics = createProvisionerMetrics(deps.processStats, { clock });
  const stopDriver = new AbortController();
  const driverReady = connectAndHandshake(
    config,
    { ...deps, signal: AbortSignal.any([signal, stopDriver.signal]) },
    metrics,
  );
  driverReady.catch(() => {});
  const waited = new AbortController();
  await Promise.race([
    driverReady.then(
      () => {},
      () => {},
    ),
    clock.sleep(1000, waited.signal).catch(() => {}),
  ]);
  waited.abort();

  // 2. Kubernetes configuration (kubeconfig / --master / in-cluster).
  let connection: KubeConnection;
  try {
    connection = kube ?? (await loadConnection(config, deps));
  } catch (err) {
    stopDriver.abort(err);
    await driverReady.then(
      ({ driver }) => driver.close(),
      () => {},
    );
    throw err;
  }
  const transportFor = (qps: number, burst: number) =>
    new KubeTransport({
      connection,
      version: VERSION,
      clock,
      random,
      logger: logger.named("kube"),
      rateLimiter: createRateLimiter({ qps, burst, clock }),
    });
  const transport = transportFor(config.kubeApiQps, config.kubeApiBurst);
  const api = createKubeApi(transport);
  const { driver, info } = await driverReady;
  logger.info("Detected CSI driver", { driver: info.name, vendorVersion: info.vendorVersion });

  try {
    // 3. Node mode: this node's topology, from the driver (fatal on error, as upstream).
    const node = config.nodeDeployment ? await nodeMode(config, driver, signal) : undefined;

    // 4. Discovery and the pieces built from it.
    const vacExplicit = config.explicitFeatureGates.includes("VolumeAttributesClass");
    const vacAvailable = vacExplicit || (await volumeAttributesClassesServed(transport, signal));
    const namespace = leaseNamespace(config, connection);
    const journal = createIntentJournal({
      leases: api.resource(resources.leases),
      namespace,
      driverName: info.name,
      clock,
      logger: logger.named("journal"),
      commitBatch: Math.ceil(Math.max(1, config.workerThreads) / 4),
    });
    const events = createEventRecorder({
      events: api.resource(resources.coreEvents),
      clock,
      logger: logger.named("events"),
      // As upstream's recorder: the component names the host; source.host and
      // reportingInstance stay empty.
      component: `${info.name}_${deps.hostname}_${deps.uuid()}`,
    });
    const capacityTransport = config.enableCapacity
      ? transportFor(config.kubeApiCapacityQps, config.kubeApiCapacityBurst)
      : undefined;
    const capacityApi = capacityTransport ? createKubeApi(capacityTransport) : undefined;
    const owner = capacityApi
      ? await capacityOwner(config, capacityApi, config.namespace ?? namespace, signal)
      : undefined;
    const elector = config.leaderElection
      ? leaderElector(config, deps, {
          api: createKubeApi(transportFor(config.kubeApiQps, config.kubeApiBurst)),
          namespace,
          driverName: info.name,
          metrics,
        })
      : undefined;

    // 5. The peer controllers and the manager that runs them.
    const manager = buildControllers(config, deps, {
      api,
      writers: capacityTransport ? [transport, capacityTransport] : [transport],
      driver,
      info,
      node,
      journal,
      events,
      metrics,
      latency: registerLatencyMetrics(metrics.registry, clock),
      elector,
      pconfig: provisionerConfig(config, info, vacAvailable),
      identity: provisionerIdentity({
        clock,
        random,
        driverName: info.name,
        nodeName: config.nodeName,
      }),
      capacity: capacityApi
        ? { api: capacityApi, namespace: config.namespace ?? namespace, owner }
        : undefined,
    });

    // 6. The diagnostics endpoint runs regardless of leadership.
    const server = await serveDiagnostics(config, logger, metrics, elector, manager);

    // 7. Run until the signal, then drain.
    const done = (async (): Promise<number> => {
      try {
        const outcome = await manager.run(signal);
        if (outcome === "failed") {
          logger.error("Leader election failed; exiting");
          return 1;
        }
        return 0;
      } catch (err) {
        // Stopped by a signal while starting (e.g. during the journal load): a clean stop.
        if (signal.aborted) return 0;
        logger.error("The provisioner stopped with an error", { err: errorText(err) });
        return 1;
      } finally {
        await server?.close();
        driver.close();
      }
    })();
    return { driver, info, api, metrics, done };
  } catch (err) {
    driver.close();
    throw err;
  }
}

function loadConnection(config: Config, deps: RunDeps): Promise<KubeConnection> {
  return loadKubeConnection({
    kubeconfigPath: config.kubeconfig || undefined,
    masterUrl: config.master || undefined,
    env: deps.env,
    readFile: deps.readFile,
    clock: deps.clock,
    logger: deps.logger,
  });
}

/** Connects to the driver (exiting when the connection is lost) and runs the handshake. */
async function connectAndHandshake(
  config: Config,
  deps: RunDeps,
  metrics: ProvisionerMetrics,
): Promise<{ driver: CsiDriver; info: DriverInfo }> {
  const { clock, signal } = deps;
  const logger = deps.logger.named("csi");
  let driverName = UNKNOWN_DRIVER_NAME;
  const driver = await connectDriver({
    socketPath: config.csiSocketPath,
    timeoutMs: config.timeoutMs,
    clock,
    logger,
    signal,
    onConnectionLost: exitOnConnectionLoss({
      writeTerminationMessage: deps.writeTerminationMessage,
      exit: deps.exit,
      logger,
    }),
    onCall: (r) =>
      metrics.observeCsiCall(driverName, r.method, r.code, r.durationMs / 1000, r.migrated),
  });
  let info: DriverInfo;
  try {
    info = await handshake(driver, { clock, logger, signal });
  } catch (err) {
    driver.close();
    throw err;
  }
  driverName = info.name;
  const inTree = migratedProvisionerNames(info.name);
  if (inTree.length > 0) {
    // CSI migration: claims of the in-tree plugin's classes are served too.
    logger.info("Supports migration from in-tree plugin", { plugin: inTree[0] });
    metrics.labelMigratedCalls();
  }
  return { driver, info };
}

/** `--node-deployment`: this node and its topology, from NodeGetInfo. */
async function nodeMode(config: Config, driver: CsiDriver, signal: AbortSignal): Promise<NodeMode> {
  try {
    const ni = await driver.nodeGetInfo({ signal });
    return {
      name: config.nodeName ?? ni.nodeId,
      segments: { ...(ni.accessibleTopology?.segments ?? {}) },
      immediateBinding: config.nodeDeploymentImmediateBinding,
      baseDelayMs: config.nodeDeploymentBaseDelayMs,
      maxDelayMs: config.nodeDeploymentMaxDelayMs,
    };
  } catch (err) {
    throw new Error(
      `NodeGetInfo of CSI driver at ${config.csiSocketPath} failed: ${errorText(err)}`,
    );
  }
}

/** `--capacity-ownerref-level`: the owner of CSIStorageCapacity objects (none below 0). */
async function capacityOwner(
  config: Config,
  api: KubeApi,
  namespace: string,
  signal: AbortSignal,
): Promise<CapacityOwner | undefined> {
  if (config.capacityOwnerrefLevel < 0) return undefined;
  try {
    return await resolveOwner(
      api,
      namespace,
      config.podName ?? "",
      config.capacityOwnerrefLevel,
      signal,
    );
  } catch (err) {
    throw new Error(`Cannot find the owner of CSIStorageCapacity objects: ${errorText(err)}`);
  }
}

function leaderElector(
  config: Config,
  deps: RunDeps,
  o: { api: KubeApi; namespace: string; driverName: string; metrics: ProvisionerMetrics },
): LeaderElector {
  const name = leaseNameForDriver(o.driverName);
  const identity = leaderIdentity(config.podName, deps.hostname);
  return createLeaderElector({
    leases: o.api.resource(resources.leases),
    namespace: o.namespace,
    name,
    identity,
    clock: deps.clock,
    random: deps.random,
    logger: deps.logger.named("leader"),
    leaseDurationMs: config.leaderElectionLeaseDurationMs,
    renewDeadlineMs: config.leaderElectionRenewDeadlineMs,
    retryPeriodMs: config.leaderElectionRetryPeriodMs,
    labels: config.leaderElectionLabels,
    releaseOnCancel: config.featureGates.ReleaseLeaderElectionOnExit,
    // upstream's leader-election recorder: source `<driver with / as ->/<identity>`.
    recorder: createEventRecorder({
      events: o.api.resource(resources.coreEvents),
      clock: deps.clock,
      logger: deps.logger,
      component: `${o.driverName.replace(/\//g, "-")}/${identity}`,
    }),
    onStatus: (leading) => o.metrics.setLeading(leading),
  });
}

interface Parts {
  api: KubeApi;
  /** The clients the controllers write through (not leader election's): fenced at a stop. */
  writers: readonly KubeTransport[];
  driver: CsiDriver;
  info: DriverInfo;
  node: NodeMode | undefined;
  journal: IntentJournal;
  events: EventRecorder;
  metrics: ProvisionerMetrics;
  /** End-to-end latency histograms, registered once for every term. */
  latency: LatencyMetrics;
  elector: LeaderElector | undefined;
  pconfig: ProvisionerConfig;
  /** This process's provisioner identity (`provision/names.ts`), the same in every term. */
  identity: string;
  /** `--enable-capacity`: the client with the capacity budget, the namespace and owner. */
  capacity: { api: KubeApi; namespace: string; owner: CapacityOwner | undefined } | undefined;
}

/**
 * The manager of every peer controller, on one set of shared informers: claims and volumes
 * always; capacity with `--enable-capacity`; clone protection when the driver can clone; the
 * snapshot sweep when it has snapshots. A replica that loses the Lease and wins it again gets
 * fresh ones.
 */
function buildControllers(config: Config, deps: RunDeps, p: Parts): Manager {
  const { clock, logger } = deps;
  const workers = Math.max(1, config.workerThreads);
  return createManager({
    clock,
    logger,
    build: () => buildPeers(config, deps, p),
    handOffFlushers: [() => p.journal.flush()],
    flushers: [
      (deadline) => {
        // The workers are done: no PV write follows, so the last events need not wait for a
        // full rate-limiter bucket (still behind the journal's flush).
        for (const t of p.writers) t.keepBurst(false);
        return p.events.flush(deadline);
      },
    ],
    fence: {
      open() {
        for (const t of p.writers) {
          t.openWrites();
          t.keepBurst(true);
        }
      },
      async close(deadline) {
        const answered = await Promise.all(p.writers.map((t) => t.closeWrites(deadline)));
        p.journal.abandon();
        return answered.every(Boolean);
      },
    },
    retryMaxMs: config.retryIntervalMaxMs,
    elector: p.elector,
    startedMessage: {
      text: "Started provisioning controller",
      fields: { driver: p.info.name, workers },
    },
    // Start-up is over: the JIT compiles as usual from now on, and start-up's garbage (module
    // evaluation, the initial lists) goes back to the system once.
    onStarted: () => {
      normalJitPolicy();
      releaseMemory();
    },
  });
}

function buildPeers(config: Config, deps: RunDeps, p: Parts): Peers {
  const { clock, random, logger } = deps;
  const { info, node, metrics } = p;
  const topology = info.pluginCapabilities.volumeAccessibilityConstraints;
  const informers = createSharedInformers({
    api: p.api,
    clock,
    random,
    logger: logger.named("informers"),
    collectGarbage,
    watchAttachments: info.controllerCapabilities.has(Cap.PUBLISH_UNPUBLISH_VOLUME),
    // Nodes and CSINodes: for topology, and for capacity tracking's segments (not in node
    // mode, where NodeGetInfo describes the only node).
    watchNodes:
      ((config.featureGates.Topology && topology) || (p.capacity !== undefined && topology)) &&
      !node,
  });
  const capacity = p.capacity ? capacityController(config, deps, p, informers) : undefined;
  const { claims, volumes } = createProvisionControllers({
    api: p.api,
    driver: p.driver,
    config: p.pconfig,
    identity: p.identity,
    informers,
    journal: p.journal,
    events: p.events,
    metrics,
    latency: p.latency,
    clock,
    random,
    logger: logger.named("controller"),
    workerThreads: config.workerThreads,
    retryStartMs: config.retryIntervalStartMs,
    retryMaxMs: config.retryIntervalMaxMs,
    node,
    capacity,
  });
  const runnables: Runnable[] = [];
  const caps = info.controllerCapabilities;
  if (caps.has(Cap.CLONE_VOLUME)) {
    const c = createCloningProtectionController({
      api: p.api,
      claims: informers.claims,
      clock,
      logger: logger.named("clone-protection"),
      threads: config.cloningProtectionThreads,
      retryStartMs: config.retryIntervalStartMs,
      retryMaxMs: config.retryIntervalMaxMs,
      metrics: metrics.workQueue,
    });
    runnables.push({ name: "clone protection", run: (s) => c.run(s) });
  }
  if (caps.has(Cap.CREATE_DELETE_SNAPSHOT)) {
    const c = createSnapshotSweepController({
      api: p.api,
      claims: informers.claims,
      clock,
      logger: logger.named("snapshot-sweep"),
      intervalMs: config.snapshotOrphanSweepIntervalMs,
      driverName: info.name,
    });
    runnables.push({ name: "snapshot sweep", run: (s) => c.run(s) });
  }
  if (capacity) runnables.push({ name: "capacity", run: (s) => capacity.run(s) });
  if (config.orphanAuditIntervalMs > 0) {
    const auditor = createOrphanAuditor({
      driver: p.driver,
      driverName: info.name,
      controllerCapabilities: info.controllerCapabilities,
      volumeNamePrefix: config.volumeNamePrefix,
      volumes: () => informers.volumes.store.list(),
      claims: () => informers.claims.store.list(),
      intents: () => p.journal.list(),
      liveVolumes: (s) => listEverything(p.api.resource(resources.persistentVolumes), s),
      liveClaims: (s) => listEverything(p.api.resource(resources.persistentVolumeClaims), s),
      intervalMs: config.orphanAuditIntervalMs,
      deleteOrphans: config.orphanDelete,
      graceMs: config.orphanGracePeriodMs,
      clock,
      logger,
      metrics: registerOrphanMetrics(metrics.registry),
    });
    runnables.push({ name: "orphan audit", run: (s) => auditor.run(s) });
  }
  return { informers: informers.all, controllers: [claims, volumes], runnables };
}

function capacityController(
  config: Config,
  deps: RunDeps,
  p: Parts,
  informers: SharedInformers,
): CapacityController | undefined {
  const cap = p.capacity;
  if (!cap) return undefined;
  const { csiNodes, nodes } = informers;
  return createCapacityController({
    api: cap.api,
    driver: p.driver,
    driverName: p.info.name,
    namespace: cap.namespace,
    owner: cap.owner,
    nodeName: p.node?.name,
    classes: informers.classes,
    topology: p.node
      ? { fixedSegment: p.node.segments }
      : csiNodes && nodes
        ? { csiNodes, nodes }
        : { fixedSegment: {} },
    immediateBinding: config.capacityForImmediateBinding,
    pollIntervalMs: config.capacityPollIntervalMs,
    timeoutMs: config.timeoutMs,
    workers: config.capacityThreads,
    retryStartMs: config.retryIntervalStartMs,
    retryMaxMs: config.retryIntervalMaxMs,
    registry: p.metrics.registry,
    queueMetrics: p.metrics.workQueue,
    clock: deps.clock,
    random: deps.random,
    logger: deps.logger.named("capacity"),
  });
}

/** `--http-endpoint` / `--metrics-address`: metrics and health checks. */
async function serveDiagnostics(
  config: Config,
  logger: Logger,
  metrics: ProvisionerMetrics,
  elector: LeaderElector | undefined,
  manager: Manager,
): Promise<ServedServer | undefined> {
  const address = config.httpEndpoint || config.metricsAddress;
  if (!address) return undefined;
  const { hostname, port } = parseListenAddress(address);
  // Loaded only when serving: node:http and node:https cost ~2 MiB of resident runtime code.
  const { serve } = await import("./runtime/serve.ts");
  const server = await serve(
    createEndpointHandler({
      registry: metrics.registry,
      metricsPath: config.metricsPath,
      leaderHealthy: elector ? () => elector.healthy() : undefined,
      ready: () => manager.ready(),
    }),
    { hostname, port },
  );
  logger.info("Serving diagnostics", { address: server.url, metricsPath: config.metricsPath });
  return server;
}
