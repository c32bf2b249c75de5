/**
 * What the informer caches of each resource: only the fields the controllers read. Every
 * projection drops `metadata.managedFields` (often the largest part of an object) and the
 * `kubectl.kubernetes.io/last-applied-configuration` annotation (a full JSON copy of the object
 * that nothing here reads), and sets `apiVersion`/`kind` (list items arrive without them).
 *
 * Strings that repeat across objects (namespaces, annotation values, finalizers, access modes,
 * class and driver names, quantities, topology values) are interned in a bounded pool: V8 gives
 * every decoded string its own copy, so this saves a few hundred bytes per object on Node and
 * Deno (JavaScriptCore already shares them). Projections reuse the parts of the input they keep
 * (and intern strings in them in place): the input is the freshly decoded object, owned by no one
 * else.
 *
 * A projection is a read-only view. Never send one back to the API server in a PUT: fields that
 * were dropped would be lost. Write with a patch, or GET the object first.
 * `bench/store-memory.ts` measures what this saves.
 */
import type {
  CSINode,
  KubeObject,
  Node,
  ObjectMeta,
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
  VolumeAttachment,
} from "./objects.ts";

/** The annotation `kubectl apply` writes; never cached. */
export const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration";

export interface MetaOptions {
  /** Keep `metadata.annotations` (minus the last-applied one). Default false. */
  annotations?: boolean;
  /** Keep `metadata.labels`. Default false. */
  labels?: boolean;
  /** Keep `metadata.finalizers` and `metadata.deletionTimestamp`. Default false. */
  lifecycle?: boolean;
  /** Keep `metadata.creationTimestamp` (end-to-end latency metrics). Default false. */
  created?: boolean;
}

/**
 * A bounded pool of short strings: `intern(s)` returns the pooled copy equal to `s`. Once full it
 * stops adding, so unique values cannot make it grow without limit.
 */
export class StringPool {
  readonly #pool = new Map<string, string>();
  readonly #max: number;
  readonly #maxLength: number;

  /** `max`: pooled strings (default 8192); `maxLength`: longer strings pass through (default 128). */
  constructor(max = 8192, maxLength = 128) {
    this.#max = max;
    this.#maxLength = maxLength;
  }

  get size(): number {
    return this.#pool.size;
  }

