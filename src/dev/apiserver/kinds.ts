/**
 * The resources the server serves, with what kube-apiserver knows about each: discovery data
 * (short names, verbs), whether it has a status subresource, how its lists merge in a strategic
 * merge patch, its field selectors, its create-time defaults, minimal validation, and the
 * `kubectl get` table columns.
 *
 * Core `v1` `events` is a view of the `events.k8s.io/v1` events (one storage, two shapes, as in
 * Kubernetes), so that `kubectl describe` shows what the provisioner records.
 */
import type { KubeObject } from "../../kube/objects.ts";
import { type Resource, resources } from "../../kube/resources.ts";
import type { FieldPaths } from "./fields.ts";
import { type ListStrategies, objectMetaStrategies } from "./patch.ts";

export interface FieldError {
  /** `FieldValueRequired`, `FieldValueInvalid`, `FieldValueForbidden`… */
  type: string;
  field: string;
  message: string;
}

export interface Column {
  name: string;
  type: "string" | "integer" | "boolean" | "date";
  format?: string;
  description: string;
  /** 0: always shown; 1: `-o wide` only. */
  priority: number;
  cell(obj: KubeObject, nowMs: number): string | number | boolean;
}

export interface ServedResource {
  group: string;
  version: string;
  plural: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  shortNames: string[];
  /** Has a `/status` subresource: status is written there only. */
  statusSubresource: boolean;
  /**
   * A `/status` write keeps the stored metadata (`metav1.ResetObjectMetaForStatus`: custom
   * resources, VolumeAttachment). Otherwise (PV, PVC, Namespace, Node, Pod) it keeps only the
   * stored spec: label, annotation and finalizer changes sent with the status are saved.
   */
  statusResetsMeta: boolean;
  /** Quantities and times the decoder canonicalises (see `fields.ts`). */
  fieldPaths: FieldPaths;
  /**
   * The kind's update validation checks ObjectMeta a second time (most built-ins and custom
   * resources): metadata errors on update, like a finalizer added while terminating, are listed
   * twice in `details.causes`. PersistentVolume checks it once.
   */
  metaValidatedTwice: boolean;
  /** Where etcd keeps the objects (`/registry/<prefix>/...`), as quoted by storage errors. */
  storagePrefix: string;
  /** Keeps `metadata.generation` (custom resources). */
  generation: boolean;
  /** A custom resource: no strategic merge patch. */
  custom: boolean;
  /** Where its objects are stored; views share another resource's bucket. */
  bucket: string;
  /** Discovery categories (`all` makes `kubectl get all` list it). */
  categories: string[];
  /**
   * A review (SelfSubjectAccessReview, ...): `create` only, answered by this function, never
   * stored.
   */
  review?: (body: KubeObject | undefined) => KubeObject;
  /**
   * Field selector labels beyond `metadata.name` and `metadata.namespace`. A kind with none uses
   * the default conversion, whose error for other labels differs ("is not a known field
   * selector") from the kinds that register their own ("field label not supported").
   */
  fieldLabels: string[];
  /** Field labels whose value lives at another path (`source` → `source.component`). */
  fieldAliases: Record<string, string>;
  listStrategies: ListStrategies;
  columns: Column[];
  /** Create-time defaults and status reset; mutates `obj`. */
  prepareForCreate?(obj: KubeObject, now: string): void;
  /** Update-time adjustments given the stored object; mutates `obj`. */
  prepareForUpdate?(obj: KubeObject, old: KubeObject, now: string): void;
  validate?(obj: KubeObject): FieldError[];
  /** Update-only validation (immutable fields) against the stored object. */
  validateUpdate?(obj: KubeObject, old: KubeObject): FieldError[];
  /** For views: converts the served shape to the stored one. */
  toStored?(obj: KubeObject): KubeObject;
  /** For views: converts the stored shape to the served one. */
  fromStored?(obj: KubeObject): KubeObject;
}

export function apiVersionOfServed(r: { group: string; version: string }): string {
  return r.group === "" ? r.version : `${r.group}/${r.version}`;
}

function bucketOf(group: string, plural: string): string {
  return group === "" ? plural : `${plural}.${group}`;
}

// ---------------------------------------------------------------- table cells

/** kubectl's short duration (`duration.HumanDuration`): 45s, 3m20s, 5h, 12d, 2y. */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 0) return "0s";
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (h < 24 * 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 365 * 2) return `${d}d`;
  const y = Math.floor(d / 365);
  if (y < 8) return d % 365 === 0 ? `${y}y` : `${y}y${d % 365}d`;
  return `${y}y`;
}

