/**
 * Records core/v1 Events the way client-go's recorder does, so `kubectl describe` shows the
 * same lines as with upstream: name `<object>.<hex nanoseconds>`, the object's namespace (or
 * `default` for cluster-scoped objects), `source.component`, and `count` bumped by a PATCH when
 * the same event repeats within ten minutes instead of a new object.
 *
 * Recording never blocks the caller: events go through a bounded in-memory queue written by a
 * background loop; a failed write is logged and dropped (events are best effort, as upstream). An
 * event is logged once, when it was written (or dropped), so the log says what the API received.
 *
 * Normal events are written at low priority on the client's rate limiter (a PV write never waits
 * behind one; they trail while PV writes keep the budget busy). Warning events — what an operator
 * acts on, e.g. `ProvisioningFailed` — have their own queue and loop at normal priority, so they
 * reach `kubectl describe` in the API budget's first-come order (as all of upstream's events do)
 * even while a stream of PV writes holds the Normal ones back.
 */
import type { ResourceClient } from "../kube/api.ts";
import type { CoreEvent, KubeObject, ObjectReference } from "../kube/objects.ts";
import type { Priority } from "../kube/ratelimit.ts";
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";

export type EventType = "Normal" | "Warning";

export interface EventRecorder {
  /**
   * Queues an event about `obj`. The returned function withdraws it if it has not been written
   * yet (an event that became pointless while waiting for the API budget) and tells whether it
   * did.
   */
  event(obj: EventSubject, type: EventType, reason: string, message: string): () => boolean;
  /**
   * Resolves when every queued event has been written (or dropped). When `signal` aborts first,
   * the events still queued are dropped (with one log line) and it resolves at once.
   */
  flush(signal?: AbortSignal): Promise<void>;
}

/** What an event is about: enough to build its `involvedObject`. */
export interface EventSubject {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export interface EventRecorderOptions {
  events: ResourceClient<CoreEvent>;
  clock: Clock;
  logger: Logger;
  /** `source.component`, e.g. `external-provisioner`. */
  component: string;
  /** `source.host`; empty for none. */
  host?: string;
  /** Queue bound; further events are dropped with a log line. Default 1000. */
  maxQueued?: number;
  /** Repeats of the same event within this window bump `count`. Default 10 minutes. */
  aggregateWindowMs?: number;
}

interface Sent {
  name: string;
  namespace: string;
  count: number;
  firstTimestamp: string;
  lastSeen: number;
}

/** Builds the involvedObject reference of `obj`. */
export function referenceOf(obj: EventSubject): ObjectReference {
  const ref: ObjectReference = {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    name: obj.metadata.name,
    uid: obj.metadata.uid,
    resourceVersion: obj.metadata.resourceVersion,
  };
  if (obj.metadata.namespace) ref.namespace = obj.metadata.namespace;
  return ref;
}

/** Makes a subject from an object typed with kind and apiVersion. */
export function subject(obj: KubeObject, apiVersion: string, kind: string): EventSubject {
  return { apiVersion, kind, metadata: obj.metadata };
}

const objectName = (obj: EventSubject) =>
  `${obj.metadata.namespace ? `${obj.metadata.namespace}/` : ""}${obj.metadata.name}`;

function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function createEventRecorder(opts: EventRecorderOptions): EventRecorder {
  const maxQueued = opts.maxQueued ?? 1000;
  const window = opts.aggregateWindowMs ?? 10 * 60_000;
  type Item = { obj: EventSubject; type: EventType; reason: string; message: string; at: number };
  /** One queue and one writing loop per event type; see the module comment. */
  interface Line {
    queue: Item[];
    /**
     * The writing loop while it runs. Cleared by the loop itself in the same turn as it finds the
     * queue empty: an event queued after that turn starts a new loop, never waits in a queue
     * that no loop will read.
     */
    running: Promise<void> | undefined;
    priority: Priority;
  }
  const lines: Record<EventType, Line> = {
    Normal: { queue: [], running: undefined, priority: "low" },
    Warning: { queue: [], running: undefined, priority: "normal" },
  };
  const allLines = Object.values(lines);
  const queued = () => allLines.reduce((n, l) => n + l.queue.length, 0);
  const sent = new Map<string, Sent>();
  let lastNanos = 0n;

  const uniqueNanos = (ms: number): bigint => {
    let n = BigInt(ms) * 1_000_000n;
    if (n <= lastNanos) n = lastNanos + 1n;
    lastNanos = n;
    return n;
  };

  const write = async (item: Item, priority: Priority) => {
    const ref = referenceOf(item.obj);
    const namespace = item.obj.metadata.namespace || "default";
    const key = [
      ref.uid,
      ref.kind,
      ref.namespace,
      ref.name,
      item.type,
      item.reason,
      item.message,
    ].join("\u0000");
    const now = rfc3339(item.at);
    const prev = sent.get(key);
    if (prev && item.at - prev.lastSeen <= window) {
      try {
        await opts.events.patch(
          prev.name,
          "strategic",
          { count: prev.count + 1, lastTimestamp: now, message: item.message },
          prev.namespace,
          { priority, discardResult: true },
        );
        prev.count++;
        prev.lastSeen = item.at;
        return;
      } catch (err) {
        opts.logger.v(4).info("Could not update event; creating a new one", { err });
      }
    }
    const name = `${ref.name ?? "unknown"}.${uniqueNanos(item.at).toString(16)}`;
    const ev: CoreEvent = {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name, namespace },
      involvedObject: ref,
      reason: item.reason,
      message: item.message,
      type: item.type,
      source: opts.host
        ? { component: opts.component, host: opts.host }
        : { component: opts.component },
      count: 1,
      firstTimestamp: now,
      lastTimestamp: now,
      reportingComponent: opts.component,
      reportingInstance: opts.host ?? "",
    };
    await opts.events.create(ev, { priority, discardResult: true });
    sent.set(key, { name, namespace, count: 1, firstTimestamp: now, lastSeen: item.at });
    if (sent.size > 4096) {
      for (const [k, v] of sent) if (item.at - v.lastSeen > window) sent.delete(k);
    }
  };

