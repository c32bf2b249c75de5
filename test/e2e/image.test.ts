/**
 * The container image, built and run for real without a registry or a daemon:
 * `scripts/image/build.sh` builds the Containerfile with buildah from bases assembled offline
 * from Debian packages and unpacks it with umoci; the test then runs the image's entrypoint
 * with the image's arguments, environment and user (from the runtime config.json umoci writes)
 * in its root file system under `chroot`, in a private mount namespace with /proc, /dev, the
 * driver's socket directory at /csi and the kubeconfig mounted, as a container runtime would —
 * against the real control plane and csi-driver-host-path's `hostpathplugin`, whose socket is
 * root-owned with mode 0755 as hostpathplugin creates it.
 *
 *   export E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)
 *   apt-get install buildah umoci          # .ci/run installs them
 *   node_modules/.bin/node --test test/e2e/image.test.ts
 *
 * Skipped when E2E_BIN_DIR is not set; fails (never skips) when buildah, umoci, unshare or root
 * are missing. Needs root (chroot, mounts). E2E_VERBOSE=1 prints every line the processes log.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import * as net from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { PersistentVolume } from "../../src/kube/objects.ts";
import { type Cluster, freePort, type ServiceAccountRef, startCluster } from "./cluster.ts";
import { applyRbac } from "./peers.ts";
import {
  e2eBinDir as binDir,
  claimPath,
  describeExit,
  eventually,
  type Kube,
  killAllStarted,
  kube,
  verboseLog as log,
  type RunningProcess,
  skipWithoutBinDir as skip,
  startProcess,
  volumePath,
} from "./support.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const NONROOT = 65532;
const BUILD_TIMEOUT_MS = 10 * 60_000;

/** The parts of an OCI runtime config.json (umoci unpack) that say how to run the image. */
interface RuntimeConfig {
  process: { user: { uid: number; gid: number }; args: string[]; env?: string[]; cwd?: string };
  root: { path: string };
}

interface Bundle {
  dir: string;
  rootfs: string;
  config: RuntimeConfig;
}

function run(
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<{ out: string; err: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, killSignal: "SIGKILL" },
      (error, out, err) => {
        if (error) {
          reject(
            new Error(`${cmd} ${args.join(" ")} failed: ${error.message}\n${err.slice(-4000)}`),
          );
        } else {
          resolve({ out, err });
        }
      },
    );
  });
}

/** What this test needs from the machine; the reason it cannot run, or undefined. */
function missingTools(): string | undefined {
  if (process.getuid?.() !== 0) return "it must run as root (chroot, mounts, buildah)";
  const dirs = (process.env.PATH ?? "").split(":");
  const missing = ["buildah", "umoci", "unshare", "chroot", "mount", "apt-get", "dpkg-deb"].filter(
    (t) => !dirs.some((d) => d !== "" && existsSync(path.join(d, t))),
  );
  return missing.length > 0
    ? `${missing.join(", ")} not found (Debian: apt-get install buildah umoci; .ci/run installs them)`
    : undefined;
}

/** Connects over TCP; "ok" or the error code. */
function tcpConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once("connect", () => {
      s.destroy();
      resolve("ok");
    });
    s.once("error", (e: NodeJS.ErrnoException) => {
      s.destroy();
      resolve(e.code ?? e.message);
    });
  });
}

