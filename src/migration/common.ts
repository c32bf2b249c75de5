/**
 * CSI migration: what every in-tree plugin's translation shares (the facts are csi-translation-lib's,
 * the code is ours). All pure: inputs are never modified, results are new objects.
 *
 * A {@link MigratedPlugin} turns an in-tree StorageClass into its CSI form (`translateClass`), the
 * PV built from the driver's answer back into the in-tree form (`toInTree`), and an in-tree PV into
 * the CSI source that deletion needs (`toCsi`).
 */
import type {
  CSIPersistentVolumeSource,
  NodeSelectorTerm,
  PersistentVolume,
  StorageClass,
  TopologySelectorTerm,
} from "../kube/objects.ts";

/** A translation's outcome: the value, or upstream's error text. */
export type Translated<T> = { ok: true; value: T } | { ok: false; error: string };

export const ok = <T>(value: T): Translated<T> => ({ ok: true, value });
export const failure = <T>(error: string): Translated<T> => ({ ok: false, error });

export interface MigratedPlugin {
  /** The in-tree provisioner name, e.g. `kubernetes.io/aws-ebs`. */
  inTreeName: string;
  /** The CSI driver that took over, e.g. `ebs.csi.aws.com`. */
  driverName: string;
  /** The PV spec field of the in-tree source, e.g. `awsElasticBlockStore`. */
  sourceField: string;
  /** The in-tree StorageClass in its CSI form (parameters, allowed topologies). */
  translateClass(sc: StorageClass): Translated<StorageClass>;
  /** A PV with `spec.csi` of this driver, in its in-tree form. */
  toInTree(pv: PersistentVolume): Translated<PersistentVolume>;
  /** The CSI source of an in-tree PV of this plugin (the volume handle DeleteVolume needs). */
  toCsi(pv: PersistentVolume): Translated<CSIPersistentVolumeSource>;
  /**
   * The node affinity of an in-tree PV of this plugin in the driver's topology keys (what a
   * `--node-deployment` sidecar compares with its node); absent for plugins that keep keys as
   * they are.
   */
  nodeAffinityToCsi?(pv: PersistentVolume): PersistentVolume["spec"]["nodeAffinity"];
}

/** Deprecated StorageClass parameter of the file system type. */
export const FSTYPE_KEY = "fstype";
/** The CSI StorageClass parameter of the file system type. */
export const CSI_FSTYPE_KEY = "csi.storage.k8s.io/fstype";
export const ZONE_KEY = "zone";
export const ZONES_KEY = "zones";

export const LABEL_ZONE = "topology.kubernetes.io/zone";
export const LABEL_REGION = "topology.kubernetes.io/region";
export const LABEL_BETA_ZONE = "failure-domain.beta.kubernetes.io/zone";
export const LABEL_BETA_REGION = "failure-domain.beta.kubernetes.io/region";
/** Separates the zones of a multi-zone volume in its zone label. */
export const MULTI_ZONE_DELIMITER = "__";

export const CLASS_TOPOLOGY_CONFLICT =
  "cannot simultaneously set allowed topologies and zone/zones parameters";
/** The in-tree plugins' own check (csi-translation-lib would pick one of the two at random). */
export const ZONE_AND_ZONES =
  "both zone and zones StorageClass parameters must not be used at the same time";

/** A deep copy of a JSON-shaped object. */
export function clone<T>(value: T): T {
  return structuredClone(value);
}

/** `[{ key In values }]`: the allowed topologies a `zone`/`zones` parameter stands for. */
export function topologyFromZones(key: string, values: string[]): TopologySelectorTerm[] {
  return [{ matchLabelExpressions: [{ key, values }] }];
}

/** Allowed topologies with the zone labels (GA and beta) renamed to the driver's `key`. */
export function translateAllowedTopologies(
  terms: readonly TopologySelectorTerm[],
  key: string,
): TopologySelectorTerm[] {
  return terms.map((term) => {
    const out: TopologySelectorTerm = {};
    if (term.matchLabelExpressions) {
      out.matchLabelExpressions = term.matchLabelExpressions.map((e) =>
        e.key === LABEL_ZONE || e.key === LABEL_BETA_ZONE
          ? { key, values: [...e.values] }
          : { key: e.key, values: [...e.values] },
      );
    }
    return out;
  });
}

/**
 * The common shape of the block-storage class translations (gce-pd, aws-ebs, azure-disk):
 * `zone` / `zones` become allowed topologies of `topologyKey` (an error next to explicit allowed
 * topologies), the class's own zone topologies are renamed to `topologyKey`. `param` maps every
 * other parameter (key lower-cased for matching) into `params`.
 */
