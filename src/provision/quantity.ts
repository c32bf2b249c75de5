/**
 * Kubernetes `resource.Quantity`, the project's one implementation: storage sizes in bigint bytes
 * for the provisioner ({@link parseQuantity}, {@link formatBinarySI}), and the canonical form
 * kube-apiserver's decoder gives a quantity, for the embedded API server
 * ({@link canonicalQuantity}). Both read suffixes through {@link parseSuffix}.
 *
 * Parsing follows the quantity grammar of `k8s.io/apimachinery/pkg/api/resource`:
 *
 * ```
 * <quantity>  ::= <sign>? <number> <suffix>?
 * <number>    ::= <digits> | <digits>. | <digits>.<digits> | .<digits>
 * <suffix>    ::= Ki | Mi | Gi | Ti | Pi | Ei          (powers of 1024)
 *               | n | u | m | k | M | G | T | P | E   (powers of 1000)
 *               | (e|E) <sign>? <digits>              (powers of 10)
 * ```
 *
 * A fractional byte count is rounded up, away from zero, as `Quantity.Value()` does (`100m` is
 * 1 byte, `1.5` is 2). Anything else is an error: we are stricter than apimachinery on a few
 * degenerate inputs it reads as zero (`"-"`, `"+"`, `"."`).
 *
 * Formatting reproduces `resource.NewQuantity(bytes, resource.BinarySI).String()`, the string
 * upstream writes into `PV.spec.capacity.storage`.
 */

/** Decimal SI suffixes: the power of 10 each stands for. */
const DECIMAL_SUFFIXES: Record<string, number> = {
  n: -9,
  u: -6,
  m: -3,
  "": 0,
  k: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18,
};
/** Binary SI suffixes: the power of 2 each stands for. */
const BINARY_SUFFIXES: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };

export type QuantityFormat = "DecimalSI" | "BinarySI" | "DecimalExponent";

/**
 * What a suffix means: a power of 2 (BinarySI) or of 10 (DecimalSI, DecimalExponent `e<n>`);
 * undefined for anything else.
 */
export function parseSuffix(
  suffix: string,
): { format: QuantityFormat; exponent: number } | undefined {
  if (Object.hasOwn(DECIMAL_SUFFIXES, suffix)) {
    return { format: "DecimalSI", exponent: DECIMAL_SUFFIXES[suffix]! };
  }
  if (Object.hasOwn(BINARY_SUFFIXES, suffix)) {
    return { format: "BinarySI", exponent: BINARY_SUFFIXES[suffix]! };
  }
  if (/^[eE][-+]?\d+$/.test(suffix))
    return { format: "DecimalExponent", exponent: Number(suffix.slice(1)) };
  return undefined;
}

function pow(base: bigint, n: number): bigint {
  let r = 1n;
  for (let i = 0; i < n; i++) r *= base;
  return r;
}

/** The largest exponent (`1e100`) accepted; larger ones are rejected as out of range. */
const MAX_EXPONENT = 100;

const QUANTITY_RE = /^([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|n|u|m|k|M|G|T|P|E)?$/;

/** The largest value of a signed 64-bit integer (int64), the range of CSI byte counts. */
export const INT64_MAX = (1n << 63n) - 1n;

function ceilDiv(numerator: bigint, denominator: bigint): bigint {
  // Both positive here: round up.
  return (numerator + denominator - 1n) / denominator;
}

/**
 * Parses a quantity string into bytes, rounding a fraction up (away from zero).
 * Throws an `Error` naming the string when it is not a quantity.
 */
export function parseQuantity(text: string): bigint {
  const match = QUANTITY_RE.exec(text);
  if (!match) throw new Error(`Invalid quantity ${JSON.stringify(text)}: not a number with a unit`);
  const negative = match[1] === "-";
  const number = match[2]!;
  const suffix = match[3] ?? "";
  const dot = number.indexOf(".");
  const whole = dot < 0 ? number : number.slice(0, dot);
  const fraction = dot < 0 ? "" : number.slice(dot + 1);
  // value = mantissa * 10^-fraction.length * multiplier
  let mantissa = BigInt((whole || "0") + fraction);
  let numerator = mantissa;
  let denominator = 10n ** BigInt(fraction.length);
  const unit = parseSuffix(suffix)!; // the pattern admits known suffixes only
  if (unit.format === "BinarySI") {
    numerator *= 1n << BigInt(unit.exponent);
  } else {
    const exponent = unit.exponent;
    if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > MAX_EXPONENT) {
      throw new Error(`Invalid quantity ${JSON.stringify(text)}: exponent out of range`);
    }
    if (exponent >= 0) numerator *= 10n ** BigInt(exponent);
    else denominator *= 10n ** BigInt(-exponent);
  }
  mantissa = ceilDiv(numerator, denominator);
  return negative ? -mantissa : mantissa;
}

/** Divides out `factor` as long as it divides evenly; returns the rest and the count. */
function removeFactors(value: bigint, factor: bigint, max: number): [bigint, number] {
  let times = 0;
  while (value !== 0n && times < max && value % factor === 0n) {
    value /= factor;
    times++;
  }
  return [value, times];
}

const DECIMAL_SI_BY_EXPONENT: Record<number, string> = {
  0: "",
  3: "k",
  6: "M",
  9: "G",
  12: "T",
  15: "P",
  18: "E",
};
const BINARY_SI_BY_EXPONENT = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/**
 * Formats a byte count as `resource.NewQuantity(bytes, BinarySI).String()` does:
 * - `0` is `"0"`;
 * - a value strictly between -1024 and 1024 is written DecimalSI (so `1000` is `"1k"`);
 * - otherwise the largest exact power-of-1024 suffix (`1073741824` is `"1Gi"`, `1536` stays
 *   `"1536"`, `1500000000` stays `"1500000000"`).
 */
