import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  capacityLabelSelector,
  capacityLabels,
  fnv32aHex,
  managedByValue,
  nameWithMaxLength,
} from "../../src/capacity/names.ts";

const base = "external-provisioner";

describe("nameWithMaxLength()", () => {
  // The vectors of upstream's TestGetNameWithMaxLength (cmd/csi-provisioner/util_test.go).
  const cases: { name: string; base: string; suffix: string; expected: string }[] = [
    { name: "keeps a short name", base, suffix: "node01", expected: `${base}-node01` },
    {
      name: "uses the suffix alone with an empty base",
      base: "",
      suffix: "node01",
      expected: "node01",
    },
    {
      name: "keeps a name of exactly 63 characters",
      base,
      suffix: `node${"a".repeat(38)}`,
      expected: `${base}-node${"a".repeat(38)}`,
    },
    {
      name: "truncates the base and adds its hash one character over",
      base,
      suffix: `node${"a".repeat(39)}`,
      expected: `external-p-53f40b57-node${"a".repeat(39)}`,
    },
    {
      name: "keeps one character of the base for a 52-character suffix",
      base,
      suffix: `node${"a".repeat(48)}`,
      expected: `e-53f40b57-node${"a".repeat(48)}`,
    },
    {
      name: "drops a 53-character suffix and hashes the whole name",
      base,
      suffix: `node${"a".repeat(49)}`,
      expected: `${base}-a3607ff1`,
    },
    {
      name: "drops a very long suffix",
      base,
      suffix: `node${"a".repeat(63)}`,
      expected: `${base}-df38e37f`,
    },
    {
      name: "is only the hash for a long suffix and an empty base",
      base: "",
      suffix: `node${"a".repeat(63)}`,
      expected: "fa65587e",
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = nameWithMaxLength(c.base, c.suffix, 63);
      assert.equal(got, c.expected);
      assert.ok(got.length <= 63);
    });
  }
});

describe("fnv32aHex()", () => {
  it("computes FNV-1a over UTF-8 bytes as 8 hex digits", () => {
    // Published FNV-1a test vectors.
    assert.equal(fnv32aHex(""), "811c9dc5");
    assert.equal(fnv32aHex("a"), "e40c292c");
    assert.equal(fnv32aHex("foobar"), "bf9cf968");
  });
});

describe("managedByValue()", () => {
  it("is external-provisioner for a central provisioner", () => {
    assert.equal(managedByValue(), "external-provisioner");
    assert.equal(managedByValue(""), "external-provisioner");
  });

  it("appends the node name in node mode and stays a valid label value", () => {
    assert.equal(managedByValue("worker-1"), "external-provisioner-worker-1");
    const long = managedByValue(`ip-10-0-0-1.${"x".repeat(60)}.compute.internal`);
    assert.equal(long.length, 29);
    assert.match(long, /^external-provisioner-[0-9a-f]{8}$/);
  });
});

describe("capacityLabels() and capacityLabelSelector()", () => {
  it("name the driver and the manager, the selector with sorted keys", () => {
    assert.deepEqual(capacityLabels("hostpath.csi.k8s.io", "external-provisioner"), {
      "csi.storage.k8s.io/drivername": "hostpath.csi.k8s.io",
      "csi.storage.k8s.io/managed-by": "external-provisioner",
    });
    assert.equal(
      capacityLabelSelector("hostpath.csi.k8s.io", "external-provisioner-n1"),
      "csi.storage.k8s.io/drivername=hostpath.csi.k8s.io,csi.storage.k8s.io/managed-by=external-provisioner-n1",
    );
  });
});
