/**
 * Kubernetes `resource.Quantity` for storage sizes, in bigint bytes.
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

const BINARY_SUFFIXES: Record<string, number> = { Ki: 1, Mi: 2, Gi: 3, Ti: 4, Pi: 5, Ei: 6 };
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
  const binary = BINARY_SUFFIXES[suffix];
  if (binary !== undefined) {
    numerator *= 1n << BigInt(10 * binary);
  } else {
    let exponent: number;
    if (suffix.length > 1 && (suffix[0] === "e" || suffix[0] === "E")) {
      exponent = Number(suffix.slice(1));
      if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > MAX_EXPONENT) {
        throw new Error(`Invalid quantity ${JSON.stringify(text)}: exponent out of range`);
      }
    } else {
      exponent = DECIMAL_SUFFIXES[suffix]!;
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
