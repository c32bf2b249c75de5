import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, toJson } from "@bufbuild/protobuf";
import { TopologyRequirementSchema, TopologySchema } from "../../src/gen/csi/v1/csi_pb.js";
import type {
  CSINode,
  Node,
  NodeSelectorRequirement,
  TopologySelectorTerm,
} from "../../src/kube/objects.ts";
import {
  type AccessibilityInput,
  accessibilityRequirements,
  claimNameHashAndIndex,
  flattenAllowedTopologies,
  fnv32,
  nodeAffinityFromTopology,
  volumeIsAccessible,
} from "../../src/provision/topology.ts";

const DRIVER = "topo.csi.example.com";
const ZONE = "topology.example.com/zone";
const RACK = "topology.example.com/rack";

function node(name: string, labels: Record<string, string>): Node {
  return { metadata: { name, labels } };
}

function csiNode(name: string, keys: string[] | null, driver = DRIVER): CSINode {
  return {
    metadata: { name },
    spec: { drivers: [{ name: driver, nodeID: name, topologyKeys: keys }] },
  };
}

const NODES = [
  node("n1", { [ZONE]: "z1", [RACK]: "r1", other: "x" }),
  node("n2", { [ZONE]: "z2", [RACK]: "r1" }),
  node("n3", { [ZONE]: "z2", [RACK]: "r2" }),
  node("n4", { [ZONE]: "z1", [RACK]: "r1" }), // same topology as n1
  node("n5", { [ZONE]: "z3" }), // no rack label: not a candidate
];
const CSINODES = [
  csiNode("n1", [ZONE, RACK]),
  csiNode("n2", [ZONE, RACK]),
  csiNode("n3", [ZONE, RACK]),
];

function input(overrides: Partial<AccessibilityInput> = {}): AccessibilityInput {
  return {
    driverName: DRIVER,
    claimName: "data",
    strictTopology: false,
    immediateTopology: true,
    csiNodes: CSINODES,
    nodes: NODES,
    random: () => 0,
    ...overrides,
  };
}

/** The requirement as JSON, or the error. */
function run(overrides: Partial<AccessibilityInput> = {}) {
  const result = accessibilityRequirements(input(overrides));
  if (result.kind === "error") return { error: result.message, reschedule: result.reschedule };
  return result.requirement ? toJson(TopologyRequirementSchema, result.requirement) : undefined;
}

const seg = (zone: string, rack?: string) =>
  rack === undefined
    ? { segments: { [ZONE]: zone } }
    : { segments: { [RACK]: rack, [ZONE]: zone } };

describe("flattenAllowedTopologies()", () => {
  it("distributes the OR of values over the AND of keys, term by term", () => {
    const allowed: TopologySelectorTerm[] = [
      {
        matchLabelExpressions: [
          { key: ZONE, values: ["z1", "z2"] },
          { key: RACK, values: ["rA", "rB"] },
        ],
      },
      { matchLabelExpressions: [{ key: ZONE, values: ["z9"] }] },
      {},
    ];
    assert.deepEqual(flattenAllowedTopologies(allowed), [
      { [RACK]: "rA", [ZONE]: "z1" },
      { [RACK]: "rA", [ZONE]: "z2" },
      { [RACK]: "rB", [ZONE]: "z1" },
      { [RACK]: "rB", [ZONE]: "z2" },
      { [ZONE]: "z9" },
    ]);
  });
});

describe("fnv32()", () => {
  it("is FNV-1 32-bit, as Go's hash/fnv.New32", () => {
    assert.equal(fnv32(""), 0x811c9dc5);
    assert.equal(fnv32("a"), 0x050c5d7e);
    assert.equal(fnv32("foobar"), 0x31f0b262);
  });
});

describe("claimNameHashAndIndex()", () => {
  const random = () => 0.5;
  it("hashes the StatefulSet name of <claim>-<set>-<ordinal> and offsets by the ordinal", () => {
    assert.deepEqual(claimNameHashAndIndex("data-web-3", random), { hash: fnv32("web"), index: 3 });
    assert.deepEqual(claimNameHashAndIndex("logs-web-3", random), { hash: fnv32("web"), index: 3 });
  });

  it("hashes <name> of <name>-<ordinal>", () => {
    assert.deepEqual(claimNameHashAndIndex("web-12", random), { hash: fnv32("web"), index: 12 });
  });

  it("hashes the whole name otherwise", () => {
    assert.deepEqual(claimNameHashAndIndex("data", random), { hash: fnv32("data"), index: 0 });
    assert.deepEqual(claimNameHashAndIndex("a-b", random), { hash: fnv32("a-b"), index: 0 });
    assert.deepEqual(claimNameHashAndIndex("a-4294967296", random), {
      hash: fnv32("a-4294967296"),
      index: 0,
    });
  });

  it("draws a random hash for an empty name", () => {
    assert.deepEqual(claimNameHashAndIndex("", random), { hash: 2 ** 31, index: 0 });
  });
});

