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
 * Intents are stored as annotations on coordination.k8s.io Lease objects in the provisioner's
 * namespace (upstream's RBAC already grants full access to Leases there), all labelled
 * {@link JOURNAL_LABEL} so that one LIST reads them back.
 *
 * Capacity grows with the claims in flight: the API limits the annotations of one object to
 * 256 KiB counted in UTF-8 bytes (keys and values), so each Lease is filled up to
 * `maxShardBytes` *bytes* and a new Lease (`…-provisioning-intents-<n>`) is created when every
 * existing one is full. An intent bigger than one Lease (a StorageClass may carry 256 KiB of
 * parameters) is split into parts (`<uid>.<k>.<n>`), possibly on several Leases; it counts as
 * recorded only once every part is stored, and a partial one found at start-up (a crash while
 * recording or removing it) is ignored and removed — CreateVolume was not called before all its
 * parts were durable, or its removal had begun.
 *
 * Writes are group-committed per Lease: while one write is in flight, new changes queue up and
 * the next write carries all of them, so a burst of claims costs a few writes in total rather
 * than two per claim (a PVC finalizer would cost an add and a remove per claim). What a write
 * carries is decided when it gets its rate-limiter token, so under throttling it also carries
 * every change made while it waited in line with the PV writes. A Lease's next write starts
 * `commitWindowMs` after its previous one, or as soon as `commitBatch` additions are pending (the
 * workers that could add more are busy or waiting for it: a longer wait only adds latency).
 * Removals are not urgent: they ride along with the next addition or are flushed after
 * `removeDelayMs`. Journal writes go at normal priority (an addition gates a CreateVolume; a
 * flush at shutdown gates the hand-over), ahead of events.
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
  /** Reads every Lease of the journal; call once before use. Returns the intents found. */
  load(signal?: AbortSignal): Promise<Intent[]>;
  /** Resolves once `intent` is durably stored. Rejects with the API error if the write failed. */
  record(intent: Intent, signal?: AbortSignal): Promise<void>;
  /** Schedules removal of the intent of claim `uid` (batched, best effort until flushed). */
  clear(uid: string): void;
  get(uid: string): Intent | undefined;
  list(): Intent[];
  /** Writes every pending change now. */
  flush(signal?: AbortSignal): Promise<void>;
  /**
   * Ends this replica's writes (it handed over or lost the Lease): changes not written yet are
   * forgotten and no write is retried, until the next `load()`. Nothing is lost for safety: an
   * intent not yet stored had not reached CreateVolume, and a removal not yet stored is redone by
   * the next leader when it finds the claim's PV saved.
   */
  abandon(): void;
  /** API writes made so far. */
  readonly writes: number;
  /** Journal Leases known (stored or about to be created). */
  readonly leaseCount: number;
}

export interface JournalOptions {
  leases: ResourceClient<Lease>;
  namespace: string;
  /** Driver name; the Lease names derive from it. */
  driverName: string;
  clock: Clock;
  logger: Logger;
  /**
   * Leases that intents are spread over before more are created (parallel writes). Default 1:
   * one Lease group-commits best; more are created when it is full.
   */
  shards?: number;
  /** Removals wait at most this long for a ride on an addition. Default 5000 ms. */
  removeDelayMs?: number;
  /**
   * A write starts at least this long after the previous one of its Lease ended, so that the
   * claims arriving meanwhile share it (group commit). Default 250 ms; not applied by `flush()`.
   */
  commitWindowMs?: number;
  /**
   * A write does not wait out the commit window once this many additions are pending: the
   * claims that could still join it are held by workers that are busy or waiting for it, so
   * waiting longer only adds latency. With W workers and a backlog, about W − commitBatch of
   * them are past the journal at any time, so a smaller batch keeps more of them working; each
   * batch costs one write. Default: a quarter of `--worker-threads` (set by the caller), else 50.
   */
  commitBatch?: number;
  /**
   * Largest annotation payload per Lease, in UTF-8 bytes of keys and values (Kubernetes allows
   * 262,144). Default 250,000.
   */
  maxShardBytes?: number;
}

export const INTENT_ANNOTATION_PREFIX = "intent.csi-provisioner.storage.k8s.io/";
/** Label on every journal Lease, so that one LIST reads them all. */
export const JOURNAL_LABEL = "csi-provisioner.storage.k8s.io/intent-journal";
/** The API's limit on the annotations of one object (keys and values, UTF-8 bytes). */
export const ANNOTATIONS_MAX_BYTES = 256 * 1024;

