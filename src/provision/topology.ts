/**
 * Topology: the `accessibility_requirements` of a CreateVolumeRequest (upstream
 * `GenerateAccessibilityRequirements`), and the PV node affinity from the driver's
 * `accessible_topology` (`GenerateVolumeNodeAffinity`).
 *
 * The cluster state comes in as data (the CSINodes and Nodes of the informer caches) and the
 * CSINode shuffle of immediate binding takes an injected {@link Random}, so the function is pure.
 *
 * **Replaying a claim's requirements.** A CreateVolume that keeps failing with a timeout must be
 * retried with the same requirements even after the selected Node or CSINode is deleted, or a
 * volume may be created twice in two places (upstream #1413, #1465). Every call returns a
 * {@link TopologyMemo} of what it read; the controller keeps the memo of a claim while its
 * provisioning may still be in progress and passes it back on the next attempt, and drops it
 * when the claim is provisioned or fails for good (Finished or Reschedule). The memo is plain JSON
 * and shares no arrays with the inputs, so it can also be persisted.
 */
import { create } from "@bufbuild/protobuf";
import {
  type Topology,
  type TopologyRequirement,
  TopologyRequirementSchema,
  TopologySchema,
} from "../gen/csi/v1/csi_pb.js";
import type {
  CSINode,
  Node,
  NodeSelectorRequirement,
  NodeSelectorTerm,
  PersistentVolume,
  TopologySelectorTerm,
} from "../kube/objects.ts";
import type { Random } from "../util/clock.ts";

/** A topology segment map, `{ "topology.example.com/zone": "zone-a", ... }`. */
export type TopologySegments = Record<string, string>;

/** What one attempt read from the cluster, replayed on the next attempt for the same claim. */
export interface TopologyMemo {
  /** The driver's topology keys (from the selected node's CSINode, or any CSINode). */
  topologyKeys?: string[];
  /** The selected node's labels. */
  nodeLabels?: Record<string, string>;
  /** Terms aggregated from the cluster's Nodes. */
  requisite?: TopologySegments[];
  /** The preferred terms of late binding (non-strict). */
  preferred?: TopologySegments[];
}

export interface AccessibilityInput {
  /** The driver name: the CSINode entry to read topology keys from. */
  driverName: string;
  /** `claim.metadata.name`: the StatefulSet spreading hash of immediate binding. */
  claimName: string;
  /** `storageClass.allowedTopologies`. */
  allowedTopologies?: readonly TopologySelectorTerm[];
  /** The claim's `volume.kubernetes.io/selected-node`; unset for immediate binding. */
  selectedNode?: string;
  /** `--strict-topology`; default false. */
  strictTopology: boolean;
  /** `--immediate-topology`; default true. */
  immediateTopology: boolean;
  /** Every CSINode in the cluster. */
  csiNodes: readonly CSINode[];
  /** Every Node in the cluster. */
  nodes: readonly Node[];
  /** Shuffles the CSINodes of immediate binding (and hashes an unnamed claim). */
  random: Random;
  /** The memo a previous attempt for this claim returned. */
  memo?: TopologyMemo;
}

export type AccessibilityResult =
  | {
      kind: "ok";
      /** `undefined`: send no requirements. */
      requirement: TopologyRequirement | undefined;
      memo: TopologyMemo;
    }
  | {
      kind: "error";
      message: string;
      /**
       * The selected Node or CSINode no longer exists (and no memo covers it): ask the scheduler
       * for another node (upstream #1438) — provided no CreateVolume may still be in flight.
       */
      reschedule: boolean;
      memo: TopologyMemo;
    };

/** A term: its segments sorted by key (then value). */
type Term = [key: string, value: string][];

