import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import {
  capacityFitsRequest,
  createNodeOwnership,
  type NodeOwnershipOptions,
  ownershipDelay,
  ownershipPollInterval,
} from "../../src/controller/node-ownership.ts";
import { type CsiDriver, connectDriver } from "../../src/csi/client.ts";
import { CreateVolumeRequestSchema } from "../../src/gen/csi/v1/csi_pb.js";
import type { KubeApi } from "../../src/kube/api.ts";
import { noAuth } from "../../src/kube/auth.ts";
import { createKubeApi } from "../../src/kube/client.ts";
import { Informer } from "../../src/kube/informer.ts";
import type { PersistentVolumeClaim, StorageClass } from "../../src/kube/objects.ts";
import { projectPersistentVolumeClaim } from "../../src/kube/projections.ts";
import { resources } from "../../src/kube/resources.ts";
import { KubeTransport } from "../../src/kube/transport.ts";
import { ANN_SELECTED_NODE } from "../../src/provision/should-provision.ts";
import { nullLogger } from "../../src/util/log.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { type FakeDriver, startFakeDriver } from "../support/fake-driver.ts";
import { within } from "../support/wait.ts";

/** Settles `p` into a value so a test can check whether it finished yet. */
function track<T>(p: Promise<T>): { settled: () => boolean; promise: Promise<T> } {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  return { settled: () => done, promise: p };
}

const immediate: StorageClass = {
  apiVersion: "storage.k8s.io/v1",
  kind: "StorageClass",
  metadata: { name: "local" },
  provisioner: "local.csi.example.com",
  volumeBindingMode: "Immediate",
};
const lateBinding: StorageClass = { ...immediate, volumeBindingMode: "WaitForFirstConsumer" };

function claim(name: string, annotations: Record<string, string> = {}): PersistentVolumeClaim {
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name, namespace: "default", annotations },
    spec: {
      accessModes: ["ReadWriteOnce"],
      storageClassName: "local",
      resources: { requests: { storage: "1Gi" } },
    },
    status: { phase: "Pending" },
  };
}

const BASE = 20_000;
const MAX = 60_000;
const STEP = ownershipPollInterval(BASE);

describe("ownershipDelay()", () => {
  it("subtracts a random part of the base delay from the exponential delay, floored at 0", () => {
    const cases: [attempts: number, random: number, want: number][] = [
      [0, 0, 20_000],
      [0, 0.5, 10_000],
      [0, 0.999, 20],
      [1, 0, 40_000],
      [1, 0.25, 35_000],
      [2, 0, 60_000],
      [5, 0.5, 50_000],
      [2000, 0, 60_000],
    ];
    for (const [attempts, r, want] of cases) {
      assert.equal(Math.round(ownershipDelay(attempts, BASE, MAX, () => r)), want, `${attempts}`);
    }
    assert.equal(
      ownershipDelay(0, 100, 50, () => 0.9),
      0,
    );
  });
});

describe("ownershipPollInterval()", () => {
  it("checks every hundredth of the base delay, but not more often than every 10 ms", () => {
    assert.equal(ownershipPollInterval(20_000), 200);
    assert.equal(ownershipPollInterval(500), 10);
  });
});

