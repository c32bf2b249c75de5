import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  createIntentJournal,
  type Intent,
  type JournalOptions,
} from "../../src/controller/journal.ts";
import type { ResourceClient } from "../../src/kube/api.ts";
import { KubeApiError } from "../../src/kube/errors.ts";
import type { Lease } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { nullLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";

/** An in-memory Lease client whose writes can be held until the test releases them. */
function fakeLeases() {
  const store = new Map<string, Lease>();
  let rv = 0;
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  const held: (() => void)[] = [];
  const write = async (given: Lease, opts?: { latest?: () => Lease }) => {
    if (gate) {
      held.push(() => {});
      await gate;
    }
    // As the real client: the body is taken when the request is sent (after its token).
    const l = opts?.latest ? opts.latest() : given;
    // kube-apiserver's limit: keys and values of all annotations, in UTF-8 bytes.
    let bytes = 0;
    for (const [k, v] of Object.entries(l.metadata.annotations ?? {}))
      bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
    if (bytes > 262144) {
      throw KubeApiError.fromStatus("update", `leases ${l.metadata.name}`, {
        code: 422,
        reason: "Invalid",
        message: `metadata.annotations: Too long: may not be more than 262144 bytes`,
      });
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

/** `client` with its creates and updates counted. */
function countingWrites(client: ResourceClient<Lease>) {
  const counter = {
    writes: 0,
    client: {
      ...client,
      update: (l: Lease, o?: object) => {
        counter.writes++;
        return client.update(l, o);
      },
      create: (l: Lease, o?: object) => {
        counter.writes++;
        return client.create(l, o);
      },
    } as ResourceClient<Lease>,
  };
  return counter;
}

/** A one-shard journal of driver `d` in namespace `ns` over `leases`. */
function journalOn(
  leases: ResourceClient<Lease>,
  clock = new FakeClock(),
  options: Partial<JournalOptions> = {},
) {
  return createIntentJournal({
    leases,
    namespace: "ns",
    driverName: "d",
    clock,
    logger: nullLogger,
    shards: 1,
    commitWindowMs: 0,
    ...options,
  });
}

/** An intent whose request carries a StorageClass parameter `value`. */
function bigIntent(uid: string, value: string): Intent {
  return { ...intent(uid), request: { name: `pvc-${uid}`, parameters: { blob: value } } };
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
    const counter = countingWrites(leases.client);
    const counting = counter.client;
    const j = journalOn(counting);
    await Promise.all(Array.from({ length: 50 }, (_, i) => j.record(intent(`u${i}`))));
    assert.ok(counter.writes <= 2, `50 intents took ${counter.writes} writes`);
    assert.equal(j.list().length, 50);
  });

  it("records an intent with a 200 KiB StorageClass parameter and reads it back", async () => {
    const leases = fakeLeases();
    const j = journalOn(leases.client);
    const big = bigIntent("big", "x".repeat(200 * 1024));
    await j.record(big);
    assert.deepEqual(j.get("big"), big);
    const again = journalOn(leases.client);
    assert.deepEqual(await again.load(), [big]);
  });

  it("counts bytes, not characters: a multi-byte 250 KiB parameter is stored in parts", async () => {
    const leases = fakeLeases();
    const j = journalOn(leases.client);
    // 85,000 characters, 255,000 bytes in UTF-8: one Lease cannot hold it.
    const big = bigIntent("euro", "€".repeat(85_000));
    await j.record(big);
    assert.ok(leases.store.size >= 2, `stored on ${leases.store.size} Lease(s)`);
    const again = journalOn(leases.client);
    assert.deepEqual(await again.load(), [big]);
    again.clear("euro");
    await again.flush();
    for (const l of leases.store.values()) {
      assert.deepEqual(
        Object.keys(l.metadata.annotations ?? {}).filter((k) => k.startsWith("intent.")),
        [],
      );
    }
  });

  it("grows with the claims in flight: 5,000 intents need more Leases, and all are kept", async () => {
    const leases = fakeLeases();
    const j = journalOn(leases.client);
    const uids = Array.from({ length: 5000 }, (_, i) => `claim-${i}`);
    await Promise.all(uids.map((u) => j.record(bigIntent(u, "p".repeat(200)))));
    assert.ok(leases.store.size > 4, `only ${leases.store.size} Leases`);
    const again = journalOn(leases.client);
    assert.equal((await again.load()).length, 5000);
    // Room freed by removals is used again before a new Lease is made.
    for (const u of uids.slice(0, 2500)) again.clear(u);
    await again.flush();
    const before = leases.store.size;
    await Promise.all(
      Array.from({ length: 2000 }, (_, i) => again.record(bigIntent(`more-${i}`, "p".repeat(200)))),
    );
    assert.equal(leases.store.size, before);
    assert.equal(again.list().length, 4500);
  });

  it("ignores and removes an intent whose parts were not all stored", async () => {
    const leases = fakeLeases();
    const j = journalOn(leases.client);
    await j.record(bigIntent("torn", "€".repeat(85_000)));
    // A crash while removing it: one part is gone.
    const withPart = [...leases.store.values()].find((l) =>
      Object.keys(l.metadata.annotations ?? {}).some((k) => k.endsWith("torn.0.2")),
    )!;
    delete withPart.metadata.annotations!["intent.csi-provisioner.storage.k8s.io/torn.0.2"];
    const clock = new FakeClock();
    const again = journalOn(leases.client, clock);
    assert.deepEqual(await again.load(), []);
    await again.flush();
    for (const l of leases.store.values()) {
      assert.deepEqual(
        Object.keys(l.metadata.annotations ?? {}).filter((k) => k.startsWith("intent.")),
        [],
      );
    }
  });

  it("folds intents that arrive while a write waits for its turn into that write", async () => {
    const leases = fakeLeases();
    const counter = countingWrites(leases.client);
    const counting = counter.client;
    const j = journalOn(counting);
    leases.hold();
    const first = j.record(intent("a"));
    await settle();
    const later = [j.record(intent("b")), j.record(intent("c"))];
    leases.release();
    await Promise.all([first, ...later]);
    assert.equal(counter.writes, 1);
    const again = journalOn(leases.client);
    assert.deepEqual((await again.load()).map((i) => i.uid).sort(), ["a", "b", "c"]);
  });

  it("starts a write at least the commit window after the previous one, with every claim that came meanwhile", async () => {
    const leases = fakeLeases();
    const counter = countingWrites(leases.client);
    const clock = new FakeClock();
    const j = journalOn(counter.client, clock, { commitWindowMs: 100 });
    await j.record(intent("a"));
    assert.equal(counter.writes, 1, "the first write goes at once");
    let done = 0;
    const later = ["b", "c", "d"].map((u) => j.record(intent(u)).then(() => void done++));
    await clock.waitForSleepers(1);
    assert.equal(counter.writes, 1, "the next one waits for the window");
    await clock.advance(100);
    await Promise.all(later);
    assert.equal(done, 3);
    assert.equal(counter.writes, 2);
  });

  it("leaves no abort listener on the caller's signal once an intent is stored", async () => {
    const leases = fakeLeases();
    const j = journalOn(leases.client);
    const ac = new AbortController();
    const signal = ac.signal;
    let listeners = 0;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = ((type: string, fn: EventListener, o?: AddEventListenerOptions) => {
      listeners++;
      add(type, fn, o);
    }) as typeof signal.addEventListener;
    signal.removeEventListener = ((type: string, fn: EventListener, o?: EventListenerOptions) => {
      listeners--;
      remove(type, fn, o);
    }) as typeof signal.removeEventListener;
    for (const u of ["a", "b", "c"]) await j.record(intent(u), signal);
    assert.equal(listeners, 0, "a long-lived signal does not collect a listener per claim");
    ac.abort(new Error("stop"));
    await assert.rejects(j.record(intent("d"), signal), /stop/);
  });

  it("does not wait out the commit window once commitBatch additions are pending", async () => {
    const leases = fakeLeases();
    const counter = countingWrites(leases.client);
    const clock = new FakeClock();
    const j = journalOn(counter.client, clock, { commitWindowMs: 10_000, commitBatch: 3 });
    await j.record(intent("a"));
    const two = ["b", "c"].map((u) => j.record(intent(u)));
    await clock.waitForSleepers(1);
    assert.equal(counter.writes, 1, "two pending additions wait for the window");
    // The third pending addition ends the window: no clock advance needed.
    await Promise.all([...two, j.record(intent("d"))]);
    assert.equal(counter.writes, 2, "one write carries the batch");
    assert.deepEqual(
      j
        .list()
        .map((i) => i.uid)
        .sort(),
      ["a", "b", "c", "d"],
    );
    const stored = Object.keys(
      (await leases.client.get("d-provisioning-intents-0", "ns")).metadata.annotations ?? {},
    );
    assert.equal(stored.length, 4);
  });
});