function sortTerm(term: Term): Term {
  return term.sort(([ka, va], [kb, vb]) => cmp(ka, kb) || cmp(va, vb));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareTerms(a: Term, b: Term): number {
  if (a.length !== b.length) return a.length - b.length;
  for (let i = 0; i < a.length; i++) {
    const r = cmp(a[i]![0], b[i]![0]) || cmp(a[i]![1], b[i]![1]);
    if (r !== 0) return r;
  }
  return 0;
}

/** Whether every segment of `term` is in `other`. */
function isSubset(term: Term, other: Term): boolean {
  const values = new Map(other);
  return term.every(([key, value]) => values.get(key) === value);
}

function termFromSegments(segments: TopologySegments): Term {
  return sortTerm(Object.entries(segments));
}

function segmentsFromTerm(term: Term): TopologySegments {
  return Object.fromEntries(term);
}

/*
 * Error texts print values the way upstream's Go `%v` does, so events read the same:
 * a term `[{key value} {key2 value2}]`, terms `[[{k v}] [{k v}]]`, strings `[a b]`, a map
 * `map[k:v k2:v2]` (keys sorted).
 */
function describeTerm(term: Term): string {
  return `[${term.map(([key, value]) => `{${key} ${value}}`).join(" ")}]`;
}

function describeTerms(terms: readonly Term[]): string {
  return `[${terms.map(describeTerm).join(" ")}]`;
}

function describeStrings(list: readonly string[]): string {
  return `[${list.join(" ")}]`;
}

function describeMap(map: Readonly<Record<string, string>>): string {
  const keys = Object.keys(map).sort();
  return `map[${keys.map((k) => `${k}:${map[k]}`).join(" ")}]`;
}

/**
 * `allowedTopologies` with the OR of values distributed over the AND of keys: the Cartesian
 * product of every term's values, terms concatenated in order.
 */
export function flattenAllowedTopologies(
  allowedTopologies: readonly TopologySelectorTerm[],
): TopologySegments[] {
  return flatten(allowedTopologies).map(segmentsFromTerm);
}

function flatten(allowedTopologies: readonly TopologySelectorTerm[]): Term[] {
  const result: Term[] = [];
  for (const selectorTerm of allowedTopologies) {
    let terms: Term[] = [];
    for (const expression of selectorTerm.matchLabelExpressions ?? []) {
      const next: Term[] = [];
      for (const value of expression.values ?? []) {
        if (terms.length === 0) next.push([[expression.key, value]]);
        else for (const term of terms) next.push([...term, [expression.key, value]]);
      }
      terms = next;
    }
    result.push(...terms);
  }
  return result.map(sortTerm);
}

function topologyKeysOf(csiNode: CSINode, driverName: string): string[] {
  return [...(csiNode.spec.drivers.find((d) => d.name === driverName)?.topologyKeys ?? [])];
}

/** The node's term for `keys`, or `undefined` when a key is not among its labels. */
function termFromLabels(
  labels: Readonly<Record<string, string>>,
  keys: readonly string[],
): Term | undefined {
  const term: Term = [];
  for (const key of keys) {
    if (!Object.hasOwn(labels, key)) return undefined;
    term.push([key, labels[key]!]);
  }
  return sortTerm(term);
}

/** FNV-1 (not FNV-1a), 32 bit, of the UTF-8 bytes of `text`: Go's `hash/fnv.New32`. */
export function fnv32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash = Math.imul(hash, 0x01000193) >>> 0;
    hash = (hash ^ byte) >>> 0;
  }
  return hash;
}

/**
 * The StatefulSet spreading offset of a claim name, identical to Kubernetes'
 * `getPVCNameHashAndIndexOffset`: for `<claim>-<statefulset>-<ordinal>` the hash is of the
 * StatefulSet part (after the last dash before the ordinal) and the index is the ordinal; for
 * `<name>-<ordinal>` the hash is of `<name>`; otherwise of the whole name with index 0. An empty
 * name hashes to a random value.
 */
export function claimNameHashAndIndex(
  claimName: string,
  random: Random,
): { hash: number; index: number } {
  if (claimName === "") return { hash: Math.floor(random() * 2 ** 32) >>> 0, index: 0 };
  let hashString = claimName;
  let index = 0;
  const lastDash = claimName.lastIndexOf("-");
  if (lastDash !== -1) {
    const ordinal = claimName.slice(lastDash + 1);
    if (/^[0-9]+$/.test(ordinal) && Number(ordinal) <= 0xffffffff) {
      index = Number(ordinal);
      hashString = claimName.slice(0, lastDash);
      const dash = hashString.lastIndexOf("-");
      if (dash !== -1) hashString = hashString.slice(dash + 1);
    }
  }
  return { hash: fnv32(hashString), index };
}

function rotate<T>(items: readonly T[], start: number): T[] {
  return [...items.slice(start), ...items.slice(0, start)];
}

function shuffled<T>(items: readonly T[], random: Random): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function toCsiTopology(terms: readonly Term[]): Topology[] {
  return terms
    .filter((term) => term.length > 0)
    .map((term) => create(TopologySchema, { segments: segmentsFromTerm(term) }));
}

