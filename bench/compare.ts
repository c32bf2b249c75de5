/**
 * Side-by-side benchmark: this project's compiled sidecar against upstream's csi-provisioner,
 * on the real control plane of test/e2e/cluster.ts (etcd, kube-apiserver, kube-controller-manager
 * v1.36.3) with Kubernetes' CSI mock driver, same flags and the same RBAC (upstream's
 * deploy/kubernetes/rbac.yaml), interleaved, medians.
 *
 *   node_modules/.bin/node bench/compare.ts [--pairs=3] [--claims=200] [--fast-claims=1000]
 *     [--cached=5000,20000] [--startup=5] [--ours=<executable>] [--upstream=<executable>]
 *     [--bin-dir=<e2e bin dir>] [--out=bench/results/compare] [--ours-flags="-v=4"] [--keep=1]
 *
 * Writes `<out>.json` (every run, raw) and `<out>.md` (the table). Never asserts: it measures.
 * API writes are counted from kube-apiserver's audit log (every write, Metadata level), for the
 * sidecar's ServiceAccount, not from the sidecar's own counters. Claims are created by a
 * separate client (keep-alive HTTPS, 32 in parallel); latency is from a claim's ADDED to its
 * Bound as seen on a watch. See bench/README.md for what each figure means.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  createReadStream,
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import * as https from "node:https";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { gzipSync } from "node:zlib";
import { type Cluster, startCluster } from "../test/e2e/cluster.ts";
import { applyManifests } from "../test/e2e/support.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const SA = { namespace: "default", name: "csi-provisioner" };
const SA_USER = `system:serviceaccount:${SA.namespace}:${SA.name}`;
const FAST_FLAGS = ["--kube-api-qps=1000", "--kube-api-burst=1000"];
const READY = /Started provision(ing|er) controller/;

// ------------------------------------------------------------------ arguments

const args = new Map<string, string>();
for (const a of process.argv.slice(2)) {
  const m = /^--([^=]+)=(.*)$/.exec(a);
  if (!m) throw new Error(`unknown argument ${a}`);
  args.set(m[1]!, m[2]!);
}
const PAIRS = Number(args.get("pairs") ?? 3);
const CLAIMS = Number(args.get("claims") ?? 200);
const FAST_CLAIMS = Number(args.get("fast-claims") ?? 1000);
/**
 * Claims of the QPS 1000 run repeated with the provisioner annotation already set at creation,
 * so that kube-controller-manager's annotation (one write per claim on its own 100 QPS budget,
 * shared with its binding writes and events) does not gate the sidecar: the sidecar's own rate.
 */
const ANNOTATED_CLAIMS = Number(args.get("annotated-claims") ?? FAST_CLAIMS);
const CACHED = (args.get("cached") ?? "5000,20000")
  .split(",")
  .filter(Boolean)
  .map(Number)
  .sort((a, b) => a - b);
