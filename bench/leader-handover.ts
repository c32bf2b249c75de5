/**
 * Leader hand-over benchmark: two replicas with `--leader-election` on the real control plane of
 * test/e2e/cluster.ts (etcd, kube-apiserver, kube-controller-manager v1.36.3, hostpathplugin),
 * while a client keeps creating claims.
 *
 *   node_modules/.bin/node bench/leader-handover.ts [--rounds=3] [--upstream-rounds=1]
 *     [--ours=<executable>] [--bin-dir=<e2e bin dir>] [--claim-every=250]
 *     [--out=bench/results/leader-handover] [--commit=<build commit>]
 *
 * Each round stops the leader with SIGTERM, then (after it came back as a standby) kills the new
 * leader with SIGKILL. Hand-over time = the new holder's `spec.acquireTime` in the Lease (written
 * by the standby as it takes over) minus the moment the signal was sent (same host clock).
 * Upstream's binary is measured the same way for SIGTERM, with its defaults and with
 * `ReleaseLeaderElectionOnExit=true`; its replicas get distinct host names (its identity) through
 * `unshare --uts`. At the end every claim must have one PV and the driver one volume per claim:
 * the JSON and the table report claims, PVs and volumes, claims with more than one of either,
 * and CreateVolume calls repeated for a name (replays after a hand-over are allowed: CreateVolume
 * is idempotent by name). Each measure also records the claims still unbound at the signal and
 * the host's 1-minute load average (the machine is shared); the files name the build commit
 * (`--commit`, default `git rev-parse --short HEAD`). Writes `<out>.json` and `<out>.md`. Never
 * asserts: it measures.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import * as path from "node:path";
import { type Cluster, startCluster } from "../test/e2e/cluster.ts";
import { applyRbac } from "../test/e2e/peers.ts";
import { type RunningProcess, startProcess } from "../test/e2e/support.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const args = new Map<string, string>();
for (const a of process.argv.slice(2)) {
  const m = /^--([^=]+)=(.*)$/.exec(a);
  if (!m) throw new Error(`unknown argument ${a}`);
  args.set(m[1]!, m[2]!);
}
const ROUNDS = Number(args.get("rounds") ?? 3);
const UPSTREAM_ROUNDS = Number(args.get("upstream-rounds") ?? 1);
const CLAIM_EVERY_MS = Number(args.get("claim-every") ?? 250);
const OURS = path.resolve(args.get("ours") ?? path.join(ROOT, "dist/csi-provisioner-linux-x64"));
const OUT = path.resolve(ROOT, args.get("out") ?? "bench/results/leader-handover");
const COMMIT =
  args.get("commit") ??
  execFileSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
const LEASE = "hostpath-csi-k8s-io";
const NS = "default";
const CLASS = "handover";
const log = (s: string) => console.error(`[${new Date().toISOString().slice(11, 23)}] ${s}`);

function binDir(): string {
  const given = args.get("bin-dir") ?? process.env.E2E_BIN_DIR;
  if (given) return given;
  return execFileSync("bash", [path.join(ROOT, "scripts/e2e/build.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  })
    .trim()
    .split("\n")
    .at(-1)!;
}

/** RFC 3339 with up to nine fractional digits → epoch ms (with the fraction). */
function parseMicroTime(t: string): number {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(t);
  if (!m) throw new Error(`bad time ${t}`);
  return Date.parse(`${m[1]}Z`) + Number(`0.${m[2] ?? "0"}`) * 1000;
}

interface LeaseSpec {
  holderIdentity?: string;
  acquireTime?: string;
  leaseTransitions?: number;
}

async function lease(cluster: Cluster): Promise<LeaseSpec | undefined> {
  const r = await cluster.request(
    "GET",
    `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${LEASE}`,
  );
  return r.status === 200 ? (JSON.parse(r.body).spec as LeaseSpec) : undefined;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Keeps creating claims until stopped; returns how many it created. */
function claimLoad(cluster: Cluster, prefix: string) {
  let n = 0;
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      const name = `${prefix}-${n++}`;
      const r = await cluster.request("POST", `/api/v1/namespaces/${NS}/persistentvolumeclaims`, {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        metadata: { name },
        spec: {
          accessModes: ["ReadWriteOnce"],
          resources: { requests: { storage: "1Mi" } },
          storageClassName: CLASS,
        },
      });
      if (r.status !== 201) throw new Error(`create claim ${name}: HTTP ${r.status} ${r.body}`);
      await new Promise((r) => setTimeout(r, CLAIM_EVERY_MS));
    }
    return n;
  })();
  return {
    stop: async () => {
      stopped = true;
      return done;
    },
  };
}

type Flavour = "ours" | "upstream" | "upstream+release";

interface Replica {
  id: string;
  proc: RunningProcess;
}

