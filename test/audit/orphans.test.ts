/**
 * The orphaned-volume audit: planted orphans of each kind and look-alikes that must never be
 * deleted, against a stub driver (pages, conditions) and through the periodic auditor.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate } from "node:timers";
import {
  createOrphanAuditor,
  type OrphanAuditorOptions,
  registerOrphanMetrics,
} from "../../src/audit/auditor.ts";
import {
  type AuditInput,
  auditOrphans,
  claimUidOf,
  PV_NAME_CONTEXT_KEY,
} from "../../src/audit/orphans.ts";
import { ControllerServiceCapability_RPC_Type as Cap } from "../../src/gen/csi/v1/csi_pb.js";
import type { PersistentVolume, PersistentVolumeClaim } from "../../src/kube/objects.ts";
import { Registry } from "../../src/metrics/registry.ts";
import { createLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { startHarness } from "../support/sidecar-harness.ts";

const DRIVER = "fake.csi.k8s.io";
const uid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;

interface StubVolume {
  volumeId: string;
  context?: Record<string, string>;
  condition?: { abnormal: boolean; message: string };
}

/** A driver listing `volumes` two per page; records DeleteVolume calls. */
function stubDriver(volumes: StubVolume[]) {
  const deleted: string[] = [];
  const driver = {
    deleted,
    async listVolumes(req: { maxEntries?: number; startingToken?: string }) {
      const start = Number(req.startingToken || "0");
      const page = volumes.slice(start, start + 2);
      return {
        entries: page.map((v) => ({
          volume: {
            volumeId: v.volumeId,
            capacityBytes: 1073741824n,
            volumeContext: v.context ?? {},
          },
          status: v.condition ? { volumeCondition: v.condition, publishedNodeIds: [] } : undefined,
        })),
        nextToken: start + 2 < volumes.length ? String(start + 2) : "",
      };
    },
    async call() {
      return { status: { volumeCondition: { abnormal: true, message: "from GetVolume" } } };
    },
    async deleteVolume(req: { volumeId: string }) {
      deleted.push(req.volumeId);
      const i = volumes.findIndex((v) => v.volumeId === req.volumeId);
      if (i >= 0) volumes.splice(i, 1);
      return {};
    },
  };
  return driver as typeof driver & AuditInput["driver"] & OrphanAuditorOptions["driver"];
}

const pv = (name: string, handle: string, claimUid?: string): PersistentVolume => ({
  metadata: { name },
  spec: {
    csi: { driver: DRIVER, volumeHandle: handle },
    ...(claimUid ? { claimRef: { uid: claimUid, namespace: "ns", name: "c" } } : {}),
  },
});
const claim = (u: string): PersistentVolumeClaim => ({
  metadata: { name: `c-${u.slice(-2)}`, namespace: "ns", uid: u },
  spec: {},
});

/**
 * The planted world. Volumes 1-3 are explained; 4 and 8 are deletable orphans; 5, 6, 7 and 9
 * are orphans that must never be deleted (look-alikes, a claim that still exists, another
 * prefix, a name that is no UUID).
 */
function world() {
  const volumes: StubVolume[] = [
    { volumeId: `pvc-${uid(1)}` }, // 1: a PV has it
    { volumeId: `pvc-${uid(2)}` }, // 2: an intent names it (crash clean-up pending)
    { volumeId: `pvc-${uid(3)}` }, // 3: its claim exists without a PV (provisioning in flight)
    { volumeId: `pvc-${uid(4)}`, condition: { abnormal: false, message: "ok" } }, // 4: claim gone
    { volumeId: `other-${uid(5)}` }, // 5: another sidecar's prefix
    { volumeId: "pvc-not-a-uuid" }, // 6: our prefix, no UUID
    { volumeId: `pvc-${uid(7)}` }, // 7: claim exists and is bound to another PV
    { volumeId: "vol-8", context: { [PV_NAME_CONTEXT_KEY]: `pvc-${uid(8)}` } }, // 8: name in context, claim gone
    { volumeId: `xpvc-${uid(9)}` }, // 9: look-alike: prefix embedded
    { volumeId: "vol-10" }, // 10: nameless
  ];
  const pvs = [pv(`pvc-${uid(1)}`, `pvc-${uid(1)}`, uid(1)), pv("pvc-other", "h-7", uid(7))];
  const claims = [claim(uid(3)), claim(uid(7))];
  const intents = [{ uid: uid(2), pvName: `pvc-${uid(2)}` }];
  return { volumes, pvs, claims, intents };
}

