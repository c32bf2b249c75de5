import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { setImmediate } from "node:timers";
import type { ResourceClient } from "../../src/kube/api.ts";
import type { EventHandler, InformerOptions, InformerStats } from "../../src/kube/informer.ts";
import { Informer } from "../../src/kube/informer.ts";
import type { PersistentVolumeClaim } from "../../src/kube/objects.ts";
import { projectPersistentVolumeClaim } from "../../src/kube/projections.ts";
import { resources } from "../../src/kube/resources.ts";
import { objectKey } from "../../src/kube/store.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { seededRandom } from "../support/seeded-random.ts";
import type { FakeObject, FakeWatchServerOptions } from "./fake-watch-server.ts";
import {
  apiError,
  createAll,
  FakeWatchServer,
  internalError,
  pvc,
  settle,
  startHttpBackend,
  tooManyRequests,
  transportError,
  until,
} from "./fake-watch-server.ts";

type Entry =
  | { type: "add"; key: string; uid: string; rv: string }
  | { type: "update"; key: string; uid: string; rv: string; oldUid: string; oldRv: string }
  | { type: "delete"; key: string; uid: string; rv: string; finalStateUnknown: boolean };

function meta(o: FakeObject) {
  return {
    key: objectKey(o),
    uid: o.metadata.uid ?? "",
    rv: o.metadata.resourceVersion ?? "",
  };
}

/** A handler that records what it is told, in order. */
function recorder(): EventHandler<FakeObject> & { log: Entry[] } {
  const log: Entry[] = [];
  return {
    log,
    onAdd: (o) => void log.push({ type: "add", ...meta(o) }),
    onUpdate: (old, o) =>
      void log.push({
        type: "update",
        ...meta(o),
        oldUid: old.metadata.uid ?? "",
        oldRv: old.metadata.resourceVersion ?? "",
      }),
    onDelete: (o, info) =>
      void log.push({ type: "delete", ...meta(o), finalStateUnknown: info.finalStateUnknown }),
  };
}

interface Harness {
  server: FakeWatchServer;
  clock: FakeClock;
  informer: Informer<FakeObject, FakeObject>;
  logger: ReturnType<typeof memoryLogger>;
  done: Promise<void>;
  stop: () => Promise<void>;
}

let current: Harness | undefined;
afterEach(async () => {
  await current?.stop();
  current = undefined;
});

function start(
  opts: {
    server?: FakeWatchServerOptions;
    seed?: (s: FakeWatchServer) => void;
    informer?: Partial<InformerOptions<FakeObject, FakeObject>>;
    handler?: EventHandler<FakeObject>;
  } = {},
): Harness {
  const server = new FakeWatchServer(opts.server);
  opts.seed?.(server);
  const clock = new FakeClock();
  const logger = memoryLogger(clock);
  const informer = new Informer<FakeObject, FakeObject>({
    client: server.client(),
    clock,
    random: () => 0,
    logger,
    streamingList: false,
    ...opts.informer,
  });
  if (opts.handler) informer.addEventHandler(opts.handler);
  const ctl = new AbortController();
  const done = informer.run(ctl.signal);
  const h: Harness = {
    server,
    clock,
    informer,
    logger,
    done,
    stop: async () => {
      ctl.abort();
      await done;
    },
  };
  current = h;
  return h;
}

async function caughtUp(h: Harness): Promise<void> {
  await until(
    () => h.informer.lastSyncResourceVersion === h.server.resourceVersion,
    `resourceVersion ${h.server.resourceVersion}`,
  );
}

async function watching(h: Harness): Promise<void> {
  await until(() => h.server.openWatches === 1, "an open watch");
}

function show(log: Entry[]): string[] {
  return log.map((e) =>
    e.type === "update"
      ? `update ${e.key} ${e.oldRv}->${e.rv}`
      : `${e.type} ${e.key}@${e.rv}${e.type === "delete" && e.finalStateUnknown ? " (relist)" : ""}`,
  );
}

