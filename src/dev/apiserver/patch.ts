/**
 * The three patch formats kube-apiserver accepts on PATCH:
 *
 * - `application/merge-patch+json`: RFC 7386 JSON merge patch.
 * - `application/json-patch+json`: RFC 6902 JSON patch (add, remove, replace, move, copy, test).
 * - `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch, driven by a
 *   small per-kind table of list strategies ({@link ListStrategies}). Lists not in the table are
 *   replaced, as in a merge patch. Lists marked `merge` are merged: primitive lists by value
 *   (`metadata.finalizers` is one: `patchStrategy:"merge"` in ObjectMeta), lists of objects by
 *   their merge key (`metadata.ownerReferences` by `uid`). Directives: `$patch: replace | delete |
 *   merge` in a map or a merge-keyed list element, `$deleteFromPrimitiveList/<field>`,
 *   `$setElementOrder/<field>` and `$retainKeys`.
 *
 * All functions are pure: inputs are never modified.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** A patch that cannot be applied. `malformed` ones answer 400, the others 422. */
export class PatchError extends Error {
  readonly malformed: boolean;
  constructor(message: string, malformed = false) {
    super(message);
    this.name = "PatchError";
    this.malformed = malformed;
  }
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => deepEqual(x, b[i]));
  }
  if (isObject(a)) {
    if (!isObject(b)) return false;
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

// ---------------------------------------------------------------- RFC 7386 merge patch

/** Applies an RFC 7386 merge patch. */
export function mergePatch(target: unknown, patch: unknown): Json {
  if (!isObject(patch)) return clone(patch as Json);
  const result: JsonObject = isObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete result[k];
    else result[k] = mergePatch(result[k], v);
  }
  return result;
}

// ---------------------------------------------------------------- RFC 6902 JSON patch

function parsePointer(pointer: unknown): string[] {
  if (typeof pointer !== "string") throw new PatchError("missing or invalid path");
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new PatchError(`invalid JSON pointer: ${pointer}`);
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function arrayIndex(arr: Json[], token: string, forAdd: boolean, pointer: string): number {
  if (forAdd && token === "-") return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) {
    throw new PatchError(`invalid array index "${token}" in ${pointer}`);
  }
  const i = Number(token);
  if (i > arr.length || (!forAdd && i === arr.length)) {
    throw new PatchError(`array index ${i} out of bounds in ${pointer}`);
  }
  return i;
}

function parentOf(doc: Json, tokens: string[], pointer: string): Json {
  let cur: Json = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, t, false, pointer)]!;
    else if (isObject(cur) && Object.hasOwn(cur, t)) cur = cur[t]!;
    else throw new PatchError(`path ${pointer} does not exist`);
  }
  return cur;
}

function getAt(doc: Json, pointer: string): Json {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return doc;
  const parent = parentOf(doc, tokens, pointer);
  const last = tokens[tokens.length - 1]!;
  if (Array.isArray(parent)) return parent[arrayIndex(parent, last, false, pointer)]!;
  if (isObject(parent) && Object.hasOwn(parent, last)) return parent[last]!;
  throw new PatchError(`path ${pointer} does not exist`);
}

function addAt(doc: Json, pointer: string, value: Json): Json {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return value;
  const parent = parentOf(doc, tokens, pointer);
  const last = tokens[tokens.length - 1]!;
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true, pointer), 0, value);
  else if (isObject(parent)) parent[last] = value;
  else throw new PatchError(`path ${pointer} does not exist`);
  return doc;
}

function removeAt(doc: Json, pointer: string): Json {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) throw new PatchError("cannot remove the whole document");
  const parent = parentOf(doc, tokens, pointer);
  const last = tokens[tokens.length - 1]!;
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, false, pointer), 1);
  else if (isObject(parent) && Object.hasOwn(parent, last)) delete parent[last];
  else throw new PatchError(`path ${pointer} does not exist`);
  return doc;
}

function replaceAt(doc: Json, pointer: string, value: Json): Json {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return value;
  const parent = parentOf(doc, tokens, pointer);
  const last = tokens[tokens.length - 1]!;
  if (Array.isArray(parent)) parent[arrayIndex(parent, last, false, pointer)] = value;
  else if (isObject(parent) && Object.hasOwn(parent, last)) parent[last] = value;
  else throw new PatchError(`path ${pointer} does not exist`);
  return doc;
}

