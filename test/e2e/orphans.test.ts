/**
 * The orphaned-volume audit against the real control plane and csi-driver-host-path's
 * `hostpathplugin`, with planted orphans of each kind and look-alikes:
 * - a volume whose PV was deleted by hand (its claim is left Lost);
 * - a volume an old sidecar created for a claim that is gone (`pvc-<UUID>`, no PV, no claim);
 * - look-alikes: `pvc-lookalike` (our prefix, no UUID) and `other-<UUID>` (another prefix);
 * and a normally provisioned claim that must not be reported. hostpathplugin's ListVolumes
 * returns no names and no volume context, so none of these may be deleted even with
 * `--orphan-delete` and no grace period: the test checks that across several audits.
 *
 *   export E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)
 *   E2E_PROVISIONER=/path/to/csi-provisioner node_modules/.bin/node --test test/e2e/orphans.test.ts
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type { PersistentVolume } from "../../src/kube/objects.ts";
import { type Cluster, startCluster } from "./cluster.ts";
import { OUR_EXECUTABLE, type Sidecar, startSidecar } from "./peers.ts";
import {
  e2eBinDir as binDir,
  eventually,
  type Kube,
  killAllStarted,
  kube,
  skipWithoutBinDir as skip,
  volumePath,
  withDriver,
} from "./support.ts";

const NS = "orphans";
const CLASS = "orphans";
const GONE_UID = "3f1e2d3c-4b5a-4968-8776-655443322110";
const OTHER_UID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

let cluster: Cluster;
let k: Kube;
let ours: Sidecar;

/** CreateVolume straight on the driver, as an old sidecar or a script would have. */
async function createOnDriver(name: string): Promise<string> {
  const r = await withDriver(cluster.csiSocket, (driver) =>
    driver.createVolume({
      name,
      capacityRange: { requiredBytes: 1024n * 1024n },
      volumeCapabilities: [{ accessType: { case: "mount", value: {} }, accessMode: { mode: 1 } }],
    }),
  );
  return r.volume!.volumeId;
}

async function metrics(): Promise<string> {
  const r = await fetch(`http://${ours.httpEndpoint}/metrics`);
  return r.text();
}

function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

function runOrphansCommand(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(OUR_EXECUTABLE, ["orphans", ...args], { env: {} }, (err, stdout, stderr) => {
      const code = err ? Number((err as { code?: number }).code ?? 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe("orphaned-volume audit on hostpathplugin", { skip, timeout: 300_000 }, () => {
  before(async () => {
    cluster = await startCluster({ binDir: binDir!, driver: "hostpath" });
    k = kube((m, p, b, o) => cluster.request(m, p, b, o));
    ours = await startSidecar(cluster, {
      flavour: "ours",
      binDir: binDir!,
      args: [
        "--orphan-audit-interval=2s",
        "--orphan-delete",
        "--orphan-grace-period=0s",
        "--extra-create-metadata",
      ],
    });
    await k.ensureNamespace(NS);
    await k.ensureStorageClass(CLASS, cluster.driverName);
  });
  after(async () => {
    await killAllStarted();
    await cluster?.stop();
  });

  it("reports each planted orphan, never a provisioned volume, and deletes none it cannot name", async () => {
    // Explained: a claim provisioned normally.
    await k.createClaim(NS, "kept", CLASS);
    // Orphan: a claim whose PV an administrator deleted by hand (finalizers removed first).
    await k.createClaim(NS, "lost", CLASS);
    const bound = await k.waitBound(NS, ["kept", "lost"]);
    const lostPv = (await k.volume(bound.get("lost")!.spec.volumeName!))!;
    // DELETE first: a terminating PV gets no new finalizers; then remove the ones it has.
    await k.call("DELETE", volumePath(lostPv.metadata.name));
    await eventually("the hand-deleted PV to go", async () => {
      const r = await cluster.request(
        "PATCH",
        volumePath(lostPv.metadata.name),
        { metadata: { finalizers: null } },
        { contentType: "application/merge-patch+json" },
      );
      return r.status === 404 ? true : undefined;
    });
    await k.waitGone("the hand-deleted PV", volumePath(lostPv.metadata.name));
    const lostId = lostPv.spec.csi!.volumeHandle;
    // Orphans an old sidecar or a script left: a claim that is gone, and look-alikes.
    const goneId = await createOnDriver(`pvc-${GONE_UID}`);
    const lookalikeId = await createOnDriver("pvc-lookalike");
    const otherId = await createOnDriver(`other-${OTHER_UID}`);
    const keptPv = (await k.volume(bound.get("kept")!.spec.volumeName!)) as PersistentVolume;
    const planted = [lostId, goneId, lookalikeId, otherId].sort();

    const r = await runOrphansCommand([
      `--csi-address=${cluster.csiSocket}`,
      `--kubeconfig=${ours.kubeconfig}`,
      "--output=json",
    ]);
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as {
      driver: string;
      volumes: number;
      orphans: { volumeId: string; deletable: boolean; condition: unknown }[];
    };
    assert.equal(report.driver, cluster.driverName);
    assert.equal(report.volumes, 5);
    assert.deepEqual(report.orphans.map((o) => o.volumeId).sort(), planted);
    assert.ok(!report.orphans.some((o) => o.volumeId === keptPv.spec.csi!.volumeHandle));
    assert.ok(
      report.orphans.every((o) => !o.deletable),
      "hostpathplugin gives no names",
    );
    assert.ok(
      report.orphans.every((o) => o.condition !== null),
      "ListVolumes has conditions",
    );

    // The running sidecar audits (every 2 s) with --orphan-delete: two audits later, nothing
    // it cannot name is gone.
    const first = await eventually("a first audit", async () =>
      sample(await metrics(), "controller_persistentvolume_orphan_audit_timestamp_seconds"),
    );
    await eventually("two more audits", async () => {
      const t = sample(
        await metrics(),
        "controller_persistentvolume_orphan_audit_timestamp_seconds",
      );
      return t !== undefined && t >= first + 3 ? t : undefined;
    });
    const text = await metrics();
    assert.equal(sample(text, 'controller_persistentvolume_orphans{deletable="false"}'), 4);
    assert.equal(sample(text, 'controller_persistentvolume_orphans{deletable="true"}'), 0);
    const volumes = (await cluster.listVolumes()).map((v) => v.id).sort();
    assert.deepEqual(volumes, [...planted, keptPv.spec.csi!.volumeHandle].sort());
  });
});
