/**
 * End-to-end scenarios: the compiled provisioner (`dist/csi-provisioner-linux-x64`) against a
 * real control plane (etcd, kube-apiserver, kube-controller-manager from test/e2e/cluster.ts)
 * and csi-driver-host-path's hostpathplugin, as the `csi-provisioner` ServiceAccount bound to
 * deploy/rbac.yaml — so a missing RBAC rule fails the suite.
 *
 * The same scenarios then run against the project's test API server (src/dev/apiserver) with the
 * dev binder (src/dev/binder.ts) in place of kube-controller-manager, so that the two servers
 * must agree on what the provisioner sees. Restarts of kube-apiserver and the 200 claims run
 * against the real control plane only.
 *
 *   export E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)
 *   scripts/build.sh linux-x64              # or E2E_PROVISIONER=/path/to/csi-provisioner
 *   node_modules/.bin/node --test --test-concurrency=1 test/e2e/provisioner.test.ts
 *
 * Skipped when E2E_BIN_DIR is not set. E2E_VERBOSE=1 prints every line the provisioner and the
 * control plane log; E2E_KEEP_DIR=1 keeps the directory with the provisioner and driver logs.
 *
 * Per server, one provisioner serves all scenarios; they run in order, each in its own
 * namespace, and a scenario that leaves the provisioner dead has it restarted by the next. The
 * provisioner reaches the driver through a proxy that can hold the driver's answers back
 * (`CsiProxy.pause()`): that is how a CreateVolume is kept in flight while the provisioner is
 * killed or kube-apiserver restarts.
 */

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { runBinder } from "../../src/dev/binder.ts";
import { noAuth } from "../../src/kube/auth.ts";
import { createKubeApi } from "../../src/kube/client.ts";
import type {
  CoreEvent,
  KubeList,
  KubeObject,
  Lease,
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
} from "../../src/kube/objects.ts";
import { KubeTransport } from "../../src/kube/transport.ts";
import { systemClock } from "../../src/util/clock.ts";
import { nullLogger } from "../../src/util/log.ts";
import { startApiServer } from "../support/apiserver.ts";
import {
  type Cluster,
  type CsiCall,
  freePort,
  HOSTPATH_TOPOLOGY_KEY,
  startCluster,
} from "./cluster.ts";
import { startHostpathDriver } from "./peers.ts";
import {
  type ApiRequest,
  applyManifests,
  type CsiProxy,
  clusterWatchTarget,
  csiCallsIn,
  type DriverVolume,
  describeExit,
  eventually,
  killAllStarted,
  listDriverVolumes,
  plainHttpRequest,
  type RunningProcess,
  startCsiProxy,
  startProcess,
  type WatchTarget,
  watchPath,
  within,
} from "./support.ts";

const binDir = process.env.E2E_BIN_DIR;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const EXE = process.env.E2E_PROVISIONER ?? path.join(ROOT, "dist/csi-provisioner-linux-x64");
const skip = !binDir
  ? "E2E_BIN_DIR is not set: build the control plane with E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)"
  : false;
const verbose = Boolean(process.env.E2E_VERBOSE);

/** Per test and hook (Bun's runner defaults to 5 s). */
const TEST_TIMEOUT_MS = 240_000;
const BULK_TIMEOUT_MS = 480_000;
/** Deadline of one wait for the cluster to settle (claims bound, volumes deleted, ...). */
const SETTLE_MS = 90_000;

const PV_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer";
const ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node";
const IDENTITY_ATTRIBUTE = "storage.kubernetes.io/csiProvisionerIdentity";
const NODE = "e2e-node";
/** What hostpathplugin --enable-topology reports: its key, with the node ID as value. */
const TOPOLOGY_KEY = HOSTPATH_TOPOLOGY_KEY;
const TOPOLOGY_VALUE = "e2e-node";
const TOPOLOGY_DRIVER = "topology.hostpath.csi.k8s.io";
/** The driver's name on the test API server side (the cluster's driver has the same). */
const DRIVER = "hostpath.csi.k8s.io";
const GIB = 1024 ** 3;

const NS = {
  immediate: "e2e-immediate",
  wffc: "e2e-wffc",
  secrets: "e2e-secrets",
  restart: "e2e-restart",
  crash: "e2e-crash",
  bulk: "e2e-bulk",
  term: "e2e-term",
} as const;

type Claim = PersistentVolumeClaim;
type Volume = PersistentVolume;

/* ------------------------------------------------------------------------ */
/* The suite's shared state                                                  */
/* ------------------------------------------------------------------------ */

/** What a scenario needs from the API server side, the same for both servers. */
interface Backend {
  readonly driverName: string;
  /** The driver's own socket (the provisioner talks to it through `proxy`). */
  readonly csiSocket: string;
  /** hostpathplugin's --statedir (names the volumes ListVolumes reports). */
  readonly driverStateDir: string | undefined;
  readonly request: ApiRequest;
  readonly watchTarget: WatchTarget;
  csiCalls(): CsiCall[];
  /** The real control plane; undefined on the test API server. */
  readonly cluster: Cluster | undefined;
  close(): Promise<void>;
}

let be: Backend;
let dir: string;
let kubeconfig: string;
let proxy: CsiProxy;
let provisioner: RunningProcess | undefined;
let generation = 0;

const log = verbose ? (line: string) => console.error(line) : undefined;

/** Starts the provisioner for the server's driver (through the proxy); waits until it serves. */
async function startProvisioner(extraArgs: string[] = []): Promise<RunningProcess> {
  generation++;
  const healthPort = await freePort();
  const p = startProcess({
    name: `provisioner-${generation}`,
    bin: EXE,
    args: [
      `--csi-address=${proxy.socketPath}`,
      `--kubeconfig=${kubeconfig}`,
      `--http-endpoint=127.0.0.1:${healthPort}`,
      // -v=6 logs every API request: the bulk scenario counts the writes.
      "-v=6",
      ...extraArgs,
    ],
    logFile: path.join(dir, `provisioner-${generation}.log`),
    log,
  });
  provisioner = p;
  await waitHealthy(p, healthPort);
  return p;
}

async function waitHealthy(p: RunningProcess, port: number): Promise<void> {
  await eventually(
    `${p.name} to answer /healthz`,
    async () => {
      if (p.exit) throw new Error(`${p.name} exited (${describeExit(p.exit)})\n${p.tail()}`);
      const r = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
      await r?.body?.cancel();
      return r?.status === 200 ? true : undefined;
    },
    { timeoutMs: 60_000 },
  );
}

/** The running provisioner, started again if an earlier scenario left it dead. */
async function ensureProvisioner(): Promise<RunningProcess> {
  if (provisioner && !provisioner.exit) return provisioner;
  return startProvisioner();
}

/**
 * Runs a scenario body; a failure carries the tail of the provisioner's log (and `extra`
 * processes' logs) so that the report says what the provisioner was doing.
 */
