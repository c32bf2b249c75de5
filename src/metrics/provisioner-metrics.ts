/**
 * The provisioner's metrics, with upstream's names, labels and buckets so that existing
 * dashboards and alerts keep working (reference §2.15).
 */
import { type Counter, type Gauge, type Histogram, Registry } from "./registry.ts";

/** Buckets of `csi_sidecar_operations_seconds`, in seconds. */
export const CSI_OPERATION_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 25, 50, 120, 300, 600];
/** Prometheus' default buckets, used by the controller duration histograms. */
export const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The work-queue observations (the queues take any object of this shape). */
export interface WorkQueueMetrics {
  depth(name: string, depth: number): void;
  added(name: string): void;
  retried(name: string): void;
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
  readonly workQueue: WorkQueueMetrics;
  /** Records one CSI call, as the gRPC client's call hook. */
  observeCsiCall(driverName: string, method: string, code: string, seconds: number): void;
}

export interface ProcessStats {
  residentBytes(): number;
  heapBytes(): number;
  cpuSeconds(): number;
  startTimeSeconds: number;
}

export function createProvisionerMetrics(proc?: ProcessStats): ProvisionerMetrics {
  const registry = new Registry();
  const csiOperations = registry.histogram(
    "csi_sidecar_operations_seconds",
    "Container Storage Interface operation duration with gRPC error code status total",
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
    "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
    ["name"],
  );
  const depth = registry.gauge("workqueue_depth", "Current depth of workqueue", ["name"]);
  const adds = registry.counter(
    "workqueue_adds_total",
    "Total number of adds handled by workqueue",
    ["name"],
  );
  const retries = registry.counter(
    "workqueue_retries_total",
    "Total number of retries handled by workqueue",
    ["name"],
  );
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
    workQueue: {
      depth: (name, d) => depth.set({ name }, d),
      added: (name) => adds.inc({ name }),
      retried: (name) => retries.inc({ name }),
    },
    observeCsiCall(driverName, method, code, seconds) {
      csiOperations.observe(
        { driver_name: driverName, method_name: method, grpc_status_code: code },
        seconds,
      );
    },
  };
}