function since(ts: unknown, nowMs: number): string {
  if (typeof ts !== "string" || ts === "") return "<unknown>";
  const t = Date.parse(ts);
  return Number.isNaN(t) ? "<unknown>" : humanDuration(nowMs - t);
}

function get(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const p of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

function str(v: unknown, fallback = ""): string {
  return typeof v === "string" ? v : v === undefined || v === null ? fallback : String(v);
}

const modeShort: Record<string, string> = {
  ReadWriteOnce: "RWO",
  ReadOnlyMany: "ROX",
  ReadWriteMany: "RWX",
  ReadWriteOncePod: "RWOP",
};

function accessModes(v: unknown): string {
  return Array.isArray(v) ? v.map((m) => modeShort[m] ?? m).join(",") : "";
}

const nameColumn: Column = {
  name: "Name",
  type: "string",
  format: "name",
  description:
    "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically.",
  priority: 0,
  cell: (o) => str(o.metadata?.name),
};

const ageColumn: Column = {
  name: "Age",
  type: "string",
  description:
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
  priority: 0,
  cell: (o, now) => since(o.metadata?.creationTimestamp, now),
};

function col(
  name: string,
  cell: Column["cell"],
  priority = 0,
  type: Column["type"] = "string",
): Column {
  return { name, type, description: name, priority, cell };
}

function phaseOrTerminating(o: KubeObject): string {
  return o.metadata?.deletionTimestamp ? "Terminating" : str(get(o, "status.phase"));
}

// ---------------------------------------------------------------- events view

/** events.k8s.io/v1 Event → core v1 Event (Kubernetes' conversion, field by field). */
export function eventToCore(e: KubeObject): KubeObject {
  const out: KubeObject = { apiVersion: "v1", kind: "Event", metadata: e.metadata };
  const copy = (from: string, to: string) => {
    if (e[from] !== undefined) out[to] = e[from];
  };
  copy("regarding", "involvedObject");
  copy("reason", "reason");
  copy("note", "message");
  copy("deprecatedSource", "source");
  copy("deprecatedFirstTimestamp", "firstTimestamp");
  copy("deprecatedLastTimestamp", "lastTimestamp");
  copy("deprecatedCount", "count");
  copy("type", "type");
  copy("eventTime", "eventTime");
  copy("series", "series");
  copy("action", "action");
  copy("related", "related");
  copy("reportingController", "reportingComponent");
  copy("reportingInstance", "reportingInstance");
  for (const k of ["reason", "message", "type", "action"]) if (out[k] === "") delete out[k];
  if (out.count === 0) delete out.count;
  // Fields Go serialises even when unset (no omitempty, or a struct / metav1.Time).
  out.involvedObject ??= {};
  out.source ??= {};
  out.firstTimestamp ??= null;
  out.lastTimestamp ??= null;
  out.eventTime ??= null;
  out.reportingComponent ??= "";
  out.reportingInstance ??= "";
  return out;
}

/**
 * A stored events.k8s.io/v1 Event as served: with the fields Go serialises even when unset
 * (`eventTime`, the deprecated timestamps: `null`; `regarding`, `deprecatedSource`: `{}`).
 */
export function eventV1Shape(e: KubeObject): KubeObject {
  const out: KubeObject = eventV1Omit({ ...e });
  out.eventTime ??= null;
  out.regarding ??= {};
  out.deprecatedSource ??= {};
  out.deprecatedFirstTimestamp ??= null;
  out.deprecatedLastTimestamp ??= null;
  return out;
}

/** core v1 Event → events.k8s.io/v1 Event. */
export function eventFromCore(e: KubeObject): KubeObject {
  const out: KubeObject = { apiVersion: "events.k8s.io/v1", kind: "Event", metadata: e.metadata };
  const copy = (from: string, to: string) => {
    if (e[from] !== undefined) out[to] = e[from];
  };
  copy("involvedObject", "regarding");
  copy("reason", "reason");
  copy("message", "note");
  copy("source", "deprecatedSource");
  copy("firstTimestamp", "deprecatedFirstTimestamp");
  copy("lastTimestamp", "deprecatedLastTimestamp");
  copy("count", "deprecatedCount");
  copy("type", "type");
  copy("eventTime", "eventTime");
  copy("series", "series");
  copy("action", "action");
  copy("related", "related");
  copy("reportingComponent", "reportingController");
  copy("reportingInstance", "reportingInstance");
  return eventV1Omit(out);
}

/** Drops what events.k8s.io/v1 leaves out when empty (`omitempty` strings and count). */
function eventV1Omit(e: KubeObject): KubeObject {
  for (const k of [
    "reason",
    "note",
    "type",
    "action",
    "reportingController",
    "reportingInstance",
  ]) {
    if (e[k] === "") delete e[k];
  }
  if (e.deprecatedCount === 0) delete e.deprecatedCount;
  return e;
}

// ---------------------------------------------------------------- validation helpers

const subdomainRe = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const labelRe = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Object-name errors for a DNS-1123 subdomain (`label` for namespaces). */
export function nameErrors(name: string, kind: "subdomain" | "label"): FieldError[] {
  if (kind === "label") {
    if (name.length > 63 || !labelRe.test(name)) {
      return [
        {
          type: "FieldValueInvalid",
          field: "metadata.name",
          message: `Invalid value: "${name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
        },
      ];
    }
    return [];
  }
  if (name.length > 253 || !subdomainRe.test(name)) {
    return [
      {
        type: "FieldValueInvalid",
        field: "metadata.name",
        message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
      },
    ];
  }
  return [];
}

/** How `field.Invalid` prints a value: strings quoted, others as JSON (sorted keys), unset as null. */
export function goValue(v: unknown): string {
  if (v === undefined || v === null) return "null";
  if (typeof v === "string") return JSON.stringify(v);
  const sorted = (x: unknown): unknown =>
    Array.isArray(x)
      ? x.map(sorted)
      : x !== null && typeof x === "object"
        ? Object.fromEntries(
            Object.keys(x)
              .sort()
              .map((k) => [k, sorted((x as Record<string, unknown>)[k])]),
          )
        : x;
  return JSON.stringify(sorted(v));
}

function sameJson(a: unknown, b: unknown): boolean {
  return goValue(a) === goValue(b);
}

/** `ValidateImmutableField`: "Invalid value: <new>: field is immutable". */
function immutable(field: string, now: unknown, before: unknown): FieldError[] {
  return sameJson(now, before)
    ? []
    : [
        {
          type: "FieldValueInvalid",
          field,
          message: `Invalid value: ${goValue(now)}: field is immutable`,
        },
      ];
}

/**
 * The fields of a map that changed, one line each: what follows the first line of Kubernetes'
 * "is immutable after creation" messages (where Kubernetes prints a Go struct diff instead).
 */
function changedFields(before: Record<string, unknown>, now: Record<string, unknown>): string {
  const keys = [...new Set([...Object.keys(before), ...Object.keys(now)])].sort();
  return keys
    .filter((k) => !sameJson(before[k], now[k]))
    .map((k) => `-  ${k}: ${goValue(before[k])}\n+  ${k}: ${goValue(now[k])}\n`)
    .join("");
}

/** PersistentVolume spec fields that are not part of the volume source. */
const pvNonSourceFields = new Set([
  "capacity",
  "accessModes",
  "claimRef",
  "persistentVolumeReclaimPolicy",
  "storageClassName",
  "mountOptions",
  "volumeMode",
  "nodeAffinity",
  "volumeAttributesClassName",
]);

function pvSource(spec: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(spec).filter(([k]) => !pvNonSourceFields.has(k)));
}

function required(field: string, detail = ""): FieldError {
  return {
    type: "FieldValueRequired",
    field,
    message: detail ? `Required value: ${detail}` : "Required value",
  };
}

function nonEmptyArray(v: unknown): boolean {
  return Array.isArray(v) && v.length > 0;
}

function ensure(obj: KubeObject, key: string): Record<string, unknown> {
  const cur = obj[key];
  if (cur !== null && typeof cur === "object" && !Array.isArray(cur)) {
    return cur as Record<string, unknown>;
  }
  const fresh: Record<string, unknown> = {};
  obj[key] = fresh;
  return fresh;
}

function base64Utf8(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Secret `stringData` is write-only: merged into `data` (base64) and dropped. */
function foldStringData(obj: KubeObject): void {
  const sd = obj.stringData;
  if (sd !== null && typeof sd === "object") {
    const data = ensure(obj, "data");
    for (const [k, v] of Object.entries(sd as Record<string, unknown>)) {
      data[k] = base64Utf8(String(v));
    }
  }
  delete obj.stringData;
}

// ---------------------------------------------------------------- the table

interface Extra {
  shortNames?: string[];
  singular?: string;
  statusSubresource?: boolean;
  statusResetsMeta?: boolean;
  fieldPaths?: FieldPaths;
  metaValidatedTwice?: boolean;
  storagePrefix?: string;
  custom?: boolean;
  bucket?: string;
  fieldLabels?: string[];
  fieldAliases?: Record<string, string>;
  listStrategies?: ListStrategies;
  columns?: Column[];
  /** `columns` are the whole table (no Name and Age added). */
  ownColumns?: boolean;
  prepareForCreate?: ServedResource["prepareForCreate"];
  prepareForUpdate?: ServedResource["prepareForUpdate"];
  validate?: ServedResource["validate"];
  validateUpdate?: ServedResource["validateUpdate"];
  toStored?: ServedResource["toStored"];
  fromStored?: ServedResource["fromStored"];
  categories?: string[];
  review?: ServedResource["review"];
}

function served(r: Resource, extra: Extra = {}): ServedResource {
  const custom = extra.custom ?? false;
  return {
    group: r.group,
    version: r.version,
    plural: r.plural,
    singular: extra.singular ?? r.kind.toLowerCase(),
    kind: r.kind,
    namespaced: r.namespaced,
    shortNames: extra.shortNames ?? [],
    statusSubresource: extra.statusSubresource ?? false,
    statusResetsMeta: extra.statusResetsMeta ?? custom,
    fieldPaths: extra.fieldPaths ?? {},
    metaValidatedTwice: extra.metaValidatedTwice ?? true,
    storagePrefix: extra.storagePrefix ?? (custom ? `${r.group}/${r.plural}` : r.plural),
    generation: custom,
    custom,
    bucket: extra.bucket ?? bucketOf(r.group, r.plural),
    categories: extra.categories ?? [],
    review: extra.review,
    fieldLabels: extra.fieldLabels ?? [],
    fieldAliases: extra.fieldAliases ?? {},
    listStrategies: { ...objectMetaStrategies, ...extra.listStrategies },
    columns: extra.ownColumns
      ? (extra.columns ?? [])
      : [nameColumn, ...(extra.columns ?? []), ageColumn],
    prepareForCreate: extra.prepareForCreate,
    prepareForUpdate: extra.prepareForUpdate,
    validate: extra.validate,
    validateUpdate: extra.validateUpdate,
    toStored: extra.toStored,
    fromStored: extra.fromStored,
  };
}

/** The Namespace resource (not in `resources`, which lists what the provisioner touches). */
export const namespacesResource: Resource = {
  group: "",
  version: "v1",
  plural: "namespaces",
  kind: "Namespace",
  namespaced: false,
};

/** Pods, served empty so that `kubectl describe pvc` can look up the pods using a claim. */
export const podsResource: Resource = {
  group: "",
  version: "v1",
  plural: "pods",
  kind: "Pod",
  namespaced: true,
};

/** Services, served (empty unless created) so that `kubectl cluster-info` and `get all` work. */
export const servicesResource: Resource = {
  group: "",
  version: "v1",
  plural: "services",
  kind: "Service",
  namespaced: true,
};

/** `kubectl auth can-i`: answered, never stored. */
const selfSubjectAccessReviews: Resource = {
  group: "authorization.k8s.io",
  version: "v1",
  plural: "selfsubjectaccessreviews",
  kind: "SelfSubjectAccessReview",
  namespaced: false,
};

/** `kubectl auth can-i --list`: answered, never stored. */
const selfSubjectRulesReviews: Resource = {
  group: "authorization.k8s.io",
  version: "v1",
  plural: "selfsubjectrulesreviews",
  kind: "SelfSubjectRulesReview",
  namespaced: false,
};

/** The answer of a review: the request as sent, with `status`, as kube-apiserver answers. */
function reviewed(kind: string, status: Record<string, unknown>) {
  return (body: KubeObject | undefined): KubeObject => ({
    ...body,
    apiVersion: "authorization.k8s.io/v1",
    kind,
    metadata: { ...body?.metadata, creationTimestamp: null as unknown as undefined },
    status,
  });
}

const ALLOW_ALL = "the dev API server has no authorization: everything is allowed";

/** Core v1 Events: a view of the events.k8s.io/v1 Events. */
export const coreEventsResource: Resource = {
  group: "",
  version: "v1",
  plural: "events",
  kind: "Event",
  namespaced: true,
};

function pvStatusPhaseTime(obj: KubeObject, old: KubeObject | undefined, now: string): void {
  const status = ensure(obj, "status");
  const oldPhase = old ? get(old, "status.phase") : undefined;
  if (status.phase !== oldPhase && status.lastPhaseTransitionTime === undefined) {
    status.lastPhaseTransitionTime = now;
  } else if (status.phase !== oldPhase && old !== undefined) {
    const oldTime = get(old, "status.lastPhaseTransitionTime");
    if (status.lastPhaseTransitionTime === oldTime) status.lastPhaseTransitionTime = now;
  }
}

const eventFieldLabels = [
  "involvedObject.kind",
  "involvedObject.namespace",
  "involvedObject.name",
  "involvedObject.uid",
  "involvedObject.apiVersion",
  "involvedObject.resourceVersion",
  "involvedObject.fieldPath",
  "reason",
  "reportingComponent",
  "source",
  "type",
];

/** Every served resource. */
export const servedResources: readonly ServedResource[] = [
  served(namespacesResource, {
    shortNames: ["ns"],
    statusSubresource: true,
    fieldLabels: ["status.phase"],
    fieldPaths: {
      times: ["status.conditions.*.lastTransitionTime"],
      nullTimes: ["status.conditions.*.lastTransitionTime"],
    },
    columns: [col("Status", (o) => str(get(o, "status.phase")))],
    prepareForCreate(obj) {
      const spec = ensure(obj, "spec");
      if (!Array.isArray(spec.finalizers)) spec.finalizers = ["kubernetes"];
      obj.status = { phase: "Active" };
      obj.metadata.labels = {
        ...obj.metadata.labels,
        "kubernetes.io/metadata.name": obj.metadata.name ?? "",
      };
    },
  }),
  served(podsResource, {
    shortNames: ["po"],
    categories: ["all"],
    statusSubresource: true,
    fieldLabels: ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "status.phase"],
    columns: [col("Status", (o) => str(get(o, "status.phase")))],
  }),
  served(servicesResource, {
    shortNames: ["svc"],
    categories: ["all"],
    statusSubresource: true,
    columns: [col("Type", (o) => str(get(o, "spec.type"), "ClusterIP"))],
  }),
  served(selfSubjectAccessReviews, {
    review: reviewed("SelfSubjectAccessReview", { allowed: true, reason: ALLOW_ALL }),
  }),
  served(selfSubjectRulesReviews, {
    review: reviewed("SelfSubjectRulesReview", {
      resourceRules: [{ verbs: ["*"], apiGroups: ["*"], resources: ["*"] }],
      nonResourceRules: [{ verbs: ["*"], nonResourceURLs: ["*"] }],
      incomplete: false,
    }),
  }),
  served(coreEventsResource, {
    shortNames: ["ev"],
    bucket: bucketOf(resources.events.group, resources.events.plural),
    fieldLabels: eventFieldLabels,
    fieldAliases: { source: "source.component" },
    fieldPaths: {
      times: ["firstTimestamp", "lastTimestamp"],
      microTimes: ["eventTime", "series.lastObservedTime"],
    },
    toStored: eventFromCore,
    fromStored: eventToCore,
    ownColumns: true,
    columns: [
      col("Last Seen", (o, now) =>
        since(o.lastTimestamp ?? get(o, "series.lastObservedTime") ?? o.eventTime, now),
      ),
      col("Type", (o) => str(o.type)),
      col("Reason", (o) => str(o.reason)),
      col(
        "Object",
        (o) =>
          `${str(get(o, "involvedObject.kind")).toLowerCase()}/${str(get(o, "involvedObject.name"))}`,
      ),
      col("Message", (o) => str(o.message)),
    ],
  }),
  served(resources.persistentVolumes, {
    shortNames: ["pv"],
    statusSubresource: true,
    fieldPaths: { quantities: ["spec.capacity.*"], times: ["status.lastPhaseTransitionTime"] },
    metaValidatedTwice: false,
    columns: [
      col("Capacity", (o) => str(get(o, "spec.capacity.storage"))),
      col("Access Modes", (o) => accessModes(get(o, "spec.accessModes"))),
      col("Reclaim Policy", (o) => str(get(o, "spec.persistentVolumeReclaimPolicy"))),
      col("Status", phaseOrTerminating),
      col("Claim", (o) => {
        const ref = get(o, "spec.claimRef") as { namespace?: string; name?: string } | undefined;
        return ref?.name ? `${ref.namespace ?? ""}/${ref.name}` : "";
      }),
      col("StorageClass", (o) => str(get(o, "spec.storageClassName"))),
      col("VolumeAttributesClass", (o) => str(get(o, "spec.volumeAttributesClassName"), "<unset>")),
      col("Reason", (o) => str(get(o, "status.reason"))),
      col("VolumeMode", (o) => str(get(o, "spec.volumeMode")), 1),
    ],
    prepareForCreate(obj, now) {
      const spec = ensure(obj, "spec");
      spec.persistentVolumeReclaimPolicy ??= "Retain";
      spec.volumeMode ??= "Filesystem";
      obj.status = { phase: "Pending", lastPhaseTransitionTime: now };
    },
    prepareForUpdate(obj, old, now) {
      const spec = ensure(obj, "spec");
      spec.persistentVolumeReclaimPolicy ??= "Retain";
      spec.volumeMode ??= "Filesystem";
      pvStatusPhaseTime(obj, old, now);
    },
    validateUpdate(obj, old) {
      const spec = (obj.spec ?? {}) as Record<string, unknown>;
      // Objects stored through put() may lack the defaults an update fills in.
      const before = { volumeMode: "Filesystem", ...((old.spec ?? {}) as Record<string, unknown>) };
      const errs: FieldError[] = [];
      const source = pvSource(spec);
      const oldSource = pvSource(before);
      if (!sameJson(source, oldSource)) {
        errs.push({
          type: "FieldValueForbidden",
          field: "spec.persistentvolumesource",
          message: `Forbidden: spec.persistentvolumesource is immutable after creation\n${changedFields(oldSource, source)}`,
        });
      }
      // Kubernetes names this field without its "spec." prefix.
      errs.push(...immutable("volumeMode", spec.volumeMode, before.volumeMode));
      return errs;
    },
    validate(obj) {
      const errs: FieldError[] = [];
      const spec = (obj.spec ?? {}) as Record<string, unknown>;
      if (!nonEmptyArray(spec.accessModes)) {
        errs.push(required("spec.accessModes"));
      }
      const capacity = spec.capacity as Record<string, unknown> | undefined;
      if (!capacity || capacity.storage === undefined) errs.push(required("spec.capacity"));
      const sources = [
        "csi",
        "hostPath",
        "local",
        "nfs",
        "iscsi",
        "fc",
        "flexVolume",
        // In-tree sources, written by CSI migration.
        "awsElasticBlockStore",
        "gcePersistentDisk",
        "azureDisk",
        "azureFile",
        "cinder",
        "vsphereVolume",
        "portworxVolume",
      ];
      if (!sources.some((s) => spec[s] !== undefined && spec[s] !== null)) {
        errs.push(required("spec", "must specify a volume type"));
      }
      const vsphere = spec.vsphereVolume as Record<string, unknown> | undefined;
      if (vsphere && !vsphere.volumePath) errs.push(required("spec.vsphereVolume.volumePath"));
      return errs;
    },
  }),
  served(resources.persistentVolumeClaims, {
    shortNames: ["pvc"],
    statusSubresource: true,
    fieldPaths: {
      quantities: [
        "spec.resources.requests.*",
        "spec.resources.limits.*",
        "status.capacity.*",
        "status.allocatedResources.*",
      ],
      times: ["status.conditions.*.lastProbeTime", "status.conditions.*.lastTransitionTime"],
      nullTimes: ["status.conditions.*.lastProbeTime", "status.conditions.*.lastTransitionTime"],
    },
    listStrategies: { "status.conditions": { strategy: "merge", mergeKey: "type" } },
    columns: [
      col("Status", phaseOrTerminating),
      col("Volume", (o) => str(get(o, "spec.volumeName"))),
      col("Capacity", (o) => str(get(o, "status.capacity.storage"))),
      col("Access Modes", (o) => accessModes(get(o, "status.accessModes"))),
      col("StorageClass", (o) =>
        str(
          get(o, "spec.storageClassName") ??
            o.metadata.annotations?.["volume.beta.kubernetes.io/storage-class"],
        ),
      ),
      col("VolumeAttributesClass", (o) => str(get(o, "spec.volumeAttributesClassName"), "<unset>")),
      col("VolumeMode", (o) => str(get(o, "spec.volumeMode")), 1),
    ],
    prepareForCreate(obj) {
      const spec = ensure(obj, "spec");
      spec.volumeMode ??= "Filesystem";
      obj.status = { phase: "Pending" };
    },
    prepareForUpdate(obj) {
      const spec = ensure(obj, "spec");
      spec.volumeMode ??= "Filesystem";
    },
    validateUpdate(obj, old) {
      // Immutable but for a first volumeName, a first storageClassName (Kubernetes' retroactive
      // default StorageClass assignment) and, on a bound claim, the storage request.
      const spec = { ...((obj.spec ?? {}) as Record<string, unknown>) };
      // Objects stored through put() may lack the defaults an update fills in.
      const before: Record<string, unknown> = {
        volumeMode: "Filesystem",
        ...((old.spec ?? {}) as Record<string, unknown>),
      };
      const unbound = !before.volumeName;
      if (!before.volumeName) before.volumeName = spec.volumeName;
      if (unbound && before.storageClassName === undefined && spec.storageClassName !== undefined) {
        before.storageClassName = spec.storageClassName;
      }
      const bound = get(obj, "status.phase") === "Bound";
      if (bound && get(spec, "resources.requests") !== undefined) {
        const requests = { ...(get(spec, "resources.requests") as Record<string, unknown>) };
        requests.storage = get(before, "resources.requests.storage");
        spec.resources = { ...(spec.resources as Record<string, unknown>), requests };
      }
      if (sameJson(spec, before)) return [];
      return [
        {
          type: "FieldValueForbidden",
          field: "spec",
          message: `Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n${changedFields(before, spec)}`,
        },
      ];
    },
    validate(obj) {
      const errs: FieldError[] = [];
      const spec = (obj.spec ?? {}) as Record<string, unknown>;
      if (!nonEmptyArray(spec.accessModes)) {
        errs.push(required("spec.accessModes", "at least 1 access mode is required"));
      }
      const requests = get(spec, "resources.requests") as Record<string, unknown> | undefined;
      if (!requests || requests.storage === undefined) {
        errs.push(required("spec.resources[storage]"));
      }
      return errs;
    },
  }),
  served(resources.secrets, {
    fieldLabels: ["type"],
    columns: [
      col("Type", (o) => str(o.type)),
      col("Data", (o) => Object.keys((o.data as object | undefined) ?? {}).length, 0, "integer"),
    ],
    prepareForCreate(obj) {
      obj.type ??= "Opaque";
      foldStringData(obj);
    },
    prepareForUpdate(obj) {
      foldStringData(obj);
    },
  }),
  served(resources.nodes, {
    shortNames: ["no"],
    statusSubresource: true,
    fieldLabels: ["spec.unschedulable"],
    storagePrefix: "minions",
    fieldPaths: {
      quantities: ["status.capacity.*", "status.allocatable.*"],
      times: ["status.conditions.*.lastHeartbeatTime", "status.conditions.*.lastTransitionTime"],
      nullTimes: [
        "status.conditions.*.lastHeartbeatTime",
        "status.conditions.*.lastTransitionTime",
      ],
    },
    listStrategies: {
      "status.conditions": { strategy: "merge", mergeKey: "type" },
      "status.addresses": { strategy: "merge", mergeKey: "type" },
    },
  }),
  served(resources.storageClasses, {
    shortNames: ["sc"],
    columns: [
      col("Provisioner", (o) => str(o.provisioner)),
      col("ReclaimPolicy", (o) => str(o.reclaimPolicy)),
      col("VolumeBindingMode", (o) => str(o.volumeBindingMode)),
      col("AllowVolumeExpansion", (o) => o.allowVolumeExpansion === true, 0, "boolean"),
    ],
    prepareForCreate(obj) {
      obj.reclaimPolicy ??= "Delete";
      obj.volumeBindingMode ??= "Immediate";
    },
    validate(obj) {
      return typeof obj.provisioner === "string" && obj.provisioner !== ""
        ? []
        : [required("provisioner")];
    },
    validateUpdate(obj, old) {
      return ["parameters", "provisioner", "reclaimPolicy", "volumeBindingMode"].flatMap((k) =>
        immutable(k, obj[k], old[k]),
      );
    },
  }),
  served(resources.csiNodes, {
    listStrategies: { "spec.drivers": { strategy: "merge", mergeKey: "name" } },
    columns: [
      col(
        "Drivers",
        (o) => (get(o, "spec.drivers") as unknown[] | undefined)?.length ?? 0,
        0,
        "integer",
      ),
    ],
  }),
  served(resources.volumeAttachments, {
    statusSubresource: true,
    statusResetsMeta: true,
    fieldPaths: {
      times: ["status.attachError.time", "status.detachError.time"],
      nullTimes: ["status.attachError.time", "status.detachError.time"],
    },
    columns: [
      col("Attacher", (o) => str(get(o, "spec.attacher"))),
      col("PV", (o) => str(get(o, "spec.source.persistentVolumeName"))),
      col("Node", (o) => str(get(o, "spec.nodeName"))),
      col("Attached", (o) => get(o, "status.attached") === true, 0, "boolean"),
    ],
    prepareForCreate(obj) {
      // A reset status still shows `attached` (no omitempty).
      obj.status = { attached: false };
    },
  }),
  served(resources.csiStorageCapacities, {
    fieldPaths: { quantities: ["capacity", "maximumVolumeSize"] },
    columns: [
      col("StorageClassName", (o) => str(o.storageClassName)),
      col("Capacity", (o) => str(o.capacity)),
    ],
  }),
  served(resources.volumeAttributesClasses, {
    shortNames: ["vac"],
    columns: [col("DriverName", (o) => str(o.driverName))],
  }),
  served(resources.events, {
    shortNames: ["ev"],
    fieldPaths: {
      times: ["deprecatedFirstTimestamp", "deprecatedLastTimestamp"],
      microTimes: ["eventTime", "series.lastObservedTime"],
    },
    fromStored: eventV1Shape,
    fieldLabels: [
      "regarding.kind",
      "regarding.namespace",
      "regarding.name",
      "regarding.uid",
      "regarding.apiVersion",
      "regarding.resourceVersion",
      "regarding.fieldPath",
      "reason",
      "reportingController",
      "type",
    ],
  }),
  served(resources.leases, {
    fieldPaths: { microTimes: ["spec.acquireTime", "spec.renewTime"] },
    columns: [col("Holder", (o) => str(get(o, "spec.holderIdentity")))],
  }),
  served(resources.volumeSnapshots, {
    shortNames: ["vs"],
    statusSubresource: true,
    custom: true,
    columns: [
      col("ReadyToUse", (o) => str(get(o, "status.readyToUse"))),
      col("SourcePVC", (o) => str(get(o, "spec.source.persistentVolumeClaimName"))),
      col("RestoreSize", (o) => str(get(o, "status.restoreSize"))),
      col("SnapshotClass", (o) => str(get(o, "spec.volumeSnapshotClassName"))),
      col("SnapshotContent", (o) => str(get(o, "status.boundVolumeSnapshotContentName"))),
    ],
    prepareForCreate(obj) {
      delete obj.status;
    },
  }),
  served(resources.volumeSnapshotContents, {
    shortNames: ["vsc", "vscs"],
    statusSubresource: true,
    custom: true,
    columns: [
      col("ReadyToUse", (o) => str(get(o, "status.readyToUse"))),
      col("RestoreSize", (o) => str(get(o, "status.restoreSize"))),
      col("DeletionPolicy", (o) => str(get(o, "spec.deletionPolicy"))),
      col("Driver", (o) => str(get(o, "spec.driver"))),
      col("VolumeSnapshot", (o) => str(get(o, "spec.volumeSnapshotRef.name"))),
    ],
    prepareForCreate(obj) {
      delete obj.status;
    },
  }),
];

/** Finds a served resource by group, version and plural. */
export function findServed(
  group: string,
  version: string,
  plural: string,
): ServedResource | undefined {
  return servedResources.find(
    (r) => r.group === group && r.version === version && r.plural === plural,
  );
}

/** The served resource a `Resource` descriptor names. */
export function servedFor(r: Resource): ServedResource {
  const found = findServed(r.group, r.version, r.plural);
  if (!found) throw new Error(`Resource is not served: ${r.group}/${r.version}/${r.plural}`);
  return found;
}

/** The served resource an object's `apiVersion` and `kind` name. */
export function servedForObject(obj: KubeObject): ServedResource | undefined {
  return servedResources.find(
    (r) => apiVersionOfServed(r) === obj.apiVersion && r.kind === obj.kind,
  );
}
