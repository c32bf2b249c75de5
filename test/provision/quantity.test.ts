import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatBinarySI, INT64_MAX, parseQuantity } from "../../src/provision/quantity.ts";

const Ki = 1024n;
const Mi = Ki * Ki;
const Gi = Mi * Ki;

describe("parseQuantity()", () => {
  const cases: [string, bigint][] = [
    ["0", 0n],
    ["1", 1n],
    ["10Gi", 10n * Gi],
    ["1G", 1_000_000_000n],
    ["500M", 500_000_000n],
    ["1.5Gi", (3n * Gi) / 2n],
    ["1e9", 1_000_000_000n],
    ["1E9", 1_000_000_000n],
    ["1e+3", 1000n],
    ["5e-1", 1n],
    ["100m", 1n],
    ["1500m", 2n],
    ["1000m", 1n],
    ["1u", 1n],
    ["1n", 1n],
    ["0.1", 1n],
    ["1.", 1n],
    [".5Ki", 512n],
    ["+2k", 2000n],
    ["-1Ki", -1024n],
    ["-1.5", -2n],
    ["1Ki", Ki],
    ["1Mi", Mi],
    ["1Ti", Gi * Ki],
    ["1Pi", Gi * Mi],
    ["1Ei", 1n << 60n],
    ["1k", 1000n],
    ["1T", 10n ** 12n],
    ["1P", 10n ** 15n],
    ["1E", 10n ** 18n],
    ["007Gi", 7n * Gi],
    ["8Ei", 8n << 60n],
  ];
  for (const [text, bytes] of cases) {
    it(`reads ${JSON.stringify(text)} as ${bytes} bytes`, () => {
      assert.equal(parseQuantity(text), bytes);
    });
  }

  for (const garbage of [
    "",
    " 1Gi",
    "1Gi ",
    "1 Gi",
    "Gi",
    "1GB",
    "1K",
    "1gi",
    "1e",
    "1e1.5",
    "-",
    "+",
    ".",
    "1..2",
    "0x10",
    "1Ki1",
    "e3",
    "1e101",
  ]) {
    it(`rejects ${JSON.stringify(garbage)}`, () => {
      assert.throws(
        () => parseQuantity(garbage),
        (error: Error) => {
          assert.match(error.message, /^Invalid quantity /);
          assert.ok(error.message.includes(JSON.stringify(garbage)), error.message);
          return true;
        },
      );
    });
  }
});

describe("formatBinarySI()", () => {
  const cases: [bigint, string][] = [
    [0n, "0"],
    [1n, "1"],
    [500n, "500"],
    [1000n, "1k"],
    [-1000n, "-1k"],
    [1023n, "1023"],
    [1024n, "1Ki"],
    [1536n, "1536"],
    [102400n, "100Ki"],
    [Gi, "1Gi"],
    [1_500_000_000n, "1500000000"],
    [5n * Gi, "5Gi"],
    [(11n * Gi) / 2n, "5632Mi"],
    [5970004541n, "5970004541"],
    [5484052n, "5484052"],
    [1n << 60n, "1Ei"],
    [8n << 60n, "8Ei"],
    [-2048n, "-2Ki"],
    [INT64_MAX, "9223372036854775807"],
  ];
  for (const [bytes, text] of cases) {
    it(`writes ${bytes} as ${JSON.stringify(text)}`, () => {
      assert.equal(formatBinarySI(bytes), text);
    });
  }

  it("round-trips through parseQuantity()", () => {
    for (const bytes of [0n, 1n, 1000n, 1024n, 3n * Gi, 1_500_000_000n, INT64_MAX]) {
      assert.equal(parseQuantity(formatBinarySI(bytes)), bytes);
    }
  });
});
