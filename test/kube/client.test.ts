import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { noAuth } from "../../src/kube/auth.ts";
import { createKubeApi, PATCH_CONTENT_TYPES } from "../../src/kube/client.ts";
import { isAlreadyExists, isGone, isNotFound } from "../../src/kube/errors.ts";
import type {
  PersistentVolume,
  PersistentVolumeClaim,
  WatchEvent,
} from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { KubeTransport } from "../../src/kube/transport.ts";
import { closeIdleConnections } from "../../src/runtime/https.ts";
import { FakeClock } from "../support/fake-clock.ts";
import {
  type Loopback,
  type RecordedRequest,
  sendJson,
  startLoopback,
  statusBody,
} from "../support/loopback.ts";

const pvc = (name: string, extra: Partial<PersistentVolumeClaim> = {}): PersistentVolumeClaim =>
  ({
    metadata: { name, namespace: "ns", resourceVersion: "7" },
    spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    ...extra,
  }) as PersistentVolumeClaim;

describe("createKubeApi()", () => {
  let server: Loopback;
  let transport: KubeTransport;
  let last: () => RecordedRequest;

  before(async () => {
    server = await startLoopback({});
    last = () => server.requests.at(-1)!;
  });
  beforeEach(() => {
    server.requests.length = 0;
    // Echo: the request body, or a stub object.
    server.handler = (req, res) =>
      sendJson(
        res,
        req.method === "POST" ? 201 : 200,
        req.body ? JSON.parse(req.body) : { metadata: { name: "x" } },
      );
    transport = new KubeTransport({
      connection: { server: server.url, tls: {}, auth: noAuth, source: "test" },
      version: "test",
      clock: new FakeClock(),
      random: () => 0.5,
      idempotentRetries: 0,
    });
  });
  afterEach(() => closeIdleConnections());
  after(() => server.close());

  it("gets a namespaced object by namespace and name", async () => {
    await createKubeApi(transport).resource(resources.persistentVolumeClaims).get("claim-1", "ns");
    assert.equal(last().method, "GET");
    assert.equal(last().path, "/api/v1/namespaces/ns/persistentvolumeclaims/claim-1");
  });

  it("gets cluster-scoped and custom resources at their group paths", async () => {
    const api = createKubeApi(transport);
    await api.resource(resources.persistentVolumes).get("pv-1");
    await api.resource(resources.storageClasses).get("fast");
    await api.resource(resources.volumeSnapshots).get("snap", "ns");
    await api.resource(resources.volumeSnapshotContents).get("content");
    await api.resource(resources.leases).get("lock", "kube-system");
    await api.resource(resources.events).get("e", "ns");
    assert.deepEqual(
      server.requests.map((r) => r.path),
      [
        "/api/v1/persistentvolumes/pv-1",
        "/apis/storage.k8s.io/v1/storageclasses/fast",
        "/apis/snapshot.storage.k8s.io/v1/namespaces/ns/volumesnapshots/snap",
        "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/content",
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/lock",
        "/apis/events.k8s.io/v1/namespaces/ns/events/e",
      ],
    );
  });

  it("refuses a namespaced call without a namespace before sending anything", async () => {
    const pvcs = createKubeApi(transport).resource(resources.persistentVolumeClaims);
    await assert.rejects(
      pvcs.get("claim-1"),
      /Cannot get persistentvolumeclaims claim-1: a namespace is required/,
    );
    await assert.rejects(
      pvcs.create(pvc("a", { metadata: { name: "a" } })),
      /metadata.namespace is required/,
    );
    assert.equal(server.requests.length, 0);
  });

  it("lists with selectors, pagination and resourceVersion", async () => {
    server.handler = (_req, res) =>
      sendJson(res, 200, {
        kind: "PersistentVolumeClaimList",
        metadata: { resourceVersion: "42", continue: "c2" },
        items: [{ metadata: { name: "a" } }],
      });
    const list = await createKubeApi(transport).resource(resources.persistentVolumeClaims).list({
      namespace: "ns",
      labelSelector: "app=db",
      fieldSelector: "metadata.name=a",
      limit: 500,
      continue: "c1",
      resourceVersion: "0",
      resourceVersionMatch: "NotOlderThan",
    });
    assert.equal(list.metadata.resourceVersion, "42");
    assert.equal(list.items[0]!.metadata.name, "a");
    assert.equal(last().path, "/api/v1/namespaces/ns/persistentvolumeclaims");
    assert.deepEqual(Object.fromEntries(last().query), {
      labelSelector: "app=db",
      fieldSelector: "metadata.name=a",
      limit: "500",
      continue: "c1",
      resourceVersion: "0",
      resourceVersionMatch: "NotOlderThan",
    });
  });

  it("lists across all namespaces when none is given", async () => {
    server.handler = (_req, res) => sendJson(res, 200, { metadata: {}, items: null });
    const list = await createKubeApi(transport).resource(resources.persistentVolumeClaims).list();
    assert.equal(last().path, "/api/v1/persistentvolumeclaims");
    assert.deepEqual(list.items, []);
  });

  it("creates with apiVersion and kind filled in, honouring dryRun and fieldManager", async () => {
    const created = await createKubeApi(transport)
      .resource(resources.persistentVolumes)
      .create({ metadata: { name: "pv-1" } } as PersistentVolume, {
        dryRun: true,
        fieldManager: "csi-provisioner",
      });
    assert.equal(last().method, "POST");
    assert.equal(last().path, "/api/v1/persistentvolumes");
    assert.equal(last().query.toString(), "dryRun=All&fieldManager=csi-provisioner");
    assert.deepEqual(JSON.parse(last().body), {
      metadata: { name: "pv-1" },
      apiVersion: "v1",
      kind: "PersistentVolume",
    });
    assert.equal(created.kind, "PersistentVolume");
  });

  it("resolves a create or patch with discardResult to undefined without parsing the answer", async () => {
    // An answer that is not JSON: it would fail the call if it were parsed.
    server.handler = (req, res) => {
      res.writeHead(req.method === "POST" ? 201 : 200, { "content-type": "application/json" });
      res.end("{not json");
    };
    const pvs = createKubeApi(transport).resource(resources.persistentVolumes);
    const created = await pvs.create({ metadata: { name: "pv-1" } } as PersistentVolume, {
      discardResult: true,
    });
    assert.equal(created, undefined);
    assert.equal(JSON.parse(last().body).kind, "PersistentVolume");
    const patched = await pvs.patch("pv-1", "merge", { metadata: { finalizers: [] } }, undefined, {
      discardResult: true,
    });
    assert.equal(patched, undefined);
    assert.equal(last().method, "PATCH");
    // delete never reads its answer.
    await pvs.delete("pv-1");
    assert.equal(last().method, "DELETE");
    // Without the option the answer is parsed, and a body that is not JSON is an error.
    const err = await pvs
      .create({ metadata: { name: "pv-2" } } as PersistentVolume)
      .catch((e: unknown) => e);
    assert.match((err as Error).message, /not valid JSON/);
  });

  it("reports AlreadyExists on create", async () => {
    server.handler = (_req, res) =>
      sendJson(
        res,
        409,
        statusBody(409, "AlreadyExists", 'persistentvolumes "pv-1" already exists'),
      );
    const err = await createKubeApi(transport)
      .resource(resources.persistentVolumes)
      .create({ metadata: { name: "pv-1" } } as PersistentVolume)
      .catch((e: unknown) => e);
    assert.ok(isAlreadyExists(err));
    assert.equal(
      (err as Error).message,
      'Create persistentvolumes pv-1: 409 AlreadyExists: persistentvolumes "pv-1" already exists',
    );
  });

  it("updates the object and its status subresource with PUT", async () => {
    const pvcs = createKubeApi(transport).resource(resources.persistentVolumeClaims);
    await pvcs.update(pvc("claim-1"));
    assert.equal(last().method, "PUT");
    assert.equal(last().path, "/api/v1/namespaces/ns/persistentvolumeclaims/claim-1");
    assert.equal(JSON.parse(last().body).metadata.resourceVersion, "7");
    await pvcs.updateStatus(pvc("claim-1", { status: { phase: "Bound" } }));
    assert.equal(last().path, "/api/v1/namespaces/ns/persistentvolumeclaims/claim-1/status");
    assert.equal(JSON.parse(last().body).kind, "PersistentVolumeClaim");
  });

  it("patches with the content type of each patch type", async () => {
    const pvcs = createKubeApi(transport).resource(resources.persistentVolumeClaims);
    await pvcs.patch("claim-1", "merge", { metadata: { annotations: { a: "b" } } }, "ns");
    assert.equal(last().headers["content-type"], "application/merge-patch+json");
    await pvcs.patch("claim-1", "strategic", { metadata: { finalizers: ["x"] } }, "ns");
    assert.equal(last().headers["content-type"], "application/strategic-merge-patch+json");
    const ops = [
      { op: "test", path: "/metadata/resourceVersion", value: "7" },
      { op: "remove", path: "/metadata/finalizers/0" },
    ];
    await pvcs.patch("claim-1", "json", ops, "ns", { subresource: "status" });
    assert.equal(last().headers["content-type"], "application/json-patch+json");
    assert.equal(last().method, "PATCH");
    assert.equal(last().path, "/api/v1/namespaces/ns/persistentvolumeclaims/claim-1/status");
    assert.deepEqual(JSON.parse(last().body), ops);
    assert.deepEqual(Object.keys(PATCH_CONTENT_TYPES), ["merge", "strategic", "json"]);
  });

  it("deletes with preconditions and a propagation policy", async () => {
    server.handler = (_req, res) => sendJson(res, 200, { kind: "Status", status: "Success" });
    await createKubeApi(transport).resource(resources.persistentVolumes).delete("pv-1", undefined, {
      uid: "u-1",
      resourceVersion: "9",
      propagationPolicy: "Background",
    });
    assert.equal(last().method, "DELETE");
    assert.equal(last().path, "/api/v1/persistentvolumes/pv-1");
    assert.deepEqual(JSON.parse(last().body), {
      apiVersion: "v1",
      kind: "DeleteOptions",
      preconditions: { uid: "u-1", resourceVersion: "9" },
      propagationPolicy: "Background",
    });
  });

  it("maps a missing object on delete to NotFound", async () => {
    server.handler = (_req, res) =>
      sendJson(res, 404, statusBody(404, "NotFound", 'persistentvolumes "pv-1" not found'));
    const err = await createKubeApi(transport)
      .resource(resources.persistentVolumes)
      .delete("pv-1")
      .catch((e: unknown) => e);
    assert.ok(isNotFound(err));
  });

  it("watches with bookmarks and a timeout, yielding ERROR events as they come", async () => {
    server.handler = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write(
        `${JSON.stringify({ type: "ADDED", object: { metadata: { name: "a", resourceVersion: "10" } } })}\n`,
      );
      res.write(
        `${JSON.stringify({ type: "BOOKMARK", object: { metadata: { resourceVersion: "11" } } })}\n`,
      );
      res.write('{"type":"MODIFIED"}\n');
      res.end(
        `${JSON.stringify({ type: "ERROR", object: statusBody(410, "Expired", "too old resource version") })}\n`,
      );
    };
    const stream = await createKubeApi(transport).resource(resources.persistentVolumeClaims).watch({
      namespace: "ns",
      resourceVersion: "9",
      allowWatchBookmarks: true,
      timeoutSeconds: 321,
      labelSelector: "a=b",
    });
    const events: WatchEvent<PersistentVolumeClaim>[] = [];
    for await (const e of stream) events.push(e);
    assert.deepEqual(
      events.map((e) => e.type),
      ["ADDED", "BOOKMARK", "ERROR"],
    );
    assert.equal(events[2]!.object.kind, "Status");
    assert.equal(transport.malformedLines, 1, "the event without an object is reported");
    assert.equal(last().path, "/api/v1/namespaces/ns/persistentvolumeclaims");
    assert.deepEqual(Object.fromEntries(last().query), {
      watch: "true",
      labelSelector: "a=b",
      resourceVersion: "9",
      allowWatchBookmarks: "true",
      timeoutSeconds: "321",
    });
  });

  it("rejects a watch the server refuses with 410 Gone", async () => {
    server.handler = (_req, res) =>
      sendJson(res, 410, statusBody(410, "Expired", "too old resource version: 1 (50)"));
    const err = await createKubeApi(transport)
      .resource(resources.persistentVolumes)
      .watch({ resourceVersion: "1" })
      .catch((e: unknown) => e);
    assert.ok(isGone(err));
    assert.match((err as Error).message, /^Watch persistentvolumes: 410 Expired/);
  });
});