/** Applies an RFC 6902 JSON patch (an array of operations). */
export function jsonPatch(target: unknown, ops: unknown): Json {
  if (!Array.isArray(ops)) {
    throw new PatchError("a JSON patch must be an array of operations", true);
  }
  let doc = clone(target as Json);
  for (const raw of ops) {
    if (!isObject(raw)) throw new PatchError("a JSON patch operation must be an object");
    const op = raw.op;
    const path = raw.path as string;
    const needValue = () => {
      if (!Object.hasOwn(raw, "value")) throw new PatchError(`"${op}" operation has no value`);
      return clone(raw.value as Json);
    };
    switch (op) {
      case "add":
        doc = addAt(doc, path, needValue());
        break;
      case "remove":
        doc = removeAt(doc, path);
        break;
      case "replace":
        doc = replaceAt(doc, path, needValue());
        break;
      case "move": {
        const from = raw.from as string;
        const value = clone(getAt(doc, from));
        doc = addAt(removeAt(doc, from), path, value);
        break;
      }
      case "copy":
        doc = addAt(doc, path, clone(getAt(doc, raw.from as string)));
        break;
      case "test": {
        const value = needValue();
        if (!deepEqual(getAt(doc, path), value)) {
          throw new PatchError(`testing value ${path} failed: test failed`);
        }
        break;
      }
      default:
        throw new PatchError(`unexpected kind of operation: ${JSON.stringify(op)}`);
    }
  }
  return doc;
}

// ---------------------------------------------------------------- strategic merge patch

/** How a list at a dotted path (list elements do not add a segment) is patched. */
export interface ListStrategy {
  strategy: "merge";
  /** Field identifying elements of a list of objects; absent for primitive lists. */
  mergeKey?: string;
}

/** List strategies by dotted path, e.g. `metadata.finalizers`. Other lists are replaced. */
export type ListStrategies = Readonly<Record<string, ListStrategy>>;

/** The list strategies of ObjectMeta, shared by every kind. */
export const objectMetaStrategies: ListStrategies = {
  "metadata.finalizers": { strategy: "merge" },
  "metadata.ownerReferences": { strategy: "merge", mergeKey: "uid" },
};

const deletePrefix = "$deleteFromPrimitiveList/";
const orderPrefix = "$setElementOrder/";

