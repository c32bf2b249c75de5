/**
 * The crash scenario of test/e2e/crash.ts with upstream's Go `csi-provisioner` (and, for
 * comparison in the same run, ours): 300 claims, SIGKILL at 20 seeded moments with a restart
 * after each, 30 claims deleted while the sidecar is down; then the volumes no PV names, counted
 * with hostpathplugin's ListVolumes. Each sidecar and seed gets a fresh cluster (kube-apiserver,
 * kube-controller-manager, hostpathplugin); both sidecars run with their default flags.
 *
 *   E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1) E2E_PROVISIONER=dist/csi-provisioner-linux-x64 \
 *     node_modules/.bin/node bench/crash-upstream.ts [seeds] [runs]
 *
 * `seeds`: comma-separated (default "1,2,3"); `runs`: comma-separated flavour:pick pairs
 * (default "upstream:at-risk,upstream:pending,ours:at-risk"), where pick is how the deleted
 * claims are chosen (see `CrashOptions.pick`: "at-risk" as in the test, "pending" among all
 * claims not yet Bound). Writes bench/results/crash-upstream.json. Numbers are measured, never
 * asserted.
 */

import { writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startCluster } from "../test/e2e/cluster.ts";
import { type CrashResult, runCrashScenario } from "../test/e2e/crash.ts";
import { type Flavour, startSidecar } from "../test/e2e/peers.ts";
import { killAllStarted } from "../test/e2e/support.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const binDir = process.env.E2E_BIN_DIR;
if (!binDir) {
  console.error("E2E_BIN_DIR is not set: E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)");
  process.exit(2);
}
const seeds = (process.argv[2] ?? "1,2,3").split(",").map(Number);
type Pick = "at-risk" | "pending";
const variants = (process.argv[3] ?? "upstream:at-risk,upstream:pending,ours:at-risk")
  .split(",")
  .map((v) => {
    const [flavour, pick] = v.split(":") as [Flavour, Pick | undefined];
    return { flavour, pick: pick ?? "at-risk", key: `${flavour}:${pick ?? "at-risk"}` };
  });

const runs: (Omit<CrashResult, "leaked"> & { leaked: number; leakedNames: string[] })[] = [];
for (const seed of seeds) {
  for (const { flavour, pick, key } of variants) {
    const cluster = await startCluster({ binDir, driver: "hostpath" });
    try {
      const sidecar = await startSidecar(cluster, { flavour, binDir, args: ["-v=2"] });
      const result = await runCrashScenario(cluster, sidecar, {
        seed,
        pick,
        // Upstream has no recovery for these volumes; 30 s shows that nothing cleans them late.
        leakGraceMs: 30_000,
        log: (line) => console.error(`[${key} seed ${seed}] ${line}`),
      });
      await sidecar.stop();
      runs.push({
        ...result,
        leaked: result.leaked.length,
        leakedNames: result.leaked.map((v) => v.name),
      });
    } finally {
      await killAllStarted();
      await cluster.stop();
    }
  }
}

const summary = Object.fromEntries(
  variants.map(({ flavour, pick, key }) => {
    const mine = runs.filter((r) => r.flavour === flavour && r.pick === pick);
    return [
      key,
      {
        leakedPerSeed: mine.map((r) => r.leaked),
        leakedOfDeletedPerSeed: mine.map((r) => r.leakedOfDeleted),
        deletedWithVolumePerSeed: mine.map((r) =>
          r.kills.reduce((n, k) => n + k.deletedWithVolume, 0),
        ),
        duplicatesPerSeed: mine.map((r) => r.duplicateVolumes + r.duplicatePvs),
        boundPerSeed: mine.map((r) => r.bound),
        secondsPerSeed: mine.map((r) => Math.round(r.durationMs / 1000)),
      },
    ];
  }),
);
const out = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memoryGiB: totalmem() / 1024 ** 3 },
  scenario: { claims: 300, kills: 20, deletions: 30, driver: "hostpathplugin v1.18.0" },
  summary,
  runs,
};
const file = join(ROOT, "bench/results/crash-upstream.json");
writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
console.log(JSON.stringify(summary, null, 2));
console.error(`wrote ${file}`);
