/**
 * The process as a dependency: arguments, environment, standard streams, signals and exit.
 * Everything here goes through `node:*` modules, which Bun, Deno and Node all provide.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname as osHostname } from "node:os";
import process from "node:process";

export type RuntimeName = "bun" | "deno" | "node";

/** Which JavaScript runtime runs this process. */
export function runtimeName(): RuntimeName {
  const g = globalThis as { Bun?: unknown; Deno?: unknown };
  if (g.Bun !== undefined) return "bun";
  if (g.Deno !== undefined) return "deno";
  return "node";
}

/** Runtime name and version, e.g. `bun 1.4.5`. */
export function runtimeVersion(): string {
  const name = runtimeName();
  const versions = process.versions as Record<string, string | undefined>;
  return `${name} ${versions[name] ?? process.version}`;
}

/** Command-line arguments after the program (and script) name. */
export function argv(): string[] {
  return process.argv.slice(2);
}

/** A read-only snapshot of the environment. */
export function env(): Readonly<Record<string, string | undefined>> {
  return { ...process.env };
}

/**
 * Output is gathered per turn of the event loop and written once (a burst logs hundreds of lines;
 * one write each cost ~15 % of the sidecar's CPU). It is written before `exit()` and at process
 * exit, and at once when 64 KiB are waiting.
 */
const pending = { out: "", err: "" };
let scheduled = false;

function flushOutput(): void {
  scheduled = false;
  if (pending.out !== "") {
    const t = pending.out;
    pending.out = "";
    process.stdout.write(t);
  }
  if (pending.err !== "") {
    const t = pending.err;
    pending.err = "";
    process.stderr.write(t);
  }
}

function queueOutput(stream: "out" | "err", text: string): void {
  pending[stream] += text;
  if (pending[stream].length > 65_536) flushOutput();
  else if (!scheduled) {
    scheduled = true;
    setImmediate(flushOutput);
  }
}

process.on("exit", flushOutput);

export function writeStdout(text: string): void {
  queueOutput("out", text);
}

export function writeStderr(text: string): void {
  queueOutput("err", text);
}

/** Sets the exit code and ends the process once stdout and stderr have drained. */
export function exit(code: number): never {
  flushOutput();
  process.exitCode = code;
  process.exit(code);
}

export function hostname(): string {
  return osHostname();
}

/**
 * Calls `handler` on SIGTERM or SIGINT. Returns a function that removes the handlers.
 * A second signal while the first drains exits at once with status 1.
 */
export function onTerminationSignal(handler: (signal: "SIGTERM" | "SIGINT") => void): () => void {
  let seen = false;
  const make = (sig: "SIGTERM" | "SIGINT") => () => {
    if (seen) exit(1);
    seen = true;
    handler(sig);
  };
  const term = make("SIGTERM");
  const int = make("SIGINT");
  process.on("SIGTERM", term);
  process.on("SIGINT", int);
  return () => {
    process.off("SIGTERM", term);
    process.off("SIGINT", int);
  };
}

export function readTextFile(path: string): string {
  return readFileSync(path, "utf8");
}

/**
 * Writes `message` to Kubernetes' termination-message file when it is writable, so that
 * `kubectl describe pod` shows why the container ended. Failure to write is ignored.
 */
export function writeTerminationMessage(message: string, path = "/dev/termination-log"): boolean {
  try {
    writeFileSync(path, message);
    return true;
  } catch {
    return false;
  }
}

/** Reads `/proc/self/<file>`; `undefined` where there is no procfs. */
function procSelf(file: string): string | undefined {
  try {
    return readFileSync(`/proc/self/${file}`, "utf8");
  } catch {
    return undefined;
  }
}

/** A soft limit from `/proc/self/limits` (`unlimited` as Go's collector reports it: -1 wraps). */
function procLimit(name: string): number | undefined {
  const text = procSelf("limits");
  const line = text?.split("\n").find((l) => l.startsWith(name));
  if (line === undefined) return undefined;
  const soft = line.slice(name.length).trim().split(/\s+/)[0];
  if (soft === "unlimited") return 18446744073709552000;
  const n = Number(soft);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * The sum over every interface of one `/proc/self/net/dev` column (0: bytes received, 8: bytes
 * sent), as Go's process collector reports it.
 */
function netDevTotal(column: number): number | undefined {
  const text = procSelf("net/dev");
  if (text === undefined) return undefined;
  let total = 0;
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const value = Number(
      line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)[column],
    );
    if (Number.isFinite(value)) total += value;
  }
  return total;
}

/** Resident memory, heap and CPU time of this process, for the `process_*` metrics. */
export function processStats(): {
  residentBytes(): number;
  heapBytes(): number;
  cpuSeconds(): number;
  startTimeSeconds: number;
  openFds(): number | undefined;
  maxFds(): number | undefined;
  virtualMemoryBytes(): number | undefined;
  virtualMemoryMaxBytes(): number | undefined;
  networkReceiveBytes(): number | undefined;
  networkTransmitBytes(): number | undefined;
} {
  const start = Date.now() / 1000 - process.uptime();
  return {
    openFds: () => {
      try {
        return readdirSync("/proc/self/fd").length;
      } catch {
        return undefined;
      }
    },
    maxFds: () => procLimit("Max open files"),
    virtualMemoryBytes: () => {
      // /proc/self/stat: the command name is in parentheses and may hold spaces; vsize is the
      // 23rd field, the 21st after the closing parenthesis.
      const stat = procSelf("stat");
      if (stat === undefined) return undefined;
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const vsize = Number(fields[20]);
      return Number.isFinite(vsize) ? vsize : undefined;
    },
    virtualMemoryMaxBytes: () => procLimit("Max address space"),
    networkReceiveBytes: () => netDevTotal(0),
    networkTransmitBytes: () => netDevTotal(8),
    residentBytes: () => process.memoryUsage.rss(),
    heapBytes: () => process.memoryUsage().heapUsed,
    cpuSeconds: () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    },
    startTimeSeconds: start,
  };
}

/** This process' id (klog's thread id field). */
export function processId(): number {
  return process.pid;
}

/**
 * Wall-clock milliseconds since the epoch with sub-millisecond precision: the time origin of this
 * process plus the monotonic clock, so log lines carry real microseconds.
 */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}