async function withLogs(fn: () => Promise<void>, extra: () => RunningProcess[] = () => []) {
  try {
    await fn();
  } catch (err) {
    const procs = [provisioner, ...extra()].filter((p): p is RunningProcess => p !== undefined);
    const tails = procs.map((p) => `--- last lines of ${p.name} (${p.logFile}) ---\n${p.tail(40)}`);
    if (err instanceof Error) err.message += `\n${tails.join("\n")}`;
    throw err;
  }
}

/* ------------------------------------------------------------------------ */
/* API helpers (as admin)                                                     */
/* ------------------------------------------------------------------------ */

async function call<T>(method: string, apiPath: string, body?: unknown, contentType?: string) {
  const r = await be.request(method, apiPath, body, contentType ? { contentType } : {});
  if (r.status < 200 || r.status > 299) {
    throw new Error(`${method} ${apiPath}: HTTP ${r.status}: ${r.body}`);
  }
  return r.json<T>();
}

async function getOrUndefined<T>(apiPath: string): Promise<T | undefined> {
  const r = await be.request("GET", apiPath);
  if (r.status === 404) return undefined;
  if (r.status !== 200) throw new Error(`GET ${apiPath}: HTTP ${r.status}: ${r.body}`);
  return r.json<T>();
}

/** POST that tolerates AlreadyExists (for objects shared by scenarios). */
async function ensure(apiPath: string, obj: KubeObject): Promise<void> {
  const r = await be.request("POST", apiPath, obj);
  if (r.status !== 201 && r.status !== 409) {
    throw new Error(`POST ${apiPath}: HTTP ${r.status}: ${r.body}`);
  }
}

const claimsPath = (ns: string) => `/api/v1/namespaces/${ns}/persistentvolumeclaims`;
const claimPath = (ns: string, name: string) => `${claimsPath(ns)}/${name}`;
const volumePath = (name: string) => `/api/v1/persistentvolumes/${name}`;

async function storageClass(sc: Omit<StorageClass, "apiVersion" | "kind">): Promise<void> {
  await ensure("/apis/storage.k8s.io/v1/storageclasses", {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    ...sc,
  } as StorageClass);
}

async function createClaim(
  ns: string,
  name: string,
  className: string,
  opts: { size?: string; annotations?: Record<string, string> } = {},
): Promise<Claim> {
  return call<Claim>("POST", claimsPath(ns), {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name, namespace: ns, annotations: opts.annotations },
    spec: {
      storageClassName: className,
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: opts.size ?? "1Gi" } },
    },
  });
}

/** Creates claims `prefix-0..n-1`, `concurrency` requests at a time. */
async function createClaims(
  ns: string,
  prefix: string,
  n: number,
  className: string,
  concurrency = 10,
): Promise<Claim[]> {
  const out: Claim[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await createClaim(ns, `${prefix}-${i}`, className);
      }
    }),
  );
  return out;
}

async function listClaims(ns: string): Promise<Claim[]> {
  return (await call<KubeList<Claim>>("GET", claimsPath(ns))).items;
}

async function listVolumes(): Promise<Volume[]> {
  return (await call<KubeList<Volume>>("GET", "/api/v1/persistentvolumes")).items;
}

/** Waits until every named claim of `ns` is Bound; returns them by name. */
async function waitBound(
  ns: string,
  names: string[],
  timeoutMs = SETTLE_MS,
): Promise<Map<string, Claim>> {
  let pending: string[] = names;
  return eventually(
    `${names.length} claim(s) in ${ns} to be Bound`,
    async () => {
      const byName = new Map((await listClaims(ns)).map((c) => [c.metadata.name!, c]));
      pending = names.filter((n) => byName.get(n)?.status?.phase !== "Bound");
      return pending.length === 0 ? byName : undefined;
    },
    {
      timeoutMs,
      intervalMs: 200,
      describe: () => `${pending.length} not Bound: ${pending.slice(0, 10).join(", ")}`,
    },
  );
}

async function eventsOf(ns: string, name: string): Promise<CoreEvent[]> {
  const selector = encodeURIComponent(`involvedObject.name=${name}`);
  return (
    await call<KubeList<CoreEvent>>(
      "GET",
      `/api/v1/namespaces/${ns}/events?fieldSelector=${selector}`,
    )
  ).items;
}

async function waitEvent(
  ns: string,
  name: string,
  reason: string,
  timeoutMs = SETTLE_MS,
): Promise<CoreEvent> {
  return eventually(
    `a ${reason} event on ${ns}/${name}`,
    async () => (await eventsOf(ns, name)).find((e) => e.reason === reason),
    { timeoutMs },
  );
}

async function patchClaimAnnotations(
  ns: string,
  name: string,
  annotations: Record<string, string | null>,
): Promise<void> {
  await call(
    "PATCH",
    claimPath(ns, name),
    { metadata: { annotations } },
    "application/merge-patch+json",
  );
}

/** Intent annotations on the provisioner's journal Leases (namespace `default`). */
async function journalIntents(): Promise<Map<string, string>> {
  const leases = await call<KubeList<Lease>>(
    "GET",
    "/apis/coordination.k8s.io/v1/namespaces/default/leases",
  );
  const out = new Map<string, string>();
  for (const l of leases.items) {
    for (const [k, v] of Object.entries(l.metadata.annotations ?? {})) {
      const at = k.indexOf("intent.");
      if (at === 0) out.set(k.slice(k.indexOf("/") + 1), v);
    }
  }
  return out;
}

const pvNameOf = (c: Claim) => `pvc-${c.metadata.uid}`;

/** The StorageClass most scenarios use: this driver, Immediate, Delete. */
async function plainClass(): Promise<void> {
  await storageClass({
    metadata: { name: "e2e-immediate-plain" },
    provisioner: be.driverName,
    reclaimPolicy: "Delete",
    volumeBindingMode: "Immediate",
  });
}

async function lateAndImmediateClasses(): Promise<void> {
  await plainClass();
  await storageClass({
    metadata: { name: "e2e-wffc" },
    provisioner: be.driverName,
    reclaimPolicy: "Delete",
    volumeBindingMode: "WaitForFirstConsumer",
  });
}

/** The Node the claims select, labelled with the topology the second driver reports. */
async function ensureNode(): Promise<void> {
  await ensure("/api/v1/nodes", {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: NODE,
      labels: { [TOPOLOGY_KEY]: TOPOLOGY_VALUE, "kubernetes.io/hostname": NODE },
    },
  });
}

/** Waits for upstream's reschedule: a Warning ProvisioningFailed and the annotation gone. */
async function assertRescheduled(ns: string, name: string): Promise<void> {
  // Fails at once (rather than at the deadline) if the claim gets a volume instead.
  const outcome = await eventually(`a ProvisioningFailed event on ${ns}/${name}`, async () => {
    const failed = (await eventsOf(ns, name)).find((e) => e.reason === "ProvisioningFailed");
    if (failed) return { failed };
    const c = await call<Claim>("GET", claimPath(ns, name));
    return c.spec.volumeName ? { provisioned: c.spec.volumeName } : undefined;
  });
  assert.ok(
    outcome.failed,
    `claim ${ns}/${name} selects a node that does not exist, yet got volume ${outcome.provisioned}`,
  );
  assert.equal(outcome.failed.type, "Warning");
  assert.match(outcome.failed.message, /ghost-node/);
  await eventually(`the selected-node annotation of ${ns}/${name} to be removed`, async () => {
    const c = await call<Claim>("GET", claimPath(ns, name));
    return c.metadata.annotations?.[ANN_SELECTED_NODE] === undefined ? c : undefined;
  });
}

