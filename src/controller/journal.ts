/**
 * The intent journal: crash safety for provisioning at a small API cost.
 *
 * Before the first CreateVolume for a claim, the controller records an *intent* — the claim's
 * identity and the exact CreateVolumeRequest (without secret values) — in the API. The intent
 * is removed once the PV is saved or the volume is deleted again. If the process dies in
 * between, or the claim is deleted while a CreateVolume is in flight, the intent survives; on
 * the next start (or the next sync of that claim) the controller either finishes the claim or
 * replays CreateVolume with the same name and inputs — which the CSI spec makes idempotent and
 * which returns the volume id — and deletes that volume. No volume is leaked (upstream #486).
 *
 * Intents are stored as annotations on a few coordination.k8s.io Lease objects in the
 * provisioner's namespace (upstream's RBAC already grants full access to Leases there).
 * Writes are group-committed per shard: while one write is in flight, new intents queue up and
 * the next write records all of them, so a burst of claims costs a few writes in total rather
 * than two per claim (a PVC finalizer would cost an add and a remove per claim). Removals are
 * not urgent: they ride along with the next addition to their shard or are flushed after
 * `removeDelayMs`.
 */
import type { JsonValue } from "@bufbuild/protobuf";
import type { ResourceClient } from "../kube/api.ts";
import { isAlreadyExists, isConflict, isNotFound } from "../kube/errors.ts";
import type { Lease } from "../kube/objects.ts";
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";

/** What is needed to finish or undo one claim's provisioning after a crash. */
export interface Intent {
  /** Claim UID. */
  uid: string;
  namespace: string;
  name: string;
  /** PV name, which is also the CSI volume name. */
  pvName: string;
  storageClass: string;
  /** The CreateVolumeRequest in protobuf JSON form, `secrets` removed. */
  request: JsonValue;
  /** Where the provisioner secret lives, to fetch it again on replay. */
  secretRef?: { name: string; namespace: string };
}

export interface IntentJournal {
  /** Reads every shard; call once before use. Returns the intents found. */
  load(signal?: AbortSignal): Promise<Intent[]>;
  /** Resolves once `intent` is durably stored. Rejects with the API error if the write failed. */
  record(intent: Intent, signal?: AbortSignal): Promise<void>;
  /** Schedules removal of the intent of claim `uid` (batched, best effort until flushed). */
  clear(uid: string): void;
  get(uid: string): Intent | undefined;
  list(): Intent[];
  /** Writes every pending change now. */
  flush(signal?: AbortSignal): Promise<void>;
  /** API writes made so far. */
  readonly writes: number;
}

export interface JournalOptions {
  leases: ResourceClient<Lease>;
  namespace: string;
  /** Driver name; the Lease names derive from it. */
  driverName: string;
  clock: Clock;
  logger: Logger;
  /** Number of Lease objects intents are spread over. Default 4. */
  shards?: number;
  /** Removals wait at most this long for a ride on an addition. Default 1000 ms. */
  removeDelayMs?: number;
  /** Largest annotation payload per Lease, in bytes (Kubernetes allows 256 KiB). Default 200_000. */
  maxShardBytes?: number;
}

export const INTENT_ANNOTATION_PREFIX = "intent.csi-provisioner.storage.k8s.io/";
/** Label on every journal Lease, so that one LIST reads them all. */
export const JOURNAL_LABEL = "csi-provisioner.storage.k8s.io/intent-journal";

/** A DNS-label-safe Lease name for shard `i` of `driverName`'s journal. */
export function journalLeaseName(driverName: string, i: number): string {
  const base = driverName
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, "-")
    .replace(/^[^a-z0-9]+/, "")
    .slice(0, 200);
  return `${base || "driver"}-provisioning-intents-${i}`;
}

function fnv32a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

interface Shard {
  name: string;
  lease?: Lease;
  intents: Map<string, Intent>;
  adds: Map<string, { intent: Intent; waiters: Waiter[] }>;
  removes: Set<string>;
  /** Removals and additions in the write now in flight (not yet stored, already decided). */
  removing: Set<string>;
  adding: Map<string, Intent>;
  writing?: Promise<void>;
  removeTimer?: AbortController;
}

