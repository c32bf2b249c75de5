import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import {
  createSnapshotSweepController,
  pendingSnapshotSources,
  type SnapshotSweepOptions,
  snapshotSourceKey,
} from "../../src/controller/snapshot-sweep.ts";
import type { KubeApi } from "../../src/kube/api.ts";
import { noAuth } from "../../src/kube/auth.ts";
import { createKubeApi } from "../../src/kube/client.ts";
import { Informer } from "../../src/kube/informer.ts";
import type {
  KubeObject,
  PersistentVolumeClaim,
  VolumeSnapshot,
  VolumeSnapshotContent,
} from "../../src/kube/objects.ts";
import { projectPersistentVolumeClaim } from "../../src/kube/projections.ts";
import { resources } from "../../src/kube/resources.ts";
import { KubeTransport } from "../../src/kube/transport.ts";
import { SNAPSHOT_PROTECTION_FINALIZER } from "../../src/provision/data-source.ts";
import { memoryLogger, nullLogger } from "../../src/util/log.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { within } from "../support/wait.ts";

const GROUP = "snapshot.storage.k8s.io";
const OTHER_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection";

function snapshot(
  name: string,
  opts: { namespace?: string; finalizers?: string[]; content?: string } = {},
): VolumeSnapshot {
  const s: VolumeSnapshot = {
    apiVersion: `${GROUP}/v1`,
    kind: "VolumeSnapshot",
    metadata: {
      name,
      namespace: opts.namespace ?? "default",
      finalizers: opts.finalizers ?? [SNAPSHOT_PROTECTION_FINALIZER],
    },
    spec: { source: { persistentVolumeClaimName: "origin" } },
  };
  if (opts.content) s.status = { boundVolumeSnapshotContentName: opts.content, readyToUse: true };
  return s;
}

function content(name: string, driver: string): VolumeSnapshotContent {
  return {
    apiVersion: `${GROUP}/v1`,
    kind: "VolumeSnapshotContent",
    metadata: { name },
    spec: {
      volumeSnapshotRef: { kind: "VolumeSnapshot", namespace: "default", name },
      driver,
      deletionPolicy: "Delete",
      source: { volumeHandle: "vol-1" },
    },
  };
}

function restore(
  name: string,
  opts: {
    namespace?: string;
    phase?: "Pending" | "Bound" | "";
    dataSource?: PersistentVolumeClaim["spec"]["dataSource"];
    dataSourceRef?: PersistentVolumeClaim["spec"]["dataSourceRef"];
  },
): PersistentVolumeClaim {
  const c: PersistentVolumeClaim = {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name, namespace: opts.namespace ?? "default" },
    spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
  };
  if (opts.phase !== "") c.status = { phase: opts.phase ?? "Pending" };
  if (opts.dataSource) c.spec.dataSource = opts.dataSource;
  if (opts.dataSourceRef) c.spec.dataSourceRef = opts.dataSourceRef;
  return c;
}

const snapRef = (name: string) => ({ kind: "VolumeSnapshot", name, apiGroup: GROUP });

describe("snapshotSourceKey()", () => {
  it("names the snapshot of dataSource or dataSourceRef, cross-namespace included", () => {
    assert.equal(snapshotSourceKey(restore("r", { dataSource: snapRef("s") })), "default/s");
    assert.equal(
      snapshotSourceKey(
        restore("r", { namespace: "a", dataSourceRef: { ...snapRef("s"), namespace: "b" } }),
      ),
      "b/s",
    );
    assert.equal(
      snapshotSourceKey(restore("r", { dataSource: { kind: "VolumeSnapshot", name: "s" } })),
      "default/s",
      "a reference without apiGroup counts (keeping a finalizer is the safe mistake)",
    );
  });

  it("ignores clones and other groups' VolumeSnapshot kinds", () => {
    assert.equal(
      snapshotSourceKey(restore("r", { dataSource: { kind: "PersistentVolumeClaim", name: "s" } })),
      undefined,
    );
    assert.equal(
      snapshotSourceKey(
        restore("r", { dataSourceRef: { kind: "VolumeSnapshot", name: "s", apiGroup: "x.io" } }),
      ),
      undefined,
    );
  });
});

describe("pendingSnapshotSources()", () => {
  it("collects the snapshots of claims that are Pending or have no phase yet", () => {
    const set = pendingSnapshotSources([
      restore("a", { dataSource: snapRef("s1") }),
      restore("b", { phase: "", dataSourceRef: snapRef("s2") }),
      restore("c", { phase: "Bound", dataSource: snapRef("s3") }),
    ]);
    assert.deepEqual([...set].sort(), ["default/s1", "default/s2"]);
  });
});

