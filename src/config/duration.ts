/**
 * Go durations, as upstream's flags take them: `time.ParseDuration` syntax and `Duration.String()`
 * output, so that `--timeout=150s` means what it means to the Go sidecar and `--help` shows
 * defaults the way pflag does (`10s`, `5m0s`, `1h0m0s`).
 *
 * Values are carried as milliseconds (a `number`; sub-millisecond durations are fractions). The
 * parser works in integer nanoseconds internally, like Go, so range errors match Go's.
 */

/** Nanoseconds per unit, as `time.ParseDuration` knows them. */
const UNITS: ReadonlyMap<string, bigint> = new Map([
  ["ns", 1n],
  ["us", 1_000n],
  ["\u00b5s", 1_000n], // U+00B5 micro sign
  ["\u03bcs", 1_000n], // U+03BC Greek small letter mu
  ["ms", 1_000_000n],
  ["s", 1_000_000_000n],
  ["m", 60_000_000_000n],
  ["h", 3_600_000_000_000n],
]);

/** 1 << 63: the magnitude limit Go checks against. */
const LIMIT = 1n << 63n;

export type DurationResult =
  | { readonly ok: true; readonly ms: number; readonly ns: bigint }
  | { readonly ok: false; readonly error: string };

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}

const SYNTAX_HINT = "not a duration (write a number with a unit, e.g. 150s, 1m30s, 500ms)";

/**
 * Parses a Go duration string: an optional sign and a sequence of decimal numbers, each with an
 * optional fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `300ms`, `-1.5h`,
 * `2h45m`. A bare `0` is allowed; any other bare number is an error (missing unit), as in Go.
 */
export function tryParseDuration(text: string): DurationResult {
  let s = text;
  let neg = false;
  if (s.startsWith("-") || s.startsWith("+")) {
    neg = s[0] === "-";
    s = s.slice(1);
  }
  if (s === "0") return { ok: true, ms: 0, ns: 0n };
  if (s === "") return { ok: false, error: SYNTAX_HINT };
  const outOfRange = { ok: false, error: "out of range (more than about 292 years)" } as const;

  let total = 0n;
  let i = 0;
  while (i < s.length) {
    if (!(s[i] === "." || isDigit(s[i]))) return { ok: false, error: SYNTAX_HINT };
    // Integer part.
    const intStart = i;
    let whole = 0n;
    while (isDigit(s[i])) {
      whole = whole * 10n + BigInt(s.charCodeAt(i) - 48);
      if (whole > LIMIT) return outOfRange;
      i++;
    }
    const hasInt = i > intStart;
    // Fraction: digits past what fits are consumed but ignored, as Go does.
    let frac = 0n;
    let scale = 1;
    let hasFrac = false;
    if (s[i] === ".") {
      i++;
      const fracStart = i;
      let overflow = false;
      while (isDigit(s[i])) {
        if (!overflow) {
          const next = frac * 10n + BigInt(s.charCodeAt(i) - 48);
          if (frac > (LIMIT - 1n) / 10n || next > LIMIT) {
            overflow = true;
          } else {
            frac = next;
            scale *= 10;
          }
        }
        i++;
      }
      hasFrac = i > fracStart;
    }
    if (!hasInt && !hasFrac) return { ok: false, error: SYNTAX_HINT };
    // Unit: everything up to the next digit or dot.
    const unitStart = i;
    while (i < s.length && s[i] !== "." && !isDigit(s[i])) i++;
    if (i === unitStart) {
      return { ok: false, error: "missing unit (ns, us, ms, s, m or h), e.g. 150s" };
    }
    const unitText = s.slice(unitStart, i);
    const unit = UNITS.get(unitText);
    if (unit === undefined) {
      return {
        ok: false,
        error: `unknown unit ${JSON.stringify(unitText)} (use ns, us, ms, s, m or h)`,
      };
    }
    if (whole > LIMIT / unit) return outOfRange;
    let part = whole * unit;
    if (frac > 0n) {
      // Same float64 arithmetic as Go: float64(f) * (float64(unit) / scale), truncated.
      part += BigInt(Math.trunc(Number(frac) * (Number(unit) / scale)));
      if (part > LIMIT) return outOfRange;
    }
    total += part;
    if (total > LIMIT) return outOfRange;
  }
  if (!neg && total > LIMIT - 1n) return outOfRange;
  const ns = neg ? -total : total;
  return { ok: true, ns, ms: Number(ns) / 1e6 };
}

/** Like {@link tryParseDuration}, returning milliseconds; throws a `RangeError` on bad input. */
export function parseDuration(text: string): number {
  const r = tryParseDuration(text);
  if (!r.ok) throw new RangeError(`Invalid duration ${JSON.stringify(text)}: ${r.error}`);
  return r.ms;
}

/** Digits of `v / 10^prec` after the point, trailing zeros dropped (Go's `fmtFrac`). */
function fraction(v: bigint, prec: number): { rest: bigint; text: string } {
  let digits = "";
  let print = false;
  let rest = v;
  for (let i = 0; i < prec; i++) {
    const digit = rest % 10n;
    print = print || digit !== 0n;
    if (print) digits = digit.toString() + digits;
    rest /= 10n;
  }
  return { rest, text: print ? `.${digits}` : "" };
}

/** Formats nanoseconds like Go's `time.Duration.String()`. */
export function formatDurationNs(ns: bigint): string {
  if (ns === 0n) return "0s";
  const neg = ns < 0n;
  let u = neg ? -ns : ns;
  let out: string;
  if (u < 1_000_000_000n) {
    // Below one second: a single smaller unit with a fraction (1.5ms, 500µs, 100ns).
    let prec: number;
    let unit: string;
    if (u < 1_000n) {
      prec = 0;
      unit = "ns";
    } else if (u < 1_000_000n) {
      prec = 3;
      unit = "\u00b5s";
    } else {
      prec = 6;
      unit = "ms";
    }
    const f = fraction(u, prec);
    out = `${f.rest}${f.text}${unit}`;
  } else {
    const f = fraction(u, 9);
    u = f.rest;
    out = `${u % 60n}${f.text}s`;
    u /= 60n;
    if (u > 0n) {
      out = `${u % 60n}m${out}`;
      u /= 60n;
      if (u > 0n) out = `${u}h${out}`;
    }
  }
  return neg ? `-${out}` : out;
}

/**
 * Formats milliseconds like Go's `time.Duration.String()`: `10s`, `5m0s`, `1h0m0s`, `1.5s`,
 * `500ms`. The value is rounded to whole nanoseconds.
 */
export function formatDuration(ms: number): string {
  return formatDurationNs(BigInt(Math.round(ms * 1e6)));
}
