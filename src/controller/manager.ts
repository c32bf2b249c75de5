/**
 * The manager: starts the shared informers, then every peer controller once they have listed,
 * runs the queue workers of each (applying sync results to their queues in one place), and on
 * stop hands over within one budget (`handOverMs`, default 1.5 s, from the stop to the hand-off):
 *
 * 1. At once: the queues take no new keys, syncs in flight are told to start no new CreateVolume
 *    (their `stopping` signal), the secondary loops (capacity, sweeps, audit) are cancelled.
 * 2. Operations in flight may finish until the budget less `flushReserveMs` (default 0.3 s);
 *    then their calls are cancelled. An operation cut short keeps its intent in the journal: the
 *    next leader finishes it (CreateVolume is replayed by name, idempotently).
 * 3. The intent journal's flush (`handOffFlushers`) gets what is left of the budget; events
 *    (`flushers`) are written meanwhile at low priority and the rest dropped at the hand-off.
 * 4. The write fence (`fence`) stops every API write of the work and waits for writes already
 *    sent to be answered; only then may the elector release the Lease (`handOff(true)`), so the
 *    old and the new leader never write at the same time. A write that stays unanswered makes it
 *    `handOff(false)`: the Lease is left to expire instead.
 *
 * With a leader elector, all of this runs only while this replica leads; a replica that loses
 * the Lease stops its controllers the same way and campaigns again, and each term gets fresh
 * ones (`build`).
 *
 * Two kinds of peers: a {@link QueueController} gives a queue and a `sync(key)` returning a
 * {@link SyncResult}; the manager runs its workers. A {@link Runnable} runs its own loop (a
 * periodic sweep, the capacity controller) until the stop.
 */
import type { Clock } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { runWorkers, type WorkQueue } from "./workqueue.ts";

/** What a sync asks of its queue. */
export type SyncResult =
  /** Finished: reset the key's back-off. */
  | { kind: "done" }
  /** Failed: retry after the key's exponential back-off. */
  | { kind: "retry"; reason?: string }
  /** Failed in a way a quick retry will not fix: retry after `retryMaxMs`. */
  | { kind: "retrySlow"; reason?: string }
  /** Nothing to do until `at` (ms, clock time). */
  | { kind: "wait"; at: number };

/**
 * Applies `result` to `queue` for `key`; returns the delay in ms before the key comes back
 * (`undefined` when it does not). The one place that turns sync results into queue actions.
 */
export function applySyncResult<K>(
  queue: WorkQueue<K>,
  key: K,
  result: SyncResult,
  o: { clock: Clock; retryMaxMs: number },
): number | undefined {
  switch (result.kind) {
    case "done":
      queue.forget(key);
      return undefined;
    case "retry":
      return queue.addRateLimited(key);
    case "retrySlow":
      queue.addAfter(key, o.retryMaxMs);
      return o.retryMaxMs;
    case "wait": {
      const ms = Math.max(0, result.at - o.clock.now());
      queue.addAfter(key, ms);
      return ms;
    }
  }
}

/** A controller driven by a work queue; the manager runs its workers. */
export interface QueueController<K> {
  /** For log lines: `Claim` gives "Claim sync failed", "Claim will be retried". */
  readonly what: string;
  /** The log field naming a key (`uid`, `volume`, `claim`). */
  readonly keyField: string;
  readonly queue: WorkQueue<K>;
  readonly workers: number;
  /**
   * Called once the informers have listed, before any worker starts: register event handlers
   * and queue the initial keys. Rejecting stops the manager.
   */
  start?(signal: AbortSignal): Promise<void> | void;
  /**
   * Syncs one key. `signal` aborts when operations in flight are cancelled; `stopping` aborts at
   * the stop, before that: start nothing that the hand-over would have to wait for (no new
   * CreateVolume), finish what can be finished.
   */
  sync(key: K, signal: AbortSignal, stopping: AbortSignal): Promise<SyncResult>;
}

/** A peer with its own loop; its signal aborts at the stop. */
export interface Runnable {
  readonly name: string;
  run(signal: AbortSignal): Promise<void>;
}

/** Anything the manager starts first and waits on: the shared informers. */
export interface SharedInformer {
  run(signal: AbortSignal): Promise<void>;
  waitForSync(signal?: AbortSignal): Promise<void>;
}

/** A leader elector (see `leader/election.ts`): `"failed"` when the work cannot go on. */
export interface Elector {
  run(
    lead: (signal: AbortSignal, handOff: (safe?: boolean) => void) => Promise<void>,
    signal: AbortSignal,
  ): Promise<"stopped" | "failed">;
}

