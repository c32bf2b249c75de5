/**
 * Runs the differential case table (cases.ts) against one cluster: per flag set, upstream's
 * sidecar then ours, each over all of the set's claims at once in its own namespace, and
 * returns each case's normalised observation per flavour. Then the bad-flag cases, all at once
 * per flavour. The two flavours never run at the same time against the driver.
 */

import { mkdirSync } from "node:fs";
import * as path from "node:path";
import type { Cluster, CsiCall } from "../cluster.ts";
import { type Flavour, type Sidecar, startSidecar } from "../peers.ts";
import {
  describeExit,
  eventually,
  type ProcessExit,
  type RunningProcess,
  startProcess,
} from "../support.ts";
import {
  BAD_FLAGS,
  type BadFlagCase,
  CASES,
  type Case,
  CLAIM_NS,
  casesOf,
  DRIVER_NODE,
  FLAG_SETS,
  type FlagSet,
  OTHER_NODE,
  SECRETS_NS,
  TOPOLOGY_KEY,
} from "./cases.ts";
import {
  type Json,
  type JsonObject,
  normaliseClaim,
  normaliseEventSources,
  normaliseEvents,
  normalisePv,
  normaliseRequests,
  Tokens,
} from "./normalise.ts";

export type Outcome = "provisioned" | "fails" | "ignored";

export interface Observation {
  outcome: Outcome;
  value: JsonObject;
}

export interface RunOptions {
  cluster: Cluster;
  binDir: string;
  /** Our executable. */
  executable: string;
  logDir: string;
  log?: (line: string) => void;
  /** Only these flag sets (default: all). */
  flagSets?: readonly string[];
  /** Skip the bad-flag cases. */
  skipBadFlags?: boolean;
  /** Receives one line per stage of each phase (for timing). */
  progress?: (line: string) => void;
}

export type Observations = Map<string, Record<Flavour, Observation>>;

/** Longest wait for a stage's claims to settle as their cases expect. */
const SETTLE_MS = 45_000;
/** Longest wait for snapshots to be ready and for deleted claims' volumes to go. */
const DEADLINE_MS = 90_000;
const POLL_MS = 250;
const SNAPSHOT_CLASS = "diff-snapshots";
const VAC = "diff-vac";
const KCM = "persistentvolume-controller";
const ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node";
const PV_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer";
const STATIC_FINALIZER_MS = 10_000;
const FLAVOURS: readonly Flavour[] = ["upstream", "ours"];
/**
 * Flags of every phase, both flavours: -v=5 logs each CSI call; a higher client QPS than the
 * default 5 lets ~40 claims settle in seconds (at 5 queries per second both sidecars' event
 * writes queue behind the PV writes and the suite would measure throttling, not behaviour).
 */
const COMMON_ARGS = ["-v=5", "--kube-api-qps=50", "--kube-api-burst=100"];

type Obj = Record<string, unknown> & {
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    annotations?: Record<string, string>;
    finalizers?: string[];
  };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
};

/* ------------------------------------------------------------------------ */
/* API helpers                                                               */
/* ------------------------------------------------------------------------ */

async function api<T = Obj>(c: Cluster, method: string, p: string, body?: unknown): Promise<T> {
  const r = await c.request(method, p, body);
  if (r.status < 200 || r.status > 299)
    throw new Error(`${method} ${p}: HTTP ${r.status}: ${r.body}`);
  return r.json<T>();
}

async function ensure(c: Cluster, p: string, body: unknown): Promise<void> {
  const r = await c.request("POST", p, body);
  if (r.status !== 201 && r.status !== 409)
    throw new Error(`POST ${p}: HTTP ${r.status}: ${r.body}`);
}

async function getOrUndefined(c: Cluster, p: string): Promise<Obj | undefined> {
  const r = await c.request("GET", p);
  if (r.status === 404) return undefined;
  if (r.status !== 200) throw new Error(`GET ${p}: HTTP ${r.status}: ${r.body}`);
  return r.json<Obj>();
}

async function list(c: Cluster, p: string): Promise<Obj[]> {
  return (await api<{ items: Obj[] }>(c, "GET", p)).items;
}

