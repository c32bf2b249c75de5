/**
 * A leader hands over after the intent journal's flush (or at the end of its hand-over budget):
 * a removal already waiting for the API budget at low priority must not hold that flush up
 * behind PV writes and events.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createIntentJournal } from "../../src/controller/journal.ts";
import type { ResourceClient, WriteOptions } from "../../src/kube/api.ts";
import { KubeApiError } from "../../src/kube/errors.ts";
import type { Lease } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { nullLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { settle } from "./memory-leases.ts";

/** Leases whose low-priority writes wait (as behind a busy rate limiter) until cancelled. */
function starvedLeases() {
  const store = new Map<string, Lease>();
  let rv = 0;
  const priorities: (string | undefined)[] = [];
  const write = async (l: Lease, opts?: WriteOptions) => {
    priorities.push(opts?.priority);
    if (opts?.priority === "low") {
      await new Promise<void>((_, reject) => {
        const cancel = () => reject(opts.signal?.reason ?? new Error("aborted"));
        if (opts.signal?.aborted) cancel();
        else opts.signal?.addEventListener("abort", cancel, { once: true });
      });
    }
    const current = store.get(l.metadata.name!);
    if (current && l.metadata.resourceVersion !== current.metadata.resourceVersion) {
      throw KubeApiError.fromStatus("update", `leases ${l.metadata.name}`, {
        code: 409,
        reason: "Conflict",
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
    list: async () => ({ metadata: {}, items: [...store.values()] }),
    create: write,
    update: write,
  } as unknown as ResourceClient<Lease>;
  return { client, store, priorities };
}

describe("intent journal flush at shutdown", () => {
  it("never leaves a removal waiting at low priority: the flush ends without waiting on it", async () => {
    const clock = new FakeClock();
    const leases = starvedLeases();
    const j = createIntentJournal({
      leases: leases.client,
      namespace: "ns",
      driverName: "d",
      clock,
      logger: nullLogger,
      shards: 1,
      removeDelayMs: 1_000,
    });
    await j.load();
    await j.record({
      uid: "a",
      namespace: "ns",
      name: "c-a",
      pvName: "pvc-a",
      storageClass: "sc",
      request: { name: "pvc-a" },
    });
    j.clear("a");
    await clock.advance(1_000); // the batched removal starts
    await settle();
    await j.flush();
    assert.ok(!leases.priorities.includes("low"), "no journal write waits behind events");
    const stored = [...leases.store.values()][0]!;
    assert.ok(
      !Object.keys(stored.metadata.annotations ?? {}).some((k) => k.includes("a")),
      "the removal is stored",
    );
  });
});
