import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ApiServer, startApiServer } from "../../../src/dev/apiserver/mod.ts";
import { call } from "./support.ts";

interface ApiResource {
  name: string;
  kind: string;
  namespaced: boolean;
  verbs: string[];
  shortNames?: string[];
}

describe("startApiServer() discovery", () => {
  let api: ApiServer;
  before(async () => {
    api = await startApiServer();
  });
  after(() => api.close());

  it("serves /api with the core version", async () => {
    const r = await call<{ kind: string; versions: string[] }>(api.url, "GET", "/api");
    assert.equal(r.body.kind, "APIVersions");
    assert.deepEqual(r.body.versions, ["v1"]);
  });

  it("serves /apis with every group the provisioner uses, and kubectl auth can-i's", async () => {
    const r = await call<{
      kind: string;
      groups: { name: string; preferredVersion: { groupVersion: string } }[];
    }>(api.url, "GET", "/apis");
    assert.equal(r.body.kind, "APIGroupList");
    assert.deepEqual(r.body.groups.map((g) => g.name).sort(), [
      "authorization.k8s.io",
      "coordination.k8s.io",
      "events.k8s.io",
      "snapshot.storage.k8s.io",
      "storage.k8s.io",
    ]);
    const storage = r.body.groups.find((g) => g.name === "storage.k8s.io");
    assert.equal(storage?.preferredVersion.groupVersion, "storage.k8s.io/v1");
    const group = await call<{ kind: string; name: string }>(
      api.url,
      "GET",
      "/apis/storage.k8s.io",
    );
    assert.equal(group.body.kind, "APIGroup");
    assert.equal(group.body.name, "storage.k8s.io");
  });

  it("lists resources with kinds, verbs, scope, short names and status subresources", async () => {
    const core = await call<{ kind: string; groupVersion: string; resources: ApiResource[] }>(
      api.url,
      "GET",
      "/api/v1",
    );
    assert.equal(core.body.kind, "APIResourceList");
    assert.equal(core.body.groupVersion, "v1");
    const byName = new Map(core.body.resources.map((r) => [r.name, r]));
    assert.deepEqual(byName.get("persistentvolumeclaims")?.shortNames, ["pvc"]);
    assert.equal(byName.get("persistentvolumeclaims")?.namespaced, true);
    assert.deepEqual(byName.get("persistentvolumes")?.shortNames, ["pv"]);
    assert.equal(byName.get("persistentvolumes")?.namespaced, false);
    assert.ok(byName.get("persistentvolumes")?.verbs.includes("watch"));
    assert.deepEqual(byName.get("persistentvolumes/status")?.verbs, ["get", "patch", "update"]);
    assert.equal(byName.get("namespaces")?.kind, "Namespace");
    const storage = await call<{ resources: ApiResource[] }>(
      api.url,
      "GET",
      "/apis/storage.k8s.io/v1",
    );
    const sc = storage.body.resources.find((r) => r.name === "storageclasses");
    assert.deepEqual(sc?.shortNames, ["sc"]);
    assert.equal(sc?.kind, "StorageClass");
    assert.ok(storage.body.resources.some((r) => r.name === "volumeattachments/status"));
    assert.equal((await call(api.url, "GET", "/apis/example.com/v1")).status, 404);
  });

  it("serves /version and health endpoints", async () => {
    const v = await call<{ major: string; minor: string; gitVersion: string }>(
      api.url,
      "GET",
      "/version",
    );
    assert.equal(v.body.major, "1");
    assert.match(v.body.gitVersion, /^v1\.\d+\.\d+/);
    const health = await call(api.url, "GET", "/readyz");
    assert.equal(health.status, 200);
    assert.equal(health.body, "ok");
  });

  it("serves a minimal OpenAPI v3 that declares fieldValidation, and 404 for v2", async () => {
    const index = await call<{ paths: Record<string, { serverRelativeURL: string }> }>(
      api.url,
      "GET",
      "/openapi/v3",
    );
    const core = index.body.paths["api/v1"];
    assert.ok(core);
    const doc = await call<{
      paths: Record<
        string,
        { patch?: { parameters: { name: string }[]; "x-kubernetes-group-version-kind": unknown } }
      >;
    }>(api.url, "GET", core.serverRelativeURL);
    const pvcPath = doc.body.paths["/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"];
    assert.deepEqual(pvcPath?.patch?.["x-kubernetes-group-version-kind"], {
      group: "",
      version: "v1",
      kind: "PersistentVolumeClaim",
    });
    assert.ok(pvcPath?.patch?.parameters.some((p) => p.name === "fieldValidation"));
    assert.equal((await call(api.url, "GET", "/openapi/v2")).status, 404);
  });

  it("writes a kubeconfig pointing at the server", () => {
    const config = api.kubeconfig({ namespace: "team" });
    assert.match(config, new RegExp(`server: "${api.url}"`));
    assert.match(config, /namespace: "team"/);
    assert.match(config, /current-context: "csi-provisioner-dev"/);
  });
});
