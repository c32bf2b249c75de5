import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createIntentJournal, type Intent } from "../../src/controller/journal.ts";
import type { ResourceClient } from "../../src/kube/api.ts";
import { KubeApiError } from "../../src/kube/errors.ts";
import type { Lease } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { FakeClock } from "../../src/util/clock.ts";
import { nullLogger } from "../../src/util/log.ts";

/** An in-memory Lease client whose writes can be held until the test releases them. */
function fakeLeases() {
  const store = new Map<string, Lease>();
  let rv = 0;
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  const held: (() => void)[] = [];
  const write = async (l: Lease) => {
    if (gate) {
      held.push(() => {});
      await gate;
    }
    const saved = structuredClone({
      ...l,
      metadata: { ...l.metadata, resourceVersion: String(++rv) },
    });
    store.set(l.metadata.name!, saved);
    return structuredClone(saved);
  };
  const client = {
    resource: resources.leases,
    get: async (name: string) => {
      const l = store.get(name);
      if (!l)
        throw KubeApiError.fromStatus("get", `leases ${name}`, { code: 404, reason: "NotFound" });
      return structuredClone(l);
    },
    list: async () => ({ metadata: {}, items: [...store.values()].map((l) => structuredClone(l)) }),
    create: write,
    update: write,
  } as unknown as ResourceClient<Lease>;
  return {
    client,
    store,
    hold() {
      gate = new Promise<void>((r) => {
        open = r;
      });
    },
    release() {
      gate = undefined;
      open?.();
    },
    get heldWrites() {
      return held.length;
    },
  };
}

function intent(uid: string): Intent {
  return {
    uid,
    namespace: "ns",
    name: `c-${uid}`,
    pvName: `pvc-${uid}`,
    storageClass: "sc",
    request: { name: `pvc-${uid}` },
  };
}

/** A one-shard journal of driver `d` in namespace `ns` over `leases`. */
function journalOn(leases: ResourceClient<Lease>) {
  return createIntentJournal({
    leases,
    namespace: "ns",
    driverName: "d",
    clock: new FakeClock(),
    logger: nullLogger,
    shards: 1,
  });
}

async function settle() {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

describe("createIntentJournal()", () => {
  it("records an intent durably before record() resolves and reloads it", async () => {
    const leases = fakeLeases();
    const j = journalOn(leases.client);
    await j.record(intent("a"));
    const again = journalOn(leases.client);
    assert.deepEqual(
      (await again.load()).map((i) => i.uid),
      ["a"],
    );
  });

  it("does not report an intent whose removal is being written", async () => {
    const leases = fakeLeases();
    const j = journalOn(leases.client);
    await j.record(intent("a"));
    j.clear("a");
    leases.hold();
    const flushing = j.flush();
    await settle();
    assert.equal(leases.heldWrites, 1, "the removal is in flight");
    assert.equal(j.get("a"), undefined);
    assert.deepEqual(j.list(), []);
    leases.release();
    await flushing;
    assert.equal(j.get("a"), undefined);
  });

  it("removes an intent cleared while its addition was being written", async () => {
    const leases = fakeLeases();
    const j = journalOn(leases.client);
    leases.hold();
    const recorded = j.record(intent("b"));
    await settle();
    assert.equal(j.get("b")?.uid, "b", "an addition in flight is visible");
    j.clear("b");
    leases.release();
    await recorded;
    await j.flush();
    const stored = [...leases.store.values()][0]!;
    assert.deepEqual(
      Object.keys(stored.metadata.annotations ?? {}).filter((k) => k.includes("intent")),
      [],
    );
  });

  it("group-commits the intents of concurrent claims into few writes", async () => {
    const leases = fakeLeases();
    let writes = 0;
    const counting = {
      ...leases.client,
      update: (l: Lease) => {
        writes++;
        return leases.client.update(l);
      },
      create: (l: Lease) => {
        writes++;
        return leases.client.create(l);
      },
    } as ResourceClient<Lease>;
    const j = journalOn(counting);
    await Promise.all(Array.from({ length: 50 }, (_, i) => j.record(intent(`u${i}`))));
    assert.ok(writes <= 2, `50 intents took ${writes} writes`);
    assert.equal(j.list().length, 50);
  });
});
