import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ApiServer, startApiServer } from "../../../src/dev/apiserver/mod.ts";
import type { KubeList, KubeObject, Status } from "../../../src/kube/objects.ts";
import { FakeClock } from "../../support/fake-clock.ts";
import { call, pvc, pvcs } from "./support.ts";

type List = KubeList<KubeObject>;

const names = (l: List) => l.items.map((o) => o.metadata.name);

describe("startApiServer() list", () => {
  let api: ApiServer;

  before(async () => {
    api = await startApiServer({ clock: new FakeClock() });
    const labels: Record<string, Record<string, string>> = {
      a: { app: "web", tier: "front" },
      b: { app: "web", tier: "back" },
      c: { app: "db" },
      d: { version: "3" },
      e: { version: "10" },
    };
    for (const name of ["c", "a", "e", "b", "d"]) {
      const body = pvc(name);
      body.metadata.labels = labels[name];
      assert.equal((await call(api.url, "POST", pvcs, body)).status, 201);
    }
  });
  after(() => api.close());

  const list = async (query: string) => {
    const r = await call<List>(api.url, "GET", `${pvcs}?${query}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  };

  it("returns items sorted by name, like etcd", async () => {
    assert.deepEqual(names(await list("")), ["a", "b", "c", "d", "e"]);
  });

  for (const [selector, expected] of [
    ["app=web", ["a", "b"]],
    ["app==web,tier=back", ["b"]],
    ["app!=web", ["c", "d", "e"]],
    ["app in (web,db)", ["a", "b", "c"]],
    ["app notin (web)", ["c", "d", "e"]],
    ["tier", ["a", "b"]],
    ["!app", ["d", "e"]],
    ["version>5", ["e"]],
    ["version<5", ["d"]],
  ] as const) {
    it(`selects by label selector ${selector}`, async () => {
      assert.deepEqual(
        names(await list(`labelSelector=${encodeURIComponent(selector)}`)),
        expected,
      );
    });
  }

  it("selects by field selector on metadata.name and metadata.namespace", async () => {
    assert.deepEqual(names(await list("fieldSelector=metadata.name%3Dc")), ["c"]);
    assert.deepEqual(
      names(await list("fieldSelector=metadata.name!%3Dc,metadata.namespace%3Ddefault")),
      ["a", "b", "d", "e"],
    );
    assert.deepEqual(names(await list("fieldSelector=metadata.namespace%3Dother")), []);
  });

  it("answers 400 to a malformed label selector", async () => {
    const r = await call(api.url, "GET", `${pvcs}?labelSelector=${encodeURIComponent("a in (")}`);
    assert.equal(r.status, 400);
    assert.equal((r.body as Status).reason, "BadRequest");
  });

  it("pages with limit and continue at the first page's resourceVersion", async () => {
    const first = await list("limit=2");
    assert.deepEqual(names(first), ["a", "b"]);
    assert.equal(first.metadata.remainingItemCount, 3);
    assert.ok(first.metadata.continue);
    const rv = first.metadata.resourceVersion;
    // Changes after the first page are not seen by the following pages.
    await call(api.url, "POST", pvcs, pvc("bb"));
    await call(api.url, "DELETE", `${pvcs}/d`);
    const second = await list(`limit=2&continue=${encodeURIComponent(first.metadata.continue!)}`);
    assert.deepEqual(names(second), ["c", "d"]);
    assert.equal(second.metadata.resourceVersion, rv);
    const third = await list(`limit=2&continue=${encodeURIComponent(second.metadata.continue!)}`);
    assert.deepEqual(names(third), ["e"]);
    assert.equal(third.metadata.continue, undefined);
    assert.equal(third.metadata.remainingItemCount, undefined);
    // A fresh list sees the changes.
    assert.deepEqual(names(await list("")), ["a", "b", "bb", "c", "e"]);
    await call(api.url, "DELETE", `${pvcs}/bb`);
    const d = pvc("d");
    d.metadata.labels = { version: "3" };
    await call(api.url, "POST", pvcs, d);
  });

  it("omits remainingItemCount when a selector is used", async () => {
    const page = await list("limit=1&labelSelector=app");
    assert.deepEqual(names(page), ["a"]);
    assert.ok(page.metadata.continue);
    assert.equal(page.metadata.remainingItemCount, undefined);
  });

  it("answers 410 Expired with a fresh continue token once the first page's version is compacted", async () => {
    const first = await list("limit=2");
    await call(api.url, "POST", pvcs, pvc("later"));
    api.compact();
    const r = await call<Status>(
      api.url,
      "GET",
      `${pvcs}?limit=2&continue=${encodeURIComponent(first.metadata.continue!)}`,
    );
    assert.equal(r.status, 410);
    assert.equal(r.body.kind, "Status");
    assert.equal(r.body.reason, "Expired");
    assert.equal(r.body.code, 410);
    assert.match(r.body.message!, /^The provided continue parameter is too old/);
    const fresh = r.body.metadata?.continue;
    assert.ok(fresh, "the Status carries a continue token for an inconsistent continuation");
    const rest = await list(`limit=10&continue=${encodeURIComponent(fresh)}`);
    assert.deepEqual(names(rest), ["c", "d", "e", "later"]);
    await call(api.url, "DELETE", `${pvcs}/later`);
  });

  it("answers 400 to a malformed continue token and to continue with a resourceVersion", async () => {
    assert.equal((await call(api.url, "GET", `${pvcs}?continue=garbage`)).status, 400);
    const first = await list("limit=1");
    const r = await call(
      api.url,
      "GET",
      `${pvcs}?continue=${encodeURIComponent(first.metadata.continue!)}&resourceVersion=5`,
    );
    assert.equal(r.status, 400);
  });

  it("lists at an exact older resourceVersion, and 410 once it is compacted", async () => {
    const before = (await list("")).metadata.resourceVersion!;
    await call(api.url, "POST", pvcs, pvc("new-one"));
    const exact = await list(`resourceVersion=${before}&resourceVersionMatch=Exact`);
    assert.ok(!names(exact).includes("new-one"));
    assert.equal(exact.metadata.resourceVersion, before);
    api.compact();
    const r = await call<Status>(
      api.url,
      "GET",
      `${pvcs}?resourceVersion=${before}&resourceVersionMatch=Exact`,
    );
    assert.equal(r.status, 410);
    assert.equal(r.body.reason, "Expired");
    await call(api.url, "DELETE", `${pvcs}/new-one`);
  });

  it("answers Table rows when kubectl asks for them", async () => {
    const r = await call<{
      kind: string;
      apiVersion: string;
      columnDefinitions: { name: string; priority: number }[];
      rows: { cells: unknown[]; object: KubeObject }[];
    }>(api.url, "GET", pvcs, undefined, {
      accept:
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
    });
    assert.equal(r.body.kind, "Table");
    assert.equal(r.body.apiVersion, "meta.k8s.io/v1");
    assert.deepEqual(
      r.body.columnDefinitions.filter((c) => c.priority === 0).map((c) => c.name),
      [
        "Name",
        "Status",
        "Volume",
        "Capacity",
        "Access Modes",
        "StorageClass",
        "VolumeAttributesClass",
        "Age",
      ],
    );
    const row = r.body.rows[0]!;
    assert.deepEqual(row.cells.slice(0, 6), ["a", "Pending", "", "", "", "fast"]);
    assert.equal(row.object.kind, "PartialObjectMetadata");
    assert.equal(row.object.metadata.name, "a");
  });

  it("answers PartialObjectMetadataList for metadata-only clients", async () => {
    const r = await call<List>(api.url, "GET", pvcs, undefined, {
      accept: "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    });
    assert.equal(r.body.kind, "PartialObjectMetadataList");
    assert.equal(r.body.items[0]!.kind, "PartialObjectMetadata");
    assert.equal(r.body.items[0]!.spec, undefined);
  });

  it("answers 406 to a client that accepts only protobuf", async () => {
    const r = await call(api.url, "GET", pvcs, undefined, {
      accept: "application/vnd.kubernetes.protobuf",
    });
    assert.equal(r.status, 406);
  });
});
