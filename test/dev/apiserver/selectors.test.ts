import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  fieldValue,
  parseFieldSelector,
  parseLabelSelector,
} from "../../../src/dev/apiserver/selectors.ts";
import { ApiError } from "../../../src/dev/apiserver/status.ts";
import type { KubeObject } from "../../../src/kube/objects.ts";

const obj = (labels: Record<string, string>, extra: Record<string, unknown> = {}): KubeObject => ({
  metadata: { name: "n", namespace: "ns", labels },
  ...extra,
});

describe("parseLabelSelector()", () => {
  const cases: [string, Record<string, string>, boolean][] = [
    ["", {}, true],
    ["a=b", { a: "b" }, true],
    ["a=b", {}, false],
    ["a==b", { a: "b" }, true],
    ["a!=b", {}, true],
    ["a!=b", { a: "b" }, false],
    ["a in (b, c)", { a: "c" }, true],
    ["a in (b,c)", {}, false],
    ["a notin (b,c)", {}, true],
    ["a notin (b,c)", { a: "b" }, false],
    ["a", { a: "" }, true],
    ["!a", { a: "" }, false],
    ["!a", {}, true],
    ["a>3", { a: "10" }, true],
    ["a<3", { a: "10" }, false],
    ["a>3", { a: "x" }, false],
    ["example.com/key=v, b in (x)", { "example.com/key": "v", b: "x" }, true],
    ["a=", { a: "" }, true],
    // An empty set holds the empty value, as Kubernetes parses it.
    ["a in ()", { a: "" }, true],
    ["a in ()", { a: "b" }, false],
    ["a in (b,,c)", { a: "" }, true],
    ["in=notin", { in: "notin" }, true],
  ];
  for (const [selector, labels, want] of cases) {
    it(`${want ? "matches" : "rejects"} ${JSON.stringify(labels)} with ${JSON.stringify(selector)}`, () => {
      assert.equal(parseLabelSelector(selector).matches(obj(labels)), want);
    });
  }

  // The messages of Kubernetes' parser (checked against kube-apiserver v1.36).
  const bad: [string, string][] = [
    ["a in (b", "unable to parse requirement: found '', expected: ',' or ')'"],
    ["a in (", "unable to parse requirement: found '', expected: ',', ')' or identifier"],
    ["=b", "found '=', expected: !, identifier, or 'end of string'"],
    ["a=b=c", "found '=', expected: ',' or 'end of string'"],
    [
      "a>x",
      `unable to parse requirement: values[0]: Invalid value: "x": for 'Gt', 'Lt' operators, the value must be an integer`,
    ],
    ["a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"],
    ["tier in a", "unable to parse requirement: found 'a' expected: '('"],
    ["a,", "found '', expected: identifier after ','"],
    ["!", "unable to parse requirement: found '', expected: identifier"],
    ["x=(", "unable to parse requirement: found '(', expected: identifier"],
    ["!x=1", "found '=', expected: ',' or 'end of string'"],
    [
      "/a=1",
      'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty',
    ],
  ];
  for (const [selector, message] of bad) {
    it(`answers 400 to ${JSON.stringify(selector)}`, () => {
      assert.throws(
        () => parseLabelSelector(selector),
        (e: unknown) => e instanceof ApiError && e.code === 400 && e.message === message,
      );
    });
  }
});

describe("parseFieldSelector()", () => {
  it("matches equality and inequality on dotted paths, with missing fields as empty", () => {
    const o = obj({}, { spec: { nodeName: "node-1", unschedulable: false } });
    assert.equal(parseFieldSelector("metadata.name=n,metadata.namespace==ns").matches(o), true);
    assert.equal(parseFieldSelector("spec.nodeName!=node-1").matches(o), false);
    assert.equal(parseFieldSelector("spec.unschedulable=false").matches(o), true);
    assert.equal(parseFieldSelector("spec.missing=").matches(o), true);
  });

  it("unescapes \\, and \\= in values", () => {
    const o = obj({}, { reason: "a,b=c" });
    assert.equal(parseFieldSelector("reason=a\\,b\\=c").matches(o), true);
  });

  it("answers 400 to a field label the resource does not support", () => {
    assert.throws(
      () => parseFieldSelector("spec.volumeName=x", ["metadata.name"]),
      (e: unknown) =>
        e instanceof ApiError &&
        e.code === 400 &&
        e.message === "field label not supported: spec.volumeName",
    );
  });

  it("reads nested values as strings", () => {
    assert.equal(fieldValue({ a: { b: 3 } }, "a.b"), "3");
    assert.equal(fieldValue({ a: null }, "a.b"), "");
  });
});
