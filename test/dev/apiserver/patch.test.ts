import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ApiServer, startApiServer } from "../../../src/dev/apiserver/mod.ts";
import {
  jsonPatch,
  mergePatch,
  objectMetaStrategies,
  PatchError,
  strategicMergePatch,
} from "../../../src/dev/apiserver/patch.ts";
import type { Status } from "../../../src/kube/objects.ts";
import { FakeClock } from "../../support/fake-clock.ts";
import { call, pvc, pvcs } from "./support.ts";

describe("mergePatch()", () => {
  it("follows RFC 7386: nested merge, null deletes, arrays replace", () => {
    const target = { a: "b", c: { d: "e", f: "g" }, list: [1, 2] };
    const patch = { a: "z", c: { f: null, h: 1 }, list: [3] };
    assert.deepEqual(mergePatch(target, patch), { a: "z", c: { d: "e", h: 1 }, list: [3] });
    assert.deepEqual(target, { a: "b", c: { d: "e", f: "g" }, list: [1, 2] }, "input untouched");
  });

  it("replaces a non-object target and returns non-object patches as they are", () => {
    assert.deepEqual(mergePatch("x", { a: 1 }), { a: 1 });
    assert.deepEqual(mergePatch({ a: 1 }, ["x"]), ["x"]);
  });
});

describe("jsonPatch()", () => {
  const doc = { metadata: { name: "a", finalizers: ["x", "y"], labels: { "a/b": "1" } } };

  it("applies add, remove, replace, move, copy and test", () => {
    const out = jsonPatch(doc, [
      { op: "test", path: "/metadata/name", value: "a" },
      { op: "add", path: "/metadata/finalizers/-", value: "z" },
      { op: "remove", path: "/metadata/finalizers/0" },
      { op: "replace", path: "/metadata/labels/a~1b", value: "2" },
      { op: "copy", from: "/metadata/name", path: "/metadata/generateName" },
      { op: "move", from: "/metadata/generateName", path: "/metadata/annotations" },
    ]);
    assert.deepEqual(out, {
      metadata: { name: "a", finalizers: ["y", "z"], labels: { "a/b": "2" }, annotations: "a" },
    });
  });

  it("fails a test operation whose value differs", () => {
    assert.throws(
      () => jsonPatch(doc, [{ op: "test", path: "/metadata/name", value: "b" }]),
      (e: unknown) => e instanceof PatchError && !e.malformed,
    );
  });

  it("fails on a missing path and treats a non-array as malformed", () => {
    assert.throws(() => jsonPatch(doc, [{ op: "replace", path: "/spec/x", value: 1 }]), PatchError);
    assert.throws(
      () => jsonPatch(doc, { op: "add" }),
      (e: unknown) => e instanceof PatchError && e.malformed,
    );
  });
});