const caps = new Set([Cap.CREATE_DELETE_VOLUME, Cap.LIST_VOLUMES]);

describe("claimUidOf()", () => {
  it("reads a UID only from exactly <prefix>-<UUID>", () => {
    assert.equal(claimUidOf(`pvc-${uid(1)}`, "pvc"), uid(1));
    assert.equal(claimUidOf(`xpvc-${uid(1)}`, "pvc"), undefined);
    assert.equal(claimUidOf(`pvc-${uid(1)}-x`, "pvc"), undefined);
    assert.equal(claimUidOf("pvc-abc", "pvc"), undefined);
    assert.equal(claimUidOf(`my.prefix-${uid(1)}`, "my.prefix"), uid(1));
    assert.equal(claimUidOf(`myxprefix-${uid(1)}`, "my.prefix"), undefined);
  });
});

describe("auditOrphans()", () => {
  it("lists every page and reports what nothing explains, with what is known", async () => {
    const w = world();
    const r = await auditOrphans({
      driver: stubDriver(w.volumes),
      driverName: DRIVER,
      controllerCapabilities: caps,
      volumeNamePrefix: "pvc",
      volumes: w.pvs,
      claims: w.claims,
      intents: w.intents,
    });
    assert.ok(r.kind === "ok");
    assert.equal(r.volumes, 10);
    const byId = new Map(r.orphans.map((o) => [o.volumeId, o]));
    assert.deepEqual(
      [...byId.keys()],
      [
        `pvc-${uid(4)}`,
        `other-${uid(5)}`,
        "pvc-not-a-uuid",
        `pvc-${uid(7)}`,
        "vol-8",
        `xpvc-${uid(9)}`,
        "vol-10",
      ],
    );
    assert.deepEqual(byId.get(`pvc-${uid(4)}`), {
      volumeId: `pvc-${uid(4)}`,
      capacityBytes: 1073741824,
      name: `pvc-${uid(4)}`,
      claimUid: uid(4),
      claimExists: false,
      condition: { abnormal: false, message: "ok" },
      deletable: true,
    });
    assert.equal(byId.get("vol-8")?.name, `pvc-${uid(8)}`);
    assert.equal(byId.get("vol-8")?.deletable, true);
    assert.equal(byId.get(`pvc-${uid(7)}`)?.claimExists, true);
    for (const id of [
      `other-${uid(5)}`,
      "pvc-not-a-uuid",
      `pvc-${uid(7)}`,
      `xpvc-${uid(9)}`,
      "vol-10",
    ]) {
      assert.equal(byId.get(id)?.deletable, false, id);
    }
    assert.equal(byId.get("vol-10")?.name, undefined);
  });

  it("asks ControllerGetVolume for the condition when ListVolumes has none", async () => {
    const r = await auditOrphans({
      driver: stubDriver([{ volumeId: "vol-1" }]),
      driverName: DRIVER,
      controllerCapabilities: new Set([...caps, Cap.GET_VOLUME, Cap.VOLUME_CONDITION]),
      volumeNamePrefix: "pvc",
      volumes: [],
      claims: [],
      intents: [],
    });
    assert.ok(r.kind === "ok");
    assert.deepEqual(r.orphans[0]?.condition, { abnormal: true, message: "from GetVolume" });
  });

  it("says so when the driver cannot list its volumes", async () => {
    const r = await auditOrphans({
      driver: stubDriver([]),
      driverName: DRIVER,
      controllerCapabilities: new Set([Cap.CREATE_DELETE_VOLUME]),
      volumeNamePrefix: "pvc",
      volumes: [],
      claims: [],
      intents: [],
    });
    assert.equal(r.kind, "unsupported");
    assert.match(
      r.kind === "unsupported" ? r.message : "",
      /fake\.csi\.k8s\.io does not offer LIST_VOLUMES/,
    );
  });
});

