/**
 * Normalisation of what one phase (upstream's sidecar or ours) left behind for one case, so that
 * the two phases compare equal where they behave the same: names, UIDs, volume IDs, namespaces,
 * times and the provisioner identity are replaced by stable placeholders, and fields that only
 * the API server or the clock decides (resourceVersion, managedFields, timestamps, counts) are
 * dropped. Pure functions; unit-tested in test/e2e/differential.test.ts.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** Replaces literal tokens (longest first) and a few patterns in every string of a value. */
export class Tokens {
  private readonly pairs = new Map<string, string>();
  private sorted: Array<[string, string]> | undefined;

  /** `literal` anywhere in a string becomes `placeholder` (empty literals are ignored). */
  add(literal: string | undefined, placeholder: string): this {
    if (literal && !this.pairs.has(literal)) {
      this.pairs.set(literal, placeholder);
      this.sorted = undefined;
    }
    return this;
  }

  /**
   * A claim UID and the forms a volume name takes of it: as it is, without dashes, and (with
   * `--volume-name-uuid-length=N`) the first N characters without dashes.
   */
  addUid(uid: string | undefined, placeholder: string, uuidLength?: number): this {
    if (!uid) return this;
    const bare = uid.replaceAll("-", "");
    this.add(uid, placeholder);
    this.add(bare, placeholder);
    if (uuidLength !== undefined && uuidLength >= 0)
      this.add(bare.slice(0, uuidLength), placeholder);
    return this;
  }

  string(s: string): string {
    this.sorted ??= [...this.pairs].sort((a, b) => b[0].length - a[0].length);
    let out = s;
    for (const [lit, ph] of this.sorted) {
      if (out.includes(lit)) out = out.replaceAll(lit, ph);
    }
    return out
      .replace(PROVISIONER_IDENTITY, "<identity>-")
      .replace(UUID, "<uuid>")
      .replace(RFC3339, "<time>");
  }

  /** The value with every string (keys included) normalised. */
  value<T extends Json | undefined>(v: T): T {
    if (typeof v === "string") return this.string(v) as T;
    if (Array.isArray(v)) return v.map((x) => this.value(x)) as T;
    if (v !== null && typeof v === "object") {
      const out: JsonObject = {};
      for (const [k, x] of Object.entries(v)) out[this.string(k)] = this.value(x as Json);
      return out as T;
    }
    return v;
  }
}

/** `<unixMillis>-<rand>-` at the start of csiProvisionerIdentity. */
const PROVISIONER_IDENTITY = /^\d{10,}-\d{1,4}-/;
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const RFC3339 = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})/g;

/** Metadata fields the API server or the clock decides. */
const VOLATILE_META = new Set([
  "uid",
  "resourceVersion",
  "creationTimestamp",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
  "generation",
  "managedFields",
  "selfLink",
]);

function obj(v: unknown): JsonObject {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as JsonObject) : {};
}

/** Keeps only the keys of `o` that are set (drops undefined; keeps null, false, 0 and ""). */
function compact(o: Record<string, Json | undefined>): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

function meta(m: unknown): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(obj(m))) if (!VOLATILE_META.has(k)) out[k] = v;
  if (Array.isArray(out.finalizers)) out.finalizers = sortedStrings(out.finalizers);
  return out;
}

/** Finalizers as a set: who added one first is a race between controllers, not behaviour. */
function sortedStrings(v: Json[]): Json[] {
  return [...v].sort((a, b) => String(a).localeCompare(String(b)));
}

/** A PV: metadata without server fields, the whole spec (claimRef without resourceVersion), the phase. */
export function normalisePv(pv: unknown, tokens: Tokens): Json {
  const p = obj(pv);
  const spec = { ...obj(p.spec) };
  if (spec.claimRef) {
    const { resourceVersion: _rv, ...ref } = obj(spec.claimRef);
    spec.claimRef = ref;
  }
  return tokens.value(
    compact({
      metadata: meta(p.metadata),
      spec,
      status: compact({ phase: obj(p.status).phase }),
    }),
  );
}

/** A claim: its annotations, finalizers and labels, the volume it is bound to, its phase and capacity. */
export function normaliseClaim(claim: unknown, tokens: Tokens): Json {
  const c = obj(claim);
  const m = obj(c.metadata);
  const s = obj(c.status);
  return tokens.value(
    compact({
      annotations: m.annotations ?? {},
      finalizers: sortedStrings(Array.isArray(m.finalizers) ? m.finalizers : []),
      labels: m.labels,
      volumeName: obj(c.spec).volumeName,
      phase: s.phase,
      capacity: s.capacity,
      accessModes: s.accessModes,
    }),
  );
}

/**
 * Events of one object as `{ "<type> <reason>": [distinct messages, sorted] }`: counts, times
 * and series do not matter (how often an attempt was retried depends on timing).
 */
export function normaliseEvents(events: unknown[], tokens: Tokens): JsonObject {
  const byKey = new Map<string, Set<string>>();
  for (const e of events) {
    const ev = obj(e);
    const key = `${String(ev.type ?? "")} ${String(ev.reason ?? "")}`;
    const set = byKey.get(key) ?? new Set<string>();
    set.add(tokens.string(String(ev.message ?? ev.note ?? "")));
    byKey.set(key, set);
  }
  const out: JsonObject = {};
  for (const k of [...byKey.keys()].sort()) out[k] = [...byKey.get(k)!].sort();
  return out;
}

/**
 * Who wrote the events of one object, as `{ "<type> <reason>": ["<source.component> on
 * <source.host>, reporting <reportingComponent> <reportingInstance>", ...] }` (distinct, sorted;
 * recorder names carry a random ID, normalised to `<uuid>`).
 */
export function normaliseEventSources(events: unknown[], tokens: Tokens): JsonObject {
  const byKey = new Map<string, Set<string>>();
  for (const e of events) {
    const ev = obj(e);
    const src = obj(ev.source);
    const key = `${String(ev.type ?? "")} ${String(ev.reason ?? "")}`;
    const set = byKey.get(key) ?? new Set<string>();
    set.add(
      tokens.string(
        `${String(src.component ?? "")} on ${String(src.host ?? "")}, reporting ${String(ev.reportingComponent ?? "")} ${String(ev.reportingInstance ?? "")}`,
      ),
    );
    byKey.set(key, set);
  }
  const out: JsonObject = {};
  for (const k of [...byKey.keys()].sort()) out[k] = [...byKey.get(k)!].sort();
  return out;
}

/**
 * CSI requests as the driver logged them: normalised, then distinct ones sorted by their JSON
 * (a retried request is the same request; how often it was retried depends on timing).
 */
export function normaliseRequests(requests: unknown[], tokens: Tokens): Json[] {
  const seen = new Map<string, Json>();
  for (const r of requests) {
    const n = tokens.value(sortKeys(r as Json));
    seen.set(JSON.stringify(n), n);
  }
  return [...seen.keys()].sort().map((k) => seen.get(k)!);
}

/** A copy with object keys in sorted order (for stable JSON). */
export function sortKeys(v: Json): Json {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === "object") {
    const out: JsonObject = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k]!);
    return out;
  }
  return v;
}
