import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  labelSelectorOf,
  nodeSegments,
  type Segment,
  segmentFromMap,
  selectorMatchesSegment,
  termToSegment,
  volumeSegments,
} from "../../src/capacity/topology.ts";
import type { CSINode, Node, NodeSelectorTerm } from "../../src/kube/objects.ts";

const driver = "hostpath.csi.k8s.io";

function csiNode(name: string, drivers: { name: string; keys?: string[] | null }[]): CSINode {
  return {
    metadata: { name },
    spec: {
      drivers: drivers.map((d) => ({ name: d.name, nodeID: name, topologyKeys: d.keys })),
    },
  };
}

function node(name: string, labels: Record<string, string>): Node {
  return { metadata: { name, labels } };
}

describe("nodeSegments()", () => {
  const cases: {
    name: string;
    csiNodes: CSINode[];
    nodes: Node[];
    expected: Segment[];
  }[] = [
    { name: "finds nothing without CSINodes", csiNodes: [], nodes: [], expected: [] },
    {
      name: "takes the driver's keys with the node's values, sorted by key",
      csiNodes: [csiNode("n1", [{ name: driver, keys: ["zone", "region"] }])],
      nodes: [node("n1", { zone: "a", region: "r1", other: "x" })],
      expected: [
        [
          ["region", "r1"],
          ["zone", "a"],
        ],
      ],
    },
    {
      name: "ignores nodes where the driver is not registered",
      csiNodes: [
        csiNode("n1", [{ name: "other.csi.k8s.io", keys: ["zone"] }]),
        csiNode("n2", [{ name: driver, keys: ["zone"] }]),
      ],
      nodes: [node("n1", { zone: "a" }), node("n2", { zone: "b" })],
      expected: [[["zone", "b"]]],
    },
    {
      name: "skips a node that lacks one of the labels",
      csiNodes: [
        csiNode("n1", [{ name: driver, keys: ["zone", "rack"] }]),
        csiNode("n2", [{ name: driver, keys: ["zone"] }]),
      ],
      nodes: [node("n1", { zone: "a" }), node("n2", { zone: "b" })],
      expected: [[["zone", "b"]]],
    },
    {
      name: "skips a CSINode whose Node does not exist",
      csiNodes: [csiNode("gone", [{ name: driver, keys: ["zone"] }])],
      nodes: [],
      expected: [],
    },
    {
      name: "deduplicates nodes in the same segment and sorts the segments",
      csiNodes: [
        csiNode("n1", [{ name: driver, keys: ["zone"] }]),
        csiNode("n2", [{ name: driver, keys: ["zone"] }]),
        csiNode("n3", [{ name: driver, keys: ["zone"] }]),
      ],
      nodes: [node("n1", { zone: "b" }), node("n2", { zone: "a" }), node("n3", { zone: "b" })],
      expected: [[["zone", "a"]], [["zone", "b"]]],
    },
    {
      name: "gives the empty segment for a driver without topology keys",
      csiNodes: [
        csiNode("n1", [{ name: driver, keys: null }]),
        csiNode("n2", [{ name: driver, keys: [] }]),
      ],
      nodes: [node("n1", {}), node("n2", { zone: "x" })],
      expected: [[]],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const byName = new Map(c.nodes.map((n) => [n.metadata.name!, n]));
      assert.deepEqual(
        nodeSegments(driver, c.csiNodes, (n) => byName.get(n)),
        c.expected,
      );
    });
  }

  it("returns equal segments for the same nodes in another order", () => {
    const csiNodes = [
      csiNode("n1", [{ name: driver, keys: ["zone"] }]),
      csiNode("n2", [{ name: driver, keys: ["zone"] }]),
    ];
    const nodes = new Map([
      ["n1", node("n1", { zone: "b" })],
      ["n2", node("n2", { zone: "a" })],
    ]);
    assert.deepEqual(
      nodeSegments(driver, csiNodes, (n) => nodes.get(n)),
      nodeSegments(driver, [...csiNodes].reverse(), (n) => nodes.get(n)),
    );
  });
});

describe("termToSegment()", () => {
  const cases: { name: string; term: NodeSelectorTerm; expected: Segment | undefined }[] = [
    {
      name: "turns single-value In expressions into a sorted segment",
      term: {
        matchExpressions: [
          { key: "zone", operator: "In", values: ["a"] },
          { key: "region", operator: "In", values: ["r"] },
        ],
      },
      expected: [
        ["region", "r"],
        ["zone", "a"],
      ],
    },
    { name: "gives the empty segment for an empty term", term: {}, expected: [] },
    {
      name: "rejects other operators",
      term: { matchExpressions: [{ key: "zone", operator: "NotIn", values: ["a"] }] },
      expected: undefined,
    },
    {
      name: "rejects several values",
      term: { matchExpressions: [{ key: "zone", operator: "In", values: ["a", "b"] }] },
      expected: undefined,
    },
    {
      name: "rejects matchFields",
      term: { matchFields: [{ key: "metadata.name", operator: "In", values: ["n1"] }] },
      expected: undefined,
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(termToSegment(c.term), c.expected));
  }
});

describe("volumeSegments()", () => {
  it("is undefined without node affinity and lists the plain terms otherwise", () => {
    assert.equal(volumeSegments({ spec: {} }), undefined);
    assert.deepEqual(
      volumeSegments({
        spec: {
          nodeAffinity: {
            required: {
              nodeSelectorTerms: [
                { matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] },
                { matchExpressions: [{ key: "zone", operator: "Exists" }] },
              ],
            },
          },
        },
      }),
      [[["zone", "a"]]],
    );
  });
});

describe("labelSelectorOf() and selectorMatchesSegment()", () => {
  const zoneA = segmentFromMap({ zone: "a" });

  it("writes matchLabels, and {} for the empty segment", () => {
    assert.deepEqual(labelSelectorOf(zoneA), { matchLabels: { zone: "a" } });
    assert.deepEqual(labelSelectorOf([]), {});
  });

  const cases: { name: string; selector: unknown; segment: Segment; expected: boolean }[] = [
    {
      name: "matches equal labels",
      selector: { matchLabels: { zone: "a" } },
      segment: zoneA,
      expected: true,
    },
    {
      name: "rejects another value",
      selector: { matchLabels: { zone: "b" } },
      segment: zoneA,
      expected: false,
    },
    {
      name: "rejects extra labels",
      selector: { matchLabels: { zone: "a", rack: "1" } },
      segment: zoneA,
      expected: false,
    },
    {
      name: "rejects expressions",
      selector: {
        matchLabels: { zone: "a" },
        matchExpressions: [{ key: "x", operator: "Exists" }],
      },
      segment: zoneA,
      expected: false,
    },
    { name: "matches {} to the empty segment", selector: {}, segment: [], expected: true },
    {
      name: "matches empty matchLabels to the empty segment",
      selector: { matchLabels: {} },
      segment: [],
      expected: true,
    },
    { name: "rejects a missing selector", selector: undefined, segment: [], expected: false },
  ];
  for (const c of cases) {
    it(c.name, () =>
      assert.equal(
        selectorMatchesSegment(
          c.selector as Parameters<typeof selectorMatchesSegment>[0],
          c.segment,
        ),
        c.expected,
      ),
    );
  }
});