describe("Informer", () => {
  it("keeps decoding and updating the store while a slow handler is busy, then notifies in order", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const seen: string[] = [];
    const h = start({
      seed: (s) => s.create(pvc("a")),
      handler: {
        onAdd: async (o) => {
          seen.push(`add ${o.metadata.name}`);
          await gate;
        },
        onUpdate: (_old, o) =>
          void seen.push(`update ${o.metadata.name}@${o.metadata.resourceVersion}`),
        onDelete: (o) => void seen.push(`delete ${o.metadata.name}`),
      },
    });
    await h.informer.waitForSync();
    await until(() => seen.length === 1, "first add");
    for (let i = 0; i < 50; i++) h.server.create(pvc(`p${i}`));
    h.server.update("ns/a", (o) => {
      o.spec = { n: 1 };
    });
    h.server.delete("ns/p0");
    await caughtUp(h);
    assert.equal(h.informer.store.size, 50, "the store is current although the handler is stuck");
    assert.equal(h.informer.store.get("ns/a")?.metadata.resourceVersion, FakeWatchServer.rv(52));
    assert.deepEqual(seen, ["add a"], "nothing else delivered while the handler is busy");
    assert.equal(h.informer.stats.pendingNotifications, 52);
    release();
    await h.informer.drained();
    assert.equal(seen.length, 53);
    assert.deepEqual(seen.slice(-3), ["add p49", "update a@rv-1g", "delete p0"]);
    assert.equal(h.informer.stats.pendingNotifications, 0);
  });

  it("logs a handler that throws or rejects and keeps delivering, to it and to other handlers", async () => {
    const other = recorder();
    const h = start({
      seed: (s) => createAll(s, ["a", "b"]),
      handler: {
        onAdd: (o) => {
          if (o.metadata.name === "a") throw new Error("boom");
        },
        onUpdate: async () => {
          throw new Error("async boom");
        },
      },
    });
    h.informer.addEventHandler(other);
    await h.informer.waitForSync();
    h.server.update("ns/b", (o) => {
      o.spec = { n: 2 };
    });
    await caughtUp(h);
    await h.informer.drained();
    assert.equal(h.informer.stats.handlerErrors, 2);
    assert.ok(
      h.logger.lines.some((l) => l.includes("Event handler for objects ns/a failed: boom")),
    );
    assert.ok(h.logger.lines.some((l) => l.includes("ns/b failed: async boom")));
    assert.deepEqual(show(other.log), ["add ns/a@rv-1", "add ns/b@rv-2", "update ns/b rv-2->rv-3"]);
  });

  it("replays the cache as adds to a handler registered after the first list", async () => {
    const h = start({ seed: (s) => createAll(s, ["a", "b"]) });
    await h.informer.waitForSync();
    const late = recorder();
    const reg = h.informer.addEventHandler(late);
    h.server.create(pvc("c"));
    await caughtUp(h);
    await reg.drained();
    assert.deepEqual(show(late.log), ["add ns/a@rv-1", "add ns/b@rv-2", "add ns/c@rv-3"]);
    reg.remove();
    h.server.create(pvc("d"));
    await caughtUp(h);
    await h.informer.drained();
    assert.equal(late.log.length, 3, "no notifications after remove()");
  });

  it("replays the cache ahead of later events, counts it as pending, and logs a replayed add that throws", async () => {
    const h = start({ seed: (s) => createAll(s, ["a", "b", "c"]) });
    await h.informer.waitForSync();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const seen: string[] = [];
    const reg = h.informer.addEventHandler({
      onAdd: (o) => {
        seen.push(`add ${o.metadata.name}`);
        if (o.metadata.name === "a") return gate;
        if (o.metadata.name === "b") throw new Error("replay boom");
      },
    });
    h.server.create(pvc("d"));
    await caughtUp(h);
    await until(() => seen.length === 1, "the first replayed add");
    assert.equal(h.informer.stats.pendingNotifications, 3, "b and c replayed, d queued");
    release();
    await reg.drained();
    assert.deepEqual(seen, ["add a", "add b", "add c", "add d"]);
    assert.equal(h.informer.stats.handlerErrors, 1);
    assert.ok(
      h.logger.lines.some((l) => l.includes("Event handler for objects ns/b failed: replay boom")),
    );
  });

  it("delivers the whole replay to a synchronous handler in one turn, without an await each", async () => {
    const names = Array.from({ length: 200 }, (_, i) => `p${i}`);
    const h = start({ seed: (s) => createAll(s, names) });
    await h.informer.waitForSync();
    const late = recorder();
    h.informer.addEventHandler(late);
    await Promise.resolve();
    await Promise.resolve();
    assert.equal(late.log.length, 200);
  });

  it("notifies a relist after 410 as deletes (final state unknown), updates and adds", async () => {
    const rec = recorder();
    const h = start({
      server: { goneAs: "event" },
      seed: (s) => createAll(s, ["a", "b", "c"]),
      handler: rec,
    });
    await watching(h);
    h.server.dropWatches(transportError());
    h.server.delete("ns/a");
    h.server.update("ns/b", (o) => {
      o.spec = { n: 1 };
    });
    h.server.create(pvc("d"));
    h.server.compact();
    await until(() => h.informer.stats.backoffs === 1, "back-off");
    await h.clock.advance(800);
    await caughtUp(h);
    await watching(h);
    await h.informer.drained();
    assert.deepEqual(show(rec.log).slice(3), [
      "delete ns/a@rv-1 (relist)",
      "update ns/b rv-2->rv-5",
      "add ns/d@rv-6",
    ]);
    const s = h.informer.stats;
    assert.equal(s.relists, 1);
    assert.equal(s.gone, 1);
    assert.equal(s.events.ERROR, 1);
    assert.equal(s.watchRestarts, 2);
  });

  it("counts malformed events, unknown types and objects the projection rejects, and keeps going", async () => {
    const rec = recorder();
    const h = start({
      seed: (s) => s.create(pvc("a")),
      handler: rec,
      informer: {
        project: (o) => {
          if (o.metadata.name === "poison") throw new Error("cannot project");
          return o;
        },
      },
    });
    await watching(h);
    h.server.sendRaw({ type: "ADDED", object: { metadata: { namespace: "ns" } } });
    h.server.sendRaw({ type: "ADDED" });
    h.server.sendRaw({ type: "UPSERTED", object: pvc("x") });
    h.server.create(pvc("poison"));
    h.server.create(pvc("b"));
    await caughtUp(h);
    await h.informer.drained();
    const s = h.informer.stats;
    assert.equal(s.malformed, 3);
    assert.equal(s.unknownType, 1);
    assert.equal(s.events.ADDED, 4, "every ADDED event is counted, usable or not");
    assert.deepEqual(h.informer.store.keys().sort(), ["ns/a", "ns/b"]);
    assert.deepEqual(show(rec.log), ["add ns/a@rv-1", "add ns/b@rv-3"]);
    assert.ok(h.logger.lines.some((l) => l.includes("cannot project")));
  });

  it("counts relists, watch restarts, back-offs and events by type", async () => {
    const h = start({ seed: (s) => s.create(pvc("a")) });
    await watching(h);
    h.server.create(pvc("b"));
    h.server.update("ns/b", (o) => {
      o.spec = { n: 1 };
    });
    h.server.delete("ns/a");
    h.server.bookmark();
    await caughtUp(h);
    h.server.failNextWatch(tooManyRequests(1));
    h.server.dropWatches(transportError());
    await until(() => h.informer.stats.backoffs === 1, "back-off");
    await h.clock.advance(800);
    await until(() => h.informer.stats.backoffs === 2, "429");
    await h.clock.advance(1600);
    await until(() => h.server.openWatches === 1, "watching");
    const s = h.informer.stats;
    assert.deepEqual(s.events, { ADDED: 1, MODIFIED: 1, DELETED: 1, BOOKMARK: 1, ERROR: 0 });
    assert.equal(s.lists, 1);
    assert.equal(s.relists, 0);
    assert.equal(s.watches, 3);
    assert.equal(s.watchRestarts, 2);
    assert.equal(s.errors, 2);
  });

  it("caches projections and serves custom indexes", async () => {
    type Claim = PersistentVolumeClaim;
    const server = new FakeWatchServer<Claim>();
    server.create({
      metadata: {
        name: "c1",
        namespace: "ns",
        managedFields: [{ manager: "kubectl" }],
        annotations: { "volume.kubernetes.io/selected-node": "n1" },
      },
      spec: { storageClassName: "fast" },
      status: { phase: "Pending", capacity: {} },
    });
    const clock = new FakeClock();
    const informer = new Informer<Claim, Claim>({
      client: server.client(),
      clock,
      random: () => 0,
      project: projectPersistentVolumeClaim,
      indexers: {
        node: (c) => {
          const n = c.metadata.annotations?.["volume.kubernetes.io/selected-node"];
          return n ? [n] : [];
        },
      },
    });
    const ctl = new AbortController();
    const done = informer.run(ctl.signal);
    try {
      await informer.waitForSync();
      const c = informer.store.get("ns/c1")!;
      assert.equal(c.metadata.managedFields, undefined);
      assert.deepEqual(c.status, { phase: "Pending" });
      assert.equal(informer.store.getByUid(c.metadata.uid!), c);
      assert.deepEqual(
        informer.store.byIndex("node", "n1").map((x) => x.metadata.name),
        ["c1"],
      );
    } finally {
      ctl.abort();
      await done;
    }
  });

  it("re-delivers every cached object as an update each resync period", async () => {
    const rec = recorder();
    const h = start({
      seed: (s) => createAll(s, ["a", "b"]),
      handler: rec,
      informer: { resyncPeriodMs: 900_000 },
    });
    await h.informer.waitForSync();
    await h.informer.drained();
    await h.clock.advance(900_000);
    await until(() => rec.log.length === 4, "resync");
    assert.deepEqual(show(rec.log).slice(2), ["update ns/a rv-1->rv-1", "update ns/b rv-2->rv-2"]);
  });

  it("reports sync, and stops cleanly dropping queued notifications", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let calls = 0;
    const h = start({
      seed: (s) => createAll(s, ["a", "b", "c"]),
      handler: {
        onAdd: async () => {
          calls++;
          await gate;
        },
      },
    });
    assert.equal(h.informer.hasSynced(), false);
    await h.informer.waitForSync();
    assert.equal(h.informer.hasSynced(), true);
    await until(() => calls === 1, "first add");
    await h.stop();
    release();
    await settle();
    assert.equal(calls, 1, "queued notifications are dropped on stop");
    assert.equal(h.server.openWatches, 0);
  });

  it("rejects waitForSync when the informer stops first, and runs only once", async () => {
    const h = start({ seed: (s) => s.failNextList(internalError()) });
    const waiting = assert.rejects(h.informer.waitForSync(), /stopped before/);
    await assert.rejects(h.informer.run(new AbortController().signal), /can run only once/);
    await h.stop();
    await waiting;
  });

  it("rejects waitForSync when its signal aborts first", async () => {
    const h = start({ seed: (s) => s.failNextList(internalError()) });
    const ctl = new AbortController();
    const waiting = assert.rejects(h.informer.waitForSync(ctl.signal));
    ctl.abort();
    await waiting;
  });
});