describe("accessibilityRequirements()", () => {
  describe("with immediate binding", () => {
    it("aggregates the terms of every node that has all the driver's keys, sorted and de-duplicated", () => {
      const requisite = [seg("z1", "r1"), seg("z2", "r1"), seg("z2", "r2")];
      const { hash } = claimNameHashAndIndex("data", () => 0);
      const start = hash % 3;
      assert.deepEqual(run(), {
        requisite,
        preferred: [...requisite.slice(start), ...requisite.slice(0, start)],
      });
    });

    it("takes the keys of a random CSINode that has some", () => {
      const csiNodes = [
        csiNode("a", []),
        csiNode("b", [ZONE]),
        csiNode("c", [ZONE, RACK], "other"),
      ];
      // random() = 0 makes the Fisher-Yates shuffle rotate the list: [b, c, a].
      const result = run({ csiNodes });
      assert.deepEqual((result as { requisite: unknown[] }).requisite, [
        seg("z1"),
        seg("z2"),
        seg("z3"),
      ]);
    });

    it("spreads a StatefulSet's claims over the terms by ordinal", () => {
      const firsts = ["data-web-0", "data-web-1", "data-web-2"].map((claimName) => {
        const r = run({ claimName }) as { preferred: { segments: Record<string, string> }[] };
        return r.preferred[0]!.segments[ZONE] + "/" + r.preferred[0]!.segments[RACK];
      });
      assert.equal(new Set(firsts).size, 3, `${firsts}`);
      const h = fnv32("web");
      const order = ["z1/r1", "z2/r1", "z2/r2"];
      assert.deepEqual(
        firsts,
        [0, 1, 2].map((i) => order[(h + i) % 3]),
      );
    });

    it("sends nothing with --immediate-topology=false and no allowed topologies", () => {
      assert.equal(run({ immediateTopology: false }), undefined);
    });

    it("uses the flattened allowed topologies, even with --immediate-topology=false", () => {
      const allowedTopologies = [{ matchLabelExpressions: [{ key: ZONE, values: ["z2", "z1"] }] }];
      const result = run({ allowedTopologies, immediateTopology: false, claimName: "x-0" });
      const start = fnv32("x") % 2;
      const requisite = [seg("z1"), seg("z2")];
      assert.deepEqual(result, {
        requisite,
        preferred: [...requisite.slice(start), ...requisite.slice(0, start)],
      });
    });

    it("sends nothing when the allowed topologies have only empty terms", () => {
      assert.equal(run({ allowedTopologies: [{ matchLabelExpressions: [] }] }), undefined);
    });

    it("fails when no CSINode has topology keys for the driver", () => {
      assert.deepEqual(run({ csiNodes: [csiNode("n1", null), csiNode("n2", [ZONE], "other")] }), {
        error: "no available topology found",
        reschedule: false,
      });
    });

    it("fails when no node carries the keys", () => {
      assert.deepEqual(run({ csiNodes: [csiNode("n1", ["missing"])] }), {
        error: "topologyKeys [missing] were not found on any nodes",
        reschedule: false,
      });
    });
  });

  describe("with a selected node", () => {
    it("aggregates the cluster and prefers the selected node's term first", () => {
      assert.deepEqual(run({ selectedNode: "n2" }), {
        requisite: [seg("z1", "r1"), seg("z2", "r1"), seg("z2", "r2")],
        preferred: [seg("z2", "r1"), seg("z2", "r2"), seg("z1", "r1")],
      });
    });

    it("aggregates even with --immediate-topology=false", () => {
      assert.deepEqual(run({ selectedNode: "n3", immediateTopology: false }), {
        requisite: [seg("z1", "r1"), seg("z2", "r1"), seg("z2", "r2")],
        preferred: [seg("z2", "r2"), seg("z1", "r1"), seg("z2", "r1")],
      });
    });

    it("rotates the allowed topologies to the first term the node satisfies", () => {
      const allowedTopologies = [
        { matchLabelExpressions: [{ key: ZONE, values: ["z1", "z2", "z3"] }] },
      ];
      assert.deepEqual(run({ selectedNode: "n3", allowedTopologies }), {
        requisite: [seg("z1"), seg("z2"), seg("z3")],
        preferred: [seg("z2"), seg("z3"), seg("z1")],
      });
    });

    it("fails when the selected node's term is in no allowed topology", () => {
      const allowedTopologies = [{ matchLabelExpressions: [{ key: ZONE, values: ["z9"] }] }];
      const result = run({ selectedNode: "n3", allowedTopologies }) as { error: string };
      assert.match(
        result.error,
        /^topology \[\{\S+rack r2\} \{\S+zone z2\}\] from selected node "n3" is not in requisite: \[\[\{\S+zone z9\}\]\]$/,
      );
    });

    it("passes only the node's term with --strict-topology", () => {
      assert.deepEqual(run({ selectedNode: "n2", strictTopology: true }), {
        requisite: [seg("z2", "r1")],
        preferred: [seg("z2", "r1")],
      });
    });

    it("accepts a strict node term inside the allowed topologies", () => {
      const allowedTopologies = [{ matchLabelExpressions: [{ key: ZONE, values: ["z2"] }] }];
      assert.deepEqual(run({ selectedNode: "n2", strictTopology: true, allowedTopologies }), {
        requisite: [seg("z2", "r1")],
        preferred: [seg("z2", "r1")],
      });
    });

    it("rejects a strict node term outside the allowed topologies", () => {
      const allowedTopologies = [{ matchLabelExpressions: [{ key: ZONE, values: ["z1"] }] }];
      const result = run({ selectedNode: "n2", strictTopology: true, allowedTopologies }) as {
        error: string;
      };
      assert.match(
        result.error,
        /^selected node '"n2"' topology '\[\{.*\}\]' is not in allowed topologies: \[\[\{\S+ z1\}\]\]$/,
      );
    });

    it("fails without topology keys on the node's CSINode", () => {
      assert.deepEqual(run({ selectedNode: "n2", csiNodes: [csiNode("n2", [])] }), {
        error: "no topology key found for node n2",
        reschedule: false,
      });
    });

    it("fails when the node lacks a key's label", () => {
      assert.deepEqual(run({ selectedNode: "n5", csiNodes: [csiNode("n5", [ZONE, RACK])] }), {
        // Go's %v of the node's labels and of the CSINode's keys, as upstream's event shows them.
        error: `topology labels from selected node map[${ZONE}:z3] does not match topology keys from CSINode [${ZONE} ${RACK}]`,
        reschedule: false,
      });
    });

    it("asks to reschedule when the node's CSINode is gone", () => {
      assert.deepEqual(run({ selectedNode: "n9" }), {
        error: 'failed to get selected CSINode n9: csinode.storage.k8s.io "n9" not found',
        reschedule: true,
      });
    });

    it("asks to reschedule when the Node is gone", () => {
      assert.deepEqual(
        run({ selectedNode: "n2", nodes: NODES.filter((n) => n.metadata.name !== "n2") }),
        {
          error: "selected node n2 not found",
          reschedule: true,
        },
      );
    });
  });

  describe("replaying a memo", () => {
    it("sends identical requirements after the node and its CSINode are gone", () => {
      const first = accessibilityRequirements(input({ selectedNode: "n2" }));
      assert.equal(first.kind, "ok");
      const again = accessibilityRequirements(
        input({
          selectedNode: "n2",
          nodes: [node("n7", { [ZONE]: "z7", [RACK]: "r7" })],
          csiNodes: [],
          memo: first.memo,
        }),
      );
      assert.equal(again.kind, "ok");
      assert.deepEqual(
        toJson(
          TopologyRequirementSchema,
          again.kind === "ok" ? again.requirement! : create(TopologyRequirementSchema),
        ),
        toJson(
          TopologyRequirementSchema,
          first.kind === "ok" ? first.requirement! : create(TopologyRequirementSchema),
        ),
      );
    });

    it("keeps the immediate-binding keys and terms of the first attempt", () => {
      const first = accessibilityRequirements(input());
      const again = accessibilityRequirements(
        input({
          csiNodes: [csiNode("x", [ZONE])],
          nodes: [node("x", { [ZONE]: "z8" })],
          memo: first.memo,
        }),
      );
      assert.ok(first.kind === "ok" && again.kind === "ok");
      assert.deepEqual(
        toJson(TopologyRequirementSchema, again.requirement!),
        toJson(TopologyRequirementSchema, first.requirement!),
      );
    });

    it("records plain JSON that shares nothing with the inputs", () => {
      const memo = { topologyKeys: [ZONE, RACK] };
      const first = accessibilityRequirements(input({ selectedNode: "n1", memo }));
      assert.deepEqual(memo, { topologyKeys: [ZONE, RACK] }, "the input memo is not modified");
      assert.deepEqual(JSON.parse(JSON.stringify(first.memo)), first.memo);
      assert.deepEqual(first.memo, {
        topologyKeys: [ZONE, RACK],
        nodeLabels: { [ZONE]: "z1", [RACK]: "r1", other: "x" },
        requisite: [
          { [RACK]: "r1", [ZONE]: "z1" },
          { [RACK]: "r1", [ZONE]: "z2" },
          { [RACK]: "r2", [ZONE]: "z2" },
          { [RACK]: "r1", [ZONE]: "z1" },
        ],
        preferred: [
          { [RACK]: "r1", [ZONE]: "z1" },
          { [RACK]: "r1", [ZONE]: "z2" },
          { [RACK]: "r2", [ZONE]: "z2" },
        ],
      });
      first.memo.topologyKeys!.push("mutated");
      assert.deepEqual(CSINODES[0]!.spec.drivers[0]!.topologyKeys, [ZONE, RACK]);
    });
  });
});