function leaseBase(driverName: string): string {
  const base = driverName
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, "-")
    .replace(/^[^a-z0-9]+/, "")
    .slice(0, 200);
  return `${base || "driver"}-provisioning-intents-`;
}

/** A DNS-label-safe Lease name for shard `i` of `driverName`'s journal. */
export function journalLeaseName(driverName: string, i: number): string {
  return `${leaseBase(driverName)}${i}`;
}

/** Length of `s` in UTF-8 bytes, as the API counts it. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/** Splits `s` into pieces of at most `maxBytes` UTF-8 bytes, never inside a character. */
function splitUtf8(s: string, maxBytes: number): string[] {
  const out: string[] = [];
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < s.length; ) {
    const c = s.charCodeAt(i);
    let len = 1;
    let b: number;
    if (c < 0x80) b = 1;
    else if (c < 0x800) b = 2;
    else if (c >= 0xd800 && c <= 0xdbff && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      b = 4;
      len = 2;
    } else b = 3;
    if (bytes + b > maxBytes) {
      out.push(s.slice(start, i));
      start = i;
      bytes = 0;
    }
    bytes += b;
    i += len;
  }
  out.push(s.slice(start));
  return out;
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

/** One Lease of the journal. Keys are annotation keys without {@link INTENT_ANNOTATION_PREFIX}. */
interface Shard {
  name: string;
  lease?: Lease;
  /** Intent annotations as stored. */
  stored: Map<string, string>;
  /** Bytes of the Lease's other annotations. */
  otherBytes: number;
  /** Bytes of each entry the Lease will hold once pending changes are written. */
  reserved: Map<string, number>;
  reservedBytes: number;
  adds: Map<string, { value: string; waiters: Waiter[] }>;
  removes: Set<string>;
  /** When the last write of this Lease ended (clock ms). */
  lastWrite?: number;
  /** Keys added by the write in flight. */
  inflight: Set<string>;
  writing?: Promise<void>;
  removeTimer?: AbortController;
  /** Ends the commit window early (enough additions are pending). */
  windowTimer?: AbortController;
}

/** Where one recorded (or being recorded) intent lives. */
interface Entry {
  intent: Intent;
  json: string;
  parts: { shard: Shard; key: string }[];
  /** Settles when every part is stored. */
  durable: Promise<void>;
}

const entryBytes = (key: string, value: string) =>
  utf8Length(INTENT_ANNOTATION_PREFIX) + utf8Length(key) + utf8Length(value);