const STARTUP = Number(args.get("startup") ?? 5);
/** Seconds between "controller started" and the idle RSS sample. */
const IDLE_S = Number(args.get("idle-s") ?? 3);
/** Which sidecars to run (profiling runs only ours). */
const VARIANTS = (args.get("variants") ?? "ours,upstream").split(",");
/** Extra arguments before the flags, e.g. `--cpu-prof-md --cpu-prof-dir=/tmp src/main.ts` with --ours=bun. */
const OURS_ARGS = (args.get("ours-args") ?? "").split(" ").filter(Boolean);
/** Extra flags for our sidecar only (e.g. `-v=4` to see watch restarts). */
const OURS_FLAGS = (args.get("ours-flags") ?? "").split(" ").filter(Boolean);
/** Keep the work directory (cluster and driver logs, audit log) for a look afterwards. */
const KEEP = args.get("keep") === "1";
const OUT = path.resolve(ROOT, args.get("out") ?? "bench/results/compare");
const log = (s: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

function binDir(): string {
  const given = args.get("bin-dir") ?? process.env.E2E_BIN_DIR;
  if (given) return given;
  const out = execFileSync("bash", [path.join(ROOT, "scripts/e2e/build.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  return out.trim().split("\n").pop()!;
}

function buildOurs(): string {
  const given = args.get("ours");
  if (given) return path.resolve(given);
  const dist = path.join(os.tmpdir(), `compare-dist-${process.pid}`);
  log(`building the executable into ${dist}`);
  execFileSync("bash", [path.join(ROOT, "scripts/build.sh"), "linux-x64"], {
    env: { ...process.env, DIST_DIR: dist },
    stdio: ["ignore", "ignore", "inherit"],
  });
  return path.join(dist, "csi-provisioner-linux-x64");
}

// ------------------------------------------------------------------ statistics

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
};

// ------------------------------------------------------------------ a fast admin client

/** The few fields of watched objects the benchmark reads. */
interface Obj {
  metadata?: { name?: string; uid?: string };
  status?: { phase?: string };
  spec?: { claimRef?: { namespace?: string } };
}

interface Api {
  req(method: string, p: string, body?: unknown): Promise<{ status: number; json: unknown }>;
  watch(p: string, on: (ev: { type: string; object?: Obj }, at: number) => void): () => void;
}

function adminApi(cluster: Cluster): Api {
  const tls = {
    ca: readFileSync(cluster.certs.caFile),
    cert: readFileSync(cluster.certs.adminCertFile),
    key: readFileSync(cluster.certs.adminKeyFile),
  };
  const agent = new https.Agent({ keepAlive: true, maxSockets: 32, ...tls });
  const base = new URL(cluster.apiServerUrl);
  return {
    req(method, p, body) {
      const data = body === undefined ? undefined : JSON.stringify(body);
      return new Promise((resolve, reject) => {
        const r = https.request(
          {
            host: base.hostname,
            port: base.port,
            path: p,
            method,
            agent,
            headers: {
              accept: "application/json",
              ...(data ? { "content-type": "application/json" } : {}),
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
              const text = Buffer.concat(chunks).toString("utf8");
              let json: unknown;
              try {
                json = text ? JSON.parse(text) : undefined;
              } catch {
                json = text;
              }
              resolve({ status: res.statusCode ?? 0, json });
            });
            res.on("error", reject);
          },
        );
        r.on("error", reject);
        if (data) r.write(data);
        r.end();
      });
    },
    watch(p, on) {
      // Resumes from the last resourceVersion seen when the server ends the stream.
      let stopped = false;
      let rv = "";
      let current: ReturnType<typeof https.request> | undefined;
      const open = () => {
        const u = `${p}${p.includes("?") ? "&" : "?"}watch=true${rv ? `&resourceVersion=${rv}` : ""}`;
        const r = https.request(
          { host: base.hostname, port: base.port, path: u, method: "GET", agent: false, ...tls },
          (res) => {
            let buf = "";
            res.setEncoding("utf8");
            res.on("data", (chunk: string) => {
              const at = performance.now();
              buf += chunk;
              let nl = buf.indexOf("\n");
              while (nl >= 0) {
                const line = buf.slice(0, nl);
                buf = buf.slice(nl + 1);
                nl = buf.indexOf("\n");
                if (!line.trim()) continue;
                const ev = JSON.parse(line) as {
                  type: string;
                  object?: Obj & { metadata?: { resourceVersion?: string } };
                };
                if (ev.type === "ERROR") continue;
                rv = ev.object?.metadata?.resourceVersion ?? rv;
                on(ev, at);
              }
            });
            res.on("error", () => {});
            res.on("end", () => {
              if (stopped) return;
              log(`  the watch of ${p} ended (HTTP ${res.statusCode}); resuming at ${rv || "now"}`);
              setTimeout(open, 100);
            });
          },
        );
        r.on("error", () => {
          if (!stopped) setTimeout(open, 500);
        });
        r.end();
        current = r;
      };
      open();
      return () => {
        stopped = true;
        current?.destroy();
      };
    },
  };
}

async function parallel<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}

async function until(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>) {
  const start = Date.now();
  const end = start + timeoutMs;
  let told = start;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    if (Date.now() - told > 30_000) {
      told = Date.now();
      log(`  still waiting for ${what} (${Math.round((told - start) / 1000)} s)`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ------------------------------------------------------------------ the audit log

interface AuditWrite {
  verb: string;
  resource: string;
  name: string;
  code: number;
  /** ms since the epoch, when kube-apiserver received the request. */
  at: number;
  user: string;
}

const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: None
`;

/** Reads the audit log as it grows. */
class AuditTail {
  readonly writes: AuditWrite[] = [];
  #offset = 0;
  #partial = "";
  readonly file: string;
  constructor(file: string) {
    this.file = file;
  }
  async poll(): Promise<void> {
    if (!existsSync(this.file)) return;
    const size = statSync(this.file).size;
    if (size <= this.#offset) return;
    const stream = createReadStream(this.file, {
      start: this.#offset,
      end: size - 1,
      encoding: "utf8",
    });
    let text = this.#partial;
    for await (const chunk of stream) text += chunk;
    this.#offset = size;
    const lines = text.split("\n");
    this.#partial = lines.pop() ?? "";
    for (const line of lines) {
      if (!line) continue;
      const e = JSON.parse(line);
      if (e.stage !== "ResponseComplete") continue;
      const user: string = e.user?.username ?? "";
      const resource: string = e.objectRef?.resource ?? "";
      // The sidecar's writes, claim creates, and claim updates (kube-controller-manager's
      // provisioner annotation is its first update of a claim).
      const claimWrite =
        resource === "persistentvolumeclaims" &&
        !e.objectRef?.subresource &&
        (e.verb === "create" || e.verb === "update");
      // kube-controller-manager's PV status updates (Bound, then Released).
      const pvStatus = resource === "persistentvolumes" && e.objectRef?.subresource === "status";
      if (user !== SA_USER && !claimWrite && !pvStatus) continue;
      this.writes.push({
        verb: e.verb,
        resource: e.objectRef?.subresource ? `${resource}/${e.objectRef.subresource}` : resource,
        name: e.objectRef?.name ?? "",
        code: e.responseStatus?.code ?? 0,
        at: Date.parse(e.requestReceivedTimestamp),
        user,
      });
    }
  }
  sidecar(from: number, to = Number.POSITIVE_INFINITY): AuditWrite[] {
    return this.writes.filter((w) => w.user === SA_USER && w.at >= from && w.at < to);
  }
  /** Waits until the sidecar made no write for `quietMs` (at most `maxMs`); returns the time. */
  async quiet(quietMs: number, maxMs: number): Promise<number> {
    const start = Date.now();
    for (;;) {
      await this.poll();
      const last = this.writes.filter((w) => w.user === SA_USER).at(-1)?.at ?? 0;
      if (Date.now() - Math.max(last, start) >= quietMs || Date.now() - start > maxMs)
        return Date.now();
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

function timeline(ws: AuditWrite[], t0: number, phase: string): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  for (const w of ws) {
    const k = `${phase}: ${w.verb} ${w.resource}`;
    const t = Math.round((w.at - t0) / 10) / 100;
    const e = out[k];
    if (!e) out[k] = [t, t];
    else e[1] = t;
  }
  return out;
}

function byVerb(ws: AuditWrite[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const w of ws) {
    const k = `${w.verb} ${w.resource} ${w.code}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(out).sort());
}

// ------------------------------------------------------------------ processes

interface Proc {
  child: ChildProcess;
  pid: number;
  lines: string[];
  spawnedAt: number;
  exited: Promise<number | null>;
}

let OURS_EXE = "";
const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));

