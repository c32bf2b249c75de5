/**
 * The crash scenario, shared by test/e2e/crash.test.ts (ours, asserted) and
 * bench/crash-upstream.ts (upstream's sidecar, measured):
 *
 * 1. `claims` claims of an Immediate, Delete StorageClass are created at once.
 * 2. While the sidecar provisions them, it is killed with SIGKILL `kills` times, each time once
 *    the driver has created a seeded random number of volumes (so the kills land while
 *    CreateVolume calls and PV writes are in flight). While it is down, a seeded share of
 *    `deletions` claims is deleted, picked among the claims at risk: not yet Bound, with a volume
 *    on the driver (`pick: "pending"`: among all claims not yet Bound); then it is started again
 *    with the same arguments.
 * 3. After the last restart: every surviving claim must become Bound, and the PVs of deleted
 *    claims that had been Bound are deleted by the sidecar.
 * 4. The driver's ListVolumes is the ground truth: a volume no PV names is leaked; a CreateVolume
 *    name with more than one volume, or a claim with more than one PV, is a duplicate.
 *
 * The same seed gives both sidecars the same kill points (in created volumes) and the same
 * choice function for deletions; what is in flight at each kill depends on each sidecar's speed.
 */

import type { KubeList, PersistentVolume, PersistentVolumeClaim } from "../../src/kube/objects.ts";
import { seededRandom } from "../support/seeded-random.ts";
import type { Cluster, DriverVolumeInfo } from "./cluster.ts";
import type { Sidecar } from "./peers.ts";
import { claimPath, eventually, followCsiCalls, type Kube, kube, volumePath } from "./support.ts";

