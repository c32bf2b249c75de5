/**
 * What kube-apiserver's generic registry does for each verb, over the {@link VersionedStore}:
 * create (generateName, uid, creationTimestamp, defaults, validation, AlreadyExists), update
 * (optimistic concurrency, status subresource, generation, finalizers on terminating objects,
 * no-op updates that write nothing), patch (merge, strategic merge, JSON patch), delete
 * (preconditions, finalizers and deletionTimestamp), list (selectors, pagination at a consistent
 * resourceVersion, 410 for compacted ones) and the events a watch sees.
 *
 * Objects come in and go out in the served shape of the resource; views (core v1 events) are
 * converted to their stored shape here.
 */
import type { KubeObject, WatchEvent } from "../../kube/objects.ts";
import type { Clock, Random } from "../../util/clock.ts";
import { canonicalizeFields, DecodeError } from "./fields.ts";
import {
  apiVersionOfServed,
  type FieldError,
  nameErrors,
  namespacesResource,
  type ServedResource,
  servedFor,
  servedResources,
} from "./kinds.ts";
import {
  clone,
  deepEqual,
  isObject,
  jsonPatch,
  mergePatch,
  PatchError,
  strategicMergePatch,
} from "./patch.ts";
import {
  both,
  fieldValue,
  parseFieldSelector,
  parseLabelSelector,
  type Selector,
} from "./selectors.ts";
import {
  ApiError,
  alreadyExists,
  badRequest,
  conflict,
  expired,
  failure,
  invalid,
  notFound,
  preconditionConflict,
  qualifiedName,
  unsupportedMediaType,
} from "./status.ts";
import { type Change, keyOf, type VersionedStore } from "./store.ts";

export type PatchKind = "merge" | "strategic" | "json";

export interface ListQuery {
  namespace?: string;
  labelSelector?: string | null;
  fieldSelector?: string | null;
  limit?: number;
  continue?: string | null;
  resourceVersion?: string | null;
  resourceVersionMatch?: string | null;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
  continue?: string;
  remainingItemCount?: number;
}

export interface WatchQuery {
  namespace?: string;
  labelSelector?: string | null;
  fieldSelector?: string | null;
  resourceVersion?: string | null;
  resourceVersionMatch?: string | null;
  sendInitialEvents?: boolean;
  allowWatchBookmarks?: boolean;
}

export interface WriteOptions {
  dryRun?: boolean;
}

export interface DeleteOptions extends WriteOptions {
  uid?: string;
  resourceVersion?: string;
}

export interface RegistryOptions {
  store: VersionedStore;
  clock: Clock;
  random: Random;
  uid: () => string;
  /** Reject field selectors a resource does not support, as Kubernetes does; default true. */
  strictFieldSelectors?: boolean;
}

const nameAlphabet = "bcdfghjklmnpqrstvwxz2456789";
const maxGeneratedNameLength = 63 - 5;
const noEvents = Symbol("no events");

/** RFC 3339 with second precision, as metav1.Time serialises. */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

/** A version-4 UUID from a random source. */
export function uuidFrom(random: Random): () => string {
  return () => {
    const b: number[] = [];
    for (let i = 0; i < 16; i++) b.push(Math.floor(random() * 256) & 0xff);
    b[6] = (b[6]! & 0x0f) | 0x40;
    b[8] = (b[8]! & 0x3f) | 0x80;
    const h = b.map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };
}