/* A second driver (hostpathplugin --enable-topology) with its own provisioner. */

let topology:
  | { driver: RunningProcess; provisioner: RunningProcess; driverLog: string }
  | undefined;

function topologyProcesses(): RunningProcess[] {
  return topology ? [topology.provisioner, topology.driver] : [];
}

async function ensureTopology(): Promise<{ calls: () => CsiCall[] }> {
  if (!topology || topology.driver.exit || topology.provisioner.exit) {
    await topology?.provisioner.stop();
    await topology?.driver.stop();
    generation++;
    const hostpath = await startHostpathDriver({
      binDir: binDir!,
      dir,
      name: `topology-driver-${generation}`,
      driverName: TOPOLOGY_DRIVER,
      nodeId: NODE,
      enableTopology: true,
      log,
    });
    const socket = hostpath.socket;
    const driverLog = hostpath.logFile;
    const driver = hostpath.process;
    const port = await freePort();
    const p = startProcess({
      name: "topology-provisioner",
      bin: EXE,
      args: [
        `--csi-address=${socket}`,
        `--kubeconfig=${kubeconfig}`,
        `--http-endpoint=127.0.0.1:${port}`,
        "-v=5",
      ],
      logFile: path.join(dir, `topology-provisioner-${generation}.log`),
      log,
    });
    topology = { driver, provisioner: p, driverLog };
    await waitHealthy(p, port);
  }
  await ensureNode();
  await ensure("/apis/storage.k8s.io/v1/csinodes", {
    apiVersion: "storage.k8s.io/v1",
    kind: "CSINode",
    metadata: { name: NODE },
    spec: { drivers: [{ name: TOPOLOGY_DRIVER, nodeID: NODE, topologyKeys: [TOPOLOGY_KEY] }] },
  } as KubeObject);
  for (const [name, mode] of [
    ["e2e-topology-wffc", "WaitForFirstConsumer"],
    ["e2e-topology-immediate", "Immediate"],
  ] as const) {
    await storageClass({
      metadata: { name },
      provisioner: TOPOLOGY_DRIVER,
      reclaimPolicy: "Delete",
      volumeBindingMode: mode,
    });
  }
  const driverLog = topology.driverLog;
  return { calls: () => csiCallsIn(driverLog) };
}

/* ------------------------------------------------------------------------ */
/* Driver helpers                                                             */
/* ------------------------------------------------------------------------ */

const isMethod = (c: CsiCall, m: string) => c.Method === `/csi.v1.Controller/${m}`;

function createCalls(calls: CsiCall[], pvName: string): CsiCall[] {
  return calls.filter((c) => isMethod(c, "CreateVolume") && c.Request.name === pvName);
}

function deleteCalls(calls: CsiCall[], volumeId: string): CsiCall[] {
  return calls.filter((c) => isMethod(c, "DeleteVolume") && c.Request.volume_id === volumeId);
}

function volumeIdOf(c: CsiCall): string {
  const v = (c.Response as { volume?: { volume_id?: string } } | null)?.volume;
  return v?.volume_id ?? "";
}

/** The driver's volumes grouped by CreateVolume name. */
async function driverVolumesByName(
  socket = be.csiSocket,
  stateDir = be.driverStateDir,
): Promise<Map<string, DriverVolume[]>> {
  const out = new Map<string, DriverVolume[]>();
  for (const v of await listDriverVolumes(socket, stateDir)) {
    const list = out.get(v.name) ?? [];
    list.push(v);
    out.set(v.name, list);
  }
  return out;
}

/** Asserts exactly one driver volume per claim, each the one its PV names. */
async function assertOneVolumePerClaim(claims: Claim[]): Promise<void> {
  const byName = await driverVolumesByName();
  const volumes = new Map((await listVolumes()).map((v) => [v.metadata.name!, v]));
  for (const c of claims) {
    const pvName = pvNameOf(c);
    const found = byName.get(pvName) ?? [];
    assert.equal(
      found.length,
      1,
      `claim ${c.metadata.namespace}/${c.metadata.name}: ${found.length} driver volumes named ${pvName}`,
    );
    const pv = volumes.get(pvName);
    assert.ok(pv, `claim ${c.metadata.namespace}/${c.metadata.name}: no PV ${pvName}`);
    assert.equal(pv.spec.csi?.volumeHandle, found[0]!.id, `PV ${pvName} names another volume`);
  }
  for (const [name, list] of byName) {
    assert.ok(list.length <= 1, `${list.length} driver volumes share the name ${name}`);
  }
}

/* ------------------------------------------------------------------------ */
/* API write accounting (from the provisioner's -v=6 "HTTP request" lines)    */
/* ------------------------------------------------------------------------ */

const HTTP_LINE = /"HTTP request" verb="(\w+)" url="([^"]+)" status=(\d+)/;

/** "VERB resource status" -> count, for the non-GET requests of `lines`. */
function countWrites(lines: string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of lines) {
    const m = HTTP_LINE.exec(line);
    if (!m || m[1] === "GET") continue;
    const parts = new URL(m[2]!).pathname.split("/").filter(Boolean);
    // /api/v1/... or /apis/group/version/...; then [namespaces/NS/]resource[/name[/sub]]
    let rest = parts[0] === "api" ? parts.slice(2) : parts.slice(3);
    if (rest[0] === "namespaces" && rest.length >= 3) rest = rest.slice(2);
    const key = `${m[1]} ${rest[0] ?? "?"}${rest[2] ? `/${rest[2]}` : ""} ${m[3]}`;
    out.set(key, (out.get(key) ?? 0) + 1);
  }
  return out;
}