describe("the container image", { skip }, () => {
  let work: string;
  let bundle: Bundle;
  let cluster: Cluster;
  let k: Kube;
  let sa: ServiceAccountRef;
  /** A directory with the ServiceAccount's kubeconfig, readable by any user (mounted at /config). */
  let configDir: string;
  const timings: string[] = [];

  /**
   * Why the image could not be built or the cluster started: every test then fails with it
   * (a failing `before` hook would only mark them cancelled).
   */
  let setupError: unknown;
  const ready = (): void => {
    if (setupError !== undefined) throw setupError;
  };

  before(async () => {
    try {
      await setUp();
    } catch (err) {
      setupError = err;
    }
  });

  async function setUp(): Promise<void> {
    const reason = missingTools();
    if (reason) throw new Error(`cannot build and run the image: ${reason}`);
    work = await mkdtemp(path.join(tmpdir(), "csi-image-"));
    let t = Date.now();
    const built = await run(
      "bash",
      [path.join(ROOT, "scripts/image/build.sh"), work],
      BUILD_TIMEOUT_MS,
    );
    timings.push(`image build ${((Date.now() - t) / 1000).toFixed(1)} s`);
    log?.(built.err);
    const line = built.out
      .trim()
      .split("\n")
      .find((l) => l.startsWith("root "));
    assert.ok(line, `scripts/image/build.sh printed no bundle: ${built.out}\n${built.err}`);
    const dir = line.slice("root ".length);
    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as RuntimeConfig;
    bundle = { dir, config, rootfs: path.resolve(dir, config.root.path) };

    t = Date.now();
    cluster = await startCluster({ binDir: binDir!, driver: "hostpath", log });
    k = kube((m, p, b, o) => cluster.request(m, p, b, o));
    sa = await applyRbac(cluster, readFileSync(path.join(ROOT, "deploy/rbac.yaml"), "utf8"));
    configDir = path.join(work, "config");
    await mkdir(configDir, { recursive: true, mode: 0o755 });
    await chmod(configDir, 0o755);
    await writeFile(
      path.join(configDir, "kubeconfig"),
      readFileSync(await cluster.kubeconfigFor(sa), "utf8"),
      { mode: 0o644 },
    );
    await k.ensureStorageClass("image-hostpath", cluster.driverName);
    await k.ensureNamespace("image");
    timings.push(`cluster start ${((Date.now() - t) / 1000).toFixed(1)} s`);
  }

  after(async () => {
    await killAllStarted();
    await cluster?.stop();
    if (work) await rm(work, { recursive: true, force: true });
    if (timings.length > 0) console.error(`[image] ${timings.join(", ")}`);
  });

  /**
   * Runs the image's entrypoint and arguments plus `args`, as `user` (default: the image's), in a
   * private mount namespace: its rootfs with /proc, /dev, the driver's socket directory at /csi
   * and the kubeconfig directory at /config, and only the image's environment.
   */
  function runImage(name: string, args: string[], user?: { uid: number; gid: number }) {
    const { uid, gid } = user ?? bundle.config.process.user;
    const socketDir = path.dirname(cluster.csiSocket);
    const script = [
      'R="$1"; SOCK="$2"; CFG="$3"; USERSPEC="$4"; GROUP="$5"; shift 5',
      'mkdir -p "$R/proc" "$R/dev" "$R/csi" "$R/config"',
      'mount -t proc proc "$R/proc"',
      'mount --bind /dev "$R/dev"',
      'mount --bind "$SOCK" "$R/csi"',
      'mount --bind -o ro "$CFG" "$R/config"',
      'exec chroot --userspec="$USERSPEC" --groups="$GROUP" "$R" "$@"',
    ].join("\n");
    const env = bundle.config.process.env ?? [];
    return startProcess({
      name,
      bin: "unshare",
      args: [
        "--mount",
        "--propagation",
        "private",
        "--",
        "env",
        "-i",
        ...env,
        "sh",
        "-c",
        script,
        "sh",
        bundle.rootfs,
        socketDir,
        configDir,
        `${uid}:${gid}`,
        String(gid),
        ...bundle.config.process.args,
        ...args,
      ],
      logFile: path.join(work, `${name}.log`),
      log,
    });
  }

  async function healthy(p: RunningProcess, port: number, host: string): Promise<void> {
    await eventually(
      `${p.name} to answer /healthz on ${host}:${port}`,
      async () => {
        if (p.exit) throw new Error(`${p.name} exited (${describeExit(p.exit)})\n${p.tail()}`);
        const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}/healthz`;
        const r = await fetch(url).catch(() => undefined);
        await r?.body?.cancel();
        return r?.status === 200 ? true : undefined;
      },
      { timeoutMs: 60_000 },
    );
  }

  it("is the Containerfile's image: root by default, the binary as entrypoint, no shell, the licence", () => {
    ready();
    assert.deepEqual(bundle.config.process.user.uid, 0, "the default image runs as root");
    assert.equal(bundle.config.process.user.gid, 0);
    assert.deepEqual(bundle.config.process.args, ["/csi-provisioner"]);
    assert.ok(statSync(path.join(bundle.rootfs, "csi-provisioner")).mode & 0o111, "executable");
    assert.ok(existsSync(path.join(bundle.rootfs, "LICENSE")), "/LICENSE");
    for (const shell of ["bin/sh", "bin/bash", "usr/bin/sh"]) {
      assert.ok(!existsSync(path.join(bundle.rootfs, shell)), `the image has no ${shell}`);
    }
    const passwd = readFileSync(path.join(bundle.rootfs, "etc/passwd"), "utf8");
    assert.match(passwd, /^nonroot:x:65532:65532:/m);
  });

  it("as the image's user (root), provisions and deletes a claim on hostpathplugin's root-owned 0755 socket", async () => {
    ready();
    const st = await stat(cluster.csiSocket);
    assert.ok(st.isSocket());
    assert.equal(st.uid, 0, "hostpathplugin's socket belongs to root");
    // hostpathplugin creates it under the usual umask 022: srwxr-xr-x.
    await chmod(cluster.csiSocket, 0o755);
    const port = await freePort();
    const t = Date.now();
    const p = runImage("image-root", [
      "--csi-address=/csi/csi.sock",
      "--kubeconfig=/config/kubeconfig",
      `--http-endpoint=:${port}`,
      "--timeout=30s",
    ]);
    // `:port` answers over both families, as Go's listener (the manifest's liveness probe).
    await healthy(p, port, "::1");
    assert.equal(await tcpConnect("127.0.0.1", port), "ok");
    timings.push(`entrypoint ready ${((Date.now() - t) / 1000).toFixed(1)} s`);
    assert.ok(
      p.lines.some((l) => l.includes("Connected to CSI driver")),
      p.tail(),
    );

    await k.createClaim("image", "data", "image-hostpath", { size: "1Gi" });
    const bound = await k.waitBound("image", ["data"], 60_000);
    const pvName = bound.get("data")?.spec?.volumeName;
    assert.ok(pvName, "the claim names its volume");
    const pv = await k.get<PersistentVolume>(volumePath(pvName));
    assert.equal(pv?.spec?.csi?.driver, cluster.driverName);
    const volumeId = pv?.spec?.csi?.volumeHandle;
    assert.ok(volumeId);
    assert.ok(
      (await cluster.listVolumes()).some((v) => v.id === volumeId),
      "the driver has it",
    );

    await k.call("DELETE", claimPath("image", "data"));
    await k.waitGone(`PV ${pvName}`, volumePath(pvName), 60_000);
    await eventually("the driver to delete the volume", async () =>
      (await cluster.listVolumes()).some((v) => v.id === volumeId) ? undefined : true,
    );
    timings.push(`claim provisioned and deleted ${((Date.now() - t) / 1000).toFixed(1)} s`);
    const exit = await p.stop(10_000);
    assert.equal(exit.code, 0, `SIGTERM ends it cleanly (${describeExit(exit)})\n${p.tail()}`);
  });

  it("as uid 65532 (the non-root variant), says why it cannot connect, and connects once the socket is group-writable", async () => {
    ready();
    await chmod(cluster.csiSocket, 0o755);
    await chown(cluster.csiSocket, 0, 0);
    const port = await freePort();
    const p = runImage(
      "image-nonroot",
      [
        "--csi-address=/csi/csi.sock",
        "--kubeconfig=/config/kubeconfig",
        `--http-endpoint=:${port}`,
      ],
      { uid: NONROOT, gid: NONROOT },
    );
    const denied = await p.waitForLine(/Cannot connect to CSI driver at \/csi\/csi\.sock/, 30_000);
    assert.match(denied, /permission denied/);
    assert.match(denied, /uid 65532, gid 65532/);
    assert.match(denied, /srwxr-xr-x, owner 0:0/);
    assert.match(denied, /fsGroup/);
    // What a pod's fsGroup and a driver that makes its socket group-writable give.
    await chown(cluster.csiSocket, 0, NONROOT);
    await chmod(cluster.csiSocket, 0o775);
    await p.waitForLine(/Connected to CSI driver/, 30_000);
    await healthy(p, port, "127.0.0.1");
    const exit = await p.stop(10_000);
    assert.equal(exit.code, 0, `SIGTERM ends it cleanly (${describeExit(exit)})\n${p.tail()}`);
  });
});