/** Stops the API writes of one term (see `KubeTransport.closeWrites`). */
export interface WriteFence {
  /** Lets writes through: called as each term starts. */
  open(): void;
  /**
   * Stops every write not sent yet; resolves `true` once every write already sent was answered,
   * `false` if `deadline` aborted first.
   */
  close(deadline: AbortSignal): Promise<boolean>;
}

/** The peers of one run (one leadership term): informers first, then the controllers. */
export interface Peers {
  informers: readonly SharedInformer[];
  // biome-ignore lint/suspicious/noExplicitAny: controllers of any key type
  controllers: readonly QueueController<any>[];
  runnables?: readonly Runnable[];
}

export interface ManagerOptions {
  clock: Clock;
  logger: Logger;
  /** Builds the peers; called once per run (per leadership term). */
  build: () => Peers;
  /**
   * Best-effort batched writes (events): flushed during the hand-over; their deadline aborts at
   * the hand-off (without an elector: at the end of the budget), dropping what is left.
   */
  flushers?: readonly ((deadline: AbortSignal) => Promise<void>)[];
  /**
   * Batched writes worth finishing before the hand-off (the intent journal's removals): they get
   * what is left of the budget after the drain. Not needed for safety: the next leader clears
   * what they leave.
   */
  handOffFlushers?: readonly ((deadline: AbortSignal) => Promise<void>)[];
  /** Stops the work's API writes before the hand-off. Without one, nothing is fenced. */
  fence?: WriteFence;
  /** Delay of a `retrySlow` result (`--retry-interval-max`). */
  retryMaxMs: number;
  /** From the stop to the hand-off, at most (plus the fence's wait). Default 1500 ms. */
  handOverMs?: number;
  /** The end of the budget kept for the journal's flush after operations are cancelled. Default 300 ms. */
  flushReserveMs?: number;
  /** How long the fence may wait for writes already sent. Default 1000 ms. */
  fenceWaitMs?: number;
  /** Run only while leading. */
  elector?: Elector;
  /** Logged once the workers run. */
  startedMessage?: { text: string; fields: Record<string, unknown> };
  /** Called once the workers run (each term): the initial lists are done. */
  onStarted?: () => void;
}

export interface Manager {
  /**
   * Runs until `signal` aborts; resolves after the drain with `"stopped"`, or `"failed"` when
   * leader election could not go on (see `leader/election.ts`).
   */
  run(signal: AbortSignal): Promise<"stopped" | "failed">;
  /** True from the informers' first list until the controllers stop (for `/healthz`). */
  ready(): boolean;
}

/** Resolves when `signal` aborts. */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/** Resolves after `ms` unless `cancel` aborts first; calls `then` when the time is up. */
function after(clock: Clock, ms: number, cancel: AbortSignal, then: () => void): void {
  clock.sleep(ms, cancel).then(then, () => {});
}

/**
 * The one worker loop of every queue-driven controller: `c.workers` loops take keys from
 * `c.queue`, sync them with the operations' signal `ops` (and `stop` as their `stopping`
 * signal), and apply the results to the queue (unless `ops` was aborted: a cancelled sync decides
 * nothing). A sync that throws is logged and retried at its back-off. Resolves once `stop`
 * aborted (or the queue shut down) and the syncs in flight ended.
 */
export function runSyncWorkers<K>(
  c: QueueController<K>,
  o: { clock: Clock; logger: Logger; retryMaxMs: number },
  ops: AbortSignal,
  stop: AbortSignal,
): Promise<void> {
  return runWorkers(
    c.queue,
    Math.max(1, c.workers),
    async (key) => {
      let r: SyncResult;
      try {
        r = await c.sync(key, ops, stop);
      } catch (err) {
        r = { kind: "retry", reason: errorText(err) };
        o.logger.error(`${c.what} sync failed`, { [c.keyField]: key, err });
      }
      if (ops.aborted) return;
      const delayMs = applySyncResult(c.queue, key, r, o);
      if (r.kind === "retry") {
        o.logger.v(4).info(`${c.what} will be retried`, {
          [c.keyField]: key,
          delayMs,
          reason: r.reason,
        });
      }
    },
    stop,
  );
}