function startSidecar(exe: string, flags: string[], logFile: string): Proc {
  const argv = [exe, ...(exe === OURS_EXE ? OURS_ARGS : []), ...flags];
  const spawnedAt = performance.now();
  // setpriv execs the sidecar: same PID, and it dies with this process.
  const child = setpriv
    ? spawn(setpriv, ["--pdeathsig", "SIGKILL", "--", ...argv], {
        stdio: ["ignore", "pipe", "pipe"],
        env: sidecarEnv(),
      })
    : spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: sidecarEnv() });
  const lines: string[] = [];
  const out: string[] = [];
  const onData = (b: Buffer) => {
    const s = b.toString("utf8");
    out.push(s);
    for (const l of s.split("\n")) if (l) lines.push(l);
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      writeFileSync(logFile, out.join(""));
      resolve(code);
    }),
  );
  return { child, pid: child.pid!, lines, spawnedAt, exited };
}

function sidecarEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, POD_NAMESPACE: SA.namespace };
  delete env.KUBECONFIG;
  return env;
}

/**
 * Throws when the sidecar has ended before it was stopped, with the last lines it logged, so a
 * wait on it fails at once instead of at its deadline.
 */
function running(p: Proc, variant: string): void {
  const ended = p.child.exitCode ?? p.child.signalCode;
  if (ended === null) return;
  throw new Error(
    `${variant} exited (${ended}); its last lines:\n${p.lines.slice(-20).join("\n")}`,
  );
}

async function stopSidecar(p: Proc): Promise<void> {
  p.child.kill("SIGTERM");
  const t = setTimeout(() => p.child.kill("SIGKILL"), 15_000);
  await p.exited;
  clearTimeout(t);
}

function procStatus(pid: number): {
  rssKiB: number;
  hwmKiB: number;
  anonKiB: number;
  fileKiB: number;
} {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(s)?.[1] ?? Number.NaN);
  return {
    rssKiB: kib("VmRSS"),
    hwmKiB: kib("VmHWM"),
    anonKiB: kib("RssAnon"),
    fileKiB: kib("RssFile"),
  };
}