  const drain = async (line: Line) => {
    // Started with an item queued, so the first `await` comes before the loop can find the
    // queue empty: the caller has stored this promise by the time the loop clears it.
    for (;;) {
      const item = line.queue.shift();
      if (!item) {
        line.running = undefined;
        return;
      }
      try {
        await write(item, line.priority);
        opts.logger.info("Event", {
          object: objectName(item.obj),
          kind: item.obj.kind,
          type: item.type,
          reason: item.reason,
          message: item.message,
        });
      } catch (err) {
        opts.logger.warn("Could not record event", {
          object: `${item.obj.metadata.namespace ? `${item.obj.metadata.namespace}/` : ""}${item.obj.metadata.name}`,
          reason: item.reason,
          err,
        });
      }
    }
  };

  return {
    event(obj, type, reason, message) {
      const name = objectName(obj);
      if (queued() >= maxQueued) {
        opts.logger.warn("Event queue full; dropping event", { object: name, reason });
        return () => false;
      }
      const item = { obj, type, reason, message, at: opts.clock.now() };
      const line = lines[type];
      line.queue.push(item);
      if (!line.running) line.running = drain(line);
      return () => {
        const i = line.queue.indexOf(item);
        if (i < 0) return false;
        line.queue.splice(i, 1);
        opts.logger
          .v(4)
          .info("Event withdrawn before it was written", { object: name, reason: item.reason });
        return true;
      };
    },
    async flush(signal) {
      const onAbort = () => {
        const count = queued();
        if (count > 0) {
          opts.logger.warn("Dropping events not written before shutdown", { count });
          for (const l of allLines) l.queue.length = 0;
        }
      };
      const running = () => {
        const r = allLines.map((l) => l.running).filter((p) => p !== undefined);
        return r.length > 0 ? Promise.all(r) : undefined;
      };
      if (signal?.aborted) onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      // One promise for the abort, raced against each pass's loops.
      const aborted = new Promise<void>((done) =>
        signal?.addEventListener("abort", () => done(), { once: true }),
      );
      try {
        for (let r = running(); r && !signal?.aborted; r = running()) {
          await Promise.race([r, aborted]);
        }
      } finally {
        signal?.removeEventListener("abort", onAbort);
      }
    },
  };
}
