/**
 * Structured logging in the two formats upstream's `--logging-format` offers, shaped so that
 * tools written for klog and component-base read them:
 *
 * - text, klog's header then the structured message:
 *   `I1126 07:54:22.123456    4711 claims.ts:1] "Message" key="value"`
 *   (severity, month and day, time with microseconds, the thread id — the process id, as klog
 *   writes it, padded to 7 — then `file:line`). There is no Go source file here: the field holds
 *   the stable name of the logging component (`logger.named("claims")` -> `claims.ts`) and line 1,
 *   klog's own line when the caller is unknown, so klog's parsers find the field they expect.
 * - JSON, component-base's shape: `{"ts":<float ms since the epoch>,"caller":"claims.ts:1",
 *   "msg":…,"v":0,…key/values}`; errors carry no `v` and put their error under `err`.
 *
 * Verbosity follows `-v`: `log.v(5).info(…)` prints only with `-v=5` or more. Microseconds come
 * from the injected clock: `Clock.now()` may return fractional milliseconds (the process' clock
 * is `performance.timeOrigin + performance.now()`, see src/runtime/process.ts).
 */
import type { Clock } from "./clock.ts";

export type Fields = Record<string, unknown>;
export type LogFormat = "text" | "json";

export interface VerboseLogger {
  readonly enabled: boolean;
  info(msg: string, fields?: Fields): void;
}

export interface Logger {
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** A logger that prints at info severity only when the verbosity is at least `level`. */
  v(level: number): VerboseLogger;
  /** A logger that adds `fields` to every line. */
  with(fields: Fields): Logger;
  /** A logger whose lines name `component` as their source (`claims` -> `claims.ts:1`). */
  named(component: string): Logger;
}

export interface LoggerOptions {
  /** Receives one formatted line, without the trailing newline. */
  write: (line: string) => void;
  /** Receives warning and error lines instead of `write` (split streams); default `write`. */
  writeError?: (line: string) => void;
  clock: Clock;
  /** `-v`; default 0. */
  verbosity?: number;
  /** Default `text`. */
  format?: LogFormat;
  /** klog's thread id: the process id; default 0. */
  pid?: number;
  /** Source of lines from loggers not {@link Logger.named}; default `csi-provisioner`. */
  component?: string;
}

type Severity = "I" | "W" | "E";

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/** klog's `mmdd hh:mm:ss.uuuuuu`, UTC, from fractional milliseconds since the epoch. */
export function klogTime(ms: number): string {
  // Truncated, as klog does with nanoseconds.
  const micros = Math.floor(ms * 1000);
  const d = new Date(Math.floor(micros / 1000));
  const frac = ((micros % 1_000_000) + 1_000_000) % 1_000_000;
  return (
    `${pad(d.getUTCMonth() + 1, 2)}${pad(d.getUTCDate(), 2)} ` +
    `${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.` +
    pad(frac, 6)
  );
}

/** klog's header up to and including `] `. */
export function klogHeader(severity: string, ms: number, pid: number, source: string): string {
  return `${severity}${klogTime(ms)} ${String(pid).padStart(7)} ${source}] `;
}

/** `claims` -> `claims.ts:1`. */
function sourceOf(component: string): string {
  return `${component}.ts:1`;
}

function jsonSafe(value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return value.message;
  return value;
}

function textValue(value: unknown): string {
  const v = jsonSafe(value);
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === undefined) {
    return String(v);
  }
  try {
    return JSON.stringify(v, (_k, x) => jsonSafe(x));
  } catch {
    return JSON.stringify(String(v));
  }
}

/** Builds a {@link Logger}. */
export function createLogger(options: LoggerOptions, base: Fields = {}): Logger {
  return build(options, base, sourceOf(options.component ?? "csi-provisioner"));
}

function build(options: LoggerOptions, base: Fields, source: string): Logger {
  const verbosity = options.verbosity ?? 0;
  const format = options.format ?? "text";
  const pid = options.pid ?? 0;

  const out = (severity: Severity) =>
    severity === "I" ? options.write : (options.writeError ?? options.write);
  const emit = (severity: Severity, v: number, msg: string, fields: Fields | undefined) => {
    const { err, ...rest } = { ...base, ...fields };
    const now = options.clock.now();
    if (format === "json") {
      // component-base: ts, caller, msg, then v for info (warnings are info lines in klog's
      // logr bridge) or err for errors, then the key/values.
      const rec: Fields = { ts: now, caller: source, msg };
      if (severity === "E") {
        if (err !== undefined) rec.err = jsonSafe(err);
      } else {
        rec.v = v;
        if (err !== undefined) rec.err = jsonSafe(err);
      }
      for (const [k, val] of Object.entries(rest)) rec[k] = val;
      out(severity)(JSON.stringify(rec, (_k, x) => jsonSafe(x)));
      return;
    }
    let line = `${klogHeader(severity, now, pid, source)}${JSON.stringify(msg)}`;
    if (err !== undefined) line += ` err=${textValue(err)}`;
    for (const [k, val] of Object.entries(rest)) {
      if (val === undefined) continue;
      line += ` ${k}=${textValue(val)}`;
    }
    out(severity)(line);
  };

  const logger: Logger = {
    info: (msg, fields) => emit("I", 0, msg, fields),
    warn: (msg, fields) => emit("W", 0, msg, fields),
    error: (msg, fields) => emit("E", 0, msg, fields),
    v(level) {
      const enabled = verbosity >= level;
      return {
        enabled,
        info: (msg, fields) => {
          if (enabled) emit("I", level, msg, fields);
        },
      };
    },
    with: (fields) => build(options, { ...base, ...fields }, source),
    named: (component) => build(options, base, sourceOf(component)),
  };
  return logger;
}

/** A logger that drops everything (tests that do not look at logs). */
export const nullLogger: Logger = {
  info() {},
  warn() {},
  error() {},
  v: () => ({ enabled: false, info() {} }),
  with: () => nullLogger,
  named: () => nullLogger,
};

/** A logger that keeps lines in memory, for tests that assert on logging. */
export function memoryLogger(clock: Clock, verbosity = 10): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ write: (l) => lines.push(l), clock, verbosity });
  return Object.assign(logger, { lines });
}