describe("the periodic orphan auditor", () => {
  const setup = (deleteOrphans: boolean) => {
    const w = world();
    const driver = stubDriver(w.volumes);
    const clock = new FakeClock();
    const registry = new Registry();
    const logs: string[] = [];
    const live = { claims: [...w.claims] };
    const auditor = createOrphanAuditor({
      driver,
      driverName: DRIVER,
      controllerCapabilities: caps,
      volumeNamePrefix: "pvc",
      volumes: () => w.pvs,
      claims: () => w.claims,
      intents: () => w.intents,
      liveVolumes: async () => w.pvs,
      liveClaims: async () => live.claims,
      intervalMs: 60_000,
      deleteOrphans,
      graceMs: 3_600_000,
      clock,
      logger: createLogger({ write: (l) => logs.push(l), clock, verbosity: 0 }),
      metrics: registerOrphanMetrics(registry),
    });
    return { w, driver, clock, registry, logs, live, auditor };
  };

  it("deletes only deletable orphans, only after the grace period, one log line each", async () => {
    const s = setup(true);
    const stop = new AbortController();
    await s.auditor.auditOnce(stop.signal);
    assert.deepEqual(s.driver.deleted, [], "nothing is deleted before the grace period");
    const text = s.registry.render();
    assert.match(text, /controller_persistentvolume_orphans\{deletable="true"\} 2/);
    assert.match(text, /controller_persistentvolume_orphans\{deletable="false"\} 5/);
    assert.match(text, /controller_persistentvolume_orphan_audit_timestamp_seconds \d+/);
    await s.clock.advance(3_600_000);
    await s.auditor.auditOnce(stop.signal);
    assert.deepEqual(s.driver.deleted.sort(), [`pvc-${uid(4)}`, "vol-8"]);
    assert.equal(s.logs.filter((l) => l.includes("Deleted orphaned volume")).length, 2);
    assert.match(s.registry.render(), /controller_persistentvolume_orphans_deleted_total 2/);
    // Later audits find nothing left to delete, and never the look-alikes.
    await s.clock.advance(3_600_000);
    await s.auditor.auditOnce(stop.signal);
    assert.deepEqual(s.driver.deleted.sort(), [`pvc-${uid(4)}`, "vol-8"]);
    assert.equal(s.w.volumes.length, 8);
  });

  it("is a dry run by default: it logs what it would delete", async () => {
    const s = setup(false);
    const stop = new AbortController();
    await s.auditor.auditOnce(stop.signal);
    await s.clock.advance(3_600_000);
    await s.auditor.auditOnce(stop.signal);
    assert.deepEqual(s.driver.deleted, []);
    assert.equal(s.logs.filter((l) => l.includes("Would delete orphaned volume")).length, 2);
  });

  it("does not delete a volume whose claim is back in a live read", async () => {
    const s = setup(true);
    const stop = new AbortController();
    await s.auditor.auditOnce(stop.signal);
    await s.clock.advance(3_600_000);
    s.live.claims.push(claim(uid(4)));
    await s.auditor.auditOnce(stop.signal);
    assert.deepEqual(s.driver.deleted, ["vol-8"]);
  });
});

/** Resolves once `check()` holds, checking after each turn of the event loop; rejects after 10 s. */
async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise<void>((r) => setImmediate(r));
  }
}

describe("the sidecar with --orphan-audit-interval", () => {
  it("deletes a planted orphan of its own name form and nothing else", async () => {
    const h = await startHarness();
    try {
      h.driver.addVolume({ name: `pvc-${uid(41)}`, volumeId: `pvc-${uid(41)}` });
      h.driver.addVolume({ name: `other-${uid(42)}`, volumeId: `other-${uid(42)}` });
      h.driver.addVolume({ name: "pvc-lookalike", volumeId: "pvc-lookalike" });
      const sidecar = await h.start([
        "--kube-api-qps=1000",
        "--kube-api-burst=1000",
        "--orphan-audit-interval=1h",
        "--orphan-delete",
        "--orphan-grace-period=0s",
      ]);
      const [call] = await h.driver.waitForCalls("deleteVolume");
      assert.equal(call!.request.volumeId, `pvc-${uid(41)}`);
      await until(() => h.logs.some((l) => l.includes("Deleted orphaned volume")));
      assert.deepEqual(
        [...h.driver.volumes().keys()].sort(),
        ["pvc-lookalike", `other-${uid(42)}`].sort(),
      );
      assert.match(
        sidecar.metrics.registry.render(),
        /controller_persistentvolume_orphans_deleted_total 1/,
      );
    } finally {
      await h.close();
    }
  });
});
