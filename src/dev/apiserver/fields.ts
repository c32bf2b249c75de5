/**
 * Values kube-apiserver's decoder rewrites or rejects before anything else happens to a request
 * body: resource quantities (`resource.Quantity`) come back in canonical form (`1024Mi` → `1Gi`,
 * `2000000000` → `2G`, `1.5Gi` → `1536Mi`), times (`metav1.Time`) in UTC with second
 * precision, micro-times (`metav1.MicroTime`, which must carry exactly six fractional digits) in
 * UTC with microsecond precision. A value that does not parse is an error whose message is the
 * Go decoder's; the caller turns it into a 400 BadRequest.
 *
 * Which fields hold such values is per kind: {@link FieldPaths}, applied by
 * {@link canonicalizeFields}.
 */

import {
  canonicalQuantity as canonicalQuantityText,
  QuantityError,
  quantityFormatMessage,
} from "../../provision/quantity.ts";

/** A value the Go decoder would reject; `message` is what it says. */
export class DecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DecodeError";
  }
}

// ---------------------------------------------------------------- quantities
// One resource.Quantity for the whole project: `provision/quantity.ts`.

export { quantityFormatMessage };

/** The canonical form of a quantity; a {@link DecodeError} for malformed input. */
export function canonicalQuantity(input: unknown): string {
  try {
    return canonicalQuantityText(input);
  } catch (err) {
    if (err instanceof QuantityError) throw new DecodeError(err.message);
    throw err;
  }
}

// ---------------------------------------------------------------- times

const layoutTime = "2006-01-02T15:04:05Z07:00";
const layoutMicro = "2006-01-02T15:04:05.000000Z07:00";

/** Go's time.quote. */
function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || c >= 0x80) {
      for (const b of new TextEncoder().encode(ch)) out += `\\x${b.toString(16).padStart(2, "0")}`;
    } else {
      if (ch === '"' || ch === "\\") out += "\\";
      out += ch;
    }
  }
  return `${out}"`;
}

function isDigit(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  return c >= 48 && c <= 57;
}

function daysIn(month: number, year: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * Parses a time with Go's `time.Parse` and the RFC 3339 layout (`micro`: metav1's RFC3339Micro,
 * exactly six fractional digits) and formats it as metav1 serialises: UTC, second or microsecond
 * precision. Throws a {@link DecodeError} carrying Go's parse error.
 */
