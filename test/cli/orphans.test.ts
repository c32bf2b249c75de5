/**
 * `csi-provisioner orphans` against the fake CSI driver and the test API server: what it
 * prints, in both formats, and its exit codes.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type OrphansConfig, runOrphans } from "../../src/cli/orphans.ts";
import { ControllerServiceCapability_RPC_Type as Cap } from "../../src/gen/csi/v1/csi_pb.js";
import { noAuth } from "../../src/kube/auth.ts";
import { resources } from "../../src/kube/resources.ts";
import { systemClock } from "../../src/util/clock.ts";
import { nullLogger } from "../../src/util/log.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";
import { type FakeDriver, startFakeDriver } from "../support/fake-driver.ts";

const GONE = "0b7e0a4e-6a39-4c2e-9d0b-6f1d2c3e4a5b";
const BOUND = "1c8f1b5f-7b4a-4d3f-8e1c-7a2e3d4f5b6c";

async function run(
  api: ApiServer,
  driver: FakeDriver,
  config: Partial<OrphansConfig> = {},
): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runOrphans(
    {
      csiAddress: driver.socketPath,
      timeoutMs: 5_000,
      output: "table",
      kubeconfig: "",
      master: "",
      kubeApiQps: 100,
      kubeApiBurst: 100,
      volumeNamePrefix: "pvc",
      journalNamespace: "kube-system",
      ...config,
    },
    {
      clock: systemClock,
      random: Math.random,
      logger: nullLogger,
      env: {},
      readFile: () => {
        throw new Error("no files");
      },
      write: (t) => {
        out += t;
      },
      writeError: (t) => {
        err += t;
      },
      kube: { server: api.url, tls: {}, auth: noAuth, source: "test" },
    },
  );
  return { code, out, err };
}

describe("csi-provisioner orphans", () => {
  let api: ApiServer;
  let driver: FakeDriver;
  before(async () => {
    api = await startApiServer();
    driver = await startFakeDriver({ name: "fake.csi.k8s.io" });
  });
  after(async () => {
    await driver.close();
    await api.close();
  });

  it("exits 0 and says so when every volume is explained", async () => {
    driver.addVolume({ name: `pvc-${BOUND}`, volumeId: `pvc-${BOUND}` });
    api.put({
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: `pvc-${BOUND}` },
      spec: { csi: { driver: "fake.csi.k8s.io", volumeHandle: `pvc-${BOUND}` } },
    });
    const r = await run(api, driver);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "0 orphaned of 1 volumes of CSI driver fake.csi.k8s.io\n");
  });

  it("lists orphans in a table and exits 1", async () => {
    driver.addVolume({
      name: `pvc-${GONE}`,
      volumeId: `pvc-${GONE}`,
      capacityBytes: 2n * 1024n ** 3n,
    });
    driver.addVolume({ name: "scratch", volumeId: "vol-scratch" });
    const r = await run(api, driver);
    assert.equal(r.code, 1, r.err);
    const lines = r.out.trimEnd().split("\n");
    assert.equal(lines[0], "2 orphaned of 3 volumes of CSI driver fake.csi.k8s.io");
    assert.match(
      lines[1]!,
      /^VOLUME ID\s+CAPACITY\s+NAME\s+CLAIM UID\s+CLAIM\s+CONDITION\s+DELETABLE$/,
    );
    const gone = lines.find((l) => l.startsWith(`pvc-${GONE}`));
    assert.match(
      gone ?? "",
      new RegExp(`^pvc-${GONE}\\s+2GiB\\s+pvc-${GONE}\\s+${GONE}\\s+gone\\s+-\\s+yes$`),
    );
    assert.match(
      lines.find((l) => l.startsWith("vol-scratch")) ?? "",
      /^vol-scratch\s+\S+\s+-\s+-\s+-\s+-\s+no$/,
    );
    assert.equal(api.objects(resources.persistentVolumes).length, 1, "the audit changes nothing");
    assert.equal(driver.volumes().size, 3);
  });

  it("writes JSON with --output=json", async () => {
    const r = await run(api, driver, { output: "json" });
    assert.equal(r.code, 1);
    const report = JSON.parse(r.out);
    assert.equal(report.driver, "fake.csi.k8s.io");
    assert.equal(report.volumes, 3);
    const gone = report.orphans.find((o: { volumeId: string }) => o.volumeId === `pvc-${GONE}`);
    assert.deepEqual(gone, {
      volumeId: `pvc-${GONE}`,
      capacityBytes: 2 * 1024 ** 3,
      name: `pvc-${GONE}`,
      claimUid: GONE,
      claimExists: false,
      condition: null,
      deletable: true,
    });
  });

  it("exits 2 naming a bad --csi-address", async () => {
    const r = await run(api, driver, { csiAddress: "tcp://1.2.3.4:5" });
    assert.equal(r.code, 2);
    assert.match(r.err, /Invalid --csi-address "tcp:\/\/1\.2\.3\.4:5"/);
  });

  it("exits 3 with a clear message when the driver cannot list volumes", async () => {
    const plain = await startFakeDriver({
      name: "plain.csi.k8s.io",
      controllerCapabilities: [Cap.CREATE_DELETE_VOLUME],
    });
    try {
      const r = await run(api, plain);
      assert.equal(r.code, 3);
      assert.equal(r.out, "");
      assert.match(r.err, /plain\.csi\.k8s\.io does not offer LIST_VOLUMES/);
    } finally {
      await plain.close();
    }
  });
});