const CLK_TCK = 100;
/** `utime + stime` in ms from the text of a `/proc/<pid>[/task/<tid>]/stat` file. */
function statCpuMs(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

function cpuMs(pid: number): number {
  return statCpuMs(readFileSync(`/proc/${pid}/stat`, "utf8"));
}

/** CPU ms per thread name (`comm`), summed over the threads of that name. */
function cpuMsByThread(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")).replace(/[0-9]+$/, "#");
      out.set(name, (out.get(name) ?? 0) + statCpuMs(stat));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

const loadavg = () => os.loadavg().map((x) => Math.round(x * 100) / 100);

/**
 * A unix-socket proxy in front of the driver that notes when the first gRPC call (the first
 * HTTP/2 HEADERS frame from the client) arrives.
 */
async function probeProxy(target: string, sock: string) {
  let firstCall: number | undefined;
  const server = net.createServer((client) => {
    const upstream = net.connect({ path: target });
    let buf = Buffer.alloc(0);
    let preface = false;
    client.on("data", (b: Buffer) => {
      upstream.write(b);
      if (firstCall !== undefined) return;
      buf = Buffer.concat([buf, b]);
      if (!preface) {
        if (buf.length < 24) return;
        buf = buf.subarray(24);
        preface = true;
      }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf[3] === 1) {
          firstCall = performance.now();
          return;
        }
        if (buf.length < 9 + len) return;
        buf = buf.subarray(9 + len);
      }
    });
    upstream.on("data", (b) => client.write(b));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  await new Promise<void>((r) => server.listen(sock, r));
  return {
    get firstCall() {
      return firstCall;
    },
    reset() {
      firstCall = undefined;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

// ------------------------------------------------------------------ one cluster

interface Env {
  cluster: Cluster;
  api: Api;
  audit: AuditTail;
  kubeconfig: string;
  proxySock: string;
  proxy: Awaited<ReturnType<typeof probeProxy>>;
  dir: string;
}

async function upstreamRbac(bin: string): Promise<string> {
  const cached = path.join(bin, "upstream", "rbac.yaml");
  if (existsSync(cached)) return readFile(cached, "utf8");
  const tar = (await import("node:fs"))
    .readdirSync("/work/shared/peers")
    .find((f) => f.startsWith("external-provisioner-"));
  return execFileSync(
    "tar",
    ["xzf", `/work/shared/peers/${tar}`, "-O", "external-provisioner/deploy/kubernetes/rbac.yaml"],
    { encoding: "utf8" },
  );
}

async function startEnv(bin: string): Promise<Env> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "cmp-"));
  const policy = path.join(dir, "audit-policy.yaml");
  const auditLog = path.join(dir, "audit.log");
  await writeFile(policy, AUDIT_POLICY);
  const cluster = await startCluster({
    binDir: bin,
    driver: "mock",
    workDir: dir,
    apiServerArgs: [
      `--audit-policy-file=${policy}`,
      `--audit-log-path=${auditLog}`,
      "--audit-log-format=json",
      "--audit-log-maxsize=0",
    ],
  });
  const api = adminApi(cluster);
  await applyManifests((m, p, b, o) => cluster.request(m, p, b, o), await upstreamRbac(bin));
  const kubeconfig = await cluster.kubeconfigFor(SA, { expirationSeconds: 86_400 });
  const token = /token: (\S+)/.exec(readFileSync(kubeconfig, "utf8"))?.[1];
  await until("RBAC to take effect", 60_000, async () => {
    const r = await cluster.request("GET", "/api/v1/persistentvolumes", undefined, { token });
    return r.status === 200;
  });
  const r = await api.req("POST", "/apis/storage.k8s.io/v1/storageclasses", {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: { name: "bench" },
    provisioner: cluster.driverName,
    reclaimPolicy: "Delete",
    volumeBindingMode: "Immediate",
  });
  if (r.status !== 201) throw new Error(`StorageClass: ${r.status} ${JSON.stringify(r.json)}`);
  const proxySock = path.join(dir, "p.sock");
  const proxy = await probeProxy(cluster.csiSocket, proxySock);
  return { cluster, api, audit: new AuditTail(auditLog), kubeconfig, proxySock, proxy, dir };
}

async function stopEnv(env: Env) {
  await env.proxy.close();
  await env.cluster.stop();
  if (KEEP) log(`kept ${env.dir} (cluster logs, audit log)`);
  else await rm(env.dir, { recursive: true, force: true });
}

function flagsFor(env: Env, extra: string[]): string[] {
  return [`--csi-address=${env.proxySock}`, `--kubeconfig=${env.kubeconfig}`, ...extra];
}

// ------------------------------------------------------------------ one provisioning run

type Setting = "default" | "qps1000" | "annotated";

interface RunResult {
  variant: string;
  setting: Setting;
  claims: number;
  load: number[];
  probeMs: number;
  rssIdleMiB: number;
  /** The idle RSS split: anonymous memory (heaps) and pages of the executable and libraries. */
  rssIdleAnonMiB: number;
  rssIdleFileMiB: number;
  allBoundS: number;
  p50BoundS: number;
  p99BoundS: number;
  /** Claims ÷ (first claim created → last PV created), from the audit log. */
  createPerS: number;
  /** First to last claim created (audit log), s: the rate the claims arrived at. */
  claimsCreatedS: number;
  /** Claim ready (provisioner annotation set) → its PV created, s (audit log). */
  readyToPvP50S: number;
  readyToPvP99S: number;
  /** The longest time some claim was ready while the sidecar created no PV, s. */
  maxIdleWithBacklogS: number;
  /** PV marked Released by kube-controller-manager → the sidecar's DELETE of it, s. */
  releasedToDeleteP50S: number;
  releasedToDeleteP99S: number;
  /** The longest time some PV was Released while the sidecar deleted none, s. */
  maxIdleWithReleasedS: number;
  /** Longest gap between two PV creates by the sidecar while claims were pending, s. */
  maxCreateGapS: number;
  allGoneS: number;
  deletePerS: number;
  writesCreate: Record<string, number>;
  writesDelete: Record<string, number>;
  writesPerVolumeCreate: number;
  writesPerVolumeDelete: number;
  conflicts: number;
  duplicateDeletes: number;
  cpuMsPerVolume: number;
  /** CPU ms of the create + delete phases per thread name (Go names all its threads alike). */
  cpuByThreadMs: Record<string, number>;
  peakRssMiB: number;
  /** Claims seen Bound (all of them: the run waits for every one). */
  boundClaims: number;
  /** PVs of the run's namespace still there after the delete phase (a LIST; 0 when all went). */
  pvsLeft: number;
  /** Bound claims and deleted PVs the watch missed (seen by a LIST instead; their times are late). */
  missed: { bound: number; gone: number };
  /** First and last write of each kind, s after the first claim (create) or the first delete. */
  timeline: Record<string, [number, number]>;
  exit: number | null;
}

/**
 * The longest stretch, in s, during which some item was ready (`readyAt`) and none was done
 * (`doneAt`): a stall of whoever does the items, unlike a gap between two done items, which
 * also counts waiting for items to become ready.
 */
function longestIdle(readyAt: number[], doneAt: number[]): number {
  const events = [...readyAt.map((t) => ({ t, d: 1 })), ...doneAt.map((t) => ({ t, d: -1 }))].sort(
    (a, b) => a.t - b.t || a.d - b.d,
  );
  let backlog = 0;
  let idleSince: number | undefined;
  let longest = 0;
  for (const e of events) {
    if (e.d > 0) {
      if (backlog === 0) idleSince = e.t;
      backlog++;
      continue;
    }
    if (idleSince !== undefined) longest = Math.max(longest, (e.t - idleSince) / 1000);
    backlog = Math.max(0, backlog - 1);
    idleSince = backlog > 0 ? e.t : undefined;
  }
  return longest;
}

async function provisionRun(
  env: Env,
  variant: string,
  exe: string,
  setting: Setting,
  n: number,
  round: number,
): Promise<RunResult> {
  const load = loadavg();
  log(`${variant} ${setting} ${n} claims (round ${round}, load ${load.join(" ")})`);
  const ns = `r${round}-${variant}-${setting}`.toLowerCase();
  await env.api.req("POST", "/api/v1/namespaces", {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: ns },
  });
  env.proxy.reset();
  const logFile = path.join(os.tmpdir(), `compare-${ns}.log`);
  const extra = [
    ...(setting === "default" ? [] : FAST_FLAGS),
    ...(variant === "ours" ? OURS_FLAGS : []),
  ];
  const p = startSidecar(exe, flagsFor(env, extra), logFile);
  await until("the sidecar to start", 120_000, () => {
    running(p, variant);
    return p.lines.some((l) => READY.test(l));
  });
  const probeMs = (env.proxy.firstCall ?? Number.NaN) - p.spawnedAt;
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  const idle = procStatus(p.pid);
  const rssIdleMiB = idle.rssKiB / 1024;
  log(
    `${variant} idle: RSS ${rssIdleMiB.toFixed(1)} MiB = anon ${(idle.anonKiB / 1024).toFixed(1)} + file ${(idle.fileKiB / 1024).toFixed(1)}`,
  );

  // Watches from now on.
  const added = new Map<string, number>();
  /** When the create call returned, for a claim whose ADDED the watch did not deliver. */
  const created = new Map<string, number>();
  const bound = new Map<string, number>();
  const pvGone = new Map<string, number>();
  const pvSeen = new Set<string>();
  /** Claim UID → name, to match a PV (`pvc-<uid>`) to its claim. */
  const claimOfUid = new Map<string, string>();
  const stopPvc = env.api.watch(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, (ev, at) => {
    const name = ev.object?.metadata?.name ?? "";
    const uid = ev.object?.metadata?.uid;
    if (uid) claimOfUid.set(uid, name);
    if (ev.type === "ADDED" && !added.has(name)) added.set(name, at);
    if (ev.object?.status?.phase === "Bound" && !bound.has(name)) bound.set(name, at);
  });
  const stopPv = env.api.watch("/api/v1/persistentvolumes", (ev, at) => {
    const claimNs = ev.object?.spec?.claimRef?.namespace;
    if (claimNs !== ns) return;
    const name = ev.object?.metadata?.name ?? "";
    pvSeen.add(name);
    if (ev.type === "DELETED") pvGone.set(name, at);
  });
  await new Promise((r) => setTimeout(r, 500));

  const cpu0 = cpuMs(p.pid);
  const threads0 = cpuMsByThread(p.pid);
  const names = Array.from({ length: n }, (_, i) => `c-${i}`);
  const t0 = performance.now();
  const wall0 = Date.now();
  await parallel(names, 32, async (name) => {
    const r = await env.api.req("POST", `/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata:
        setting === "annotated"
          ? {
              name,
              annotations: {
                "volume.kubernetes.io/storage-provisioner": env.cluster.driverName,
                "volume.beta.kubernetes.io/storage-provisioner": env.cluster.driverName,
              },
            }
          : { name },
      spec: {
        accessModes: ["ReadWriteOnce"],
        storageClassName: "bench",
        resources: { requests: { storage: "1Mi" } },
      },
    });
    if (r.status !== 201) throw new Error(`claim ${name}: ${r.status}`);
    if (!added.has(name)) created.set(name, performance.now());
  });
  log(`  ${n} claims created`);
  // The watch decides; a LIST every 5 s catches what a watch closed by the server missed.
  let lastList = Date.now();
  const missed = { bound: 0, gone: 0 };
  await until("every claim Bound", 30 * 60_000, async () => {
    if (bound.size >= n) return true;
    running(p, variant);
    if (Date.now() - lastList < 5000) return false;
    lastList = Date.now();
    const l = await env.api.req("GET", `/api/v1/namespaces/${ns}/persistentvolumeclaims`);
    for (const c of (l.json as { items: Obj[] }).items)
      if (c.status?.phase === "Bound" && !bound.has(c.metadata?.name ?? "")) {
        bound.set(c.metadata?.name ?? "", performance.now());
        missed.bound++;
      }
    return bound.size >= n;
  });
  log("  every claim Bound");
  const tBound = Math.max(...bound.values());
  const latencies = names.map((c) => (bound.get(c)! - (added.get(c) ?? created.get(c)!)) / 1000);
  // Events and journal removals trail: count the create phase until the sidecar is quiet.
  const createEnd = await env.audit.quiet(5000, 180_000);
  log("  create phase quiet");
  await env.audit.poll();
  const createWrites = env.audit.sidecar(wall0 - 1000, createEnd);
  const pvCreates = createWrites
    .filter((w) => w.verb === "create" && w.resource === "persistentvolumes" && w.code === 201)
    .map((w) => w.at)
    .sort((a, b) => a - b);
  const claimCreates = env.audit.writes
    .filter(
      (w) => w.resource === "persistentvolumeclaims" && w.verb === "create" && w.at >= wall0 - 1000,
    )
    .map((w) => w.at);
  const firstClaim = Math.min(...claimCreates);
  let maxGap = pvCreates.length > 0 ? (pvCreates[0]! - firstClaim) / 1000 : Number.NaN;
  for (let i = 1; i < pvCreates.length; i++)
    maxGap = Math.max(maxGap, (pvCreates[i]! - pvCreates[i - 1]!) / 1000);
  const createPerS = n / ((pvCreates.at(-1)! - firstClaim) / 1000);
  // When each claim was ready for the sidecar (created with the provisioner annotation, or
  // annotated by kube-controller-manager: its first update), and when its PV was created.
  const ready = new Map<string, number>();
  for (const w of env.audit.writes) {
    if (w.resource !== "persistentvolumeclaims" || w.at < wall0 - 1000 || w.user === SA_USER)
      continue;
    if ((setting === "annotated" ? w.verb === "create" : w.verb === "update") && !ready.has(w.name))
      ready.set(w.name, w.at);
  }
  const pvAt = new Map<string, number>();
  for (const w of createWrites)
    if (w.verb === "create" && w.resource === "persistentvolumes" && w.code === 201) {
      const claim = claimOfUid.get(w.name.replace(/^pvc-/, ""));
      if (claim !== undefined && !pvAt.has(claim)) pvAt.set(claim, w.at);
    }
  const readyToPv = [...pvAt]
    .filter(([c]) => ready.has(c))
    .map(([c, t]) => (t - ready.get(c)!) / 1000)
    .sort((a, b) => a - b);
  // The longest time with a ready claim but no PV created (the sidecar's own stall).
  const maxIdleWithBacklogS = longestIdle([...ready.values()], [...pvAt.values()]);

  // Delete every claim; the PVs are Released and deleted by the sidecar.
  const delStart = performance.now();
  const delWall = Date.now();
  await parallel(names, 32, async (name) => {
    await env.api.req("DELETE", `/api/v1/namespaces/${ns}/persistentvolumeclaims/${name}`);
  });
  lastList = Date.now();
  await until("every PV gone", 30 * 60_000, async () => {
    if (pvGone.size >= n) return true;
    running(p, variant);
    if (Date.now() - lastList < 5000) return false;
    lastList = Date.now();
    const l = await env.api.req("GET", "/api/v1/persistentvolumes");
    const items = (l.json as { items: Obj[] }).items;
    const left = new Set(items.map((v) => v.metadata?.name ?? ""));
    for (const v of pvSeen)
      if (!left.has(v) && !pvGone.has(v)) {
        pvGone.set(v, performance.now());
        missed.gone++;
      }
    if (items.some((v) => v.spec?.claimRef?.namespace === ns)) return pvGone.size >= n;
    missed.gone += n - pvGone.size;
    return true;
  });
  const tGone = Math.max(...pvGone.values());
  const deleteEnd = await env.audit.quiet(5000, 120_000);
  const cpu1 = cpuMs(p.pid);
  const cpuByThreadMs = Object.fromEntries(
    [...cpuMsByThread(p.pid)]
      .map(([name, ms]) => [name, ms - (threads0.get(name) ?? 0)] as const)
      .filter(([, ms]) => ms > 0)
      .sort((a, b) => b[1] - a[1]),
  );
  log(
    `${variant} ${setting} CPU by thread, ms: ${Object.entries(cpuByThreadMs)
      .map(([n, ms]) => `${n} ${ms}`)
      .join(", ")}`,
  );
  const { hwmKiB } = procStatus(p.pid);
  stopPvc();
  stopPv();
  await stopSidecar(p);
  const pvsLeft = (
    (await env.api.req("GET", "/api/v1/persistentvolumes")).json as { items: Obj[] }
  ).items.filter((v) => v.spec?.claimRef?.namespace === ns).length;
  await env.audit.poll();
  const deleteWrites = env.audit.sidecar(createEnd, deleteEnd + 1);
  const deletes = deleteWrites.filter(
    (w) => w.verb === "delete" && w.resource === "persistentvolumes",
  );
  const all = [...createWrites, ...deleteWrites];
  // Per PV: kube-controller-manager marks it Released (its first status update after the
  // claims were deleted), then the sidecar deletes it.
  const released = new Map<string, number>();
  for (const w of env.audit.writes)
    if (
      w.resource === "persistentvolumes/status" &&
      w.user !== SA_USER &&
      w.at >= delWall - 1000 &&
      pvSeen.has(w.name) &&
      !released.has(w.name)
    )
      released.set(w.name, w.at);
  const deletedAt = new Map<string, number>();
  for (const w of deletes) if (!deletedAt.has(w.name)) deletedAt.set(w.name, w.at);
  const releasedToDelete = [...deletedAt]
    .filter(([v]) => released.has(v))
    .map(([v, t]) => (t - released.get(v)!) / 1000)
    .sort((a, b) => a - b);
  const r: RunResult = {
    variant,
    setting,
    claims: n,
    load,
    probeMs,
    rssIdleMiB,
    rssIdleAnonMiB: idle.anonKiB / 1024,
    rssIdleFileMiB: idle.fileKiB / 1024,
    allBoundS: (tBound - t0) / 1000,
    p50BoundS: quantile(latencies, 0.5),
    p99BoundS: quantile(latencies, 0.99),
    createPerS,
    claimsCreatedS: (Math.max(...claimCreates) - firstClaim) / 1000,
    readyToPvP50S: quantile(readyToPv, 0.5),
    readyToPvP99S: quantile(readyToPv, 0.99),
    maxIdleWithBacklogS,
    releasedToDeleteP50S: quantile(releasedToDelete, 0.5),
    releasedToDeleteP99S: quantile(releasedToDelete, 0.99),
    maxIdleWithReleasedS: longestIdle([...released.values()], [...deletedAt.values()]),
    maxCreateGapS: maxGap,
    allGoneS: (tGone - delStart) / 1000,
    deletePerS: n / ((tGone - delStart) / 1000),
    writesCreate: byVerb(createWrites),
    writesDelete: byVerb(deleteWrites),
    writesPerVolumeCreate: createWrites.length / n,
    writesPerVolumeDelete: deleteWrites.length / n,
    conflicts: all.filter((w) => w.code === 409).length,
    duplicateDeletes: deletes.length - new Set(deletes.map((w) => w.name)).size,
    cpuMsPerVolume: (cpu1 - cpu0) / n,
    cpuByThreadMs,
    boundClaims: bound.size,
    pvsLeft,
    missed,
    timeline: {
      ...timeline(createWrites, firstClaim, "create phase"),
      ...timeline(deleteWrites, delWall, "delete phase"),
    },
    peakRssMiB: hwmKiB / 1024,
    exit: await p.exited,
  };
  log(
    `  bound ${r.allBoundS.toFixed(1)} s, p50/p99 ${r.p50BoundS.toFixed(1)}/${r.p99BoundS.toFixed(1)} s, ` +
      `${r.createPerS.toFixed(1)} PV/s, gone ${r.allGoneS.toFixed(1)} s, writes ${r.writesPerVolumeCreate.toFixed(2)}/${r.writesPerVolumeDelete.toFixed(2)}, ` +
      `cpu ${r.cpuMsPerVolume.toFixed(1)} ms/vol, peak ${r.peakRssMiB.toFixed(1)} MiB, 409s ${r.conflicts}, dup DELETE ${r.duplicateDeletes}`,
  );
  return r;
}

// ------------------------------------------------------------------ exec → first Probe

async function startupRun(env: Env, variant: string, exe: string): Promise<number> {
  env.proxy.reset();
  const p = startSidecar(exe, flagsFor(env, []), path.join(os.tmpdir(), "compare-startup.log"));
  try {
    await until("the first gRPC call", 30_000, () => {
      if (env.proxy.firstCall !== undefined) return true;
      running(p, variant);
      return false;
    });
    return env.proxy.firstCall! - p.spawnedAt;
  } finally {
    p.child.kill("SIGKILL");
    await p.exited;
  }
}

// ------------------------------------------------------------------ memory with cached objects

async function createPairs(env: Env, from: number, to: number) {
  const ns = "cached";
  await env.api.req("POST", "/api/v1/namespaces", {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: ns },
  });
  const idx = Array.from({ length: to - from }, (_, i) => from + i);
  log(`creating cached PVC+PV pairs ${from}..${to - 1}`);
  await parallel(idx, 32, async (i) => {
    const pv = `pvc-cached-${String(i).padStart(6, "0")}-0000-4000-8000-000000000000`;
    const claim = `data-${i}`;
    const r1 = await env.api.req("POST", "/api/v1/persistentvolumes", {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: {
        name: pv,
        annotations: { "pv.kubernetes.io/provisioned-by": "other.csi.example.com" },
        finalizers: ["kubernetes.io/pv-protection"],
      },
      spec: {
        accessModes: ["ReadWriteOnce"],
        capacity: { storage: "1Gi" },
        claimRef: { apiVersion: "v1", kind: "PersistentVolumeClaim", namespace: ns, name: claim },
        csi: {
          driver: "other.csi.example.com",
          volumeHandle: `vol-${i}`,
          fsType: "ext4",
          volumeAttributes: {
            "storage.kubernetes.io/csiProvisionerIdentity": "1700000000000-1234-other",
          },
        },
        persistentVolumeReclaimPolicy: "Delete",
        storageClassName: "other",
        volumeMode: "Filesystem",
      },
    });
    const r2 = await env.api.req("POST", `/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: {
        name: claim,
        annotations: { "volume.kubernetes.io/storage-provisioner": "other.csi.example.com" },
      },
      spec: {
        accessModes: ["ReadWriteOnce"],
        resources: { requests: { storage: "1Gi" } },
        storageClassName: "other",
        volumeName: pv,
        volumeMode: "Filesystem",
      },
    });
    if (r1.status !== 201 || r2.status !== 201)
      throw new Error(`pair ${i}: ${r1.status} ${r2.status}`);
  });
}

