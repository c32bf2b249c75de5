/**
 * Structured logging in the two formats upstream's `--logging-format` offers: klog-style text
 * (`I1126 07:54:22.123456] "Message" key="value"`) and JSON (`{"ts":…,"v":0,"msg":…}`).
 * Verbosity follows `-v`: `log.v(5).info(…)` prints only with `-v=5` or more.
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
}

type Severity = "I" | "W" | "E";

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

function klogTime(ms: number): string {
  const d = new Date(ms);
  return (
    `${pad(d.getUTCMonth() + 1, 2)}${pad(d.getUTCDate(), 2)} ` +
    `${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.` +
    `${pad(d.getUTCMilliseconds(), 3)}000`
  );
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
  const verbosity = options.verbosity ?? 0;
  const format = options.format ?? "text";

  const out = (severity: Severity) =>
    severity === "I" ? options.write : (options.writeError ?? options.write);
  const emit = (severity: Severity, v: number, msg: string, fields: Fields | undefined) => {
    const all = { ...base, ...fields };
    const now = options.clock.now();
    if (format === "json") {
      const rec: Fields = { ts: now / 1000, v, msg };
      if (severity === "E") rec.err = all.err !== undefined ? jsonSafe(all.err) : undefined;
      for (const [k, val] of Object.entries(all)) {
        if (k === "err" && severity === "E") continue;
        rec[k] = val;
      }
      if (severity === "W") rec.severity = "warning";
      out(severity)(JSON.stringify(rec, (_k, x) => jsonSafe(x)));
      return;
    }
    let line = `${severity}${klogTime(now)}] ${JSON.stringify(msg)}`;
    for (const [k, val] of Object.entries(all)) {
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
    with: (fields) => createLogger(options, { ...base, ...fields }),
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
};

/** A logger that keeps lines in memory, for tests that assert on logging. */
export function memoryLogger(clock: Clock, verbosity = 10): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ write: (l) => lines.push(l), clock, verbosity });
  return Object.assign(logger, { lines });
}