describe("strategicMergePatch()", () => {
  const obj = {
    metadata: {
      name: "a",
      finalizers: ["kubernetes.io/pvc-protection"],
      ownerReferences: [{ uid: "1", name: "one" }],
      labels: { a: "1" },
    },
    spec: { accessModes: ["ReadWriteOnce"] },
  };

  it("merges metadata.finalizers as a set (patchStrategy merge), not a replace", () => {
    const out = strategicMergePatch(obj, {
      metadata: { finalizers: ["external-provisioner.volume.kubernetes.io/finalizer"] },
    });
    // Kubernetes puts elements new to the list before the ones only the server had.
    assert.deepEqual((out as typeof obj).metadata.finalizers, [
      "external-provisioner.volume.kubernetes.io/finalizer",
      "kubernetes.io/pvc-protection",
    ]);
  });

  it("keeps the server's order for patch elements it already has", () => {
    const out = strategicMergePatch(
      { metadata: { finalizers: ["a", "b", "c"] } },
      { metadata: { finalizers: ["c", "n", "a"] } },
    ) as typeof obj;
    assert.deepEqual(out.metadata.finalizers, ["b", "c", "n", "a"]);
  });

  it("removes finalizers listed in $deleteFromPrimitiveList", () => {
    const out = strategicMergePatch(obj, {
      metadata: { "$deleteFromPrimitiveList/finalizers": ["kubernetes.io/pvc-protection"] },
    }) as typeof obj;
    assert.deepEqual(out.metadata.finalizers, []);
  });

  it("orders a merged list by $setElementOrder", () => {
    const out = strategicMergePatch(obj, {
      metadata: {
        "$setElementOrder/finalizers": ["b", "kubernetes.io/pvc-protection"],
        finalizers: ["b"],
      },
    }) as typeof obj;
    assert.deepEqual(out.metadata.finalizers, ["b", "kubernetes.io/pvc-protection"]);
  });

  it("merges ownerReferences by uid and deletes one with $patch: delete", () => {
    const merged = strategicMergePatch(obj, {
      metadata: {
        ownerReferences: [
          { uid: "1", name: "renamed" },
          { uid: "2", name: "two" },
        ],
      },
    }) as typeof obj;
    assert.deepEqual(merged.metadata.ownerReferences, [
      { uid: "1", name: "renamed" },
      { uid: "2", name: "two" },
    ]);
    const deleted = strategicMergePatch(merged, {
      metadata: { ownerReferences: [{ uid: "1", $patch: "delete" }] },
    }) as typeof obj;
    assert.deepEqual(deleted.metadata.ownerReferences, [{ uid: "2", name: "two" }]);
  });

  it("replaces other lists, merges maps, deletes with null, honours $patch: replace and $retainKeys", () => {
    const out = strategicMergePatch(obj, {
      metadata: { labels: { a: null, b: "2" } },
      spec: { accessModes: ["ReadWriteMany"] },
    }) as typeof obj;
    assert.deepEqual(out.metadata.labels, { b: "2" });
    assert.deepEqual(out.spec.accessModes, ["ReadWriteMany"]);
    const replaced = strategicMergePatch(obj, {
      metadata: { labels: { $patch: "replace", z: "9" } },
    }) as typeof obj;
    assert.deepEqual(replaced.metadata.labels, { z: "9" });
    const retained = strategicMergePatch(
      { spec: { a: 1, b: 2, c: 3 } },
      { spec: { $retainKeys: ["a", "c"], c: 4 } },
      objectMetaStrategies,
    );
    assert.deepEqual(retained, { spec: { a: 1, c: 4 } });
  });
});