describe("createNodeOwnership()", () => {
  let server: ApiServer;
  let api: KubeApi;
  let clock: FakeClock;
  /** What the informer would say, by UID; tests edit it. */
  let cache: Map<string, PersistentVolumeClaim>;

  before(async () => {
    server = await startApiServer({ clock: new FakeClock(), bookmarkIntervalMs: 0 });
    const transport = new KubeTransport({
      connection: { server: server.url, tls: {}, auth: noAuth, source: "test" },
      version: "test",
      clock: new FakeClock(),
      random: () => 0,
      maxRetries: 0,
      idempotentRetries: 0,
    });
    api = createKubeApi(transport);
  });
  after(async () => {
    await server.close();
  });
  beforeEach(() => {
    clock = new FakeClock();
    cache = new Map();
    server.clearFaults();
  });

  function ownership(o: Partial<NodeOwnershipOptions> = {}) {
    return createNodeOwnership({
      api,
      nodeName: "node-a",
      baseDelayMs: BASE,
      maxDelayMs: MAX,
      clock,
      random: () => 0.5,
      logger: nullLogger,
      getClaim: (uid) => cache.get(uid),
      ...o,
    });
  }

  /** Stores a claim in the API and the fake cache; returns the stored claim. */
  function seed(c: PersistentVolumeClaim): PersistentVolumeClaim {
    const stored = server.put(c);
    cache.set(stored.metadata.uid!, stored);
    return stored;
  }

  function selectedNode(name: string): string | undefined {
    return server.get(resources.persistentVolumeClaims, name, "default")?.metadata.annotations?.[
      ANN_SELECTED_NODE
    ];
  }

  const updates = () =>
    server.writes.count({ verb: "update", resource: resources.persistentVolumeClaims });

  it("provisions a claim that selected this node and ignores one that selected another", async () => {
    const o = ownership();
    const before = updates();
    const mine = seed(claim("mine", { [ANN_SELECTED_NODE]: "node-a" }));
    const theirs = seed(claim("theirs", { [ANN_SELECTED_NODE]: "node-b" }));
    assert.equal(await o.decide(mine, immediate), "provision");
    assert.equal(await o.decide(theirs, immediate), "ignore");
    assert.equal(await o.decide(mine, lateBinding), "provision");
    assert.equal(updates(), before);
    assert.equal(clock.pending, 0);
  });

  it("ignores an unowned claim that waits for its first consumer, or when immediate binding is off", async () => {
    const c = seed(claim("late"));
    const before = updates();
    assert.equal(await ownership().decide(c, lateBinding), "ignore");
    assert.equal(await ownership({ immediateBinding: false }).decide(c, immediate), "ignore");
    assert.equal(updates(), before);
    assert.equal(selectedNode("late"), undefined);
  });

  it("writes this node into an unowned Immediate claim after the jittered delay", async () => {
    const o = ownership();
    const c = seed(claim("grab"));
    const before = updates();
    const decision = track(o.decide(c, immediate));
    await clock.waitForSleepers(1);
    // random 0.5: the first delay is 20 s − 0.5 · 20 s = 10 s.
    await clock.advance(10_000 - STEP);
    assert.equal(decision.settled(), false);
    assert.equal(updates(), before);
    assert.equal(o.attempts(c.metadata.uid!), 1);
    await clock.advance(STEP);
    assert.equal(await within(decision.promise), "ignore");
    assert.equal(selectedNode("grab"), "node-a");
    assert.equal(updates(), before + 1);
    assert.equal(o.attempts(c.metadata.uid!), 0, "the delay is forgotten after success");
    // Other fields of the claim survive the read-modify-write.
    const stored = server.get(resources.persistentVolumeClaims, "grab", "default")!;
    assert.equal(stored.spec.resources?.requests?.storage, "1Gi");
  });

  it("stops waiting as soon as the informer shows another node took the claim", async () => {
    const o = ownership();
    const c = seed(claim("raced"));
    const before = updates();
    const decision = track(o.decide(c, immediate));
    await clock.waitForSleepers(1);
    await clock.advance(STEP * 3);
    assert.equal(decision.settled(), false);
    cache.set(c.metadata.uid!, {
      ...c,
      metadata: { ...c.metadata, annotations: { [ANN_SELECTED_NODE]: "node-b" } },
    });
    await clock.advance(STEP);
    assert.equal(await within(decision.promise), "ignore");
    assert.equal(updates(), before);
    assert.equal(clock.pending, 0, "no poll is left behind");
    assert.equal(o.attempts(c.metadata.uid!), 0);
  });

  it("gives up when the claim is deleted while it waits", async () => {
    const o = ownership();
    const c = seed(claim("vanishing"));
    const decision = track(o.decide(c, immediate));
    await clock.waitForSleepers(1);
    cache.delete(c.metadata.uid!);
    await clock.advance(STEP);
    assert.equal(await within(decision.promise), "ignore");
    assert.equal(selectedNode("vanishing"), undefined);
  });

  it("does not overwrite an owner that appeared in the API but not yet in the informer", async () => {
    const o = ownership({ random: () => 1 });
    const c = seed(claim("stale"));
    // The API already has another owner; the cache (`cache`) does not know yet.
    server.put({
      ...c,
      metadata: { ...c.metadata, annotations: { [ANN_SELECTED_NODE]: "node-b" } },
    });
    const before = updates();
    // random 1: no delay at all.
    assert.equal(await within(o.decide(c, immediate)), "ignore");
    assert.equal(updates(), before);
    assert.equal(selectedNode("stale"), "node-b");
  });

  it("starts over with a longer delay after a conflicting update", async () => {
    const o = ownership({ random: () => 1 });
    const c = seed(claim("conflict"));
    server.failNext({ verb: "update", resource: "persistentvolumeclaims", status: 409 });
    const decision = track(o.decide(c, immediate));
    // Attempt 1: no delay (random 1), then GET and a PUT answered 409.
    // Attempt 2: 40 s − 20 s = 20 s of waiting.
    await within(clock.waitForSleepers(1), 5000, "the second wait");
    assert.equal(o.attempts(c.metadata.uid!), 2);
    assert.equal(selectedNode("conflict"), undefined);
    await clock.advance(20_000 - STEP);
    assert.equal(decision.settled(), false);
    await clock.advance(STEP);
    assert.equal(await within(decision.promise), "ignore");
    assert.equal(selectedNode("conflict"), "node-a");
  });

  it("reports a failed update to the caller and keeps the longer delay", async () => {
    const o = ownership({ random: () => 1 });
    const c = seed(claim("failing"));
    server.failNext({ verb: "update", resource: "persistentvolumeclaims", status: 500 });
    await assert.rejects(within(o.decide(c, immediate)), /500/);
    assert.equal(o.attempts(c.metadata.uid!), 1);
    o.forget(c.metadata.uid!);
    assert.equal(o.attempts(c.metadata.uid!), 0);
  });

  it("asks to retry without writing when this node lacks capacity, and proceeds when the check fails", async () => {
    const c = seed(claim("capacity"));
    const before = updates();
    const seen: string[] = [];
    const full = ownership({
      random: () => 1,
      getCapacity: async (cl, sc) => {
        seen.push(`${cl.metadata.name}/${sc.metadata.name}`);
        return false;
      },
    });
    assert.equal(await within(full.decide(c, immediate)), "retry");
    assert.deepEqual(seen, ["capacity/local"]);
    assert.equal(updates(), before);
    assert.equal(selectedNode("capacity"), undefined);

    const broken = ownership({
      random: () => 1,
      getCapacity: () => Promise.reject(new Error("GetCapacity: Unimplemented")),
    });
    assert.equal(await within(broken.decide(c, immediate)), "ignore");
    assert.equal(selectedNode("capacity"), "node-a");
  });

  it("rejects with the abort reason when the signal aborts during the wait", async () => {
    const o = ownership();
    const c = seed(claim("aborted"));
    const ctl = new AbortController();
    const decision = o.decide(c, immediate, ctl.signal);
    await clock.waitForSleepers(1);
    ctl.abort(new Error("shutting down"));
    await assert.rejects(within(decision), /shutting down/);
    assert.equal(clock.pending, 0);
    assert.equal(selectedNode("aborted"), undefined);
  });
});