export function canonicalTime(value: string, micro: boolean): string {
  const layout = micro ? layoutMicro : layoutTime;
  const fail = (layoutElem: string, valueElem: string) =>
    new DecodeError(
      `parsing time ${goQuote(value)} as ${goQuote(layout)}: cannot parse ${goQuote(valueElem)} as ${goQuote(layoutElem)}`,
    );
  const outOfRange = (what: string) =>
    new DecodeError(`parsing time ${goQuote(value)}: ${what} out of range`);
  let rest = value;
  const literal = (lit: string) => {
    if (!rest.startsWith(lit)) throw fail(lit, rest);
    rest = rest.slice(lit.length);
  };
  const getnum = (elem: string, fixed: boolean): number => {
    const hold = rest;
    if (!isDigit(rest, 0)) throw fail(elem, hold);
    if (!isDigit(rest, 1)) {
      if (fixed) throw fail(elem, hold);
      const n = Number(rest[0]);
      rest = rest.slice(1);
      return n;
    }
    const n = Number(rest.slice(0, 2));
    rest = rest.slice(2);
    return n;
  };

  if (rest.length < 4 || !isDigit(rest, 0) || !/^\d{4}$/.test(rest.slice(0, 4))) {
    throw fail("2006", rest);
  }
  const year = Number(rest.slice(0, 4));
  rest = rest.slice(4);
  literal("-");
  const month = getnum("01", true);
  if (month <= 0 || month > 12) throw outOfRange("month");
  literal("-");
  const day = getnum("02", true);
  literal("T");
  const hour = getnum("15", false);
  if (hour >= 24) throw outOfRange("hour");
  literal(":");
  const minute = getnum("04", true);
  if (minute >= 60) throw outOfRange("minute");
  literal(":");
  const second = getnum("05", true);
  if (second >= 60) throw outOfRange("second");
  let fraction = "";
  if (micro) {
    const hold = rest;
    if (
      rest.length < 7 ||
      (rest[0] !== "." && rest[0] !== ",") ||
      !/^\d{6}$/.test(rest.slice(1, 7))
    ) {
      throw fail(".000000", hold);
    }
    fraction = rest.slice(1, 7);
    rest = rest.slice(7);
  } else if (rest.length >= 2 && (rest[0] === "." || rest[0] === ",") && isDigit(rest, 1)) {
    // A fractional second the layout does not name is accepted (and dropped on output).
    let n = 2;
    while (n < rest.length && isDigit(rest, n)) n++;
    rest = rest.slice(n);
  }
  let offsetSeconds = 0;
  if (rest[0] === "Z") {
    rest = rest.slice(1);
  } else {
    const hold = rest;
    if (
      rest.length < 6 ||
      rest[3] !== ":" ||
      !/^\d\d$/.test(rest.slice(1, 3)) ||
      !/^\d\d$/.test(rest.slice(4, 6))
    ) {
      throw fail("Z07:00", hold);
    }
    const hh = Number(rest.slice(1, 3));
    const mm = Number(rest.slice(4, 6));
    if (rest[0] !== "+" && rest[0] !== "-") throw fail("Z07:00", hold);
    if (hh > 24) throw outOfRange("time zone offset hour");
    if (mm > 60) throw outOfRange("time zone offset minute");
    offsetSeconds = (hh * 60 + mm) * 60 * (rest[0] === "-" ? -1 : 1);
    rest = rest.slice(6);
  }
  if (rest !== "") {
    throw new DecodeError(`parsing time ${goQuote(value)}: extra text: ${goQuote(rest)}`);
  }
  if (day < 1 || day > daysIn(month, year)) throw outOfRange("day");

  const local = new Date(0);
  local.setUTCFullYear(year, month - 1, day);
  local.setUTCHours(hour, minute, second, 0);
  const t = new Date(local.getTime() - offsetSeconds * 1000);
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const date = `${pad(t.getUTCFullYear(), 4)}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
  const time = `${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}:${pad(t.getUTCSeconds())}`;
  return `${date}T${time}${micro ? `.${fraction}` : ""}Z`;
}

// ---------------------------------------------------------------- per-kind paths

/**
 * Where a kind keeps decoder-normalised values, as dotted paths; `*` stands for every key of a
 * map or every element of a list (`spec.capacity.*`, `status.conditions.*.lastTransitionTime`).
 */
export interface FieldPaths {
  quantities?: readonly string[];
  /** metav1.Time fields. */
  times?: readonly string[];
  /** metav1.MicroTime fields. */
  microTimes?: readonly string[];
  /**
   * Non-pointer metav1.Time / MicroTime fields: Go serialises them as `null` when unset (a
   * struct is never "empty" for `omitempty`), wherever their parent object exists.
   */
  nullTimes?: readonly string[];
}

function visit(
  obj: unknown,
  parts: readonly string[],
  fn: (parent: Record<string, unknown>, key: string) => void,
): void {
  if (parts.length === 0 || obj === null || typeof obj !== "object") return;
  const [head, ...rest] = parts;
  const container = obj as Record<string, unknown>;
  const keys = head === "*" ? Object.keys(container) : [head!];
  for (const k of keys) {
    if (rest.length === 0) fn(container, k);
    else visit(container[k], rest, fn);
  }
}

/**
 * Rewrites the quantities and times of `obj` (in place) into their canonical form, and sets the
 * unset non-pointer times to `null`. Throws a {@link DecodeError} for a value Kubernetes would
 * not decode.
 */
export function canonicalizeFields(obj: unknown, paths: FieldPaths): void {
  for (const p of paths.quantities ?? []) {
    visit(obj, p.split("."), (parent, key) => {
      if (!Object.hasOwn(parent, key)) return;
      parent[key] = canonicalQuantity(parent[key]);
    });
  }
  const times = (list: readonly string[] | undefined, micro: boolean) => {
    for (const p of list ?? []) {
      visit(obj, p.split("."), (parent, key) => {
        const v = parent[key];
        if (v === undefined || v === null) return;
        if (typeof v !== "string") {
          throw new DecodeError(
            `parsing time ${goQuote(JSON.stringify(v))} as ${goQuote(micro ? layoutMicro : layoutTime)}: cannot parse ${goQuote(JSON.stringify(v))} as "2006"`,
          );
        }
        parent[key] = canonicalTime(v, micro);
      });
    }
  };
  times(paths.times, false);
  times(paths.microTimes, true);
  for (const p of paths.nullTimes ?? []) {
    visit(obj, p.split("."), (parent, key) => {
      if (parent[key] === undefined) parent[key] = null;
    });
  }
}
