/**
 * The real peers of the end-to-end suite, started next to a cluster from test/e2e/cluster.ts:
 *
 * - the VolumeSnapshot CRDs and the snapshot chain (`snapshot-controller` + the `csi-snapshotter`
 *   sidecar on the cluster's driver socket), from external-snapshotter;
 * - a provisioner sidecar under test: ours (the compiled executable, `E2E_PROVISIONER`) or
 *   upstream's Go `csi-provisioner` (`csi-provisioner-upstream` in the bin dir), each as a
 *   ServiceAccount bound to its own RBAC (`deploy/rbac.yaml`, or upstream's `upstream/rbac.yaml`
 *   in the bin dir), so that a missing rule fails the test;
 * - the driver's volume list through ListVolumes (the ground truth for leak counts).
 *
 * ```ts
 * const cluster = await startCluster({ binDir });                 // hostpathplugin by default
 * await installSnapshotCrds(cluster);
 * const chain = await startSnapshotChain(cluster, { binDir });
 * const ours = await startSidecar(cluster, { flavour: "ours", binDir, args: ["--timeout=30s"] });
 * const theirs = await startSidecar(cluster, { flavour: "upstream", binDir, args: [] });
 * ...
 * await listVolumes(cluster);                                      // [{ id, name, capacityBytes }]
 * await ours.stop(); await chain.stop(); await cluster.stop();
 * ```
 *
 * Both sidecars and the snapshot chain are children of this process (ended by their `stop()`,
 * by `killAllStarted()` from support.ts, and by the kernel if this process dies).
 */

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { loadAll } from "js-yaml";
import type { KubeObject } from "../../src/kube/objects.ts";
import {
  type Cluster,
  type CsiCall,
  type DriverVolumeInfo,
  freePort,
  listDriverVolumes,
  type ServiceAccountRef,
} from "./cluster.ts";
import {
  applyManifests,
  csiCallsIn,
  describeExit,
  eventually,
  type ProcessExit,
  type RunningProcess,
  startProcess,
} from "./support.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The executable of ours the suite runs: `E2E_PROVISIONER`, else dist/csi-provisioner-linux-x64. */
export const OUR_EXECUTABLE =
  process.env.E2E_PROVISIONER ?? path.join(ROOT, "dist/csi-provisioner-linux-x64");

/* ------------------------------------------------------------------------ */
/* The driver's volumes                                                      */
/* ------------------------------------------------------------------------ */

/** Every volume the cluster's driver has, through ListVolumes (see `Cluster.listVolumes`). */
export function listVolumes(cluster: Cluster): Promise<DriverVolumeInfo[]> {
  return cluster.listVolumes();
}

/* ------------------------------------------------------------------------ */
/* RBAC                                                                      */
/* ------------------------------------------------------------------------ */

const RBAC_KINDS = new Set([
  "ServiceAccount",
  "ClusterRole",
  "ClusterRoleBinding",
  "Role",
  "RoleBinding",
]);

/**
 * Creates the ServiceAccount, ClusterRole(Binding) and Role(Binding) of an RBAC manifest (as
 * upstream and deploy/ ship them: one ServiceAccount, in namespace `default`), moved to
 * `namespace` and with `suffix` appended to every object's name (and to the references between
 * them), so that two sidecars' RBAC can live in one cluster without one silently keeping the
 * other's rules. Waits until the ServiceAccount's token may list PersistentVolumes. Returns the
 * ServiceAccount.
 */