const claimsPath = (ns: string) => `/api/v1/namespaces/${ns}/persistentvolumeclaims`;
const snapshotsPath = (ns: string) =>
  `/apis/snapshot.storage.k8s.io/v1/namespaces/${ns}/volumesnapshots`;
const className = (k: Case) => `diff-${k.id}`;
const nodeOf = (c: Cluster, v: string) => (v === DRIVER_NODE ? c.nodeName : v);

/* ------------------------------------------------------------------------ */
/* Shared objects                                                            */
/* ------------------------------------------------------------------------ */

/** Nodes, CSINodes, secrets, StorageClasses, the VolumeAttributesClass: once per cluster. */
export async function prepareCluster(c: Cluster, cases: readonly Case[] = CASES): Promise<void> {
  for (const node of [c.nodeName, OTHER_NODE]) {
    await ensure(c, "/api/v1/nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: node, labels: { [TOPOLOGY_KEY]: node, "kubernetes.io/hostname": node } },
    });
    await ensure(c, "/apis/storage.k8s.io/v1/csinodes", {
      apiVersion: "storage.k8s.io/v1",
      kind: "CSINode",
      metadata: { name: node },
      spec: { drivers: [{ name: c.driverName, nodeID: node, topologyKeys: [TOPOLOGY_KEY] }] },
    });
  }
  await ensure(c, "/api/v1/namespaces", {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: SECRETS_NS },
  });
  for (const k of cases) {
    for (const s of k.secrets ?? []) {
      if (s.namespace === SECRETS_NS) await createSecret(c, SECRETS_NS, s.name);
    }
    const cl = k.class;
    await ensure(c, "/apis/storage.k8s.io/v1/storageclasses", {
      apiVersion: "storage.k8s.io/v1",
      kind: "StorageClass",
      metadata: { name: className(k) },
      provisioner: cl.provisioner ?? c.driverName,
      parameters: cl.parameters,
      mountOptions: cl.mountOptions,
      reclaimPolicy: cl.reclaimPolicy ?? "Delete",
      volumeBindingMode: cl.binding ?? "Immediate",
      allowedTopologies: cl.allowedTerms
        ? cl.allowedTerms.map((term) => ({
            matchLabelExpressions: term.map((e) => ({
              key: e.key,
              values: e.values.map((v) => nodeOf(c, v)),
            })),
          }))
        : cl.allowedNodes
          ? [
              {
                matchLabelExpressions: [
                  { key: TOPOLOGY_KEY, values: cl.allowedNodes.map((n) => nodeOf(c, n)) },
                ],
              },
            ]
          : undefined,
    });
  }
  await ensure(c, "/apis/storage.k8s.io/v1/volumeattributesclasses", {
    apiVersion: "storage.k8s.io/v1",
    kind: "VolumeAttributesClass",
    metadata: { name: VAC },
    driverName: c.driverName,
    parameters: { iops: "100" },
  });
  await ensure(c, "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses", {
    apiVersion: "snapshot.storage.k8s.io/v1",
    kind: "VolumeSnapshotClass",
    metadata: { name: SNAPSHOT_CLASS },
    driver: c.driverName,
    deletionPolicy: "Delete",
  });
  // Upstream's rbac.yaml leaves `get secrets` commented out for the deployer to enable when a
  // class names secrets ("uncomment for plugins that require secrets"); deploy/rbac.yaml has it.
  await ensure(c, "/apis/rbac.authorization.k8s.io/v1/clusterroles", {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name: "diff-upstream-secrets" },
    rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["get", "list"] }],
  });
  await ensure(c, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: "diff-upstream-secrets" },
    subjects: [{ kind: "ServiceAccount", name: "csi-provisioner-upstream", namespace: "default" }],
    roleRef: {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "ClusterRole",
      name: "diff-upstream-secrets",
    },
  });
}