  intern<V>(s: V): V {
    if (typeof s !== "string" || s.length > this.#maxLength) return s;
    const pooled = this.#pool.get(s);
    if (pooled !== undefined) return pooled as V;
    if (this.#pool.size < this.#max) this.#pool.set(s, s);
    return s;
  }
}

const pool = new StringPool();

/** Interns every value of a string map, in place. */
function internValues(rec: Record<string, unknown> | undefined | null): void {
  if (!rec || typeof rec !== "object") return;
  for (const k of Object.keys(rec)) rec[k] = pool.intern(rec[k]);
}

/** Interns `obj[key]` in place when it is a string (absent fields stay absent). */
function internField<O extends object>(obj: O, key: keyof O & string): void {
  const v = obj[key];
  if (typeof v === "string") obj[key] = pool.intern(v);
}

/** Interns every element of a string array, in place. */
function internArray(a: unknown[] | undefined | null): void {
  if (!Array.isArray(a)) return;
  for (let i = 0; i < a.length; i++) a[i] = pool.intern(a[i]);
}

function annotationsOf(a: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!a) return undefined;
  if (!(lastAppliedAnnotation in a)) return a;
  const { [lastAppliedAnnotation]: _dropped, ...rest } = a;
  return rest;
}

/**
 * The identifying metadata (name, namespace, uid, resourceVersion) plus what `opts` asks for.
 * Absent fields stay absent (no `undefined`-valued properties, which cost a slot each).
 */
export function projectMeta(m: ObjectMeta | undefined, opts: MetaOptions = {}): ObjectMeta {
  const out: ObjectMeta = {};
  if (!m) return out;
  if (m.name !== undefined) out.name = m.name;
  if (m.namespace !== undefined) out.namespace = pool.intern(m.namespace);
  if (m.uid !== undefined) out.uid = m.uid;
  if (m.resourceVersion !== undefined) out.resourceVersion = m.resourceVersion;
  if (opts.annotations && m.annotations) {
    out.annotations = annotationsOf(m.annotations);
    internValues(out.annotations);
  }
  if (opts.labels && m.labels) out.labels = m.labels;
  if (opts.lifecycle) {
    if (m.finalizers) {
      out.finalizers = m.finalizers;
      internArray(out.finalizers);
    }
    if (m.deletionTimestamp !== undefined) out.deletionTimestamp = m.deletionTimestamp;
  }
  if (opts.created && m.creationTimestamp !== undefined)
    out.creationTimestamp = m.creationTimestamp;
  return out;
}

/** The whole object minus `metadata.managedFields` and the last-applied annotation. */
export function withoutManagedFields<T extends KubeObject>(obj: T): T {
  const meta = obj.metadata;
  if (!meta) return obj;
  const { managedFields: _m, ...rest } = meta;
  const annotations = annotationsOf(rest.annotations);
  if (annotations !== rest.annotations) rest.annotations = annotations;
  return { ...obj, metadata: rest };
}

/**
 * PVC: metadata essentials, annotations, labels, finalizers, deletionTimestamp; the whole spec;
 * `status.phase`.
 */
export function projectPersistentVolumeClaim(pvc: PersistentVolumeClaim): PersistentVolumeClaim {
  const spec = pvc.spec;
  if (spec) {
    internArray(spec.accessModes);
    internField(spec, "storageClassName");
    internField(spec, "volumeMode");
    internValues(spec.resources?.requests);
    internValues(spec.resources?.limits);
  }
  const out: PersistentVolumeClaim = {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: projectMeta(pvc.metadata, {
      annotations: true,
      labels: true,
      lifecycle: true,
      created: true,
    }),
    spec: pvc.spec ?? {},
  };
  if (pvc.status?.phase !== undefined) out.status = { phase: pool.intern(pvc.status.phase) };
  return out;
}

/**
 * PV: metadata essentials, annotations, labels, finalizers, deletionTimestamp; the whole spec;
 * `status.phase`.
 */
export function projectPersistentVolume(pv: PersistentVolume): PersistentVolume {
  const spec = pv.spec;
  if (spec) {
    internArray(spec.accessModes);
    internValues(spec.capacity);
    internField(spec, "storageClassName");
    internField(spec, "volumeMode");
    internField(spec, "persistentVolumeReclaimPolicy");
    internArray(spec.mountOptions);
    const ref = spec.claimRef;
    if (ref) {
      internField(ref, "apiVersion");
      internField(ref, "kind");
      internField(ref, "namespace");
    }
    const csi = spec.csi;
    if (csi) {
      internField(csi, "driver");
      internField(csi, "fsType");
      internValues(csi.volumeAttributes);
    }
    for (const term of spec.nodeAffinity?.required?.nodeSelectorTerms ?? []) {
      for (const e of term.matchExpressions ?? []) {
        internField(e, "key");
        internField(e, "operator");
        internArray(e.values);
      }
    }
  }
  const out: PersistentVolume = {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: projectMeta(pv.metadata, { annotations: true, labels: true, lifecycle: true }),
    spec: pv.spec ?? {},
  };
  if (pv.status?.phase !== undefined) out.status = { phase: pool.intern(pv.status.phase) };
  // When a released volume became Released: the start of the end-to-end deletion latency.
  const transition = pv.status?.lastPhaseTransitionTime;
  if (out.status?.phase === "Released" && typeof transition === "string") {
    out.status.lastPhaseTransitionTime = transition;
  }
  return out;
}

/** StorageClass: the whole object minus managedFields (there are few, and all of it is read). */
export function projectStorageClass(sc: StorageClass): StorageClass {
  return { ...withoutManagedFields(sc), apiVersion: "storage.k8s.io/v1", kind: "StorageClass" };
}

/** VolumeAttachment: metadata essentials, `spec.attacher`, `spec.nodeName`, the PV name. */
export function projectVolumeAttachment(va: VolumeAttachment): VolumeAttachment {
  const source: VolumeAttachment["spec"]["source"] = {};
  const pvName = va.spec?.source?.persistentVolumeName;
  if (pvName !== undefined) source.persistentVolumeName = pvName;
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "VolumeAttachment",
    metadata: projectMeta(va.metadata),
    spec: { attacher: va.spec?.attacher ?? "", nodeName: va.spec?.nodeName ?? "", source },
  };
}

/** CSINode: metadata essentials and the driver list. */
export function projectCSINode(n: CSINode): CSINode {
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "CSINode",
    metadata: projectMeta(n.metadata),
    spec: { drivers: n.spec?.drivers ?? [] },
  };
}

/** Node: metadata essentials and labels (topology); no spec, no status. */
export function projectNode(n: Node): Node {
  return { apiVersion: "v1", kind: "Node", metadata: projectMeta(n.metadata, { labels: true }) };
}

/** Index function: the PV a VolumeAttachment attaches (for `byIndex("pv", name)`). */
export function volumeAttachmentsByPv(va: VolumeAttachment): string[] {
  const pv = va.spec?.source?.persistentVolumeName;
  return pv ? [pv] : [];
}

/** Index function: the namespace of an object (cluster-scoped objects are not indexed). */
export function byNamespace(obj: KubeObject): string[] {
  return obj.metadata?.namespace ? [obj.metadata.namespace] : [];
}