export function translateZonalClass(
  sc: StorageClass,
  topologyKey: string,
  param: (lowerKey: string, key: string, value: string, params: Record<string, string>) => void,
): Translated<StorageClass> {
  const params: Record<string, string> = {};
  let zone: string | undefined;
  let zones: string | undefined;
  for (const [k, v] of Object.entries(sc.parameters ?? {})) {
    const lower = k.toLowerCase();
    if (lower === ZONE_KEY) zone = v;
    else if (lower === ZONES_KEY) zones = v;
    else param(lower, k, v, params);
  }
  if (zone !== undefined && zones !== undefined) return failure(ZONE_AND_ZONES);
  const generated =
    zone !== undefined
      ? topologyFromZones(topologyKey, [zone])
      : zones !== undefined
        ? topologyFromZones(topologyKey, zones.split(","))
        : [];
  const out = clone(sc);
  const allowed = sc.allowedTopologies ?? [];
  if (generated.length > 0 && allowed.length > 0) return failure(CLASS_TOPOLOGY_CONFLICT);
  if (generated.length > 0) out.allowedTopologies = generated;
  else if (allowed.length > 0)
    out.allowedTopologies = translateAllowedTopologies(allowed, topologyKey);
  out.parameters = params;
  return ok(out);
}

/** `fstype` (any case) → `csi.storage.k8s.io/fstype`; everything else as it is. */
export function fsTypeParam(
  lower: string,
  key: string,
  value: string,
  params: Record<string, string>,
): void {
  if (lower === FSTYPE_KEY) params[CSI_FSTYPE_KEY] = value;
  else params[key] = value;
}

function terms(pv: PersistentVolume): NodeSelectorTerm[] {
  return pv.spec.nodeAffinity?.required?.nodeSelectorTerms ?? [];
}

function affinityHasKey(pv: PersistentVolume, key: string): boolean {
  return terms(pv).some((t) => (t.matchExpressions ?? []).some((e) => e.key === key));
}

/**
 * The zone and region labels a PV uses: GA when its node affinity (then its labels) name the GA
 * zone, beta when they name the beta zone, GA when neither.
 */
export function topologyLabels(pv: PersistentVolume): { zone: string; region: string } {
  const ga = { zone: LABEL_ZONE, region: LABEL_REGION };
  const beta = { zone: LABEL_BETA_ZONE, region: LABEL_BETA_REGION };
  if (affinityHasKey(pv, LABEL_ZONE)) return ga;
  if (affinityHasKey(pv, LABEL_BETA_ZONE)) return beta;
  const labels = pv.metadata.labels ?? {};
  if (Object.hasOwn(labels, LABEL_ZONE)) return ga;
  if (Object.hasOwn(labels, LABEL_BETA_ZONE)) return beta;
  return ga;
}

/** Every value of `key` in the PV's node affinity, unique and sorted. */
export function topologyValues(pv: PersistentVolume, key: string): string[] {
  const values = new Set<string>();
  for (const t of terms(pv)) {
    for (const e of t.matchExpressions ?? []) {
      if (e.key === key) for (const v of e.values ?? []) values.add(v);
    }
  }
  return [...values].sort();
}

/** Renames `from` to `to` in every node-affinity expression of `pv` (in place). */
export function renameTopologyKey(pv: PersistentVolume, from: string, to: string): void {
  for (const t of terms(pv)) {
    for (const e of t.matchExpressions ?? []) if (e.key === from) e.key = to;
  }
}

/**
 * `values` trimmed, without empty ones and duplicates, sorted, as `key In values` appended to every
 * term of the PV's node affinity (one new term when it has none); nothing when no value is left.
 */
export function addTopology(pv: PersistentVolume, key: string, values: string[]): void {
  const zones = [...new Set(values.map((v) => v.trim()).filter((v) => v !== ""))].sort();
  if (zones.length === 0) return;
  const required = pv.spec.nodeAffinity?.required ?? { nodeSelectorTerms: [] };
  if (required.nodeSelectorTerms.length === 0) required.nodeSelectorTerms.push({});
  pv.spec.nodeAffinity = { ...pv.spec.nodeAffinity, required };
  for (const t of required.nodeSelectorTerms) {
    t.matchExpressions = [...(t.matchExpressions ?? []), { key, operator: "In", values: zones }];
  }
}

/**
 * The node affinity of an in-tree PV with its zone in the driver's `csiKey`: the zone label's key
 * renamed where the affinity has it, else the zone label's zones (`__`-separated) added; a beta
 * region key becomes the GA one.
 */