/** The cache equals `expected` (key → uid@rv) and replaying `log` over an empty map gives it too. */
function verify(
  informer: Informer<FakeObject, FakeObject>,
  log: Entry[],
  expected: Map<string, string>,
): void {
  const cached = new Map(
    informer.store
      .list()
      .map((o) => [objectKey(o), `${o.metadata.uid}@${o.metadata.resourceVersion}`]),
  );
  assert.deepEqual(cached, expected, "the store equals the server's state");

  const replay = new Map<string, string>();
  for (const e of log) {
    const cur = replay.get(e.key);
    switch (e.type) {
      case "add":
        assert.equal(cur, undefined, `add of ${e.key} that is already present`);
        replay.set(e.key, `${e.uid}@${e.rv}`);
        break;
      case "update":
        assert.equal(cur, `${e.oldUid}@${e.oldRv}`, `update of ${e.key} from a state not seen`);
        assert.equal(e.uid, e.oldUid, `update of ${e.key} across a re-creation`);
        assert.notEqual(e.rv, e.oldRv, `duplicate update of ${e.key}`);
        replay.set(e.key, `${e.uid}@${e.rv}`);
        break;
      case "delete":
        assert.ok(cur?.startsWith(`${e.uid}@`), `delete of ${e.key} that was not added`);
        replay.delete(e.key);
        break;
    }
  }
  assert.deepEqual(replay, expected, "replaying the notifications gives the server's state");
}