describe("nodeAffinityFromTopology()", () => {
  const topology = (segments: Record<string, string>) => create(TopologySchema, { segments });

  it("is undefined without topology", () => {
    assert.equal(nodeAffinityFromTopology(undefined), undefined);
    assert.equal(nodeAffinityFromTopology([]), undefined);
    assert.equal(nodeAffinityFromTopology([topology({})]), undefined);
  });

  it("makes one term per topology, each segment `key In [value]`", () => {
    assert.deepEqual(
      nodeAffinityFromTopology([
        topology({ [ZONE]: "z1", [RACK]: "r1" }),
        topology({}),
        topology({ [ZONE]: "z2" }),
      ]),
      {
        required: {
          nodeSelectorTerms: [
            {
              matchExpressions: [
                { key: RACK, operator: "In", values: ["r1"] },
                { key: ZONE, operator: "In", values: ["z1"] },
              ],
            },
            { matchExpressions: [{ key: ZONE, operator: "In", values: ["z2"] }] },
          ],
        },
      },
    );
  });
});

describe("volumeIsAccessible()", () => {
  const affinity = nodeAffinityFromTopology([
    create(TopologySchema, { segments: { [ZONE]: "z1" } }),
  ]);

  it("matches the node topology against the affinity", () => {
    assert.equal(volumeIsAccessible(affinity, { [ZONE]: "z1" }), true);
    assert.equal(volumeIsAccessible(affinity, { [ZONE]: "z2" }), false);
    assert.equal(volumeIsAccessible(affinity, {}), false);
  });

  it("treats no affinity or no node topology as accessible", () => {
    assert.equal(volumeIsAccessible(undefined, { [ZONE]: "z2" }), true);
    assert.equal(volumeIsAccessible(affinity, undefined), true);
  });

  it("evaluates the other operators", () => {
    const terms = (matchExpressions: NodeSelectorRequirement[]) => ({
      required: { nodeSelectorTerms: [{ matchExpressions }] },
    });
    assert.equal(
      volumeIsAccessible(terms([{ key: "a", operator: "NotIn", values: ["1"] }]), { a: "2" }),
      true,
    );
    assert.equal(volumeIsAccessible(terms([{ key: "a", operator: "Exists" }]), { b: "1" }), false);
    assert.equal(
      volumeIsAccessible(terms([{ key: "a", operator: "DoesNotExist" }]), { b: "1" }),
      true,
    );
    assert.equal(
      volumeIsAccessible(terms([{ key: "a", operator: "Gt", values: ["5"] }]), { a: "7" }),
      true,
    );
    assert.equal(
      volumeIsAccessible(terms([{ key: "a", operator: "Lt", values: ["5"] }]), { a: "7" }),
      false,
    );
  });
});