function encodeContinue(rv: number, start: string): string {
  const json = JSON.stringify({ v: "meta.k8s.io/v1", rv, start });
  const bytes = new TextEncoder().encode(json);
  let bin = "";
  for (const x of bytes) bin += String.fromCharCode(x);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function decodeContinue(token: string): { rv: number; start: string } {
  try {
    const b64 = token.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const parsed = JSON.parse(new TextDecoder().decode(bytes)) as {
      v?: string;
      rv?: number;
      start?: string;
    };
    if (
      parsed.v !== "meta.k8s.io/v1" ||
      typeof parsed.rv !== "number" ||
      typeof parsed.start !== "string"
    ) {
      throw new Error("unknown format");
    }
    return { rv: parsed.rv, start: parsed.start };
  } catch (err) {
    throw badRequest(
      `invalid continue token: continue key is not valid: ${(err as Error).message}`,
    );
  }
}

const continueExpiredMessage =
  "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

function parseRv(value: string, what = "resourceVersion"): number {
  if (!/^\d+$/.test(value)) throw badRequest(`invalid ${what}: ${value}`);
  return Number(value);
}

function sameMetaIgnoringRv(a: KubeObject, b: KubeObject): boolean {
  const strip = (o: KubeObject) => ({
    ...o,
    metadata: { ...o.metadata, resourceVersion: undefined },
  });
  return deepEqual(strip(a), strip(b));
}

/** Everything but metadata and status: what bumps `metadata.generation`. */
function specPart(o: KubeObject): Record<string, unknown> {
  const { metadata: _m, status: _s, ...rest } = o;
  return rest;
}

/** ObjectMeta fields Go leaves out when empty (`omitempty` maps, lists and strings). */
const omitEmptyMeta = [
  "generateName",
  "namespace",
  "selfLink",
  "labels",
  "annotations",
  "ownerReferences",
  "finalizers",
] as const;

/** Drops empty and null ObjectMeta fields, as a round trip through Go's ObjectMeta does. */
function dropEmptyMeta(meta: KubeObject["metadata"]): void {
  const m = meta as Record<string, unknown>;
  for (const k of omitEmptyMeta) {
    const v = m[k];
    if (
      v === null ||
      v === "" ||
      (Array.isArray(v) && v.length === 0) ||
      (isObject(v) && Object.keys(v).length === 0)
    ) {
      delete m[k];
    }
  }
}

/** Decoder errors of a JSON patch body, as kube-apiserver words them (it decodes into `[]jsonPatchOp`). */
function jsonPatchDecodeError(patch: unknown): string | undefined {
  const goType = (v: unknown): string =>
    v === null
      ? "null"
      : Array.isArray(v)
        ? "array"
        : typeof v === "object"
          ? "object"
          : typeof v === "boolean"
            ? "bool"
            : typeof v;
  if (patch === null) return undefined;
  if (!Array.isArray(patch)) {
    return `error decoding patch: json: cannot unmarshal ${goType(patch)} into Go value of type []handlers.jsonPatchOp`;
  }
  const bad = patch.find((op) => op !== null && !isObject(op));
  if (bad !== undefined) {
    return `error decoding patch: json: cannot unmarshal ${goType(bad)} into Go value of type handlers.jsonPatchOp`;
  }
  return undefined;
}

export class Registry {
  readonly store: VersionedStore;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #uid: () => string;
  readonly #strictFields: boolean;

  constructor(opts: RegistryOptions) {
    this.store = opts.store;
    this.#clock = opts.clock;
    this.#random = opts.random;
    this.#uid = opts.uid;
    this.#strictFields = opts.strictFieldSelectors ?? true;
  }

  #now(): string {
    return rfc3339(this.#clock.now());
  }

  /** The served shape of a stored object (a fresh copy). */
  present(res: ServedResource, stored: KubeObject): KubeObject {
    const copy = clone(stored);
    const shaped = res.fromStored ? res.fromStored(copy) : copy;
    return { apiVersion: apiVersionOfServed(res), kind: res.kind, ...shaped };
  }

  #toStored(res: ServedResource, obj: KubeObject): KubeObject {
    return res.toStored ? res.toStored(obj) : obj;
  }

  /** A matcher for the served shape of objects. */
  selector(
    res: ServedResource,
    labelSelector?: string | null,
    fieldSelector?: string | null,
  ): Selector {
    const labels = parseLabelSelector(labelSelector);
    const supported = this.#strictFields
      ? ["metadata.name", "metadata.namespace", ...res.fieldLabels]
      : undefined;
    // Kinds without field labels of their own use the default conversion and its message.
    const rawFields = parseFieldSelector(
      fieldSelector,
      supported,
      res.fieldLabels.length > 0
        ? undefined
        : (label) =>
            `"${label}" is not a known field selector: only "metadata.name", "metadata.namespace"`,
    );
    if (rawFields.empty || Object.keys(res.fieldAliases).length === 0)
      return both(labels, rawFields);
    // Re-parse against an object whose aliased labels hold their values.
    const fields: Selector = {
      empty: false,
      matches: (obj) => {
        const view: Record<string, unknown> = { ...obj };
        for (const [label, path] of Object.entries(res.fieldAliases))
          view[label] = fieldValue(obj, path);
        return rawFields.matches(view as KubeObject);
      },
    };
    return both(labels, fields);
  }

  #namespaceExists(ns: string): boolean {
    return this.store.get(servedFor(namespacesResource).bucket, ns) !== undefined;
  }

  #current(res: ServedResource, ns: string | undefined, name: string): KubeObject {
    const stored = this.store.get(res.bucket, keyOf(res.namespaced ? ns : undefined, name));
    if (!stored) throw notFound(res, name);
    return stored;
  }

  get(res: ServedResource, ns: string | undefined, name: string): KubeObject {
    return this.present(res, this.#current(res, ns, name));
  }

  // ------------------------------------------------------------------ list

  list(res: ServedResource, q: ListQuery): ListResult {
    const match = this.selector(res, q.labelSelector, q.fieldSelector);
    let rv = this.store.resourceVersion;
    let start = "";
    let entries: [string, KubeObject][] | undefined;
    if (q.continue) {
      if (q.resourceVersion) {
        throw badRequest("specifying resource version is not allowed when using continue");
      }
      const token = decodeContinue(q.continue);
      rv = token.rv;
      start = token.start;
      entries = this.store.entriesAt(res.bucket, rv);
      if (!entries) {
        const err = expired(continueExpiredMessage);
        err.status.metadata = { continue: encodeContinue(this.store.resourceVersion, start) };
        throw err;
      }
    } else if (q.resourceVersionMatch === "Exact") {
      if (!q.resourceVersion || q.resourceVersion === "0") {
        throw badRequest(
          'resourceVersionMatch "Exact" is forbidden for resourceVersion "" and "0"',
        );
      }
      rv = parseRv(q.resourceVersion);
      entries = this.store.entriesAt(res.bucket, rv);
      if (!entries) {
        throw expired(`too old resource version: ${rv} (${this.store.compactedRevision + 1})`);
      }
    } else {
      if (q.resourceVersion && q.resourceVersion !== "0") parseRv(q.resourceVersion);
      entries = this.store.entries(res.bucket);
    }
    const prefix = res.namespaced && q.namespace ? `${q.namespace}/` : "";
    const matching: KubeObject[] = [];
    const keys: string[] = [];
    for (const [key, stored] of entries) {
      if (prefix && !key.startsWith(prefix)) continue;
      if (start && key < start) continue;
      const shown = this.present(res, stored);
      if (!match.matches(shown)) continue;
      matching.push(shown);
      keys.push(key);
    }
    const result: ListResult = { items: matching, resourceVersion: String(rv) };
    const limit = q.limit ?? 0;
    if (limit > 0 && matching.length > limit) {
      result.items = matching.slice(0, limit);
      result.continue = encodeContinue(rv, `${keys[limit - 1]}\u0000`);
      if (match.empty) result.remainingItemCount = matching.length - limit;
    }
    return result;
  }

  // ------------------------------------------------------------------ watch

  /**
   * Starts a watch: synchronously emits the initial events (synthetic ADDED for an unset or "0"
   * resourceVersion, the replayed history after a given one), then every matching change until
   * the returned function is called. A resourceVersion older than the history emits one ERROR
   * event (410 Expired) and nothing else.
   */
  watch(
    res: ServedResource,
    q: WatchQuery,
    emit: (ev: WatchEvent) => void,
  ): { stop(): void; expired: boolean } {
    const match = this.selector(res, q.labelSelector, q.fieldSelector);
    const rvParam = q.resourceVersion ?? "";
    const prefix = res.namespaced && q.namespace ? `${q.namespace}/` : "";
    const convert = (c: Change): WatchEvent | typeof noEvents => {
      if (c.bucket !== res.bucket) return noEvents;
      if (prefix && !c.key.startsWith(prefix)) return noEvents;
      if (match.empty) {
        // No selector: the change is the event (DELETED already carries the deletion's version).
        return { type: c.type, object: this.present(res, c.object) };
      }
      const cur = c.type === "DELETED" ? undefined : this.present(res, c.object);
      const prev = c.prev ? this.present(res, c.prev) : undefined;
      const curPass = cur !== undefined && match.matches(cur);
      const prevPass = prev !== undefined && match.matches(prev);
      if (curPass && !prevPass) return { type: "ADDED", object: cur! };
      if (curPass && prevPass) return { type: "MODIFIED", object: cur! };
      if (!curPass && prevPass) {
        prev!.metadata.resourceVersion = String(c.rv);
        return { type: "DELETED", object: prev! };
      }
      return noEvents;
    };
    if (q.sendInitialEvents === true && q.resourceVersionMatch !== "NotOlderThan") {
      throw failure(
        422,
        "Invalid",
        `ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan`,
      );
    }
    const initial = q.sendInitialEvents ?? (rvParam === "" || rvParam === "0");
    if (initial) {
      for (const [key, stored] of this.store.entries(res.bucket)) {
        if (prefix && !key.startsWith(prefix)) continue;
        const shown = this.present(res, stored);
        if (match.matches(shown)) emit({ type: "ADDED", object: shown });
      }
      if (q.sendInitialEvents === true && q.allowWatchBookmarks) {
        emit({
          type: "BOOKMARK",
          object: this.bookmarkObject(res, { "k8s.io/initial-events-end": "true" }),
        });
      }
    } else if (rvParam !== "" && rvParam !== "0") {
      const from = parseRv(rvParam);
      const replay = this.store.changesAfter(from);
      if (!replay) {
        const err = expired(
          `too old resource version: ${from} (${this.store.compactedRevision + 1})`,
        );
        emit({ type: "ERROR", object: err.status as unknown as KubeObject });
        return { stop: () => {}, expired: true };
      }
      for (const c of replay) {
        const ev = convert(c);
        if (ev !== noEvents) emit(ev);
      }
    }
    const stop = this.store.subscribe((c) => {
      const ev = convert(c);
      if (ev !== noEvents) emit(ev);
    });
    return { stop, expired: false };
  }

  /** The object of a BOOKMARK event: the kind, with only the current resourceVersion. */
  bookmarkObject(res: ServedResource, annotations?: Record<string, string>): KubeObject {
    const metadata: KubeObject["metadata"] = {
      resourceVersion: String(this.store.resourceVersion),
      creationTimestamp: null as unknown as string,
    };
    if (annotations) metadata.annotations = annotations;
    return { kind: res.kind, apiVersion: apiVersionOfServed(res), metadata };
  }

  // ------------------------------------------------------------------ create

  #checkBody(res: ServedResource, body: unknown): KubeObject {
    if (!isObject(body)) throw badRequest("the request body must be a JSON object");
    const obj = body as unknown as KubeObject;
    if (obj.metadata === undefined || obj.metadata === null) obj.metadata = {};
    if (!isObject(obj.metadata)) throw badRequest("metadata must be an object");
    const want = apiVersionOfServed(res);
    if (
      (obj.apiVersion !== undefined && obj.apiVersion !== want) ||
      (obj.kind !== undefined && obj.kind !== res.kind)
    ) {
      throw badRequest(
        `the object provided is unrecognized (must be of type ${res.kind}): ${String(obj.apiVersion)}, Kind=${String(obj.kind)}`,
      );
    }
    obj.apiVersion = want;
    obj.kind = res.kind;
    return obj;
  }

  #checkNamespace(res: ServedResource, obj: KubeObject, ns: string | undefined): void {
    if (res.namespaced) {
      if (obj.metadata.namespace && ns && obj.metadata.namespace !== ns) {
        throw badRequest(
          "the namespace of the provided object does not match the namespace sent on the request",
        );
      }
      obj.metadata.namespace = ns ?? obj.metadata.namespace;
      if (!obj.metadata.namespace)
        throw badRequest("a namespace must be given for a namespaced resource");
    } else {
      delete obj.metadata.namespace;
    }
  }

  /**
   * What decoding the body into the kind's Go type does: canonical quantities and times, `null`
   * for unset non-pointer times; a value that does not decode answers 400.
   */
  #decode(res: ServedResource, obj: KubeObject): void {
    try {
      canonicalizeFields(obj, res.fieldPaths);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      throw badRequest(
        `${res.kind} in version "${res.version}" cannot be handled as a ${res.kind}: ${err.message}`,
      );
    }
  }

  #invalidIf(res: ServedResource, obj: KubeObject, errs: FieldError[]): void {
    if (errs.length > 0) throw invalid(res.group, res.kind, obj.metadata.name ?? "", errs);
  }

  #generateName(base: string): string {
    let suffix = "";
    for (let i = 0; i < 5; i++) {
      suffix +=
        nameAlphabet[Math.floor(this.#random() * nameAlphabet.length) % nameAlphabet.length];
    }
    return base.slice(0, maxGeneratedNameLength) + suffix;
  }

  create(
    res: ServedResource,
    ns: string | undefined,
    body: unknown,
    opts: WriteOptions = {},
  ): KubeObject {
    const obj = this.#checkBody(res, clone(body));
    this.#decode(res, obj);
    this.#checkNamespace(res, obj, ns);
    const meta = obj.metadata;
    if (meta.resourceVersion) {
      throw badRequest("resourceVersion should not be set on objects to be created");
    }
    const generated = !meta.name && !!meta.generateName;
    if (!meta.name && !meta.generateName) {
      this.#invalidIf(res, obj, [
        {
          type: "FieldValueRequired",
          field: "metadata.name",
          message: "Required value: name or generateName is required",
        },
      ]);
    }
    if (res.namespaced && !this.#namespaceExists(meta.namespace!)) {
      throw notFound({ group: "", plural: "namespaces" }, meta.namespace!);
    }
    if (generated) meta.name = this.#generateName(meta.generateName!);
    const now = this.#now();
    meta.uid = this.#uid();
    meta.creationTimestamp = now;
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    delete meta.managedFields;
    delete meta.selfLink;
    if (res.generation) meta.generation = 1;
    else delete meta.generation;
    dropEmptyMeta(meta);
    res.prepareForCreate?.(obj, now);
    this.#invalidIf(res, obj, [
      ...nameErrors(meta.name!, res === servedFor(namespacesResource) ? "label" : "subdomain"),
      ...(res.validate?.(obj) ?? []),
    ]);
    let key = keyOf(res.namespaced ? meta.namespace : undefined, meta.name!);
    for (let attempt = 0; this.store.get(res.bucket, key); attempt++) {
      if (!generated || attempt >= 7) throw alreadyExists(res, meta.name!);
      meta.name = this.#generateName(meta.generateName!);
      key = keyOf(res.namespaced ? meta.namespace : undefined, meta.name);
    }
    const stored = this.#toStored(res, obj);
    if (opts.dryRun) return this.present(res, stored);
    const change = this.store.commit(res.bucket, key, stored);
    return this.present(res, change.object);
  }

  // ------------------------------------------------------------------ update

  update(
    res: ServedResource,
    ns: string | undefined,
    name: string,
    body: unknown,
    opts: WriteOptions & { subresource?: "status" } = {},
  ): KubeObject {
    const obj = this.#checkBody(res, clone(body));
    this.#decode(res, obj);
    if (obj.metadata.name !== name) {
      throw badRequest(
        `the name of the object (${obj.metadata.name ?? ""}) does not match the name on the URL (${name})`,
      );
    }
    this.#checkNamespace(res, obj, ns);
    const current = this.#current(res, ns, name);
    return this.#update(res, current, this.#toStored(res, obj), opts);
  }

  #update(
    res: ServedResource,
    current: KubeObject,
    incoming: KubeObject,
    opts: WriteOptions & { subresource?: "status" },
  ): KubeObject {
    const name = current.metadata.name!;
    const want = incoming.metadata.resourceVersion;
    if (!want && res.custom) {
      // Custom resources do not allow unconditional updates.
      throw invalid(
        res.group,
        res.plural,
        name,
        [
          {
            type: "FieldValueInvalid",
            field: "metadata.resourceVersion",
            message: "Invalid value: 0: must be specified for an update",
          },
        ],
        qualifiedName(res),
      );
    }
    if (want && want !== current.metadata.resourceVersion) throw conflict(res, name);
    if (incoming.metadata.uid && incoming.metadata.uid !== current.metadata.uid) {
      // The storage layer's precondition error, quoted whole by kube-apiserver.
      const ns = res.namespaced ? `${current.metadata.namespace}/` : "";
      throw conflict(
        res,
        name,
        `StorageError: invalid object, Code: 4, Key: /registry/${res.storagePrefix}/${ns}${name}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: ${incoming.metadata.uid}, UID in object meta: ${current.metadata.uid}`,
      );
    }
    const statusWrite = opts.subresource === "status";
    let next: KubeObject;
    if (statusWrite && res.statusResetsMeta) {
      next = clone(current);
      if (incoming.status === undefined) delete next.status;
      else next.status = clone(incoming.status);
    } else {
      next = clone(incoming);
      const meta = next.metadata;
      const old = current.metadata;
      meta.uid = old.uid;
      meta.creationTimestamp = old.creationTimestamp;
      if (old.deletionTimestamp !== undefined) meta.deletionTimestamp = old.deletionTimestamp;
      else delete meta.deletionTimestamp;
      if (old.deletionGracePeriodSeconds !== undefined) {
        meta.deletionGracePeriodSeconds = old.deletionGracePeriodSeconds;
      } else delete meta.deletionGracePeriodSeconds;
      delete meta.managedFields;
      delete meta.selfLink;
      if (old.generation !== undefined) meta.generation = old.generation;
      else delete meta.generation;
      if (old.generateName !== undefined && meta.generateName === undefined) {
        meta.generateName = old.generateName;
      }
      dropEmptyMeta(meta);
      if (statusWrite) {
        // A status write of PV, PVC, Namespace, Node: the stored spec, the sent metadata and status.
        for (const k of Object.keys(next)) {
          if (k !== "apiVersion" && k !== "kind" && k !== "metadata" && k !== "status") {
            delete next[k];
          }
        }
        for (const [k, v] of Object.entries(specPart(current))) {
          if (k !== "apiVersion" && k !== "kind") next[k] = clone(v);
        }
      } else if (res.statusSubresource) {
        if (current.status === undefined) delete next.status;
        else next.status = clone(current.status);
      }
      if (old.deletionTimestamp) {
        const added = (meta.finalizers ?? []).filter((f) => !(old.finalizers ?? []).includes(f));
        if (added.length > 0) {
          const forbidden: FieldError = {
            type: "FieldValueForbidden",
            field: "metadata.finalizers",
            message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => JSON.stringify(f)).join(", ")}}`,
          };
          this.#invalidIf(res, next, res.metaValidatedTwice ? [forbidden, forbidden] : [forbidden]);
        }
      }
    }
    next.metadata.resourceVersion = current.metadata.resourceVersion;
    const now = this.#now();
    res.prepareForUpdate?.(next, current, now);
    this.#invalidIf(res, next, [
      ...(res.validate?.(next) ?? []),
      ...(res.validateUpdate?.(next, current) ?? []),
    ]);
    if (res.generation && !deepEqual(specPart(next), specPart(current))) {
      next.metadata.generation = (current.metadata.generation ?? 0) + 1;
    }
    const key = keyOf(res.namespaced ? current.metadata.namespace : undefined, name);
    if (current.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) {
      // The update that empties the finalizers deletes the object; like kube-apiserver, the
      // answer is the updated object (at the version it replaced), the watch sees the last
      // stored state as DELETED.
      if (!opts.dryRun) this.store.commit(res.bucket, key, undefined);
      return this.present(res, next);
    }
    if (sameMetaIgnoringRv(next, current)) return this.present(res, current);
    if (opts.dryRun) return this.present(res, next);
    return this.present(res, this.store.commit(res.bucket, key, next).object);
  }

  // ------------------------------------------------------------------ patch

  patch(
    res: ServedResource,
    ns: string | undefined,
    name: string,
    kind: PatchKind,
    patch: unknown,
    opts: WriteOptions & { subresource?: "status" } = {},
  ): KubeObject {
    if (kind === "strategic" && res.custom) {
      throw unsupportedMediaType([
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
      ]);
    }
    if (kind === "json") {
      const decodeError = jsonPatchDecodeError(patch);
      if (decodeError !== undefined) throw badRequest(decodeError);
    }
    const current = this.#current(res, ns, name);
    const shown = this.present(res, current);
    let patched: unknown;
    try {
      if (kind === "merge") patched = mergePatch(shown, patch);
      else if (kind === "json") patched = jsonPatch(shown, patch ?? []);
      else patched = strategicMergePatch(shown, patch, res.listStrategies);
    } catch (err) {
      if (err instanceof PatchError) {
        if (err.malformed) throw badRequest(err.message);
        // kube-apiserver hides why a JSON patch did not apply behind a generic 422.
        if (kind === "json") {
          throw failure(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
            {},
          );
        }
        throw failure(422, "Invalid", err.message);
      }
      throw err;
    }
    const obj = this.#checkBody(res, patched);
    try {
      canonicalizeFields(obj, res.fieldPaths);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      // A patched object that does not decode: kube-apiserver quotes it whole.
      throw invalid("", "", "", [
        {
          type: "FieldValueInvalid",
          field: "patch",
          message: `Invalid value: ${JSON.stringify(JSON.stringify(patched))}: ${err.message}`,
        },
      ]);
    }
    if (obj.metadata.name !== name) {
      throw badRequest(
        `the name of the object (${obj.metadata.name ?? ""}) does not match the name on the URL (${name})`,
      );
    }
    this.#checkNamespace(res, obj, res.namespaced ? current.metadata.namespace : undefined);
    return this.#update(res, current, this.#toStored(res, obj), opts);
  }

  // ------------------------------------------------------------------ delete

  delete(
    res: ServedResource,
    ns: string | undefined,
    name: string,
    opts: DeleteOptions = {},
  ): { object: KubeObject; deleted: boolean } {
    const current = this.#current(res, ns, name);
    if (opts.uid && opts.uid !== current.metadata.uid) {
      throw preconditionConflict(
        res,
        name,
        `the UID in the precondition (${opts.uid}) does not match the UID in record (${current.metadata.uid}). The object might have been deleted and then recreated`,
      );
    }
    if (opts.resourceVersion && opts.resourceVersion !== current.metadata.resourceVersion) {
      throw preconditionConflict(
        res,
        name,
        `the ResourceVersion in the precondition (${opts.resourceVersion}) does not match the ResourceVersion in record (${current.metadata.resourceVersion}). The object might have been modified`,
      );
    }
    const key = keyOf(res.namespaced ? current.metadata.namespace : undefined, name);
    if ((current.metadata.finalizers ?? []).length > 0) {
      if (current.metadata.deletionTimestamp)
        return { object: this.present(res, current), deleted: false };
      const next = clone(current);
      next.metadata.deletionTimestamp = this.#now();
      next.metadata.deletionGracePeriodSeconds = 0;
      // markAsDeleting: objects that keep a generation see it bumped when deletion starts.
      if ((next.metadata.generation ?? 0) > 0) next.metadata.generation! += 1;
      if (opts.dryRun) return { object: this.present(res, next), deleted: false };
      return {
        object: this.present(res, this.store.commit(res.bucket, key, next).object),
        deleted: false,
      };
    }
    if (opts.dryRun) return { object: this.present(res, current), deleted: true };
    if (res === servedFor(namespacesResource)) this.#emptyNamespace(name);
    return {
      object: this.present(res, this.store.commit(res.bucket, key, undefined).object),
      deleted: true,
    };
  }

  /** What the namespace controller does: deletes every object in the namespace. */
  #emptyNamespace(ns: string): void {
    const seen = new Set<string>();
    for (const r of servedResources) {
      if (!r.namespaced || seen.has(r.bucket)) continue;
      seen.add(r.bucket);
      for (const [key, obj] of this.store.entries(r.bucket)) {
        if (!key.startsWith(`${ns}/`)) continue;
        try {
          this.delete(r, ns, obj.metadata.name!);
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
        }
      }
    }
  }

  deleteCollection(res: ServedResource, q: ListQuery, opts: DeleteOptions = {}): ListResult {
    const listed = this.list(res, {
      namespace: q.namespace,
      labelSelector: q.labelSelector,
      fieldSelector: q.fieldSelector,
    });
    const items: KubeObject[] = [];
    for (const item of listed.items) {
      items.push(this.delete(res, item.metadata.namespace, item.metadata.name!, opts).object);
    }
    return { items, resourceVersion: String(this.store.resourceVersion) };
  }

  // ------------------------------------------------------------------ in-process access

  /**
   * Stores `obj` as given, bypassing defaults and validation: fills in `uid`,
   * `creationTimestamp` and `namespace` "default" when missing; replaces an existing object.
   * Emits ADDED or MODIFIED like any write.
   */
  put(res: ServedResource, obj: KubeObject): KubeObject {
    const next = clone(obj);
    next.apiVersion = apiVersionOfServed(res);
    next.kind = res.kind;
    next.metadata ??= {};
    const meta = next.metadata;
    if (!meta.name) {
      if (!meta.generateName) throw new Error("Cannot put an object without a name");
      meta.name = this.#generateName(meta.generateName);
    }
    if (res.namespaced) meta.namespace ||= "default";
    else delete meta.namespace;
    const key = keyOf(meta.namespace, meta.name);
    const existing = this.store.get(res.bucket, key);
    meta.uid ||= existing?.metadata.uid ?? this.#uid();
    meta.creationTimestamp ||= existing?.metadata.creationTimestamp ?? this.#now();
    if (res.generation && meta.generation === undefined) meta.generation = 1;
    return this.present(res, this.store.commit(res.bucket, key, this.#toStored(res, next)).object);
  }

  /** Deletes an object at once, ignoring finalizers. Returns whether it existed. */
  remove(res: ServedResource, ns: string | undefined, name: string): boolean {
    const key = keyOf(res.namespaced ? ns || "default" : undefined, name);
    if (!this.store.get(res.bucket, key)) return false;
    this.store.commit(res.bucket, key, undefined);
    return true;
  }
}