interface MemResult {
  variant: string;
  cached: number;
  load: number[];
  rssSettledMiB: number;
  peakMiB: number;
}

async function memoryRun(
  env: Env,
  variant: string,
  exe: string,
  cached: number,
): Promise<MemResult> {
  const load = loadavg();
  const p = startSidecar(
    exe,
    flagsFor(env, variant === "ours" ? OURS_FLAGS : []),
    path.join(os.tmpdir(), `compare-mem-${variant}-${cached}.log`),
  );
  try {
    await until("the sidecar to start", 300_000, () => {
      running(p, variant);
      return p.lines.some((l) => READY.test(l));
    });
    await new Promise((r) => setTimeout(r, 5000));
    running(p, variant);
    const s = procStatus(p.pid);
    const r = { variant, cached, load, rssSettledMiB: s.rssKiB / 1024, peakMiB: s.hwmKiB / 1024 };
    log(
      `  ${variant} with ${cached} cached pairs: RSS ${r.rssSettledMiB.toFixed(1)} MiB, peak ${r.peakMiB.toFixed(1)} MiB`,
    );
    return r;
  } finally {
    await stopSidecar(p);
  }
}

// ------------------------------------------------------------------ main

async function sizes(ours: string, upstream: string) {
  const one = async (f: string) => {
    const bytes = (await stat(f)).size;
    const gz = gzipSync(await readFile(f), { level: 6 }).length;
    return { MiB: bytes / 2 ** 20, gzipMiB: gz / 2 ** 20 };
  };
  return { ours: await one(ours), upstream: await one(upstream) };
}