function cloneMemo(memo: TopologyMemo | undefined): TopologyMemo {
  return structuredClone(memo ?? {});
}

/**
 * The accessibility requirements of a CreateVolumeRequest, per upstream's README table:
 *
 * - Selected node (late binding): the driver's topology keys from the node's CSINode and the
 *   node's labels for them. With `--strict-topology` the node's term must fit `allowedTopologies`
 *   and is both the only requisite and the only preferred term.
 * - Otherwise requisite = the flattened `allowedTopologies`; without them (and unless it is
 *   immediate binding with `--immediate-topology=false`, which sends nothing) the terms of every
 *   Node carrying all the driver's keys (for immediate binding, the keys of a random CSINode).
 * - Requisite is sorted and de-duplicated. Preferred is requisite rotated: by the StatefulSet
 *   spreading offset for immediate binding, so that the selected node's term comes first for late
 *   binding.
 */
export function accessibilityRequirements(input: AccessibilityInput): AccessibilityResult {
  const memo = cloneMemo(input.memo);
  const fail = (message: string, reschedule = false): AccessibilityResult => ({
    kind: "error",
    message,
    reschedule,
    memo,
  });
  const selectedNode = input.selectedNode ?? "";
  const allowed = input.allowedTopologies ?? [];

  // 1. The selected node's topology.
  let selectedTerm: Term | undefined;
  let topologyKeys: string[] = [];
  let requisite: Term[] = [];
  if (selectedNode !== "") {
    const csiNode = input.csiNodes.find((n) => n.metadata.name === selectedNode);
    if (csiNode) {
      topologyKeys = topologyKeysOf(csiNode, input.driverName);
      memo.topologyKeys = [...topologyKeys];
    } else if (memo.topologyKeys && memo.topologyKeys.length > 0) {
      topologyKeys = [...memo.topologyKeys];
    } else {
      return fail(
        `failed to get selected CSINode ${selectedNode}: csinode.storage.k8s.io ${JSON.stringify(selectedNode)} not found`,
        true,
      );
    }
    if (topologyKeys.length === 0) {
      return fail(`no topology key found for node ${selectedNode}`);
    }
    const node = input.nodes.find((n) => n.metadata.name === selectedNode);
    let labels: Record<string, string>;
    if (node) {
      labels = { ...(node.metadata.labels ?? {}) };
      memo.nodeLabels = { ...labels };
    } else if (memo.nodeLabels && Object.keys(memo.nodeLabels).length > 0) {
      labels = { ...memo.nodeLabels };
    } else {
      return fail(`selected node ${selectedNode} not found`, true);
    }
    selectedTerm = termFromLabels(labels, topologyKeys);
    if (!selectedTerm) {
      return fail(
        `topology labels from selected node ${describeMap(labels)} does not match topology keys from CSINode ${describeStrings(topologyKeys)}`,
      );
    }
    if (input.strictTopology) {
      if (allowed.length > 0) {
        const flat = flatten(allowed);
        if (!flat.some((term) => isSubset(term, selectedTerm!))) {
          return fail(
            `selected node '${JSON.stringify(selectedNode)}' topology '${describeTerm(selectedTerm)}' is not in allowed topologies: ${describeTerms(flat)}`,
          );
        }
      }
      requisite = [selectedTerm];
    }
  }

  // 2. Requisite.
  if (requisite.length === 0) {
    if (allowed.length > 0) {
      requisite = flatten(allowed);
    } else {
      if (selectedNode === "" && !input.immediateTopology) {
        return { kind: "ok", requirement: undefined, memo };
      }
      let keys = topologyKeys;
      if (selectedNode === "") {
        if (memo.topologyKeys && memo.topologyKeys.length > 0) {
          keys = [...memo.topologyKeys];
        } else {
          keys = [];
          for (const csiNode of shuffled(input.csiNodes, input.random)) {
            const found = topologyKeysOf(csiNode, input.driverName);
            if (found.length > 0) {
              keys = found;
              memo.topologyKeys = [...found];
              break;
            }
          }
        }
      }
      if (keys.length > 0) {
        if (memo.requisite && memo.requisite.length > 0) {
          requisite = memo.requisite.map(termFromSegments);
        } else {
          for (const node of input.nodes) {
            const term = termFromLabels(node.metadata.labels ?? {}, keys);
            if (term && term.length > 0) requisite.push(term);
          }
          if (requisite.length === 0) {
            return fail(`topologyKeys ${describeStrings(keys)} were not found on any nodes`);
          }
          memo.requisite = requisite.map(segmentsFromTerm);
        }
      }
      if (requisite.length === 0) {
        // No CSINode has topology keys for the driver: it is not running on any node yet.
        return fail("no available topology found");
      }
    }
  }
  // allowedTopologies with only empty terms: behave as without topology.
  if (requisite.length === 0) return { kind: "ok", requirement: undefined, memo };

  const sorted = [...requisite].sort(compareTerms);
  const unique = sorted.filter((term, i) => i === 0 || compareTerms(term, sorted[i - 1]!) !== 0);

  // 3. Preferred.
  let preferred: Term[];
  if (selectedNode === "") {
    const { hash, index } = claimNameHashAndIndex(input.claimName, input.random);
    preferred = rotate(unique, ((hash + index) >>> 0) % unique.length);
  } else if (input.strictTopology) {
    preferred = unique;
  } else if (memo.preferred && memo.preferred.length > 0) {
    preferred = memo.preferred.map(termFromSegments);
  } else {
    const at = unique.findIndex((term) => isSubset(term, selectedTerm!));
    if (at < 0) {
      return fail(
        `topology ${describeTerm(selectedTerm!)} from selected node ${JSON.stringify(selectedNode)} is not in requisite: ${describeTerms(unique)}`,
      );
    }
    preferred = rotate(unique, at);
    memo.preferred = preferred.map(segmentsFromTerm);
  }

  return {
    kind: "ok",
    requirement: create(TopologyRequirementSchema, {
      requisite: toCsiTopology(unique),
      preferred: toCsiTopology(preferred),
    }),
    memo,
  };
}

