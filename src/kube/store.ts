/**
 * The informer cache: objects keyed by `namespace/name` (or `name` for cluster-scoped objects),
 * with a UID index and optional custom indexes. It holds only a *projection* of each object (the
 * fields the controllers read, see `projections.ts`), so memory per cached object stays small.
 *
 * Every mutation returns the list of {@link StoreEvent}s it caused, in the order a handler must
 * see them; the informer turns them into add/update/delete notifications. The store never
 * compares resourceVersions other than for equality: they are opaque strings.
 */
import type { KubeObject } from "./objects.ts";

/** A change caused by one store mutation. */
export type StoreEvent<P> =
  | { type: "add"; obj: P }
  | { type: "update"; old: P; obj: P }
  | { type: "delete"; obj: P };

/** Returns the values under which an object is indexed (empty: not indexed). */
export type IndexFunc<P> = (obj: P) => readonly string[];

export interface StoreOptions<T extends KubeObject, P extends KubeObject> {
  /**
   * Reduces an object as the API returns it to what is cached. It must keep
   * `metadata.name`, `metadata.namespace`, `metadata.uid` and `metadata.resourceVersion`.
   * Default: the object itself, unchanged.
   */
  project?: (obj: T) => P;
  /** Custom indexes by name, for {@link Store.byIndex}. Default: none. */
  indexers?: Record<string, IndexFunc<P>>;
  /**
   * Keep the UID index behind {@link Store.getByUid}. Default true. A Map entry costs about
   * 150 bytes on JavaScriptCore, so a store nobody looks up by UID (20,000 PVs: 3 MiB) goes
   * without; `getByUid` then throws.
   */
  uidIndex?: boolean;
}

/** `namespace/name`, or `name` for a cluster-scoped object. */
export function objectKey(obj: { metadata: { name?: string; namespace?: string } }): string {
  const { name = "", namespace } = obj.metadata;
  return namespace ? `${namespace}/${name}` : name;
}

