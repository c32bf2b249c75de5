import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import {
  byCloneSource,
  CLONE_SOURCE_INDEX,
  cloneSourceKey,
  createCloningProtectionController,
} from "../../src/controller/clone-protection.ts";
import type { WorkQueueMetrics } from "../../src/controller/workqueue.ts";
import type { KubeApi } from "../../src/kube/api.ts";
import { noAuth } from "../../src/kube/auth.ts";
import { createKubeApi } from "../../src/kube/client.ts";
import { Informer } from "../../src/kube/informer.ts";
import type { PersistentVolumeClaim } from "../../src/kube/objects.ts";
import { byNamespace, projectPersistentVolumeClaim } from "../../src/kube/projections.ts";
import { resources } from "../../src/kube/resources.ts";
import { KubeTransport } from "../../src/kube/transport.ts";
import { CLONE_PROTECTION_FINALIZER } from "../../src/provision/data-source.ts";
import { nullLogger } from "../../src/util/log.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { within } from "../support/wait.ts";

const OTHER_FINALIZER = "kubernetes.io/pvc-protection";

function claim(
  name: string,
  opts: {
    namespace?: string;
    phase?: "Pending" | "Bound";
    finalizers?: string[];
    dataSource?: PersistentVolumeClaim["spec"]["dataSource"];
    dataSourceRef?: PersistentVolumeClaim["spec"]["dataSourceRef"];
  } = {},
): PersistentVolumeClaim {
  const c: PersistentVolumeClaim = {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name, namespace: opts.namespace ?? "default" },
    spec: {
      accessModes: ["ReadWriteOnce"],
      storageClassName: "fast",
      resources: { requests: { storage: "1Gi" } },
    },
    status: { phase: opts.phase ?? "Bound" },
  };
  if (opts.finalizers) c.metadata.finalizers = opts.finalizers;
  if (opts.dataSource) c.spec.dataSource = opts.dataSource;
  if (opts.dataSourceRef) c.spec.dataSourceRef = opts.dataSourceRef;
  return c;
}

const source = () =>
  claim("src", { finalizers: [OTHER_FINALIZER, CLONE_PROTECTION_FINALIZER], phase: "Bound" });
const pvcRef = (name: string) => ({ kind: "PersistentVolumeClaim", name });

describe("cloneSourceKey()", () => {
  it("names the source claim of dataSource or dataSourceRef, cross-namespace included", () => {
    assert.equal(cloneSourceKey(claim("c", { dataSource: pvcRef("a") })), "default/a");
    assert.equal(cloneSourceKey(claim("c", { namespace: "x", dataSourceRef: pvcRef("a") })), "x/a");
    assert.equal(
      cloneSourceKey(
        claim("c", { namespace: "x", dataSourceRef: { ...pvcRef("a"), namespace: "y" } }),
      ),
      "y/a",
    );
    assert.deepEqual(byCloneSource(claim("c", { dataSource: pvcRef("a") })), ["default/a"]);
  });

  it("ignores snapshots, populators and claims without a data source", () => {
    const snapshot = { kind: "VolumeSnapshot", name: "a", apiGroup: "snapshot.storage.k8s.io" };
    const populator = { kind: "PersistentVolumeClaim", name: "a", apiGroup: "example.com" };
    assert.equal(cloneSourceKey(claim("c", { dataSource: snapshot })), undefined);
    assert.equal(cloneSourceKey(claim("c", { dataSourceRef: populator })), undefined);
    assert.equal(cloneSourceKey(claim("c")), undefined);
    assert.deepEqual(byCloneSource(claim("c")), []);
  });
});

