import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import type { CapacityEvent, CapacityStats } from "../../src/capacity/controller.ts";
import type {
  CSIStorageCapacity,
  OwnerReference,
  PersistentVolume,
} from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { fail } from "../support/fake-driver.ts";
import {
  capacityObject,
  csiNode,
  DRIVER,
  Gi,
  type Harness,
  type HarnessOptions,
  is,
  Mi,
  MULTIPLIER,
  NAMESPACE,
  node,
  OWNER,
  startHarness,
  storageClass,
  summary,
  ZONE,
  zoneNode,
} from "./harness.ts";

let h: Harness | undefined;

async function start(o: HarnessOptions): Promise<Harness> {
  h = await startHarness(o);
  return h;
}

afterEach(async () => {
  await h?.stop();
  h = undefined;
});

const synced = (e: CapacityEvent) =>
  e.kind === "created" || e.kind === "updated" || e.kind === "unchanged";

function gauges(s: CapacityStats) {
  return { goal: s.goal, current: s.current, obsolete: s.obsolete };
}

const owned = `owner=${OWNER.uid}`;

function withOwners(obj: CSIStorageCapacity, ownerReferences: OwnerReference[]) {
  return { ...obj, metadata: { ...obj.metadata, ownerReferences } };
}

describe("createCapacityController() initial state", () => {
  const cases: {
    name: string;
    options: HarnessOptions;
    /** goal / current / obsolete right after the informers synced. */
    prepared: { goal: number; current: number; obsolete: number };
    expected: string[];
    writes: { create: number; update: number; delete: number };
    /** Objects adopted by the end (existing ones plus created ones). */
    adopted: number;
  }[] = [
    {
      name: "publishes nothing without topology segments",
      options: { objects: [storageClass("fast")] },
      prepared: { goal: 0, current: 0, obsolete: 0 },
      expected: [],
      writes: { create: 0, update: 0, delete: 0 },
      adopted: 0,
    },
    {
      name: "publishes nothing without storage classes",
      options: { objects: [...zoneNode("n1", "a")] },
      prepared: { goal: 0, current: 0, obsolete: 0 },
      expected: [],
      writes: { create: 0, update: 0, delete: 0 },
      adopted: 0,
    },
    {
      name: "creates the object of one segment and one class",
      options: { objects: [...zoneNode("n1", "a"), storageClass("fast")] },
      prepared: { goal: 1, current: 0, obsolete: 0 },
      expected: [`fast@a 1Gi ${owned}`],
      writes: { create: 1, update: 0, delete: 0 },
      adopted: 1,
    },
    {
      name: "writes the maximum volume size the driver reports",
      options: {
        objects: [...zoneNode("n1", "a"), storageClass("fast")],
        maximumVolumeSize: { a: Mi },
      },
      prepared: { goal: 1, current: 0, obsolete: 0 },
      expected: [`fast@a 1Gi max=1Mi ${owned}`],
      writes: { create: 1, update: 0, delete: 0 },
      adopted: 1,
    },
    {
      name: "writes no owner reference at owner level -1",
      options: { objects: [...zoneNode("n1", "a"), storageClass("fast")], noOwner: true },
      prepared: { goal: 1, current: 0, obsolete: 0 },
      expected: ["fast@a 1Gi owner=-"],
      writes: { create: 1, update: 0, delete: 0 },
      adopted: 1,
    },
    {
      name: "creates one object per segment and class, each with its own capacity",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          ...zoneNode("n2", "b"),
          ...zoneNode("n3", "b"),
          storageClass("direct"),
          storageClass("triple", { parameters: { [MULTIPLIER]: "3" } }),
        ],
        capacity: { a: Gi, b: 2n * Gi },
      },
      prepared: { goal: 4, current: 0, obsolete: 0 },
      expected: [
        `direct@a 1Gi ${owned}`,
        `direct@b 2Gi ${owned}`,
        `triple@a 3Gi ${owned}`,
        `triple@b 6Gi ${owned}`,
      ],
      writes: { create: 4, update: 0, delete: 0 },
      adopted: 4,
    },
    {
      name: "selects all nodes for a driver without topology keys",
      options: { objects: [node("n1", {}), csiNode("n1", null), storageClass("fast")] },
      prepared: { goal: 1, current: 0, obsolete: 0 },
      expected: [`fast@* 1Gi ${owned}`],
      writes: { create: 1, update: 0, delete: 0 },
      adopted: 1,
    },
    {
      name: "skips classes with Immediate binding",
      options: { objects: [...zoneNode("n1", "a"), storageClass("now", { immediate: true })] },
      prepared: { goal: 0, current: 0, obsolete: 0 },
      expected: [],
      writes: { create: 0, update: 0, delete: 0 },
      adopted: 0,
    },
    {
      name: "includes classes with Immediate binding with --capacity-for-immediate-binding",
      options: {
        objects: [...zoneNode("n1", "a"), storageClass("now", { immediate: true })],
        immediateBinding: true,
      },
      prepared: { goal: 1, current: 0, obsolete: 0 },
      expected: [`now@a 1Gi ${owned}`],
      writes: { create: 1, update: 0, delete: 0 },
      adopted: 1,
    },
    {
      name: "ignores classes of other provisioners",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          storageClass("other", { provisioner: "other.csi.k8s.io" }),
        ],
      },
      prepared: { goal: 0, current: 0, obsolete: 0 },
      expected: [],
      writes: { create: 0, update: 0, delete: 0 },
      adopted: 0,
    },
    {
      name: "reuses an existing object and writes nothing when nothing changed",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          storageClass("fast"),
          capacityObject("csisc-old", { storageClassName: "fast", zone: "a", capacity: "1Gi" }),
        ],
      },
      prepared: { goal: 1, current: 1, obsolete: 0 },
      expected: [`fast@a 1Gi ${owned}`],
      writes: { create: 0, update: 0, delete: 0 },
      adopted: 1,
    },
    {
      name: "treats an equal quantity in another notation as unchanged",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          storageClass("fast"),
          capacityObject("csisc-old", {
            storageClassName: "fast",
            zone: "a",
            capacity: "1073741824",
          }),
        ],
      },
      prepared: { goal: 1, current: 1, obsolete: 0 },
      expected: [`fast@a 1073741824 ${owned}`],
      writes: { create: 0, update: 0, delete: 0 },
      adopted: 1,
    },
    {
      name: "updates the capacity of an existing object",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          storageClass("fast"),
          capacityObject("csisc-old", { storageClassName: "fast", zone: "a", capacity: "1Mi" }),
        ],
      },
      prepared: { goal: 1, current: 1, obsolete: 0 },
      expected: [`fast@a 1Gi ${owned}`],
      writes: { create: 0, update: 1, delete: 0 },
      adopted: 1,
    },
    {
      name: "removes a maximum volume size the driver no longer reports",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          storageClass("fast"),
          capacityObject("csisc-old", {
            storageClassName: "fast",
            zone: "a",
            capacity: "1Gi",
            maximumVolumeSize: "1Mi",
          }),
        ],
      },
      prepared: { goal: 1, current: 1, obsolete: 0 },
      expected: [`fast@a 1Gi ${owned}`],
      writes: { create: 0, update: 1, delete: 0 },
      adopted: 1,
    },
    {
      name: "adds the owner reference to an existing object without one",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          storageClass("fast"),
          capacityObject("csisc-old", {
            storageClassName: "fast",
            zone: "a",
            capacity: "1Gi",
            owner: null,
          }),
        ],
      },
      prepared: { goal: 1, current: 1, obsolete: 0 },
      expected: [`fast@a 1Gi ${owned}`],
      writes: { create: 0, update: 1, delete: 0 },
      adopted: 1,
    },
    {
      name: "replaces the controller reference of a previous owner, keeping other references",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          storageClass("fast"),
          withOwners(
            capacityObject("csisc-old", { storageClassName: "fast", zone: "a", capacity: "1Gi" }),
            [
              {
                ...OWNER,
                name: "csi-provisioner-0",
                kind: "Pod",
                uid: "old-pod",
                controller: true,
              },
              { apiVersion: "v1", kind: "ConfigMap", name: "keep", uid: "cm", controller: false },
            ],
          ),
        ],
      },
      prepared: { goal: 1, current: 1, obsolete: 0 },
      expected: [`fast@a 1Gi owner=cm+${OWNER.uid}`],
      writes: { create: 0, update: 1, delete: 0 },
      adopted: 1,
    },
    {
      name: "keeps an existing owner reference at owner level -1",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          storageClass("fast"),
          capacityObject("csisc-old", { storageClassName: "fast", zone: "a", capacity: "1Gi" }),
        ],
        noOwner: true,
      },
      prepared: { goal: 1, current: 1, obsolete: 0 },
      expected: [`fast@a 1Gi ${owned}`],
      writes: { create: 0, update: 0, delete: 0 },
      adopted: 1,
    },
    {
      name: "deletes the object of a class that no longer exists",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          capacityObject("csisc-old", { storageClassName: "gone", zone: "a", capacity: "1Gi" }),
        ],
      },
      prepared: { goal: 0, current: 0, obsolete: 1 },
      expected: [],
      writes: { create: 0, update: 0, delete: 1 },
      adopted: 0,
    },
    {
      name: "deletes the object of a segment that no longer exists",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          storageClass("fast"),
          capacityObject("csisc-old", { storageClassName: "fast", zone: "b", capacity: "1Gi" }),
        ],
      },
      prepared: { goal: 1, current: 0, obsolete: 1 },
      expected: [`fast@a 1Gi ${owned}`],
      writes: { create: 1, update: 0, delete: 1 },
      adopted: 1,
    },
    {
      name: "deletes duplicates and keeps one object per item",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          storageClass("fast"),
          capacityObject("csisc-one", { storageClassName: "fast", zone: "a", capacity: "1Gi" }),
          capacityObject("csisc-two", { storageClassName: "fast", zone: "a", capacity: "1Gi" }),
          capacityObject("csisc-three", { storageClassName: "fast", zone: "a", capacity: "1Gi" }),
        ],
      },
      prepared: { goal: 1, current: 1, obsolete: 0 },
      expected: [`fast@a 1Gi ${owned}`],
      writes: { create: 0, update: 0, delete: 2 },
      adopted: 1,
    },
    {
      name: "leaves objects of other managers and drivers alone",
      options: {
        objects: [
          ...zoneNode("n1", "a"),
          capacityObject("csisc-node", {
            storageClassName: "fast",
            zone: "a",
            capacity: "1Gi",
            managedBy: "external-provisioner-n1",
          }),
          capacityObject("csisc-driver", {
            storageClassName: "fast",
            zone: "a",
            capacity: "1Gi",
            driver: "other.csi.k8s.io",
          }),
        ],
      },
      prepared: { goal: 0, current: 0, obsolete: 0 },
      expected: [`fast@a 1Gi ${owned}`, `fast@a 1Gi ${owned}`],
      writes: { create: 0, update: 0, delete: 0 },
      adopted: 0,
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const t = await start(c.options);
      assert.deepEqual(gauges(await t.prepared()), c.prepared);
      await t.log.waitFor(synced, c.prepared.goal, "every item to be synced once");
      await t.log.waitFor(is("deleted"), c.writes.delete, "the deletions");
      await t.log.waitFor(is("removed"), c.writes.delete, "the informer to see the deletions");
      await t.waitForObjects(c.expected);
      await t.log.waitFor(is("adopted"), c.adopted, "the informer to deliver the objects");
      assert.deepEqual(
        { create: t.writes("create"), update: t.writes("update"), delete: t.writes("delete") },
        c.writes,
      );
      assert.deepEqual(gauges(t.controller.stats), {
        goal: c.prepared.goal,
        current: c.prepared.goal,
        obsolete: 0,
      });

      // The periodic refresh finds everything up to date and writes nothing.
      const from = t.log.events.length;
      const getCapacity = t.fake.callsTo("getCapacity").length;
      const syncs = t.log.count(synced);
      await t.clock.advance(60_000);
      await t.log.waitFor(synced, syncs + c.prepared.goal, "the periodic refresh");
      assert.equal(t.fake.callsTo("getCapacity").length, getCapacity + c.prepared.goal);
      assert.deepEqual(
        t.log.events
          .slice(from)
          .filter(synced)
          .map((e) => e.kind),
        Array(c.prepared.goal).fill("unchanged"),
      );
      assert.deepEqual(
        { create: t.writes("create"), update: t.writes("update"), delete: t.writes("delete") },
        c.writes,
      );
    });
  }
});