async function createSecret(c: Cluster, ns: string, name: string): Promise<void> {
  await ensure(c, `/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name, namespace: ns },
    stringData: { user: "diff", password: `secret-of-${name}` },
  });
}

/* ------------------------------------------------------------------------ */
/* One phase: one flag set, one flavour                                      */
/* ------------------------------------------------------------------------ */

const staticVolumeName = (k: Case, ns: string) => `${ns}-${k.id}`;

/**
 * A PV made by hand for a `staticVolume` case: this driver's CSI volume (a handle the driver
 * does not know; DeleteVolume of an unknown volume succeeds), reclaim Delete, pre-bound to the
 * claim by name.
 */
async function createStaticVolume(c: Cluster, k: Case, ns: string): Promise<void> {
  await api(c, "POST", "/api/v1/persistentvolumes", {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: { name: staticVolumeName(k, ns) },
    spec: {
      capacity: { storage: k.claim.size ?? "1Gi" },
      accessModes: k.claim.accessModes ?? ["ReadWriteOnce"],
      persistentVolumeReclaimPolicy: "Delete",
      storageClassName: className(k),
      claimRef: { kind: "PersistentVolumeClaim", apiVersion: "v1", namespace: ns, name: k.id },
      csi: { driver: c.driverName, volumeHandle: `static-${ns}-${k.id}`, fsType: "ext4" },
    },
  });
}

function claimBody(c: Cluster, k: Case, ns: string): Obj {
  const cl = k.claim;
  const annotations = { ...cl.annotations };
  if (cl.selectedNode) annotations[ANN_SELECTED_NODE] = nodeOf(c, cl.selectedNode);
  let dataSource: Record<string, string> | undefined;
  if (cl.cloneOf) dataSource = { kind: "PersistentVolumeClaim", name: cl.cloneOf };
  if (cl.restoreOf) {
    dataSource = {
      apiGroup: "snapshot.storage.k8s.io",
      kind: "VolumeSnapshot",
      name: `snap-${cl.restoreOf}`,
    };
  }
  if (cl.missingSource) {
    dataSource =
      cl.missingSource.kind === "VolumeSnapshot"
        ? { apiGroup: "snapshot.storage.k8s.io", ...cl.missingSource }
        : { ...cl.missingSource };
  }
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name: k.id, namespace: ns, annotations },
    spec: {
      storageClassName: className(k),
      accessModes: cl.accessModes ?? ["ReadWriteOnce"],
      volumeMode: cl.volumeMode,
      resources: {
        requests: { storage: cl.size ?? "1Gi" },
        limits: cl.limit ? { storage: cl.limit } : undefined,
      },
      selector: cl.selector ? { matchLabels: cl.selector } : undefined,
      dataSource,
      dataSourceRef: cl.populator
        ? { apiGroup: "populator.example.com", kind: "Widget", name: "w" }
        : undefined,
      volumeAttributesClassName: cl.attributesClass,
      volumeName: cl.staticVolume ? staticVolumeName(k, ns) : undefined,
    },
  };
}

interface ClaimState {
  claim: Obj;
  events: Obj[];
}

async function claimStates(c: Cluster, ns: string): Promise<Map<string, ClaimState>> {
  const [claims, events] = await Promise.all([
    list(c, claimsPath(ns)),
    list(c, `/api/v1/namespaces/${ns}/events`),
  ]);
  const out = new Map<string, ClaimState>();
  for (const claim of claims) out.set(claim.metadata!.name!, { claim, events: [] });
  for (const e of events) {
    const io = e.involvedObject as { kind?: string; name?: string } | undefined;
    const s = io?.kind === "PersistentVolumeClaim" ? out.get(io.name ?? "") : undefined;
    if (s && !fromKcm(e)) s.events.push(e);
  }
  return out;
}

function fromKcm(e: Obj): boolean {
  const src = (e.source as { component?: string } | undefined)?.component;
  return src === KCM || e.reportingComponent === KCM;
}

/** What a claim's state says happened: bound, a ProvisioningFailed event, or nothing. */
function outcomeOf(s: ClaimState | undefined): Outcome {
  if (s?.claim.status?.phase === "Bound") return "provisioned";
  return s?.events.some((e) => e.reason === "ProvisioningFailed") ? "fails" : "ignored";
}

/**
 * Whether a claim has reached what its case expects: bound with its `ProvisioningSucceeded`
 * event (a claim bound to a static PV has none), failed (and, for a reschedule, the
 * selected-node annotation removed), or, for "ignored", at once. A transient failure of a claim
 * expected to bind does not count: it is waited for until bound. Both sidecars write events
 * after the PV and at their own pace (ours only from a full rate-limiter bucket), so a claim is
 * not observed between its binding and its event.
 */
function settled(k: Case, s: ClaimState | undefined): boolean {
  if (k.expect === "ignored") return true;
  if (k.expect !== outcomeOf(s)) return false;
  if (k.rescheduled) return s?.claim.metadata?.annotations?.[ANN_SELECTED_NODE] === undefined;
  if (k.expect === "provisioned" && !k.claim.staticVolume) {
    return s?.events.some((e) => e.reason === "ProvisioningSucceeded") === true;
  }
  return true;
}

/**
 * Waits until every claim has settled as its case expects, or SETTLE_MS passes: a claim that
 * never gets there is observed as it is then (the comparison shows what happened instead).
 */
async function waitSettled(
  c: Cluster,
  ns: string,
  cases: Case[],
  what: string,
  progress?: (line: string) => void,
): Promise<void> {
  let pending: string[] = [];
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    const states = await claimStates(c, ns);
    pending = cases.filter((k) => !settled(k, states.get(k.id))).map((k) => k.id);
    if (pending.length === 0) return;
    if (Date.now() > deadline) {
      progress?.(`${what}: not settled after ${SETTLE_MS} ms: ${pending.join(", ")}`);
      return;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

interface PhaseOptions extends RunOptions {
  set: FlagSet;
  flavour: Flavour;
}

/** Runs one flag set with one flavour; returns each case's observation. */
export async function runPhase(o: PhaseOptions): Promise<Map<string, Observation>> {
  const c = o.cluster;
  const cases = casesOf(o.set.id);
  const ns = `diff-${o.flavour === "upstream" ? "up" : "ts"}-${o.set.id}`;
  await ensure(c, "/api/v1/namespaces", {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: ns },
  });
  for (const k of cases) {
    for (const s of k.secrets ?? [])
      if (s.namespace === CLAIM_NS) await createSecret(c, ns, s.name);
  }
  const callsBefore = c.csiCalls().length;
  const env: Record<string, string> = {};
  for (const [key, v] of Object.entries(o.set.env ?? {})) env[key] = nodeOf(c, v);
  const sidecar: Sidecar = await startSidecar(c, {
    flavour: o.flavour,
    binDir: o.binDir,
    executable: o.executable,
    args: [...COMMON_ARGS, ...o.set.args],
    env,
    logDir: o.logDir,
    name: `${o.flavour}-${o.set.id}`,
    log: o.log,
  });
  try {
    // Stage 1: claims without a source. Stage 2: snapshots of sources. Stage 3: the rest.
    const first = cases.filter((k) => !k.claim.cloneOf && !k.claim.restoreOf);
    const later = cases.filter((k) => k.claim.cloneOf || k.claim.restoreOf);
    const say = (what: string) => o.progress?.(`${o.flavour} ${o.set.id}: ${what}`);
    say("sidecar ready");
    for (const k of first) if (k.claim.staticVolume) await createStaticVolume(c, k, ns);
    await Promise.all(first.map((k) => api(c, "POST", claimsPath(ns), claimBody(c, k, ns))));
    await waitSettled(c, ns, first, `${o.flavour} ${o.set.id}`, o.progress);
    say(`${first.length} claims settled`);
    const snapshotSources = [...new Set(later.flatMap((k) => k.claim.restoreOf ?? []))];
    for (const src of snapshotSources) {
      await api(c, "POST", snapshotsPath(ns), {
        apiVersion: "snapshot.storage.k8s.io/v1",
        kind: "VolumeSnapshot",
        metadata: { name: `snap-${src}`, namespace: ns },
        spec: {
          volumeSnapshotClassName: SNAPSHOT_CLASS,
          source: { persistentVolumeClaimName: src },
        },
      });
    }
    for (const src of snapshotSources) {
      await eventually(
        `VolumeSnapshot ${ns}/snap-${src} to be ready`,
        async () => {
          const s = await getOrUndefined(c, `${snapshotsPath(ns)}/snap-${src}`);
          return s?.status?.readyToUse === true ? true : undefined;
        },
        { timeoutMs: DEADLINE_MS, intervalMs: POLL_MS },
      );
    }
    if (snapshotSources.length > 0) say("snapshots ready");
    if (later.length > 0) {
      await Promise.all(later.map((k) => api(c, "POST", claimsPath(ns), claimBody(c, k, ns))));
      await waitSettled(c, ns, later, `${o.flavour} ${o.set.id} (with sources)`, o.progress);
      say(`${later.length} claims with sources settled`);
    }
    const out = await observeAndDelete(o, ns, cases, callsBefore, sidecar);
    say("observed and deleted");
    return out;
  } finally {
    await sidecar.stop();
    o.progress?.(`${o.flavour} ${o.set.id}: sidecar stopped`);
  }
}

async function observeAndDelete(
  o: PhaseOptions,
  ns: string,
  cases: Case[],
  callsBefore: number,
  sidecar: Sidecar,
): Promise<Map<string, Observation>> {
  const c = o.cluster;
  // A static PV gets the sidecar's deletion-protection finalizer some time after binding: give
  // it until STATIC_FINALIZER_MS, then observe whatever is there.
  const statics = cases.filter((k) => k.claim.staticVolume);
  await eventually(
    "static PVs to carry the deletion-protection finalizer",
    async () => {
      for (const k of statics) {
        const pv = await getOrUndefined(c, `/api/v1/persistentvolumes/${staticVolumeName(k, ns)}`);
        if (!pv?.metadata?.finalizers?.includes(PV_FINALIZER)) return undefined;
      }
      return true;
    },
    { timeoutMs: STATIC_FINALIZER_MS, intervalMs: POLL_MS },
  ).catch(() => o.progress?.(`${o.flavour} ${o.set.id}: a static PV has no ${PV_FINALIZER}`));
  const states = await claimStates(c, ns);
  const pvs = new Map<string, Obj>();
  for (const k of cases) {
    const name = states.get(k.id)?.claim.spec?.volumeName as string | undefined;
    if (name) {
      const pv = await getOrUndefined(c, `/api/v1/persistentvolumes/${name}`);
      if (pv) pvs.set(k.id, pv);
    }
  }
  const snapshots = new Map<string, Obj>();
  const snapshotFinalizers = new Map<string, string[]>();
  for (const k of cases) {
    if (!k.claim.restoreOf || snapshots.has(k.claim.restoreOf)) continue;
    const snap = await getOrUndefined(c, `${snapshotsPath(ns)}/snap-${k.claim.restoreOf}`);
    const content = snap?.status?.boundVolumeSnapshotContentName as string | undefined;
    const vsc = content
      ? await getOrUndefined(
          c,
          `/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/${content}`,
        )
      : undefined;
    if (vsc) snapshots.set(k.claim.restoreOf, vsc);
    // The source-protection finalizer a restore adds while it provisions (and removes after).
    snapshotFinalizers.set(k.id, snap?.metadata?.finalizers ?? []);
  }

  // Delete every claim (snapshots first: a snapshot's source claim is protected), then wait
  // until each Delete PV is gone and each Retain PV is Released.
  for (const src of snapshots.keys()) {
    await c.request("DELETE", `${snapshotsPath(ns)}/snap-${src}`);
  }
  for (const k of cases) {
    const pvPath = `/api/v1/persistentvolumes/${pvs.get(k.id)?.metadata?.name}`;
    if (k.lifecycle === "delete-pv-first" && pvs.has(k.id)) {
      await api(c, "DELETE", pvPath);
    } else if (k.lifecycle === "delete-secret-first") {
      for (const sec of k.secrets ?? []) {
        if (sec.namespace === CLAIM_NS)
          await api(c, "DELETE", `/api/v1/namespaces/${ns}/secrets/${sec.name}`);
      }
    } else if (k.lifecycle === "strip-deletion-secrets" && pvs.has(k.id)) {
      const r = await c.request(
        "PATCH",
        pvPath,
        {
          metadata: {
            annotations: {
              "volume.kubernetes.io/provisioner-deletion-secret-name": null,
              "volume.kubernetes.io/provisioner-deletion-secret-namespace": null,
            },
          },
        },
        { contentType: "application/merge-patch+json" },
      );
      if (r.status !== 200) throw new Error(`PATCH ${pvPath}: HTTP ${r.status}: ${r.body}`);
    }
  }
  await Promise.all(cases.map((k) => c.request("DELETE", `${claimsPath(ns)}/${k.id}`)));
  const retained = new Map<string, Obj>();
  let waiting: string[] = [];
  await eventually(
    `${o.flavour} ${o.set.id}: claims and volumes of ${ns} to be deleted`,
    async () => {
      waiting = [];
      if ((await list(c, claimsPath(ns))).length > 0) waiting.push("claims");
      for (const [id, pv] of pvs) {
        const now = await getOrUndefined(c, `/api/v1/persistentvolumes/${pv.metadata!.name}`);
        if (!now) continue;
        if (
          pv.spec?.persistentVolumeReclaimPolicy === "Retain" &&
          now.status?.phase === "Released"
        ) {
          retained.set(id, now);
          continue;
        }
        waiting.push(id);
      }
      return waiting.length === 0 ? true : undefined;
    },
    {
      timeoutMs: DEADLINE_MS,
      intervalMs: POLL_MS,
      describe: () => `waiting: ${waiting.join(", ")}`,
    },
  );
  // A DeleteVolume is logged by the driver a moment after the call; the PV is deleted after it.
  const calls = c.csiCalls().slice(callsBefore);
  const pvEvents = await list(c, "/api/v1/namespaces/default/events");

  const tokens = new Tokens().add(ns, "<ns>");
  for (const k of cases) {
    tokens.addUid(states.get(k.id)?.claim.metadata?.uid, `<uid:${k.id}>`, o.set.uuidLength);
    const pv = pvs.get(k.id);
    tokens.add(
      (pv?.spec?.csi as { volumeHandle?: string } | undefined)?.volumeHandle,
      `<volume:${k.id}>`,
    );
  }
  for (const [src, vsc] of snapshots) {
    tokens.add(
      (vsc.status as { snapshotHandle?: string } | undefined)?.snapshotHandle,
      `<snapshot:${src}>`,
    );
    tokens.add(vsc.metadata?.name, `<snapshotcontent:${src}>`);
  }
  tokens.add(sidecar.httpEndpoint, "<http-endpoint>");

  const out = new Map<string, Observation>();
  for (const k of cases) {
    const s = states.get(k.id);
    const pv = pvs.get(k.id);
    const uid = s?.claim.metadata?.uid ?? "";
    const bare = uid.replaceAll("-", "");
    const forms = [
      uid,
      bare,
      o.set.uuidLength !== undefined ? bare.slice(0, o.set.uuidLength) : bare,
    ];
    const handle = (pv?.spec?.csi as { volumeHandle?: string } | undefined)?.volumeHandle;
    const creates = calls.filter(
      (x) =>
        x.Method.endsWith("/CreateVolume") &&
        uid &&
        forms.some((f) => String(x.Request?.name ?? "").endsWith(f)),
    );
    const deletes = calls.filter(
      (x) => x.Method.endsWith("/DeleteVolume") && handle && x.Request?.volume_id === handle,
    );
    const pvName = pv?.metadata?.name;
    const value: JsonObject = {
      claim: normaliseClaim(s?.claim ?? {}, tokens),
      events: normaliseEvents(s?.events ?? [], tokens),
      eventSources: normaliseEventSources(s?.events ?? [], tokens),
      createVolume: normaliseRequests(requestsOf(creates), tokens),
      createVolumeErrors: normaliseRequests(errorsOf(creates), tokens),
      deleteVolume: normaliseRequests(requestsOf(deletes), tokens),
    };
    const snapFinalizers = snapshotFinalizers.get(k.id);
    if (snapFinalizers) value.sourceSnapshotFinalizers = [...snapFinalizers].sort();
    if (pv) {
      value.pv = normalisePv(pv, tokens);
      const after = retained.get(k.id);
      value.pvAfterClaimDeleted = after
        ? tokens.value({
            phase: (after.status?.phase as string | undefined) ?? null,
            finalizers: [...(after.metadata?.finalizers ?? [])].sort(),
          } as Json)
        : "deleted";
      value.pvEvents = normaliseEvents(
        pvEvents.filter(
          (e) =>
            (e.involvedObject as { name?: string } | undefined)?.name === pvName && !fromKcm(e),
        ),
        tokens,
      );
    }
    out.set(k.id, { outcome: outcomeOf(s), value });
  }

  // Retained volumes: delete the PVs so the next phase's sidecar does not see them.
  for (const pv of retained.values()) {
    const p = `/api/v1/persistentvolumes/${pv.metadata!.name}`;
    await c.request(
      "PATCH",
      p,
      { metadata: { finalizers: null } },
      { contentType: "application/merge-patch+json" },
    );
    await c.request("DELETE", p);
  }
  return out;
}

function requestsOf(calls: CsiCall[]): unknown[] {
  return calls.map((x) => x.Request);
}

function errorsOf(calls: CsiCall[]): unknown[] {
  return calls.flatMap((x) => (x.Error ? [x.Error] : []));
}

/* ------------------------------------------------------------------------ */
/* Bad flags                                                                 */
/* ------------------------------------------------------------------------ */

const BAD_FLAG_DEADLINE_MS = 6_000;

/**
 * `exit code N` or `signal NAME`. support.ts reads the shell's `$?`, which is 128+N for a signal
 * but also 255 for `exit(255)` (klog's Fatal): a "signal" numbered beyond the real ones is an
 * exit code.
 */
export function exitStatus(e: ProcessExit): string {
  const unnamed = e.signal ? /^SIG(\d+)$/.exec(e.signal) : null;
  if (unnamed) return `exit code ${128 + Number(unnamed[1])}`;
  return describeExit(e);
}

/** Runs every bad-flag case with one flavour at once; returns `exit code N`, or "still running". */
export async function runBadFlags(
  o: RunOptions & { flavour: Flavour; kubeconfig: string },
  cases: readonly BadFlagCase[] = BAD_FLAGS,
): Promise<Map<string, Observation>> {
  const bin = o.flavour === "ours" ? o.executable : path.join(o.binDir, "csi-provisioner-upstream");
  const procs = cases.map((k) => ({
    k,
    p: startProcess({
      name: `${o.flavour}-${k.id}`,
      bin,
      args: [`--csi-address=${o.cluster.csiSocket}`, `--kubeconfig=${o.kubeconfig}`, ...k.args],
      env: k.env,
      logFile: path.join(o.logDir, `${o.flavour}-badflag-${k.id}.log`),
      log: o.log,
    }) as RunningProcess,
  }));
  const out = new Map<string, Observation>();
  await Promise.all(
    procs.map(async ({ k, p }) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<"running">((r) => {
        timer = setTimeout(() => r("running"), BAD_FLAG_DEADLINE_MS);
      });
      const exit = await Promise.race([p.exited, deadline]);
      clearTimeout(timer);
      if (exit === "running") await p.stop(2_000);
      const code = exit === "running" ? "still running" : exitStatus(exit);
      out.set(k.id, {
        outcome: code === "exit code 0" ? "provisioned" : "fails",
        value: { exit: code },
      });
    }),
  );
  return out;
}

/* ------------------------------------------------------------------------ */
/* Everything                                                                */
/* ------------------------------------------------------------------------ */

/** All flag sets (upstream, then ours, per set), then the bad flags. */
export async function runAll(o: RunOptions): Promise<Observations> {
  mkdirSync(o.logDir, { recursive: true });
  await prepareCluster(o.cluster);
  const obs: Observations = new Map();
  const put = (flavour: Flavour, m: Map<string, Observation>) => {
    for (const [id, v] of m) {
      const cur = obs.get(id) ?? ({} as Record<Flavour, Observation>);
      cur[flavour] = v;
      obs.set(id, cur);
    }
  };
  for (const set of FLAG_SETS) {
    if (o.flagSets && !o.flagSets.includes(set.id)) continue;
    for (const flavour of FLAVOURS) put(flavour, await runPhase({ ...o, set, flavour }));
  }
  if (!o.skipBadFlags) {
    const kubeconfig = await o.cluster.kubeconfigFor({
      namespace: "default",
      name: "csi-provisioner",
    });
    for (const flavour of FLAVOURS) put(flavour, await runBadFlags({ ...o, flavour, kubeconfig }));
  }
  return obs;
}