async function main() {
  const bin = binDir();
  const upstream = path.resolve(args.get("upstream") ?? path.join(bin, "csi-provisioner-upstream"));
  const ours = buildOurs();
  OURS_EXE = ours;
  const variants = (
    [
      ["ours", ours],
      ["upstream", upstream],
    ] as [string, string][]
  ).filter(([v]) => VARIANTS.includes(v));
  const size = await sizes(ours, upstream);
  const runs: RunResult[] = [];
  const startups: { variant: string; ms: number; load: number[] }[] = [];
  const memory: MemResult[] = [];
  const started = new Date().toISOString();
  for (let round = 0; round < PAIRS; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse();
    log(`round ${round + 1}/${PAIRS}: starting a control plane`);
    const env = await startEnv(bin);
    try {
      for (let i = 0; i < STARTUP; i++)
        for (const [v, exe] of order)
          startups.push({ variant: v, ms: await startupRun(env, v, exe), load: loadavg() });
      if (CLAIMS > 0)
        for (const [v, exe] of order)
          runs.push(await provisionRun(env, v, exe, "default", CLAIMS, round));
      if (FAST_CLAIMS > 0)
        for (const [v, exe] of order)
          runs.push(await provisionRun(env, v, exe, "qps1000", FAST_CLAIMS, round));
      if (ANNOTATED_CLAIMS > 0)
        for (const [v, exe] of order)
          runs.push(await provisionRun(env, v, exe, "annotated", ANNOTATED_CLAIMS, round));
      let have = 0;
      for (const k of [0, ...CACHED]) {
        if (k > have) await createPairs(env, have, k);
        have = Math.max(have, k);
        if (k > 0) await new Promise((r) => setTimeout(r, 5000));
        for (const [v, exe] of order) memory.push(await memoryRun(env, v, exe, k));
      }
    } finally {
      await stopEnv(env);
    }
    writeResults({
      rounds: round + 1,
      started,
      ours,
      upstream,
      runs,
      startups,
      memory,
      size,
    });
  }
  writeResults({ rounds: PAIRS, started, ours, upstream, runs, startups, memory, size });
}