/**
 * Randomised model check: a seeded sequence of writes interleaved with faults; once it
 * quiesces, the cache must equal the server's state, and replaying the handler's notifications
 * over an empty map must give the same state, with every update and delete matching what the
 * handler was told before (no lost, duplicated or reordered events).
 */
async function modelCheck(seed: number): Promise<InformerStats> {
  const rand = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const server = new FakeWatchServer({ goneAs: rand() < 0.5 ? "event" : "http" });
  const names = ["a", "b", "c", "d", "e", "f"];
  for (const n of names) if (rand() < 0.5) server.create(pvc(n));
  const clock = new FakeClock();
  const informer = new Informer<FakeObject, FakeObject>({
    client: server.client(),
    clock,
    random: seededRandom(seed ^ 0x5bd1e995),
    pageSize: 2,
    // A third of the seeds sync by streaming lists, the others by paged ones.
    streamingList: seed % 3 === 0,
  });
  const rec = recorder();
  informer.addEventHandler(rec);
  const ctl = new AbortController();
  const done = informer.run(ctl.signal);
  const trace: string[] = [];
  try {
    await informer.waitForSync();
    for (let step = 0; step < 80; step++) {
      const r = rand();
      const name = pick(names);
      const key = `ns/${name}`;
      const exists = server.state().has(key);
      if (r < 0.5) {
        if (!exists) {
          server.create(pvc(name, step));
          trace.push(`create ${name}`);
        } else if (rand() < 0.6) {
          server.update(key, (o) => {
            o.spec = { n: step };
          });
          trace.push(`update ${name}`);
        } else {
          server.delete(key);
          trace.push(`delete ${name}`);
        }
      } else {
        const fault = pick([
          "drop",
          "end",
          "compact",
          "compact+drop",
          "410",
          "500",
          "429",
          "list500",
          "silent",
          "bookmark",
          "garbage",
          "time",
          "settle",
        ] as const);
        trace.push(fault);
        switch (fault) {
          case "drop":
            server.dropWatches(transportError());
            break;
          case "end":
            server.dropWatches();
            break;
          case "compact":
            server.compact();
            break;
          case "compact+drop":
            server.compact();
            server.dropWatches(transportError());
            break;
          case "410":
            server.failNextWatch(apiError(410, "Gone"));
            server.dropWatches(transportError());
            break;
          case "500":
            server.failNextWatch(internalError());
            break;
          case "429":
            server.failNextWatch(tooManyRequests(1 + Math.floor(rand() * 5)));
            break;
          case "list500":
            server.failNextList(internalError());
            break;
          case "silent":
            server.silenceNextWatches(1);
            break;
          case "bookmark":
            server.bookmark();
            break;
          case "garbage":
            server.sendRaw(pick([{ type: "ADDED", object: {} }, { type: "NOPE" }, null]));
            break;
          case "time":
            await clock.advance(Math.floor(rand() * 60_000));
            break;
          case "settle":
            await settle(1 + Math.floor(rand() * 3));
            break;
        }
      }
      if (rand() < 0.3) await settle(1);
    }
    // Quiesce: let time pass (back-offs, watchdogs) until the informer has caught up. (A seed
    // can leave a dozen silent watches queued, each ended by the watchdog after 5-10 minutes.)
    const target = server.resourceVersion;
    for (let i = 0; informer.lastSyncResourceVersion !== target; i++) {
      if (i > 1000) throw new Error(`did not converge to ${target}`);
      await clock.advance(10_000);
      await settle(2);
    }
    await informer.drained();

    const expected = new Map(
      [...server.state()].map(([k, o]) => [k, `${o.metadata.uid}@${o.metadata.resourceVersion}`]),
    );
    verify(informer, rec.log, expected);
    return informer.stats;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(`model check failed for seed ${seed}: ${msg}\ntrace: ${trace.join(", ")}`, {
      cause: e,
    });
  } finally {
    ctl.abort();
    await done;
  }
}

