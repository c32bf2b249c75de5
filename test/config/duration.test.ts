import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  formatDuration,
  formatDurationNs,
  parseDuration,
  tryParseDuration,
} from "../../src/config/duration.ts";

const S = 1_000_000_000n;
const MIN = 60n * S;
const H = 60n * MIN;
const MAX = (1n << 63n) - 1n;

describe("tryParseDuration()", () => {
  // Go's own time.ParseDuration table, plus the forms manifests use.
  const valid: [string, bigint][] = [
    ["0", 0n],
    ["5s", 5n * S],
    ["30s", 30n * S],
    ["1478s", 1478n * S],
    ["150s", 150n * S],
    ["-5s", -5n * S],
    ["+5s", 5n * S],
    ["-0", 0n],
    ["+0", 0n],
    ["5.0s", 5n * S],
    ["5.6s", 5n * S + 600_000_000n],
    ["5.s", 5n * S],
    [".5s", 500_000_000n],
    ["1.0s", S],
    ["1.00s", S],
    ["1.004s", S + 4_000_000n],
    ["1.0040s", S + 4_000_000n],
    ["100.00100s", 100n * S + 1_000_000n],
    ["10ns", 10n],
    ["11us", 11_000n],
    ["12\u00b5s", 12_000n],
    ["12\u03bcs", 12_000n],
    ["13ms", 13_000_000n],
    ["500ms", 500_000_000n],
    ["14s", 14n * S],
    ["15m", 15n * MIN],
    ["16h", 16n * H],
    ["1.5h", 90n * MIN],
    ["1m30s", 90n * S],
    ["1m50s", 110n * S],
    ["3h30m", 3n * H + 30n * MIN],
    ["10.5s4m", 4n * MIN + 10n * S + 500_000_000n],
    ["-2m3.4s", -(2n * MIN + 3n * S + 400_000_000n)],
    ["1h2m3s4ms5us6ns", H + 2n * MIN + 3n * S + 4_000_000n + 5_000n + 6n],
    ["39h9m14.425s", 39n * H + 9n * MIN + 14n * S + 425_000_000n],
    ["52763797000ns", 52_763_797_000n],
    ["0.3333333333333333333h", 20n * MIN],
    ["9007199254740993ns", 9_007_199_254_740_993n],
    ["9223372036854775807ns", MAX],
    ["9223372036854775.807us", MAX],
    ["9223372036s854ms775us807ns", MAX],
    ["-9223372036854775808ns", -(1n << 63n)],
    [".100000000000000000000h", 6n * MIN],
    ["0.830103483285477580700h", 49n * MIN + 48n * S + 372_539_827n],
  ];
  for (const [text, ns] of valid) {
    it(`parses ${JSON.stringify(text)}`, () => {
      const r = tryParseDuration(text);
      assert.ok(r.ok, `expected ${text} to parse`);
      assert.equal(r.ns, ns);
      assert.equal(r.ms, Number(ns) / 1e6);
    });
  }

  const invalid: [string, RegExp][] = [
    ["", /not a duration/],
    ["3", /missing unit/],
    ["150", /missing unit/],
    ["-", /not a duration/],
    ["s", /not a duration/],
    [".", /not a duration/],
    ["-.", /not a duration/],
    [".s", /not a duration/],
    ["+.s", /not a duration/],
    ["1d", /unknown unit "d"/],
    ["5 s", /unknown unit " s"/],
    ["abc", /not a duration/],
    ["1.5", /missing unit/],
    ["9223372036854775808ns", /out of range/],
    ["9223372036854775.808us", /out of range/],
    ["9223372036854ms775us808ns", /out of range/],
    ["-9223372036854775809ns", /out of range/],
    ["3000000h", /out of range/],
  ];
  for (const [text, error] of invalid) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      const r = tryParseDuration(text);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.error, error);
    });
  }
});

describe("parseDuration()", () => {
  it("returns milliseconds", () => {
    assert.equal(parseDuration("1m30s"), 90_000);
    assert.equal(parseDuration("500us"), 0.5);
  });

  it("throws a RangeError naming the input", () => {
    assert.throws(
      () => parseDuration("10"),
      (e: unknown) => {
        assert.ok(e instanceof RangeError);
        assert.match(e.message, /"10": missing unit/);
        return true;
      },
    );
  });
});

describe("formatDurationNs()", () => {
  // Go's time.Duration.String() table.
  const cases: [bigint, string][] = [
    [0n, "0s"],
    [1n, "1ns"],
    [1_100n, "1.1\u00b5s"],
    [2_200_000n, "2.2ms"],
    [3_300_000_000n, "3.3s"],
    [4n * MIN + 5n * S, "4m5s"],
    [4n * MIN + 5_001_000_000n, "4m5.001s"],
    [5n * H + 6n * MIN + 7_001_000_000n, "5h6m7.001s"],
    [8n * MIN + 1n, "8m0.000000001s"],
    [MAX, "2562047h47m16.854775807s"],
    [-(1n << 63n), "-2562047h47m16.854775808s"],
    [-1n, "-1ns"],
    [-1_100n, "-1.1\u00b5s"],
    [-(4n * MIN + 5n * S), "-4m5s"],
  ];
  for (const [ns, text] of cases) {
    it(`formats ${ns}ns as ${text}`, () => {
      assert.equal(formatDurationNs(ns), text);
    });
  }
});

describe("formatDuration()", () => {
  it("formats milliseconds like pflag shows duration defaults", () => {
    assert.equal(formatDuration(10_000), "10s");
    assert.equal(formatDuration(300_000), "5m0s");
    assert.equal(formatDuration(3_600_000), "1h0m0s");
    assert.equal(formatDuration(60_000), "1m0s");
    assert.equal(formatDuration(1_500), "1.5s");
    assert.equal(formatDuration(500), "500ms");
    assert.equal(formatDuration(0.5), "500\u00b5s");
    assert.equal(formatDuration(0), "0s");
  });

  it("round-trips through tryParseDuration()", () => {
    for (const text of ["10s", "5m0s", "1h0m0s", "1.5s", "500ms", "1m50s", "-2m3.4s"]) {
      const r = tryParseDuration(text);
      assert.ok(r.ok);
      assert.equal(formatDuration(r.ms), text);
    }
  });
});
