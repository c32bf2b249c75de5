import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ApiServer, startApiServer } from "../../../src/dev/apiserver/mod.ts";
import type { KubeList, KubeObject } from "../../../src/kube/objects.ts";
import { resources } from "../../../src/kube/resources.ts";
import { FakeClock } from "../../support/fake-clock.ts";
import { asStatus, call, pv, pvc, pvcs, pvs } from "./support.ts";

function sequence(values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

describe("startApiServer() REST", () => {
  let api: ApiServer;
  const clock = new FakeClock(Date.UTC(2026, 0, 2, 3, 4, 5, 678));
  let uids = 0;

  before(async () => {
    api = await startApiServer({
      clock,
      random: sequence([0, 0.1, 0.2, 0.3, 0.4]),
      uid: () => `uid-${++uids}`,
    });
  });
  after(() => api.close());

  it("creates an object with uid, creationTimestamp, resourceVersion and defaults", async () => {
    const r = await call(api.url, "POST", pvcs, pvc("create-me"));
    assert.equal(r.status, 201);
    const obj = r.body;
    assert.equal(obj.apiVersion, "v1");
    assert.equal(obj.kind, "PersistentVolumeClaim");
    assert.equal(obj.metadata.namespace, "default");
    assert.match(obj.metadata.uid!, /^uid-\d+$/);
    assert.equal(obj.metadata.creationTimestamp, "2026-01-02T03:04:05Z");
    assert.match(obj.metadata.resourceVersion!, /^\d+$/);
    assert.equal((obj.spec as { volumeMode?: string }).volumeMode, "Filesystem");
    assert.deepEqual(obj.status, { phase: "Pending" });
    const got = await call(api.url, "GET", `${pvcs}/create-me`);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, obj);
  });

  it("ignores status on create for a resource with a status subresource", async () => {
    const r = await call(api.url, "POST", pvs, pv("pv-status", { status: { phase: "Bound" } }));
    assert.equal(r.status, 201);
    assert.equal((r.body.status as { phase: string }).phase, "Pending");
    assert.equal(
      (r.body.spec as { persistentVolumeReclaimPolicy: string }).persistentVolumeReclaimPolicy,
      "Retain",
    );
  });

  it("answers 404 NotFound with the Kubernetes Status shape", async () => {
    const r = await call(api.url, "GET", `${pvcs}/missing`);
    assert.equal(r.status, 404);
    assert.deepEqual(r.body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'persistentvolumeclaims "missing" not found',
      reason: "NotFound",
      details: { name: "missing", kind: "persistentvolumeclaims" },
      code: 404,
    });
    const sc = await call(api.url, "GET", "/apis/storage.k8s.io/v1/storageclasses/nope");
    assert.equal(asStatus(sc).message, 'storageclasses.storage.k8s.io "nope" not found');
    assert.deepEqual(asStatus(sc).details, {
      name: "nope",
      group: "storage.k8s.io",
      kind: "storageclasses",
    });
  });

  it("answers 409 AlreadyExists when the name is taken", async () => {
    await call(api.url, "POST", pvcs, pvc("twice"));
    const r = await call(api.url, "POST", pvcs, pvc("twice"));
    assert.equal(r.status, 409);
    assert.equal(asStatus(r).reason, "AlreadyExists");
    assert.equal(asStatus(r).message, 'persistentvolumeclaims "twice" already exists');
    assert.deepEqual(asStatus(r).details, { name: "twice", kind: "persistentvolumeclaims" });
  });

  it("generates a name from generateName with a 5-character random suffix", async () => {
    const body = pvc("");
    body.metadata = { generateName: "claim-" };
    const r = await call(api.url, "POST", pvcs, body);
    assert.equal(r.status, 201);
    assert.equal(r.body.metadata.name, "claim-bdhln");
    assert.equal(r.body.metadata.generateName, "claim-");
  });

  it("rejects a missing name with 422 Invalid", async () => {
    const body = pvc("");
    body.metadata = {};
    const r = await call(api.url, "POST", pvcs, body);
    assert.equal(r.status, 422);
    assert.equal(asStatus(r).reason, "Invalid");
    assert.equal(
      asStatus(r).message,
      'PersistentVolumeClaim "" is invalid: metadata.name: Required value: name or generateName is required',
    );
    assert.equal(asStatus(r).details?.causes?.[0]?.field, "metadata.name");
  });

  it("rejects an invalid name and a claim without access modes with 422", async () => {
    const bad = await call(api.url, "POST", pvcs, pvc("Upper_Case"));
    assert.equal(bad.status, 422);
    const noModes = pvc("no-modes");
    (noModes.spec as Record<string, unknown>).accessModes = [];
    const r = await call(api.url, "POST", pvcs, noModes);
    assert.equal(r.status, 422);
    assert.match(asStatus(r).message!, /spec\.accessModes: Required value/);
  });

  it("rejects a namespace that differs from the path with 400 BadRequest", async () => {
    const body = pvc("elsewhere");
    body.metadata.namespace = "kube-system";
    const r = await call(api.url, "POST", pvcs, body);
    assert.equal(r.status, 400);
    assert.equal(asStatus(r).reason, "BadRequest");
    assert.equal(
      asStatus(r).message,
      "the namespace of the provided object does not match the namespace sent on the request",
    );
  });

  it("answers 404 for a namespace that does not exist", async () => {
    const r = await call(
      api.url,
      "POST",
      "/api/v1/namespaces/nowhere/persistentvolumeclaims",
      pvc("a"),
    );
    assert.equal(r.status, 404);
    assert.equal(asStatus(r).message, 'namespaces "nowhere" not found');
  });

  it("answers 400 to a body of another kind", async () => {
    const r = await call(api.url, "POST", pvs, pvc("wrong-kind"));
    assert.equal(r.status, 400);
  });

  it("updates with the current resourceVersion and answers 409 Conflict to a stale one", async () => {
    const created = (await call(api.url, "POST", pvcs, pvc("occ"))).body;
    const first = structuredClone(created);
    first.metadata.labels = { a: "1" };
    const ok = await call(api.url, "PUT", `${pvcs}/occ`, first);
    assert.equal(ok.status, 200);
    assert.notEqual(ok.body.metadata.resourceVersion, created.metadata.resourceVersion);
    assert.deepEqual(ok.body.metadata.labels, { a: "1" });
    const stale = structuredClone(created);
    stale.metadata.labels = { a: "2" };
    const r = await call(api.url, "PUT", `${pvcs}/occ`, stale);
    assert.equal(r.status, 409);
    assert.deepEqual(r.body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message:
        'Operation cannot be fulfilled on persistentvolumeclaims "occ": the object has been modified; please apply your changes to the latest version and try again',
      reason: "Conflict",
      details: { name: "occ", kind: "persistentvolumeclaims" },
      code: 409,
    });
  });

  it("allows an update without resourceVersion (unconditional)", async () => {
    const created = (await call(api.url, "POST", pvcs, pvc("uncond"))).body;
    const next = structuredClone(created);
    delete next.metadata.resourceVersion;
    next.metadata.annotations = { x: "y" };
    const r = await call(api.url, "PUT", `${pvcs}/uncond`, next);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.metadata.annotations, { x: "y" });
  });

  it("answers 404 to an update of a missing object and 400 to a name mismatch", async () => {
    const missing = await call(api.url, "PUT", `${pvcs}/ghost`, pvc("ghost"));
    assert.equal(missing.status, 404);
    const created = (await call(api.url, "POST", pvcs, pvc("named"))).body;
    const mismatch = await call(api.url, "PUT", `${pvcs}/other`, created);
    assert.equal(mismatch.status, 400);
    assert.equal(
      asStatus(mismatch).message,
      "the name of the object (named) does not match the name on the URL (other)",
    );
  });

  it("writes nothing for an update that changes nothing", async () => {
    const created = (await call(api.url, "POST", pvcs, pvc("noop"))).body;
    const before = api.resourceVersion;
    const r = await call(api.url, "PUT", `${pvcs}/noop`, created);
    assert.equal(r.status, 200);
    assert.equal(r.body.metadata.resourceVersion, created.metadata.resourceVersion);
    assert.equal(api.resourceVersion, before);
  });

  it("keeps status on a main-resource update, and keeps spec (not metadata) on a /status write", async () => {
    const created = (await call(api.url, "POST", pvs, pv("pv-sub"))).body;
    const withStatus = structuredClone(created);
    withStatus.status = { phase: "Available" };
    (withStatus.spec as Record<string, unknown>).mountOptions = ["ro"];
    const main = await call(api.url, "PUT", `${pvs}/pv-sub`, withStatus);
    assert.equal(main.status, 200);
    assert.equal((main.body.status as { phase: string }).phase, "Pending");
    assert.deepEqual((main.body.spec as { mountOptions: string[] }).mountOptions, ["ro"]);

    const statusWrite = structuredClone(main.body);
    statusWrite.status = { phase: "Available" };
    (statusWrite.spec as Record<string, unknown>).mountOptions = ["rw"];
    statusWrite.metadata.labels = { ignored: "yes" };
    const sub = await call(api.url, "PUT", `${pvs}/pv-sub/status`, statusWrite);
    assert.equal(sub.status, 200);
    assert.equal((sub.body.status as { phase: string }).phase, "Available");
    assert.equal(
      (sub.body.status as { lastPhaseTransitionTime: string }).lastPhaseTransitionTime,
      "2026-01-02T03:04:05Z",
    );
    assert.deepEqual((sub.body.spec as { mountOptions: string[] }).mountOptions, ["ro"]);
    // PersistentVolume's status strategy resets only spec: metadata changes are saved.
    assert.deepEqual(sub.body.metadata.labels, { ignored: "yes" });

    const got = await call(api.url, "GET", `${pvs}/pv-sub/status`);
    assert.equal((got.body.status as { phase: string }).phase, "Available");
  });

  it("keeps the stored metadata on a VolumeAttachment /status write", async () => {
    const path = "/apis/storage.k8s.io/v1/volumeattachments";
    const created = (
      await call(api.url, "POST", path, {
        apiVersion: "storage.k8s.io/v1",
        kind: "VolumeAttachment",
        metadata: { name: "va" },
        spec: { attacher: "x.example.com", nodeName: "n", source: { persistentVolumeName: "p" } },
        status: { attached: true },
      })
    ).body;
    assert.deepEqual(created.status, { attached: false });
    const r = await call(api.url, "PUT", `${path}/va/status`, {
      ...created,
      metadata: { ...created.metadata, labels: { dropped: "yes" } },
      status: { attached: true },
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.metadata.labels, undefined);
    assert.deepEqual(r.body.status, { attached: true });
  });

  it("answers list items of built-in kinds without apiVersion and kind", async () => {
    await call(api.url, "POST", pvcs, pvc("listed"));
    const r = await call<KubeList<KubeObject>>(api.url, "GET", pvcs);
    assert.equal(r.body.kind, "PersistentVolumeClaimList");
    assert.ok(r.body.items.length > 0);
    for (const item of r.body.items) {
      assert.equal(item.apiVersion, undefined);
      assert.equal(item.kind, undefined);
    }
  });

  it("writes quantities in canonical form and answers 400 to a malformed one", async () => {
    const ok = await call(
      api.url,
      "POST",
      pvcs,
      pvc("canonical", {
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1024Mi" } } },
      }),
    );
    assert.equal(ok.status, 201);
    assert.deepEqual((ok.body.spec as { resources: unknown }).resources, {
      requests: { storage: "1Gi" },
    });
    const bad = await call(
      api.url,
      "POST",
      pvcs,
      pvc("malformed", {
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gx" } } },
      }),
    );
    assert.equal(bad.status, 400);
    assert.equal(
      asStatus(bad).message,
      `PersistentVolumeClaim in version "v1" cannot be handled as a PersistentVolumeClaim: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`,
    );
  });

  it("leaves out emptied labels, annotations and finalizers", async () => {
    const created = (
      await call(
        api.url,
        "POST",
        pvcs,
        pvc("empties", { metadata: { name: "empties", labels: {}, finalizers: [] } }),
      )
    ).body;
    assert.equal(created.metadata.labels, undefined);
    assert.equal(created.metadata.finalizers, undefined);
    const r = await call(
      api.url,
      "PATCH",
      `${pvcs}/empties`,
      { metadata: { annotations: { a: "1" } } },
      { "content-type": "application/merge-patch+json" },
    );
    assert.deepEqual(r.body.metadata.annotations, { a: "1" });
    const emptied = await call(
      api.url,
      "PATCH",
      `${pvcs}/empties`,
      { metadata: { annotations: { a: null } } },
      { "content-type": "application/merge-patch+json" },
    );
    assert.equal(emptied.body.metadata.annotations, undefined);
  });

  it("answers 422 to a change of a claim's spec, but lets a first volumeName through", async () => {
    await call(api.url, "POST", pvcs, pvc("fixed"));
    const patchClaim = (p: unknown) =>
      call(api.url, "PATCH", `${pvcs}/fixed`, p, {
        "content-type": "application/merge-patch+json",
      });
    const changed = await patchClaim({ spec: { storageClassName: "other" } });
    assert.equal(changed.status, 422);
    assert.match(
      asStatus(changed).message!,
      /^PersistentVolumeClaim "fixed" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n/,
    );
    assert.equal((await patchClaim({ spec: { volumeName: "pv-1" } })).status, 200);
    assert.equal((await patchClaim({ spec: { volumeName: "pv-2" } })).status, 422);
  });

  it("serves events with the fields Go always serialises", async () => {
    const path = "/api/v1/namespaces/default/events";
    const r = await call(api.url, "POST", path, {
      metadata: { name: "e" },
      involvedObject: { kind: "Pod", name: "p" },
      reason: "R",
      firstTimestamp: "2026-01-01T01:00:00+01:00",
    });
    assert.equal(r.status, 201);
    assert.equal(r.body.firstTimestamp, "2026-01-01T00:00:00Z");
    assert.equal(r.body.lastTimestamp, null);
    assert.equal(r.body.eventTime, null);
    assert.deepEqual(r.body.source, {});
    assert.equal(r.body.reportingComponent, "");
    const v1 = await call(api.url, "GET", "/apis/events.k8s.io/v1/namespaces/default/events/e");
    assert.deepEqual(v1.body.deprecatedSource, {});
    assert.equal(v1.body.deprecatedFirstTimestamp, "2026-01-01T00:00:00Z");
    assert.equal(v1.body.reportingController, undefined);
    const badTime = await call(api.url, "POST", path, {
      metadata: { name: "bad" },
      involvedObject: { kind: "Pod", name: "p" },
      eventTime: "2026-01-01T00:00:00Z",
    });
    assert.equal(badTime.status, 400);
  });

  it("answers 404 to /status of a resource without a status subresource", async () => {
    const r = await call(api.url, "GET", "/apis/storage.k8s.io/v1/storageclasses/x/status");
    assert.equal(r.status, 404);
  });

  it("applies StorageClass and Secret defaults", async () => {
    const sc = await call(api.url, "POST", "/apis/storage.k8s.io/v1/storageclasses", {
      apiVersion: "storage.k8s.io/v1",
      kind: "StorageClass",
      metadata: { name: "fast" },
      provisioner: "hostpath.csi.k8s.io",
    });
    assert.equal(sc.status, 201);
    assert.equal(sc.body.reclaimPolicy, "Delete");
    assert.equal(sc.body.volumeBindingMode, "Immediate");
    const secret = await call(api.url, "POST", "/api/v1/namespaces/default/secrets", {
      metadata: { name: "s" },
      stringData: { password: "hünter2" },
    });
    assert.equal(secret.status, 201);
    assert.equal(secret.body.type, "Opaque");
    assert.deepEqual(secret.body.data, {
      password: btoa(String.fromCharCode(...new TextEncoder().encode("hünter2"))),
    });
    assert.equal(secret.body.stringData, undefined);
  });

  it("keeps metadata.generation for custom resources and bumps it on spec changes only", async () => {
    const path = "/apis/snapshot.storage.k8s.io/v1/namespaces/default/volumesnapshots";
    const created = await call(api.url, "POST", path, {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshot",
      metadata: { name: "snap" },
      spec: { source: { persistentVolumeClaimName: "a" } },
    });
    assert.equal(created.body.metadata.generation, 1);
    const labelled = structuredClone(created.body);
    labelled.metadata.labels = { l: "1" };
    const r1 = await call(api.url, "PUT", `${path}/snap`, labelled);
    assert.equal(r1.body.metadata.generation, 1);
    const changed = structuredClone(r1.body);
    (changed.spec as Record<string, unknown>).volumeSnapshotClassName = "c";
    const r2 = await call(api.url, "PUT", `${path}/snap`, changed);
    assert.equal(r2.body.metadata.generation, 2);
  });

  it("requires a resourceVersion on updates of custom resources", async () => {
    const path = "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents";
    const created = await call(api.url, "POST", path, {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshotContent",
      metadata: { name: "content" },
      spec: {
        driver: "d",
        deletionPolicy: "Delete",
        source: { volumeHandle: "h" },
        volumeSnapshotRef: {},
      },
    });
    assert.equal(created.status, 201);
    const next = structuredClone(created.body);
    delete next.metadata.resourceVersion;
    const r = await call(api.url, "PUT", `${path}/content`, next);
    assert.equal(r.status, 422);
    assert.equal(
      asStatus(r).message,
      'volumesnapshotcontents.snapshot.storage.k8s.io "content" is invalid: metadata.resourceVersion: Invalid value: 0: must be specified for an update',
    );
  });

  it("does not store anything on dryRun=All", async () => {
    const r = await call(api.url, "POST", `${pvcs}?dryRun=All`, pvc("dry"));
    assert.equal(r.status, 201);
    assert.equal(r.body.metadata.name, "dry");
    assert.equal((await call(api.url, "GET", `${pvcs}/dry`)).status, 404);
  });

  it("deletes an object without finalizers and answers it", async () => {
    await call(api.url, "POST", pvcs, pvc("doomed"));
    const r = await call(api.url, "DELETE", `${pvcs}/doomed`);
    assert.equal(r.status, 200);
    assert.equal(r.body.metadata.name, "doomed");
    assert.equal((await call(api.url, "GET", `${pvcs}/doomed`)).status, 404);
    assert.equal((await call(api.url, "DELETE", `${pvcs}/doomed`)).status, 404);
  });

  it("lists across namespaces and within one, with the list's resourceVersion", async () => {
    await call(api.url, "POST", "/api/v1/namespaces", { metadata: { name: "team-a" } });
    await call(api.url, "POST", "/api/v1/namespaces/team-a/persistentvolumeclaims", pvc("in-a"));
    const all = await call<KubeList<KubeObject>>(api.url, "GET", "/api/v1/persistentvolumeclaims");
    assert.equal(all.body.kind, "PersistentVolumeClaimList");
    assert.equal(all.body.metadata.resourceVersion, api.resourceVersion);
    assert.ok(all.body.items.some((o) => o.metadata.namespace === "team-a"));
    assert.ok(all.body.items.some((o) => o.metadata.namespace === "default"));
    const inA = await call<KubeList<KubeObject>>(
      api.url,
      "GET",
      "/api/v1/namespaces/team-a/persistentvolumeclaims",
    );
    assert.deepEqual(
      inA.body.items.map((o) => o.metadata.name),
      ["in-a"],
    );
  });

  it("deletes a namespace with its objects", async () => {
    await call(api.url, "POST", "/api/v1/namespaces", { metadata: { name: "gone" } });
    await call(api.url, "POST", "/api/v1/namespaces/gone/persistentvolumeclaims", pvc("c"));
    const r = await call(api.url, "DELETE", "/api/v1/namespaces/gone");
    assert.equal(r.status, 200);
    assert.equal(api.get(resources.persistentVolumeClaims, "c", "gone"), undefined);
    assert.equal((await call(api.url, "GET", "/api/v1/namespaces/gone")).status, 404);
  });

  it("answers 405 to a create on an all-namespaces path and 404 to an unknown resource", async () => {
    const r = await call(api.url, "POST", "/api/v1/persistentvolumeclaims", pvc("x"));
    assert.equal(r.status, 405);
    assert.equal(asStatus(r).reason, "MethodNotAllowed");
    assert.equal((await call(api.url, "GET", "/api/v1/widgets")).status, 404);
  });

  it("answers 415 to a YAML body and to server-side apply", async () => {
    const yaml = await call(api.url, "POST", pvcs, "kind: PersistentVolumeClaim", {
      "content-type": "application/yaml",
    });
    assert.equal(yaml.status, 415);
    await call(api.url, "POST", pvcs, pvc("ssa"));
    const apply = await call(api.url, "PATCH", `${pvcs}/ssa`, "{}", {
      "content-type": "application/apply-patch+yaml",
    });
    assert.equal(apply.status, 415);
    assert.equal(asStatus(apply).reason, "UnsupportedMediaType");
  });

  it("gives in-process access: put(), get(), objects() and remove()", async () => {
    const stored = api.put(pv("seeded", { status: { phase: "Bound" } }));
    assert.equal((stored.status as { phase: string }).phase, "Bound");
    assert.match(stored.metadata.resourceVersion!, /^\d+$/);
    const viaHttp = await call(api.url, "GET", `${pvs}/seeded`);
    assert.deepEqual(viaHttp.body, stored);
    assert.ok(api.objects(resources.persistentVolumes).some((o) => o.metadata.name === "seeded"));
    assert.equal(api.get(resources.persistentVolumes, "seeded")?.metadata.uid, stored.metadata.uid);
    assert.equal(api.remove(resources.persistentVolumes, "seeded"), true);
    assert.equal(api.remove(resources.persistentVolumes, "seeded"), false);
    assert.equal((await call(api.url, "GET", `${pvs}/seeded`)).status, 404);
  });

  it("waitFor() resolves once a write makes the check true", async () => {
    const waiting = api.waitFor(() => api.get(resources.persistentVolumes, "later"));
    await call(api.url, "POST", pvs, pv("later"));
    const found = await waiting;
    assert.equal(found.metadata.name, "later");
  });
});
