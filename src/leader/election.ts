/**
 * Leader election on a coordination.k8s.io Lease, with client-go's algorithm and upstream
 * sidecar conventions: the Lease is named after the driver (`/` and other characters outside
 * `[a-zA-Z0-9-]` become `-`, and an `X` is appended when the name would end in `-`), the
 * identity is the host name, and losing the Lease ends the process (the kubelet restarts it).
 *
 * Expiry is judged by *local* observation time, not by the times written in the Lease, so clock
 * skew between replicas does not matter: a candidate takes over only after it has seen the
 * same record unchanged for a whole lease duration.
 */
import type { ResourceClient } from "../kube/api.ts";
import { isConflict, isNotFound } from "../kube/errors.ts";
import type { Lease } from "../kube/objects.ts";
import type { Clock, Random } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";

export interface LeaderElectionOptions {
  leases: ResourceClient<Lease>;
  namespace: string;
  /** Lease name; see {@link leaseNameForDriver}. */
  name: string;
  identity: string;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** `--leader-election-lease-duration`. Default 15 s. */
  leaseDurationMs?: number;
  /** `--leader-election-renew-deadline`. Default 10 s. */
  renewDeadlineMs?: number;
  /** `--leader-election-retry-period`. Default 5 s. */
  retryPeriodMs?: number;
  /** `--leader-election-labels`: added to the Lease when this replica becomes leader. */
  labels?: Record<string, string>;
  /** Give the Lease up on a clean stop (the `ReleaseLeaderElectionOnExit` gate). */
  releaseOnCancel?: boolean;
  /** Observes leadership (the `leader_election_master_status` gauge). */
  onStatus?: (leading: boolean) => void;
}

/** upstream's Lease name for a driver: `hostpath.csi.k8s.io` → `hostpath-csi-k8s-io`. */
export function leaseNameForDriver(driverName: string): string {
  let name = driverName.replace(/\//g, "-").replace(/[^a-zA-Z0-9-]/g, "-");
  if (name.endsWith("-")) name += "X";
  return name;
}

function rfc3339Micro(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, "000Z");
}

export interface LeaderElector {
  /** True while this replica holds the Lease. */
  readonly leading: boolean;
  /**
   * Health check for `/healthz/leader-election`: fails when the leader has not renewed for
   * longer than the lease duration plus `toleranceMs` (20 s upstream).
   */
  healthy(toleranceMs?: number): boolean;
  /**
   * Campaigns until this replica leads, runs `lead(signal)` while it does, and resolves with
   * `"stopped"` when `signal` aborted (after `lead` returned), or `"lost"` when the Lease was
   * lost — the caller then exits non-zero as upstream does.
   */
  run(
    lead: (signal: AbortSignal) => Promise<void>,
    signal: AbortSignal,
  ): Promise<"stopped" | "lost">;
}

