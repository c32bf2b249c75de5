/**
 * A runner for table tests of provisioning in the spirit of upstream's `provisionTestcases`: one
 * row per behaviour, each against the real sidecar (in-process), the test API server and the
 * fake CSI driver. A row gives the cluster objects, the sidecar flags, the driver's options and
 * scripted answers, and the claim; and expects the exact CreateVolumeRequests (protobuf JSON),
 * the exact PV (metadata and spec) or none, and the claim's events.
 *
 * ```ts
 * it("provisions a plain claim", () =>
 *   runRow({
 *     objects: [storageClass("fast")],
 *     claim: tableClaim("data", "fast", UID),
 *     createVolume: [{ name: `pvc-${UID}`, ... }],
 *     pv: expectedPv(tableClaim("data", "fast", UID), { capacity: "1Gi" }),
 *   }));
 * ```
 *
 * How a row settles, without sleeping: with an expected PV, once the PV and the expected events
 * exist; without one, once the expected events exist; for an `ignored` row (no event, no call),
 * once a sentinel claim created after it is provisioned — with one worker the claim queue is
 * first in, first out, so by then the row's claim was synced and left alone. (A first sentinel,
 * provisioned before the row's claim is created, makes sure both arrive through the watch in
 * order rather than in the sorted replay of the informer's cache.)
 */
import assert from "node:assert/strict";
import { create, type JsonValue, toJson } from "@bufbuild/protobuf";
import {
  CreateVolumeRequestSchema,
  CreateVolumeResponseSchema,
  type Volume,
} from "../../src/gen/csi/v1/csi_pb.js";
import type {
  CoreEvent,
  CSIPersistentVolumeSource,
  KubeObject,
  PersistentVolume,
  PersistentVolumeClaim,
} from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { namespacesResource } from "./apiserver.ts";
import type { FakeDriverOptions, FakeHandler } from "./fake-driver.ts";
import { claim, DRIVER, type Harness, startHarness, storageClass } from "./sidecar-harness.ts";

/** Stands for the provisioner identity in expected PVs (it embeds the start time). */
export const IDENTITY = "<provisioner identity>";
/** Stands for the claim's resourceVersion in an expected PV's claimRef. */
export const CLAIM_RV = "<claim resourceVersion>";
/** `storage.kubernetes.io/csiProvisionerIdentity`. */
export const IDENTITY_KEY = "storage.kubernetes.io/csiProvisionerIdentity";
/** The PV finalizer of reclaim policy Delete. */
export const PV_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer";

const FAST = ["--kube-api-qps=1000", "--kube-api-burst=1000"];
const SENTINEL_CLASS = "table-sentinel";
/** UIDs of the sentinel claims start with this; their volumes are left out of the checks. */
const SENTINEL_UID_PREFIX = "5e5e5e5e-0000-4000-8000-";
const sentinelUid = (n: number) => `${SENTINEL_UID_PREFIX}${String(n).padStart(12, "0")}`;
const isSentinel = (name: string) => name.includes(SENTINEL_UID_PREFIX);
const DEFAULT_DEADLINE_MS = 10_000;

/** An event the claim must get: type, reason, and a substring (or pattern) of the message. */
export interface ExpectedEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string | RegExp;
}

/** What a row's `script` and `check` get. */
export interface RowContext {
  h: Harness;
  /** The claim as stored (uid and resourceVersion filled in). */
  claim: PersistentVolumeClaim;
  /** Resolves with `check()`'s first truthy value; fails after a deadline naming `what`. */
  settle<R>(what: string, check: () => R | undefined | null | false): Promise<R>;
}