describe("createSnapshotSweepController()", () => {
  let server: ApiServer;
  let api: KubeApi;
  let informer: Informer<PersistentVolumeClaim>;
  let stop: AbortController;
  let running: Promise<void>[] = [];

  async function start(objects: KubeObject[]): Promise<void> {
    server = await startApiServer({
      clock: new FakeClock(),
      bookmarkIntervalMs: 0,
      namespaces: ["default", "other"],
      objects,
    });
    const transport = new KubeTransport({
      connection: { server: server.url, tls: {}, auth: noAuth, source: "test" },
      version: "test",
      clock: new FakeClock(),
      random: () => 0,
      maxRetries: 0,
      idempotentRetries: 0,
    });
    api = createKubeApi(transport);
    stop = new AbortController();
    informer = new Informer<PersistentVolumeClaim>({
      client: api.resource(resources.persistentVolumeClaims),
      clock: new FakeClock(),
      random: () => 0,
      project: projectPersistentVolumeClaim,
    });
    running = [informer.run(stop.signal)];
    await within(informer.waitForSync());
  }

  function controller(o: Partial<SnapshotSweepOptions> = {}) {
    return createSnapshotSweepController({
      api,
      claims: informer,
      clock: new FakeClock(),
      logger: nullLogger,
      intervalMs: 300_000,
      ...o,
    });
  }

  afterEach(async () => {
    stop.abort();
    await Promise.all(running);
    await server.close();
  });

  const finalizersOf = (name: string, namespace = "default") =>
    server.get(resources.volumeSnapshots, name, namespace)?.metadata.finalizers;
  const snapshotUpdates = () =>
    server.writes.count({ verb: "update", resource: resources.volumeSnapshots });

  it("removes the finalizer from snapshots no pending claim restores from, on the second sighting", async () => {
    await start([
      snapshot("in-use"),
      snapshot("cross-ns"),
      snapshot("by-ref", { namespace: "other" }),
      snapshot("orphan", { finalizers: [OTHER_FINALIZER, SNAPSHOT_PROTECTION_FINALIZER] }),
      snapshot("restored"),
      snapshot("unprotected", { finalizers: [OTHER_FINALIZER] }),
      restore("r1", { dataSource: snapRef("in-use") }),
      restore("r2", {
        namespace: "other",
        dataSourceRef: { ...snapRef("cross-ns"), namespace: "default" },
      }),
      restore("r3", { namespace: "other", phase: "", dataSourceRef: snapRef("by-ref") }),
      restore("r4", { phase: "Bound", dataSource: snapRef("restored") }),
      // Restores from a snapshot named `orphan` in another namespace: not this one.
      restore("r5", { namespace: "other", dataSource: snapRef("orphan") }),
    ]);
    const sweep = controller();

    const first = await sweep.sweep();
    assert.deepEqual(first.orphaned.sort(), ["default/orphan", "default/restored"]);
    assert.deepEqual(first.released, [], "the first sighting only marks the suspects");
    assert.equal(snapshotUpdates(), 0);

    const second = await sweep.sweep();
    assert.deepEqual(second.released.sort(), ["default/orphan", "default/restored"]);
    assert.deepEqual(finalizersOf("orphan"), [OTHER_FINALIZER]);
    // An emptied list is left out of the object, as kube-apiserver does.
    assert.equal(finalizersOf("restored"), undefined);
    for (const [name, ns] of [
      ["in-use", "default"],
      ["cross-ns", "default"],
      ["by-ref", "other"],
    ] as const) {
      assert.deepEqual(finalizersOf(name, ns), [SNAPSHOT_PROTECTION_FINALIZER], name);
    }
    assert.deepEqual(finalizersOf("unprotected"), [OTHER_FINALIZER]);
    assert.equal(snapshotUpdates(), 2);
    // The rest of the snapshot survives the update.
    const orphan = server.get(resources.volumeSnapshots, "orphan", "default")!;
    assert.equal(orphan.spec.source.persistentVolumeClaimName, "origin");

    const third = await sweep.sweep();
    assert.deepEqual(third, { orphaned: [], released: [] });
  });

  it("keeps a snapshot a restore started to use between two sweeps", async () => {
    await start([snapshot("late")]);
    const sweep = controller();
    assert.deepEqual((await sweep.sweep()).orphaned, ["default/late"]);
    server.put(restore("r", { dataSource: snapRef("late") }));
    await within(informer.waitForResourceVersion(server.resourceVersion));
    assert.deepEqual(await sweep.sweep(), { orphaned: [], released: [] });
    // Once the restore is done, it takes two more sweeps.
    const live = server.get(resources.persistentVolumeClaims, "r", "default")!;
    server.put({ ...live, status: { phase: "Bound" } });
    await within(informer.waitForResourceVersion(server.resourceVersion));
    assert.deepEqual((await sweep.sweep()).released, []);
    assert.deepEqual((await sweep.sweep()).released, ["default/late"]);
  });

  it("reads every page of a paginated list", async () => {
    const names = Array.from({ length: 7 }, (_, i) => `s${i}`);
    await start(names.map((n) => snapshot(n)));
    const sweep = controller({ pageSize: 2 });
    await sweep.sweep();
    assert.deepEqual(
      (await sweep.sweep()).released.sort(),
      names.map((n) => `default/${n}`),
    );
    assert.equal(server.requests.count({ verb: "list", resource: resources.volumeSnapshots }), 8);
  });

  it("leaves snapshots whose content belongs to another driver to that driver", async () => {
    await start([
      snapshot("theirs", { content: "content-theirs" }),
      snapshot("ours", { content: "content-ours" }),
      snapshot("unbound"),
      content("content-theirs", "other.csi.example.com"),
      content("content-ours", "ours.csi.example.com"),
    ]);
    const sweep = controller({ driverName: "ours.csi.example.com" });
    await sweep.sweep();
    assert.deepEqual((await sweep.sweep()).released.sort(), ["default/ours", "default/unbound"]);
    assert.deepEqual(finalizersOf("theirs"), [SNAPSHOT_PROTECTION_FINALIZER]);
  });

  it("tries a snapshot again at the next sweep when its update conflicts", async () => {
    await start([snapshot("busy")]);
    const sweep = controller();
    await sweep.sweep();
    server.failNext({ verb: "update", resource: "volumesnapshots", status: 409 });
    assert.deepEqual((await sweep.sweep()).released, []);
    assert.deepEqual(finalizersOf("busy"), [SNAPSHOT_PROTECTION_FINALIZER]);
    assert.deepEqual((await sweep.sweep()).released, ["default/busy"]);
  });

  it("sweeps at start and then every interval until the signal aborts", async () => {
    await start([snapshot("orphan")]);
    const clock = new FakeClock();
    const sweep = controller({ clock, intervalMs: 60_000 });
    running.push(sweep.run(stop.signal));
    const lists = () =>
      server.requests.count({ verb: "list", resource: resources.volumeSnapshots });
    await within(clock.waitForSleepers(1), 5000, "the first sweep");
    assert.equal(lists(), 1);
    assert.deepEqual(finalizersOf("orphan"), [SNAPSHOT_PROTECTION_FINALIZER]);
    await clock.advance(60_000);
    await within(
      server.waitFor(() => (finalizersOf("orphan") ?? []).length === 0),
      5000,
      "the finalizer to go",
    );
    await within(clock.waitForSleepers(1), 5000, "the second sweep");
    assert.equal(lists(), 2);
  });

  it("does nothing when the interval is 0", async () => {
    await start([snapshot("orphan")]);
    await controller({ intervalMs: 0 }).run(stop.signal);
    assert.equal(server.requests.count({ resource: resources.volumeSnapshots }), 0);
  });

  for (const [status, words] of [
    [403, /forbidden/],
    [404, /not served/],
  ] as const) {
    it(`logs once and stops when listing VolumeSnapshots answers ${status}`, async () => {
      await start([snapshot("orphan")]);
      const clock = new FakeClock();
      const logger = memoryLogger(clock, 0);
      server.failNext({ verb: "list", resource: "volumesnapshots", status });
      await within(controller({ clock, logger, intervalMs: 1000 }).run(stop.signal));
      assert.equal(logger.lines.length, 1);
      assert.match(logger.lines[0]!, words);
      assert.equal(clock.pending, 0, "no further sweep is scheduled");
      assert.deepEqual(finalizersOf("orphan"), [SNAPSHOT_PROTECTION_FINALIZER]);
    });
  }

  it("keeps sweeping after a failed list", async () => {
    await start([snapshot("orphan")]);
    const clock = new FakeClock();
    const logger = memoryLogger(clock, 0);
    server.failNext({ verb: "list", resource: "volumesnapshots", status: 500 });
    running.push(controller({ clock, logger, intervalMs: 1000 }).run(stop.signal));
    await within(clock.waitForSleepers(1), 5000, "the failed sweep");
    assert.match(logger.lines.join("\n"), /sweep failed/);
    await clock.advance(1000);
    await within(clock.waitForSleepers(1), 5000, "the first good sweep");
    await clock.advance(1000);
    await within(
      server.waitFor(() => (finalizersOf("orphan") ?? []).length === 0),
      5000,
      "the finalizer to go",
    );
  });
});
