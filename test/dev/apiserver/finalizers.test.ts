import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { type ApiServer, startApiServer } from "../../../src/dev/apiserver/mod.ts";
import type { KubeObject, Status } from "../../../src/kube/objects.ts";
import { FakeClock } from "../../support/fake-clock.ts";
import { call, openWatch, pvc, pvcs, type WatchReader } from "./support.ts";

describe("startApiServer() finalizers and deletion", () => {
  let api: ApiServer;
  let clock: FakeClock;
  let watch: WatchReader | undefined;

  beforeEach(async () => {
    clock = new FakeClock(Date.UTC(2026, 5, 1, 12, 0, 0));
    api = await startApiServer({ clock });
  });
  afterEach(async () => {
    watch?.close();
    watch = undefined;
    await api.close();
  });

  const createWithFinalizers = async (name: string, finalizers: string[]) => {
    const body = pvc(name);
    body.metadata.finalizers = finalizers;
    const r = await call(api.url, "POST", pvcs, body);
    assert.equal(r.status, 201);
    return r.body;
  };

  it("sets deletionTimestamp on DELETE while finalizers remain, and deletes once the last is removed", async () => {
    const created = await createWithFinalizers("f", ["a.example.com/one", "b.example.com/two"]);
    watch = await openWatch(
      api.url,
      `${pvcs}?watch=1&resourceVersion=${created.metadata.resourceVersion}`,
    );
    await clock.advance(5000);
    const del = await call(api.url, "DELETE", `${pvcs}/f`);
    assert.equal(del.status, 200);
    assert.equal(del.body.metadata.deletionTimestamp, "2026-06-01T12:00:05Z");
    assert.equal(del.body.metadata.deletionGracePeriodSeconds, 0);
    const marked = await watch.next();
    assert.equal(marked.type, "MODIFIED");
    assert.equal(marked.object.metadata.deletionTimestamp, "2026-06-01T12:00:05Z");

    // A second DELETE changes nothing.
    const again = await call(api.url, "DELETE", `${pvcs}/f`);
    assert.equal(again.status, 200);
    assert.equal(again.body.metadata.resourceVersion, del.body.metadata.resourceVersion);

    // No new finalizer may be added to a terminating object.
    const add = await call(
      api.url,
      "PATCH",
      `${pvcs}/f`,
      { metadata: { finalizers: ["c.example.com/three"] } },
      {
        "content-type": "application/strategic-merge-patch+json",
      },
    );
    assert.equal(add.status, 422);
    assert.match(
      (add.body as Status).message!,
      /no new finalizers can be added if the object is being deleted/,
    );

    // Removing one finalizer is an ordinary update.
    const one = await call(
      api.url,
      "PATCH",
      `${pvcs}/f`,
      { metadata: { "$deleteFromPrimitiveList/finalizers": ["a.example.com/one"] } },
      { "content-type": "application/strategic-merge-patch+json" },
    );
    assert.equal(one.status, 200);
    assert.deepEqual(one.body.metadata.finalizers, ["b.example.com/two"]);
    assert.equal((await watch.next()).type, "MODIFIED");

    // Removing the last one deletes the object.
    const last = structuredClone(one.body) as KubeObject;
    last.metadata.finalizers = [];
    const put = await call(api.url, "PUT", `${pvcs}/f`, last);
    assert.equal(put.status, 200);
    assert.equal((await call(api.url, "GET", `${pvcs}/f`)).status, 404);
    const gone = await watch.next();
    assert.equal(gone.type, "DELETED");
    assert.equal(gone.object.metadata.name, "f");
    assert.ok(
      Number(gone.object.metadata.resourceVersion) > Number(one.body.metadata.resourceVersion),
    );
  });

  it("deletes at once when the finalizers are removed by a JSON patch", async () => {
    await createWithFinalizers("jp", ["x"]);
    await call(api.url, "DELETE", `${pvcs}/jp`);
    const r = await call(
      api.url,
      "PATCH",
      `${pvcs}/jp`,
      [{ op: "remove", path: "/metadata/finalizers" }],
      {
        "content-type": "application/json-patch+json",
      },
    );
    assert.equal(r.status, 200);
    assert.equal((await call(api.url, "GET", `${pvcs}/jp`)).status, 404);
  });

  it("answers the updated object, at the version it replaced, to the update removing the last finalizer", async () => {
    await createWithFinalizers("last", ["x.example.com/a"]);
    const deleting = (await call(api.url, "DELETE", `${pvcs}/last`)).body;
    const r = await call(
      api.url,
      "PATCH",
      `${pvcs}/last`,
      { metadata: { finalizers: null } },
      { "content-type": "application/merge-patch+json" },
    );
    assert.equal(r.status, 200);
    assert.equal(r.body.metadata.finalizers, undefined);
    assert.equal(r.body.metadata.deletionTimestamp, deleting.metadata.deletionTimestamp);
    assert.equal(r.body.metadata.resourceVersion, deleting.metadata.resourceVersion);
    assert.equal((await call(api.url, "GET", `${pvcs}/last`)).status, 404);
  });

  it("forbids new finalizers on an object being deleted, listing the error as Kubernetes does", async () => {
    await createWithFinalizers("nonew", ["x.example.com/a"]);
    await call(api.url, "DELETE", `${pvcs}/nonew`);
    const r = await call(
      api.url,
      "PATCH",
      `${pvcs}/nonew`,
      { metadata: { finalizers: ["x.example.com/a", "x.example.com/b"] } },
      { "content-type": "application/merge-patch+json" },
    );
    assert.equal(r.status, 422);
    const st = r.body as Status;
    const message =
      'Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"x.example.com/b"}';
    assert.equal(
      st.message,
      `PersistentVolumeClaim "nonew" is invalid: metadata.finalizers: ${message}`,
    );
    // Claims validate their metadata twice on update: the cause is listed twice.
    assert.deepEqual(st.details?.causes, [
      { reason: "FieldValueForbidden", message, field: "metadata.finalizers" },
      { reason: "FieldValueForbidden", message, field: "metadata.finalizers" },
    ]);
  });

  it("keeps an object with finalizers that is not being deleted when they are removed", async () => {
    const created = await createWithFinalizers("keep", ["x"]);
    const next = structuredClone(created);
    next.metadata.finalizers = [];
    assert.equal((await call(api.url, "PUT", `${pvcs}/keep`, next)).status, 200);
    assert.equal((await call(api.url, "GET", `${pvcs}/keep`)).status, 200);
  });

  it("answers 409 Conflict when a uid or resourceVersion precondition does not match", async () => {
    const created = (await call(api.url, "POST", pvcs, pvc("pre"))).body;
    const uid = await call(api.url, "DELETE", `${pvcs}/pre`, {
      kind: "DeleteOptions",
      apiVersion: "v1",
      preconditions: { uid: "not-the-uid" },
    });
    assert.equal(uid.status, 409);
    assert.equal((uid.body as Status).reason, "Conflict");
    assert.equal(
      (uid.body as Status).message!,
      `Operation cannot be fulfilled on PersistentVolumeClaim "pre": the UID in the precondition (not-the-uid) does not match the UID in record (${created.metadata.uid}). The object might have been deleted and then recreated`,
    );
    // The storage layer names the kind, not the resource.
    assert.deepEqual((uid.body as Status).details, { name: "pre", kind: "PersistentVolumeClaim" });
    const rv = await call(api.url, "DELETE", `${pvcs}/pre`, {
      preconditions: { resourceVersion: "1" },
    });
    assert.equal(rv.status, 409);
    assert.match(
      (rv.body as Status).message!,
      /the ResourceVersion in the precondition \(1\) does not match/,
    );
    const ok = await call(api.url, "DELETE", `${pvcs}/pre`, {
      preconditions: {
        uid: created.metadata.uid,
        resourceVersion: created.metadata.resourceVersion,
      },
    });
    assert.equal(ok.status, 200);
    assert.equal((await call(api.url, "GET", `${pvcs}/pre`)).status, 404);
  });

  it("deletes a collection by label selector", async () => {
    for (const [name, app] of [
      ["x1", "x"],
      ["x2", "x"],
      ["y1", "y"],
    ]) {
      const body = pvc(name!);
      body.metadata.labels = { app: app! };
      await call(api.url, "POST", pvcs, body);
    }
    const r = await call(api.url, "DELETE", `${pvcs}?labelSelector=app%3Dx`);
    assert.equal(r.status, 200);
    const left = await call<{ items: KubeObject[] }>(api.url, "GET", pvcs);
    assert.deepEqual(
      left.body.items.map((o) => o.metadata.name),
      ["y1"],
    );
    assert.equal(api.writes.count({ verb: "deletecollection" }), 1);
  });
});