describe("createNodeOwnership() on two nodes sharing an informer view", () => {
  let server: ApiServer;
  let informer: Informer<PersistentVolumeClaim>;
  let stopInformer: AbortController;
  let informerDone: Promise<void>;

  beforeEach(async () => {
    server = await startApiServer({ clock: new FakeClock(), bookmarkIntervalMs: 0 });
  });
  afterEach(async () => {
    stopInformer.abort();
    await informerDone;
    await server.close();
  });

  it("lets the node with the shorter delay win and the other see it and back off", async () => {
    const transport = new KubeTransport({
      connection: { server: server.url, tls: {}, auth: noAuth, source: "test" },
      version: "test",
      clock: new FakeClock(),
      random: () => 0,
      maxRetries: 0,
      idempotentRetries: 0,
    });
    const api = createKubeApi(transport);
    informer = new Informer<PersistentVolumeClaim>({
      client: api.resource(resources.persistentVolumeClaims),
      clock: new FakeClock(),
      random: () => 0,
      project: projectPersistentVolumeClaim,
    });
    stopInformer = new AbortController();
    informerDone = informer.run(stopInformer.signal);
    const c = server.put(claim("contested"));
    await within(informer.waitForSync());
    await within(informer.waitForResourceVersion(server.resourceVersion));

    const clock = new FakeClock();
    const common = {
      api,
      baseDelayMs: BASE,
      maxDelayMs: MAX,
      clock,
      logger: nullLogger,
      getClaim: (uid: string) => informer.store.getByUid(uid),
    };
    // Delays: node-a 20 s − 0.75 · 20 s = 5 s; node-b 20 s − 0.25 · 20 s = 15 s.
    const a = createNodeOwnership({ ...common, nodeName: "node-a", random: () => 0.75 });
    const b = createNodeOwnership({ ...common, nodeName: "node-b", random: () => 0.25 });
    const fromA = track(a.decide(c, immediate));
    const fromB = track(b.decide(c, immediate));
    await clock.waitForSleepers(2);
    await clock.advance(5000);
    assert.equal(await within(fromA.promise), "ignore");
    await within(informer.waitForResourceVersion(server.resourceVersion));
    assert.equal(fromB.settled(), false);
    await clock.advance(STEP);
    assert.equal(await within(fromB.promise), "ignore");

    const stored = server.get(resources.persistentVolumeClaims, "contested", "default")!;
    assert.equal(stored.metadata.annotations?.[ANN_SELECTED_NODE], "node-a");
    assert.equal(server.writes.count({ verb: "update", resource: "persistentvolumeclaims" }), 1);
    // The winner's next sync provisions it; the loser's ignores it.
    const cached = informer.store.getByUid(c.metadata.uid!)!;
    assert.equal(await a.decide(cached, immediate), "provision");
    assert.equal(await b.decide(cached, immediate), "ignore");
  });
});

