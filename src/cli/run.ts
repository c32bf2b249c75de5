/**
 * The default command: the sidecar. Start-up follows upstream (reference §2.1): Kubernetes
 * configuration, the driver connection and handshake, then the controllers — behind leader
 * election when asked — until a termination signal drains them.
 *
 * Exit codes: 0 after a clean drain; 1 when start-up fails (one line naming the cause), the
 * controllers do not stop after the leader Lease was lost (a lost Lease otherwise stops the work
 * and campaigns again), or the driver connection is lost (then the reason is also written to
 * /dev/termination-log).
 */

import { type CapacityOwner, resolveOwner } from "../capacity/mod.ts";
import type { Config } from "../config/schema.ts";
import { createEventRecorder } from "../controller/events.ts";
import { createIntentJournal } from "../controller/journal.ts";
import { createProvisionController } from "../controller/provisioner.ts";
import { type CsiDriver, connectDriver } from "../csi/client.ts";
import { exitOnConnectionLoss } from "../csi/connection-loss.ts";
import { type DriverInfo, handshake } from "../csi/handshake.ts";
import { ControllerServiceCapability_RPC_Type } from "../gen/csi/v1/csi_pb.js";
import { createEndpointHandler, parseListenAddress } from "../health/http-endpoint.ts";
import type { KubeApi } from "../kube/api.ts";
import { createKubeApi } from "../kube/client.ts";
import { type KubeConnection, loadKubeConnection } from "../kube/config.ts";
import { createRateLimiter } from "../kube/ratelimit.ts";
import { resources } from "../kube/resources.ts";
import { KubeTransport } from "../kube/transport.ts";
import { createLeaderElector, leaderIdentity, leaseNameForDriver } from "../leader/election.ts";
import { registerLatencyMetrics } from "../metrics/latency-metrics.ts";
import {
  createProvisionerMetrics,
  type ProvisionerMetrics,
  UNKNOWN_DRIVER_NAME,
} from "../metrics/provisioner-metrics.ts";
import { provisionerIdentity } from "../provision/names.ts";
import type { ProvisionerConfig } from "../provision/request.ts";
import { type ServedServer, serve } from "../runtime/serve.ts";
import type { Clock, Random } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { VERSION } from "../version.ts";

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