describe("Informer model check (in-memory server)", () => {
  it("converges to the server's state with a consistent event log under random writes and faults (50 seeds)", async () => {
    const total = {
      relists: 0,
      watchRestarts: 0,
      watchdogTimeouts: 0,
      expiredContinues: 0,
      streamedLists: 0,
      gone: 0,
    };
    for (let seed = 1; seed <= 50; seed++) {
      const s = await modelCheck(seed);
      for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += s[k];
    }
    // The faults were really exercised.
    for (const [k, v] of Object.entries(total)) assert.ok(v > 0, `no ${k} in 50 seeds`);
  });
});

/** Event-loop turns: lets loopback HTTP make progress between fake-clock steps. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

/**
 * The same model check over real HTTP: the client and the test API server (both on the fake
 * clock), with the server's own faults: abrupt and graceful drops, compaction, 410 as an HTTP
 * answer and in-band, 500, 429, list failures, latency (a hanging watch request the watchdog
 * ends), bookmarks and the server's watch timeouts.
 */
async function httpModelCheck(seed: number, steps: number): Promise<InformerStats> {
  const rand = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const clock = new FakeClock();
  const backend = await startHttpBackend(clock);
  const { api } = backend;
  const res = resources.persistentVolumeClaims;
  const names = ["a", "b", "c", "d", "e", "f"];
  const put = (name: string, n: number) =>
    api.put({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name, namespace: "default" },
      spec: { resources: { requests: { storage: `${n + 1}Gi` } } },
    } as PersistentVolumeClaim);
  for (const n of names) if (rand() < 0.5) put(n, 0);
  const informer = new Informer<FakeObject, FakeObject>({
    client: backend.pvcs as unknown as Pick<ResourceClient<FakeObject>, "list" | "watch">,
    clock,
    random: seededRandom(seed ^ 0x5bd1e995),
    pageSize: 2,
    // A third of the seeds sync by streaming lists, the others by paged ones.
    streamingList: seed % 3 === 0,
  });
  const rec = recorder();
  informer.addEventHandler(rec);
  const ctl = new AbortController();
  const done = informer.run(ctl.signal);
  const trace: string[] = [];
  const watch = { verb: "watch", resource: res } as const;
  try {
    const synced = informer.waitForSync(AbortSignal.timeout(10_000));
    while (!informer.hasSynced()) await Promise.race([synced, turns(5)]);
    for (let step = 0; step < steps; step++) {
      const r = rand();
      const name = pick(names);
      const cur = api.get(res, name, "default");
      if (r < 0.5) {
        if (!cur) {
          put(name, step);
          trace.push(`create ${name}`);
        } else if (rand() < 0.6) {
          put(name, step);
          trace.push(`update ${name}`);
        } else {
          api.remove(res, name, "default");
          trace.push(`delete ${name}`);
        }
      } else {
        const fault = pick([
          "drop",
          "end",
          "compact",
          "compact+drop",
          "410",
          "410-in-band",
          "500",
          "429",
          "list500",
          "latency",
          "bookmark",
          "time",
        ] as const);
        trace.push(fault);
        switch (fault) {
          case "drop":
            api.dropWatches();
            break;
          case "end":
            api.dropWatches({ graceful: true });
            break;
          case "compact":
            api.compact();
            break;
          case "compact+drop":
            api.compact();
            api.dropWatches();
            break;
          case "410":
            api.failNext({ ...watch, status: 410 });
            api.dropWatches();
            break;
          case "410-in-band":
            api.failNext({ ...watch, status: 410, inBand: true });
            api.dropWatches({ graceful: true });
            break;
          case "500":
            api.failNext({ ...watch, status: 500 });
            break;
          case "429":
            api.failNext({ ...watch, status: 429, retryAfterSeconds: 1 + Math.floor(rand() * 5) });
            break;
          case "list500":
            api.failNext({ verb: "list", resource: res, status: 500 });
            break;
          case "latency":
            // Requests sent now hang for longer than any watch timeout: the watchdog ends them.
            api.latency(700_000);
            // Enough turns for a new connection to be opened and the request to arrive (a watch
            // has a connection of its own, which takes Deno a few more turns than Node and Bun).
            await turns(30);
            api.latency(0);
            break;
          case "bookmark":
            api.bookmark();
            break;
          case "time":
            await clock.advance(Math.floor(rand() * 60_000));
            break;
        }
      }
      await turns(Math.floor(rand() * 4));
    }
    api.clearFaults();
    // Quiesce: advance time (back-offs, watchdogs, server timeouts) until caught up.
    const target = api.resourceVersion;
    const reached = informer.waitForResourceVersion(target, AbortSignal.timeout(15_000));
    let ok = false;
    reached.then(
      () => {
        ok = true;
      },
      () => {},
    );
    while (!ok) {
      await Promise.race([reached, turns(20)]);
      if (!ok) await clock.advance(5_000);
    }
    await informer.drained();
    const expected = new Map(
      api
        .objects(res)
        .map((o) => [objectKey(o), `${o.metadata.uid}@${o.metadata.resourceVersion}`]),
    );
    verify(informer, rec.log, expected);
    return informer.stats;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(
      `HTTP model check failed for seed ${seed}: ${msg}\ntrace: ${trace.join(", ")}`,
      {
        cause: e,
      },
    );
  } finally {
    ctl.abort();
    await done;
    await backend.close();
  }
}

describe("Informer model check (HTTP client and test API server)", () => {
  it("converges to the server's state with a consistent event log under random writes and faults (50 seeds)", async () => {
    const total = {
      relists: 0,
      streamedLists: 0,
      watchRestarts: 0,
      watchdogTimeouts: 0,
      gone: 0,
      backoffs: 0,
    };
    for (let seed = 1; seed <= 50; seed++) {
      const s = await httpModelCheck(seed, 40);
      for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += s[k];
    }
    for (const [k, v] of Object.entries(total)) assert.ok(v > 0, `no ${k} in 50 seeds`);
  });
});