export function createIntentJournal(opts: JournalOptions): IntentJournal {
  const shardCount = Math.max(1, opts.shards ?? 4);
  const removeDelay = opts.removeDelayMs ?? 1000;
  const maxBytes = opts.maxShardBytes ?? 200_000;
  const shards: Shard[] = Array.from({ length: shardCount }, (_, i) => ({
    name: journalLeaseName(opts.driverName, i),
    intents: new Map(),
    adds: new Map(),
    removes: new Set(),
    removing: new Set(),
    adding: new Map(),
  }));
  let writes = 0;
  const shardOf = (uid: string) => shards[fnv32a(uid) % shardCount]!;

  const parse = (shard: Shard, lease: Lease) => {
    shard.lease = lease;
    shard.intents.clear();
    for (const [k, v] of Object.entries(lease.metadata.annotations ?? {})) {
      if (!k.startsWith(INTENT_ANNOTATION_PREFIX)) continue;
      try {
        const intent = JSON.parse(v) as Intent;
        shard.intents.set(intent.uid, intent);
      } catch (err) {
        opts.logger.error("Ignoring unreadable provisioning intent", {
          lease: `${opts.namespace}/${shard.name}`,
          key: k,
          err,
        });
      }
    }
  };

  const fetchShard = async (shard: Shard, signal?: AbortSignal) => {
    try {
      parse(shard, await opts.leases.get(shard.name, opts.namespace, { signal }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      shard.lease = undefined;
      shard.intents.clear();
    }
  };

  const annotationsFor = (intents: Map<string, Intent>, keep: Record<string, string>) => {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(keep))
      if (!k.startsWith(INTENT_ANNOTATION_PREFIX)) out[k] = v;
    for (const intent of intents.values())
      out[INTENT_ANNOTATION_PREFIX + intent.uid] = JSON.stringify(intent);
    return out;
  };

  /** One write of the shard's pending changes; false when it failed (they stay pending). */
  const writeOnce = async (shard: Shard): Promise<boolean> => {
    const adds = new Map(shard.adds);
    const removes = new Set(shard.removes);
    shard.adds.clear();
    shard.removes.clear();
    for (const uid of removes) shard.removing.add(uid);
    for (const [uid, a] of adds) shard.adding.set(uid, a.intent);
    const settle = () => {
      for (const uid of removes) shard.removing.delete(uid);
      for (const uid of adds.keys()) shard.adding.delete(uid);
    };
    const next = new Map(shard.intents);
    for (const uid of removes) next.delete(uid);
    const accepted: Waiter[] = [];
    let size = 0;
    for (const i of next.values()) size += JSON.stringify(i).length + 64;
    for (const [uid, { intent, waiters }] of adds) {
      const bytes = JSON.stringify(intent).length + 64;
      if (size + bytes > maxBytes && !next.has(uid)) {
        const err = new Error(
          `Provisioning intent journal ${opts.namespace}/${shard.name} is full: too many claims in flight`,
        );
        for (const w of waiters) w.reject(err);
        continue;
      }
      size += bytes;
      next.set(uid, intent);
      accepted.push(...waiters);
    }
    for (let attempt = 0; ; attempt++) {
      try {
        const lease: Lease = shard.lease
          ? {
              ...shard.lease,
              metadata: {
                ...shard.lease.metadata,
                annotations: annotationsFor(next, shard.lease.metadata.annotations ?? {}),
              },
            }
          : {
              apiVersion: "coordination.k8s.io/v1",
              kind: "Lease",
              metadata: {
                name: shard.name,
                namespace: opts.namespace,
                labels: {
                  "app.kubernetes.io/managed-by": "csi-provisioner",
                  [JOURNAL_LABEL]: "true",
                },
                annotations: annotationsFor(next, {}),
              },
              spec: {},
            };
        writes++;
        const saved = shard.lease
          ? await opts.leases.update(lease)
          : await opts.leases.create(lease);
        shard.lease = saved;
        shard.intents = next;
        settle();
        for (const w of accepted) w.resolve();
        return true;
      } catch (err) {
        if ((isConflict(err) || isAlreadyExists(err) || isNotFound(err)) && attempt < 5) {
          // Someone else (an older replica, an admin) changed the Lease: re-read and re-apply.
          const before = shard.intents;
          await fetchShard(shard);
          for (const uid of removes) shard.intents.delete(uid);
          for (const [uid, intent] of next)
            if (!before.has(uid) || adds.has(uid)) shard.intents.set(uid, intent);
          next.clear();
          for (const [uid, intent] of shard.intents) next.set(uid, intent);
          for (const uid of removes) next.delete(uid);
          continue;
        }
        settle();
        for (const w of accepted) w.reject(err);
        // Put removals back so that a later write retries them.
        for (const uid of removes) shard.removes.add(uid);
        opts.logger.warn("Could not update the intent journal", {
          lease: `${opts.namespace}/${shard.name}`,
          err,
        });
        return false;
      }
    }
  };

  // Writes are not tied to any caller's signal: a write in flight is short and finishing it keeps
  // the journal consistent; a caller that gives up just stops waiting.
  const kick = (shard: Shard): Promise<void> => {
    if (!shard.writing) {
      shard.writing = (async () => {
        try {
          while (shard.adds.size > 0 || shard.removes.size > 0) {
            if (!(await writeOnce(shard))) {
              // Leftover removals are tried again later; additions were rejected to their callers.
              scheduleRemoval(shard);
              break;
            }
          }
        } finally {
          shard.writing = undefined;
        }
      })();
    }
    return shard.writing;
  };

  const scheduleRemoval = (shard: Shard) => {
    if (shard.removeTimer) return;
    const ac = new AbortController();
    shard.removeTimer = ac;
    opts.clock.sleep(removeDelay, ac.signal).then(
      () => {
        shard.removeTimer = undefined;
        if (shard.removes.size > 0) {
          kick(shard).catch((err) =>
            opts.logger.warn("Could not update the intent journal", { err }),
          );
        }
      },
      () => {
        shard.removeTimer = undefined;
      },
    );
  };

  return {
    get writes() {
      return writes;
    },
    async load(signal) {
      // One LIST instead of a GET per shard: start-up spends little of the client's QPS budget.
      const byName = new Map(shards.map((s) => [s.name, s]));
      for (const s of shards) {
        s.lease = undefined;
        s.intents.clear();
      }
      let cont: string | undefined;
      do {
        const list = await opts.leases.list({
          namespace: opts.namespace,
          labelSelector: `${JOURNAL_LABEL}=true`,
          limit: 100,
          continue: cont,
          signal,
        });
        for (const lease of list.items) {
          const shard = byName.get(lease.metadata.name ?? "");
          if (shard) parse(shard, lease);
        }
        cont = list.metadata.continue || undefined;
      } while (cont);
      return shards.flatMap((s) => [...s.intents.values()]);
    },
    record(intent, signal) {
      const shard = shardOf(intent.uid);
      shard.removes.delete(intent.uid);
      const existing = shard.intents.get(intent.uid);
      if (
        existing &&
        !shard.removing.has(intent.uid) &&
        JSON.stringify(existing) === JSON.stringify(intent)
      ) {
        return Promise.resolve();
      }
      return new Promise<void>((resolve, reject) => {
        const pending = shard.adds.get(intent.uid);
        if (pending) {
          pending.intent = intent;
          pending.waiters.push({ resolve, reject });
        } else {
          shard.adds.set(intent.uid, { intent, waiters: [{ resolve, reject }] });
        }
        void kick(shard);
        signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
    },
    clear(uid) {
      const shard = shardOf(uid);
      const pending = shard.adds.get(uid);
      if (pending) {
        shard.adds.delete(uid);
        for (const w of pending.waiters) w.resolve();
      }
      // Stored, or being stored by the write in flight: either way it must be removed.
      if (!shard.intents.has(uid) && !shard.adding.has(uid)) return;
      shard.removes.add(uid);
      scheduleRemoval(shard);
    },
    get(uid) {
      const shard = shardOf(uid);
      const pending = shard.adds.get(uid);
      if (pending) return pending.intent;
      if (shard.removes.has(uid) || shard.removing.has(uid)) return undefined;
      return shard.adding.get(uid) ?? shard.intents.get(uid);
    },
    list() {
      const out: Intent[] = [];
      for (const s of shards) {
        for (const [uid, i] of s.intents) {
          if (!s.removes.has(uid) && !s.removing.has(uid) && !s.adds.has(uid)) out.push(i);
        }
        for (const [uid, p] of s.adds) if (s.intents.has(uid)) out.push(p.intent);
        for (const [uid, p] of s.adds) if (!s.intents.has(uid)) out.push(p.intent);
      }
      return out;
    },
    async flush() {
      for (const s of shards) {
        s.removeTimer?.abort();
        s.removeTimer = undefined;
      }
      await Promise.all(shards.map((s) => kick(s)));
    },
  };
}