/** Splits a key made by {@link objectKey}. */
export function splitKey(key: string): { namespace?: string; name: string } {
  const i = key.indexOf("/");
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** The read side of a {@link Store}, for code that must not write to an informer's cache. */
export interface ReadonlyStore<P extends KubeObject> {
  get(key: string): P | undefined;
  /** Throws when the store keeps no UID index (`uidIndex: false`). */
  getByUid(uid: string): P | undefined;
  list(): P[];
  keys(): string[];
  byIndex(name: string, value: string): P[];
  readonly size: number;
  readonly resourceVersion: string | undefined;
}

export class Store<T extends KubeObject, P extends KubeObject = T> implements ReadonlyStore<P> {
  readonly #project: (obj: T) => P;
  readonly #indexers: [string, IndexFunc<P>][];
  readonly #items = new Map<string, P>();
  readonly #byUid: Map<string, string> | undefined;
  /** index name → index value → keys. */
  readonly #indexes = new Map<string, Map<string, Set<string>>>();
  #resourceVersion: string | undefined;

  constructor(opts: StoreOptions<T, P> = {}) {
    this.#project = opts.project ?? ((obj: T) => obj as unknown as P);
    this.#indexers = Object.entries(opts.indexers ?? {});
    this.#byUid = (opts.uidIndex ?? true) ? new Map() : undefined;
    for (const [name] of this.#indexers) this.#indexes.set(name, new Map());
  }

  /** The resourceVersion of the last list or event applied (opaque). */
  get resourceVersion(): string | undefined {
    return this.#resourceVersion;
  }

  /** Records the resourceVersion the cache is current at (list, event or bookmark). */
  setResourceVersion(rv: string | undefined): void {
    if (rv) this.#resourceVersion = rv;
  }

  get size(): number {
    return this.#items.size;
  }

  get(key: string): P | undefined {
    return this.#items.get(key);
  }

  /** The object with this UID; throws when the store was made without `uidIndex`. */
  getByUid(uid: string): P | undefined {
    if (!this.#byUid) throw new Error("This store keeps no UID index (uidIndex: false)");
    const key = this.#byUid.get(uid);
    return key === undefined ? undefined : this.#items.get(key);
  }

  list(): P[] {
    return [...this.#items.values()];
  }

  keys(): string[] {
    return [...this.#items.keys()];
  }

  /** Objects whose index function returned `value` for index `name`; throws on an unknown index. */
  byIndex(name: string, value: string): P[] {
    const index = this.#indexes.get(name);
    if (!index) throw new Error(`Unknown store index: ${name}`);
    const keys = index.get(value);
    if (!keys) return [];
    const out: P[] = [];
    for (const k of keys) {
      const obj = this.#items.get(k);
      if (obj) out.push(obj);
    }
    return out;
  }

  /** Projects an object as this store would cache it. */
  project(obj: T): P {
    return this.#project(obj);
  }

  /**
   * Adds or replaces one object (from an ADDED or MODIFIED event, or a write the caller made).
   * An object whose UID differs from the cached one under the same key was deleted and
   * re-created: that is reported as a delete followed by an add.
   */
  upsert(obj: T): StoreEvent<P>[] {
    return this.#upsertProjected(this.#project(obj));
  }

  /**
   * Removes one object (from a DELETED event). The event carries the object's final state;
   * nothing happens when the key is not cached or is cached under another UID.
   */
  delete(obj: T): StoreEvent<P>[] {
    const p = this.#project(obj);
    const key = objectKey(p);
    const old = this.#items.get(key);
    if (!old) return [];
    if (p.metadata.uid && old.metadata.uid && p.metadata.uid !== old.metadata.uid) return [];
    this.#remove(key, old);
    return [{ type: "delete", obj: p }];
  }

  /**
   * Replaces the whole content with a fresh list (after a list or relist) and returns the delta:
   * deletes for cached objects that vanished (or were re-created under a new UID), then adds for
   * new objects and updates for objects whose resourceVersion changed, in list order. Objects
   * whose resourceVersion is unchanged produce no event.
   */
  replace(items: readonly T[], resourceVersion: string | undefined): StoreEvent<P>[] {
    return this.replaceProjected(
      items.map((item) => this.#project(item)),
      resourceVersion,
    );
  }

  /**
   * {@link replace} with items already passed through {@link project}. With `emit` false the
   * delta is not built (nobody listens yet: the first list of an informer) and `[]` is returned.
   *
   * Into an empty store (the first list) the items go straight in, in list order, with no copy
   * of the list in between: at 20,000 objects that copy, its keys and its events were most of
   * the memory the first sync took on top of the cache itself (bench/README.md).
   */
  replaceProjected(
    items: readonly P[],
    resourceVersion: string | undefined,
    emit = true,
  ): StoreEvent<P>[] {
    const events: StoreEvent<P>[] = [];
    if (this.#items.size === 0) {
      for (const p of items) {
        // A key listed twice (never from a real API server) is an update of the first.
        const changes = this.#upsertKeyed(objectKey(p), p);
        if (emit) for (const e of changes) events.push(e);
      }
      this.setResourceVersion(resourceVersion);
      return events;
    }
    const fresh = new Map<string, P>();
    for (const p of items) fresh.set(objectKey(p), p);
    for (const [key, old] of this.#items) {
      const next = fresh.get(key);
      if (!next || (next.metadata.uid && old.metadata.uid !== next.metadata.uid)) {
        this.#remove(key, old);
        if (emit) events.push({ type: "delete", obj: old });
      }
    }
    for (const [key, p] of fresh) {
      const old = this.#items.get(key);
      if (old && old.metadata.resourceVersion === p.metadata.resourceVersion) continue;
      const changes = this.#upsertKeyed(key, p);
      if (emit) for (const e of changes) events.push(e);
    }
    this.setResourceVersion(resourceVersion);
    return events;
  }

  #upsertProjected(p: P): StoreEvent<P>[] {
    return this.#upsertKeyed(objectKey(p), p);
  }

  #upsertKeyed(key: string, p: P): StoreEvent<P>[] {
    const old = this.#items.get(key);
    if (!old) {
      this.#insert(key, p);
      return [{ type: "add", obj: p }];
    }
    if (p.metadata.uid && old.metadata.uid && p.metadata.uid !== old.metadata.uid) {
      this.#remove(key, old);
      this.#insert(key, p);
      return [
        { type: "delete", obj: old },
        { type: "add", obj: p },
      ];
    }
    this.#unindex(key, old);
    this.#insert(key, p);
    return [{ type: "update", old, obj: p }];
  }

  #insert(key: string, p: P): void {
    this.#items.set(key, p);
    if (p.metadata.uid) this.#byUid?.set(p.metadata.uid, key);
    for (const [name, fn] of this.#indexers) {
      const index = this.#indexes.get(name)!;
      for (const value of fn(p)) {
        const keys = index.get(value);
        if (keys) keys.add(key);
        else index.set(value, new Set([key]));
      }
    }
  }

  #remove(key: string, old: P): void {
    this.#items.delete(key);
    this.#unindex(key, old);
  }

  #unindex(key: string, old: P): void {
    const uid = old.metadata.uid;
    if (uid && this.#byUid?.get(uid) === key) this.#byUid.delete(uid);
    for (const [name, fn] of this.#indexers) {
      const index = this.#indexes.get(name)!;
      for (const value of fn(old)) {
        const keys = index.get(value);
        if (!keys) continue;
        keys.delete(key);
        if (keys.size === 0) index.delete(value);
      }
    }
  }
}
