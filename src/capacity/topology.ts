/**
 * Topology segments for storage capacity (reference §2.13): the distinct sets of topology
 * key/value pairs of the nodes where the driver runs.
 *
 * A segment is a list of `[key, value]` pairs sorted by key, identified by its {@link segmentKey}
 * (a canonical string), so equal segments found on different nodes are one segment and a segment
 * keeps its identity across recomputations. The empty segment (a driver registered without
 * topology keys) stands for "every node".
 */
import type {
  CSINode,
  LabelSelector,
  Node,
  NodeSelectorTerm,
  PersistentVolume,
} from "../kube/objects.ts";

/** Topology key/value pairs, sorted by key, keys unique. */
export type Segment = readonly (readonly [key: string, value: string])[];

/** The canonical identity of a segment: equal segments have equal keys. */
export function segmentKey(segment: Segment): string {
  return JSON.stringify(segment);
}

/** A segment from a key → value map (e.g. NodeGetInfo's accessible_topology). */
export function segmentFromMap(map: Readonly<Record<string, string>> | undefined): Segment {
  return Object.keys(map ?? {})
    .sort()
    .map((k) => [k, map![k]!] as const);
}

/** The key → value map of a segment (for GetCapacity's accessible_topology). */
export function segmentToMap(segment: Segment): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of segment) out[k] = v;
  return out;
}

/** `key=value,key=value`, for messages; `(all nodes)` for the empty segment. */
export function describeSegment(segment: Segment): string {
  return segment.length === 0 ? "(all nodes)" : segment.map(([k, v]) => `${k}=${v}`).join(",");
}

/**
 * The `nodeTopology` of a CSIStorageCapacity object for a segment: `matchLabels` with the pairs;
 * `{}` (all nodes) for the empty segment.
 */
export function labelSelectorOf(segment: Segment): LabelSelector {
  return segment.length === 0 ? {} : { matchLabels: segmentToMap(segment) };
}

/**
 * Whether an object's `nodeTopology` selects exactly `segment`: `matchLabels` equal to the pairs
 * (absent and empty are the same) and no `matchExpressions`. An absent selector matches nothing.
 */
export function selectorMatchesSegment(
  selector: LabelSelector | null | undefined,
  segment: Segment,
): boolean {
  if (!selector || typeof selector !== "object") return false;
  if ((selector.matchExpressions?.length ?? 0) > 0) return false;
  const labels = selector.matchLabels ?? {};
  const keys = Object.keys(labels);
  if (keys.length !== segment.length) return false;
  return segment.every(([k, v]) => Object.hasOwn(labels, k) && labels[k] === v);
}

/**
 * The driver's topology keys on a node: `undefined` when the driver is not registered there,
 * else the keys (empty when it reports none).
 */
export function driverTopologyKeys(csiNode: CSINode, driverName: string): string[] | undefined {
  for (const d of csiNode.spec?.drivers ?? []) {
    if (d.name === driverName) return [...(d.topologyKeys ?? [])];
  }
  return undefined;
}

/**
 * The segments of a cluster: for every CSINode where `driverName` is registered, the driver's
 * topology keys with the values of the Node's labels. A CSINode without its Node, or a Node that
 * lacks one of the labels (kubelet has not labelled it yet), contributes nothing. The result is
 * deduplicated and sorted by {@link segmentKey}.
 */
export function nodeSegments(
  driverName: string,
  csiNodes: readonly CSINode[],
  getNode: (name: string) => Node | undefined,
): Segment[] {
  const found = new Map<string, Segment>();
  for (const csiNode of csiNodes) {
    const keys = driverTopologyKeys(csiNode, driverName);
    if (keys === undefined) continue;
    const node = getNode(csiNode.metadata.name ?? "");
    if (!node) continue;
    const labels = node.metadata.labels ?? {};
    const segment: [string, string][] = [];
    let complete = true;
    for (const key of [...new Set(keys)].sort()) {
      if (!Object.hasOwn(labels, key)) {
        complete = false;
        break;
      }
      segment.push([key, labels[key]!]);
    }
    if (!complete) continue;
    const id = segmentKey(segment);
    if (!found.has(id)) found.set(id, segment);
  }
  return [...found.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, s]) => s);
}

/**
 * The segment of one NodeSelectorTerm of a PV's node affinity, as `nodeAffinityFromTopology`
 * writes it: only `In` expressions with exactly one value, no `matchFields`. `undefined` for any
 * other term.
 */
export function termToSegment(term: NodeSelectorTerm): Segment | undefined {
  if ((term.matchFields?.length ?? 0) > 0) return undefined;
  const pairs = new Map<string, string>();
  for (const e of term.matchExpressions ?? []) {
    if (e.operator !== "In" || e.values?.length !== 1) return undefined;
    if (pairs.has(e.key) && pairs.get(e.key) !== e.values[0]) return undefined;
    pairs.set(e.key, e.values[0]!);
  }
  return segmentFromMap(Object.fromEntries(pairs));
}

/** The segments of a PV's required node affinity (terms that are not plain segments are skipped). */
export function volumeSegments(pv: Pick<PersistentVolume, "spec">): Segment[] | undefined {
  const terms = pv.spec?.nodeAffinity?.required?.nodeSelectorTerms;
  if (!terms) return undefined;
  const out: Segment[] = [];
  for (const term of terms) {
    const s = termToSegment(term);
    if (s) out.push(s);
  }
  return out;
}
