/**
 * Leader election on a coordination.k8s.io Lease, with client-go's algorithm and upstream
 * sidecar conventions: the Lease is named after the driver (characters outside `[a-zA-Z0-9-]`
 * become `-`, and an `X` is appended when the name would end in `-`), the holder identity is
 * sanitised the same way, and a Normal `LeaderElection` event "<identity> became leader" is
 * recorded on the Lease when this replica wins it. (client-go also records "stopped leading",
 * but upstream's sidecar exits at once then and the event never reaches the API: checked against
 * upstream's binary, so none is written here either.)
 *
 * Expiry is judged by *local* observation time, not by the times written in the Lease, so clock
 * skew between replicas does not matter: a candidate takes over only after it has seen the same
 * record unchanged for a whole lease duration.
 *
 * Where it does better than upstream (see README, "What is different"):
 * - A candidate also *watches* the Lease: a released Lease is taken at once, and an abandoned
 *   one exactly when it expires, instead of at the next poll (up to 2.2 retry periods later).
 * - A renewal that fails is retried until the renew deadline, each attempt bounded by it; losing
 *   the Lease stops the leader's work, waits for it to end, and campaigns again instead of
 *   exiting. Only work that does not stop in time makes `run` report `"failed"`.
 * - With `releaseOnCancel`, a clean stop releases the Lease as soon as the work says its API
 *   writes are over (`handOff`), so a standby takes over within a round trip; never while they
 *   may still land (`handOff(false)`: the Lease is left to expire).
 */
import type { EventRecorder } from "../controller/events.ts";
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
  /** This replica's identity (sanitised with {@link sanitizeName} for the Lease). */
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
  /** Give the Lease up on a clean stop, once the work has ended (`ReleaseLeaderElectionOnExit`). */
  releaseOnCancel?: boolean;
  /** Observes leadership (the `leader_election_master_status` gauge). */
  onStatus?: (leading: boolean) => void;
  /** Records the `LeaderElection` events on the Lease; flushed (bounded) before `run` returns. */
  recorder?: EventRecorder;
  /** Watch the Lease to act on a release or an expiry at once. Default true. */
  watch?: boolean;
  /**
   * After the Lease was lost, how long the work may take to stop before `run` gives up with
   * `"failed"` (the caller then exits, as upstream always does). Default: lease duration minus
   * renew deadline, at least 2 s.
   */
  stopTimeoutMs?: number;
}

/** client-go's `sanitizeName`: characters outside `[a-zA-Z0-9-]` become `-`, a trailing `-` gets an `X`. */
export function sanitizeName(name: string): string {
  let out = name.replace(/[^a-zA-Z0-9-]/g, "-");
  if (out === "" || out.endsWith("-")) out += "X";
  return out;
}

