/**
 * The local loop a driver author expects, with the real kubectl of the e2e build
 * (`$E2E_BIN_DIR/kubectl`) against `csi-provisioner dev` (the compiled executable,
 * `E2E_PROVISIONER`, else `bun src/main.ts`): namespaces and secrets made with `kubectl create`
 * (protobuf bodies), `kubectl get all`, `cluster-info`, `auth can-i`, a claim without a class
 * getting the default one, and a claim of an unknown class told why it stays Pending.
 *
 *   E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1) \
 *     node_modules/.bin/node --test test/e2e/dev-kubectl.test.ts
 *
 * Skipped when E2E_BIN_DIR is not set.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { eventually, killAllStarted, type RunningProcess, startProcess } from "./support.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const binDir = process.env.E2E_BIN_DIR;
const kubectl = binDir ? path.join(binDir, "kubectl") : "";
const skip =
  binDir && existsSync(kubectl)
    ? false
    : "E2E_BIN_DIR is not set: build the control plane with E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)";

/** Our executable, or the sources on Bun when none was built. */
function devCommand(): { bin: string; args: string[] } {
  const exe = process.env.E2E_PROVISIONER;
  if (exe && existsSync(exe)) return { bin: exe, args: ["dev"] };
  return {
    bin: path.join(ROOT, "node_modules/.bin/bun"),
    args: [path.join(ROOT, "src/main.ts"), "dev"],
  };
}

describe("kubectl (e2e build) against csi-provisioner dev", { skip }, () => {
  let dir: string;
  let dev: RunningProcess;
  let kubeconfig: string;

  const run = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(
        kubectl,
        [`--kubeconfig=${kubeconfig}`, `--cache-dir=${path.join(dir, "cache")}`, ...args],
        { timeout: 60_000, env: { ...process.env, HOME: dir, KUBECONFIG: "" } },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
          resolve({ code, stdout: String(stdout), stderr: String(stderr) });
        },
      );
    });
  const ok = async (...args: string[]) => {
    const r = await run(...args);
    assert.equal(r.code, 0, `kubectl ${args.join(" ")}: ${r.stderr}`);
    return r;
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "e2e-dev-kubectl-"));
    const { bin, args } = devCommand();
    dev = startProcess({
      name: "dev",
      bin,
      args: [...args, `--data-dir=${path.join(dir, "data")}`, "--port=0"],
      logFile: path.join(dir, "dev.log"),
    });
    const line = await dev.waitForLine(/^Kubeconfig:\s+\S+/);
    kubeconfig = line.replace(/^Kubeconfig:\s+/, "").trim();
    await dev.waitForLine(/^Stop with Ctrl-C\.$/);
  });
  after(async () => {
    if (dev && !dev.exit) {
      dev.kill("SIGINT");
      await dev.exited;
    }
    await killAllStarted();
    await rm(dir, { recursive: true, force: true });
  });

  it("creates a namespace and a secret with kubectl create (protobuf bodies)", async () => {
    const ns = await ok("create", "namespace", "foo");
    assert.match(ns.stdout, /namespace\/foo created/);
    const got = await ok("get", "namespace", "foo", "-o", "jsonpath={.status.phase}");
    assert.equal(got.stdout, "Active");
    const secret = await ok(
      "create",
      "secret",
      "generic",
      "creds",
      "-n",
      "foo",
      "--from-literal=user=admin",
    );
    assert.match(secret.stdout, /secret\/creds created/);
    const data = await ok("get", "secret", "creds", "-n", "foo", "-o", "jsonpath={.data.user}");
    assert.equal(Buffer.from(data.stdout, "base64").toString(), "admin");
  });

  it("answers kubectl get all, cluster-info and auth can-i", async () => {
    const all = await ok("get", "all");
    assert.match(all.stderr, /No resources found in default namespace/);
    const info = await ok("cluster-info");
    assert.match(info.stdout, /Kubernetes control plane is running at http:\/\/127\.0\.0\.1:\d+/);
    const can = await ok("auth", "can-i", "create", "persistentvolumeclaims");
    assert.equal(can.stdout.trim(), "yes");
    const list = await ok("auth", "can-i", "--list");
    assert.match(list.stdout, /^\*\.\*\s+\[\]\s+\[\]\s+\[\*\]$/m);
  });

  it("gives a claim without a StorageClass the default one, and provisions it", async () => {
    await writeFile(
      path.join(dir, "plain.yaml"),
      [
        "apiVersion: v1",
        "kind: PersistentVolumeClaim",
        "metadata: {name: plain}",
        "spec:",
        "  accessModes: [ReadWriteOnce]",
        "  resources: {requests: {storage: 1Gi}}",
      ].join("\n"),
    );
    await ok("apply", "-f", path.join(dir, "plain.yaml"));
    const phase = await eventually("claim plain to be Bound", async () => {
      const r = await run("get", "pvc", "plain", "-o", "jsonpath={.status.phase}");
      return r.stdout === "Bound" ? r.stdout : undefined;
    });
    assert.equal(phase, "Bound");
    const cls = await ok("get", "pvc", "plain", "-o", "jsonpath={.spec.storageClassName}");
    assert.equal(cls.stdout, "hostdir");
  });

  it("tells a claim of an unknown StorageClass why it stays Pending (event and log line)", async () => {
    await writeFile(
      path.join(dir, "lost.yaml"),
      [
        "apiVersion: v1",
        "kind: PersistentVolumeClaim",
        "metadata: {name: lost}",
        "spec:",
        "  accessModes: [ReadWriteOnce]",
        "  storageClassName: no-such-class",
        "  resources: {requests: {storage: 1Gi}}",
      ].join("\n"),
    );
    await ok("apply", "-f", path.join(dir, "lost.yaml"));
    const described = await eventually("a ProvisioningFailed event on claim lost", async () => {
      const r = await run("describe", "pvc", "lost");
      return /ProvisioningFailed/.test(r.stdout) ? r.stdout : undefined;
    });
    assert.match(described, /storageclass\.storage\.k8s\.io "no-such-class" not found/);
    await dev.waitForLine(/Claim default\/lost cannot be provisioned/);
  });
});
