/**
 * End-to-end latency, as users see it (not in upstream, whose duration histograms time one
 * attempt only): claim created → PV saved, PV released → volume deleted, and the time a claim's
 * PV save waited for the client-side API budget (`--kube-api-qps` / `--kube-api-burst`). Names
 * follow upstream's `controller_persistentvolume[claim]_*` style; labels `class` (StorageClass)
 * and `outcome`.
 */
import type { PersistentVolume, PersistentVolumeClaim } from "../kube/objects.ts";
import type { Clock } from "../util/clock.ts";
import type { Histogram, Registry } from "./registry.ts";

/** Seconds: from sub-second provisioning to an hour-long wait for a first consumer. */
export const END_TO_END_BUCKETS = [
  0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
];
/** Seconds: a token bucket wait, from none to a long burst at the default 5 QPS. */
export const API_WAIT_BUCKETS = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export const PROVISION_LATENCY = "controller_persistentvolumeclaim_provision_end_to_end_seconds";
export const DELETE_LATENCY = "controller_persistentvolume_delete_end_to_end_seconds";
export const API_WAIT = "controller_persistentvolumeclaim_api_wait_seconds";

export interface LatencyMetrics {
  /** The claim got its PV (`outcome="success"`). */
  provisioned(claim: PersistentVolumeClaim | undefined, pv: PersistentVolume): void;
  /** The claim was deleted before it got a PV (`outcome="abandoned"`). */
  abandoned(claim: PersistentVolumeClaim): void;
  /** The volume of a released PV was deleted and the PV is going (`outcome="success"`). */
  deleted(pv: PersistentVolume): void;
  /** A claim's PV save waited `ms` for the API budget. */
  apiWait(className: string, ms: number): void;
}

function parseTime(t: string | null | undefined): number | undefined {
  if (!t) return undefined;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? undefined : ms;
}

export function registerLatencyMetrics(registry: Registry, clock: Clock): LatencyMetrics {
  const provision: Histogram = registry.histogram(
    PROVISION_LATENCY,
    "Seconds from a claim's creation to its PersistentVolume saved (outcome success) or to its deletion without one (outcome abandoned). Broken down by storage class name and outcome.",
    ["class", "outcome"],
    END_TO_END_BUCKETS,
  );
  const del: Histogram = registry.histogram(
    DELETE_LATENCY,
    "Seconds from a PersistentVolume becoming Released (status.lastPhaseTransitionTime) to its volume deleted. Broken down by storage class name and outcome.",
    ["class", "outcome"],
    END_TO_END_BUCKETS,
  );
  const wait: Histogram = registry.histogram(
    API_WAIT,
    "Seconds a claim's PersistentVolume save waited for the client-side API budget (--kube-api-qps, --kube-api-burst). Broken down by storage class name.",
    ["class"],
    API_WAIT_BUCKETS,
  );
  const since = (t: string | null | undefined) => {
    const at = parseTime(t);
    return at === undefined ? undefined : Math.max(0, clock.now() - at) / 1000;
  };
  return {
    provisioned(claim, pv) {
      const s = since(claim?.metadata.creationTimestamp);
      if (s === undefined) return;
      provision.observe({ class: pv.spec.storageClassName ?? "", outcome: "success" }, s);
    },
    abandoned(claim) {
      const s = since(claim.metadata.creationTimestamp);
      if (s === undefined) return;
      provision.observe({ class: claim.spec.storageClassName ?? "", outcome: "abandoned" }, s);
    },
    deleted(pv) {
      const status = pv.status as { lastPhaseTransitionTime?: string } | undefined;
      const s = since(status?.lastPhaseTransitionTime);
      if (s === undefined) return;
      del.observe({ class: pv.spec.storageClassName ?? "", outcome: "success" }, s);
    },
    apiWait(className, ms) {
      wait.observe({ class: className }, ms / 1000);
    },
  };
}