describe("startApiServer() PATCH", () => {
  let api: ApiServer;
  before(async () => {
    api = await startApiServer({ clock: new FakeClock() });
  });
  after(() => api.close());

  const patch = (name: string, type: string, body: unknown, path = pvcs) =>
    call(api.url, "PATCH", `${path}/${name}`, body, { "content-type": type });

  it("applies a merge patch", async () => {
    await call(api.url, "POST", pvcs, pvc("m"));
    const r = await patch("m", "application/merge-patch+json", {
      metadata: { annotations: { a: "1" } },
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.metadata.annotations, { a: "1" });
    assert.equal(api.writes.count({ verb: "patch", resource: "persistentvolumeclaims" }), 1);
  });

  it("applies a strategic merge patch that adds a finalizer next to an existing one", async () => {
    const body = pvc("s");
    body.metadata.finalizers = ["kubernetes.io/pvc-protection"];
    await call(api.url, "POST", pvcs, body);
    const r = await patch("s", "application/strategic-merge-patch+json", {
      metadata: { finalizers: ["example.com/mine"] },
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.metadata.finalizers, [
      "example.com/mine",
      "kubernetes.io/pvc-protection",
    ]);
  });

  it("applies a JSON patch and answers 422 when its test operation fails", async () => {
    await call(api.url, "POST", pvcs, pvc("j"));
    const ok = await patch("j", "application/json-patch+json", [
      { op: "test", path: "/metadata/name", value: "j" },
      { op: "add", path: "/metadata/labels", value: { x: "y" } },
    ]);
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body.metadata.labels, { x: "y" });
    const failed = await patch("j", "application/json-patch+json", [
      { op: "test", path: "/metadata/labels/x", value: "nope" },
      { op: "remove", path: "/metadata/labels" },
    ]);
    assert.equal(failed.status, 422);
    assert.equal((failed.body as Status).reason, "Invalid");
    assert.deepEqual((await call(api.url, "GET", `${pvcs}/j`)).body.metadata.labels, { x: "y" });
  });

  it("treats metadata.resourceVersion in a patch as a precondition", async () => {
    const created = (await call(api.url, "POST", pvcs, pvc("p"))).body;
    const stale = await patch("p", "application/merge-patch+json", {
      metadata: { resourceVersion: "1", labels: { a: "b" } },
    });
    assert.equal(stale.status, 409);
    assert.equal((stale.body as Status).reason, "Conflict");
    const fresh = await patch("p", "application/merge-patch+json", {
      metadata: { resourceVersion: created.metadata.resourceVersion, labels: { a: "b" } },
    });
    assert.equal(fresh.status, 200);
  });

  it("patches only status through /status", async () => {
    await call(api.url, "POST", pvcs, pvc("st"));
    const r = await patch(
      "st",
      "application/merge-patch+json",
      {
        status: { phase: "Bound", capacity: { storage: "1Gi" } },
        metadata: { labels: { no: "pe" } },
      },
      pvcs,
    );
    assert.equal(
      (r.body.status as { phase: string }).phase,
      "Pending",
      "main resource ignores status",
    );
    assert.deepEqual(r.body.metadata.labels, { no: "pe" });
    const s = await call(
      api.url,
      "PATCH",
      `${pvcs}/st/status`,
      { status: { phase: "Bound" }, spec: { volumeName: "x" } },
      {
        "content-type": "application/merge-patch+json",
      },
    );
    assert.equal(s.status, 200);
    assert.equal((s.body.status as { phase: string }).phase, "Bound");
    assert.equal((s.body.spec as { volumeName?: string }).volumeName, undefined);
    assert.equal(
      api.writes.count({
        verb: "patch",
        resource: "persistentvolumeclaims",
        subresource: "status",
      }),
      1,
    );
  });

  it("answers 415 to a strategic merge patch of a custom resource", async () => {
    const path = "/apis/snapshot.storage.k8s.io/v1/namespaces/default/volumesnapshots";
    await call(api.url, "POST", path, {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshot",
      metadata: { name: "vs" },
      spec: { source: { persistentVolumeClaimName: "a" } },
    });
    const r = await patch(
      "vs",
      "application/strategic-merge-patch+json",
      { metadata: { labels: { a: "b" } } },
      path,
    );
    assert.equal(r.status, 415);
    const merge = await patch(
      "vs",
      "application/merge-patch+json",
      { metadata: { labels: { a: "b" } } },
      path,
    );
    assert.equal(merge.status, 200);
  });

  it("answers 404 to a patch of a missing object and 400 to a malformed body", async () => {
    assert.equal((await patch("nothing", "application/merge-patch+json", {})).status, 404);
    await call(api.url, "POST", pvcs, pvc("bad"));
    assert.equal((await patch("bad", "application/merge-patch+json", "{not json")).status, 400);
    const notList = await patch("bad", "application/json-patch+json", { op: "add" });
    assert.equal(notList.status, 400);
    assert.equal(
      (notList.body as Status).message,
      "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp",
    );
  });

  it("hides why a JSON patch did not apply behind Kubernetes' generic 422", async () => {
    await call(api.url, "POST", pvcs, pvc("generic"));
    const r = await patch("generic", "application/json-patch+json", [
      { op: "remove", path: "/metadata/labels/missing" },
    ]);
    assert.equal(r.status, 422);
    assert.deepEqual(r.body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: "the server rejected our request due to an error in our request",
      reason: "Invalid",
      details: {},
      code: 422,
    });
  });

  it("answers 422 quoting the patched object when the result does not decode", async () => {
    await call(api.url, "POST", pvcs, pvc("quantity"));
    const r = await patch("quantity", "application/merge-patch+json", {
      metadata: { labels: { a: "b" } },
      spec: { resources: { requests: { storage: "lots" } } },
    });
    assert.equal(r.status, 422);
    const st = r.body as Status;
    assert.match(st.message!, /^ "" is invalid: patch: Invalid value: ".*": quantities must match/);
    assert.equal(st.details?.causes?.[0]?.field, "patch");
    assert.equal(st.details?.kind, undefined);
  });

  it("answers 415 with Kubernetes' words to a PATCH that is no patch type", async () => {
    await call(api.url, "POST", pvcs, pvc("xml"));
    const r = await patch("xml", "application/xml", {});
    assert.equal(r.status, 415);
    assert.equal((r.body as Status).message, "415: Unsupported Media Type");
  });
});