describe("capacityFitsRequest()", () => {
  const GiB = 1024n ** 3n;
  let fake: FakeDriver;
  let driver: CsiDriver;

  before(async () => {
    fake = await startFakeDriver({ capacityBytes: 10n * GiB });
    driver = await connectDriver({
      socketPath: fake.socketPath,
      clock: new FakeClock(),
      logger: nullLogger,
    });
  });
  after(async () => {
    driver.close();
    await fake.close();
  });
  beforeEach(() => {
    fake.reset();
  });

  const request = (bytes: bigint, requisite: Record<string, string>[] = []) =>
    create(CreateVolumeRequestSchema, {
      name: "pvc-1",
      capacityRange: { requiredBytes: bytes },
      parameters: { pool: "fast" },
      volumeCapabilities: [{ accessMode: { mode: 1 }, accessType: { case: "mount", value: {} } }],
      accessibilityRequirements: {
        requisite: requisite.map((segments) => ({ segments })),
        preferred: [],
      },
      secrets: { password: "not for GetCapacity" },
    });

  it("compares the driver's available capacity with the required bytes", async () => {
    const before = fake.callsTo("getCapacity").length;
    assert.equal(await capacityFitsRequest(driver, request(5n * GiB)), true);
    assert.equal(await capacityFitsRequest(driver, request(10n * GiB)), true);
    assert.equal(await capacityFitsRequest(driver, request(11n * GiB)), false);
    const calls = fake.callsTo("getCapacity").slice(before);
    assert.equal(calls.length, 3);
    assert.deepEqual(calls[0]!.request.parameters, { pool: "fast" });
    assert.equal(calls[0]!.request.volumeCapabilities.length, 1);
    assert.equal(calls[0]!.request.accessibleTopology, undefined);
  });

  it("asks for each requisite topology and is satisfied by any of them", async () => {
    fake.on("getCapacity", (req) => ({
      availableCapacity: req.accessibleTopology?.segments.zone === "b" ? 8n * GiB : 1n * GiB,
    }));
    const before = fake.callsTo("getCapacity").length;
    const zones = [{ zone: "a" }, { zone: "b" }, { zone: "c" }];
    assert.equal(await capacityFitsRequest(driver, request(4n * GiB, zones)), true);
    const asked = fake
      .callsTo("getCapacity")
      .slice(before)
      .map((c) => c.request.accessibleTopology?.segments.zone);
    assert.deepEqual(asked, ["a", "b"]);
    assert.equal(await capacityFitsRequest(driver, request(9n * GiB, zones)), false);
  });

  it("does not call the driver for a claim without a size, and rejects when GetCapacity fails", async () => {
    const before = fake.callsTo("getCapacity").length;
    assert.equal(await capacityFitsRequest(driver, request(0n)), true);
    assert.equal(fake.callsTo("getCapacity").length, before);
    fake.on("getCapacity", () => {
      throw new Error("backend offline");
    });
    await assert.rejects(capacityFitsRequest(driver, request(1n)));
  });
});