export async function applyRbac(
  cluster: Cluster,
  yaml: string,
  opts: { namespace?: string; suffix?: string } = {},
): Promise<ServiceAccountRef> {
  const namespace = opts.namespace ?? "default";
  const suffix = opts.suffix ?? "";
  const objects = (loadAll(yaml) as (KubeObject | null)[]).filter(
    (o): o is KubeObject => o !== null && typeof o === "object",
  );
  let sa: ServiceAccountRef | undefined;
  for (const o of objects) {
    if (!RBAC_KINDS.has(o.kind ?? "")) {
      throw new Error(`applyRbac: unexpected ${o.kind} ${o.metadata?.name} in the RBAC manifest`);
    }
    o.metadata.name = `${o.metadata.name}${suffix}`;
    if (o.metadata.namespace !== undefined) o.metadata.namespace = namespace;
    const binding = o as KubeObject & {
      subjects?: { kind: string; name: string; namespace?: string }[];
      roleRef?: { name: string };
    };
    for (const s of binding.subjects ?? []) {
      if (s.kind === "ServiceAccount") {
        s.name = `${s.name}${suffix}`;
        s.namespace = namespace;
      }
    }
    if (binding.roleRef) binding.roleRef.name = `${binding.roleRef.name}${suffix}`;
    if (o.kind === "ServiceAccount") sa = { namespace, name: o.metadata.name! };
  }
  if (!sa) throw new Error("applyRbac: the manifest has no ServiceAccount");
  const ns = await cluster.request("POST", "/api/v1/namespaces", {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: namespace },
  });
  if (ns.status !== 201 && ns.status !== 409) {
    throw new Error(`applyRbac: create namespace ${namespace}: HTTP ${ns.status}: ${ns.body}`);
  }
  // JSON is YAML: one document per object.
  await applyManifests(
    (m, p, b, o) => cluster.request(m, p, b, o),
    objects.map((o) => JSON.stringify(o)).join("\n---\n"),
  );
  const token = await cluster.tokenFor(sa);
  await eventually(`the RBAC bindings of ${sa.namespace}/${sa.name} to take effect`, async () => {
    const r = await cluster.request("GET", "/api/v1/persistentvolumes?limit=1", undefined, {
      token,
    });
    return r.status === 200 ? true : undefined;
  });
  return sa;
}

/* ------------------------------------------------------------------------ */
/* Provisioner sidecars: ours and upstream's                                  */
/* ------------------------------------------------------------------------ */

export type Flavour = "ours" | "upstream";

export interface SidecarOptions {
  /** "ours" (the compiled executable) or "upstream" (`csi-provisioner-upstream`). */
  flavour: Flavour;
  /** The bin dir (upstream's binary and `upstream/rbac.yaml` live there). */
  binDir: string;
  /**
   * Arguments after `--csi-address`, `--kubeconfig` and `--http-endpoint` (which are set here),
   * e.g. `["-v=5", "--enable-capacity"]`.
   */
  args?: string[];
  /** Environment (NAMESPACE, POD_NAME, NODE_NAME, ...). KUBECONFIG is never inherited. */
  env?: Record<string, string>;
  /** The driver socket. Default: the cluster's. */
  csiSocket?: string;
  /** The ServiceAccount's namespace. Default "default". */
  namespace?: string;
  /** Suffix of the RBAC object names. Default: "" for ours, "-upstream" for upstream's. */
  rbacSuffix?: string;
  /** Where the log files go. Default: the cluster's dir. */
  logDir?: string;
  /** Our executable. Default `OUR_EXECUTABLE`. */
  executable?: string;
  /** Process name prefix in logs. Default: the flavour. */
  name?: string;
  /** Receives every line the process prints, prefixed with its name. */
  log?: (line: string) => void;
  /** Deadline for the sidecar to become ready, in ms. Default 60000. */
  readyTimeoutMs?: number;
}

/**
 * A provisioner sidecar that can be killed and started again with the same arguments. "Ready"
 * means: ours answers /healthz with 200 (after its informers have listed); upstream's has
 * logged "Started provisioner controller".
 */
export interface Sidecar {
  readonly flavour: Flavour;
  /** The kubeconfig of its ServiceAccount. */
  readonly kubeconfig: string;
  readonly serviceAccount: ServiceAccountRef;
  /** The current process (a new one after each `start()`). */
  readonly process: RunningProcess;
  /** Every process started so far, oldest first. */
  readonly generations: readonly RunningProcess[];
  /** host:port of its --http-endpoint (metrics; ours also /healthz). */
  readonly httpEndpoint: string;
  /** Sends SIGKILL to the current process and waits for its exit. */
  kill(): Promise<ProcessExit>;
  /** Starts a new process with the same arguments (the current one must have exited); waits until ready. */
  start(): Promise<RunningProcess>;
  /** SIGTERM (SIGKILL after `graceMs`, default 10 s) and wait for the exit. */
  stop(graceMs?: number): Promise<ProcessExit>;
}

