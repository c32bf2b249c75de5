/**
 * `csi-provisioner dev` end to end, the way a driver author uses it: the command runs as a child
 * process (`bun src/main.ts dev`), and a claim goes through its whole life with kubectl against
 * the kubeconfig the command prints. Then a restart on the same data directory, Ctrl-C, the
 * per-claim log lines and `dev --demo`.
 *
 * kubectl is `$KUBECTL`, else /usr/bin/kubectl, else `$E2E_BIN_DIR/kubectl` (what
 * scripts/e2e/build.sh builds). When none exists (or `KUBECTL=none`), the test drives the same REST
 * calls with fetch and says so in its output and its test names.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type {
  KubeList,
  KubeObject,
  PersistentVolume,
  PersistentVolumeClaim,
} from "../../src/kube/objects.ts";
import { eventually, within } from "../support/wait.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BUN = join(ROOT, "node_modules/.bin/bun");
const MAIN = join(ROOT, "src/main.ts");
/** Bounds every wait for the dev process; far above what any step takes. */
const DEADLINE_MS = 60_000;

// ---------------------------------------------------------------------------------------------
// Waiting with deadlines

// ---------------------------------------------------------------------------------------------
// The dev process

class DevProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  stdout = "";
  stderr = "";
  #wake = new Set<() => void>();

  constructor(args: string[]) {
    this.child = spawn(BUN, [MAIN, "dev", ...args], {
      cwd: ROOT,
      env: process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const wake = () => {
      for (const w of this.#wake) w();
    };
    this.child.stdout!.on("data", (d: Buffer) => {
      this.stdout += d.toString();
      wake();
    });
    this.child.stderr!.on("data", (d: Buffer) => {
      this.stderr += d.toString();
      wake();
    });
    this.exited = new Promise((resolve) => {
      // "close" rather than "exit": all output has been read by then.
      this.child.once("close", (code) => {
        wake();
        resolve(code);
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first match of `re` in stdout; fails if the process exits first. */
  waitForStdout(re: RegExp, ms = DEADLINE_MS): Promise<RegExpMatchArray> {
    return within(
      new Promise<RegExpMatchArray>((resolve, reject) => {
        const check = () => {
          const m = this.stdout.match(re);
          if (m) {
            this.#wake.delete(check);
            resolve(m);
          } else if (!this.running) {
            this.#wake.delete(check);
            reject(new Error(`dev exited before printing ${re}:\n${this.stdout}\n${this.stderr}`));
          }
        };
        this.#wake.add(check);
        check();
      }),
      ms,
      `dev to print ${re}`,
    );
  }

  /** Ctrl-C. process.kill rather than child.kill: Deno then reports the child's own exit code. */
  async interrupt(): Promise<number | null> {
    process.kill(this.child.pid!, "SIGINT");
    return within(this.exited, DEADLINE_MS, "dev to exit after SIGINT");
  }

  async kill(): Promise<void> {
    if (this.running) process.kill(this.child.pid!, "SIGKILL");
    await this.exited;
  }
}

interface Started {
  dev: DevProcess;
  kubeconfig: string;
  className: string;
}

async function startDev(dataDir: string, extra: string[] = []): Promise<Started> {
  const dev = new DevProcess([`--data-dir=${dataDir}`, "--port=0", ...extra]);
  started.push(dev);
  const [, kubeconfig] = await dev.waitForStdout(/^Kubeconfig:\s+(\S+)$/m);
  const [, className] = await dev.waitForStdout(/^StorageClass:\s+(\S+)/m);
  await dev.waitForStdout(/^Stop with Ctrl-C\.$/m);
  return { dev, kubeconfig: kubeconfig!, className: className! };
}

/** Every dev process this file started, killed in `after` if still running. */
const started: DevProcess[] = [];

// ---------------------------------------------------------------------------------------------
// kubectl, or the same REST calls with fetch

interface Kube {
  /** How the calls are made, for test names and output. */
  readonly how: string;
  /** Creates a claim (`kubectl apply -f pvc.yaml`). */
  apply(name: string, className: string): Promise<void>;
  claims(): Promise<PersistentVolumeClaim[]>;
  volumes(): Promise<PersistentVolume[]>;
  /** `kubectl get pv,pvc` as text: a header line and one line of cells per object. */
  table(): Promise<string>;
  /** `kubectl describe pvc`: at least the claim's events as `Type Reason ... Message` lines. */
  describe(name: string): Promise<string>;
  /** `kubectl get pvc -w` until a line for `name` arrives, then stopped: the lines printed. */
  watchUntil(name: string): Promise<string>;
  delete(name: string): Promise<void>;
}

function findKubectl(): string | undefined {
  const env = process.env.KUBECTL;
  if (env === "none") return undefined;
  const candidates = [
    env,
    "/usr/bin/kubectl",
    process.env.E2E_BIN_DIR ? join(process.env.E2E_BIN_DIR, "kubectl") : undefined,
  ];
  return candidates.find((c): c is string => !!c && existsSync(c));
}

function claimYaml(name: string, className: string): string {
  return [
    "apiVersion: v1",
    "kind: PersistentVolumeClaim",
    "metadata:",
    `  name: ${name}`,
    "spec:",
    "  accessModes: [ReadWriteOnce]",
    `  storageClassName: ${className}`,
    "  resources:",
    "    requests:",
    "      storage: 1Gi",
    "",
  ].join("\n");
}

function kubectlClient(kubectl: string, work: string, kubeconfig: () => string): Kube {
  const children = new Set<ChildProcess>();
  const args = () => [`--kubeconfig=${kubeconfig()}`, `--cache-dir=${join(work, "kube-cache")}`];
  const env = { ...process.env, HOME: work };
  const run = (...rest: string[]): Promise<{ stdout: string; stderr: string }> =>
    new Promise((resolve, reject) => {
      execFile(kubectl, [...args(), ...rest], { timeout: DEADLINE_MS, env }, (err, out, errOut) => {
        if (err) reject(new Error(`kubectl ${rest.join(" ")} failed: ${err.message}\n${errOut}`));
        else resolve({ stdout: String(out), stderr: String(errOut) });
      });
    });
  const json = async <T extends KubeObject>(kind: string): Promise<T[]> =>
    (JSON.parse((await run("get", kind, "-o", "json")).stdout) as KubeList<T>).items;
  return {
    how: `kubectl (${kubectl})`,
    async apply(name, className) {
      const file = join(work, `${name}.yaml`);
      await writeFile(file, claimYaml(name, className));
      const r = await run("apply", "-f", file);
      assert.match(r.stdout, new RegExp(`persistentvolumeclaim/${name} created`));
    },
    claims: () => json<PersistentVolumeClaim>("pvc"),
    volumes: () => json<PersistentVolume>("pv"),
    table: async () => (await run("get", "pv,pvc")).stdout,
    describe: async (name) => (await run("describe", "pvc", name)).stdout,
    async watchUntil(name) {
      const child = spawn(kubectl, [...args(), "get", "pvc", "-w"], {
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.add(child);
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      let out = "";
      try {
        await within(
          new Promise<void>((resolve, reject) => {
            child.stdout!.on("data", (d: Buffer) => {
              out += d.toString();
              if (new RegExp(`^${name}\\s`, "m").test(out)) resolve();
            });
            child.once("exit", (code) => reject(new Error(`kubectl -w exited with ${code}`)));
          }),
          DEADLINE_MS,
          `kubectl get pvc -w to print ${name}`,
        );
      } finally {
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!);
        await exited;
        children.delete(child);
      }
      return out;
    },
    async delete(name) {
      const r = await run("delete", "pvc", name);
      assert.match(r.stdout, new RegExp(`persistentvolumeclaim "${name}" deleted`));
    },
  };
}

function restClient(kubeconfig: () => string): Kube {
  const server = () => {
    const m = readFileSync(kubeconfig(), "utf8").match(/server:\s*"?([^"\s]+)"?/);
    assert.ok(m, `no server in ${kubeconfig()}`);
    return m[1]!;
  };
  const claimsPath = "/api/v1/namespaces/default/persistentvolumeclaims";
  const call = async (method: string, path: string, body?: unknown, accept?: string) => {
    const res = await fetch(`${server()}${path}`, {
      method,
      headers: {
        accept: accept ?? "application/json",
        ...(body ? { "content-type": "application/json" } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status}: ${text}`);
    return JSON.parse(text) as Record<string, unknown>;
  };
  const tableOf = async (path: string) => {
    const t = (await call(
      "GET",
      path,
      undefined,
      "application/json;as=Table;v=v1;g=meta.k8s.io",
    )) as {
      kind: string;
      columnDefinitions: { name: string }[];
      rows: { cells: unknown[] }[];
    };
    assert.equal(t.kind, "Table");
    const lines = [t.columnDefinitions.map((c) => c.name.toUpperCase()).join("   ")];
    for (const r of t.rows) lines.push(r.cells.map(String).join("   "));
    return lines.join("\n");
  };
  return {
    how: "kubectl's REST calls made with fetch",
    async apply(name, className) {
      await call("POST", claimsPath, {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        metadata: { name },
        spec: {
          accessModes: ["ReadWriteOnce"],
          storageClassName: className,
          resources: { requests: { storage: "1Gi" } },
        },
      });
    },
    claims: async () => (await call("GET", claimsPath)).items as PersistentVolumeClaim[],
    volumes: async () =>
      (await call("GET", "/api/v1/persistentvolumes")).items as PersistentVolume[],
    table: async () =>
      `${await tableOf("/api/v1/persistentvolumes")}\n\n${await tableOf(claimsPath)}\n`,
    async describe(name) {
      const list = (await call("GET", "/apis/events.k8s.io/v1/namespaces/default/events"))
        .items as { type: string; reason: string; note: string; regarding: { name: string } }[];
      return list
        .filter((e) => e.regarding.name === name)
        .map((e) => `  ${e.type}  ${e.reason}  ${e.note}`)
        .join("\n");
    },
    async watchUntil(name) {
      const abort = new AbortController();
      const res = await fetch(`${server()}${claimsPath}?watch=1`, { signal: abort.signal });
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      let buffered = "";
      let out = "";
      try {
        await within(
          (async () => {
            const decoder = new TextDecoder();
            for (;;) {
              const { value, done } = await reader.read();
              if (done) throw new Error("the watch ended early");
              buffered += decoder.decode(value, { stream: true });
              let nl = buffered.indexOf("\n");
              while (nl >= 0) {
                const ev = JSON.parse(buffered.slice(0, nl)) as {
                  type: string;
                  object: PersistentVolumeClaim;
                };
                buffered = buffered.slice(nl + 1);
                out += `${ev.object.metadata.name}   ${ev.object.status?.phase}   ${ev.type}\n`;
                if (ev.object.metadata.name === name) return;
                nl = buffered.indexOf("\n");
              }
            }
          })(),
          DEADLINE_MS,
          `a watch event for ${name}`,
        );
      } finally {
        abort.abort();
        await reader.cancel().catch(() => {});
      }
      return out;
    },
    async delete(name) {
      await call("DELETE", `${claimsPath}/${name}`);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Checks on the data directory and /proc

function findFiles(dir: string, test: (name: string, path: string) => boolean): string[] {
  const found: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) found.push(...findFiles(path, test));
    else if (test(e.name, path)) found.push(path);
  }
  return found;
}

/** Processes (other than this one) whose command line mentions `text`, as `pid: cmdline`. */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    if (Number(pid) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      if (cmdline.includes(text)) found.push(`${pid}: ${cmdline}`);
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/** The pids of `pid`'s descendants, from /proc/<pid>/stat. */
function descendantsOf(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const p of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      // pid (comm) state ppid ...: comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parent.set(Number(p), ppid);
    } catch {
      // Gone meanwhile.
    }
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent) {
      if (pp === p) {
        found.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return found;
}

const isAlive = (pid: number) => existsSync(`/proc/${pid}`);

// ---------------------------------------------------------------------------------------------

const kubectlPath = findKubectl();
const HOW = kubectlPath ? `kubectl (${kubectlPath})` : "kubectl's REST calls made with fetch";
if (!kubectlPath) {
  console.log(
    process.env.KUBECTL === "none"
      ? "# dev.test.ts: KUBECTL=none; driving kubectl's REST calls with fetch"
      : "# dev.test.ts: kubectl not found ($KUBECTL, /usr/bin/kubectl, $E2E_BIN_DIR/kubectl); " +
          "driving kubectl's REST calls with fetch",
  );
}

describe(`csi-provisioner dev, driven with ${HOW}`, () => {
  let work: string;
  let dataDir: string;
  let current: Started;
  let kube: Kube;
  /** The first run's stderr, kept for the log-line test. */
  let firstRunStderr = "";

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "dev-e2e-"));
    dataDir = join(work, "data");
    current = await startDev(dataDir);
    kube = kubectlPath
      ? kubectlClient(kubectlPath, work, () => current.kubeconfig)
      : restClient(() => current.kubeconfig);
  });
  after(async () => {
    for (const dev of started) await dev.kill();
    await rm(work, { recursive: true, force: true });
  });

  const boundClaim = (name: string) =>
    eventually(`claim ${name} to be Bound`, async () => {
      const c = (await kube.claims()).find((x) => x.metadata.name === name);
      return c?.status?.phase === "Bound" && c.spec.volumeName ? c : undefined;
    });
  const volumeDir = (pv: PersistentVolume) =>
    join(dataDir, "volumes", "volumes", pv.spec.csi?.volumeHandle ?? "<no handle>");

  it("writes the kubeconfig it prints, into the data directory by default", () => {
    assert.equal(current.kubeconfig, join(dataDir, "kubeconfig"));
    assert.match(readFileSync(current.kubeconfig, "utf8"), /server: "?http:\/\/127\.0\.0\.1:\d+/);
    assert.equal(current.className, "hostdir");
  });

  it("provisions an applied claim, shows it in get pv,pvc, describe and get -w, and deletes it", async () => {
    await kube.apply("first", current.className);

    const claim = await boundClaim("first");
    const pv = await eventually("the PV", async () =>
      (await kube.volumes()).find((v) => v.metadata.name === claim.spec.volumeName),
    );
    assert.equal(pv.status?.phase, "Bound");
    assert.equal(pv.spec.claimRef?.name, "first");
    assert.equal(pv.spec.claimRef?.uid, claim.metadata.uid);
    assert.equal(pv.spec.csi?.driver, "hostdir.csi.example.com");
    assert.equal(pv.spec.capacity?.storage, "1Gi");
    assert.equal(pv.spec.storageClassName, current.className);
    assert.ok(statSync(volumeDir(pv)).isDirectory(), "the driver's volume directory exists");

    const table = await kube.table();
    assert.match(table, /NAME\s+CAPACITY\s+ACCESS MODES\s+RECLAIM POLICY\s+STATUS\s+CLAIM/);
    assert.match(
      table,
      new RegExp(
        `${pv.metadata.name}\\s+1Gi\\s+RWO\\s+Delete\\s+Bound\\s+default/first\\s+hostdir`,
      ),
    );
    assert.match(
      table,
      new RegExp(`first\\s+Bound\\s+${pv.metadata.name}\\s+1Gi\\s+RWO\\s+hostdir`),
    );

    // Events are written in the background: wait for this one rather than race it.
    const succeeded = new RegExp(
      `Normal\\s+ProvisioningSucceeded\\s+.*Successfully provisioned volume ${pv.metadata.name}`,
    );
    const described = await eventually("the ProvisioningSucceeded event in describe", async () => {
      const text = await kube.describe("first");
      return succeeded.test(text) ? text : undefined;
    });
    assert.match(described, succeeded);

    const watched = await kube.watchUntil("first");
    assert.match(watched, /^first\s+Bound\s/m);

    await kube.delete("first");
    await eventually("the PV to go", async () =>
      (await kube.volumes()).some((v) => v.metadata.name === pv.metadata.name) ? undefined : true,
    );
    await eventually("the volume directory to go", () =>
      existsSync(volumeDir(pv)) ? undefined : true,
    );
    assert.deepEqual(
      (await kube.claims()).map((c) => c.metadata.name),
      [],
    );
  });

  it("keeps claims, volumes and provisioning across a restart on the same data directory", async () => {
    await kube.apply("kept", current.className);
    const kept = await boundClaim("kept");
    const keptPv = (await kube.volumes()).find((v) => v.metadata.name === kept.spec.volumeName)!;
    assert.ok(keptPv);

    assert.equal(await current.dev.interrupt(), 0, current.dev.stderr);
    // The binder logs a claim's deletion before it releases the claim's volume, so the first
    // claim's lines are all here (the last test reads them).
    firstRunStderr = current.dev.stderr;
    current = await startDev(dataDir);

    const claims = await kube.claims();
    const again = claims.find((c) => c.metadata.name === "kept");
    assert.ok(again, "claim kept survives the restart");
    assert.equal(again.metadata.uid, kept.metadata.uid);
    assert.equal(again.status?.phase, "Bound");
    assert.equal(again.spec.volumeName, keptPv.metadata.name);
    const pv = (await kube.volumes()).find((v) => v.metadata.name === keptPv.metadata.name);
    assert.ok(pv, "its PV survives the restart");
    assert.equal(pv.status?.phase, "Bound");
    assert.equal(pv.spec.csi?.volumeHandle, keptPv.spec.csi?.volumeHandle);
    assert.ok(statSync(volumeDir(pv)).isDirectory(), "its volume directory survives");

    await kube.apply("after-restart", current.className);
    const fresh = await boundClaim("after-restart");
    assert.notEqual(fresh.spec.volumeName, keptPv.metadata.name);
    assert.match(await kube.table(), /after-restart\s+Bound\s/);
    // The kept claim was not provisioned a second time.
    assert.doesNotMatch(current.dev.stderr, /"Claim default\/kept is Pending"/);
  });

  it("refuses a second dev on the same data directory, naming the one that holds it", async () => {
    const second = new DevProcess([`--data-dir=${dataDir}`, "--port=0"]);
    started.push(second);
    const code = await within(second.exited, DEADLINE_MS, "the second dev to exit");
    assert.equal(code, 1, second.stderr);
    assert.ok(
      second.stderr.includes(
        `Another csi-provisioner dev (pid ${current.dev.child.pid}) is using the data directory ${dataDir}: stop it, or pass another --data-dir`,
      ),
      second.stderr,
    );
    assert.doesNotMatch(second.stdout, /Kubernetes API:/);
    // The first one is unharmed.
    assert.ok(current.dev.running);
    assert.match(await kube.table(), /kept\s+Bound\s/);
  });

  it("stops cleanly on Ctrl-C: exit 0, no socket, no process, complete state, kubeconfig kept", async () => {
    const pid = current.dev.child.pid!;
    const descendants = descendantsOf(pid);
    assert.ok(existsSync(join(dataDir, "hostdir.sock")), "the sample driver's socket exists");

    assert.equal(await current.dev.interrupt(), 0, current.dev.stderr);

    const sockets = findFiles(dataDir, (_n, p) => statSync(p).isSocket());
    assert.deepEqual(sockets, [], "no socket file is left in the data directory");
    assert.deepEqual(processesMentioning(dataDir), [], "no process mentions the data directory");
    assert.deepEqual(descendants.filter(isAlive), [], "no child of dev is left");
    assert.equal(isAlive(pid), false);

    const partial = findFiles(dataDir, (n) => n.includes(".tmp-"));
    assert.deepEqual(partial, [], "no half-written file is left");
    assert.equal(existsSync(join(dataDir, "lock")), false, "the data directory is unlocked");
    const state = JSON.parse(await readFile(join(dataDir, "api", "state.json"), "utf8")) as unknown;
    const text = JSON.stringify(state);
    for (const name of ['"kept"', '"after-restart"', '"hostdir"']) {
      assert.ok(text.includes(name), `state.json holds ${name}`);
    }
    assert.match(readFileSync(current.kubeconfig, "utf8"), /current-context:/);
  });

  it("logs each phase change of a claim as one line with claim, phase, volume and seconds", () => {
    const lines = firstRunStderr.split("\n").filter((l) => l.includes('claim="default/first"'));
    const phase = (p: string) => lines.filter((l) => l.includes(`"Claim default/first is ${p}"`));
    const [pending, bound, deleted] = ["Pending", "Bound", "Deleted"].map(phase);
    assert.equal(pending?.length, 1, lines.join("\n"));
    assert.equal(bound?.length, 1, lines.join("\n"));
    assert.equal(deleted?.length, 1, lines.join("\n"));
    assert.match(pending![0]!, /phase="Pending" seconds=\d+(\.\d+)?$/);
    assert.match(bound![0]!, /phase="Bound" volume="pvc-[0-9a-f-]+" seconds=\d+(\.\d+)?$/);
    assert.match(deleted![0]!, /phase="Deleted" volume="pvc-[0-9a-f-]+" seconds=\d+(\.\d+)?$/);
    // Bound and Deleted name the same volume.
    const volume = (l: string) => l.match(/volume="([^"]+)"/)?.[1];
    assert.equal(volume(bound![0]!), volume(deleted![0]!));
  });
});

describe("csi-provisioner dev --demo", () => {
  let work: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), "dev-demo-"));
  });
  after(async () => {
    for (const dev of started) await dev.kill();
    await rm(work, { recursive: true, force: true });
  });

  it("runs a claim's whole life, prints its PV and exits 0", async () => {
    const dataDir = join(work, "data");
    const dev = new DevProcess([`--data-dir=${dataDir}`, "--port=0", "--demo"]);
    started.push(dev);
    const code = await within(dev.exited, DEADLINE_MS, "dev --demo to exit");
    assert.equal(code, 0, `${dev.stdout}\n${dev.stderr}`);
    const out = dev.stdout;
    assert.match(out, /^Kubeconfig:\s+\S+\/kubeconfig$/m);
    assert.match(out, /^StorageClass:\s+hostdir \(provisioner hostdir\.csi\.example\.com\)$/m);
    assert.match(
      out,
      /^Creating claim default\/demo-0 \(1Gi, ReadWriteOnce, class hostdir\)\.\.\.$/m,
    );
    assert.match(out, /^Claim default\/demo-0 is Bound\.$/m);
    const pvName = out.match(/^PersistentVolume (pvc-[0-9a-f-]+)$/m)?.[1];
    assert.ok(pvName, out);
    assert.match(out, /^ {2}capacity:\s+1Gi$/m);
    assert.match(out, /^ {2}access modes:\s+ReadWriteOnce$/m);
    assert.match(out, /^ {2}reclaim:\s+Delete$/m);
    assert.match(out, /^ {2}class:\s+hostdir$/m);
    assert.match(out, /^ {2}claim:\s+default\/demo-0$/m);
    assert.match(out, /^ {2}driver:\s+hostdir\.csi\.example\.com$/m);
    assert.match(out, /^ {2}volume handle:\s+\S+$/m);
    assert.match(out, /^ {2}phase:\s+Bound$/m);
    assert.match(out, new RegExp(`^Volume ${pvName} was deleted .*Done\\.$`, "m"));
    assert.equal(existsSync(join(dataDir, "hostdir.sock")), false);
    assert.deepEqual(readdirSync(join(dataDir, "volumes", "volumes")), []);
  });
});
