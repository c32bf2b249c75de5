/**
 * The runtime matrix (issue 5): one black-box scenario against the provisioner as a child
 * process, run four ways — `bun src/main.ts`, `deno run -A src/main.ts`, Node 24 on the bundle
 * and the compiled executable.
 *
 * The test process hosts the test Kubernetes API server and the fake CSI driver; the child gets
 * only what a container would: `--csi-address`, `--kubeconfig` (a file written here) and
 * `POD_NAMESPACE`. Through the API, as kubectl would, the test creates a StorageClass and a
 * claim, sees the PV, deletes the claim, plays kube-controller-manager's part (marks the PV
 * Released), sees DeleteVolume and the PV gone, then sends SIGTERM and expects exit code 0
 * within 5 s (a deadline on the wait, not a measurement).
 *
 * The executable and the bundle are built from the current tree by scripts/build.sh into a
 * temporary directory at module load (about 2-15 s): Bun's test hooks cannot be given a longer
 * timeout than a test's, and a stale dist/ can then never pass or fail this test.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, afterEach, beforeEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { PersistentVolume, PersistentVolumeClaim, StorageClass } from "../src/kube/objects.ts";
import { resources } from "../src/kube/resources.ts";
import { type ApiServer, startApiServer } from "./support/apiserver.ts";
import { type FakeDriver, startFakeDriver } from "./support/fake-driver.ts";
import { within } from "./support/wait.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const BIN = join(ROOT, "node_modules/.bin");
const HOST_TARGET = process.arch === "arm64" ? "linux-arm64" : "linux-x64";
const DRIVER_NAME = "matrix.csi.example.com";
const NAMESPACE = "default";
/** How long the provisioner gets to exit after SIGTERM (the bound). */
const EXIT_DEADLINE_MS = 5_000;
/** Deadline for each step that waits on the provisioner (start-up included). */
const STEP_DEADLINE_MS = 60_000;

interface Built {
  readonly code: number;
  readonly log: string;
}

/** Runs scripts/build.sh for `targets` into `dir`; never rejects. */
function build(dir: string, targets: readonly string[]): Promise<Built> {
  return new Promise((resolve) => {
    execFile(
      "bash",
      [join(ROOT, "scripts/build.sh"), ...targets],
      { env: { ...process.env, DIST_DIR: dir }, timeout: 300_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, log: `${stdout}${stderr}${err && code === -1 ? err.message : ""}` });
      },
    );
  });
}

const work = mkdtempSync(join(tmpdir(), "csi-provisioner-matrix-"));
const dist = join(work, "dist");
const built = await build(dist, [HOST_TARGET, "node"]);

function assertBuilt(): void {
  assert.equal(built.code, 0, `scripts/build.sh ${HOST_TARGET} node failed:\n${built.log}`);
}

interface Variant {
  readonly label: string;
  /** The command line without the provisioner's own arguments. */
  readonly command: () => readonly [string, ...string[]];
}

const main = join(ROOT, "src/main.ts");
const variants: readonly Variant[] = [
  { label: "bun src/main.ts", command: () => [join(BIN, "bun"), main] },
  { label: "deno run -A src/main.ts", command: () => [join(BIN, "deno"), "run", "-A", main] },
  {
    label: "Node 24 on the bundle",
    command: () => {
      assertBuilt();
      return [join(BIN, "node"), join(dist, "csi-provisioner.mjs")];
    },
  },
  {
    label: `the compiled executable (${HOST_TARGET})`,
    command: () => {
      assertBuilt();
      return [join(dist, `csi-provisioner-${HOST_TARGET}`)];
    },
  },
];

/** A started provisioner process and what it printed. */
interface Child {
  readonly process: ChildProcess;
  readonly output: () => string;
  /** Resolves with the exit code (or the signal name) once the process ended. */
  readonly exited: Promise<number | string>;
}

/**
 * The environment of the provisioner: this process's, with `POD_NAMESPACE`, and without
 * `KUBECONFIG`, which would override `--kubeconfig` and could point at a real cluster.
 */
function childEnv(): Record<string, string | undefined> {
  const { KUBECONFIG: _, ...env } = process.env;
  return { ...env, POD_NAMESPACE: NAMESPACE, NO_COLOR: "1" };
}

function startChild(command: readonly string[], args: readonly string[]): Child {
  const [file, ...pre] = command;
  assert.ok(file);
  const child = spawn(file, [...pre, ...args], {
    cwd: ROOT,
    env: childEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const append = (chunk: Buffer) => {
    // Keep the tail only: enough to explain a failure.
    output = (output + chunk.toString("utf8")).slice(-20_000);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? -1));
    child.once("error", (err) => {
      append(Buffer.from(`\nspawn failed: ${err.message}\n`));
      resolve(-1);
    });
  });
  return { process: child, output: () => output, exited };
}

/** A minimal kubectl: one JSON request against the test API server, failing on an error status. */
async function kube<T>(
  api: ApiServer,
  method: string,
  path: string,
  body?: unknown,
  contentType = "application/json",
): Promise<T> {
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": contentType },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${path} answered ${res.status}: ${text}`);
  return JSON.parse(text) as T;
}

