/**
 * Provisioning throughput, API writes per volume and memory of the `run` command (issues 4
 * and 5), against the test Kubernetes API server and a fake CSI driver that answers at once,
 * both in the benchmark process; the provisioner is a child process, as in a pod.
 *
 * For each variant (the compiled executable, and `bun src/main.ts` for comparison) and each
 * setting (the default `--kube-api-qps=5 --kube-api-burst=10`, and
 * `--kube-api-qps=1000 --kube-api-burst=1000`), on a fresh API server and driver:
 *
 * 1. start `csi-provisioner --csi-address=… --kubeconfig=…` with `POD_NAMESPACE=default`;
 * 2. idle: once it logs "Started provisioning controller" (informers synced, intent journal
 *    loaded), wait `IDLE_SETTLE_MS` and read VmRSS from /proc/<pid>/status;
 * 3. store the claims at once (annotated with `volume.kubernetes.io/storage-provisioner`, as
 *    kube-controller-manager would; stored in-process, so they are not counted as API writes),
 *    and time until every claim has its PV: volumes/s;
 * 4. wait until the provisioner has made no API write for `QUIET_MS` (events and intent
 *    removals trail the PVs), then count its API writes since step 3 by verb and resource,
 *    read VmRSS and VmHWM, and check one backend volume and one PV per claim;
 * 5. SIGTERM, and record the exit code.
 *
 * At the default 5 queries/s one volume costs about half a second of the budget, so that
 * setting provisions `throttledClaims` (default 200) claims rather than `claims` (1,000).
 *
 * The settings at 1,000 queries/s run `repeats` times per variant (default 3, variants
 * interleaved) and report medians; they also run once more with `--master=<url>` instead of
 * `--kubeconfig`: that is the code path of the in-cluster configuration a pod uses, which does
 * not load @kubernetes/client-node's kubeconfig parser, so its RSS is what a pod would see.
 *
 *   bun bench/provision.ts [claims] [throttledClaims] [repeats]   (defaults 1000, 200 and 3)
 *
 * Writes bench/results/provision.json. Linux only (/proc). No test asserts these numbers.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type ApiServer, startApiServer } from "../src/dev/apiserver/mod.ts";
import { resources } from "../src/kube/resources.ts";
import { startFakeDriver } from "../test/support/fake-driver.ts";
import { claim, DRIVER, storageClass } from "../test/support/sidecar-harness.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const BIN = join(ROOT, "node_modules/.bin");
const OUT = join(ROOT, "bench/results/provision.json");
const HOST_TARGET = process.arch === "arm64" ? "linux-arm64" : "linux-x64";
const claims = positiveInt(process.argv[2], 1000, "claims");
const throttledClaims = positiveInt(process.argv[3], 200, "throttledClaims");
const repeats = positiveInt(process.argv[4], 3, "repeats");
/** Pause between "Started provisioning controller" and the idle RSS reading. */
const IDLE_SETTLE_MS = 2_000;
/** No API write for this long means the provisioner is done (intent removals wait ≤ 1 s). */
const QUIET_MS = 3_000;
/** Give up on one run after this long. */
const RUN_DEADLINE_MS = 15 * 60_000;
const NAMESPACE = "default";
/** Upstream's writes per provisioned volume: Provisioning event, PV create, ProvisioningSucceeded event. */
const UPSTREAM_WRITES_PER_VOLUME = 3;