function formatCounts(counts: Map<string, number>): string {
  return [...counts.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k}: ${n}`)
    .join(", ");
}

function total(counts: Map<string, number>): number {
  let n = 0;
  for (const v of counts.values()) n += v;
  return n;
}

/* ------------------------------------------------------------------------ */
/* What the Immediate scenario leaves behind, per server                      */
/* ------------------------------------------------------------------------ */

const produced = new Map<string, { claim: Claim; volume: Volume; event: CoreEvent }>();

/**
 * Known differences between kube-apiserver (first) and the test API server (second). Any other
 * difference fails the comparison.
 *
 * kube-apiserver's StorageObjectInUseProtection admission plugin adds `kubernetes.io/pvc-protection`
 * to every claim and `kubernetes.io/pv-protection` to every PV on create; the test API server does
 * not. So against the test API server a deleted PV never lingers with a deletionTimestamp and
 * another controller's finalizer, a state the provisioner meets on every deletion in a cluster.
 */
const EXPECTED_DIFFERENCES: RegExp[] = [
  /^claim\.metadata\.finalizers: \["kubernetes\.io\/pvc-protection"\] != \(absent\)$/,
  /^volume\.metadata\.finalizers: \[[^\]]*"kubernetes\.io\/pv-protection"[^\]]*\] != /,
];

/** Masks what differs between any two runs: uids, resourceVersions, times, generated names. */
function normalise(obj: unknown): unknown {
  const mask = (key: string, v: unknown): unknown => {
    if (typeof v !== "string") return v;
    if (/^(uid|resourceVersion)$/.test(key)) return `<${key}>`;
    if (/Timestamp$|^(lastPhaseTransitionTime|eventTime|time)$/.test(key)) return "<time>";
    return v
      .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "<uid>")
      .replace(/^\d{13}-\d+-/, "<identity>-")
      .replace(/^data\.[0-9a-f]+$/, "data.<suffix>")
      .replace(/_[^_]+_<uid>$/, "_<host>_<uid>");
  };
  const walk = (key: string, v: unknown): unknown => {
    if (Array.isArray(v)) return v.map((x) => walk(key, x));
    if (v && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        if (k === "managedFields") continue;
        out[k] = walk(k, x);
      }
      return out;
    }
    return mask(key, v);
  };
  return walk("", obj);
}

/** `path: a != b` lines for every leaf where two JSON values differ. */
function objectDiff(at: string, a: unknown, b: unknown): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  const isObj = (v: unknown) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    const keys = [...new Set([...Object.keys(ra), ...Object.keys(rb)])].sort();
    return keys.flatMap((k) => objectDiff(`${at}.${k}`, ra[k], rb[k]));
  }
  const show = (v: unknown) => (v === undefined ? "(absent)" : JSON.stringify(v));
  return [`${at}: ${show(a)} != ${show(b)}`];
}

/* ------------------------------------------------------------------------ */
/* The two servers                                                            */
/* ------------------------------------------------------------------------ */

/** Starts kube-apiserver, kube-controller-manager and the driver; RBAC from deploy/rbac.yaml. */
async function setUpCluster(): Promise<void> {
  dir = mkdtempSync(path.join(os.tmpdir(), "e2e-provisioner-"));
  const cluster = await startCluster({ binDir: binDir!, log });
  be = {
    driverName: cluster.driverName,
    csiSocket: cluster.csiSocket,
    driverStateDir: cluster.driverStateDir,
    request: (method, apiPath, body, opts) => cluster.request(method, apiPath, body, opts),
    watchTarget: clusterWatchTarget(cluster),
    csiCalls: () => cluster.csiCalls(),
    cluster,
    close: () => cluster.stop(),
  };
  // deploy/rbac.yaml as it ships: the ServiceAccount, ClusterRole(Binding), Role(Binding).
  await applyManifests(be.request, readFileSync(path.join(ROOT, "deploy/rbac.yaml"), "utf8"));
  kubeconfig = await cluster.kubeconfigFor({ namespace: "default", name: "csi-provisioner" });
  const token = /token: (\S+)/.exec(readFileSync(kubeconfig, "utf8"))?.[1];
  await eventually("the RBAC bindings to take effect", async () => {
    const r = await cluster.request("GET", "/api/v1/persistentvolumes", undefined, { token });
    return r.status === 200 ? true : undefined;
  });
  await setUpCommon();
}

/**
 * Starts the project's test API server with the dev binder (src/dev/binder.ts) standing in for
 * kube-controller-manager's PersistentVolume controller, and a hostpathplugin.
 */
async function setUpTestApiServer(): Promise<void> {
  dir = mkdtempSync(path.join(os.tmpdir(), "e2e-provisioner-"));
  const apiserver = await startApiServer();
  const stopBinder = new AbortController();
  const api = createKubeApi(
    new KubeTransport({
      connection: { server: apiserver.url, tls: {}, auth: noAuth, source: "e2e" },
      version: "e2e",
      clock: systemClock,
      random: Math.random,
    }),
  );
  const binder = runBinder(
    { api, clock: systemClock, random: Math.random, logger: nullLogger },
    stopBinder.signal,
  ).catch((err) => console.error(`e2e: the dev binder stopped: ${err}`));
  const driver = await startHostpathDriver({
    binDir: binDir!,
    dir,
    name: "csi-driver",
    driverName: DRIVER,
    nodeId: NODE,
    log,
  });
  be = {
    driverName: DRIVER,
    csiSocket: driver.socket,
    driverStateDir: driver.stateDir,
    request: plainHttpRequest(apiserver.url),
    watchTarget: { baseUrl: apiserver.url },
    csiCalls: () => driver.csiCalls(),
    cluster: undefined,
    async close() {
      stopBinder.abort();
      await binder;
      await apiserver.close();
    },
  };
  kubeconfig = path.join(dir, "kubeconfig");
  writeFileSync(kubeconfig, apiserver.kubeconfig({ namespace: "default" }), { mode: 0o600 });
  await setUpCommon();
}

async function setUpCommon(): Promise<void> {
  for (const ns of Object.values(NS)) {
    await ensure("/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: ns },
    });
  }
  proxy = await startCsiProxy(path.join(dir, "csi-proxy.sock"), be.csiSocket);
  await startProvisioner();
}

/** Kills every process started here, stops the servers, removes (or keeps) the directory. */
async function tearDown(): Promise<void> {
  await killAllStarted();
  await proxy?.close();
  await be?.close();
  provisioner = undefined;
  topology = undefined;
  if (dir) {
    if (process.env.E2E_KEEP_DIR) console.error(`e2e: logs kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

function checkExecutable(): void {
  if (!existsSync(EXE)) {
    throw new Error(
      `${EXE} is missing: build it with scripts/build.sh linux-x64 (or set E2E_PROVISIONER)`,
    );
  }
}

/* ------------------------------------------------------------------------ */
/* The scenarios                                                              */
/* ------------------------------------------------------------------------ */

describe("csi-provisioner against kube-apiserver, kube-controller-manager and a CSI driver", () => {
  before(
    async () => {
      if (!binDir) return;
      checkExecutable();
      await setUpCluster();
    },
    { timeout: TEST_TIMEOUT_MS },
  );
  after(tearDown, { timeout: TEST_TIMEOUT_MS });
  scenarios("kube-apiserver");
});

describe("csi-provisioner against the test API server (src/dev/apiserver) and the dev binder", () => {
  before(
    async () => {
      if (!binDir) return;
      checkExecutable();
      await setUpTestApiServer();
    },
    { timeout: TEST_TIMEOUT_MS },
  );
  after(tearDown, { timeout: TEST_TIMEOUT_MS });
  scenarios("test API server");
});

/**
 * The scenarios, registered once per server. `only` marks what needs the real control plane:
 * kube-apiserver restarts, and (for time) the 200 claims.
 */
function scenarios(server: "kube-apiserver" | "test API server"): void {
  const real = server === "kube-apiserver";
  const realOnly = (why: string) => skip || (real ? false : `${why}: kube-apiserver only`);

  it(
    "provisions an Immediate claim, which the PV controller binds, and deletes the volume with the claim",
    {
      skip,
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        await ensureProvisioner();
        const ns = NS.immediate;
        await storageClass({
          metadata: { name: "e2e-immediate" },
          provisioner: be.driverName,
          reclaimPolicy: "Delete",
          volumeBindingMode: "Immediate",
          parameters: { "csi.storage.k8s.io/fstype": "ext4", tier: "silver" },
        });
        const created = await createClaim(ns, "data", "e2e-immediate", { size: "2Gi" });
        const pvName = pvNameOf(created);
        const claim = (await waitBound(ns, ["data"])).get("data")!;
        assert.equal(claim.spec.volumeName, pvName);

        // The driver saw one CreateVolume with the claim's size, parameters and capability.
        const creates = createCalls(be.csiCalls(), pvName);
        assert.equal(creates.length, 1, `CreateVolume calls for ${pvName}: ${creates.length}`);
        const req = creates[0]!.Request as {
          capacity_range?: { required_bytes?: number };
          parameters?: Record<string, string>;
          volume_capabilities?: {
            AccessType?: { Mount?: { fs_type?: string } };
            access_mode?: { mode?: number };
          }[];
        };
        assert.equal(req.capacity_range?.required_bytes, 2 * GIB);
        assert.deepEqual(req.parameters, { tier: "silver" });
        assert.equal(req.volume_capabilities?.length, 1);
        assert.equal(req.volume_capabilities?.[0]?.AccessType?.Mount?.fs_type, "ext4");
        // ReadWriteOnce: hostpathplugin has SINGLE_NODE_MULTI_WRITER, so that mode.
        assert.equal(
          req.volume_capabilities?.[0]?.access_mode?.mode,
          7,
          "SINGLE_NODE_MULTI_WRITER",
        );
        const volumeId = volumeIdOf(creates[0]!);
        assert.notEqual(volumeId, "");

        // The PV as upstream writes it.
        const pv = await call<Volume>("GET", volumePath(pvName));
        assert.equal(pv.status?.phase, "Bound");
        assert.equal(pv.spec.csi?.driver, be.driverName);
        assert.equal(pv.spec.csi?.volumeHandle, volumeId);
        assert.equal(pv.spec.csi?.fsType, "ext4");
        assert.match(
          pv.spec.csi?.volumeAttributes?.[IDENTITY_ATTRIBUTE] ?? "",
          new RegExp(`^\\d+-\\d+-${be.driverName.replaceAll(".", "\\.")}$`),
        );
        assert.equal(pv.spec.capacity?.storage, "2Gi");
        assert.deepEqual(pv.spec.accessModes, ["ReadWriteOnce"]);
        assert.equal(pv.spec.persistentVolumeReclaimPolicy, "Delete");
        assert.equal(pv.spec.storageClassName, "e2e-immediate");
        assert.equal(pv.spec.volumeMode, "Filesystem");
        assert.equal(pv.spec.claimRef?.uid, created.metadata.uid);
        assert.equal(pv.metadata.annotations?.["pv.kubernetes.io/provisioned-by"], be.driverName);
        assert.ok(
          pv.metadata.finalizers?.includes(PV_FINALIZER),
          `finalizers: ${pv.metadata.finalizers}`,
        );

        const succeeded = await waitEvent(ns, "data", "ProvisioningSucceeded");
        assert.equal(succeeded.type, "Normal");
        assert.equal(succeeded.message, `Successfully provisioned volume ${pvName}`);
        assert.equal(succeeded.involvedObject.uid, created.metadata.uid);
        assert.ok(
          succeeded.source?.component?.startsWith(`${be.driverName}_`),
          `source: ${JSON.stringify(succeeded.source)}`,
        );
        produced.set(server, {
          claim: await call<Claim>("GET", claimPath(ns, "data")),
          volume: await call<Volume>("GET", volumePath(pvName)),
          event: succeeded,
        });

        // Delete the claim: Released (kube-controller-manager), DeleteVolume, PV gone.
        const watch = watchPath<Volume>(
          be.watchTarget,
          `/api/v1/persistentvolumes?fieldSelector=${encodeURIComponent(`metadata.name=${pvName}`)}`,
        );
        try {
          await call("DELETE", claimPath(ns, "data"));
          await watch.waitFor(
            "the PV to be Released",
            (e) => e.object.status?.phase === "Released",
            SETTLE_MS,
          );
          await watch.waitFor("the PV to be deleted", (e) => e.type === "DELETED", SETTLE_MS);
        } finally {
          watch.stop();
        }
        const deletes = deleteCalls(be.csiCalls(), volumeId);
        assert.ok(deletes.length >= 1, "no DeleteVolume call");
        assert.equal(deletes.at(-1)!.Error, "");
        assert.equal(
          (await driverVolumesByName()).has(pvName),
          false,
          "the driver still has the volume",
        );
        assert.equal(await getOrUndefined(volumePath(pvName)), undefined);
      }),
  );

  it(
    "provisions a WaitForFirstConsumer claim only once a node is selected",
    {
      skip,
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        await ensureProvisioner();
        const ns = NS.wffc;
        await lateAndImmediateClasses();

        // A late-binding claim, then an immediate one: once the second is Bound, the provisioner
        // has seen the first (informer order) and left it alone.
        const late = await createClaim(ns, "late", "e2e-wffc");
        await createClaim(ns, "sentinel", "e2e-immediate-plain");
        await waitBound(ns, ["sentinel"]);
        assert.equal(createCalls(be.csiCalls(), pvNameOf(late)).length, 0);
        const pending = await call<Claim>("GET", claimPath(ns, "late"));
        assert.equal(pending.status?.phase, "Pending");
        assert.equal(pending.spec.volumeName ?? "", "");

        // The node, and the scheduler's choice.
        await ensureNode();
        await patchClaimAnnotations(ns, "late", { [ANN_SELECTED_NODE]: NODE });
        await waitBound(ns, ["late"]);
        const creates = createCalls(be.csiCalls(), pvNameOf(late));
        assert.equal(creates.length, 1);
        // This driver has no VOLUME_ACCESSIBILITY_CONSTRAINTS: no topology requirement is sent.
        assert.equal(creates[0]!.Request.accessibility_requirements, undefined);
        const pv = await call<Volume>("GET", volumePath(pvNameOf(late)));
        assert.equal(pv.spec.nodeAffinity, undefined);
        await assertOneVolumePerClaim([late]);
      }),
  );

  it(
    "sends the selected node's topology to a driver with VOLUME_ACCESSIBILITY_CONSTRAINTS",
    {
      skip,
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        const topo = await ensureTopology();
        const ns = NS.wffc;
        const segment = { segments: { [TOPOLOGY_KEY]: TOPOLOGY_VALUE } };
        const nodeAffinity = {
          required: {
            nodeSelectorTerms: [
              {
                matchExpressions: [{ key: TOPOLOGY_KEY, operator: "In", values: [TOPOLOGY_VALUE] }],
              },
            ],
          },
        };

        const late = await createClaim(ns, "topology-late", "e2e-topology-wffc");
        const now = await createClaim(ns, "topology-immediate", "e2e-topology-immediate");
        await waitBound(ns, ["topology-immediate"]);
        assert.equal(createCalls(topo.calls(), pvNameOf(late)).length, 0);
        // Immediate binding: the cluster's topology (CSINode keys, Node labels) is requisite.
        const nowCreates = createCalls(topo.calls(), pvNameOf(now));
        assert.equal(nowCreates.length, 1);
        assert.deepEqual(nowCreates[0]!.Request.accessibility_requirements, {
          requisite: [segment],
          preferred: [segment],
        });
        const nowVolume = await call<Volume>("GET", volumePath(pvNameOf(now)));
        assert.deepEqual(nowVolume.spec.nodeAffinity, nodeAffinity);

        await patchClaimAnnotations(ns, "topology-late", { [ANN_SELECTED_NODE]: NODE });
        await waitBound(ns, ["topology-late"]);
        const lateCreates = createCalls(topo.calls(), pvNameOf(late));
        assert.equal(lateCreates.length, 1);
        assert.deepEqual(lateCreates[0]!.Request.accessibility_requirements, {
          requisite: [segment],
          preferred: [segment],
        });
        const lateVolume = await call<Volume>("GET", volumePath(pvNameOf(late)));
        assert.deepEqual(lateVolume.spec.nodeAffinity, nodeAffinity);
        assert.equal(lateVolume.spec.csi?.driver, TOPOLOGY_DRIVER);
        assert.equal(lateVolume.spec.csi?.volumeHandle, volumeIdOf(lateCreates[0]!));
      }, topologyProcesses),
  );

  it(
    "reschedules a claim whose selected node does not exist (driver with topology)",
    {
      skip,
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        const topo = await ensureTopology();
        const ns = NS.wffc;
        const ghost = await createClaim(ns, "topology-ghost", "e2e-topology-wffc", {
          annotations: { [ANN_SELECTED_NODE]: "ghost-node" },
        });
        await assertRescheduled(ns, "topology-ghost");
        assert.equal(createCalls(topo.calls(), pvNameOf(ghost)).length, 0);
      }, topologyProcesses),
  );

  it(
    "reschedules a claim whose selected node does not exist (driver without topology)",
    {
      skip,
      // Upstream's library GETs the selected Node even without topology and reschedules on
      // NotFound; this provisioner provisions the claim instead. Remove the marker once fixed.
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        await ensureProvisioner();
        const ns = NS.wffc;
        await lateAndImmediateClasses();
        const ghost = await createClaim(ns, "ghost", "e2e-wffc", {
          annotations: { [ANN_SELECTED_NODE]: "ghost-node" },
        });
        await assertRescheduled(ns, "ghost");
        assert.equal(createCalls(be.csiCalls(), pvNameOf(ghost)).length, 0);
      }),
  );

  it(
    "passes templated secrets to CreateVolume, keeps Retain volumes, and reports a bad StorageClass",
    {
      skip,
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        await ensureProvisioner();
        const ns = NS.secrets;
        const secretValue = "s3cret-Ae7xQ";
        await storageClass({
          metadata: { name: "e2e-secrets" },
          provisioner: be.driverName,
          reclaimPolicy: "Retain",
          volumeBindingMode: "Immediate",
          parameters: {
            // biome-ignore lint/suspicious/noTemplateCurlyInString: a StorageClass secret template
            "csi.storage.k8s.io/provisioner-secret-name": "${pvc.name}-secret",
            // biome-ignore lint/suspicious/noTemplateCurlyInString: a StorageClass secret template
            "csi.storage.k8s.io/provisioner-secret-namespace": "${pvc.namespace}",
            // biome-ignore lint/suspicious/noTemplateCurlyInString: a StorageClass secret template
            "csi.storage.k8s.io/node-publish-secret-name": "${pvc.name}-secret",
            // biome-ignore lint/suspicious/noTemplateCurlyInString: a StorageClass secret template
            "csi.storage.k8s.io/node-publish-secret-namespace": "${pvc.namespace}",
            tier: "gold",
          },
        });
        const secret = (name: string) => ({
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name, namespace: ns },
          data: { password: Buffer.from(secretValue).toString("base64") },
        });
        await call("POST", `/api/v1/namespaces/${ns}/secrets`, secret("vault-secret"));
        const vault = await createClaim(ns, "vault", "e2e-secrets");
        const pvName = pvNameOf(vault);
        await waitBound(ns, ["vault"]);

        const creates = createCalls(be.csiCalls(), pvName);
        assert.equal(creates.length, 1);
        // hostpathplugin logs requests unredacted in its JSON lines: the secret reached the driver.
        assert.deepEqual(creates[0]!.Request.secrets, { password: secretValue });
        assert.deepEqual(creates[0]!.Request.parameters, { tier: "gold" });
        const pv = await call<Volume>("GET", volumePath(pvName));
        assert.equal(
          pv.metadata.annotations?.["volume.kubernetes.io/provisioner-deletion-secret-name"],
          "vault-secret",
        );
        assert.equal(
          pv.metadata.annotations?.["volume.kubernetes.io/provisioner-deletion-secret-namespace"],
          ns,
        );
        assert.deepEqual(pv.spec.csi?.nodePublishSecretRef, {
          name: "vault-secret",
          namespace: ns,
        });
        assert.equal(pv.spec.persistentVolumeReclaimPolicy, "Retain");
        const volumeId = pv.spec.csi?.volumeHandle ?? "";
        // The provisioner never logs secret values (-v=6 logs every CSI call).
        assert.equal(
          provisioner!.lines.some((l) => l.includes(secretValue)),
          false,
          "the provisioner logged the secret",
        );

        // A claim whose secret does not exist yet: ProvisioningFailed naming it, then a retry
        // succeeds once it exists.
        const later = await createClaim(ns, "later", "e2e-secrets");
        const failed = await waitEvent(ns, "later", "ProvisioningFailed");
        assert.equal(failed.type, "Warning");
        assert.match(failed.message, /later-secret/);
        assert.equal(createCalls(be.csiCalls(), pvNameOf(later)).length, 0);
        await call("POST", `/api/v1/namespaces/${ns}/secrets`, secret("later-secret"));
        await waitBound(ns, ["later"]);

        // Retain: the PV is Released and stays; the driver keeps the volume.
        await call("DELETE", claimPath(ns, "vault"));
        await eventually("the Retain PV to be Released", async () => {
          const v = await call<Volume>("GET", volumePath(pvName));
          return v.status?.phase === "Released" ? v : undefined;
        });
        // A Delete-policy claim deleted afterwards: once its volume is gone, the provisioner has
        // handled the Retain PV's update too.
        await plainClass();
        const sentinel = await createClaim(ns, "sentinel", "e2e-immediate-plain");
        await waitBound(ns, ["sentinel"]);
        const sentinelId =
          (await call<Volume>("GET", volumePath(pvNameOf(sentinel)))).spec.csi?.volumeHandle ?? "";
        await call("DELETE", claimPath(ns, "sentinel"));
        await eventually("the sentinel volume to be deleted", async () =>
          (await getOrUndefined(volumePath(pvNameOf(sentinel)))) === undefined &&
          deleteCalls(be.csiCalls(), sentinelId).length > 0
            ? true
            : undefined,
        );
        assert.deepEqual(deleteCalls(be.csiCalls(), volumeId), []);
        const retained = await call<Volume>("GET", volumePath(pvName));
        assert.equal(retained.status?.phase, "Released");
        assert.equal(retained.metadata.finalizers?.includes(PV_FINALIZER) ?? false, false);
        assert.equal((await driverVolumesByName()).get(pvName)?.length, 1);

        // A reserved-prefix parameter nobody knows: a clear ProvisioningFailed, nothing created.
        await storageClass({
          metadata: { name: "e2e-bad-parameter" },
          provisioner: be.driverName,
          reclaimPolicy: "Delete",
          volumeBindingMode: "Immediate",
          parameters: { "csi.storage.k8s.io/unknown": "x" },
        });
        const bad = await createClaim(ns, "bad", "e2e-bad-parameter");
        const badEvent = await waitEvent(ns, "bad", "ProvisioningFailed");
        assert.equal(badEvent.type, "Warning");
        // Upstream's text (the event itself names the claim).
        assert.equal(
          badEvent.message,
          'failed to strip CSI Parameters of prefixed keys: found unknown parameter key "csi.storage.k8s.io/unknown" with reserved namespace csi.storage.k8s.io/',
        );
        assert.equal(createCalls(be.csiCalls(), pvNameOf(bad)).length, 0);
        assert.equal(await getOrUndefined(volumePath(pvNameOf(bad))), undefined);
        assert.equal((await call<Claim>("GET", claimPath(ns, "bad"))).status?.phase, "Pending");
        assert.equal(
          (await journalIntents()).has(bad.metadata.uid!),
          false,
          "an intent was recorded",
        );
      }),
  );

  it(
    "recovers its watches when kube-apiserver restarts, gracefully or not, and loses no claim",
    {
      skip: realOnly("restarts a real kube-apiserver"),
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        const p = await ensureProvisioner();
        const ns = NS.restart;
        await plainClass();
        const firstLine = p.lines.length;

        // Batch A: the driver creates the volumes but its answers are held back until the API
        // server is going down, so the PVs are saved across the restart.
        proxy.pause();
        let a: Claim[];
        try {
          a = await createClaims(ns, "before", 6, "e2e-immediate-plain");
          await eventually("the driver to receive batch A's CreateVolume calls", () => {
            const calls = be.csiCalls();
            return a.every((c) => createCalls(calls, pvNameOf(c)).length > 0) ? true : undefined;
          });
          const restarting = be.cluster!.restartApiServer();
          await eventually("kube-apiserver to stop answering ready", async () => {
            const r = await be.request("GET", "/readyz").catch(() => undefined);
            return r?.status === 200 ? undefined : true;
          });
          proxy.resume();
          await restarting;
        } finally {
          proxy.resume();
        }

        const b = await createClaims(ns, "after", 6, "e2e-immediate-plain");
        await waitBound(
          ns,
          [...a, ...b].map((c) => c.metadata.name!),
        );

        // A crash (SIGKILL) this time, with claims created right after.
        await be.cluster!.restartApiServer({ crash: true });
        const c = await createClaims(ns, "after-crash", 6, "e2e-immediate-plain");
        await waitBound(
          ns,
          [...a, ...b, ...c].map((x) => x.metadata.name!),
        );
        assert.equal(p.exit, undefined, `the provisioner exited: ${p.tail()}`);
        assert.equal(provisioner, p, "the provisioner was restarted");
        await assertOneVolumePerClaim([...a, ...b, ...c]);

        // The volume side recovered too: deleting batch A deletes its volumes.
        for (const claim of a) await call("DELETE", claimPath(ns, claim.metadata.name!));
        await eventually(
          "batch A's PVs and volumes to be deleted",
          async () => {
            const names = new Set((await listVolumes()).map((v) => v.metadata.name));
            const byName = await driverVolumesByName();
            return a.every((x) => !names.has(pvNameOf(x)) && !byName.has(pvNameOf(x)))
              ? true
              : undefined;
          },
          { timeoutMs: SETTLE_MS },
        );

        const failedRequests = p.lines
          .slice(firstLine)
          .filter((l) => /"HTTP request"/.test(l) && !/status=2\d\d/.test(l)).length;
        const transportErrors = p.lines.slice(firstLine).filter((l) => /^E|^W/.test(l)).length;
        console.error(
          `e2e restart: ${failedRequests} non-2xx API answers, ${transportErrors} warning/error lines during the restarts`,
        );
      }),
  );

  it(
    "creates exactly one volume per claim when killed with CreateVolume calls in flight",
    {
      skip,
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        const p = await ensureProvisioner();
        const ns = NS.crash;
        await plainClass();
        proxy.pause();
        let claims: Claim[];
        try {
          claims = await createClaims(ns, "claim", 10, "e2e-immediate-plain");
          // Every CreateVolume reached the driver, which created the volume; no answer came back.
          await eventually("the driver to receive every CreateVolume call", () => {
            const calls = be.csiCalls();
            return claims.every((c) => createCalls(calls, pvNameOf(c)).length > 0)
              ? true
              : undefined;
          });
          p.kill("SIGKILL");
          const exit = await within("the provisioner to die", 10_000, p.exited);
          assert.equal(exit.signal, "SIGKILL");
        } finally {
          proxy.resume();
        }
        assert.equal(
          (await listVolumes()).filter((v) => v.spec.claimRef?.namespace === ns).length,
          0,
        );

        // While it is down, one claim is deleted: its volume must not leak.
        const [gone, ...kept] = claims;
        await call("DELETE", claimPath(ns, gone!.metadata.name!));
        await eventually("the deleted claim to be gone", async () =>
          (await getOrUndefined(claimPath(ns, gone!.metadata.name!))) === undefined
            ? true
            : undefined,
        );
        assert.equal((await driverVolumesByName()).get(pvNameOf(gone!))?.length, 1);

        await startProvisioner();
        await waitBound(
          ns,
          kept.map((c) => c.metadata.name!),
        );
        await eventually("the deleted claim's volume to be deleted", async () =>
          (await driverVolumesByName()).has(pvNameOf(gone!)) ? undefined : true,
        );
        await assertOneVolumePerClaim(kept);
        assert.equal(await getOrUndefined(volumePath(pvNameOf(gone!))), undefined);
        const uids = new Set(claims.map((c) => c.metadata.uid!));
        await eventually("the intents to be cleared", async () => {
          const left = [...(await journalIntents()).keys()].filter((u) => uids.has(u));
          return left.length === 0 ? true : undefined;
        });
        const calls = be.csiCalls();
        const replayed = claims.filter((c) => createCalls(calls, pvNameOf(c)).length > 1).length;
        console.error(
          `e2e crash: CreateVolume replayed for ${replayed} of ${claims.length} claims`,
        );
      }),
  );

  it(
    "binds 200 claims created at once, with no duplicate volumes, and deletes them",
    {
      skip: realOnly("takes 3 minutes at the default --kube-api-qps"),
      timeout: BULK_TIMEOUT_MS,
    },
    (t: TestContext) =>
      withLogs(async () => {
        const p = await ensureProvisioner();
        const ns = NS.bulk;
        const n = 200;
        await plainClass();
        const mark = p.lines.length;
        const started = Date.now();
        const claims = await createClaims(ns, "bulk", n, "e2e-immediate-plain", 20);
        await waitBound(
          ns,
          claims.map((c) => c.metadata.name!),
          BULK_TIMEOUT_MS / 2,
        );
        const boundMs = Date.now() - started;
        await assertOneVolumePerClaim(claims);
        const calls = be.csiCalls();
        const okCreates = claims.map(
          (c) => createCalls(calls, pvNameOf(c)).filter((x) => x.Error === "").length,
        );
        assert.ok(okCreates.every((k) => k >= 1));
        const provisionWrites = countWrites(p.lines.slice(mark));
        assert.equal(
          provisionWrites.get("POST persistentvolumes 201"),
          n,
          formatCounts(provisionWrites),
        );

        const markDelete = p.lines.length;
        const deleting = Date.now();
        await call("DELETE", claimsPath(ns));
        const uids = new Set(claims.map((c) => pvNameOf(c)));
        await eventually(
          `the ${n} PVs and volumes to be deleted`,
          async () => {
            const left = (await listVolumes()).filter((v) => uids.has(v.metadata.name!)).length;
            const byName = await driverVolumesByName();
            const volumesLeft = [...uids].filter((u) => byName.has(u)).length;
            return left === 0 && volumesLeft === 0 ? true : undefined;
          },
          { timeoutMs: BULK_TIMEOUT_MS / 3, intervalMs: 500 },
        );
        const deletedMs = Date.now() - deleting;
        const deleteWrites = countWrites(p.lines.slice(markDelete));
        const summary =
          `${n} claims Bound in ${(boundMs / 1000).toFixed(1)} s with ${total(provisionWrites)} API writes ` +
          `(${formatCounts(provisionWrites)}); CreateVolume calls: ${okCreates.reduce((a, b) => a + b, 0)}; ` +
          `deleted in ${(deletedMs / 1000).toFixed(1)} s with ${total(deleteWrites)} API writes (${formatCounts(deleteWrites)})`;
        t.diagnostic(summary);
        console.error(`e2e bulk: ${summary}`);
      }),
  );

  it(
    "exits 0 within 5 s of SIGTERM right after a burst of claims",
    {
      skip: realOnly("follows the 200 claims"),
      // After the 200 claims the event queue holds hundreds of events behind the --kube-api-qps
      // limiter and the shutdown flushes all of them (38 s measured after 100 claims, more than
      // Kubernetes' 30 s grace period). Remove the marker once the flush is bounded.
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        const p = await ensureProvisioner();
        p.kill("SIGTERM");
        try {
          const exit = await within("the provisioner to exit after SIGTERM", 5_000, p.exited);
          assert.deepEqual(exit, { code: 0, signal: null });
        } finally {
          if (!p.exit) {
            p.kill("SIGKILL");
            await p.exited;
          }
        }
      }),
  );

  it("exits 0 within 5 s of SIGTERM when idle", { skip, timeout: TEST_TIMEOUT_MS }, () =>
    withLogs(async () => {
      if (provisioner && !provisioner.exit) await provisioner.stop(0);
      const idle = await startProvisioner();
      // Idle: its informers have synced and nothing is queued.
      await idle.waitForLine(/"Started provisioning controller"/);
      idle.kill("SIGTERM");
      const exit = await within("the idle provisioner to exit after SIGTERM", 5_000, idle.exited);
      assert.deepEqual(exit, { code: 0, signal: null });
    }),
  );

  it(
    "exits 0 within 5 s of SIGTERM with a CreateVolume in flight, and the next run finishes the claim",
    { skip, timeout: TEST_TIMEOUT_MS },
    () =>
      withLogs(async () => {
        const busy = await ensureProvisioner();
        await busy.waitForLine(/"Started provisioning controller"/);
        const ns = NS.term;
        await plainClass();
        proxy.pause();
        let claim: Claim;
        try {
          claim = await createClaim(ns, "in-flight", "e2e-immediate-plain");
          await eventually("the driver to receive the CreateVolume call", () =>
            createCalls(be.csiCalls(), pvNameOf(claim)).length > 0 ? true : undefined,
          );
          busy.kill("SIGTERM");
          const exit = await within(
            "the busy provisioner to exit after SIGTERM",
            5_000,
            busy.exited,
          );
          assert.deepEqual(exit, { code: 0, signal: null });
        } finally {
          proxy.resume();
        }
        // The claim's intent survived the stop: the next run finishes it with the same volume.
        assert.equal((await journalIntents()).has(claim.metadata.uid!), true, "no intent recorded");
        await startProvisioner();
        await waitBound(ns, ["in-flight"]);
        await assertOneVolumePerClaim([claim]);
      }),
  );

  it(
    "exits 0 when SIGTERM arrives while it loads the intent journal at start-up",
    {
      skip,
      // controller.run() lets `journal.load(signal)` reject with the signal's reason, and the
      // run command turns that into "The provisioner stopped with an error" and exit code 1.
      // Remove the marker once fixed.
      timeout: TEST_TIMEOUT_MS,
    },
    () =>
      withLogs(async () => {
        if (provisioner && !provisioner.exit) await provisioner.stop();
        // Discovery and the three lists take the whole burst; the watches and the journal's LIST
        // then wait seconds for tokens: a SIGTERM after the lists lands in the journal load.
        const p = await startProvisioner(["--kube-api-qps=0.5", "--kube-api-burst=4"]);
        for (const r of ["persistentvolumeclaims", "persistentvolumes", "storageclasses"]) {
          await p.waitForLine(new RegExp(`"Listed ${r}"`));
        }
        p.kill("SIGTERM");
        const exit = await within("the provisioner to exit after SIGTERM", 5_000, p.exited);
        assert.deepEqual(exit, { code: 0, signal: null });
      }),
  );

  if (!real) {
    it("leaves the same claim, PV and event behind as with kube-apiserver", { skip }, () => {
      const theirs = produced.get("kube-apiserver");
      const ours = produced.get("test API server");
      assert.ok(theirs && ours, "the Immediate scenario did not run on both servers");
      const diff = [
        ...objectDiff("claim", normalise(theirs.claim), normalise(ours.claim)),
        ...objectDiff("volume", normalise(theirs.volume), normalise(ours.volume)),
        ...objectDiff("event", normalise(theirs.event), normalise(ours.event)),
      ];
      const unexpected = diff.filter((d) => !EXPECTED_DIFFERENCES.some((re) => re.test(d)));
      console.error(`e2e objects: kube-apiserver vs test API server:\n  ${diff.join("\n  ")}`);
      assert.deepEqual(unexpected, []);
    });
  }
}