/** Applies the flavour's RBAC, writes its ServiceAccount kubeconfig, starts it and waits until ready. */
export async function startSidecar(cluster: Cluster, opts: SidecarOptions): Promise<Sidecar> {
  const flavour = opts.flavour;
  const bin =
    flavour === "ours"
      ? (opts.executable ?? OUR_EXECUTABLE)
      : path.join(opts.binDir, "csi-provisioner-upstream");
  if (!existsSync(bin)) {
    throw new Error(
      flavour === "ours"
        ? `${bin} is missing: build it with scripts/build.sh linux-x64 (or set E2E_PROVISIONER)`
        : `${bin} is missing: build it with BIN=$(bash scripts/e2e/build.sh | tail -1)`,
    );
  }
  const rbacFile =
    flavour === "ours"
      ? path.join(ROOT, "deploy/rbac.yaml")
      : path.join(opts.binDir, "upstream/rbac.yaml");
  const serviceAccount = await applyRbac(cluster, readFileSync(rbacFile, "utf8"), {
    namespace: opts.namespace,
    suffix: opts.rbacSuffix ?? (flavour === "ours" ? "" : "-upstream"),
  });
  const kubeconfig = await cluster.kubeconfigFor(serviceAccount);
  const port = await freePort();
  const httpEndpoint = `127.0.0.1:${port}`;
  const logDir = opts.logDir ?? cluster.dir;
  const name = opts.name ?? flavour;
  const args = [
    `--csi-address=${opts.csiSocket ?? cluster.csiSocket}`,
    `--kubeconfig=${kubeconfig}`,
    `--http-endpoint=${httpEndpoint}`,
    ...(opts.args ?? []),
  ];
  const readyTimeoutMs = opts.readyTimeoutMs ?? 60_000;
  const generations: RunningProcess[] = [];

  const start = async (): Promise<RunningProcess> => {
    const current = generations.at(-1);
    if (current && !current.exit) throw new Error(`${current.name} is still running`);
    const p = startProcess({
      name: `${name}-${generations.length + 1}`,
      bin,
      args,
      env: opts.env,
      logFile: path.join(logDir, `${name}-${generations.length + 1}.log`),
      log: opts.log,
    });
    generations.push(p);
    if (flavour === "ours") {
      await eventually(
        `${p.name} to answer /healthz`,
        async () => {
          if (p.exit) throw new Error(`${p.name} exited (${describeExit(p.exit)})\n${p.tail()}`);
          const r = await fetch(`http://${httpEndpoint}/healthz`).catch(() => undefined);
          await r?.body?.cancel();
          return r?.status === 200 ? true : undefined;
        },
        { timeoutMs: readyTimeoutMs },
      );
    } else {
      await p.waitForLine(/Started provisioner controller/, readyTimeoutMs);
    }
    return p;
  };

  await start();
  const current = () => generations.at(-1)!;
  return {
    flavour,
    kubeconfig,
    serviceAccount,
    get process() {
      return current();
    },
    generations,
    httpEndpoint,
    async kill() {
      const p = current();
      p.kill("SIGKILL");
      return p.exited;
    },
    start,
    stop: (graceMs) => current().stop(graceMs),
  };
}

/* ------------------------------------------------------------------------ */
/* The snapshot chain                                                         */
/* ------------------------------------------------------------------------ */

const CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/**
 * Creates the VolumeSnapshot CRDs (every CRD in `<binDir>/snapshot-crd/`, from
 * external-snapshotter's `client/config/crd/`; AlreadyExists is fine) and waits until each is
 * Established.
 */
export async function installSnapshotCrds(cluster: Cluster, binDir: string): Promise<string[]> {
  const dir = path.join(binDir, "snapshot-crd");
  if (!existsSync(dir)) {
    throw new Error(
      `${dir} is missing: build the peers with BIN=$(bash scripts/e2e/build.sh | tail -1)`,
    );
  }
  const names: string[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith(".yaml") || file === "kustomization.yaml") continue;
    const docs = loadAll(readFileSync(path.join(dir, file), "utf8")) as (KubeObject | null)[];
    for (const doc of docs.filter((d): d is KubeObject => d?.kind === "CustomResourceDefinition")) {
      const r = await cluster.request("POST", CRD_PATH, doc);
      if (r.status !== 201 && r.status !== 409) {
        throw new Error(
          `create CRD ${doc.metadata.name} from ${file}: HTTP ${r.status}: ${r.body}`,
        );
      }
      names.push(doc.metadata.name!);
    }
  }
  for (const name of names) {
    await eventually(`CRD ${name} to be Established`, async () => {
      const r = await cluster.request("GET", `${CRD_PATH}/${name}`);
      if (r.status !== 200) return undefined;
      const conditions =
        r.json<{ status?: { conditions?: { type: string; status: string }[] } }>().status
          ?.conditions ?? [];
      return conditions.some((c) => c.type === "Established" && c.status === "True")
        ? true
        : undefined;
    });
  }
  return names;
}

export interface SnapshotChain {
  readonly controller: RunningProcess;
  readonly snapshotter: RunningProcess;
  /** Stops both (SIGTERM, then SIGKILL). */
  stop(): Promise<void>;
}