type NodeAffinity = NonNullable<PersistentVolume["spec"]["nodeAffinity"]>;

/**
 * The PV node affinity of a volume's `accessible_topology`: one NodeSelectorTerm per topology,
 * each segment a `key In [value]` expression (sorted by key). `undefined` when there is no
 * non-empty topology.
 */
export function nodeAffinityFromTopology(
  accessibleTopology: readonly Topology[] | undefined,
): NodeAffinity | undefined {
  const terms: NodeSelectorTerm[] = [];
  for (const topology of accessibleTopology ?? []) {
    const keys = Object.keys(topology.segments).sort();
    if (keys.length === 0) continue;
    terms.push({
      matchExpressions: keys.map((key) => ({
        key,
        operator: "In",
        values: [topology.segments[key]!],
      })),
    });
  }
  return terms.length > 0 ? { required: { nodeSelectorTerms: terms } } : undefined;
}

function matchesRequirement(
  requirement: NodeSelectorRequirement,
  labels: Readonly<Record<string, string>>,
): boolean {
  const present = Object.hasOwn(labels, requirement.key);
  const value = labels[requirement.key];
  const values = requirement.values ?? [];
  switch (requirement.operator) {
    case "In":
      return present && values.includes(value!);
    case "NotIn":
      return !present || !values.includes(value!);
    case "Exists":
      return present;
    case "DoesNotExist":
      return !present;
    case "Gt":
    case "Lt": {
      if (!present || values.length !== 1) return false;
      const have = Number.parseInt(value!, 10);
      const want = Number.parseInt(values[0]!, 10);
      if (Number.isNaN(have) || Number.isNaN(want)) return false;
      return requirement.operator === "Gt" ? have > want : have < want;
    }
    default:
      return false;
  }
}

/**
 * Whether a volume with `nodeAffinity` is accessible from a node whose topology is `segments`
 * (the `NodeGetInfo` accessible_topology in `--node-deployment` mode). No affinity, or no node
 * topology, means accessible.
 */
export function volumeIsAccessible(
  nodeAffinity: PersistentVolume["spec"]["nodeAffinity"],
  segments: TopologySegments | undefined,
): boolean {
  if (!segments || !nodeAffinity?.required) return true;
  const fields = { "metadata.name": "" };
  return nodeAffinity.required.nodeSelectorTerms.some((term) => {
    const expressions = term.matchExpressions ?? [];
    const fieldRequirements = term.matchFields ?? [];
    if (expressions.length === 0 && fieldRequirements.length === 0) return false;
    return (
      expressions.every((r) => matchesRequirement(r, segments)) &&
      fieldRequirements.every((r) => matchesRequirement(r, fields))
    );
  });
}