/** upstream's Lease name for a driver: `hostpath.csi.k8s.io` → `hostpath-csi-k8s-io`. */
export function leaseNameForDriver(driverName: string): string {
  return sanitizeName(driverName.replace(/\//g, "-"));
}

/**
 * The identity this replica campaigns with: the pod name (`POD_NAME`), stable across restarts
 * of the same pod and distinct even with `hostNetwork: true`; else the host name (upstream's
 * choice, which is the pod name in a pod without host networking).
 */
export function leaderIdentity(podName: string | undefined, hostname: string): string {
  return podName || hostname;
}

function rfc3339Micro(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, "000Z");
}

/**
 * The leader's work. It runs until `signal` aborts. On a clean stop it may call `handOff()` once
 * whatever a successor must not overlap with has ended (its API writes): the Lease is then
 * released at once, while the work winds down. `handOff(false)` says writes may still land: the
 * Lease is then not released but left to expire.
 */
export type LeadFunction = (
  signal: AbortSignal,
  handOff: (safe?: boolean) => void,
) => Promise<void>;

/** How `run` ended: `"stopped"` after the signal; `"failed"` when the work could not go on. */
export type ElectionOutcome = "stopped" | "failed";

export interface LeaderElector {
  /** True while this replica holds the Lease. */
  readonly leading: boolean;
  /** The Lease holder last observed ("" when none). */
  readonly leader: string;
  /**
   * Health check for `/healthz/leader-election`: fails when the leader has not renewed for
   * longer than the lease duration plus `toleranceMs` (20 s upstream).
   */
  healthy(toleranceMs?: number): boolean;
  /**
   * Campaigns until this replica leads and runs `lead(signal)` while it does; when the Lease is
   * lost, aborts that signal, waits for `lead` to return and campaigns again. Resolves with
   * `"stopped"` once `signal` aborted and `lead` returned (the Lease released first when
   * `releaseOnCancel`), or `"failed"` when `lead` ended on its own or did not stop in time after
   * a loss.
   */
  run(lead: LeadFunction, signal: AbortSignal): Promise<ElectionOutcome>;
}

/** The part of a Lease whose change restarts the expiry countdown. */
function recordKey(lease: Lease): string {
  const s = lease.spec ?? {};
  return JSON.stringify([
    s.holderIdentity ?? "",
    s.leaseDurationSeconds ?? null,
    s.acquireTime ?? null,
    s.renewTime ?? null,
    s.leaseTransitions ?? null,
  ]);
}

interface Observed {
  key: string;
  holder: string;
  durationMs: number;
  /** Local time when this record was first seen. */
  at: number;
}

type Attempt = "acquired" | "held" | "failed";

export function createLeaderElector(opts: LeaderElectionOptions): LeaderElector {
  const leaseMs = opts.leaseDurationMs ?? 15_000;
  const renewMs = opts.renewDeadlineMs ?? 10_000;
  const retryMs = opts.retryPeriodMs ?? 5_000;
  const stopTimeoutMs = opts.stopTimeoutMs ?? Math.max(2_000, leaseMs - renewMs);
  const me = sanitizeName(opts.identity);
  const where = `${opts.namespace}/${opts.name}`;
  const log = opts.logger;
  const clock = opts.clock;

  let observed: Observed | undefined;
  /** The Lease as last written by this replica (the fast renewal path updates it directly). */
  let lease: Lease | undefined;
  let leading = false;
  let lastRenew = 0;
  /** Aborted (and replaced) whenever the watch sees a change worth acting on. */
  let wake = new AbortController();

  const setLeading = (v: boolean) => {
    if (leading !== v) {
      leading = v;
      opts.onStatus?.(v);
    }
  };

  const kick = () => {
    const w = wake;
    wake = new AbortController();
    w.abort();
  };

  const observe = (l: Lease | undefined) => {
    if (!l) {
      observed = undefined;
      return;
    }
    const key = recordKey(l);
    if (observed?.key === key) return;
    const spec = l.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const prevHolder = observed?.holder;
    observed = {
      key,
      holder,
      durationMs: (spec.leaseDurationSeconds ?? leaseMs / 1000) * 1000,
      at: clock.now(),
    };
    if (holder !== prevHolder && holder !== "" && holder !== me) {
      log.v(3).info("New leader detected", { lease: where, leader: holder });
    }
  };

  /** Local time at which the observed record expires (now when there is no holder). */
  const expiresAt = (): number =>
    !observed || observed.holder === "" ? clock.now() : observed.at + observed.durationMs;

  const leaseBody = (base: Lease, now: string, mine: boolean): Lease => {
    const spec = base.spec ?? {};
    return {
      ...base,
      metadata: {
        ...base.metadata,
        labels: opts.labels ? { ...base.metadata.labels, ...opts.labels } : base.metadata.labels,
      },
      spec: {
        ...spec,
        holderIdentity: me,
        leaseDurationSeconds: Math.round(leaseMs / 1000),
        renewTime: now,
        acquireTime: mine ? spec.acquireTime : now,
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      },
    };
  };

  const wrote = (l: Lease, at: number) => {
    lease = l;
    observe(l);
    lastRenew = at;
  };

  /** One attempt to acquire or renew. */
  const attempt = async (signal: AbortSignal): Promise<Attempt> => {
    const now = clock.now();
    const nowStr = rfc3339Micro(now);
    // Fast path: the leader updates the Lease it last wrote, without reading it first.
    if (leading && lease && lease.spec.holderIdentity === me && expiresAt() > now) {
      try {
        wrote(await opts.leases.update(leaseBody(lease, nowStr, true), { signal }), now);
        return "acquired";
      } catch (err) {
        if (signal.aborted) return "failed";
        log.v(4).info("Optimistic lease renewal failed; reading the lease", { lease: where, err });
      }
    }
    let current: Lease | undefined;
    try {
      current = await opts.leases.get(opts.name, opts.namespace, { signal });
    } catch (err) {
      if (!isNotFound(err)) {
        if (!signal.aborted)
          log.error("Error retrieving the leader election lease", { lease: where, err });
        return "failed";
      }
    }
    if (!current) {
      observe(undefined);
      try {
        const created = await opts.leases.create(
          {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: { name: opts.name, namespace: opts.namespace, labels: opts.labels },
            spec: {
              holderIdentity: me,
              leaseDurationSeconds: Math.round(leaseMs / 1000),
              acquireTime: nowStr,
              renewTime: nowStr,
              leaseTransitions: 0,
            },
          },
          { signal },
        );
        wrote(created, now);
        return "acquired";
      } catch (err) {
        if (!signal.aborted) {
          log.v(2).info("Could not create the leader election lease", { lease: where, err });
        }
        return "failed";
      }
    }
    observe(current);
    const holder = current.spec?.holderIdentity ?? "";
    if (holder !== "" && holder !== me && expiresAt() > now) {
      log.v(4).info("Lease is held by another replica and has not expired", {
        lease: where,
        holder,
      });
      return "held";
    }
    try {
      wrote(await opts.leases.update(leaseBody(current, nowStr, holder === me), { signal }), now);
      return "acquired";
    } catch (err) {
      if (!isConflict(err) && !signal.aborted) {
        log.error("Failed to update the leader election lease", { lease: where, err });
      }
      return "failed";
    }
  };

  /** Sleeps `ms`, or less when the watch kicks; rejects when `signal` aborts. */
  const nap = async (ms: number, signal: AbortSignal): Promise<void> => {
    const w = wake.signal;
    try {
      await clock.sleep(ms, AbortSignal.any([signal, w]));
    } catch (err) {
      if (signal.aborted) throw err;
    }
  };

  /** Campaigns until this replica holds the Lease (true) or `signal` aborts (false). */
  const acquire = async (signal: AbortSignal): Promise<boolean> => {
    log.info("Attempting to acquire leader lease", { lease: where, identity: me });
    for (;;) {
      if (signal.aborted) return false;
      const result = await attempt(signal);
      if (result === "acquired") return true;
      if (signal.aborted) return false;
      // Next attempt: after a jittered retry period (client-go's JitterUntil), or as soon as
      // the Lease is free or expires when the last attempt found it held or it changed since.
      const seen = observed?.key;
      const until = clock.now() + retryMs * (1 + 1.2 * opts.random());
      for (;;) {
        const early = result === "held" || observed?.key !== seen;
        const target = early ? Math.min(until, expiresAt()) : until;
        const wait = target - clock.now();
        if (wait <= 0) break;
        try {
          await nap(wait, signal);
        } catch {
          return false;
        }
      }
    }
  };

  /** Keeps the Lease renewed; resolves when `signal` aborts ("stopped") or renewal failed ("lost"). */
  const keep = async (signal: AbortSignal): Promise<"stopped" | "lost"> => {
    for (;;) {
      // Renew every retry period; wake early when the watch shows another holder.
      const next = clock.now() + retryMs;
      while (clock.now() < next && !(observed && observed.holder !== me)) {
        try {
          await nap(next - clock.now(), signal);
        } catch {
          return "stopped";
        }
      }
      const deadline = lastRenew + renewMs;
      for (;;) {
        if (signal.aborted) return "stopped";
        const left = deadline - clock.now();
        if (left <= 0) {
          log.error("Failed to renew the leader election lease within the renew deadline", {
            lease: where,
            renewDeadline: `${renewMs / 1000}s`,
          });
          return "lost";
        }
        // Each attempt is bounded by the deadline: a hung request cannot keep a lost leader.
        const bound = new AbortController();
        const timer = new AbortController();
        clock.sleep(left, timer.signal).then(
          () => bound.abort(new Error("renew deadline reached")),
          () => {},
        );
        const result = await attempt(AbortSignal.any([signal, bound.signal]));
        timer.abort();
        if (result === "acquired") break;
        if (signal.aborted) return "stopped";
        if (result === "held") {
          log.error("The leader election lease was taken by another replica", {
            lease: where,
            holder: observed?.holder ?? "",
          });
          return "lost";
        }
        try {
          await clock.sleep(
            Math.min(retryMs / 2, 2_000, Math.max(0, deadline - clock.now())),
            signal,
          );
        } catch {
          return "stopped";
        }
      }
    }
  };

  const release = async () => {
    if (!lease) return;
    const now = rfc3339Micro(clock.now());
    const released = (l: Lease): Lease => ({
      ...l,
      spec: {
        ...l.spec,
        holderIdentity: "",
        leaseDurationSeconds: 1,
        renewTime: now,
        acquireTime: now,
      },
    });
    const bound = new AbortController();
    const timer = new AbortController();
    clock.sleep(renewMs, timer.signal).then(
      () => bound.abort(new Error("renew deadline reached")),
      () => {},
    );
    try {
      let result: Lease;
      try {
        result = await opts.leases.update(released(lease), { signal: bound.signal });
      } catch (err) {
        if (!isConflict(err)) throw err;
        // Our copy is stale: release only if the Lease is still ours.
        const current = await opts.leases.get(opts.name, opts.namespace, { signal: bound.signal });
        if ((current.spec?.holderIdentity ?? "") !== me) return;
        result = await opts.leases.update(released(current), { signal: bound.signal });
      }
      lease = result;
      observe(result);
      log.info("Released the leader election lease", { lease: where });
    } catch (err) {
      log.warn("Could not release the leader election lease", { lease: where, err });
    } finally {
      timer.abort();
    }
  };

  const recordEvent = (message: string) => {
    if (!opts.recorder || !lease) return;
    opts.recorder.event(
      { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: lease.metadata },
      "Normal",
      "LeaderElection",
      `${me} ${message}`,
    );
  };

  /** Feeds `observed` from a watch on the Lease; kicks the loops on every change. */
  const watchLease = async (signal: AbortSignal) => {
    while (!signal.aborted) {
      try {
        const stream = await opts.leases.watch({
          namespace: opts.namespace,
          fieldSelector: `metadata.name=${opts.name}`,
          signal,
        });
        for await (const ev of stream) {
          if (ev.type === "ADDED" || ev.type === "MODIFIED") observe(ev.object);
          else if (ev.type === "DELETED") observe(undefined);
          else if (ev.type === "ERROR") break;
          else continue;
          kick();
        }
      } catch (err) {
        if (signal.aborted) return;
        log.v(4).info("Watch of the leader election lease failed", { lease: where, err });
      }
      try {
        await clock.sleep(retryMs * (1 + opts.random()), signal);
      } catch {
        return;
      }
    }
  };

  return {
    get leading() {
      return leading;
    },
    get leader() {
      return observed?.holder ?? "";
    },
    healthy(toleranceMs = 20_000) {
      if (!leading) return true;
      return clock.now() - lastRenew <= leaseMs + toleranceMs;
    },
    async run(lead, signal) {
      const stopWatch = new AbortController();
      const watching = opts.watch === false ? Promise.resolve() : watchLease(stopWatch.signal);
      try {
        for (;;) {
          if (!(await acquire(signal))) return "stopped";
          setLeading(true);
          log.info("Successfully acquired lease; became leader", { lease: where, identity: me });
          recordEvent("became leader");

          const term = new AbortController();
          const onStop = () => term.abort(signal.reason);
          signal.addEventListener("abort", onStop, { once: true });
          let ended = false;
          let safeToRelease = true;
          let handOff = (_safe?: boolean) => {};
          const handedOff = new Promise<void>((r) => {
            handOff = (safe = true) => {
              safeToRelease = safe;
              if (term.signal.aborted) r();
            };
          });
          const leadDone = lead(term.signal, (safe) => handOff(safe)).then(
            () => {
              ended = true;
            },
            (err) => {
              ended = true;
              log.error("The leader's work ended with an error", { err });
            },
          );
          // Renew until stopped or lost; the work ending by itself also ends the term.
          const workEnded = new AbortController();
          void leadDone.then(() => workEnded.abort());
          const kept = await keep(AbortSignal.any([signal, workEnded.signal]));
          signal.removeEventListener("abort", onStop);
          const lost = kept === "lost";
          if (lost) {
            setLeading(false);
            log.error("Stopped leading; stopping the leader's work", { lease: where });
          }
          term.abort(new Error(lost ? "leadership lost" : "stopping"));

          if (lost && !ended) {
            const timer = new AbortController();
            const timedOut = await Promise.race([
              leadDone.then(() => false),
              clock.sleep(stopTimeoutMs, timer.signal).then(
                () => true,
                () => false,
              ),
            ]);
            timer.abort();
            if (timedOut) {
              log.error("The leader's work did not stop after losing the lease", {
                lease: where,
                waited: `${stopTimeoutMs / 1000}s`,
              });
              return "failed";
            }
          } else if (opts.releaseOnCancel || !signal.aborted) {
            // Release on a clean stop when asked (as soon as the work hands off), and always when
            // the work ended by itself.
            await Promise.race([leadDone, handedOff]);
            if (safeToRelease) await release();
            else {
              log.warn(
                "Leaving the leader election lease to expire: the work's writes may still land",
                {
                  lease: where,
                },
              );
            }
            setLeading(false);
            await leadDone;
          } else {
            await leadDone;
          }
          setLeading(false);
          if (!lost && !signal.aborted) {
            // The work ended by itself: nothing is left to lead for.
            log.error("The leader's work ended unexpectedly", { lease: where });
            return "failed";
          }
          if (signal.aborted) return "stopped";
          log.info("Campaigning again for the leader election lease", { lease: where });
        }
      } finally {
        stopWatch.abort();
        await watching;
        if (opts.recorder) {
          const bound = new AbortController();
          const timer = new AbortController();
          clock.sleep(1_000, timer.signal).then(
            () => bound.abort(),
            () => {},
          );
          await opts.recorder.flush(bound.signal);
          timer.abort();
        }
      }
    },
  };
}