for (const indexed of [true, false]) {
  describe(`createCloningProtectionController() ${indexed ? "with" : "without"} the clone-source index`, () => {
    let server: ApiServer;
    let api: KubeApi;
    let clock: FakeClock;
    let stop: AbortController;
    let running: Promise<void>[] = [];
    const metricNames: string[] = [];

    async function start(
      objects: PersistentVolumeClaim[],
    ): Promise<Informer<PersistentVolumeClaim>> {
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
      clock = new FakeClock();
      stop = new AbortController();
      const informer = new Informer<PersistentVolumeClaim>({
        client: api.resource(resources.persistentVolumeClaims),
        clock: new FakeClock(),
        random: () => 0,
        project: projectPersistentVolumeClaim,
        indexers: indexed
          ? { namespace: byNamespace, [CLONE_SOURCE_INDEX]: byCloneSource }
          : { namespace: byNamespace },
      });
      const metrics: WorkQueueMetrics = {
        added: (name) => metricNames.push(name),
        depth() {},
        retried() {},
      };
      const controller = createCloningProtectionController({
        api,
        claims: informer,
        clock,
        logger: nullLogger,
        threads: 2,
        retryStartMs: 1000,
        retryMaxMs: 8000,
        metrics,
      });
      running = [informer.run(stop.signal), controller.run(stop.signal)];
      await within(informer.waitForSync());
      return informer;
    }

    afterEach(async () => {
      stop.abort();
      await Promise.all(running);
      await server.close();
    });

    const stored = (name: string, namespace = "default") =>
      server.get(resources.persistentVolumeClaims, name, namespace);
    const deleteSource = () =>
      api.resource(resources.persistentVolumeClaims).delete("src", "default");
    const gone = (name: string) =>
      within(
        server.waitFor(() => stored(name) === undefined),
        5000,
        `claim ${name} to be deleted`,
      );

    it("removes the finalizer from a deleted source without pending clones, finishing its deletion", async () => {
      await start([source(), claim("done", { dataSource: pvcRef("src"), phase: "Bound" })]);
      await deleteSource();
      // Only pvc-protection is left: the deletion waits on that one, not on us.
      const left = await within(
        server.waitFor(() => {
          const s = stored("src");
          return s && !s.metadata.finalizers?.includes(CLONE_PROTECTION_FINALIZER) && s;
        }),
      );
      assert.deepEqual(left.metadata.finalizers, [OTHER_FINALIZER]);
      assert.ok(left.metadata.deletionTimestamp);
      assert.equal(
        server.writes.count({ verb: "update", resource: resources.persistentVolumeClaims }),
        1,
      );
      assert.ok(metricNames.includes("claims"), "the queue reports itself as `claims`");
    });

    it("keeps the finalizer while a clone is pending and releases it once the clone binds", async () => {
      const clone = claim("clone", { dataSource: pvcRef("src"), phase: "Pending" });
      await start([
        {
          ...source(),
          metadata: { ...source().metadata, finalizers: [CLONE_PROTECTION_FINALIZER] },
        },
        clone,
      ]);
      await deleteSource();
      // The controller looked, found the clone, and parked the claim on its back-off.
      await within(clock.waitForSleepers(1), 5000, "the back-off");
      assert.ok(stored("src")?.metadata.deletionTimestamp);
      assert.deepEqual(stored("src")?.metadata.finalizers, [CLONE_PROTECTION_FINALIZER]);
      assert.equal(
        server.writes.count({ verb: "update", resource: resources.persistentVolumeClaims }),
        0,
      );

      // The clone binds: its source is looked at again at once, without waiting out the back-off.
      const live = stored("clone")!;
      server.put({ ...live, status: { phase: "Bound" } });
      await gone("src");
    });

    it("retries the back-off when the source is still in use at the retry", async () => {
      await start([
        {
          ...source(),
          metadata: { ...source().metadata, finalizers: [CLONE_PROTECTION_FINALIZER] },
        },
        claim("clone", { dataSource: pvcRef("src"), phase: "Pending" }),
      ]);
      await deleteSource();
      await within(clock.waitForSleepers(1), 5000, "the first back-off");
      await clock.advance(1000);
      await within(clock.waitForSleepers(1), 5000, "the second back-off");
      assert.ok(stored("src"));
      // The second back-off is twice the first.
      await clock.advance(1999);
      assert.equal(clock.pending, 1);
      server.remove(resources.persistentVolumeClaims, "clone", "default");
      await gone("src");
    });

    it("honours a cross-namespace dataSourceRef and ignores look-alikes", async () => {
      await start([
        {
          ...source(),
          metadata: { ...source().metadata, finalizers: [CLONE_PROTECTION_FINALIZER] },
        },
        // A pending clone of other/src, a pending restore from a snapshot named src, a bound clone.
        claim("c1", { namespace: "other", dataSource: pvcRef("src"), phase: "Pending" }),
        claim("c2", {
          dataSource: { kind: "VolumeSnapshot", name: "src", apiGroup: "snapshot.storage.k8s.io" },
          phase: "Pending",
        }),
        claim("c3", { dataSource: pvcRef("src"), phase: "Bound" }),
        // The one that counts: a pending clone in another namespace.
        claim("c4", {
          namespace: "other",
          dataSourceRef: { ...pvcRef("src"), namespace: "default" },
          phase: "Pending",
        }),
      ]);
      await deleteSource();
      await within(clock.waitForSleepers(1), 5000, "the back-off");
      assert.deepEqual(stored("src")?.metadata.finalizers, [CLONE_PROTECTION_FINALIZER]);
      server.remove(resources.persistentVolumeClaims, "c4", "other");
      await gone("src");
    });

    it("backs off and retries when the update fails", async () => {
      await start([
        {
          ...source(),
          metadata: { ...source().metadata, finalizers: [CLONE_PROTECTION_FINALIZER] },
        },
      ]);
      server.failNext({ verb: "update", resource: "persistentvolumeclaims", status: 500 });
      await deleteSource();
      await within(clock.waitForSleepers(1), 5000, "the back-off");
      assert.ok(stored("src"));
      await clock.advance(1000);
      await gone("src");
      assert.equal(
        server.writes.count({ verb: "update", resource: resources.persistentVolumeClaims }),
        2,
      );
    });

    it("reads the claim again and retries at once after a conflict", async () => {
      await start([
        {
          ...source(),
          metadata: { ...source().metadata, finalizers: [CLONE_PROTECTION_FINALIZER] },
        },
      ]);
      server.failNext({ verb: "update", resource: "persistentvolumeclaims", status: 409 });
      await deleteSource();
      await gone("src");
      assert.equal(
        server.writes.count({ verb: "update", resource: resources.persistentVolumeClaims }),
        2,
      );
      assert.equal(clock.pending, 0, "no back-off was needed");
    });

    it("leaves claims that are not being deleted, or carry no cloning finalizer, alone", async () => {
      await start([
        {
          ...source(),
          metadata: { ...source().metadata, finalizers: [CLONE_PROTECTION_FINALIZER] },
        },
        claim("plain", { finalizers: [OTHER_FINALIZER] }),
      ]);
      await api.resource(resources.persistentVolumeClaims).delete("plain", "default");
      const live = stored("src")!;
      server.put({ ...live, metadata: { ...live.metadata, labels: { touched: "yes" } } });
      // Events are handled in order: once the source is gone, the two changes above were seen.
      await deleteSource();
      await gone("src");
      assert.deepEqual(stored("plain")?.metadata.finalizers, [OTHER_FINALIZER]);
      assert.equal(
        server.writes.count({ verb: "update", resource: resources.persistentVolumeClaims }),
        1,
      );
    });
  });
}
