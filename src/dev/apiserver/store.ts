/**
 * The versioned object store: objects by bucket (`persistentvolumeclaims`,
 * `storageclasses.storage.k8s.io`) and key (`namespace/name`, or `name` when cluster-scoped),
 * one global resourceVersion counter shared by every bucket (as etcd's revision is), and a
 * bounded history of changes. The history serves watches that resume from a resourceVersion
 * and lists at an older resourceVersion (pagination); anything older than the history is
 * "compacted" and answers 410 Gone.
 *
 * Stored objects are never mutated in place; readers get copies.
 */
import type { KubeObject } from "../../kube/objects.ts";

export type ChangeType = "ADDED" | "MODIFIED" | "DELETED";

export interface Change {
  rv: number;
  bucket: string;
  key: string;
  type: ChangeType;
  /** The new state; for DELETED, the last state carrying the deletion's resourceVersion. */
  object: KubeObject;
  /** The state before the change (MODIFIED and DELETED). */
  prev?: KubeObject;
}

export interface StoreState {
  resourceVersion: number;
  buckets: Record<string, KubeObject[]>;
}

/** The storage key of an object: `namespace/name` or `name`. */
export function keyOf(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

function byteCompare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class VersionedStore {
  #rv: number;
  #compacted: number;
  #buckets = new Map<string, Map<string, KubeObject>>();
  #history: Change[] = [];
  #historyLimit: number;
  #listeners = new Set<(c: Change) => void>();

  /**
   * @param historyLimit changes kept for watch resumption and consistent pagination.
   * @param startRv the resourceVersion before the first write.
   */
  constructor(historyLimit: number, startRv = 0) {
    this.#historyLimit = Math.max(0, historyLimit);
    this.#rv = startRv;
    this.#compacted = startRv;
  }

  /** The latest resourceVersion. */
  get resourceVersion(): number {
    return this.#rv;
  }

  /** Changes at or below this resourceVersion are gone from the history. */
  get compactedRevision(): number {
    return this.#compacted;
  }

  #bucket(bucket: string): Map<string, KubeObject> {
    let b = this.#buckets.get(bucket);
    if (!b) {
      b = new Map();
      this.#buckets.set(bucket, b);
    }
    return b;
  }

  /** The stored object (do not mutate), or undefined. */
  get(bucket: string, key: string): KubeObject | undefined {
    return this.#buckets.get(bucket)?.get(key);
  }

  /** Every stored object of a bucket, sorted by key (as etcd returns them). */
  entries(bucket: string): [string, KubeObject][] {
    return [...(this.#buckets.get(bucket) ?? new Map<string, KubeObject>())].sort((a, b) =>
      byteCompare(a[0], b[0]),
    );
  }

  /**
   * The bucket's objects as they were at `rv`, sorted by key, or undefined when `rv` is older
   * than the history.
   */
  entriesAt(bucket: string, rv: number): [string, KubeObject][] | undefined {
    if (rv >= this.#rv) return this.entries(bucket);
    if (rv < this.#compacted) return undefined;
    const state = new Map(this.#buckets.get(bucket) ?? []);
    for (let i = this.#history.length - 1; i >= 0; i--) {
      const c = this.#history[i]!;
      if (c.rv <= rv) break;
      if (c.bucket !== bucket) continue;
      if (c.type === "ADDED") state.delete(c.key);
      else if (c.prev) state.set(c.key, c.prev);
    }
    return [...state].sort((a, b) => byteCompare(a[0], b[0]));
  }

  /** Changes after `rv` in order, or undefined when some are compacted away. */
  changesAfter(rv: number): Change[] | undefined {
    if (rv < this.#compacted) return undefined;
    const out: Change[] = [];
    for (let i = this.#history.length - 1; i >= 0; i--) {
      const c = this.#history[i]!;
      if (c.rv <= rv) break;
      out.push(c);
    }
    return out.reverse();
  }

  /**
   * Writes `next` (or deletes, when undefined) under a new resourceVersion, which is set on the
   * object's `metadata.resourceVersion`. Returns the change; listeners see it synchronously.
   */
  commit(bucket: string, key: string, next: KubeObject | undefined): Change {
    const b = this.#bucket(bucket);
    const prev = b.get(key);
    if (next === undefined && prev === undefined) {
      throw new Error(`Nothing to delete at ${bucket} ${key}`);
    }
    const rv = ++this.#rv;
    let change: Change;
    if (next === undefined) {
      const last = withRv(prev!, rv);
      b.delete(key);
      change = { rv, bucket, key, type: "DELETED", object: last, prev: prev! };
    } else {
      const stored = withRv(next, rv);
      b.set(key, stored);
      change = prev
        ? { rv, bucket, key, type: "MODIFIED", object: stored, prev }
        : { rv, bucket, key, type: "ADDED", object: stored };
    }
    this.#history.push(change);
    while (this.#history.length > this.#historyLimit) {
      const dropped = this.#history.shift()!;
      this.#compacted = dropped.rv;
    }
    for (const l of this.#listeners) l(change);
    return change;
  }

  /** Drops the whole history: every resourceVersion before the latest becomes too old. */
  compact(): void {
    this.#history = [];
    this.#compacted = this.#rv;
  }

  /** Calls `listener` with every change from now on; returns the unsubscribe function. */
  subscribe(listener: (c: Change) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The whole state, for persistence. */
  dump(): StoreState {
    const buckets: Record<string, KubeObject[]> = {};
    for (const [name, b] of [...this.#buckets].sort((x, y) => byteCompare(x[0], y[0]))) {
      if (b.size === 0) continue;
      buckets[name] = [...b].sort((x, y) => byteCompare(x[0], y[0])).map(([, o]) => o);
    }
    return { resourceVersion: this.#rv, buckets };
  }

  /** Replaces the state with a dump; the history starts empty at its resourceVersion. */
  load(state: StoreState, keyFor: (bucket: string, obj: KubeObject) => string): void {
    this.#buckets.clear();
    for (const [bucket, objs] of Object.entries(state.buckets)) {
      const b = this.#bucket(bucket);
      for (const o of objs) b.set(keyFor(bucket, o), o);
    }
    this.#rv = Math.max(this.#rv, state.resourceVersion);
    this.#history = [];
    this.#compacted = this.#rv;
  }
}

function withRv(obj: KubeObject, rv: number): KubeObject {
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rv) } };
}