for (const v of variants) {
  describe(`the provisioner run by ${v.label}`, () => {
    let api: ApiServer | undefined;
    let driver: FakeDriver | undefined;
    let child: Child | undefined;
    let kubeconfigPath = "";

    beforeEach(async () => {
      api = await startApiServer();
      driver = await startFakeDriver({ name: DRIVER_NAME });
      kubeconfigPath = join(work, `kubeconfig-${api.port}.yaml`);
      writeFileSync(kubeconfigPath, api.kubeconfig());
    });

    afterEach(async () => {
      // Still running after a failure: kill it and wait, so no process outlives the test.
      if (child && child.process.exitCode === null && child.process.signalCode === null) {
        child.process.kill("SIGKILL");
        await child.exited;
      }
      child = undefined;
      await driver?.close();
      await api?.close();
      rmSync(kubeconfigPath, { force: true });
    });

    it("provisions a claim, deletes its volume, and exits 0 on SIGTERM", {
      timeout: 120_000,
    }, async () => {
      assert.ok(api && driver);
      const server = api;
      const command = v.command();
      child = startChild(command, [
        `--csi-address=${driver.socketPath}`,
        `--kubeconfig=${kubeconfigPath}`,
      ]);
      const running = child;
      const died = running.exited.then((code) => {
        throw new Error(`The provisioner exited early with ${code}:\n${running.output()}`);
      });
      died.catch(() => {});
      /** Waits for `check()` on the API server, failing fast if the child dies. */
      const waitFor = <R>(what: string, check: () => R | undefined | null | false): Promise<R> => {
        const stop = new AbortController();
        const found = server.waitFor(check, { signal: stop.signal });
        return within(
          Promise.race([found, died]),
          STEP_DEADLINE_MS,
          () => `${what}; provisioner output:\n${running.output()}`,
        ).finally(() => stop.abort());
      };

      // A StorageClass and a claim, as a user (and kube-controller-manager's annotation) make them.
      await kube<StorageClass>(server, "POST", "/apis/storage.k8s.io/v1/storageclasses", {
        apiVersion: "storage.k8s.io/v1",
        kind: "StorageClass",
        metadata: { name: "matrix" },
        provisioner: DRIVER_NAME,
        reclaimPolicy: "Delete",
      });
      const pvc = await kube<PersistentVolumeClaim>(
        server,
        "POST",
        `/api/v1/namespaces/${NAMESPACE}/persistentvolumeclaims`,
        {
          apiVersion: "v1",
          kind: "PersistentVolumeClaim",
          metadata: {
            name: "data",
            annotations: { "volume.kubernetes.io/storage-provisioner": DRIVER_NAME },
          },
          spec: {
            accessModes: ["ReadWriteOnce"],
            resources: { requests: { storage: "2Gi" } },
            storageClassName: "matrix",
          },
        },
      );
      const uid = pvc.metadata.uid;
      assert.ok(uid);

      // The PV appears, bound to the claim, for a volume the driver created.
      const pv = await waitFor("the PV", () =>
        server
          .objects(resources.persistentVolumes)
          .find((p: PersistentVolume) => p.spec.claimRef?.uid === uid),
      );
      assert.equal(pv.metadata.name, `pvc-${uid}`);
      assert.equal(pv.spec.storageClassName, "matrix");
      assert.equal(pv.spec.persistentVolumeReclaimPolicy, "Delete");
      assert.deepEqual(pv.spec.capacity, { storage: "2Gi" });
      assert.equal(pv.spec.csi?.driver, DRIVER_NAME);
      assert.equal(pv.metadata.annotations?.["pv.kubernetes.io/provisioned-by"], DRIVER_NAME);
      const volumeId = pv.spec.csi?.volumeHandle;
      assert.ok(volumeId);
      assert.deepEqual([...driver.volumes().keys()], [volumeId]);
      assert.equal(driver.callsTo("createVolume")[0]?.request.name, `pvc-${uid}`);

      // The user deletes the claim; kube-controller-manager would then release the PV.
      await kube(server, "DELETE", `/api/v1/namespaces/${NAMESPACE}/persistentvolumeclaims/data`);
      const released = await kube<PersistentVolume>(
        server,
        "PATCH",
        `/api/v1/persistentvolumes/${pv.metadata.name}/status`,
        { status: { phase: "Released" } },
        "application/merge-patch+json",
      );
      assert.equal(released.status?.phase, "Released");

      // DeleteVolume for that volume, then the PV goes.
      await waitFor(
        "the PV to be deleted",
        () => server.get(resources.persistentVolumes, pv.metadata.name ?? "") === undefined,
      );
      assert.deepEqual(
        driver.callsTo("deleteVolume").map((c) => c.request.volumeId),
        [volumeId],
      );
      assert.equal(driver.volumes().size, 0);

      // SIGTERM: a clean shutdown with exit code 0.
      // process.kill(pid), not ChildProcess.kill(): Deno 2.9's node:child_process reports the
      // signal given to kill() as the cause of death even when the child exits 0 on its own.
      assert.ok(running.process.pid, "the provisioner has a pid");
      process.kill(running.process.pid, "SIGTERM");
      const code = await within(
        running.exited,
        EXIT_DEADLINE_MS,
        () => `an exit after SIGTERM; provisioner output:\n${running.output()}`,
      );
      assert.equal(code, 0, `Exit code ${code}; provisioner output:\n${running.output()}`);
    });
  });
}

after(() => {
  rmSync(work, { recursive: true, force: true });
});