interface Measure {
  flavour: Flavour;
  signal: "SIGTERM" | "SIGKILL";
  from: string;
  to: string;
  /** Signal sent → the standby's acquireTime, ms. */
  handoverMs: number;
  /** Signal sent → the old leader's exit, ms. */
  exitMs: number;
  /** Claims not yet Bound when the signal was sent (work in flight or queued). */
  unboundAtSignal: number;
  /** The host's 1-minute load average at the signal. */
  loadAvg1: number;
  exit: string;
  /** The old leader's shutdown lines (ours), for where the time went. */
  oldLeaderLog: string[];
}

async function main() {
  const bins = binDir();
  if (!existsSync(OURS)) throw new Error(`${OURS} is missing: build it with scripts/build.sh`);
  const upstreamBin = path.join(bins, "csi-provisioner-upstream");
  log(`bin dir ${bins}`);
  const results: Measure[] = [];
  const integrity: Record<string, unknown>[] = [];

  for (const flavour of ["ours", "upstream", "upstream+release"] as Flavour[]) {
    const rounds = flavour === "ours" ? ROUNDS : UPSTREAM_ROUNDS;
    if (rounds <= 0) continue;
    const cluster = await startCluster({ binDir: bins, driver: "hostpath" });
    try {
      const rbac =
        flavour === "ours"
          ? path.join(ROOT, "deploy/rbac.yaml")
          : path.join(bins, "upstream/rbac.yaml");
      const sa = await applyRbac(cluster, readFileSync(rbac, "utf8"));
      const kubeconfig = await cluster.kubeconfigFor(sa);
      const sc = await cluster.request("POST", "/apis/storage.k8s.io/v1/storageclasses", {
        apiVersion: "storage.k8s.io/v1",
        kind: "StorageClass",
        metadata: { name: CLASS },
        provisioner: cluster.driverName,
        reclaimPolicy: "Delete",
        volumeBindingMode: "Immediate",
      });
      if (sc.status !== 201) throw new Error(`create StorageClass: HTTP ${sc.status}`);
      const common = [
        `--csi-address=${cluster.csiSocket}`,
        `--kubeconfig=${kubeconfig}`,
        "--leader-election",
        `--leader-election-namespace=${NS}`,
        "-v=2",
      ];
      let generation = 0;
      const start = (id: string): Replica => {
        generation++;
        const logFile = path.join(cluster.dir, `${id}-${generation}.log`);
        const proc =
          flavour === "ours"
            ? startProcess({
                name: `${id}-${generation}`,
                bin: OURS,
                args: common,
                env: { POD_NAME: id },
                logFile,
              })
            : startProcess({
                name: `${id}-${generation}`,
                bin: "unshare",
                args: [
                  "--uts",
                  "--",
                  "/bin/sh",
                  "-c",
                  'hostname "$0" && exec "$@"',
                  id,
                  upstreamBin,
                  ...common,
                  ...(flavour === "upstream+release"
                    ? ["--feature-gates=ReleaseLeaderElectionOnExit=true"]
                    : []),
                ],
                logFile,
              });
        return { id, proc };
      };
      const holder = async () => (await lease(cluster))?.holderIdentity ?? "";
      const replicas = new Map<string, Replica>();
      replicas.set("replica-a", start("replica-a"));
      await until("replica-a to lead", async () =>
        (await holder()) === "replica-a" ? true : undefined,
      );
      replicas.set("replica-b", start("replica-b"));
      await replicas.get("replica-b")!.proc.waitForLine(/Attempting to acquire leader lease/);
      // Let the standby finish its first attempt and open its watch.
      await new Promise((r) => setTimeout(r, 2_000));

      const load = claimLoad(cluster, flavour.replace("+", "-"));
      const handOver = async (signal: "SIGTERM" | "SIGKILL") => {
        const from = await holder();
        const to = from === "replica-a" ? "replica-b" : "replica-a";
        const old = replicas.get(from)!;
        await new Promise((r) => setTimeout(r, 2_000)); // claims in flight at the signal
        const before = old.proc.lines.length;
        const pending = await cluster.request(
          "GET",
          `/api/v1/namespaces/${NS}/persistentvolumeclaims`,
        );
        const unboundAtSignal = (
          JSON.parse(pending.body).items as { status?: { phase?: string } }[]
        ).filter((c) => c.status?.phase !== "Bound").length;
        const loadAvg1 = Math.round(loadavg()[0]! * 100) / 100;
        const sent = Date.now();
        old.proc.kill(signal);
        const spec = await until(
          `${to} to take the Lease`,
          async () => {
            const l = await lease(cluster);
            return l?.holderIdentity === to ? l : undefined;
          },
          60_000,
        );
        const exit = await old.proc.exited;
        const exitMs = Date.now() - sent; // bounded by the poll above; see old.proc's log
        const m: Measure = {
          flavour,
          signal,
          from,
          to,
          handoverMs: Math.round(parseMicroTime(spec.acquireTime!) - sent),
          exitMs,
          unboundAtSignal,
          loadAvg1,
          exit: exit.signal ?? `code ${exit.code}`,
          oldLeaderLog: old.proc.lines
            .slice(before)
            .filter((l) => !/gRPCCall|^\s*$/.test(l))
            .slice(0, 40),
        };
        results.push(m);
        log(
          `${flavour} ${signal} ${from} → ${to}: ${m.handoverMs} ms (old leader ended: ${m.exit}; ${unboundAtSignal} claims unbound at the signal, load ${loadAvg1})`,
        );
        // The old leader comes back as the standby.
        replicas.set(from, start(from));
        await replicas.get(from)!.proc.waitForLine(/Attempting to acquire leader lease/);
        await new Promise((r) => setTimeout(r, 2_000));
      };
      for (let i = 0; i < rounds; i++) {
        await handOver("SIGTERM");
        if (flavour === "ours") await handOver("SIGKILL");
      }
      const created = await load.stop();

      // Every claim gets exactly one PV and one volume.
      const pvsOf = async () => {
        const r = await cluster.request("GET", "/api/v1/persistentvolumes");
        return JSON.parse(r.body).items as {
          metadata: { name: string };
          spec: { claimRef?: { uid?: string }; csi?: { volumeHandle: string } };
        }[];
      };
      const claimsOf = async () => {
        const r = await cluster.request("GET", `/api/v1/namespaces/${NS}/persistentvolumeclaims`);
        return JSON.parse(r.body).items as {
          metadata: { uid: string };
          status?: { phase?: string };
        }[];
      };
      await until(
        "every claim to be bound",
        async () => {
          const cs = await claimsOf();
          return cs.length === created && cs.every((c) => c.status?.phase === "Bound")
            ? true
            : undefined;
        },
        180_000,
      );
      const claims = await claimsOf();
      const pvs = await pvsOf();
      const volumes = await cluster.listVolumes();
      const pvsPerClaim = new Map<string, number>();
      for (const pv of pvs) {
        const uid = pv.spec.claimRef?.uid ?? "";
        pvsPerClaim.set(uid, (pvsPerClaim.get(uid) ?? 0) + 1);
      }
      const creates = new Map<string, number>();
      for (const c of cluster.csiCalls()) {
        if (!c.Method.endsWith("/CreateVolume")) continue;
        const name = String(c.Request.name ?? "");
        creates.set(name, (creates.get(name) ?? 0) + 1);
      }
      const row = {
        flavour,
        claims: claims.length,
        pvs: pvs.length,
        volumes: volumes.length,
        claimsWithTwoPvs: [...pvsPerClaim.values()].filter((n) => n > 1).length,
        claimsWithoutPv: claims.filter((c) => !pvsPerClaim.has(c.metadata.uid)).length,
        createVolumeCalls: [...creates.values()].reduce((a, b) => a + b, 0),
        namesCreatedMoreThanOnce: [...creates.values()].filter((n) => n > 1).length,
      };
      integrity.push(row);
      log(`${flavour}: ${JSON.stringify(row)}`);
      for (const r of replicas.values()) await r.proc.stop(20_000);
    } finally {
      await cluster.stop();
    }
  }

  const by = (f: Flavour, s: string) =>
    results.filter((r) => r.flavour === f && r.signal === s).map((r) => r.handoverMs);
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? Number.NaN : s[Math.floor((s.length - 1) / 2)]!;
  };
  const date = new Date().toISOString();
  const lines = [
    `${date}, build ${COMMIT}, a claim every ${CLAIM_EVERY_MS} ms; per run: hand-over ms (claims unbound at the signal / 1-min load average)`,
    "",
    "| Sidecar | Signal | Hand-over (ms), each run | Median |",
    "|---|---|---|---|",
  ];
  for (const f of ["ours", "upstream", "upstream+release"] as Flavour[]) {
    for (const s of ["SIGTERM", "SIGKILL"]) {
      const rs = results.filter((r) => r.flavour === f && r.signal === s);
      const xs = by(f, s);
      if (xs.length > 0) {
        const each = rs.map((r) => `${r.handoverMs} (${r.unboundAtSignal}/${r.loadAvg1})`);
        lines.push(`| ${f} | ${s} | ${each.join(", ")} | ${median(xs)} |`);
      }
    }
  }
  lines.push(
    "",
    "| Sidecar | Claims | PVs | Volumes | Claims with >1 PV | Claims without PV | CreateVolume calls | Names created >1 time |",
    "|---|---|---|---|---|---|---|---|",
  );
  for (const r of integrity) {
    lines.push(
      `| ${r.flavour} | ${r.claims} | ${r.pvs} | ${r.volumes} | ${r.claimsWithTwoPvs} | ${r.claimsWithoutPv} | ${r.createVolumeCalls} | ${r.namesCreatedMoreThanOnce} |`,
    );
  }
  const md = `${lines.join("\n")}\n`;
  writeFileSync(
    `${OUT}.json`,
    `${JSON.stringify({ date, commit: COMMIT, claimEveryMs: CLAIM_EVERY_MS, results, integrity }, null, 2)}\n`,
  );
  writeFileSync(`${OUT}.md`, md);
  console.log(md);
}

await main();
process.exit(0);