export function topologyToCsi(
  input: PersistentVolume,
  csiKey: string,
): PersistentVolume["spec"]["nodeAffinity"] {
  const pv = clone(input);
  const { zone, region } = topologyLabels(pv);
  if (topologyValues(pv, zone).length > 0) renameTopologyKey(pv, zone, csiKey);
  else {
    const label = pv.metadata.labels?.[zone];
    if (label !== undefined) addTopology(pv, csiKey, label.split(MULTI_ZONE_DELIMITER));
  }
  if (region === LABEL_BETA_REGION && topologyValues(pv, region).length > 0) {
    renameTopologyKey(pv, region, LABEL_REGION);
  }
  return pv.spec.nodeAffinity;
}

/** Derives a region from a term's zones, or says why it cannot. */
export type RegionParser = (zones: string[]) => Translated<string>;

/** Go's `%v` of a string set: `map[a:{} b:{}]`. */
export function goSetText(values: Iterable<string>): string {
  return `map[${[...values]
    .sort()
    .map((v) => `${v}:{}`)
    .join(" ")}]`;
}

/**
 * The one region of `zones`, `regionOf` giving each zone's (or the error for a zone it cannot
 * read); no zones, or zones of several regions, is an error.
 */
export function singleRegion(
  zones: string[],
  regionOf: (zone: string) => Translated<string>,
): Translated<string> {
  if (zones.length < 1) return failure("no zones specified");
  const regions = new Set<string>();
  for (const zone of zones) {
    const region = regionOf(zone);
    if (!region.ok) return region;
    regions.add(region.value);
  }
  if (regions.size !== 1) {
    return failure(`multiple or no regions gotten from zones, got: ${goSetText(regions)}`);
  }
  return ok([...regions][0]!);
}

/**
 * The driver's zone topology back to Kubernetes zone labels (in place): `csiKey` becomes the zone
 * label in the node affinity; with `regionParser`, every term without a region gets one derived
 * from its zones; the PV gets the zone label (zones joined by `__`) and, for exactly one region,
 * the region label, unless it has them.
 */
export function topologyToInTree(
  pv: PersistentVolume,
  csiKey: string,
  regionParser?: RegionParser,
): Translated<void> {
  const { zone, region } = topologyLabels(pv);
  renameTopologyKey(pv, csiKey, zone);
  if (regionParser && terms(pv).length > 0) {
    for (const t of terms(pv)) {
      const exprs = t.matchExpressions ?? [];
      if (exprs.some((e) => e.key === region)) continue;
      const zones = exprs.filter((e) => e.key === zone).flatMap((e) => e.values ?? []);
      const parsed = regionParser(zones);
      if (!parsed.ok) return failure(`Failed to handle region topology. error: ${parsed.error}`);
      t.matchExpressions = [...exprs, { key: region, operator: "In", values: [parsed.value] }];
    }
    const regions = topologyValues(pv, region);
    if (regions.length === 1) setLabelIfMissing(pv, region, regions[0]!);
  }
  const zones = topologyValues(pv, zone);
  if (zones.length > 0) setLabelIfMissing(pv, zone, zones.join(MULTI_ZONE_DELIMITER));
  return ok(undefined);
}

export function setLabelIfMissing(pv: PersistentVolume, key: string, value: string): void {
  const labels = pv.metadata.labels ?? {};
  if (!Object.hasOwn(labels, key)) labels[key] = value;
  pv.metadata.labels = labels;
}

/** The error of a failed {@link topologyToInTree}, worded as upstream's (without its PV dump). */
export function topologyError(pv: PersistentVolume, error: string): string {
  return `failed to translate topology of PersistentVolume ${pv.metadata.name ?? ""}: ${error}`;
}

/**
 * Replaces the PV's CSI source with an in-tree one (in place): the source field set, `spec.csi`
 * removed.
 */
export function setInTreeSource(pv: PersistentVolume, field: string, source: object): void {
  delete pv.spec.csi;
  pv.spec[field] = source;
}

/** Go's `strconv.Atoi`, with its error text. */
export function atoi(text: string): Translated<number> {
  if (!/^[+-]?\d+$/.test(text)) {
    return failure(`strconv.Atoi: parsing ${JSON.stringify(text)}: invalid syntax`);
  }
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n > 2 ** 63 - 1 || n < -(2 ** 63)) {
    return failure(`strconv.Atoi: parsing ${JSON.stringify(text)}: value out of range`);
  }
  return ok(n);
}

/** The in-tree source object of `pv` under `field`, when it has one. */
export function inTreeSource<T>(pv: PersistentVolume, field: string): T | undefined {
  const value = pv.spec[field];
  return value && typeof value === "object" ? (value as T) : undefined;
}
