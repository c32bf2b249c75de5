/**
 * CPU the client spends reading watch streams: the sidecar's own informers (claims, volumes,
 * classes from `createSharedInformers`, over `KubeTransport` and `src/runtime/https.ts`) watch a
 * local HTTPS server (a throw-away CA, passed as the connection's `tls.ca`, and a bearer token)
 * that streams `--events` watch events, half PVC and half PV (2-3 KB of JSON each, managedFields
 * included), one JSON object per line and one write per event, as kube-apiserver sends them.
 * Each object gets ADDED, MODIFIED, MODIFIED, DELETED, so the store grows and shrinks.
 *
 * The server runs in a separate Node process, so `process.cpuUsage()` of this process counts only
 * the client: from before the informers start (lists and TLS handshakes included, a few ms) until
 * both stores have seen the last event's resourceVersion. `--rate` paces the server (events per
 * second over both streams; at 1,000 claims/s the sidecar sees a few thousand events per second);
 * `--rate=0` sends as fast as the client reads.
 *
 *   node_modules/.bin/bun bench/watch-cpu.ts [--events=12000] [--rate=4000] [--rounds=3] \
 *     [--label=<name>] [--out=bench/results/watch-cpu.json]
 *   (node_modules/.bin/node or `deno run -A` work the same way)
 *
 * Merges `<label>/<runtime>` into the output file: CPU µs per event (user + system, and the main
 * thread's share from /proc on Linux) for each round and their medians, and the heap in use once
 * the streams caught up (after a full GC on Bun, or with `--expose-gc`); the first round also
 * warms up the JIT, so compare medians.
 */
import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type http from "node:http";
import https from "node:https";
import { loadavg } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { createSharedInformers } from "../src/controller/provisioner.ts";
import { staticAuth } from "../src/kube/auth.ts";
import { createKubeApi } from "../src/kube/client.ts";
import { KubeTransport } from "../src/kube/transport.ts";
import { closeIdleConnections } from "../src/runtime/https.ts";
import { systemClock } from "../src/util/clock.ts";
import { nullLogger } from "../src/util/log.ts";
import { makeTestPki } from "../test/support/certs.ts";
import { pvcJson, pvJson } from "./objects.ts";

const here = dirname(fileURLToPath(import.meta.url));

function arg(name: string, fallback: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : fallback;
}

const events = Number(arg("events", "12000"));
const rate = Number(arg("rate", "4000"));
const rounds = Number(arg("rounds", "3"));
/** Objects per stream: each gets four events. */
const perStream = Math.max(1, Math.floor(events / 8));
const PVC_RV_BASE = 1_000_000;
const PV_RV_BASE = 2_000_000;

type EventType = "ADDED" | "MODIFIED" | "DELETED";

/** The event lines of one stream: ADDED for every object, then MODIFIED twice, then DELETED. */
function streamLines(make: (i: number) => string, rvBase: number): Buffer[] {
  const types: EventType[] = ["ADDED", "MODIFIED", "MODIFIED", "DELETED"];
  const lines: Buffer[] = [];
  let rv = rvBase;
  for (const type of types) {
    for (let i = 0; i < perStream; i++) {
      const object = JSON.parse(make(i)) as { metadata: { resourceVersion: string } };
      object.metadata.resourceVersion = String(++rv);
      lines.push(Buffer.from(`${JSON.stringify({ type, object })}\n`));
    }
  }
  return lines;
}

/** The server side (a child process): lists are empty, watches stream the prepared lines. */
async function serve(): Promise<void> {
  const pki = JSON.parse(process.env.WATCH_CPU_PKI ?? "{}") as {
    serverCertPem: string;
    serverKeyPem: string;
  };
  const claims = streamLines(pvcJson, PVC_RV_BASE);
  const volumes = streamLines(pvJson, PV_RV_BASE);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const handler = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "https://x");
    const plural = url.pathname.split("/").pop();
    if (url.searchParams.get("watch") !== "true") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          kind: "List",
          apiVersion: "v1",
          metadata: { resourceVersion: "1" },
          items: [],
        }),
      );
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    res.flushHeaders();
    const lines =
      plural === "persistentvolumeclaims" ? claims : plural === "persistentvolumes" ? volumes : [];
    // Half the rate per stream: two streams carry the events.
    const perMs = rate > 0 ? rate / 2 / 1000 : Number.POSITIVE_INFINITY;
    const start = performance.now();
    let sent = 0;
    while (sent < lines.length && !res.destroyed) {
      const due = Math.min(lines.length, Math.floor((performance.now() - start) * perMs) + 1);
      while (sent < due) {
        if (!res.write(lines[sent++]!)) {
          await new Promise((r) => res.once("drain", r));
          break;
        }
      }
      if (sent < due) continue;
      await sleep(1);
    }
    // Then stay open and silent, as a watch with nothing to say; the client closes it.
  };
  const server = https.createServer({ cert: pki.serverCertPem, key: pki.serverKeyPem }, (q, s) => {
    void handler(q, s);
  });
  server.listen(0, "127.0.0.1", () => {
    const addr = server.address() as { port: number };
    process.stdout.write(`${addr.port}\n`);
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}

/** CPU µs of this process's main thread (Linux: /proc, 10 ms ticks); undefined elsewhere. */
function mainThreadCpuUs(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 10_000;
  } catch {
    return undefined;
  }
}

function collectGarbage(): void {
  const g = globalThis as { Bun?: { gc(force: boolean): void }; gc?: () => void };
  if (g.Bun) g.Bun.gc(true);
  else g.gc?.();
}

