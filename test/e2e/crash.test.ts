/**
 * The crash test: our compiled provisioner, against kube-apiserver, kube-controller-manager and
 * hostpathplugin, provisions 300 claims while it is killed with SIGKILL at 20 seeded moments and
 * started again; 30 claims are deleted while it is down. It must end with every surviving claim
 * Bound, no leaked volume (counted with the driver's ListVolumes) and no duplicate. The scenario
 * is test/e2e/crash.ts; bench/crash-upstream.ts runs upstream's sidecar through the same seeds.
 *
 *   export E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)
 *   scripts/build.sh linux-x64              # or E2E_PROVISIONER=/path/to/csi-provisioner
 *   node_modules/.bin/node --test test/e2e/crash.test.ts
 *
 * E2E_CRASH_SEED picks the seed (default 1); E2E_VERBOSE=1 prints every line the processes log.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Cluster, startCluster } from "./cluster.ts";
import { runCrashScenario } from "./crash.ts";
import { type Sidecar, startSidecar } from "./peers.ts";
import {
  e2eBinDir as binDir,
  killAllStarted,
  verboseLog as log,
  skipWithoutBinDir as skip,
} from "./support.ts";

const SEED = Number(process.env.E2E_CRASH_SEED ?? 1);
const TIMEOUT_MS = 900_000;

let cluster: Cluster | undefined;
let ours: Sidecar | undefined;

describe("csi-provisioner killed 20 times while it provisions 300 claims", () => {
  before(
    async () => {
      if (!binDir) return;
      cluster = await startCluster({ binDir, driver: "hostpath", log });
      ours = await startSidecar(cluster, { flavour: "ours", binDir, args: ["-v=2"], log });
    },
    { timeout: 120_000 },
  );
  after(
    async () => {
      await ours?.stop();
      await killAllStarted();
      await cluster?.stop();
    },
    { timeout: 120_000 },
  );

  it(`leaks no volume and creates no duplicate (seed ${SEED})`, {
    skip,
    timeout: TIMEOUT_MS,
  }, async (t) => {
    const result = await runCrashScenario(cluster!, ours!, {
      seed: SEED,
      log: (line) => {
        t.diagnostic(line);
        log?.(line);
      },
    });
    const summary = `${result.deleted} claims deleted while down (${result.kills.reduce((n, k) => n + k.deletedWithVolume, 0)} had a volume); ${result.volumes} volumes, ${result.pvs} PVs; ${(result.durationMs / 1000).toFixed(0)} s`;
    t.diagnostic(summary);
    console.error(`e2e crash (ours, seed ${SEED}): ${summary}`);
    assert.equal(result.kills.length, 20);
    assert.equal(result.deleted, 30);
    assert.equal(result.bound, 270, "surviving claims Bound");
    assert.deepEqual(
      result.leaked.map((v) => `${v.id} (${v.name})`),
      [],
      "volumes on the driver without a PV",
    );
    assert.equal(result.duplicateVolumes, 0, "CreateVolume names with several volumes");
    assert.equal(result.duplicatePvs, 0, "claims with several PVs");
    assert.equal(result.volumes, 270);
  });
});