function positiveInt(arg: string | undefined, fallback: number, name: string): number {
  if (arg === undefined) return fallback;
  const n = Number(arg);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${name} must be a positive integer, got ${arg}`);
  return n;
}

interface Variant {
  readonly name: string;
  readonly file: string;
  readonly args: readonly string[];
}

interface Setting {
  readonly name: string;
  readonly flags: readonly string[];
  readonly claims: number;
  /**
   * How the child finds the API server: `--kubeconfig=<file>` (loads @kubernetes/client-node's
   * kubeconfig parser), or `--master=<url>` without a kubeconfig, which takes the same code path
   * as the in-cluster configuration of a pod (no client-node).
   */
  readonly connect: "kubeconfig" | "master";
  /** Runs per variant; the table shows medians. */
  readonly repeats: number;
}

function sh(file: string, args: readonly string[], env?: Record<string, string>): string {
  return execFileSync(file, [...args], {
    encoding: "utf8",
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  }).trim();
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function procStatusKiB(pid: number, field: "VmRSS" | "VmHWM"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, "m").exec(status);
  if (!m) throw new Error(`No ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

function machine(): Record<string, unknown> {
  const cpuInfo = readFileSync("/proc/cpuinfo", "utf8");
  return {
    nproc: Number(sh("nproc", [])),
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuInfo)?.[1] ?? cpus()[0]?.model ?? "unknown",
    memoryMiB: Math.round(totalmem() / 1048576),
    kernel: sh("uname", ["-r"]),
    arch: process.arch,
    loadAverageAtStart: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
  };
}