/**
 * Starts `snapshot-controller` and the `csi-snapshotter` sidecar (on the cluster's driver socket
 * unless `csiSocket` is given), both with the admin kubeconfig and without leader election. Call
 * `installSnapshotCrds` first. Resolves once both have started their controllers.
 */
export async function startSnapshotChain(
  cluster: Cluster,
  opts: {
    binDir: string;
    csiSocket?: string;
    controllerArgs?: string[];
    snapshotterArgs?: string[];
    logDir?: string;
    log?: (line: string) => void;
  },
): Promise<SnapshotChain> {
  const logDir = opts.logDir ?? cluster.dir;
  const controller = startProcess({
    name: "snapshot-controller",
    bin: path.join(opts.binDir, "snapshot-controller"),
    args: [
      `--kubeconfig=${cluster.adminKubeconfig}`,
      "--leader-election=false",
      "--retry-interval-start=500ms",
      "--retry-interval-max=5s",
      "--v=3",
      ...(opts.controllerArgs ?? []),
    ],
    logFile: path.join(logDir, "snapshot-controller.log"),
    log: opts.log,
  });
  const snapshotter = startProcess({
    name: "csi-snapshotter",
    bin: path.join(opts.binDir, "csi-snapshotter"),
    args: [
      `--kubeconfig=${cluster.adminKubeconfig}`,
      `--csi-address=${opts.csiSocket ?? cluster.csiSocket}`,
      "--leader-election=false",
      "--retry-interval-start=500ms",
      "--retry-interval-max=5s",
      "--v=3",
      ...(opts.snapshotterArgs ?? []),
    ],
    logFile: path.join(logDir, "csi-snapshotter.log"),
    log: opts.log,
  });
  const chain: SnapshotChain = {
    controller,
    snapshotter,
    async stop() {
      await Promise.all([controller.stop(), snapshotter.stop()]);
    },
  };
  try {
    await Promise.all([
      controller.waitForLine(SNAPSHOT_CONTROLLER_STARTED, 60_000),
      snapshotter.waitForLine(SNAPSHOTTER_STARTED, 60_000),
    ]);
  } catch (err) {
    await chain.stop();
    throw err;
  }
  return chain;
}

/** What snapshot-controller logs once its informers have synced. */
const SNAPSHOT_CONTROLLER_STARTED = /Starting snapshot controller/;
/** What csi-snapshotter logs once it has talked to the driver and starts its controller. */
const SNAPSHOTTER_STARTED = /Starting CSI snapshotter/;

/** Creates a VolumeSnapshotClass for the cluster's driver (AlreadyExists is fine). */
export async function ensureSnapshotClass(
  cluster: Cluster,
  name: string,
  opts: { deletionPolicy?: "Delete" | "Retain"; driver?: string } = {},
): Promise<void> {
  const r = await cluster.request(
    "POST",
    "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses",
    {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshotClass",
      metadata: { name },
      driver: opts.driver ?? cluster.driverName,
      deletionPolicy: opts.deletionPolicy ?? "Delete",
    },
  );
  if (r.status !== 201 && r.status !== 409) {
    throw new Error(`create VolumeSnapshotClass ${name}: HTTP ${r.status}: ${r.body}`);
  }
}

/* ------------------------------------------------------------------------ */
/* The sidecar's own Pod (for --enable-capacity's owner reference)            */
/* ------------------------------------------------------------------------ */

export interface OwnerPod {
  /** For the sidecar's POD_NAME and NAMESPACE. */
  readonly namespace: string;
  readonly podName: string;
  /** The ReplicaSet that controls the Pod (--capacity-ownerref-level=1 points here). */
  readonly replicaSet: { apiVersion: "apps/v1"; kind: "ReplicaSet"; name: string; uid: string };
  readonly podUid: string;
}

/**
 * Creates a Pod (never scheduled: there is no kubelet) and a ReplicaSet with `replicas: 1` that
 * adopts it, as a Deployment's sidecar pod would be owned, and waits until the Pod names the
 * ReplicaSet as its controller. `POD_NAME`/`NAMESPACE` of a sidecar run with `--enable-capacity`
 * point at it; `--capacity-ownerref-level=1` then makes the ReplicaSet the owner of the
 * CSIStorageCapacity objects, 0 the Pod.
 */