export interface TableRow {
  /** Fake driver options: capabilities, topology. */
  driver?: FakeDriverOptions;
  /** Sidecar flags on top of fast API client limits. */
  args?: string[];
  /** Objects stored before the sidecar starts (StorageClasses, Secrets, Nodes, ...). */
  objects?: KubeObject[];
  /** Scripts the driver (or the API server) before the claim is created. */
  script?: (ctx: Omit<RowContext, "claim">) => void;
  /** The claim under test; give it a UID so that expectations can name the volume. */
  claim: PersistentVolumeClaim;
  /**
   * Every CreateVolumeRequest the driver receives, in order, as protobuf JSON
   * (`toJson(CreateVolumeRequestSchema, …)`); `[]` means the driver must never be asked.
   */
  createVolume: JsonValue[];
  /** The volume ids of every DeleteVolume call, in order; default none. */
  deleteVolume?: string[];
  /** The PV (metadata and spec) the sidecar must write; absent: it must write none. */
  pv?: PersistentVolume;
  /**
   * Events the claim must get. `ProvisioningSucceeded` is implied by `pv`. Any Warning event on
   * the claim must match one of these.
   */
  events?: ExpectedEvent[];
  /** The claim must be left alone: no call, no PV, no event (settled by a sentinel claim). */
  ignored?: boolean;
  /** Further checks once the row settled. */
  check?: (ctx: RowContext) => void | Promise<void>;
  /** How long the row may take to settle; default 10 s. */
  deadlineMs?: number;
}

/** A claim for the fake driver with a fixed UID (see `claim()` for the other fields). */
export function tableClaim(
  name: string,
  className: string,
  uid: string,
  extra: Parameters<typeof claim>[2] = {},
): PersistentVolumeClaim {
  const c = claim(name, className, extra);
  return { ...c, metadata: { ...c.metadata, uid } };
}

/**
 * A CreateVolume handler that lets the fake driver create the volume as usual, then changes its
 * answer: `driver.once("createVolume", editVolume((v) => { v.capacityBytes = 0n; }))`.
 */
export function editVolume(edit: (volume: Volume) => void): FakeHandler<"createVolume"> {
  return async (_request, context) => {
    const response = create(CreateVolumeResponseSchema, await context.next());
    if (response.volume) edit(response.volume);
    return response;
  };
}

/** A Mount volume capability as protobuf JSON (empty fsType and flags are omitted, as toJson does). */
export function mountCapability(mode: string, fsType = "", mountFlags: string[] = []): JsonValue {
  const mount: Record<string, JsonValue> = {};
  if (fsType !== "") mount.fsType = fsType;
  if (mountFlags.length > 0) mount.mountFlags = mountFlags;
  return { mount, accessMode: { mode } };
}

/** A Block volume capability as protobuf JSON. */
export function blockCapability(mode: string): JsonValue {
  return { block: {}, accessMode: { mode } };
}

/** `n` GiB in bytes, as the decimal string protobuf JSON uses for int64. */
export function gib(n: number): string {
  return String(BigInt(Math.round(n * 1024)) * 1024n * 1024n);
}

export interface ExpectedPvOptions {
  /** Default `pvc-<claim uid>`. */
  name?: string;
  /** `spec.capacity.storage`, e.g. `1Gi`. */
  capacity: string;
  /** The StorageClass's reclaim policy; default Delete (which brings the finalizer). */
  reclaimPolicy?: "Delete" | "Retain";
  /** Merged over `{ driver, volumeHandle: "id-<name>", volumeAttributes: { identity } }`. */
  csi?: Partial<CSIPersistentVolumeSource>;
  /** Merged over provisioned-by and the empty deletion-secret annotations. */
  annotations?: Record<string, string>;
  /** Merged over the rest of the spec. */
  spec?: Partial<PersistentVolume["spec"]>;
  /** Default: the PV finalizer with reclaim policy Delete, none otherwise. */
  finalizers?: string[];
}

/**
 * The PV the sidecar writes for `c` with the fake driver: upstream's fields (claimRef, CSI source,
 * provisioned-by, deletion-secret annotations, reclaim policy, storageClassName, volume mode as
 * the API server defaults it) with the row's differences merged in.
 */