export function createManager(o: ManagerOptions): Manager {
  const { clock, logger } = o;
  let running = false;

  const work = (
    // biome-ignore lint/suspicious/noExplicitAny: controllers of any key type
    c: QueueController<any>,
    ops: AbortSignal,
    stop: AbortSignal,
  ) => runSyncWorkers(c, { clock, logger, retryMaxMs: o.retryMaxMs }, ops, stop);

  const flushAll = (
    fs: readonly ((deadline: AbortSignal) => Promise<void>)[],
    deadline: AbortSignal,
  ): Promise<unknown> =>
    Promise.all(
      fs.map((f) =>
        Promise.race([f(deadline), aborted(deadline)]).catch((err) =>
          logger.warn("Could not flush batched writes", { err }),
        ),
      ),
    );

  /**
   * Closes the write fence, bounded by `fenceWaitMs`; true when no write of this term can reach
   * the API any more.
   */
  const fenceWrites = async (): Promise<boolean> => {
    if (!o.fence) return true;
    const deadline = new AbortController();
    const timer = new AbortController();
    after(clock, o.fenceWaitMs ?? 1000, timer.signal, () => deadline.abort());
    try {
      const safe = await o.fence.close(deadline.signal);
      if (!safe) {
        logger.warn(
          "API writes sent before the stop are still unanswered; not releasing the leader Lease, a standby takes over when it expires",
        );
      }
      return safe;
    } finally {
      timer.abort();
    }
  };

  /**
   * The stop of a term, within the hand-over budget (see the module comment). Resolves when the
   * work's writes are over (or abandoned to the next leader).
   */
  const stopWork = async (
    controllers: Peers["controllers"],
    workers: Promise<void>[],
    runnables: Promise<void>[],
    ops: AbortController,
    background: AbortController,
  ): Promise<void> => {
    const budget = Math.max(0, o.handOverMs ?? 1500);
    const reserve = Math.min(Math.max(0, o.flushReserveMs ?? 300), budget);
    const end = new AbortController();
    const timers = new AbortController();
    after(clock, budget, timers.signal, () => end.abort());
    for (const c of controllers) c.queue.shutDown();
    background.abort(new Error("the provisioner is stopping"));
    let cancelled = false;
    after(clock, budget - reserve, timers.signal, () => {
      cancelled = true;
      logger.info("Cancelling operations still in flight; the next leader finishes them");
      ops.abort(new Error("the provisioner is stopping"));
    });
    const bestEffort = new AbortController();
    try {
      await Promise.all(workers);
      ops.abort();
      await Promise.all(runnables);
      if (!cancelled) logger.v(2).info("Operations in flight finished");
      // Events are written meanwhile: Normal ones at low priority, behind the journal's writes;
      // a Warning (one in flight at most) takes its turn among them.
      const events = flushAll(o.flushers ?? [], bestEffort.signal);
      await flushAll(o.handOffFlushers ?? [], end.signal);
      if (!o.elector) await Promise.race([events, aborted(end.signal)]);
      bestEffort.abort();
      await events;
    } finally {
      timers.abort();
      bestEffort.abort();
    }
  };

  const runControllers = async (
    signal: AbortSignal,
    handOff?: (safe?: boolean) => void,
  ): Promise<void> => {
    const peers = o.build();
    o.fence?.open();
    const stopInformers = new AbortController();
    const informerRuns = peers.informers.map((i) =>
      i.run(stopInformers.signal).catch((err) => logger.error("Informer stopped", { err })),
    );
    try {
      try {
        await Promise.all(peers.informers.map((i) => i.waitForSync(signal)));
      } catch {
        return;
      }
      running = true;
      for (const c of peers.controllers) await c.start?.(signal);

      // Operations get their own signal: a stop lets them finish within the budget, then
      // cancels them; the secondary loops stop at once.
      const ops = new AbortController();
      const background = new AbortController();
      const workers = peers.controllers.map((c) => work(c, ops.signal, signal));
      const runnables = (peers.runnables ?? []).map((r) =>
        r
          .run(background.signal)
          .catch((err) => logger.error("A secondary controller stopped", { name: r.name, err })),
      );
      if (o.startedMessage) logger.info(o.startedMessage.text, o.startedMessage.fields);
      o.onStarted?.();
      await aborted(signal);
      await stopWork(peers.controllers, workers, runnables, ops, background);
    } finally {
      running = false;
      // No write of this term reaches the API after this: only then may the Lease go.
      handOff?.(await fenceWrites());
      stopInformers.abort();
      await Promise.all(informerRuns);
    }
  };

  return {
    ready: () => running,
    async run(signal) {
      if (!o.elector) {
        await runControllers(signal);
        return "stopped";
      }
      return o.elector.run(runControllers, signal);
    },
  };
}