export async function runCommand(
  kind: "run" | "dev",
  config: Config,
  deps: RunDeps,
): Promise<number> {
  if (kind === "dev") {
    const { runDev } = await import("./dev.ts");
    return runDev(config, deps);
  }
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

  // 1. Kubernetes configuration (kubeconfig / --master / in-cluster).
  const connection =
    kube ??
    (await loadKubeConnection({
      kubeconfigPath: config.kubeconfig || undefined,
      masterUrl: config.master || undefined,
      env: deps.env,
      readFile: deps.readFile,
      clock,
      logger,
    }));
  const transportFor = (qps: number, burst: number) =>
    new KubeTransport({
      connection,
      version: VERSION,
      clock,
      random,
      logger,
      rateLimiter: createRateLimiter({ qps, burst, clock }),
    });
  const transport = transportFor(config.kubeApiQps, config.kubeApiBurst);
  const api = createKubeApi(transport);

  // 2. The driver: connect, probe until ready, learn its name and capabilities.
  const metrics = createProvisionerMetrics(deps.processStats, { clock });
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
    onCall: (r) => metrics.observeCsiCall(driverName, r.method, r.code, r.durationMs / 1000),
  });
  let info: DriverInfo;
  try {
    info = await handshake(driver, { clock, logger, signal });
  } catch (err) {
    driver.close();
    throw err;
  }
  driverName = info.name;
  logger.info("Detected CSI driver", { driver: info.name, vendorVersion: info.vendorVersion });

  // 3. Node mode: this node's topology, from the driver (fatal on error, as upstream).
  let node: Parameters<typeof createProvisionController>[0]["node"];
  if (config.nodeDeployment) {
    try {
      const ni = await driver.nodeGetInfo({ signal });
      node = {
        name: config.nodeName ?? ni.nodeId,
        segments: { ...(ni.accessibleTopology?.segments ?? {}) },
        immediateBinding: config.nodeDeploymentImmediateBinding,
        baseDelayMs: config.nodeDeploymentBaseDelayMs,
        maxDelayMs: config.nodeDeploymentMaxDelayMs,
      };
    } catch (err) {
      driver.close();
      throw new Error(
        `NodeGetInfo of CSI driver at ${config.csiSocketPath} failed: ${errorText(err)}`,
      );
    }
  }

  // 4. Discovery and the pieces built from it.
  const vacExplicit = config.explicitFeatureGates.includes("VolumeAttributesClass");
  const vacAvailable = vacExplicit || (await volumeAttributesClassesServed(transport, signal));
  const pconfig = provisionerConfig(config, info, vacAvailable);
  const identity = provisionerIdentity({
    clock,
    random,
    driverName: info.name,
    nodeName: config.nodeName,
  });
  const namespace = leaseNamespace(config, connection);
  const journal = createIntentJournal({
    leases: api.resource(resources.leases),
    namespace,
    driverName: info.name,
    clock,
    logger,
  });
  const events = createEventRecorder({
    events: api.resource(resources.coreEvents),
    clock,
    logger,
    component: `${info.name}_${deps.hostname}_${deps.uuid()}`,
    host: deps.hostname,
  });
  let capacity: Parameters<typeof createProvisionController>[0]["capacity"];
  if (config.enableCapacity) {
    const capApi = createKubeApi(
      transportFor(config.kubeApiCapacityQps, config.kubeApiCapacityBurst),
    );
    const capNamespace = config.namespace ?? namespace;
    let owner: CapacityOwner | undefined;
    if (config.capacityOwnerrefLevel >= 0) {
      try {
        owner = await resolveOwner(
          capApi,
          capNamespace,
          config.podName ?? "",
          config.capacityOwnerrefLevel,
          signal,
        );
      } catch (err) {
        driver.close();
        throw new Error(`Cannot find the owner of CSIStorageCapacity objects: ${errorText(err)}`);
      }
    }
    capacity = {
      api: capApi,
      namespace: capNamespace,
      owner,
      immediateBinding: config.capacityForImmediateBinding,
      pollIntervalMs: config.capacityPollIntervalMs,
      timeoutMs: config.timeoutMs,
      workers: config.capacityThreads,
    };
  }

  const latency = registerLatencyMetrics(metrics.registry, clock);
  // A replica that loses the Lease and wins it again runs a fresh controller.
  const newController = () =>
    createProvisionController({
      api,
      driver,
      config: pconfig,
      identity,
      journal,
      events,
      metrics,
      latency,
      clock,
      random,
      logger,
      workerThreads: config.workerThreads,
      retryStartMs: config.retryIntervalStartMs,
      retryMaxMs: config.retryIntervalMaxMs,
      watchAttachments: info.controllerCapabilities.has(
        ControllerServiceCapability_RPC_Type.PUBLISH_UNPUBLISH_VOLUME,
      ),
      watchTopology:
        config.featureGates.Topology && info.pluginCapabilities.volumeAccessibilityConstraints,
      cloningProtectionThreads: config.cloningProtectionThreads,
      snapshotSweepIntervalMs: config.snapshotOrphanSweepIntervalMs,
      node,
      capacity,
      capacityTopology: info.pluginCapabilities.volumeAccessibilityConstraints,
    });
  let controller = newController();
  let terms = 0;

  const leaseName = leaseNameForDriver(info.name);
  const electionIdentity = leaderIdentity(config.podName, deps.hostname);
  const electionApi = config.leaderElection
    ? createKubeApi(transportFor(config.kubeApiQps, config.kubeApiBurst))
    : undefined;
  const elector = electionApi
    ? createLeaderElector({
        leases: electionApi.resource(resources.leases),
        namespace,
        name: leaseName,
        identity: electionIdentity,
        clock,
        random,
        logger,
        leaseDurationMs: config.leaderElectionLeaseDurationMs,
        renewDeadlineMs: config.leaderElectionRenewDeadlineMs,
        retryPeriodMs: config.leaderElectionRetryPeriodMs,
        labels: config.leaderElectionLabels,
        releaseOnCancel: config.featureGates.ReleaseLeaderElectionOnExit,
        // upstream's leader-election recorder: source `<driver with / as ->/<identity>`.
        recorder: createEventRecorder({
          events: electionApi.resource(resources.coreEvents),
          clock,
          logger,
          component: `${info.name.replace(/\//g, "-")}/${electionIdentity}`,
        }),
        onStatus: (leading) => metrics.leaderStatus.set({ name: leaseName }, leading ? 1 : 0),
      })
    : undefined;

  // 5. The diagnostics endpoint runs regardless of leadership.
  let server: ServedServer | undefined;
  const address = config.httpEndpoint || config.metricsAddress;
  let running = false;
  if (address) {
    const { hostname, port } = parseListenAddress(address);
    server = await serve(
      createEndpointHandler({
        registry: metrics.registry,
        metricsPath: config.metricsPath,
        leaderHealthy: elector ? () => elector.healthy() : undefined,
        ready: () => running,
      }),
      { hostname, port },
    );
    logger.info("Serving diagnostics", { address: server.url, metricsPath: config.metricsPath });
  }

  // 6. Run until the signal, then drain.
  /** `/healthz` says ready once every informer has listed. */
  const readyOnSync = (until: AbortSignal) =>
    void controller.synced(until).then(
      () => {
        running = true;
      },
      () => {},
    );
  const done = (async (): Promise<number> => {
    try {
      if (elector) {
        const outcome = await elector.run(async (leadSignal) => {
          if (terms++ > 0) controller = newController();
          readyOnSync(leadSignal);
          await controller.run(leadSignal);
          running = false;
        }, signal);
        if (outcome === "failed") {
          logger.error("Leader election failed; exiting");
          return 1;
        }
      } else {
        readyOnSync(signal);
        await controller.run(signal);
        running = false;
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
}