interface Round {
  cpuUsPerEvent: number;
  userUsPerEvent: number;
  systemUsPerEvent: number;
  /** The main (JavaScript) thread's share; the rest is the runtime's helper threads (GC, I/O). */
  mainThreadUsPerEvent?: number;
  /** Heap in use once every event is applied (after a full GC on Bun, or Node/Deno with --expose-gc). */
  heapMBAtEnd: number;
  wallMs: number;
}

async function oneRound(url: string, ca: string): Promise<Round> {
  const transport = new KubeTransport({
    connection: {
      server: url,
      tls: { ca },
      auth: staticAuth({ Authorization: "Bearer bench" }),
      source: "bench",
    },
    version: "bench",
    clock: systemClock,
    random: Math.random,
  });
  const informers = createSharedInformers({
    api: createKubeApi(transport),
    clock: systemClock,
    random: Math.random,
    logger: nullLogger,
    watchAttachments: false,
    watchNodes: false,
  });
  // A handler per informer, as the controllers' queues have.
  let notified = 0;
  for (const inf of [informers.claims, informers.volumes]) {
    (inf as { addEventHandler(h: object): unknown }).addEventHandler({
      onAdd: () => {
        notified++;
      },
      onUpdate: () => {
        notified++;
      },
      onDelete: () => {
        notified++;
      },
    });
  }
  const stop = new AbortController();
  const deadline = AbortSignal.timeout(120_000);
  const wallStart = performance.now();
  const cpuStart = process.cpuUsage();
  const mainStart = mainThreadCpuUs();
  const runs = informers.all.map((i) => i.run(stop.signal));
  await Promise.all([
    informers.claims.waitForResourceVersion(String(PVC_RV_BASE + 4 * perStream), deadline),
    informers.volumes.waitForResourceVersion(String(PV_RV_BASE + 4 * perStream), deadline),
  ]);
  const cpu = process.cpuUsage(cpuStart);
  const mainEnd = mainThreadCpuUs();
  // What is still reachable with every stream caught up (all objects were deleted again, so the
  // stores are empty): after a full GC where the runtime offers one.
  collectGarbage();
  const heapAtEnd = process.memoryUsage().heapUsed;
  const wallMs = performance.now() - wallStart;
  stop.abort(new Error("round done"));
  await Promise.all(runs);
  closeIdleConnections();
  if (notified === 0) throw new Error("no handler notifications");
  const n = 8 * perStream;
  const r = (us: number) => Math.round((us / n) * 100) / 100;
  return {
    cpuUsPerEvent: r(cpu.user + cpu.system),
    userUsPerEvent: r(cpu.user),
    systemUsPerEvent: r(cpu.system),
    mainThreadUsPerEvent:
      mainStart !== undefined && mainEnd !== undefined ? r(mainEnd - mainStart) : undefined,
    heapMBAtEnd: Math.round(heapAtEnd / 1e5) / 10,
    wallMs: Math.round(wallMs),
  };
}

async function main(): Promise<void> {
  const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string } } };
  const runtime = g.Bun ? "bun" : g.Deno ? "deno" : "node";
  const version = g.Bun?.version ?? g.Deno?.version.deno ?? process.versions.node;
  const label = arg("label", "current");
  const out = arg("out", join(here, "results", "watch-cpu.json"));
  const pki = await makeTestPki();
  const nodeBin = join(here, "..", "node_modules", ".bin", "node");
  const child = spawn(
    nodeBin,
    [fileURLToPath(import.meta.url), "--serve", `--events=${events}`, `--rate=${rate}`],
    {
      env: { ...process.env, WATCH_CPU_PKI: JSON.stringify(pki) },
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let buf = "";
      child.stdout!.on("data", (d: Buffer) => {
        buf += d.toString();
        if (buf.includes("\n")) resolve(Number(buf.trim()));
      });
      child.once("exit", (code) => reject(new Error(`the server exited (${code})`)));
    });
    const url = `https://127.0.0.1:${port}`;
    const results: Round[] = [];
    const load = loadavg()[0];
    for (let i = 0; i < rounds; i++) {
      results.push(await oneRound(url, pki.caPem));
      console.error(`round ${i + 1}: ${JSON.stringify(results.at(-1))}`);
    }
    const result = {
      date: new Date().toISOString(),
      runtime,
      version,
      events: 8 * perStream,
      rate,
      bytesPerEvent: Math.round((streamLinesBytes(pvcJson) + streamLinesBytes(pvJson)) / 2),
      loadAverageAtStart: load,
      medianCpuUsPerEvent: median(results.map((x) => x.cpuUsPerEvent)),
      medianMainThreadUsPerEvent: median(results.map((x) => x.mainThreadUsPerEvent ?? Number.NaN)),
      rounds: results,
    };
    console.log(JSON.stringify(result, null, 2));
    mkdirSync(dirname(out), { recursive: true });
    let all: Record<string, Record<string, unknown>> = {};
    try {
      all = JSON.parse(readFileSync(out, "utf8")) as typeof all;
    } catch {
      // first run
    }
    all[label] = { ...all[label], [runtime]: result };
    writeFileSync(out, `${JSON.stringify(all, null, 2)}\n`);
  } finally {
    child.stdin!.end();
    child.kill();
    await pki.cleanup();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Size of one event line, for scale. */
function streamLinesBytes(make: (i: number) => string): number {
  return Buffer.byteLength(
    `${JSON.stringify({ type: "MODIFIED", object: JSON.parse(make(0)) })}\n`,
  );
}

if (process.argv.includes("--serve")) await serve();
else await main();