function pv(opts: { zone?: string; storageClassName?: string }): PersistentVolume {
  return {
    metadata: { name: "pvc-1" },
    spec: {
      storageClassName: opts.storageClassName,
      ...(opts.zone
        ? {
            nodeAffinity: {
              required: {
                nodeSelectorTerms: [
                  { matchExpressions: [{ key: ZONE, operator: "In", values: [opts.zone] }] },
                ],
              },
            },
          }
        : {}),
    },
  };
}

const managed = (t: Harness) =>
  t.objects().filter((o) => o.metadata.labels?.["csi.storage.k8s.io/drivername"] === DRIVER);

describe("createCapacityController() at runtime", () => {
  it("re-creates an object that someone else deleted", async () => {
    const t = await start({ objects: [...zoneNode("n1", "a"), storageClass("fast")] });
    await t.log.waitFor(is("adopted"), 1);
    const first = t.objects()[0]!.metadata.name!;
    assert.ok(t.api.remove(resources.csiStorageCapacities, first, NAMESPACE));
    await t.log.waitFor(is("created"), 2, "the object to be re-created");
    const [obj] = await t.waitForObjects([`fast@a 1Gi ${owned}`]);
    assert.notEqual(obj!.metadata.name, first);
    await t.log.waitFor(is("adopted"), 2);
    assert.equal(t.controller.stats.current, 1);
  });

  it("re-creates an object whose labels someone changed, leaving that one alone", async () => {
    const t = await start({ objects: [...zoneNode("n1", "a"), storageClass("fast")] });
    await t.log.waitFor(is("adopted"), 1);
    const taken = t.objects()[0]!;
    t.api.put({
      ...taken,
      metadata: {
        ...taken.metadata,
        labels: { ...taken.metadata.labels, "csi.storage.k8s.io/managed-by": "someone-else" },
      },
    });
    await t.log.waitFor(is("created"), 2, "a new object");
    await t.waitForObjects([`fast@a 1Gi ${owned}`, `fast@a 1Gi ${owned}`]);
    assert.equal(
      t
        .objects()
        .filter((o) => o.metadata.labels?.["csi.storage.k8s.io/managed-by"] === "someone-else")
        .length,
      1,
    );
    assert.equal(t.writes("delete"), 0);
  });

  it("retries a failing GetCapacity with back-off and writes nothing meanwhile", async () => {
    const t = await start({
      objects: [...zoneNode("n1", "a"), storageClass("fast")],
      script: (fake) =>
        fake
          .once("getCapacity", fail(Code.Unavailable, "backend offline"))
          .once("getCapacity", fail(Code.Internal, "still broken")),
    });
    const failures = () =>
      t.log.events.filter(is("failed")).map((e) => ({
        error: "error" in e ? e.error : undefined,
        retryInMs: "retryInMs" in e ? e.retryInMs : undefined,
      }));
    await t.log.waitFor(is("failed"), 1);
    assert.match(
      failures()[0]?.error ?? "",
      /^GetCapacity for storage class fast, segment .*zone=a failed: Unavailable: backend offline$/,
    );
    assert.equal(failures()[0]?.retryInMs, 1000);
    assert.deepEqual(t.objects(), []);

    // The retry comes after the back-off, which doubles.
    await t.clock.advance(999);
    assert.equal(t.fake.callsTo("getCapacity").length, 1);
    await t.clock.advance(1);
    await t.log.waitFor(is("failed"), 2);
    assert.match(failures()[1]?.error ?? "", /Internal: still broken$/);
    assert.equal(failures()[1]?.retryInMs, 2000);
    assert.deepEqual(t.objects(), []);
    assert.equal(t.writes("create"), 0);

    await t.clock.advance(2000);
    await t.log.waitFor(is("created"), 1);
    await t.waitForObjects([`fast@a 1Gi ${owned}`]);
    assert.equal(t.controller.stats.getCapacityErrors, 2);
    assert.equal(t.fake.callsTo("getCapacity").length, 3);
  });

  it("retries a failed create of the object", async () => {
    const t = await start({
      objects: [...zoneNode("n1", "a"), storageClass("fast")],
      apiScript: (api) =>
        api.failNext({ verb: "create", resource: resources.csiStorageCapacities, status: 500 }),
    });
    await t.log.waitFor(is("failed"), 1);
    assert.match(
      (t.log.events.find(is("failed")) as { error?: string }).error ?? "",
      /Cannot create CSIStorageCapacity for storage class fast/,
    );
    await t.clock.advance(1000);
    await t.log.waitFor(is("created"), 1);
    await t.waitForObjects([`fast@a 1Gi ${owned}`]);
    assert.equal(t.writes("create"), 2);
  });

  it("refreshes every --capacity-poll-interval", async () => {
    const t = await start({
      objects: [...zoneNode("n1", "a"), storageClass("fast")],
      pollIntervalMs: 30_000,
    });
    await t.log.waitFor(is("adopted"), 1);
    t.capacity.a = 2n * Gi;
    await t.clock.advance(29_999);
    assert.equal(t.controller.stats.getCapacityCalls, 1);
    await t.clock.advance(1);
    await t.log.waitFor(is("updated"), 1);
    await t.waitForObjects([`fast@a 2Gi ${owned}`]);

    t.capacity.a = 3n * Gi;
    await t.clock.advance(30_000);
    await t.waitForObjects([`fast@a 3Gi ${owned}`]);
    assert.equal(t.controller.stats.getCapacityCalls, 3);
    assert.equal(t.writes("update"), 2);
  });

  it("publishes a class added at runtime and deletes the objects of a deleted class", async () => {
    const t = await start({
      objects: [...zoneNode("n1", "a"), ...zoneNode("n2", "b"), storageClass("fast")],
    });
    await t.log.waitFor(is("adopted"), 2);
    t.api.put(storageClass("slow"));
    await t.waitForObjects([
      `fast@a 1Gi ${owned}`,
      `fast@b 1Gi ${owned}`,
      `slow@a 1Gi ${owned}`,
      `slow@b 1Gi ${owned}`,
    ]);
    await t.log.waitFor(is("adopted"), 4);
    t.api.remove(resources.storageClasses, "fast");
    await t.waitForObjects([`slow@a 1Gi ${owned}`, `slow@b 1Gi ${owned}`]);
    assert.equal(t.writes("delete"), 2);
    assert.equal(t.controller.stats.goal, 2);
  });

  it("follows topology changes of Nodes and CSINodes", async () => {
    const t = await start({ objects: [...zoneNode("n1", "a"), storageClass("fast")] });
    await t.log.waitFor(is("adopted"), 1);

    // A new node in a new zone.
    for (const o of zoneNode("n2", "b")) t.api.put(o);
    await t.waitForObjects([`fast@a 1Gi ${owned}`, `fast@b 1Gi ${owned}`]);

    // A node not labelled yet contributes nothing until kubelet labels it.
    t.api.put(csiNode("n3"));
    t.api.put(node("n3", {}));
    t.api.put(node("n3", { [ZONE]: "c" }));
    await t.waitForObjects([`fast@a 1Gi ${owned}`, `fast@b 1Gi ${owned}`, `fast@c 1Gi ${owned}`]);

    // Moving n2 to zone a empties zone b.
    t.api.put(node("n2", { [ZONE]: "a" }));
    await t.waitForObjects([`fast@a 1Gi ${owned}`, `fast@c 1Gi ${owned}`]);

    // The driver leaves n3: its CSINode no longer lists the driver.
    t.api.put(csiNode("n3", [ZONE], "other.csi.k8s.io"));
    await t.waitForObjects([`fast@a 1Gi ${owned}`]);
    assert.equal(t.controller.stats.segments, 1);
    assert.equal(t.writes("delete"), 2);
  });

  it("refreshes after provisioning by segment, and by class after a failure", async () => {
    const t = await start({
      objects: [
        ...zoneNode("n1", "a"),
        ...zoneNode("n2", "b"),
        storageClass("fast"),
        storageClass("slow"),
      ],
    });
    // The informer may deliver a created object ("adopted") before the worker that created it
    // reports "created": the initial state is complete only once both happened for every item.
    await t.log.waitFor(is("adopted"), 4);
    await t.log.waitFor(is("created"), 4);
    t.capacity.a = 3n * Gi;
    t.capacity.b = 3n * Gi;
    const itemOf = (e: CapacityEvent) =>
      "segment" in e ? `${e.storageClassName}@${Object.fromEntries(e.segment)[ZONE]}` : "";
    /**
     * Runs `step`, waits until each of `items` ("class@zone") synced once more, and returns the
     * items synced meanwhile (the queue is idle before `step`) with the objects then.
     */
    const refresh = async (step: () => void, items: string[]) => {
      const start = t.log.events.length;
      const before = new Map(
        items.map((i) => [i, t.log.count((e) => synced(e) && itemOf(e) === i)]),
      );
      step();
      for (const [item, n] of before) {
        await t.log.waitFor((e) => synced(e) && itemOf(e) === item, n + 1, `a sync of ${item}`);
      }
      const refreshed = t.log.events.slice(start).filter(synced).map(itemOf).sort();
      return { refreshed, objects: summary(managed(t)) };
    };

    assert.deepEqual(
      await refresh(
        () => t.controller.onProvisioned(pv({ zone: "a", storageClassName: "fast" })),
        ["fast@a", "slow@a"],
      ),
      {
        refreshed: ["fast@a", "slow@a"],
        objects: [
          `fast@a 3Gi ${owned}`,
          `fast@b 1Gi ${owned}`,
          `slow@a 3Gi ${owned}`,
          `slow@b 1Gi ${owned}`,
        ],
      },
    );
    assert.deepEqual(
      await refresh(() => t.controller.onProvisionFailed("slow"), ["slow@a", "slow@b"]),
      {
        refreshed: ["slow@a", "slow@b"],
        objects: [
          `fast@a 3Gi ${owned}`,
          `fast@b 1Gi ${owned}`,
          `slow@a 3Gi ${owned}`,
          `slow@b 3Gi ${owned}`,
        ],
      },
    );
    assert.deepEqual(
      await refresh(() => t.controller.onDeleted(pv({ zone: "b" })), ["fast@b", "slow@b"]),
      {
        refreshed: ["fast@b", "slow@b"],
        objects: [
          `fast@a 3Gi ${owned}`,
          `fast@b 3Gi ${owned}`,
          `slow@a 3Gi ${owned}`,
          `slow@b 3Gi ${owned}`,
        ],
      },
    );
    assert.equal(t.writes("update"), 4);
    // Only the refreshed items asked the driver: 4 at start, then 2 + 2 + 2.
    assert.equal(t.fake.callsTo("getCapacity").length, 10);
  });

  it("refreshes by class after provisioning a volume without node affinity", async () => {
    const t = await start({
      objects: [node("n1", {}), csiNode("n1", null), storageClass("fast"), storageClass("slow")],
    });
    await t.log.waitFor(is("adopted"), 2);
    t.capacity["*"] = 5n * Gi;
    t.controller.onProvisioned(pv({ storageClassName: "slow" }));
    await t.waitForObjects([`fast@* 1Gi ${owned}`, `slow@* 5Gi ${owned}`]);
    assert.equal(t.fake.callsTo("getCapacity").length, 3);
  });

  it("publishes the fixed segment in node mode with a shortened managed-by label", async () => {
    const nodeName = `ip-10-0-0-1.${"x".repeat(40)}.compute.internal`;
    const t = await start({
      objects: [
        storageClass("fast"),
        // The central provisioner's object stays untouched.
        capacityObject("csisc-central", { storageClassName: "fast", zone: "n", capacity: "7Gi" }),
      ],
      nodeName,
      fixedSegment: { [ZONE]: "n" },
      capacity: { n: 4n * Gi },
    });
    assert.deepEqual(gauges(await t.prepared()), { goal: 1, current: 0, obsolete: 0 });
    await t.log.waitFor(is("adopted"), 1);
    const mine = t.objects().filter((o) => o.metadata.name !== "csisc-central");
    assert.deepEqual(summary(mine), [`fast@n 4Gi ${owned}`]);
    const managedBy = mine[0]!.metadata.labels?.["csi.storage.k8s.io/managed-by"] ?? "";
    assert.ok(managedBy.length <= 63);
    assert.match(managedBy, /^external-provisioner-[0-9a-f]{8}$/);
    assert.equal(
      t.api.get(resources.csiStorageCapacities, "csisc-central", NAMESPACE)?.capacity,
      "7Gi",
    );
    assert.deepEqual(
      { ...t.fake.callsTo("getCapacity")[0]!.request.accessibleTopology?.segments },
      {
        [ZONE]: "n",
      },
    );
    // No Node or CSINode is read in node mode.
    assert.equal(t.api.requests.count({ resource: resources.nodes }), 0);
    assert.equal(t.api.requests.count({ resource: resources.csiNodes }), 0);
  });

  it("reports goal, current and obsolete objects as gauges", async () => {
    const t = await start({
      objects: [
        ...zoneNode("n1", "a"),
        ...zoneNode("n2", "b"),
        storageClass("fast"),
        capacityObject("csisc-old", { storageClassName: "gone", zone: "a", capacity: "1Gi" }),
      ],
      apiScript: (api) =>
        api.failNext({
          verb: "delete",
          resource: resources.csiStorageCapacities,
          status: 500,
          count: Number.POSITIVE_INFINITY,
        }),
    });
    await t.log.waitFor(is("adopted"), 2);
    await t.log.waitFor(is("delete-failed"), 1);
    const text = t.registry.render();
    assert.match(text, /^# TYPE csistoragecapacities_desired_goal gauge$/m);
    assert.match(text, /^csistoragecapacities_desired_goal 2$/m);
    assert.match(text, /^csistoragecapacities_desired_current 2$/m);
    assert.match(text, /^csistoragecapacities_obsolete 1$/m);

    t.api.clearFaults();
    await t.clock.advance(1000);
    await t.log.waitFor(is("removed"), 1);
    assert.match(t.registry.render(), /^csistoragecapacities_obsolete 0$/m);
    assert.equal(managed(t).length, 2);
  });

  it("runs --capacity-threads GetCapacity calls at once", async () => {
    let releaseAll = () => {};
    const t = await start({
      objects: [...zoneNode("n1", "a"), storageClass("fast"), storageClass("slow")],
      workers: 2,
      script: (fake) => {
        const a = fake.hold("getCapacity");
        const b = fake.hold("getCapacity");
        releaseAll = () => {
          a.release();
          b.release();
        };
      },
    });
    try {
      await t.fake.waitForCalls("getCapacity", 2);
    } finally {
      releaseAll();
    }
    await t.waitForObjects([`fast@a 1Gi ${owned}`, `slow@a 1Gi ${owned}`]);
  });

  it("stops while a GetCapacity is in flight and writes nothing after", async () => {
    let release = () => {};
    const t = await start({
      objects: [...zoneNode("n1", "a"), storageClass("fast")],
      script: (fake) => {
        release = fake.hold("getCapacity").release;
      },
    });
    await t.fake.waitForCalls("getCapacity", 1);
    await t.stop();
    release();
    assert.equal(t.writes("create"), 0);
    assert.deepEqual(t.objects(), []);
  });
});