export function createLeaderElector(opts: LeaderElectionOptions): LeaderElector {
  const leaseMs = opts.leaseDurationMs ?? 15_000;
  const renewMs = opts.renewDeadlineMs ?? 10_000;
  const retryMs = opts.retryPeriodMs ?? 5_000;
  const where = `${opts.namespace}/${opts.name}`;
  let observed: { holder: string; renewTime: string; rv: string } | undefined;
  let observedAt = 0;
  let lease: Lease | undefined;
  let leading = false;
  let lastRenew = 0;

  const setLeading = (v: boolean) => {
    if (leading !== v) {
      leading = v;
      opts.onStatus?.(v);
    }
  };

  const jitter = (ms: number) => ms * (1 + 1.2 * opts.random());

  /** One attempt; true when this replica holds the Lease afterwards. */
  const tryAcquireOrRenew = async (signal: AbortSignal): Promise<boolean> => {
    const now = opts.clock.now();
    const nowStr = rfc3339Micro(now);
    let current: Lease | undefined;
    try {
      current = await opts.leases.get(opts.name, opts.namespace, { signal });
    } catch (err) {
      if (!isNotFound(err)) {
        opts.logger.error("Error retrieving the leader election lease", { lease: where, err });
        return false;
      }
    }
    if (!current) {
      try {
        lease = await opts.leases.create(
          {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: { name: opts.name, namespace: opts.namespace, labels: opts.labels },
            spec: {
              holderIdentity: opts.identity,
              leaseDurationSeconds: Math.round(leaseMs / 1000),
              acquireTime: nowStr,
              renewTime: nowStr,
              leaseTransitions: 0,
            },
          },
          { signal },
        );
        observedAt = now;
        lastRenew = now;
        return true;
      } catch (err) {
        opts.logger.v(2).info("Could not create the leader election lease", { lease: where, err });
        return false;
      }
    }
    const spec = current.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const record = {
      holder,
      renewTime: spec.renewTime ?? "",
      rv: current.metadata.resourceVersion ?? "",
    };
    if (!observed || observed.holder !== record.holder || observed.renewTime !== record.renewTime) {
      observed = record;
      observedAt = now;
    }
    const durationMs = (spec.leaseDurationSeconds ?? leaseMs / 1000) * 1000;
    if (holder !== "" && holder !== opts.identity && observedAt + durationMs > now) {
      opts.logger.v(4).info("Lease is held by another replica", { lease: where, holder });
      return false;
    }
    const mine = holder === opts.identity;
    const updated: Lease = {
      ...current,
      metadata: {
        ...current.metadata,
        labels: mine ? current.metadata.labels : { ...current.metadata.labels, ...opts.labels },
      },
      spec: {
        ...spec,
        holderIdentity: opts.identity,
        leaseDurationSeconds: Math.round(leaseMs / 1000),
        renewTime: nowStr,
        acquireTime: mine ? spec.acquireTime : nowStr,
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      },
    };
    try {
      lease = await opts.leases.update(updated, { signal });
      observed = {
        holder: opts.identity,
        renewTime: nowStr,
        rv: lease.metadata.resourceVersion ?? "",
      };
      observedAt = now;
      lastRenew = now;
      return true;
    } catch (err) {
      if (!isConflict(err))
        opts.logger.error("Failed to update the leader election lease", { lease: where, err });
      return false;
    }
  };

  const release = async () => {
    if (!lease || !leading) return;
    try {
      const now = rfc3339Micro(opts.clock.now());
      await opts.leases.update({
        ...lease,
        spec: {
          ...lease.spec,
          holderIdentity: "",
          leaseDurationSeconds: 1,
          renewTime: now,
          acquireTime: now,
        },
      });
      opts.logger.info("Released the leader election lease", { lease: where });
    } catch (err) {
      opts.logger.warn("Could not release the leader election lease", { lease: where, err });
    }
  };

  return {
    get leading() {
      return leading;
    },
    healthy(toleranceMs = 20_000) {
      if (!leading) return true;
      return opts.clock.now() - lastRenew <= leaseMs + toleranceMs;
    },
    async run(lead, signal) {
      opts.logger.info("Attempting to acquire the leader lease", {
        lease: where,
        identity: opts.identity,
      });
      // Acquire.
      for (;;) {
        if (signal.aborted) return "stopped";
        if (await tryAcquireOrRenew(signal)) break;
        try {
          await opts.clock.sleep(jitter(retryMs), signal);
        } catch {
          return "stopped";
        }
      }
      setLeading(true);
      opts.logger.info("Became leader", { lease: where, identity: opts.identity });
      const leadAbort = new AbortController();
      const onStop = () => leadAbort.abort(signal.reason);
      signal.addEventListener("abort", onStop, { once: true });
      const leadDone = lead(leadAbort.signal).catch((err) => {
        opts.logger.error("The leader's work ended with an error", { err });
      });
      // Renew until the signal aborts or renewal fails for longer than the renew deadline.
      let outcome: "stopped" | "lost" = "stopped";
      for (;;) {
        try {
          await opts.clock.sleep(retryMs, signal);
        } catch {
          break;
        }
        const deadline = lastRenew + renewMs;
        let renewed = false;
        while (!signal.aborted && opts.clock.now() <= deadline) {
          if (await tryAcquireOrRenew(signal)) {
            renewed = true;
            break;
          }
          try {
            await opts.clock.sleep(Math.min(retryMs / 2, 2000), signal);
          } catch {
            break;
          }
        }
        if (signal.aborted) break;
        if (!renewed) {
          outcome = "lost";
          opts.logger.error("Stopped leading: could not renew the lease", { lease: where });
          break;
        }
      }
      signal.removeEventListener("abort", onStop);
      leadAbort.abort();
      await leadDone;
      if (outcome === "stopped" && opts.releaseOnCancel) await release();
      setLeading(false);
      return outcome;
    },
  };
}