export function expectedPv(c: PersistentVolumeClaim, o: ExpectedPvOptions): PersistentVolume {
  const name = o.name ?? `pvc-${c.metadata.uid}`;
  const policy = o.reclaimPolicy ?? "Delete";
  const finalizers = o.finalizers ?? (policy === "Delete" ? [PV_FINALIZER] : []);
  return {
    metadata: {
      name,
      annotations: {
        "pv.kubernetes.io/provisioned-by": DRIVER,
        "volume.kubernetes.io/provisioner-deletion-secret-name": "",
        "volume.kubernetes.io/provisioner-deletion-secret-namespace": "",
        ...o.annotations,
      },
      ...(finalizers.length > 0 ? { finalizers } : {}),
    },
    spec: {
      accessModes: c.spec.accessModes ?? [],
      capacity: { storage: o.capacity },
      claimRef: {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        namespace: c.metadata.namespace ?? "default",
        name: c.metadata.name ?? "",
        uid: c.metadata.uid ?? "",
        resourceVersion: CLAIM_RV,
      },
      csi: {
        driver: DRIVER,
        volumeHandle: `id-${name}`,
        volumeAttributes: { [IDENTITY_KEY]: IDENTITY },
        ...o.csi,
      },
      persistentVolumeReclaimPolicy: policy,
      storageClassName: c.spec.storageClassName ?? "",
      volumeMode: c.spec.volumeMode ?? "Filesystem",
      ...o.spec,
    },
  };
}

function eventsOf(h: Harness, uid: string): CoreEvent[] {
  return h.apiserver
    .objects(resources.coreEvents)
    .filter((e) => e.involvedObject.uid === uid)
    .sort((a, b) =>
      (a.metadata.creationTimestamp ?? "").localeCompare(b.metadata.creationTimestamp ?? ""),
    );
}

function matches(e: CoreEvent, want: ExpectedEvent): boolean {
  if (e.type !== want.type || e.reason !== want.reason) return false;
  return typeof want.message === "string"
    ? e.message.includes(want.message)
    : want.message.test(e.message);
}

function describeEvents(events: CoreEvent[]): string {
  if (events.length === 0) return "no events";
  return events.map((e) => `${e.type} ${e.reason}: ${e.message}`).join("\n  ");
}

/** The PV with the identity and the claim's resourceVersion replaced by their placeholders. */
function normalisePv(pv: PersistentVolume, c: PersistentVolumeClaim): PersistentVolume {
  const { uid: _uid, resourceVersion: _rv, creationTimestamp: _ts, ...metadata } = pv.metadata;
  const spec = structuredClone(pv.spec);
  const identity = spec.csi?.volumeAttributes?.[IDENTITY_KEY];
  assert.match(
    identity ?? "",
    /^\d+-\d+-fake\.csi\.k8s\.io$/,
    "the PV's volumeAttributes carry the provisioner identity <unixMillis>-<rand>-<driver>",
  );
  spec.csi!.volumeAttributes![IDENTITY_KEY] = IDENTITY;
  if (spec.claimRef) {
    assert.equal(
      spec.claimRef.resourceVersion,
      c.metadata.resourceVersion,
      "the PV's claimRef names the claim's resourceVersion",
    );
    spec.claimRef.resourceVersion = CLAIM_RV;
  }
  return { metadata, spec };
}

