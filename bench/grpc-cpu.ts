/**
 * CPU per CSI call of the gRPC client, measured in this process: N CreateVolume + DeleteVolume
 * pairs, C in parallel, against Kubernetes' CSI mock driver (another process), through
 *
 * - `own`: the sidecar's transport (`src/csi/grpc-transport.ts`), and
 * - `connect-node`: `@connectrpc/connect-node`'s gRPC transport on the same socket (what the
 *   sidecar used before), with the same interceptors and the same client code.
 *
 * Rounds alternate between the two. Writes JSON to `--out` (default
 * bench/results/grpc-cpu.json); asserts nothing.
 *
 *   node_modules/.bin/bun bench/grpc-cpu.ts --bin=<e2e bin dir> [--calls=5000] [--parallel=50]
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import os from "node:os";
import path from "node:path";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { type CsiDriver, connectDriver } from "../src/csi/client.ts";
import { createUnixGrpcTransport, type UnixGrpcTransport } from "../src/csi/grpc-transport.ts";
import { systemClock } from "../src/util/clock.ts";
import { createLogger } from "../src/util/log.ts";

const args = new Map(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, "").split("=");
    return [k!, v ?? "true"];
  }),
);
const binDir = args.get("bin") ?? process.env.E2E_BIN_DIR;
if (!binDir || !existsSync(path.join(binDir, "csi-mock-driver"))) {
  throw new Error("--bin=<e2e bin dir with csi-mock-driver> is required");
}
const calls = Number(args.get("calls") ?? 5000);
const parallel = Number(args.get("parallel") ?? 50);
const rounds = Number(args.get("rounds") ?? 3);
const out = args.get("out") ?? "bench/results/grpc-cpu.json";

function connectNodeTransport(socketPath: string, interceptors: never[]): UnixGrpcTransport {
  const sessionManager = new Http2SessionManager(
    "http://localhost",
    { idleConnectionTimeoutMs: 2 ** 31 },
    { createConnection: () => netConnect(socketPath) },
  );
  return {
    transport: createGrpcTransport({ baseUrl: "http://localhost", sessionManager, interceptors }),
    async connect() {
      if ((await sessionManager.connect()) === "error") throw sessionManager.error();
    },
    onConnectionLost() {},
    lost: false,
    close: () => sessionManager.abort(),
  };
}

async function run(driver: CsiDriver, n: number): Promise<number> {
  let next = 0;
  const before = process.cpuUsage();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      for (let i = next++; i < n; i = next++) {
        const name = `pvc-${i}`;
        const res = await driver.createVolume({
          name,
          capacityRange: { requiredBytes: 1n << 30n },
          volumeCapabilities: [
            { accessType: { case: "mount", value: {} }, accessMode: { mode: 1 } },
          ],
          parameters: { a: "b" },
        });
        await driver.deleteVolume({ volumeId: res.volume!.volumeId });
      }
    }),
  );
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000 / n;
}

const dir = await mkdtemp(path.join(os.tmpdir(), "grpc-cpu-"));
const socketPath = path.join(dir, "csi.sock");
const child = spawn(
  path.join(binDir, "csi-mock-driver"),
  [`--endpoint=unix://${socketPath}`, "--nodeid=n", "--drivername=bench.csi.k8s.io"],
  { stdio: "ignore" },
);
try {
  const logger = createLogger({ write: () => {}, clock: systemClock });
  const drivers: Record<string, CsiDriver> = {};
  for (const kind of ["own", "connect-node"] as const) {
    drivers[kind] = await connectDriver({
      socketPath,
      clock: systemClock,
      logger,
      onCall: () => {},
      createTransport:
        kind === "own"
          ? (p, interceptors) => createUnixGrpcTransport({ socketPath: p, interceptors })
          : (p, interceptors) => connectNodeTransport(p, interceptors as never[]),
    });
  }
  // Warm-up: JIT both paths.
  for (const d of Object.values(drivers)) await run(d, 1000);
  const results: Record<string, number[]> = { own: [], "connect-node": [] };
  for (let r = 0; r < rounds; r++) {
    for (const kind of ["own", "connect-node"] as const) {
      results[kind]!.push(await run(drivers[kind]!, calls));
    }
  }
  for (const d of Object.values(drivers)) d.close();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const report = {
    date: new Date().toISOString(),
    runtime: process.versions.bun ? `bun ${process.versions.bun}` : `node ${process.version}`,
    calls,
    parallel,
    rounds,
    cpuMsPerCreateDeletePair: results,
    median: { own: median(results.own!), "connect-node": median(results["connect-node"]!) },
  };
  await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(JSON.stringify(report.median));
} finally {
  child.kill();
  await rm(dir, { recursive: true, force: true });
}
