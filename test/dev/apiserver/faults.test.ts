import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { Status } from "../../../src/kube/objects.ts";
import { resources } from "../../../src/kube/resources.ts";
import { type ApiServer, startApiServer } from "../../support/apiserver.ts";
import { FakeClock } from "../../support/fake-clock.ts";
import { call, openWatch, pv, pvc, pvcs, pvs, within } from "./support.ts";

describe("startApiServer() fault injection", () => {
  let api: ApiServer;
  let clock: FakeClock;

  beforeEach(async () => {
    clock = new FakeClock();
    api = await startApiServer({ clock });
  });
  afterEach(() => api.close());

  it("fails the next matching request with a 500 Status, then serves normally", async () => {
    api.failNext({ verb: "create", resource: resources.persistentVolumes, status: 500 });
    const other = await call(api.url, "POST", pvcs, pvc("unaffected"));
    assert.equal(other.status, 201);
    const failed = await call(api.url, "POST", pvs, pv("a"));
    assert.equal(failed.status, 500);
    assert.deepEqual(failed.body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: "Injected fault: InternalError",
      reason: "InternalError",
      code: 500,
    });
    assert.equal(api.get(resources.persistentVolumes, "a"), undefined);
    assert.equal((await call(api.url, "POST", pvs, pv("a"))).status, 201);
  });

  it("answers 429 with Retry-After for `count` requests", async () => {
    api.failNext({
      method: "GET",
      pathPrefix: "/api/v1/persistentvolumes",
      status: 429,
      retryAfterSeconds: 7,
      count: 2,
    });
    for (let i = 0; i < 2; i++) {
      const r = await call(api.url, "GET", pvs);
      assert.equal(r.status, 429);
      assert.equal(r.headers.get("retry-after"), "7");
      assert.equal((r.body as Status).reason, "TooManyRequests");
      assert.equal((r.body as Status).details?.retryAfterSeconds, 7);
    }
    assert.equal((await call(api.url, "GET", pvs)).status, 200);
  });

  it("answers a watch with an HTTP 410, or in-band with an ERROR event", async () => {
    api.failNext({ watch: true, status: 410 });
    const http = await call(api.url, "GET", `${pvcs}?watch=1`);
    assert.equal(http.status, 410);
    assert.equal((http.body as Status).reason, "Expired");

    api.failNext({ watch: true, status: 410, inBand: true });
    const w = await openWatch(api.url, `${pvcs}?watch=1&resourceVersion=${api.resourceVersion}`);
    assert.equal(w.status, 200);
    const ev = await w.next();
    assert.equal(ev.type, "ERROR");
    assert.equal((ev.object as unknown as Status).code, 410);
    assert.equal((ev.object as unknown as Status).reason, "Expired");
    assert.equal(await w.ended(), "end");
  });

  it("does not fail a list when the rule is for watches", async () => {
    api.failNext({ resource: "persistentvolumeclaims", watch: true, status: 500 });
    assert.equal((await call(api.url, "GET", pvcs)).status, 200);
    assert.equal((await call(api.url, "GET", `${pvcs}?watch=true&timeoutSeconds=1`)).status, 500);
  });

  it("clearFaults() drops pending failures", async () => {
    api.failNext({ status: 503, count: Number.POSITIVE_INFINITY });
    assert.equal((await call(api.url, "GET", "/version")).status, 503);
    api.clearFaults();
    assert.equal((await call(api.url, "GET", "/version")).status, 200);
  });

  it("delays requests by latency() on the injected clock", async () => {
    api.latency(250);
    let done = false;
    const pending = call(api.url, "GET", pvs).then((r) => {
      done = true;
      return r;
    });
    await within(clock.waitForSleepers(1));
    assert.equal(done, false);
    await clock.advance(250);
    assert.equal((await within(pending)).status, 200);
    api.latency(0);
    assert.equal((await call(api.url, "GET", pvs)).status, 200);
  });

  it("counts requests and writes by verb, resource and subresource", async () => {
    api.requests.reset();
    api.writes.reset();
    api.failNext({ verb: "update", status: 500 });
    const created = (await call(api.url, "POST", pvcs, pvc("c"))).body;
    await call(api.url, "GET", `${pvcs}/c`);
    await call(api.url, "GET", pvcs);
    await call(api.url, "PUT", `${pvcs}/c`, created);
    await call(api.url, "PUT", `${pvcs}/c/status`, created);
    await call(api.url, "DELETE", `${pvcs}/c`);
    assert.equal(api.writes.total, 4, "failed writes count too");
    assert.equal(api.writes.count({ verb: "update" }), 2);
    assert.equal(api.writes.count({ verb: "update", subresource: "" }), 1);
    assert.equal(
      api.writes.count({ resource: resources.persistentVolumeClaims, subresource: "status" }),
      1,
    );
    assert.equal(api.writes.count({ resource: resources.persistentVolumes }), 0);
    assert.deepEqual(api.writes.snapshot(), {
      "create persistentvolumeclaims": 1,
      "delete persistentvolumeclaims": 1,
      "update persistentvolumeclaims": 1,
      "update persistentvolumeclaims/status": 1,
    });
    assert.equal(api.requests.count({ verb: "get" }), 1);
    assert.equal(api.requests.count({ verb: "list" }), 1);
    assert.equal(api.requests.total, 6);
  });
});