interface Results {
  rounds: number;
  started: string;
  ours: string;
  upstream: string;
  runs: RunResult[];
  startups: { variant: string; ms: number; load: number[] }[];
  memory: MemResult[];
  size: Awaited<ReturnType<typeof sizes>> | undefined;
}

function writeResults(r: Results) {
  const machine = {
    cpus: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "?"}`,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    finished: new Date().toISOString(),
  };
  const rows: { figure: string; ours: number; upstream: number; unit: string; digits: number }[] =
    [];
  const m = (variant: string, setting: string, f: (x: RunResult) => number) =>
    median(r.runs.filter((x) => x.variant === variant && x.setting === setting).map(f));
  const row = (figure: string, setting: string, f: (x: RunResult) => number, digits = 1) =>
    rows.push({
      figure,
      ours: m("ours", setting, f),
      upstream: m("upstream", setting, f),
      unit: "",
      digits,
    });
  row(`default flags, ${CLAIMS} claims: s until all Bound`, "default", (x) => x.allBoundS);
  row("default flags: p50 claim → Bound, s", "default", (x) => x.p50BoundS);
  row("default flags: p99 claim → Bound, s", "default", (x) => x.p99BoundS);
  row(
    `default flags: s until all ${CLAIMS} PVs gone after deleting the claims`,
    "default",
    (x) => x.allGoneS,
  );
  row(`QPS 1000, ${FAST_CLAIMS} claims: s until all Bound`, "qps1000", (x) => x.allBoundS);
  row(
    "QPS 1000: create volumes/s (first claim → last PV created, audit log)",
    "qps1000",
    (x) => x.createPerS,
  );
  row("QPS 1000: longest pause between PV creates, s", "qps1000", (x) => x.maxCreateGapS, 2);
  row("QPS 1000: claim annotated → PV created, p50 s", "qps1000", (x) => x.readyToPvP50S, 2);
  row("QPS 1000: claim annotated → PV created, p99 s", "qps1000", (x) => x.readyToPvP99S, 2);
  row(
    "QPS 1000: longest time with an annotated claim and no PV created, s",
    "qps1000",
    (x) => x.maxIdleWithBacklogS,
    2,
  );
  row(
    `QPS 1000, ${ANNOTATED_CLAIMS} claims created with the provisioner annotation: create volumes/s`,
    "annotated",
    (x) => x.createPerS,
  );
  row(
    "QPS 1000, annotated claims: longest pause between PV creates, s",
    "annotated",
    (x) => x.maxCreateGapS,
    2,
  );
  row(
    "QPS 1000, annotated claims: claim created → PV created, p50 s",
    "annotated",
    (x) => x.readyToPvP50S,
    2,
  );
  row(
    "QPS 1000, annotated claims: claim created → PV created, p99 s",
    "annotated",
    (x) => x.readyToPvP99S,
    2,
  );
  row(
    "QPS 1000, annotated claims: CPU ms per volume, create + delete",
    "annotated",
    (x) => x.cpuMsPerVolume,
  );
  row("QPS 1000: delete volumes/s", "qps1000", (x) => x.deletePerS);
  row(
    "QPS 1000: PV Released → deleted by the sidecar, p50 s",
    "qps1000",
    (x) => x.releasedToDeleteP50S,
    2,
  );
  row(
    "QPS 1000: PV Released → deleted by the sidecar, p99 s",
    "qps1000",
    (x) => x.releasedToDeleteP99S,
    2,
  );
  row(
    "QPS 1000: longest time with a Released PV and no PV deleted, s",
    "qps1000",
    (x) => x.maxIdleWithReleasedS,
    2,
  );
  row("writes per volume, create (default)", "default", (x) => x.writesPerVolumeCreate, 2);
  row("writes per volume, create (QPS 1000)", "qps1000", (x) => x.writesPerVolumeCreate, 2);
  row("writes per volume, delete (default)", "default", (x) => x.writesPerVolumeDelete, 2);
  row("writes per volume, delete (QPS 1000)", "qps1000", (x) => x.writesPerVolumeDelete, 2);
  row("409 Conflicts per run, default flags", "default", (x) => x.conflicts, 0);
  row("409 Conflicts per run, QPS 1000", "qps1000", (x) => x.conflicts, 0);
  row("duplicate PV DELETEs per run, QPS 1000", "qps1000", (x) => x.duplicateDeletes, 0);
  row("CPU ms per volume, create + delete (QPS 1000)", "qps1000", (x) => x.cpuMsPerVolume);
  row("RSS idle, MiB", "default", (x) => x.rssIdleMiB);
  row(
    `peak RSS (VmHWM) during the ${FAST_CLAIMS}-claim burst, MiB`,
    "qps1000",
    (x) => x.peakRssMiB,
  );
  const mem = (v: string, k: number, f: (x: MemResult) => number) =>
    median(r.memory.filter((x) => x.variant === v && x.cached === k).map(f));
  for (const k of CACHED) {
    rows.push({
      figure: `RSS per cached PVC+PV pair (${k} pairs), KiB`,
      ours:
        ((mem("ours", k, (x) => x.rssSettledMiB) - mem("ours", 0, (x) => x.rssSettledMiB)) * 1024) /
        k,
      upstream:
        ((mem("upstream", k, (x) => x.rssSettledMiB) - mem("upstream", 0, (x) => x.rssSettledMiB)) *
          1024) /
        k,
      unit: "",
      digits: 1,
    });
    for (const [label, f] of [
      ["RSS settled", (x: MemResult) => x.rssSettledMiB],
      ["peak RSS while listing", (x: MemResult) => x.peakMiB],
    ] as const)
      rows.push({
        figure: `${k} cached PVC+PV pairs: ${label}, MiB`,
        ours: mem("ours", k, f),
        upstream: mem("upstream", k, f),
        unit: "",
        digits: 0,
      });
  }
  const st = (v: string) => median(r.startups.filter((x) => x.variant === v).map((x) => x.ms));
  rows.push({
    figure: "exec → first Probe on the driver, ms",
    ours: st("ours"),
    upstream: st("upstream"),
    unit: "",
    digits: 0,
  });
  if (r.size) {
    rows.push({
      figure: "executable, MiB",
      ours: r.size.ours.MiB,
      upstream: r.size.upstream.MiB,
      unit: "",
      digits: 1,
    });
    rows.push({
      figure: "executable, gzip, MiB",
      ours: r.size.ours.gzipMiB,
      upstream: r.size.upstream.gzipMiB,
      unit: "",
      digits: 1,
    });
  }
  const fmt = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : "–");
  const loads = [...r.runs.map((x) => x.load[0]!), ...r.memory.map((x) => x.load[0]!)];
  const md = [
    `Measured ${r.started.slice(0, 16).replace("T", " ")}–${machine.finished.slice(11, 16)} UTC on ${machine.cpus}, ${machine.memoryGiB} GiB, Linux ${machine.kernel}; ` +
      `${r.rounds} interleaved pairs, medians; load average (1 min) at the start of the runs ${fmt(Math.min(...loads), 1)}–${fmt(Math.max(...loads), 1)}.`,
    "",
    "| figure | ours | upstream | ratio (ours/upstream) |",
    "|---|--:|--:|--:|",
    ...rows.map(
      (x) =>
        `| ${x.figure} | ${fmt(x.ours, x.digits)} | ${fmt(x.upstream, x.digits)} | ${x.upstream ? fmt(x.ours / x.upstream, 2) : "–"} |`,
    ),
    "",
  ].join("\n");
  writeFileSync(`${OUT}.json`, `${JSON.stringify({ ...r, machine, rows }, null, 2)}\n`);
  writeFileSync(`${OUT}.md`, md);
  console.log(md);
}

await main();
