/**
 * The provisioner's metrics, with upstream's names, labels and buckets so that existing
 * dashboards and alerts keep working (reference §2.15).
 */
import { type Clock, systemClock } from "../util/clock.ts";
import { type Counter, type Gauge, type Histogram, Registry } from "./registry.ts";

/** Buckets of `csi_sidecar_operations_seconds`, in seconds. */
export const CSI_OPERATION_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 25, 50, 120, 300, 600];
/** Prometheus' default buckets, used by the controller duration histograms. */
export const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/**
 * Buckets of the work queue latency histograms: component-base's `ExponentialBuckets(10e-9, 10,
 * 10)`, computed the same way (repeated multiplication) so that the `le` labels are identical.
 */
export const WORKQUEUE_BUCKETS: readonly number[] = (() => {
  const out: number[] = [];
  let b = 10e-9;
  for (let i = 0; i < 10; i++, b *= 10) out.push(b);
  return out;
})();
/** The driver name of CSI calls made before GetPluginInfo answered (csi-lib-utils' value). */
export const UNKNOWN_DRIVER_NAME = "unknown-driver";

/** What the work queues (`controller/workqueue.ts`) report. */
export interface WorkQueueMetrics {
  depth(name: string, depth: number): void;
  added(name: string): void;
  retried(name: string): void;
  /**
   * A queue named `name` was created (its series start at zero, as client-go's do). `inFlight`
   * gives, on demand, when each key now being processed was taken (ms). Returns a function
   * to call once the queue is shut down.
   */
  created?(name: string, inFlight: () => Iterable<number>): () => void;
  /** A key waited `seconds` between being queued and being taken by a worker. */
  waited?(name: string, seconds: number): void;
  /** A worker spent `seconds` on a key. */
  worked?(name: string, seconds: number): void;
}

export interface ProvisionerMetrics {
  readonly registry: Registry;
  readonly csiOperations: Histogram;
  readonly provisionTotal: Counter;
  readonly provisionFailed: Counter;
  readonly provisionDuration: Histogram;
  readonly deleteTotal: Counter;
  readonly deleteFailed: Counter;
  readonly deleteDuration: Histogram;
  readonly leaderStatus: Gauge;
  /**
   * Sets `leader_election_master_status`. Its `name` label is empty, as upstream's: csi-lib-utils
   * leaves client-go's LeaderElectionConfig.Name unset, and client-go labels the gauge with it.
   */
  setLeading(leading: boolean): void;
  readonly workQueue: WorkQueueMetrics;
  /**
   * Records one CSI call, as the gRPC client's call hook. `migrated` is the call's `migrated`
   * label, used once {@link ProvisionerMetrics.labelMigratedCalls} was called.
   */
  observeCsiCall(
    driverName: string,
    method: string,
    code: string,
    seconds: number,
    migrated?: boolean,
  ): void;
  /**
   * Adds the `migrated` label to `csi_sidecar_operations_seconds` (calls so far: `"false"`), as
   * upstream does for a driver that took over an in-tree plugin (CSI migration).
   */
  labelMigratedCalls(): void;
}

export interface ProcessStats {
  residentBytes(): number;
  heapBytes(): number;
  cpuSeconds(): number;
  startTimeSeconds: number;
  /** Linux only (`/proc/self`); `undefined` where the platform cannot tell. */
  openFds?(): number | undefined;
  maxFds?(): number | undefined;
  virtualMemoryBytes?(): number | undefined;
  virtualMemoryMaxBytes?(): number | undefined;
  /** Bytes received and sent over the network by the process' network namespace. */
  networkReceiveBytes?(): number | undefined;
  networkTransmitBytes?(): number | undefined;
}

export interface MetricsOptions {
  /** Measures the work queues' unfinished work at scrape time; default the wall clock. */
  clock?: Clock;
}

