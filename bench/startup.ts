/**
 * Start-up of each way to run the provisioner, against the fake CSI driver:
 *
 * - the size of each artifact;
 * - the time from exec to the first Probe the driver receives (median, min and max of `runs`,
 *   after one unmeasured warm-up run, variants interleaved so drift hits them alike);
 * - the resident memory (VmRSS) of the process at the moment the driver receives
 *   ControllerGetCapabilities, the last call of the handshake (`probe` command).
 *
 * Variants: the compiled executable with and without --bytecode, `bun src/main.ts`,
 * `deno run -A src/main.ts`, Node on the bundle, Node on the sources with
 * --experimental-transform-types, and the `deno compile` executable when DENORT_BIN is set.
 * The executables and the bundle are built first by scripts/build.sh into a temporary
 * directory, from the current tree (the other architecture's executable too, for its size).
 *
 *   bun bench/startup.ts [runs]     (default 10 runs per variant)
 *
 * Writes bench/results/startup.json. Linux only (/proc). No test asserts these numbers.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { startFakeDriver } from "../test/support/fake-driver.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const BIN = join(ROOT, "node_modules/.bin");
const OUT = join(ROOT, "bench/results/startup.json");
const runs = Number(process.argv[2] ?? 10);
if (!Number.isInteger(runs) || runs < 1)
  throw new Error(`runs must be a positive integer, got ${process.argv[2]}`);

const HOST_TARGET = process.arch === "arm64" ? "linux-arm64" : "linux-x64";

interface Variant {
  readonly name: string;
  readonly file: string;
  readonly args: readonly string[];
}

interface Sample {
  readonly firstProbeMs: number;
  readonly exitMs: number;
  readonly rssKiB: number;
}

function sh(file: string, args: readonly string[], env?: Record<string, string>): string {
  return execFileSync(file, [...args], {
    encoding: "utf8",
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  }).trim();
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1
    ? (s[mid] as number)
    : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function vmRssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
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
  };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "csi-provisioner-bench-"));
  const driver = await startFakeDriver({ name: "bench.csi.example.com" });
  try {
    // Artifacts: with bytecode (the release default) and without, for the comparison.
    const withBytecode = join(work, "bytecode");
    const without = join(work, "plain");
    process.stderr.write("building artifacts...\n");
    sh("bash", [join(ROOT, "scripts/build.sh"), HOST_TARGET, "node"], { DIST_DIR: withBytecode });
    sh("bash", [join(ROOT, "scripts/build.sh"), HOST_TARGET], { DIST_DIR: without, BYTECODE: "0" });
    const exe = `csi-provisioner-${HOST_TARGET}`;
    // The other architecture's executable, for its size (skipped when Bun cannot get its runtime).
    const foreign = HOST_TARGET === "linux-x64" ? "linux-arm64" : "linux-x64";
    let foreignBuilt = true;
    try {
      sh("bash", [join(ROOT, "scripts/build.sh"), foreign], { DIST_DIR: withBytecode });
    } catch {
      foreignBuilt = false;
    }
    // The Deno executable, where a local denort makes deno compile possible.
    const denoExe = `csi-provisioner-deno-${HOST_TARGET}`;
    const denoBuilt = process.env.DENORT_BIN !== undefined;
    if (denoBuilt) sh("bash", [join(ROOT, "scripts/build.sh"), "deno"], { DIST_DIR: withBytecode });
    const sizes: Record<string, number> = {
      [`${exe} (bytecode)`]: statSync(join(withBytecode, exe)).size,
      [`${exe} (no bytecode)`]: statSync(join(without, exe)).size,
      "csi-provisioner.mjs": statSync(join(withBytecode, "csi-provisioner.mjs")).size,
    };
    if (foreignBuilt) {
      sizes[`csi-provisioner-${foreign} (bytecode)`] = statSync(
        join(withBytecode, `csi-provisioner-${foreign}`),
      ).size;
    }
    if (denoBuilt) sizes[denoExe] = statSync(join(withBytecode, denoExe)).size;

    const main = join(ROOT, "src/main.ts");
    const variants: Variant[] = [
      { name: "compiled executable (bytecode)", file: join(withBytecode, exe), args: [] },
      { name: "compiled executable (no bytecode)", file: join(without, exe), args: [] },
      { name: "bun src/main.ts", file: join(BIN, "bun"), args: [main] },
      { name: "deno run -A src/main.ts", file: join(BIN, "deno"), args: ["run", "-A", main] },
      {
        name: "node dist/csi-provisioner.mjs",
        file: join(BIN, "node"),
        args: [join(withBytecode, "csi-provisioner.mjs")],
      },
      {
        name: "node --experimental-transform-types src/main.ts",
        file: join(BIN, "node"),
        args: ["--experimental-transform-types", "--no-warnings", main],
      },
    ];
    if (denoBuilt)
      variants.push({
        name: "deno compile executable",
        file: join(withBytecode, denoExe),
        args: [],
      });

    // Timestamps the fake driver takes as calls arrive; RSS of the caller at the handshake's end.
    let firstProbeAt = 0;
    let rssAtCapabilities = 0;
    let currentPid = 0;
    driver.on("probe", (_req, ctx) => {
      if (firstProbeAt === 0) firstProbeAt = performance.now();
      return ctx.next();
    });
    driver.on("controllerGetCapabilities", (_req, ctx) => {
      if (rssAtCapabilities === 0 && currentPid !== 0) rssAtCapabilities = vmRssKiB(currentPid);
      return ctx.next();
    });

    const once = (v: Variant): Promise<Sample> => {
      firstProbeAt = 0;
      rssAtCapabilities = 0;
      return new Promise((resolve, reject) => {
        const started = performance.now();
        const child = spawn(
          v.file,
          [...v.args, "probe", `--csi-address=${driver.socketPath}`, "--timeout=30s"],
          {
            stdio: ["ignore", "ignore", "pipe"],
          },
        );
        currentPid = child.pid ?? 0;
        let stderr = "";
        child.stderr?.on("data", (d: Buffer) => {
          stderr += d.toString();
        });
        child.on("error", reject);
        child.on("exit", (code) => {
          const exitMs = performance.now() - started;
          currentPid = 0;
          if (code !== 0) reject(new Error(`${v.name} exited ${code}: ${stderr}`));
          else if (firstProbeAt === 0) reject(new Error(`${v.name}: the driver saw no Probe`));
          else resolve({ firstProbeMs: firstProbeAt - started, exitMs, rssKiB: rssAtCapabilities });
        });
      });
    };

    const samples = new Map<string, Sample[]>(variants.map((v) => [v.name, []]));
    for (const v of variants) await once(v); // warm-up: disk cache, Deno's transpile cache
    for (let i = 0; i < runs; i++) {
      for (const v of variants) samples.get(v.name)?.push(await once(v));
      process.stderr.write(`run ${i + 1}/${runs}\n`);
    }

    const results = variants.map((v) => {
      const s = samples.get(v.name) ?? [];
      const probe = s.map((x) => x.firstProbeMs);
      return {
        variant: v.name,
        runs: s.length,
        firstProbeMs: {
          median: round(median(probe)),
          min: round(Math.min(...probe)),
          max: round(Math.max(...probe)),
        },
        exitMs: { median: round(median(s.map((x) => x.exitMs))) },
        rssAtHandshakeMiB: { median: round(median(s.map((x) => x.rssKiB)) / 1024) },
      };
    });

    const report = {
      date: new Date().toISOString(),
      commit: sh("bash", [join(ROOT, "scripts/build.sh"), "--stamp"])
        .split("\n")[1]
        ?.replace("GIT_COMMIT=", ""),
      machine: machine(),
      runtimes: runtimes(),
      sizesBytes: sizes,
      sizesMiB: Object.fromEntries(
        Object.entries(sizes).map(([k, b]) => [k, round(b / 1048576, 2)]),
      ),
      method:
        "exec -> first Probe received by the fake CSI driver (in the benchmark process); RSS read from /proc/<pid>/status when ControllerGetCapabilities arrives; `probe` command; one warm-up run per variant, variants interleaved",
      results,
    };
    mkdirSync(dirname(OUT), { recursive: true });
    writeFileSync(OUT, `${JSON.stringify(report, null, 2)}\n`);
    for (const r of results) {
      process.stdout.write(
        `${r.variant.padEnd(50)} first Probe ${String(r.firstProbeMs.median).padStart(7)} ms (min ${r.firstProbeMs.min}, max ${r.firstProbeMs.max})  exit ${String(r.exitMs.median).padStart(7)} ms  RSS ${r.rssAtHandshakeMiB.median} MiB\n`,
      );
    }
    process.stdout.write(`wrote ${OUT}\n`);
  } finally {
    await driver.close();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