export function formatBinarySI(bytes: bigint): string {
  if (bytes === 0n) return "0";
  if (bytes > -1024n && bytes < 1024n) {
    // DecimalSI: exponent a multiple of 3, mantissa without trailing factors of 1000.
    const [rest, times] = removeFactors(bytes, 1000n, 6);
    return `${rest}${DECIMAL_SI_BY_EXPONENT[times * 3]}`;
  }
  const [rest, times] = removeFactors(bytes, 1024n, BINARY_SI_BY_EXPONENT.length - 1);
  return `${rest}${BINARY_SI_BY_EXPONENT[times]}`;
}

// ---------------------------------------------------------------------------------------------
// The canonical form (kube-apiserver's decoder)

/** A quantity the Go decoder would reject; `message` is what it says. */
export class QuantityError extends Error {
  override name = "QuantityError";
}

const quantityPattern = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";
const quantityRe = new RegExp(quantityPattern);
/** resource.ErrFormatWrong. */
export const quantityFormatMessage = `quantities must match the regular expression '${quantityPattern}'`;
/** resource.ErrSuffix. */
const quantitySuffixMessage = "unable to parse quantity's suffix";

const decimalSuffixByExponent = new Map(Object.entries(DECIMAL_SUFFIXES).map(([s, e]) => [e, s]));
const binarySuffixByExponent = new Map(Object.entries(BINARY_SUFFIXES).map(([s, e]) => [e, s]));

/** The canonical string of a value `sign · m · 10^e` (m ≥ 0) in a format. */
function canonicalString(negative: boolean, m: bigint, e: number, format: QuantityFormat): string {
  if (m === 0n) return "0";
  const sign = negative ? "-" : "";
  let fmt = format;
  if (fmt === "BinarySI") {
    // Below 1024, or not a whole number: shown in decimal (no rounding, no confusion).
    const whole = e >= 0 || m % pow(10n, -e) === 0n;
    const lt1024 = e >= 0 ? m * pow(10n, e) < 1024n : m < 1024n * pow(10n, -e);
    if (lt1024 || !whole) fmt = "DecimalSI";
    else {
      let v = e >= 0 ? m * pow(10n, e) : m / pow(10n, -e);
      let exp = 0;
      while (v % 1024n === 0n) {
        v /= 1024n;
        exp += 10;
      }
      return `${sign}${v}${binarySuffixByExponent.get(exp) ?? ""}`;
    }
  }
  let mm = m;
  let ee = e;
  while (mm % 10n === 0n) {
    mm /= 10n;
    ee++;
  }
  while (ee % 3 !== 0) {
    mm *= 10n;
    ee--;
  }
  const suffix =
    fmt === "DecimalExponent"
      ? ee === 0
        ? ""
        : `e${ee}`
      : (decimalSuffixByExponent.get(ee) ?? "");
  return `${sign}${mm}${suffix}`;
}

/**
 * The canonical form of a quantity, as `resource.Quantity` serialises after parsing it: the
 * input itself when the parser keeps it (already canonical), else the value re-written with the
 * largest exact suffix. Throws a {@link QuantityError} for malformed input.
 */
export function canonicalQuantity(input: unknown): string {
  // null decodes to the zero quantity; a JSON number is read as its text.
  if (input === null) return "0";
  if (typeof input !== "string" && typeof input !== "number") {
    throw new QuantityError(quantityFormatMessage);
  }
  const str = String(input).trim();
  if (str === "") throw new QuantityError(quantityFormatMessage);
  if (str === "0") return "0";
  const m = quantityRe.exec(str);
  if (!m) throw new QuantityError(quantityFormatMessage);
  const numberPart = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(m[1]!);
  if (!numberPart || `${numberPart[2]}${numberPart[3] ?? ""}` === "") {
    throw new QuantityError(quantityFormatMessage);
  }
  const negative = numberPart[1] === "-";
  const num = numberPart[2]!;
  const denom = numberPart[3] ?? "";
  const suffix = m[2]!;
  const unit = parseSuffix(suffix);
  if (!unit) throw new QuantityError(quantitySuffixMessage);
  let format = unit.format;
  const exponent = unit.exponent;

  // The parser keeps the input string when it is already canonical (its int64 fast path).
  const shifted = num + denom;
  if (format === "BinarySI") {
    const precision = 15 - num.length - Math.trunc((exponent * 3) / 10) - 1;
    if (denom === "" && precision >= 0 && exponent % 10 === 0 && (BigInt(num) & 7n) !== 0n) {
      return str;
    }
  } else {
    const precision = 18 - shifted.length;
    const scale = exponent - denom.length;
    if (
      precision >= 0 &&
      scale >= -9 &&
      scale % 3 === 0 &&
      !shifted.endsWith("000") &&
      shifted[0] !== "0"
    ) {
      return str;
    }
  }

  let mant = BigInt(shifted);
  let e = -denom.length;
  if (format === "BinarySI") mant *= 1n << BigInt(exponent);
  else e += exponent;
  // Non-zero values are rounded up to the nano scale.
  if (e < -9 && mant !== 0n) {
    const div = pow(10n, -9 - e);
    mant = (mant + div - 1n) / div;
    e = -9;
  }
  if (format === "BinarySI" && mant !== 0n) {
    const ltOne = e >= 0 ? false : mant < pow(10n, -e);
    if (ltOne) format = "DecimalSI";
  }
  return canonicalString(negative, mant, e, format);
}