function sameEntries(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** `<uid>` for a whole intent, `<uid>.<k>.<n>` for part k of n. */
function parseKey(key: string): { uid: string; k: number; n: number } {
  const m = /^(.*)\.(\d+)\.(\d+)$/.exec(key);
  if (!m) return { uid: key, k: 0, n: 1 };
  return { uid: m[1]!, k: Number(m[2]), n: Number(m[3]) };
}

export function createIntentJournal(opts: JournalOptions): IntentJournal {
  const baseCount = Math.max(1, opts.shards ?? 1);
  const removeDelay = opts.removeDelayMs ?? 5000;
  const commitWindow = opts.commitWindowMs ?? 250;
  const commitBatch = Math.max(1, opts.commitBatch ?? 50);
  let flushing = 0;
  const maxBytes = Math.min(opts.maxShardBytes ?? 250_000, ANNOTATIONS_MAX_BYTES);
  // Room for a part's key (prefix + uid + ".k.n").
  const partBytes = maxBytes - 160;
  const base = leaseBase(opts.driverName);
  const shards: Shard[] = [];
  const entries = new Map<string, Entry>();
  let writes = 0;
  /** Set by `abandon()`, cleared by `load()`: no write starts. */
  let abandoned = false;

  const newShard = (i: number): Shard => ({
    name: `${base}${i}`,
    stored: new Map(),
    otherBytes: 0,
    reserved: new Map(),
    reservedBytes: 0,
    adds: new Map(),
    removes: new Set(),
    inflight: new Set(),
  });
  const shardAt = (i: number): Shard => {
    while (shards.length <= i) shards.push(newShard(shards.length));
    return shards[i]!;
  };
  for (let i = 0; i < baseCount; i++) shardAt(i);

  const reserve = (shard: Shard, key: string, bytes: number) => {
    shard.reservedBytes += bytes - (shard.reserved.get(key) ?? 0);
    shard.reserved.set(key, bytes);
  };
  const unreserve = (shard: Shard, key: string) => {
    shard.reservedBytes -= shard.reserved.get(key) ?? 0;
    shard.reserved.delete(key);
  };
  const fits = (shard: Shard, key: string, bytes: number) =>
    shard.otherBytes + shard.reservedBytes - (shard.reserved.get(key) ?? 0) + bytes <= maxBytes;

  /** The Lease for a new entry: the preferred one, any other with room, or a new one. */
  const place = (key: string, bytes: number, preferred: number): Shard => {
    const first = shards[preferred % baseCount]!;
    if (fits(first, key, bytes)) return first;
    for (const s of shards) if (fits(s, key, bytes)) return s;
    return shardAt(shards.length);
  };

  const parse = (shard: Shard, lease: Lease) => {
    shard.lease = lease;
    shard.stored.clear();
    shard.reserved.clear();
    shard.reservedBytes = 0;
    shard.otherBytes = 0;
    for (const [k, v] of Object.entries(lease.metadata.annotations ?? {})) {
      if (k.startsWith(INTENT_ANNOTATION_PREFIX)) {
        const key = k.slice(INTENT_ANNOTATION_PREFIX.length);
        shard.stored.set(key, v);
        reserve(shard, key, entryBytes(key, v));
      } else shard.otherBytes += utf8Length(k) + utf8Length(v);
    }
  };

  const fetchShard = async (shard: Shard, signal?: AbortSignal) => {
    try {
      parse(shard, await opts.leases.get(shard.name, opts.namespace, { signal }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      shard.lease = undefined;
      shard.stored.clear();
      shard.otherBytes = 0;
    }
  };

  const annotationsFor = (stored: Map<string, string>, keep: Record<string, string>) => {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(keep))
      if (!k.startsWith(INTENT_ANNOTATION_PREFIX)) out[k] = v;
    for (const [k, v] of stored) out[INTENT_ANNOTATION_PREFIX + k] = v;
    return out;
  };

  /**
   * One write of the shard's pending changes; false when it failed. What is written is decided
   * when the request gets its rate-limiter token (`latest`): changes that arrive while it waits
   * its turn ride along, so under client throttling a few writes carry a whole burst.
   */
  const writeOnce = async (shard: Shard): Promise<boolean> => {
    const adds = new Map<string, { value: string; waiters: Waiter[] }>();
    const removes = new Set<string>();
    /** Moves the shard's pending changes into this write; the latest change of a key wins. */
    const take = () => {
      for (const k of shard.removes) {
        removes.add(k);
        const a = adds.get(k);
        if (a) {
          adds.delete(k);
          shard.inflight.delete(k);
          for (const w of a.waiters) w.resolve();
        }
      }
      shard.removes.clear();
      for (const [k, a] of shard.adds) {
        removes.delete(k);
        const prev = adds.get(k);
        if (prev) {
          prev.value = a.value;
          prev.waiters.push(...a.waiters);
        } else adds.set(k, a);
        shard.inflight.add(k);
      }
      shard.adds.clear();
    };
    const nextEntries = () => {
      const next = new Map(shard.stored);
      for (const k of removes) next.delete(k);
      for (const [k, a] of adds) next.set(k, a.value);
      return next;
    };
    const leaseFor = (next: Map<string, string>): Lease =>
      shard.lease
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
    const settle = () => {
      for (const k of adds.keys()) shard.inflight.delete(k);
    };
    take();
    {
      const next = nextEntries();
      if ((!shard.lease && next.size === 0) || (shard.lease && sameEntries(next, shard.stored))) {
        // Nothing to write (every change was withdrawn or is already stored).
        settle();
        for (const a of adds.values()) for (const w of a.waiters) w.resolve();
        return true;
      }
    }
    for (let attempt = 0; ; attempt++) {
      try {
        let sent = nextEntries();
        const latest = () => {
          take();
          sent = nextEntries();
          return leaseFor(sent);
        };
        writes++;
        const saved = shard.lease
          ? await opts.leases.update(leaseFor(sent), { latest })
          : await opts.leases.create(leaseFor(sent), { latest });
        shard.lease = saved;
        shard.stored = sent;
        settle();
        for (const a of adds.values()) for (const w of a.waiters) w.resolve();
        return true;
      } catch (err) {
        if ((isConflict(err) || isAlreadyExists(err) || isNotFound(err)) && attempt < 5) {
          // Someone else (an older replica, an admin) changed the Lease: re-read and re-apply.
          try {
            await fetchShard(shard);
          } catch {
            // The next attempt reports the error.
          }
          // Re-reading reset the reservations to what is stored: put the pending ones back.
          for (const k of removes) unreserve(shard, k);
          for (const [k, a] of adds) reserve(shard, k, entryBytes(k, a.value));
          for (const [k, a] of shard.adds) reserve(shard, k, entryBytes(k, a.value));
          for (const k of shard.removes) unreserve(shard, k);
          continue;
        }
        settle();
        for (const a of adds.values()) for (const w of a.waiters) w.reject(err);
        // Put removals back so that a later write retries them.
        for (const k of removes) shard.removes.add(k);
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
    if (abandoned) return shard.writing ?? Promise.resolve();
    if (!shard.writing) {
      shard.writing = (async () => {
        try {
          while (!abandoned && (shard.adds.size > 0 || shard.removes.size > 0)) {
            const wait =
              shard.lastWrite === undefined || flushing > 0
                ? 0
                : shard.lastWrite + commitWindow - opts.clock.now();
            if (wait > 0 && shard.adds.size < commitBatch) {
              const window = new AbortController();
              shard.windowTimer = window;
              await opts.clock.sleep(wait, window.signal).catch(() => {});
              shard.windowTimer = undefined;
            }
            const ok = await writeOnce(shard);
            shard.lastWrite = opts.clock.now();
            if (!ok) {
              // Leftover removals are tried again later; additions were rejected to their callers.
              if (!abandoned) scheduleRemoval(shard);
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
    if (shard.removeTimer || abandoned) return;
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

  /** Queues the removal of one stored (or being stored) key, or drops its pending addition. */
  const removeKey = (shard: Shard, key: string) => {
    unreserve(shard, key);
    const pending = shard.adds.get(key);
    if (pending) {
      shard.adds.delete(key);
      for (const w of pending.waiters) w.resolve();
    }
    // Stored, or being stored by the write in flight: either way it must be removed.
    if (!shard.stored.has(key) && !shard.inflight.has(key)) return;
    shard.removes.add(key);
    scheduleRemoval(shard);
  };

  const addKey = (shard: Shard, key: string, value: string): Promise<void> => {
    shard.removes.delete(key);
    reserve(shard, key, entryBytes(key, value));
    return new Promise<void>((resolve, reject) => {
      const pending = shard.adds.get(key);
      if (pending) {
        pending.value = value;
        pending.waiters.push({ resolve, reject });
      } else {
        shard.adds.set(key, { value, waiters: [{ resolve, reject }] });
      }
      if (shard.adds.size >= commitBatch) shard.windowTimer?.abort();
      void kick(shard);
    });
  };

  const dropEntry = (entry: Entry) => {
    for (const { shard, key } of entry.parts) removeKey(shard, key);
  };

  return {
    get writes() {
      return writes;
    },
    get leaseCount() {
      return shards.length;
    },
    async load(signal) {
      // One LIST instead of a GET per Lease: start-up spends little of the client's QPS budget.
      abandoned = false;
      for (const s of shards) {
        s.adds.clear();
        s.removes.clear();
        s.removeTimer?.abort();
        s.removeTimer = undefined;
        s.lease = undefined;
        s.stored.clear();
        s.reserved.clear();
        s.reservedBytes = 0;
        s.otherBytes = 0;
      }
      entries.clear();
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
          const name = lease.metadata.name ?? "";
          if (!name.startsWith(base)) continue;
          const suffix = name.slice(base.length);
          if (!/^\d{1,6}$/.test(suffix)) continue;
          parse(shardAt(Number(suffix)), lease);
        }
        cont = list.metadata.continue || undefined;
      } while (cont);
      // Assemble intents from their parts.
      const found = new Map<
        string,
        { n: number; parts: Map<number, { shard: Shard; key: string; value: string }> }
      >();
      for (const shard of shards) {
        for (const [key, value] of shard.stored) {
          const { uid, k, n } = parseKey(key);
          let f = found.get(uid);
          if (!f) {
            f = { n, parts: new Map() };
            found.set(uid, f);
          }
          if (f.n !== n) f.n = -1;
          f.parts.set(k, { shard, key, value });
        }
      }
      for (const [uid, f] of found) {
        const parts = [...f.parts.entries()].sort((a, b) => a[0] - b[0]).map(([, p]) => p);
        const complete = f.n > 0 && parts.length === f.n && parts.every((_, i) => f.parts.has(i));
        let intent: Intent | undefined;
        const json = parts.map((p) => p.value).join("");
        if (complete) {
          try {
            intent = JSON.parse(json) as Intent;
          } catch (err) {
            opts.logger.error("Ignoring unreadable provisioning intent", {
              lease: `${opts.namespace}/${parts[0]!.shard.name}`,
              key: INTENT_ANNOTATION_PREFIX + parts[0]!.key,
              err,
            });
            continue;
          }
        }
        const entry: Entry = {
          intent: intent ?? ({ uid } as Intent),
          json,
          parts: parts.map(({ shard, key }) => ({ shard, key })),
          durable: Promise.resolve(),
        };
        if (!intent) {
          // Recording or removing it was cut short: CreateVolume never ran on it, or it was done.
          opts.logger.info("Removing an incomplete provisioning intent", {
            uid,
            parts: `${parts.length}/${f.n}`,
          });
          dropEntry(entry);
          continue;
        }
        entries.set(uid, entry);
      }
      return [...entries.values()].map((e) => e.intent);
    },
    record(intent, signal) {
      const json = JSON.stringify(intent);
      const old = entries.get(intent.uid);
      if (old && old.json === json) return old.durable;
      const preferred = fnv32a(intent.uid);
      const whole = entryBytes(intent.uid, json);
      const values =
        whole <= partBytes
          ? [json]
          : splitUtf8(json, partBytes - entryBytes(`${intent.uid}.00.00`, ""));
      const keys =
        values.length === 1
          ? [intent.uid]
          : values.map((_, k) => `${intent.uid}.${k}.${values.length}`);
      const oldParts = old?.parts ?? [];
      const parts: Entry["parts"] = [];
      const writesDone: Promise<void>[] = [];
      for (let k = 0; k < values.length; k++) {
        const key = keys[k]!;
        const value = values[k]!;
        const bytes = entryBytes(key, value);
        const same = oldParts.find((p) => p.key === key);
        const shard =
          same && fits(same.shard, key, bytes) ? same.shard : place(key, bytes, preferred + k);
        writesDone.push(addKey(shard, key, value));
        parts.push({ shard, key });
      }
      for (const p of oldParts)
        if (!parts.some((q) => q.shard === p.shard && q.key === p.key)) removeKey(p.shard, p.key);
      const entry: Entry = { intent, json, parts, durable: Promise.resolve() };
      entry.durable = Promise.all(writesDone).then(
        () => undefined,
        (err) => {
          // Not recorded: forget it, and remove the parts that were stored.
          if (entries.get(intent.uid) === entry) {
            entries.delete(intent.uid);
            dropEntry(entry);
          }
          throw err;
        },
      );
      entry.durable.catch(() => {});
      entries.set(intent.uid, entry);
      if (!signal) return entry.durable;
      if (signal.aborted) return Promise.reject(signal.reason);
      return new Promise<void>((resolve, reject) => {
        // The listener goes once the intent settles: callers pass long-lived signals.
        const onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        entry.durable.then(
          () => {
            signal.removeEventListener("abort", onAbort);
            resolve();
          },
          (err) => {
            signal.removeEventListener("abort", onAbort);
            reject(err);
          },
        );
      });
    },
    clear(uid) {
      const entry = entries.get(uid);
      if (!entry) return;
      entries.delete(uid);
      dropEntry(entry);
    },
    get(uid) {
      return entries.get(uid)?.intent;
    },
    list() {
      return [...entries.values()].map((e) => e.intent);
    },
    abandon() {
      abandoned = true;
      const gone = new Error("the intent journal stopped writing: this replica stopped leading");
      for (const s of shards) {
        s.removeTimer?.abort();
        s.removeTimer = undefined;
        for (const a of s.adds.values()) for (const w of a.waiters) w.reject(gone);
        s.adds.clear();
        s.removes.clear();
      }
    },
    async flush() {
      for (const s of shards) {
        s.removeTimer?.abort();
        s.removeTimer = undefined;
      }
      flushing++;
      try {
        await Promise.all(shards.map((s) => kick(s)));
      } finally {
        flushing--;
      }
    },
  };
}
