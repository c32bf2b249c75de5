/**
 * An in-memory Lease client for leader-election tests: optimistic concurrency on
 * resourceVersion, watches, scripted failures and requests that hang until cancelled. Every
 * answer is a resolved promise, so after `settle()` (one turn of the event loop) every elector
 * has done all it can without the clock moving.
 */
import { setImmediate } from "node:timers";
import type { ResourceClient, WatchOptions, WatchStream } from "../../src/kube/api.ts";
import { KubeApiError } from "../../src/kube/errors.ts";
import type { Lease, WatchEvent } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";

type Verb = "get" | "create" | "update" | "watch";

/** Lets every pending promise chain run (no time passes on the fake clock). */
export async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}

function apiError(verb: string, status: number, reason: string, detail: string): KubeApiError {
  return new KubeApiError({ kind: "api", status, reason, verb, target: "leases", detail });
}

export class MemoryLeases implements ResourceClient<Lease> {
  readonly resource = resources.leases;
  #objects = new Map<string, Lease>();
  #rv = 0;
  #watchers = new Set<(ev: WatchEvent<Lease>) => void>();
  #faults: { verbs: Verb[]; status: number; remaining: number }[] = [];
  #hang = new Set<Verb>();
  /** Requests received, by verb (failed ones included). */
  readonly calls: Record<Verb, number> = { get: 0, create: 0, update: 0, watch: 0 };

  /** The next `count` requests of these verbs fail with `status` (500 by default). */
  fail(verbs: Verb[], count = 1, status = 500): void {
    this.#faults.push({ verbs, status, remaining: count });
  }

  /** Requests of these verbs hang until their signal aborts (an API server that stopped answering). */
  hang(verbs: Verb[]): void {
    for (const v of verbs) this.#hang.add(v);
  }

  /** Removes failures and hangs. */
  heal(): void {
    this.#faults = [];
    this.#hang.clear();
  }

  /** A copy of the stored Lease. */
  stored(name: string, namespace = "kube-system"): Lease | undefined {
    const l = this.#objects.get(`${namespace}/${name}`);
    return l ? structuredClone(l) : undefined;
  }

  /** Writes a Lease as another party would (e.g. another replica taking it over). */
  put(lease: Lease): Lease {
    const key = `${lease.metadata.namespace}/${lease.metadata.name}`;
    const existed = this.#objects.has(key);
    const stored = structuredClone(lease);
    stored.metadata.resourceVersion = String(++this.#rv);
    stored.metadata.uid ??= this.#objects.get(key)?.metadata.uid ?? `uid-${this.#rv}`;
    this.#objects.set(key, stored);
    this.#emit({ type: existed ? "MODIFIED" : "ADDED", object: stored });
    return structuredClone(stored);
  }

  /** Ends every open watch (the connection dropped). */
  dropWatches(): void {
    for (const w of [...this.#watchers]) w({ type: "ERROR", object: {} as Lease });
  }

  get openWatches(): number {
    return this.#watchers.size;
  }

  #emit(ev: WatchEvent<Lease>): void {
    for (const w of this.#watchers) w({ type: ev.type, object: structuredClone(ev.object) });
  }

  async #gate(verb: Verb, signal: AbortSignal | undefined): Promise<void> {
    this.calls[verb]++;
    if (this.#hang.has(verb)) {
      await new Promise<void>((_, reject) => {
        const fail = () => reject(apiError(verb, 0, "", "request cancelled"));
        if (signal?.aborted) fail();
        else signal?.addEventListener("abort", fail, { once: true });
      });
    }
    const fault = this.#faults.find((f) => f.remaining > 0 && f.verbs.includes(verb));
    if (fault) {
      fault.remaining--;
      throw apiError(verb, fault.status, "InternalError", "injected failure");
    }
  }

  async get(name: string, namespace = "default", opts?: { signal?: AbortSignal }): Promise<Lease> {
    await this.#gate("get", opts?.signal);
    const l = this.#objects.get(`${namespace}/${name}`);
    if (!l) throw apiError("get", 404, "NotFound", `leases "${name}" not found`);
    return structuredClone(l);
  }

  async create(obj: Lease, opts?: { signal?: AbortSignal }): Promise<Lease> {
    await this.#gate("create", opts?.signal);
    const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
    if (this.#objects.has(key)) {
      throw apiError(
        "create",
        409,
        "AlreadyExists",
        `leases "${obj.metadata.name}" already exists`,
      );
    }
    return this.put(obj);
  }

  async update(obj: Lease, opts?: { signal?: AbortSignal }): Promise<Lease> {
    await this.#gate("update", opts?.signal);
    const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
    const current = this.#objects.get(key);
    if (!current)
      throw apiError("update", 404, "NotFound", `leases "${obj.metadata.name}" not found`);
    if (obj.metadata.resourceVersion !== current.metadata.resourceVersion) {
      throw apiError("update", 409, "Conflict", "the object has been modified");
    }
    return this.put(obj);
  }

  async watch(opts?: WatchOptions): Promise<WatchStream<Lease>> {
    await this.#gate("watch", opts?.signal);
    const name = /^metadata\.name=(.*)$/.exec(opts?.fieldSelector ?? "")?.[1];
    const queue: WatchEvent<Lease>[] = [];
    let notify: (() => void) | undefined;
    let ended = false;
    const push = (ev: WatchEvent<Lease>) => {
      if (ev.type !== "ERROR" && name !== undefined && ev.object.metadata.name !== name) return;
      if (ev.type !== "ERROR" && opts?.namespace && ev.object.metadata.namespace !== opts.namespace)
        return;
      queue.push(ev);
      notify?.();
    };
    for (const l of this.#objects.values()) push({ type: "ADDED", object: structuredClone(l) });
    const watchers = this.#watchers;
    watchers.add(push);
    const end = () => {
      ended = true;
      watchers.delete(push);
      notify?.();
    };
    opts?.signal?.addEventListener("abort", end, { once: true });
    return {
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            const ev = queue.shift();
            if (ev) {
              yield ev;
              if (ev.type === "ERROR") return;
              continue;
            }
            if (ended) return;
            await new Promise<void>((r) => {
              notify = r;
            });
            notify = undefined;
          }
        } finally {
          end();
        }
      },
    };
  }

  list(): never {
    throw new Error("not used by leader election");
  }
  updateStatus(): never {
    throw new Error("not used by leader election");
  }
  patch(): never {
    throw new Error("not used by leader election");
  }
  delete(): never {
    throw new Error("not used by leader election");
  }
}

/** A promise with its resolver. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
