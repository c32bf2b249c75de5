import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  canonicalizeFields,
  canonicalQuantity,
  canonicalTime,
  DecodeError,
  quantityFormatMessage,
} from "../../../src/dev/apiserver/fields.ts";

// Expected values are kube-apiserver v1.36's answers (test/e2e/apiserver-conformance.test.ts).

describe("canonicalQuantity()", () => {
  const cases: [string | number | null, string][] = [
    ["1Gi", "1Gi"],
    ["1024Mi", "1Gi"],
    ["1.5Gi", "1536Mi"],
    ["3072Ki", "3Mi"],
    ["512Ki", "512Ki"],
    ["0.5Ki", "512"],
    ["1.1Gi", "1181116006400m"],
    ["2000000000", "2G"],
    ["1500", "1500"],
    ["2000", "2k"],
    ["1.5G", "1500M"],
    ["100m", "100m"],
    ["0.1", "100m"],
    ["1000m", "1"],
    ["1e3", "1e3"],
    ["+1", "+1"],
    ["0", "0"],
    ["1E", "1E"],
    ["12345678901234567890", "12345678901234567890"],
    ["0.0000000001", "1n"],
    [" 1Gi ", "1Gi"],
    [5, "5"],
    [null, "0"],
  ];
  for (const [input, want] of cases) {
    it(`writes ${JSON.stringify(input)} as ${JSON.stringify(want)}`, () => {
      assert.equal(canonicalQuantity(input), want);
    });
  }

  it("rejects malformed quantities and unknown suffixes with Go's messages", () => {
    for (const bad of ["1Gx", "", "lots", "1..2", true]) {
      assert.throws(
        () => canonicalQuantity(bad),
        (e: unknown) => e instanceof DecodeError && e.message === quantityFormatMessage,
        String(bad),
      );
    }
    assert.throws(
      () => canonicalQuantity("1K"),
      /^DecodeError: unable to parse quantity's suffix$/,
    );
  });
});

describe("canonicalTime()", () => {
  it("writes metav1.Time in UTC to the second, accepting and dropping a fraction", () => {
    assert.equal(canonicalTime("2026-01-01T01:00:00+01:00", false), "2026-01-01T00:00:00Z");
    assert.equal(canonicalTime("2026-01-01T00:00:00.750Z", false), "2026-01-01T00:00:00Z");
    assert.equal(canonicalTime("2025-12-31T23:30:00-00:45", false), "2026-01-01T00:15:00Z");
  });

  it("writes metav1.MicroTime in UTC with its six fractional digits", () => {
    assert.equal(
      canonicalTime("2026-01-01T01:00:00.123456+01:00", true),
      "2026-01-01T00:00:00.123456Z",
    );
  });

  it("rejects what Go's time.Parse rejects, with its message", () => {
    const cases: [string, boolean, string][] = [
      [
        "2026-01-01T00:00:00Z",
        true,
        'parsing time "2026-01-01T00:00:00Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000"',
      ],
      [
        "2026-01-01T00:00:06.1234567Z",
        true,
        'parsing time "2026-01-01T00:00:06.1234567Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "7Z" as "Z07:00"',
      ],
      [
        "yesterday",
        false,
        'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"',
      ],
      ["2026-02-30T00:00:00Z", false, 'parsing time "2026-02-30T00:00:00Z": day out of range'],
      ["2026-13-01T00:00:00Z", false, 'parsing time "2026-13-01T00:00:00Z": month out of range'],
      [
        "2026-01-01T00:00:00Zjunk",
        false,
        'parsing time "2026-01-01T00:00:00Zjunk": extra text: "junk"',
      ],
    ];
    for (const [value, micro, message] of cases) {
      assert.throws(
        () => canonicalTime(value, micro),
        (e: unknown) => e instanceof DecodeError && e.message === message,
        value,
      );
    }
  });
});

describe("canonicalizeFields()", () => {
  it("rewrites the quantities and times at the given paths, in place", () => {
    const obj = {
      spec: { capacity: { storage: "1024Mi", other: "2000" } },
      status: {
        conditions: [{ type: "A", lastTransitionTime: "2026-01-01T01:00:00+01:00" }, { type: "B" }],
      },
    };
    canonicalizeFields(obj, {
      quantities: ["spec.capacity.*"],
      times: ["status.conditions.*.lastTransitionTime"],
      nullTimes: ["status.conditions.*.lastTransitionTime"],
    });
    assert.deepEqual(obj, {
      spec: { capacity: { storage: "1Gi", other: "2k" } },
      status: {
        conditions: [
          { type: "A", lastTransitionTime: "2026-01-01T00:00:00Z" },
          { type: "B", lastTransitionTime: null },
        ],
      },
    });
  });

  it("leaves absent fields and parents alone", () => {
    const obj = { spec: {} };
    canonicalizeFields(obj, {
      quantities: ["spec.capacity.*"],
      microTimes: ["spec.renewTime"],
      nullTimes: ["status.conditions.*.lastProbeTime"],
    });
    assert.deepEqual(obj, { spec: {} });
  });
});