function runtimes(): Record<string, string> {
  return {
    bun: sh(join(BIN, "bun"), ["--version"]),
    deno:
      sh(join(BIN, "deno"), ["--version"])
        .split("\n")[0]
        ?.replace(/^deno /, "")
        .split(" ")[0] ?? "",
    node: sh(join(BIN, "node"), ["--version"]).replace(/^v/, ""),
    benchmarkRunsOn: process.versions.bun
      ? `bun ${process.versions.bun}`
      : `node ${process.versions.node}`,
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1
    ? (s[mid] as number)
    : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves with `promise`, or rejects with `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(what)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Counts in `after` minus those in `before`, zeros dropped. */
function diff(
  after: Record<string, number>,
  before: Record<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(after)) {
    const d = n - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/**
 * The environment of the provisioner: this process's, with `POD_NAMESPACE`, and without
 * `KUBECONFIG`, which would override `--kubeconfig` and could point at a real cluster.
 */
function childEnv(): Record<string, string | undefined> {
  const { KUBECONFIG: _, ...env } = process.env;
  return { ...env, POD_NAMESPACE: NAMESPACE, NO_COLOR: "1" };
}

async function runOnce(v: Variant, s: Setting, work: string) {
  const api: ApiServer = await startApiServer();
  const driver = await startFakeDriver({ name: DRIVER });
  const kubeconfig = join(work, `kubeconfig-${api.port}.yaml`);
  writeFileSync(kubeconfig, api.kubeconfig());
  api.put(storageClass("bench"));

  const child = spawn(
    v.file,
    [
      ...v.args,
      `--csi-address=${driver.socketPath}`,
      s.connect === "kubeconfig" ? `--kubeconfig=${kubeconfig}` : `--master=${api.url}`,
      ...s.flags,
    ],
    {
      cwd: ROOT,
      env: childEnv(),
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  const pid = child.pid;
  let tail = "";
  let started: () => void = () => {};
  const startedP = new Promise<void>((r) => {
    started = r;
  });
  child.stderr?.on("data", (d: Buffer) => {
    tail = (tail + d.toString("utf8")).slice(-8_000);
    if (tail.includes('"Started provisioning controller"')) started();
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? -1));
    child.once("error", () => resolve(-1));
  });
  const died = exited.then((code) => {
    throw new Error(`${v.name} exited early with ${code}:\n${tail}`);
  });
  died.catch(() => {});

  try {
    if (pid === undefined) throw new Error(`${v.name} did not start`);
    await within(Promise.race([startedP, died]), 60_000, `${v.name} did not start:\n${tail}`);
    await sleep(IDLE_SETTLE_MS);
    const idleRssKiB = procStatusKiB(pid, "VmRSS");
    const writesBefore = api.writes.snapshot();
    const requestsBefore = api.requests.snapshot();
    const writesTotalBefore = api.writes.total;

    const t0 = performance.now();
    for (let i = 0; i < s.claims; i++) {
      api.put(claim(`claim-${String(i).padStart(4, "0")}`, "bench", { namespace: NAMESPACE }));
    }
    // Cheap check per change (a counter); the PV list is read only once the creates are in.
    const pvCreates = () =>
      api.writes.count({ verb: "create", resource: resources.persistentVolumes });
    await within(
      Promise.race([
        api.waitFor(
          () =>
            pvCreates() >= s.claims && api.objects(resources.persistentVolumes).length >= s.claims,
        ),
        died,
      ]),
      RUN_DEADLINE_MS,
      `${v.name}: not all PVs after ${RUN_DEADLINE_MS} ms:\n${tail}`,
    );
    const provisionMs = performance.now() - t0;

    // Quiet: no write for QUIET_MS (events and intent removals come after the PVs).
    let last = api.writes.total;
    let quietSince = performance.now();
    while (performance.now() - quietSince < QUIET_MS) {
      await sleep(100);
      if (api.writes.total !== last) {
        last = api.writes.total;
        quietSince = performance.now();
      }
    }
    const settledMs = quietSince - t0;
    const afterRssKiB = procStatusKiB(pid, "VmRSS");
    const peakRssKiB = procStatusKiB(pid, "VmHWM");
    const writes = diff(api.writes.snapshot(), writesBefore);
    const reads = diff(api.requests.snapshot(), requestsBefore);
    for (const k of Object.keys(writes)) delete reads[k]; // requests counts writes too
    const totalWrites = api.writes.total - writesTotalBefore;

    const pvs = api.objects(resources.persistentVolumes);
    const events: Record<string, number> = {};
    for (const e of api.objects(resources.coreEvents)) {
      events[e.reason ?? ""] = (events[e.reason ?? ""] ?? 0) + 1;
    }
    const check = {
      pvs: pvs.length,
      backendVolumes: driver.volumes().size,
      createVolumeCalls: driver.callsTo("createVolume").length,
      ok: pvs.length === s.claims && driver.volumes().size === s.claims,
    };

    process.kill(pid, "SIGTERM");
    const exitCode = await within(exited, 30_000, `${v.name} did not exit after SIGTERM`);

    return {
      variant: v.name,
      setting: s.name,
      provisionSeconds: round(provisionMs / 1000, 2),
      volumesPerSecond: round(s.claims / (provisionMs / 1000), 1),
      lastWriteSeconds: round(settledMs / 1000, 2),
      apiWrites: {
        total: totalWrites,
        perVolume: round(totalWrites / s.claims, 3),
        byVerbAndResource: writes,
      },
      apiReadsByVerbAndResource: reads,
      eventsByReason: events,
      rssMiB: {
        idle: round(idleRssKiB / 1024),
        afterProvisioning: round(afterRssKiB / 1024),
        peak: round(peakRssKiB / 1024),
      },
      check,
      exitCodeAfterSigterm: exitCode,
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
    await driver.close();
    await api.close();
  }
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "csi-provisioner-bench-provision-"));
  try {
    process.stderr.write("building the executable...\n");
    const dist = join(work, "dist");
    sh("bash", [join(ROOT, "scripts/build.sh"), HOST_TARGET], { DIST_DIR: dist });
    const variants: Variant[] = [
      {
        name: `compiled executable (${HOST_TARGET})`,
        file: join(dist, `csi-provisioner-${HOST_TARGET}`),
        args: [],
      },
      { name: "bun src/main.ts", file: join(BIN, "bun"), args: [join(ROOT, "src/main.ts")] },
    ];
    const fast = ["--kube-api-qps=1000", "--kube-api-burst=1000"];
    const settings: Setting[] = [
      {
        name: "default flags, --kubeconfig",
        flags: [],
        claims: throttledClaims,
        connect: "kubeconfig",
        repeats: 1,
      },
      { name: "qps 1000, --kubeconfig", flags: fast, claims, connect: "kubeconfig", repeats },
      { name: "qps 1000, --master", flags: fast, claims, connect: "master", repeats },
    ];
    const report = {
      date: new Date().toISOString(),
      commit: sh("bash", [join(ROOT, "scripts/build.sh"), "--stamp"])
        .split("\n")[1]
        ?.replace("GIT_COMMIT=", ""),
      machine: machine(),
      runtimes: runtimes(),
      method: [
        "Test API server and fake CSI driver (answers at once) in the benchmark process; the provisioner is a child process with --csi-address, --kubeconfig (or --master, which takes the in-cluster code path: no @kubernetes/client-node) and POD_NAMESPACE=default, otherwise default flags (--worker-threads=100).",
        `Settings with repeats > 1 run the variants interleaved and report medians; every run is in runs[].`,
        `Idle RSS: VmRSS ${IDLE_SETTLE_MS} ms after "Started provisioning controller" (informers synced), before any claim.`,
        "Claims are stored all at once in-process (annotated for the driver, Immediate binding); time runs from the first claim until every claim has its PV.",
        `API writes: every mutating request the server received from the provisioner from the first claim until no write for ${QUIET_MS} ms, divided by the number of claims.`,
        "After provisioning: VmRSS and VmHWM (peak) at that point.",
      ],
      upstream: {
        writesPerVolume: UPSTREAM_WRITES_PER_VOLUME,
        writes: [
          "create events (Provisioning, before each Provision)",
          "create persistentvolumes",
          "create events (ProvisioningSucceeded)",
        ],
        source: "../shared/reference/upstream-behaviour.md 2.8 and 5.4; issue 4",
      },
      results: [] as ReturnType<typeof summarise>[],
    };
    type Run = Awaited<ReturnType<typeof runOnce>>;
    const summarise = (v: Variant, st: Setting, runs: readonly Run[]) => {
      const med = (f: (r: Run) => number, digits = 1) => round(median(runs.map(f)), digits);
      const provisionSeconds = med((r) => r.provisionSeconds, 2);
      return {
        variant: v.name,
        setting: st.name,
        flags: [
          st.connect === "kubeconfig" ? "--kubeconfig=<file>" : "--master=<url>",
          ...(st.flags.length > 0 ? st.flags : ["(--kube-api-qps=5 --kube-api-burst=10)"]),
        ].join(" "),
        claims: st.claims,
        repeats: runs.length,
        provisionSeconds,
        volumesPerSecond: round(st.claims / provisionSeconds, 1),
        apiWritesPerVolume: med((r) => r.apiWrites.perVolume, 3),
        rssMiB: {
          idle: med((r) => r.rssMiB.idle),
          afterProvisioning: med((r) => r.rssMiB.afterProvisioning),
          peak: med((r) => r.rssMiB.peak),
        },
        allChecksOk: runs.every((r) => r.check.ok && r.exitCodeAfterSigterm === 0),
        runs,
      };
    };
    for (const st of settings) {
      const byVariant = new Map<Variant, Run[]>(variants.map((v) => [v, []]));
      for (let i = 0; i < st.repeats; i++) {
        for (const v of variants) {
          process.stderr.write(`${v.name}, ${st.name}, ${st.claims} claims, run ${i + 1}...\n`);
          const r = await runOnce(v, st, work);
          byVariant.get(v)?.push(r);
          process.stderr.write(`${JSON.stringify(r)}\n`);
        }
      }
      for (const v of variants) report.results.push(summarise(v, st, byVariant.get(v) ?? []));
    }
    mkdirSync(dirname(OUT), { recursive: true });
    writeFileSync(OUT, `${JSON.stringify(report, null, 2)}\n`);
    for (const r of report.results) {
      process.stdout.write(
        `${r.variant.padEnd(32)} ${r.setting.padEnd(28)} ${String(r.claims).padStart(5)} claims ${String(r.provisionSeconds).padStart(7)} s ${String(r.volumesPerSecond).padStart(7)} vol/s  writes/vol ${r.apiWritesPerVolume}  RSS idle ${r.rssMiB.idle} MiB, after ${r.rssMiB.afterProvisioning} MiB, peak ${r.rssMiB.peak} MiB${r.allChecksOk ? "" : "  CHECK FAILED"}\n`,
      );
    }
    process.stdout.write(`wrote ${OUT}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