export async function ensureOwnerPod(
  cluster: Cluster,
  opts: { namespace?: string; name?: string } = {},
): Promise<OwnerPod> {
  const namespace = opts.namespace ?? "default";
  const name = opts.name ?? "csi-provisioner";
  const labels = { app: name };
  const podName = `${name}-0`;
  // The ServiceAccount admission plugin refuses pods until the namespace's "default"
  // ServiceAccount exists (kube-controller-manager creates it).
  await eventually(`Pod ${namespace}/${podName} to be created`, async () => {
    const r = await cluster.request("POST", `/api/v1/namespaces/${namespace}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: podName, namespace, labels },
      spec: {
        automountServiceAccountToken: false,
        containers: [{ name: "csi-provisioner", image: "registry.invalid/csi-provisioner" }],
      },
    });
    if (r.status === 201 || r.status === 409) return true;
    if (r.status === 403 || r.status >= 500) return undefined;
    throw new Error(`create Pod ${namespace}/${podName}: HTTP ${r.status}: ${r.body}`);
  });
  const rs = await cluster.request("POST", `/apis/apps/v1/namespaces/${namespace}/replicasets`, {
    apiVersion: "apps/v1",
    kind: "ReplicaSet",
    metadata: { name, namespace },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          containers: [{ name: "csi-provisioner", image: "registry.invalid/csi-provisioner" }],
        },
      },
    },
  });
  if (rs.status !== 201 && rs.status !== 409) {
    throw new Error(`create ReplicaSet ${namespace}/${name}: HTTP ${rs.status}: ${rs.body}`);
  }
  return eventually(`the ReplicaSet ${name} to adopt Pod ${podName}`, async () => {
    const r = await cluster.request("GET", `/api/v1/namespaces/${namespace}/pods/${podName}`);
    if (r.status !== 200) return undefined;
    const pod = r.json<KubeObject>();
    const owner = pod.metadata.ownerReferences?.find(
      (o) => o.controller && o.kind === "ReplicaSet" && o.name === name,
    );
    if (!owner) return undefined;
    return {
      namespace,
      podName,
      podUid: pod.metadata.uid!,
      replicaSet: { apiVersion: "apps/v1", kind: "ReplicaSet", name, uid: owner.uid },
    } satisfies OwnerPod;
  });
}

/* ------------------------------------------------------------------------ */
/* A hostpathplugin of its own                                                */
/* ------------------------------------------------------------------------ */

export interface HostpathDriver {
  readonly process: RunningProcess;
  readonly socket: string;
  readonly stateDir: string;
  readonly logFile: string;
  /** Its volumes through ListVolumes, named from its state file. */
  listVolumes(): Promise<DriverVolumeInfo[]>;
  /** The gRPC calls it logged so far (see `Cluster.csiCalls`). */
  csiCalls(): CsiCall[];
}

/**
 * Starts a `hostpathplugin` outside a cluster (a second driver, or the driver of the test API
 * server), as `startCluster` runs it: `--statedir=<dir>/<name>-state`, `-v=5`, topology off unless
 * `enableTopology`. Resolves once it listens on `<dir>/<name>.sock`.
 */
export async function startHostpathDriver(opts: {
  binDir: string;
  dir: string;
  name?: string;
  driverName?: string;
  nodeId?: string;
  enableTopology?: boolean;
  capacity?: string[];
  args?: string[];
  log?: (line: string) => void;
}): Promise<HostpathDriver> {
  const name = opts.name ?? "hostpath";
  const socket = path.join(opts.dir, `${name}.sock`);
  const stateDir = path.join(opts.dir, `${name}-state`);
  const logFile = path.join(opts.dir, `${name}.log`);
  mkdirSync(stateDir, { recursive: true });
  rmSync(socket, { force: true });
  const p = startProcess({
    name,
    bin: path.join(opts.binDir, "hostpathplugin"),
    args: [
      `--endpoint=unix://${socket}`,
      `--drivername=${opts.driverName ?? "hostpath.csi.k8s.io"}`,
      `--nodeid=${opts.nodeId ?? "e2e-node"}`,
      `--statedir=${stateDir}`,
      `--enable-topology=${opts.enableTopology ?? false}`,
      ...(opts.capacity ?? []).map((c) => `--capacity=${c}`),
      "-v=5",
      ...(opts.args ?? []),
    ],
    logFile,
    log: opts.log,
  });
  await p.waitForLine(/Listening for connections/, 30_000);
  return {
    process: p,
    socket,
    stateDir,
    logFile,
    listVolumes: () => listDriverVolumes(socket, stateDir),
    csiCalls: () => csiCallsIn(logFile),
  };
}