/** Runs one row against a fresh API server, fake driver and sidecar; cleans all of it up. */
export async function runRow(row: TableRow): Promise<void> {
  const h = await startHarness(row.driver ? { driver: row.driver } : {});
  const deadlineMs = row.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const uid = row.claim.metadata.uid;
  assert.ok(uid, "a table row's claim needs a fixed UID");
  const createCalls = () =>
    h.driver.callsTo("createVolume").filter((c) => !isSentinel(c.request.name));
  const settle = async <R>(what: string, check: () => R | undefined | null | false): Promise<R> => {
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), deadlineMs);
    try {
      return await h.apiserver.waitFor(check, { signal: stop.signal });
    } catch (err) {
      if (!stop.signal.aborted) throw err;
      throw new Error(
        `Timed out after ${deadlineMs} ms waiting for ${what}; the claim has ${describeEvents(eventsOf(h, uid))}; CreateVolume calls: ${createCalls().length}`,
      );
    } finally {
      clearTimeout(timer);
    }
  };
  try {
    // Namespaces exist in a real cluster; the test API server refuses events in a missing one.
    const namespaces = new Set(
      [...(row.objects ?? []), row.claim]
        .map((o) => o.metadata.namespace)
        .filter((ns): ns is string => !!ns),
    );
    for (const ns of namespaces) {
      if (!h.apiserver.get(namespacesResource, ns)) {
        h.apiserver.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
      }
    }
    for (const o of row.objects ?? []) h.apiserver.put(o);
    if (row.ignored) h.apiserver.put(storageClass(SENTINEL_CLASS));
    await h.start([...FAST, ...(row.ignored ? ["--worker-threads=1"] : []), ...(row.args ?? [])]);
    // A sentinel claim provisioned through the queue proves that the claim handlers are
    // registered: the row's claim and the second sentinel then reach the one worker in the order
    // they are created (claims already cached at registration are replayed sorted by name).
    const provisionSentinel = async (n: number) => {
      h.apiserver.put(tableClaim(`table-sentinel-${n}`, SENTINEL_CLASS, sentinelUid(n)));
      await settle(`the PV of sentinel claim ${n}`, () =>
        h.apiserver.get(resources.persistentVolumes, `pvc-${sentinelUid(n)}`),
      );
    };
    if (row.ignored) await provisionSentinel(1);
    row.script?.({ h, settle });
    const stored = h.apiserver.put(row.claim);
    const ctx: RowContext = { h, claim: stored, settle };

    const expectedEvents = [...(row.events ?? [])];
    if (row.pv) {
      expectedEvents.push({
        type: "Normal",
        reason: "ProvisioningSucceeded",
        message: `Successfully provisioned volume ${row.pv.metadata.name}`,
      });
    }
    assert.ok(
      row.pv || row.ignored || expectedEvents.length > 0,
      "a row must expect a PV, an event, or that the claim is ignored",
    );

    if (row.ignored) await provisionSentinel(2);
    let pv: PersistentVolume | undefined;
    if (row.pv) {
      const name = row.pv.metadata.name ?? "";
      pv = await settle(`PV ${name}`, () => h.apiserver.get(resources.persistentVolumes, name));
    }
    for (const want of expectedEvents) {
      await settle(`a ${want.type} ${want.reason} event with message ${want.message}`, () =>
        eventsOf(h, uid).some((e) => matches(e, want)),
      );
    }

    // Events: nothing unexpected went wrong, and an ignored claim heard nothing at all.
    const events = eventsOf(h, uid);
    if (row.ignored) {
      assert.deepEqual(
        events,
        [],
        `an ignored claim gets no events, got ${describeEvents(events)}`,
      );
    }
    for (const e of events.filter((ev) => ev.type === "Warning")) {
      assert.ok(
        expectedEvents.some((want) => matches(e, want)),
        `unexpected Warning event ${e.reason}: ${e.message}`,
      );
    }

    // The exact CreateVolumeRequests and DeleteVolume calls.
    assert.deepEqual(
      createCalls().map((c) => toJson(CreateVolumeRequestSchema, c.request)),
      row.createVolume,
      row.createVolume.length === 0
        ? "the driver must not be asked to create a volume"
        : "the exact CreateVolumeRequests",
    );
    assert.deepEqual(
      h.driver
        .callsTo("deleteVolume")
        .map((c) => c.request.volumeId)
        .filter((id) => !isSentinel(id)),
      row.deleteVolume ?? [],
      "the DeleteVolume calls",
    );

    // The exact PV, or none at all.
    const pvs = h.apiserver
      .objects(resources.persistentVolumes)
      .filter((v) => v.spec.claimRef?.uid === uid);
    if (row.pv) {
      assert.equal(pvs.length, 1, "exactly one PV for the claim");
      assert.deepEqual(normalisePv(pv!, stored), row.pv, "the exact PV");
    } else {
      assert.deepEqual(
        pvs.map((v) => v.metadata.name),
        [],
        "no PV may be written for the claim",
      );
    }
    await row.check?.(ctx);
  } finally {
    await h.close();
  }
}