function join(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

function stripDirectives(v: Json, path: string, strategies: ListStrategies): Json {
  if (isObject(v)) return smpMap({}, v, path, strategies) ?? {};
  if (Array.isArray(v)) return smpList(undefined, v, path, strategies);
  return v;
}

/** Whether two list elements are the same element: by value, or by merge key. */
function sameElement(a: Json, b: Json, mergeKey: string | undefined): boolean {
  if (mergeKey === undefined) return deepEqual(a, b);
  return isObject(a) && isObject(b) && deepEqual(a[mergeKey], b[mergeKey]);
}

function indexIn(list: readonly Json[], x: Json, mergeKey: string | undefined): number {
  return list.findIndex((y) => sameElement(x, y, mergeKey));
}

/**
 * Orders a merged list the way Kubernetes does: the elements named in `order` (the patch list,
 * or a `$setElementOrder` list) follow that order; the others ("server-only") keep their order in
 * `original`; the two runs are interleaved, a server-only element going first only when both it
 * and the next named element are in `original` and it comes earlier there. So elements new to
 * the list land before the server-only ones.
 */
function orderMerged(
  merged: readonly Json[],
  order: readonly Json[],
  original: readonly Json[],
  mergeKey: string | undefined,
): Json[] {
  const byIndexIn = (list: readonly Json[]) => (a: Json, b: Json) =>
    indexIn(list, a, mergeKey) - indexIn(list, b, mergeKey);
  const named = merged.filter((x) => indexIn(order, x, mergeKey) >= 0).sort(byIndexIn(order));
  const serverOnly = merged
    .filter((x) => indexIn(order, x, mergeKey) < 0)
    .sort(byIndexIn(original));
  const out: Json[] = [];
  let i = 0;
  let j = 0;
  while (i < serverOnly.length || j < named.length) {
    if (i >= serverOnly.length) out.push(named[j++]!);
    else if (j >= named.length) out.push(serverOnly[i++]!);
    else {
      const li = indexIn(original, serverOnly[i]!, mergeKey);
      const ri = indexIn(original, named[j]!, mergeKey);
      if (li >= 0 && ri >= 0 && li < ri) out.push(serverOnly[i++]!);
      else out.push(named[j++]!);
    }
  }
  return out;
}

function smpMap(
  original: JsonObject,
  patch: JsonObject,
  path: string,
  strategies: ListStrategies,
): JsonObject | undefined {
  const directive = patch.$patch;
  if (directive === "delete") return undefined;
  if (directive === "replace") {
    const rest: JsonObject = { ...patch };
    delete rest.$patch;
    return smpMap({}, rest, path, strategies);
  }
  if (directive !== undefined && directive !== "merge") {
    throw new PatchError(`unknown patch type: ${JSON.stringify(directive)} in map`);
  }
  const result: JsonObject = clone(original);
  const done = new Set<string>();
  // $setElementOrder lists first, each with the patch list of the same field.
  for (const [k, order] of Object.entries(patch)) {
    if (!k.startsWith(orderPrefix)) continue;
    if (!Array.isArray(order)) throw new PatchError(`${k} must be a list`, true);
    const field = k.slice(orderPrefix.length);
    const childPath = join(path, field);
    const cur = result[field];
    const list = patch[field];
    const mergeKey = strategies[childPath]?.mergeKey;
    let merged: Json[];
    if (Array.isArray(cur) && Array.isArray(list)) {
      merged = smpList(cur, list, childPath, strategies);
    } else if (Array.isArray(cur)) {
      merged = cur;
    } else if (Array.isArray(list)) {
      merged = smpList(undefined, list, childPath, strategies);
    } else {
      continue;
    }
    result[field] = orderMerged(merged, order, Array.isArray(cur) ? cur : [], mergeKey);
    done.add(field);
  }
  // Deletions from primitive lists apply to the list as it stands, before merging.
  for (const [k, v] of Object.entries(patch)) {
    if (!k.startsWith(deletePrefix)) continue;
    const field = k.slice(deletePrefix.length);
    if (!Array.isArray(v)) throw new PatchError(`${k} must be a list`, true);
    const cur = result[field];
    if (Array.isArray(cur)) result[field] = cur.filter((x) => !v.some((d) => deepEqual(d, x)));
  }
  for (const [k, v] of Object.entries(patch)) {
    if (k === "$patch" || k === "$retainKeys" || done.has(k)) continue;
    if (k.startsWith(deletePrefix) || k.startsWith(orderPrefix)) continue;
    const childPath = join(path, k);
    if (v === null) {
      delete result[k];
    } else if (isObject(v)) {
      const merged = smpMap(isObject(result[k]) ? result[k] : {}, v, childPath, strategies);
      if (merged === undefined) delete result[k];
      else result[k] = merged;
    } else if (Array.isArray(v)) {
      const cur = result[k];
      result[k] = smpList(Array.isArray(cur) ? cur : undefined, v, childPath, strategies);
    } else {
      result[k] = v;
    }
  }
  const retain = patch.$retainKeys;
  if (retain !== undefined) {
    if (!Array.isArray(retain)) throw new PatchError("$retainKeys must be a list", true);
    for (const k of Object.keys(result)) {
      if (!retain.includes(k)) delete result[k];
    }
  }
  return result;
}

function smpList(
  original: Json[] | undefined,
  patch: Json[],
  path: string,
  strategies: ListStrategies,
): Json[] {
  const strategy = strategies[path];
  const replaceAll = patch.some((e) => isObject(e) && e.$patch === "replace");
  if (strategy === undefined || replaceAll || original === undefined) {
    return patch
      .filter((e) => !(isObject(e) && (e.$patch === "replace" || e.$patch === "delete")))
      .map((e) => stripDirectives(e, path, strategies));
  }
  if (original.length === 0 && patch.length === 0) return original;
  const key = strategy.mergeKey;
  if (key === undefined) {
    const merged: Json[] = [];
    for (const x of [...original, ...patch]) {
      if (!merged.some((y) => deepEqual(x, y))) merged.push(clone(x));
    }
    return orderMerged(merged, patch, original, undefined);
  }
  // Lists of objects merged by key: `$patch: delete` elements remove theirs first.
  let base = clone(original);
  const plain: JsonObject[] = [];
  for (const e of patch) {
    if (!isObject(e) || !Object.hasOwn(e, key)) {
      throw new PatchError(`map: ${JSON.stringify(e)} does not contain declared merge key: ${key}`);
    }
    if (e.$patch === "delete") base = base.filter((x) => !sameElement(x, e, key));
    else if (e.$patch !== undefined) {
      throw new PatchError(`unknown patch type: ${JSON.stringify(e.$patch)} in list element`);
    } else plain.push(e);
  }
  const merged = clone(base);
  for (const e of plain) {
    const at = indexIn(merged, e, key);
    if (at >= 0) merged[at] = smpMap(merged[at] as JsonObject, e, path, strategies) ?? {};
    else merged.push(stripDirectives(e, path, strategies));
  }
  return orderMerged(merged, plain, base, key);
}

/** Applies a strategic merge patch to an object. */
export function strategicMergePatch(
  target: unknown,
  patch: unknown,
  strategies: ListStrategies = objectMetaStrategies,
): Json {
  if (!isObject(patch)) throw new PatchError("a strategic merge patch must be an object", true);
  return smpMap(isObject(target) ? target : {}, patch, "", strategies) ?? {};
}