export interface CrashOptions {
  seed: number;
  /** Claims created at the start. Default 300. */
  claims?: number;
  /** SIGKILLs (each followed by a restart). Default 20. */
  kills?: number;
  /** Claims deleted while the sidecar is down, over all kills. Default 30. */
  deletions?: number;
  /**
   * Which claims are deleted while the sidecar is down: "at-risk" (default) picks among the
   * claims not yet Bound whose volume the driver has created, so that every deletion tests the
   * recovery; "pending" picks among all claims not yet Bound, with or without a volume.
   */
  pick?: "at-risk" | "pending";
  /** Namespace of the claims. Default "crash". */
  namespace?: string;
  /** Deadline for the surviving claims to be Bound after the last restart, ms. Default 600000. */
  settleTimeoutMs?: number;
  /**
   * After settling, how long to wait for the leaked count to reach 0 (ms). The sidecar under
   * test gets a generous deadline; a sidecar with no recovery just spends it. Default 120000.
   */
  leakGraceMs?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface KillRecord {
  /** Volumes the driver had created (distinct CreateVolume names) when the kill was sent. */
  atVolumes: number;
  /** Claims (names) deleted while the sidecar was down. */
  deleted: string[];
  /** How many of them had a volume on the driver at that point. */
  deletedWithVolume: number;
}

export interface CrashResult {
  flavour: string;
  seed: number;
  pick: "at-risk" | "pending";
  claims: number;
  kills: KillRecord[];
  /** Claims deleted while the sidecar was down. */
  deleted: number;
  /** Surviving claims Bound at the end. */
  bound: number;
  /** Volumes on the driver (ListVolumes) that no PV names, at the end. */
  leaked: DriverVolumeInfo[];
  /** Of those, volumes created for a claim deleted while the sidecar was down. */
  leakedOfDeleted: number;
  /** CreateVolume names with more than one volume on the driver. */
  duplicateVolumes: number;
  /** Claims with more than one PV naming them. */
  duplicatePvs: number;
  /** Driver volumes at the end, and PVs at the end. */
  volumes: number;
  pvs: number;
  /** From the first claim to the end of the measurement, ms. */
  durationMs: number;
}

/** The seeded plan: kill points (in created volumes, ascending) and deletions per kill. */
export function crashPlan(
  seed: number,
  claims: number,
  kills: number,
  deletions: number,
): { killAt: number[]; deletePerKill: number[] } {
  const rnd = seededRandom(seed);
  // Kill points in [2%, 85%] of the claims: reachable even if every deleted claim had no volume.
  const lo = Math.max(1, Math.floor(claims * 0.02));
  const hi = Math.max(lo + 1, Math.floor(claims * 0.85));
  const killAt = Array.from({ length: kills }, () => lo + Math.floor(rnd() * (hi - lo))).sort(
    (a, b) => a - b,
  );
  const deletePerKill = Array.from({ length: kills }, () => 0);
  for (let i = 0; i < deletions; i++) {
    // Spread evenly first, then at random.
    deletePerKill[i < kills ? i : Math.floor(rnd() * kills)]! += 1;
  }
  return { killAt, deletePerKill };
}

type Claim = PersistentVolumeClaim;

/**
 * Runs the scenario against a running `sidecar` (its driver is the cluster's). Creates the
 * namespace and a StorageClass `crash-<namespace>`. Leaves the claims behind.
 */
export async function runCrashScenario(
  cluster: Cluster,
  sidecar: Sidecar,
  opts: CrashOptions,
): Promise<CrashResult> {
  const claims = opts.claims ?? 300;
  const kills = opts.kills ?? 20;
  const deletions = opts.deletions ?? 30;
  const ns = opts.namespace ?? "crash";
  const className = `crash-${ns}`;
  const log = opts.log ?? (() => {});
  const k: Kube = kube((m, p, b, o) => cluster.request(m, p, b, o));
  const plan = crashPlan(opts.seed, claims, kills, deletions);
  const pick = seededRandom(opts.seed ^ 0x5eed);

  await k.ensureNamespace(ns);
  await k.ensureStorageClass(className, cluster.driverName);

  // Volumes created so far: distinct names of successful CreateVolume calls.
  const calls = followCsiCalls(cluster.logFiles["csi-driver"]!);
  const created = new Set<string>();
  const refresh = () => {
    for (const c of calls.poll()) {
      if (c.Method === "/csi.v1.Controller/CreateVolume" && c.Error === "") {
        created.add(String(c.Request.name));
      }
    }
    return created.size;
  };

  const started = Date.now();
  const names = Array.from({ length: claims }, (_, i) => `claim-${String(i).padStart(3, "0")}`);
  const uids = new Map<string, string>();
  const creating = (async () => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (next < names.length) {
          const name = names[next++]!;
          const c = await k.createClaim(ns, name, className);
          uids.set(name, c.metadata.uid!);
        }
      }),
    );
  })();

  const deleted = new Set<string>();
  const records: KillRecord[] = [];
  for (let i = 0; i < kills; i++) {
    const target = plan.killAt[i]!;
    await eventually(
      `the driver to have created ${target} volumes (kill ${i + 1})`,
      () => {
        if (sidecar.process.exit) {
          throw new Error(`${sidecar.process.name} exited on its own\n${sidecar.process.tail()}`);
        }
        return refresh() >= target ? true : undefined;
      },
      { timeoutMs: opts.settleTimeoutMs ?? 600_000, intervalMs: 25 },
    );
    await sidecar.kill();
    const atVolumes = refresh();
    // Deletions: seeded picks (see `pick`) among the claims not yet Bound; the PV of a claim at
    // risk may or may not be saved.
    await creating.catch(() => {});
    const list = await k.call<KubeList<Claim>>("GET", claimPath(ns));
    const live = list.items
      .filter((c) => !c.metadata.deletionTimestamp && !deleted.has(c.metadata.name!))
      .sort((a, b) => a.metadata.name!.localeCompare(b.metadata.name!));
    const pending = live.filter((c) => c.status?.phase !== "Bound");
    const atRisk =
      (opts.pick ?? "at-risk") === "at-risk"
        ? pending.filter((c) => created.has(`pvc-${c.metadata.uid}`))
        : [];
    const pool = atRisk.length > 0 ? atRisk : pending.length > 0 ? pending : live;
    const chosen: string[] = [];
    for (let j = 0; j < plan.deletePerKill[i]! && pool.length > 0; j++) {
      chosen.push(pool.splice(Math.floor(pick() * pool.length), 1)[0]!.metadata.name!);
    }
    for (const name of chosen) {
      deleted.add(name);
      await k.call("DELETE", claimPath(ns, name));
    }
    for (const name of chosen) {
      await k.waitGone(`claim ${ns}/${name} to be deleted`, claimPath(ns, name));
    }
    const withVolume = chosen.filter((n) => created.has(`pvc-${uids.get(n)}`)).length;
    records.push({ atVolumes, deleted: chosen, deletedWithVolume: withVolume });
    log(
      `kill ${i + 1}/${kills} at ${atVolumes} volumes; deleted ${chosen.join(", ") || "none"} (${withVolume} with a volume)`,
    );
    await sidecar.start();
  }
  await creating;

  const survivors = names.filter((n) => !deleted.has(n));
  await k.waitBound(ns, survivors, opts.settleTimeoutMs ?? 600_000);
  const deletedUids = new Set([...deleted].map((n) => uids.get(n)));
  await eventually(
    "the PVs of the deleted claims to be deleted",
    async () => {
      const pvs = (await k.call<KubeList<PersistentVolume>>("GET", volumePath())).items;
      return pvs.some((pv) => deletedUids.has(pv.spec.claimRef?.uid)) ? undefined : true;
    },
    { timeoutMs: opts.settleTimeoutMs ?? 600_000 },
  );

  const measure = async () => {
    const volumes = await cluster.listVolumes();
    const pvs = (await k.call<KubeList<PersistentVolume>>("GET", volumePath())).items;
    const handles = new Set(pvs.map((pv) => pv.spec.csi?.volumeHandle));
    const leaked = volumes.filter((v) => !handles.has(v.id));
    const perName = new Map<string, number>();
    for (const v of volumes) perName.set(v.name, (perName.get(v.name) ?? 0) + 1);
    const perClaim = new Map<string, number>();
    for (const pv of pvs) {
      const uid = pv.spec.claimRef?.uid;
      if (uid) perClaim.set(uid, (perClaim.get(uid) ?? 0) + 1);
    }
    return {
      volumes: volumes.length,
      pvs: pvs.length,
      leaked,
      duplicateVolumes: [...perName.values()].filter((n) => n > 1).length,
      duplicatePvs: [...perClaim.values()].filter((n) => n > 1).length,
    };
  };
  let end = await measure();
  const graceEnd = Date.now() + (opts.leakGraceMs ?? 120_000);
  while (end.leaked.length > 0 && Date.now() < graceEnd) {
    await new Promise((r) => setTimeout(r, 1000));
    end = await measure();
  }
  const deletedNames = new Set([...deletedUids].map((u) => `pvc-${u}`));
  const bound = (await k.call<KubeList<Claim>>("GET", claimPath(ns))).items.filter(
    (c) => c.status?.phase === "Bound",
  ).length;
  const result: CrashResult = {
    flavour: sidecar.flavour,
    seed: opts.seed,
    pick: opts.pick ?? "at-risk",
    claims,
    kills: records,
    deleted: deleted.size,
    bound,
    leaked: end.leaked,
    leakedOfDeleted: end.leaked.filter((v) => deletedNames.has(v.name)).length,
    duplicateVolumes: end.duplicateVolumes,
    duplicatePvs: end.duplicatePvs,
    volumes: end.volumes,
    pvs: end.pvs,
    durationMs: Date.now() - started,
  };
  log(
    `${sidecar.flavour} seed ${opts.seed}: ${result.leaked.length} leaked (${result.leakedOfDeleted} of deleted claims), ${result.duplicateVolumes + result.duplicatePvs} duplicates, ${bound}/${survivors.length} Bound, ${(result.durationMs / 1000).toFixed(0)} s`,
  );
  return result;
}
