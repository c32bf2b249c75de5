/**
 * The manager: starts the shared informers, then every peer controller once they have listed,
 * runs the queue workers of each (applying sync results to their queues in one place), and on
 * stop drains them: no new keys, operations in flight get `drainMs` to finish before their
 * calls are cancelled, then batched writes get `flushMs`, then the informers stop. With a leader
 * elector, all of this runs only while this replica leads; a replica that loses the Lease stops
 * its controllers and campaigns again, and each term gets fresh ones (`build`).
 *
 * Two kinds of peers: a {@link QueueController} gives a queue and a `sync(key)` returning a
 * {@link SyncResult}; the manager runs its workers. A {@link Runnable} runs its own loop (a
 * periodic sweep, the capacity controller) with the operations' signal.
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
  /** Syncs one key. `signal` aborts when operations in flight are cancelled. */
  sync(key: K, signal: AbortSignal): Promise<SyncResult>;
}

/** A peer with its own loop; it runs with the operations' signal until the drain ends. */
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
    lead: (signal: AbortSignal, handOff: () => void) => Promise<void>,
    signal: AbortSignal,
  ): Promise<"stopped" | "failed">;
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
  /** Batched writes to finish after the drain (journal, events); each gets the flush deadline. */
  flushers?: readonly ((deadline: AbortSignal) => Promise<void>)[];
  /**
   * The flushers a successor leader must not overlap with (the intent journal): once they are
   * done, the elector may hand the Lease over while the others (events) still flush.
   */
  handOffFlushers?: readonly ((deadline: AbortSignal) => Promise<void>)[];
  /** Delay of a `retrySlow` result (`--retry-interval-max`). */
  retryMaxMs: number;
  /** Operations in flight get this long after a stop before they are cancelled. Default 2 s. */
  drainMs?: number;
  /** After the drain, how long batched writes may take. Default 1.5 s. */
  flushMs?: number;
  /** Run only while leading. */
  elector?: Elector;
  /** Logged once the workers run. */
  startedMessage?: { text: string; fields: Record<string, unknown> };
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
 * `c.queue`, sync them with the operations' signal `ops`, and apply the results to the queue
 * (unless `ops` was aborted: a cancelled sync decides nothing). A sync that throws is logged
 * and retried at its back-off. Resolves once `stop` aborted (or the queue shut down) and the
 * syncs in flight ended.
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
        r = await c.sync(key, ops);
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

  /** Waits the flush deadline out for the batched writes, then gives up on them. */
  const flush = async (handOff?: () => void) => {
    const deadline = new AbortController();
    const timer = new AbortController();
    after(clock, o.flushMs ?? 1500, timer.signal, () => deadline.abort());
    const all = (fs: readonly ((deadline: AbortSignal) => Promise<void>)[]) =>
      Promise.all(
        fs.map((f) =>
          Promise.race([f(deadline.signal), aborted(deadline.signal)]).catch((err) =>
            logger.warn("Could not flush batched writes", { err }),
          ),
        ),
      );
    await Promise.all([
      all(o.handOffFlushers ?? []).then(() => handOff?.()),
      all(o.flushers ?? []),
    ]);
    timer.abort();
  };

  const runControllers = async (signal: AbortSignal, handOff?: () => void): Promise<void> => {
    const peers = o.build();
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

      // Operations get their own signal: a stop lets them finish for `drainMs`, then cancels.
      const ops = new AbortController();
      const workers = peers.controllers.map((c) => work(c, ops.signal, signal));
      const runnables = (peers.runnables ?? []).map((r) =>
        r
          .run(ops.signal)
          .catch((err) => logger.error("A secondary controller stopped", { name: r.name, err })),
      );
      if (o.startedMessage) logger.info(o.startedMessage.text, o.startedMessage.fields);
      await aborted(signal);
      for (const c of peers.controllers) c.queue.shutDown();
      const grace = new AbortController();
      after(clock, o.drainMs ?? 2000, grace.signal, () => {
        logger.info("Cancelling operations still in flight");
        ops.abort(new Error("the provisioner is stopping"));
      });
      await Promise.all(workers);
      grace.abort();
      ops.abort();
      await Promise.all(runnables);
      // Batched intent removals and events still waiting for the API budget get a short while
      // together, then are left: the process must end well inside Kubernetes' grace period.
      await flush(handOff);
    } finally {
      running = false;
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
