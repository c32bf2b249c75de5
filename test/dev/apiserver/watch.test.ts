import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { type ApiServer, startApiServer } from "../../../src/dev/apiserver/mod.ts";
import type { KubeObject, Status } from "../../../src/kube/objects.ts";
import { FakeClock } from "../../support/fake-clock.ts";
import { call, openWatch, pvc, pvcs, type WatchReader, within } from "./support.ts";

describe("startApiServer() watch", () => {
  let api: ApiServer;
  let clock: FakeClock;
  const readers: WatchReader[] = [];

  const watch = async (query: string, headers: Record<string, string> = {}) => {
    const w = await openWatch(api.url, `${pvcs}?watch=true${query}`, headers);
    readers.push(w);
    return w;
  };
  const create = async (name: string, labels?: Record<string, string>) => {
    const body = pvc(name);
    if (labels) body.metadata.labels = labels;
    const r = await call(api.url, "POST", pvcs, body);
    assert.equal(r.status, 201);
    return r.body;
  };
  const label = async (name: string, labels: Record<string, string>) => {
    const r = await call(
      api.url,
      "PATCH",
      `${pvcs}/${name}`,
      { metadata: { labels } },
      {
        "content-type": "application/merge-patch+json",
      },
    );
    assert.equal(r.status, 200);
    return r.body;
  };

  beforeEach(async () => {
    clock = new FakeClock();
    api = await startApiServer({ clock, historyLimit: 100 });
  });
  afterEach(async () => {
    for (const r of readers.splice(0)) r.close();
    await api.close();
  });

  it("starts with synthetic ADDED events for every object when resourceVersion is unset", async () => {
    await create("a");
    await create("b");
    const w = await watch("");
    assert.equal(w.status, 200);
    assert.equal(w.headers.get("content-type"), "application/json");
    const first = await w.next();
    const second = await w.next();
    assert.deepEqual(
      [first.type, first.object.metadata.name, second.type, second.object.metadata.name],
      ["ADDED", "a", "ADDED", "b"],
    );
    await create("c");
    const third = await w.next();
    assert.equal(third.type, "ADDED");
    assert.equal(third.object.metadata.name, "c");
  });

  it("treats resourceVersion 0 like unset: initial ADDED events", async () => {
    await create("zero");
    const w = await watch("&resourceVersion=0");
    const ev = await w.next();
    assert.equal(ev.type, "ADDED");
    assert.equal(ev.object.metadata.name, "zero");
  });

  it("replays the changes after a resourceVersion, then streams live ones", async () => {
    const a = await create("a");
    const rv = a.metadata.resourceVersion!;
    const labelled = await label("a", { x: "1" });
    await create("b");
    await call(api.url, "DELETE", `${pvcs}/b`);
    const w = await watch(`&resourceVersion=${rv}`);
    const events = [await w.next(), await w.next(), await w.next()];
    assert.deepEqual(
      events.map((e) => `${e.type} ${e.object.metadata.name}`),
      ["MODIFIED a", "ADDED b", "DELETED b"],
    );
    assert.equal(events[0]!.object.metadata.resourceVersion, labelled.metadata.resourceVersion);
    assert.ok(
      Number(events[2]!.object.metadata.resourceVersion) >
        Number(events[1]!.object.metadata.resourceVersion),
    );
    await label("a", { x: "2" });
    const live = await w.next();
    assert.equal(live.type, "MODIFIED");
    assert.deepEqual(live.object.metadata.labels, { x: "2" });
  });

  it("sends an in-band ERROR with a 410 Expired Status for a compacted resourceVersion", async () => {
    const a = await create("a");
    await label("a", { x: "1" });
    api.compact();
    const w = await watch(`&resourceVersion=${a.metadata.resourceVersion}`);
    assert.equal(w.status, 200);
    const ev = await w.next();
    assert.equal(ev.type, "ERROR");
    const status = ev.object as unknown as Status;
    assert.equal(status.kind, "Status");
    assert.equal(status.status, "Failure");
    assert.equal(status.code, 410);
    assert.equal(status.reason, "Expired");
    assert.match(status.message!, /^too old resource version: \d+ \(\d+\)$/);
    assert.equal(await w.ended(), "end");
  });

  it("still serves a watch from the latest resourceVersion after compaction", async () => {
    await create("a");
    api.compact();
    const w = await watch(`&resourceVersion=${api.resourceVersion}`);
    await create("b");
    const ev = await w.next();
    assert.equal(ev.type, "ADDED");
    assert.equal(ev.object.metadata.name, "b");
  });

  it("answers 410 for a resourceVersion that fell out of a bounded history", async () => {
    await api.close();
    api = await startApiServer({ clock, historyLimit: 2 });
    const a = await create("a");
    await label("a", { n: "1" });
    await label("a", { n: "2" });
    await label("a", { n: "3" });
    const w = await watch(`&resourceVersion=${a.metadata.resourceVersion}`);
    const ev = await w.next();
    assert.equal(ev.type, "ERROR");
    assert.equal((ev.object as unknown as Status).code, 410);
  });

  it("sends bookmarks periodically and on demand only when allowed", async () => {
    await api.close();
    api = await startApiServer({ clock, bookmarkIntervalMs: 1000 });
    const with_ = await watch(`&resourceVersion=${api.resourceVersion}&allowWatchBookmarks=true`);
    const without = await watch(`&resourceVersion=${api.resourceVersion}`);
    await create("a");
    assert.equal((await with_.next()).type, "ADDED");
    assert.equal((await without.next()).type, "ADDED");
    await clock.advance(1000);
    const periodic = await with_.next();
    assert.equal(periodic.type, "BOOKMARK");
    assert.deepEqual(periodic.object, {
      kind: "PersistentVolumeClaim",
      apiVersion: "v1",
      metadata: {
        resourceVersion: api.resourceVersion,
        creationTimestamp: null as unknown as string,
      },
    });
    assert.equal(api.bookmark(), 1);
    assert.equal((await with_.next()).type, "BOOKMARK");
    await create("b");
    const next = await without.next();
    assert.equal(next.type, "ADDED", "the watch without bookmarks sees no BOOKMARK");
  });

  it("ends the initial events of sendInitialEvents with an annotated bookmark", async () => {
    await create("a");
    const w = await watch(
      "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
    );
    assert.equal((await w.next()).type, "ADDED");
    const bm = await w.next();
    assert.equal(bm.type, "BOOKMARK");
    assert.deepEqual(bm.object.metadata.annotations, { "k8s.io/initial-events-end": "true" });
    assert.equal(bm.object.metadata.resourceVersion, api.resourceVersion);
  });

  it("rejects sendInitialEvents without resourceVersionMatch=NotOlderThan", async () => {
    const r = await call(api.url, "GET", `${pvcs}?watch=1&sendInitialEvents=true`);
    assert.equal(r.status, 422);
  });

  it("sends a last bookmark as the watch times out, when bookmarks are allowed", async () => {
    const w = await watch(
      `&resourceVersion=${api.resourceVersion}&timeoutSeconds=10&allowWatchBookmarks=true`,
    );
    await create("a");
    assert.equal((await w.next()).type, "ADDED");
    await clock.advance(10_000);
    const last = await w.next();
    assert.equal(last.type, "BOOKMARK");
    assert.equal(last.object.metadata.resourceVersion, api.resourceVersion);
    assert.equal(await w.ended(), "end");
  });

  it("ends the stream after timeoutSeconds on the injected clock", async () => {
    const w = await watch(`&resourceVersion=${api.resourceVersion}&timeoutSeconds=30`);
    await clock.advance(29_000);
    await create("a");
    assert.equal((await w.next()).type, "ADDED");
    await clock.advance(1000);
    assert.equal(await w.ended(), "end");
    assert.equal(api.openWatches, 0);
  });

  it("filters by label selector, sending ADDED and DELETED as objects enter and leave it", async () => {
    await create("a", { app: "x" });
    await create("b", { app: "y" });
    const w = await watch("&labelSelector=app%3Dx");
    const initial = await w.next();
    assert.equal(initial.object.metadata.name, "a");
    const moved = await label("b", { app: "x" });
    const entered = await w.next();
    assert.deepEqual([entered.type, entered.object.metadata.name], ["ADDED", "b"]);
    await label("a", { app: "z" });
    const left = await w.next();
    assert.deepEqual([left.type, left.object.metadata.name], ["DELETED", "a"]);
    assert.deepEqual(
      left.object.metadata.labels,
      { app: "x" },
      "DELETED carries the last matching state",
    );
    assert.ok(
      Number(left.object.metadata.resourceVersion) > Number(moved.metadata.resourceVersion),
    );
  });

  it("filters by field selector on metadata.name", async () => {
    await create("a");
    const w = await watch(
      `&fieldSelector=metadata.name%3Db&resourceVersion=${api.resourceVersion}`,
    );
    await create("a2");
    await create("b");
    const ev = await w.next();
    assert.equal(ev.object.metadata.name, "b");
  });

  it("answers 400 to an unsupported field selector", async () => {
    const r = await call(api.url, "GET", `${pvcs}?watch=1&fieldSelector=spec.volumeName%3Dx`);
    assert.equal(r.status, 400);
    assert.equal(
      (r.body as Status).message,
      '"spec.volumeName" is not a known field selector: only "metadata.name", "metadata.namespace"',
    );
  });

  it("watches one namespace only when the path names it", async () => {
    await call(api.url, "POST", "/api/v1/namespaces", { metadata: { name: "other" } });
    const w = await watch(`&resourceVersion=${api.resourceVersion}`);
    await call(
      api.url,
      "POST",
      "/api/v1/namespaces/other/persistentvolumeclaims",
      pvc("elsewhere"),
    );
    await create("here");
    const ev = await w.next();
    assert.equal(ev.object.metadata.name, "here");
  });

  it("dropWatches() cuts every open stream abruptly, or ends it cleanly when asked", async () => {
    const a = await watch(`&resourceVersion=${api.resourceVersion}`);
    const b = await watch(`&resourceVersion=${api.resourceVersion}`);
    assert.equal(api.openWatches, 2);
    assert.equal(api.dropWatches(), 2);
    assert.equal(await a.ended(), "error");
    assert.equal(await b.ended(), "error");
    assert.equal(api.openWatches, 0);
    const c = await watch(`&resourceVersion=${api.resourceVersion}`);
    assert.equal(api.dropWatches({ graceful: true }), 1);
    assert.equal(await c.ended(), "end");
  });

  it("forgets a watch whose client went away", async () => {
    const w = await watch(`&resourceVersion=${api.resourceVersion}`);
    assert.equal(api.openWatches, 1);
    w.close();
    await within(api.waitForWatches(0));
    await create("after-close");
    assert.equal(api.openWatches, 0);
  });

  it("streams Table rows to kubectl get -w, with column definitions only in the first event", async () => {
    await create("a");
    const w = await watch("", {
      accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    });
    const first = await w.next();
    const table = first.object as unknown as {
      kind: string;
      columnDefinitions?: unknown[];
      rows: { cells: unknown[]; object: KubeObject }[];
    };
    assert.equal(table.kind, "Table");
    assert.ok((table.columnDefinitions ?? []).length > 0);
    assert.equal(table.rows[0]!.cells[0], "a");
    assert.equal(table.rows[0]!.object.kind, "PartialObjectMetadata");
    await create("b");
    const second = (await w.next()).object as unknown as {
      columnDefinitions?: unknown[];
      rows: { cells: unknown[] }[];
    };
    assert.equal(second.columnDefinitions, undefined);
    assert.equal(second.rows[0]!.cells[0], "b");
  });
});

describe("ApiServer.close()", () => {
  it("ends open watches, frees the port and leaves no timer behind", async () => {
    const clock = new FakeClock();
    const api = await startApiServer({ clock, bookmarkIntervalMs: 1000 });
    const w = await openWatch(
      api.url,
      `${pvcs}?watch=1&allowWatchBookmarks=true&timeoutSeconds=600`,
    );
    assert.ok(clock.pending >= 2, "the watch timeout and bookmark timers are pending");
    await api.close();
    assert.equal(await w.ended(), "end");
    assert.equal(clock.pending, 0);
    assert.equal(api.openWatches, 0);
    await assert.rejects(fetch(`${api.url}/version`));
  });
});