export function createProvisionerMetrics(
  proc?: ProcessStats,
  options: MetricsOptions = {},
): ProvisionerMetrics {
  const clock = options.clock ?? systemClock;
  const registry = new Registry();
  const csiOperations = registry.histogram(
    "csi_sidecar_operations_seconds",
    "[ALPHA] Container Storage Interface operation duration with gRPC error code status total",
    ["driver_name", "grpc_status_code", "method_name"],
    CSI_OPERATION_BUCKETS,
  );
  const provisionTotal = registry.counter(
    "controller_persistentvolumeclaim_provision_total",
    "Total number of persistent volumes provisioned succesfully. Broken down by storage class name and source of the claim.",
    ["class", "source"],
  );
  const provisionFailed = registry.counter(
    "controller_persistentvolumeclaim_provision_failed_total",
    "Total number of persistent volume provision failed attempts. Broken down by storage class name and source of the claim.",
    ["class", "source"],
  );
  const provisionDuration = registry.histogram(
    "controller_persistentvolumeclaim_provision_duration_seconds",
    "Latency in seconds to provision persistent volumes. Failed provisioning attempts are ignored. Broken down by storage class name and source of the claim.",
    ["class", "source"],
    DEFAULT_BUCKETS,
  );
  const deleteTotal = registry.counter(
    "controller_persistentvolume_delete_total",
    "Total number of persistent volumes deleted succesfully. Broken down by storage class name.",
    ["class"],
  );
  const deleteFailed = registry.counter(
    "controller_persistentvolume_delete_failed_total",
    "Total number of persistent volume delete failed attempts. Broken down by storage class name.",
    ["class"],
  );
  const deleteDuration = registry.histogram(
    "controller_persistentvolume_delete_duration_seconds",
    "Latency in seconds to delete persistent volumes. Failed deletion attempts are ignored. Broken down by storage class name.",
    ["class"],
    DEFAULT_BUCKETS,
  );
  const leaderStatus = registry.gauge(
    "leader_election_master_status",
    "[ALPHA] Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
    ["name"],
  );
  // The work queues: component-base's workqueue metrics provider (names, help, buckets).
  // Help texts carry component-base's stability prefix, as upstream serves them.
  const depth = registry.gauge("workqueue_depth", "[BETA] Current depth of workqueue", ["name"]);
  const adds = registry.counter(
    "workqueue_adds_total",
    "[BETA] Total number of adds handled by workqueue",
    ["name"],
  );
  const queueDuration = registry.histogram(
    "workqueue_queue_duration_seconds",
    "[BETA] How long in seconds an item stays in workqueue before being requested.",
    ["name"],
    WORKQUEUE_BUCKETS,
  );
  const workDuration = registry.histogram(
    "workqueue_work_duration_seconds",
    "[BETA] How long in seconds processing an item from workqueue takes.",
    ["name"],
    WORKQUEUE_BUCKETS,
  );
  const unfinished = registry.gauge(
    "workqueue_unfinished_work_seconds",
    "[BETA] How many seconds of work has done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.",
    ["name"],
  );
  const longest = registry.gauge(
    "workqueue_longest_running_processor_seconds",
    "[BETA] How many seconds has the longest running processor for workqueue been running.",
    ["name"],
  );
  const retries = registry.counter(
    "workqueue_retries_total",
    "[BETA] Total number of retries handled by workqueue",
    ["name"],
  );
  /** In-flight start times of every live queue, by queue name (several queues may share one). */
  const inFlight = new Map<string, Set<() => Iterable<number>>>();
  registry.onCollect(() => {
    const now = clock.now();
    for (const [name, sources] of inFlight) {
      let sum = 0;
      let max = 0;
      for (const source of sources) {
        for (const takenAt of source()) {
          const seconds = Math.max(0, now - takenAt) / 1000;
          sum += seconds;
          if (seconds > max) max = seconds;
        }
      }
      unfinished.set({ name }, sum);
      longest.set({ name }, max);
    }
  });
  const workQueue: WorkQueueMetrics = {
    depth: (name, d) => depth.set({ name }, d),
    added: (name) => adds.inc({ name }),
    retried: (name) => retries.inc({ name }),
    created(name, source) {
      for (const f of [depth, adds, queueDuration, workDuration, unfinished, longest, retries]) {
        f.touch({ name });
      }
      const sources = inFlight.get(name) ?? new Set();
      sources.add(source);
      inFlight.set(name, sources);
      return () => {
        sources.delete(source);
      };
    },
    waited: (name, seconds) => queueDuration.observe({ name }, seconds),
    worked: (name, seconds) => workDuration.observe({ name }, seconds),
  };

  // Scrapes of the metrics endpoint, as promhttp.InstrumentMetricHandler counts them upstream:
  // the scrape being served is in flight, and counts once it has been written.
  const scrapesInFlight = registry.gauge(
    "promhttp_metric_handler_requests_in_flight",
    "Current number of scrapes being served.",
  );
  const scrapes = registry.counter(
    "promhttp_metric_handler_requests_total",
    "Total number of scrapes by HTTP status code.",
    ["code"],
  );
  for (const code of ["200", "500", "503"]) scrapes.touch({ code });
  registry.onCollect(() => scrapesInFlight.inc());
  registry.onRendered(() => {
    scrapesInFlight.inc(undefined, -1);
    scrapes.inc({ code: "200" });
  });

  if (proc) {
    const rss = registry.gauge("process_resident_memory_bytes", "Resident memory size in bytes.");
    const heap = registry.gauge("process_heap_bytes", "Process heap size in bytes.");
    const cpu = registry.counter(
      "process_cpu_seconds_total",
      "Total user and system CPU time spent in seconds.",
    );
    const start = registry.gauge(
      "process_start_time_seconds",
      "Start time of the process since unix epoch in seconds.",
    );
    // Linux-only process figures, registered only where the platform reports them.
    const optional: [string, string, (() => number | undefined) | undefined][] = [
      ["process_open_fds", "Number of open file descriptors.", proc.openFds],
      ["process_max_fds", "Maximum number of open file descriptors.", proc.maxFds],
      ["process_virtual_memory_bytes", "Virtual memory size in bytes.", proc.virtualMemoryBytes],
      [
        "process_virtual_memory_max_bytes",
        "Maximum amount of virtual memory available in bytes.",
        proc.virtualMemoryMaxBytes,
      ],
    ];
    for (const [name, help, read] of optional) {
      if (read === undefined || read.call(proc) === undefined) continue;
      const gauge = registry.gauge(name, help);
      registry.onCollect(() => gauge.set(undefined, read.call(proc) ?? Number.NaN));
    }
    const counters: [string, string, (() => number | undefined) | undefined][] = [
      [
        "process_network_receive_bytes_total",
        "Number of bytes received by the process over the network.",
        proc.networkReceiveBytes,
      ],
      [
        "process_network_transmit_bytes_total",
        "Number of bytes sent by the process over the network.",
        proc.networkTransmitBytes,
      ],
    ];
    for (const [name, help, read] of counters) {
      if (read === undefined || read.call(proc) === undefined) continue;
      const counter = registry.counter(name, help);
      registry.onCollect(() => {
        const now = read.call(proc);
        if (now !== undefined && now >= counter.value())
          counter.inc(undefined, now - counter.value());
      });
    }
    registry.onCollect(() => {
      rss.set(undefined, proc.residentBytes());
      heap.set(undefined, proc.heapBytes());
      cpu.inc(undefined, proc.cpuSeconds() - cpu.value());
      start.set(undefined, proc.startTimeSeconds);
    });
  }
  return {
    registry,
    csiOperations,
    provisionTotal,
    provisionFailed,
    provisionDuration,
    deleteTotal,
    deleteFailed,
    deleteDuration,
    leaderStatus,
    setLeading: (leading) => leaderStatus.set({ name: "" }, leading ? 1 : 0),
    workQueue,
    observeCsiCall(driverName, method, code, seconds, migrated = false) {
      csiOperations.observe(
        {
          driver_name: driverName,
          method_name: method,
          grpc_status_code: code,
          migrated: String(migrated),
        },
        seconds,
      );
    },
    labelMigratedCalls() {
      csiOperations.addLabel("migrated", "false");
    },
  };
}
