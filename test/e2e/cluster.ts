/**
 * A real Kubernetes control plane on loopback for end-to-end tests: etcd,
 * kube-apiserver, kube-controller-manager and a CSI driver on a unix socket,
 * started from the binaries that `scripts/e2e/build.sh` builds.
 *
 * No kubelet and no nodes: only API objects. The PersistentVolume controller
 * in kube-controller-manager binds claims and releases volumes for real.
 *
 * The CSI driver (`driver` option) is, by default, `hostpathplugin`, the CSI
 * community's reference driver from csi-driver-host-path (volumes are
 * directories under the cluster's temp dir; state survives a driver restart),
 * or `csi-mock-driver`, the Kubernetes project's in-memory mock driver, for
 * the scenarios that need its fault hooks. Both log every gRPC call as one
 * `gRPCCall: {json}` line, which `csiCalls()` parses. See
 * scripts/e2e/README.md.
 *
 * Every child process is ended by `stop()` (SIGTERM, then SIGKILL after a
 * bounded wait), and by the kernel if this process dies first (children are
 * started through `setpriv --pdeathsig SIGKILL` when setpriv exists).
 *
 * ```ts
 * const cluster = await startCluster({ binDir: process.env.E2E_BIN_DIR! });
 * try {
 *   const kubeconfig = await cluster.kubeconfigFor({ namespace: "kube-system", name: "csi-provisioner" });
 *   // run the provisioner with --kubeconfig=kubeconfig --csi-address=cluster.csiSocket
 * } finally {
 *   await cluster.stop();
 * }
 * ```
 *
 * Runs on Node >= 22 (type stripping) and Bun. The HTTP client is node:https
 * with the CA and client certificate passed per request (Bun's fetch ignores
 * agent options).
 */

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createWriteStream, existsSync, readFileSync, type WriteStream } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { type CsiDriver, connectDriver } from "../../src/csi/client.ts";
import { systemClock } from "../../src/util/clock.ts";
import { nullLogger } from "../../src/util/log.ts";

/** Which CSI driver a cluster runs. */
export type DriverKind = "hostpath" | "mock";

/** The topology key hostpathplugin reports (its `TopologyKeyNode`), with the node ID as value. */
export const HOSTPATH_TOPOLOGY_KEY = "topology.hostpath.csi/node";

export interface ClusterOptions {
  /**
   * Directory holding etcd, kube-apiserver, kube-controller-manager, kubectl and the driver
   * (hostpathplugin or csi-mock-driver).
   */
  binDir: string;
  /**
   * The CSI driver: "hostpath" (default) runs `hostpathplugin --endpoint=unix://... --nodeid
   * --drivername --statedir=<dir>/hostpath-state -v=5`; "mock" runs `csi-mock-driver` (in-memory,
   * three pre-existing volumes "1".."3", fault hooks).
   */
  driver?: DriverKind;
  /**
   * hostpath only: pass `--enable-topology=true` (the driver then reports the
   * VOLUME_ACCESSIBILITY_CONSTRAINTS capability and `topology.hostpath.csi/node=<nodeName>` on
   * every volume). Default false (hostpathplugin's own default is true; most scenarios want no
   * topology). The mock driver gets `--enable-topology` with its own key when true.
   */
  enableTopology?: boolean;
  /**
   * hostpath only: simulated storage capacity, one `--capacity=<kind>=<quantity>` each (for
   * example `["fast=10Gi"]`); GetCapacity then answers per kind (the StorageClass parameter
   * `kind`) and CreateVolume fails with ResourceExhausted beyond it.
   */
  capacity?: string[];
  /** More arguments for the driver, after the ones above. */
  driverArgs?: string[];
  /** Parent of the cluster's temporary directory. Default: os.tmpdir(). */
  workDir?: string;
  /** Aborts a start in progress (cleaning up); after start, aborting stops the cluster. */
  signal?: AbortSignal;
  /** Receives progress lines and, prefixed with the component name, every line the children print. */
  log?: (line: string) => void;
  /** Name the CSI driver reports in GetPluginInfo. Default: "hostpath.csi.k8s.io". */
  driverName?: string;
  /** Node ID the CSI driver reports in NodeGetInfo. Default: "e2e-node". */
  nodeName?: string;
  /** Deadline for each component to become ready, in ms. Default: 120000. */
  readyTimeoutMs?: number;
  /** Keep the temporary directory (certificates, logs, data) after stop(). Default: false. */
  keepWorkDir?: boolean;
  /** Extra kube-apiserver flags, e.g. an audit policy (`--audit-policy-file=…`). */
  apiServerArgs?: string[];
}

/** One volume of the driver, as `Cluster.listVolumes()` reports it. */
export interface DriverVolumeInfo {
  id: string;
  /** The CreateVolume name ("" if unknown). */
  name: string;
  capacityBytes: bigint;
}

export interface ServiceAccountRef {
  namespace: string;
  name: string;
}

export interface ApiResponse {
  status: number;
  body: string;
  /** The body parsed as JSON; throws if it is not JSON. */
  json<T = unknown>(): T;
}

/** One gRPC call as csi-mock-driver logs it (field names as in the CSI protobuf JSON). */
export interface CsiCall {
  /** For example "/csi.v1.Controller/CreateVolume". */
  Method: string;
  Request: Record<string, unknown>;
  Response: Record<string, unknown> | null;
  /** "" on success, else "rpc error: code = ... desc = ...". */
  Error: string;
}

export interface RequestOptions {
  /** Default: "application/json" when a body is given. */
  contentType?: string;
  /** Bearer token to send instead of the admin client certificate. */
  token?: string;
  signal?: AbortSignal;
}

export interface Cluster {
  /** The cluster's temporary directory (removed by stop()). */
  readonly dir: string;
  /** https://127.0.0.1:PORT */
  readonly apiServerUrl: string;
  /** Kubeconfig with the system:masters client certificate embedded. */
  readonly adminKubeconfig: string;
  /** Path of the CSI driver's unix socket. */
  readonly csiSocket: string;
  /** Which driver runs ("hostpath" or "mock"). */
  readonly driver: DriverKind;
  /** hostpath: its --statedir (volumes, snapshots and state.json); mock: undefined. */
  readonly driverStateDir: string | undefined;
  readonly driverName: string;
  readonly nodeName: string;
  /** PEM files: the cluster CA, the admin client certificate and its key. */
  readonly certs: { caFile: string; adminCertFile: string; adminKeyFile: string };
  /** Log file of each component, by name (etcd, kube-apiserver, kube-controller-manager, csi-driver). */
  readonly logFiles: Readonly<Record<string, string>>;
  /** PIDs of the running children. */
  pids(): number[];
  /**
   * The CSI calls the driver has logged so far, oldest first (read from its log file, which
   * lags the calls by a few milliseconds: poll). Both drivers log requests and responses as the
   * CSI protobuf's Go JSON (snake_case field names: `Request.name`, `Response.volume.volume_id`).
   */
  csiCalls(): CsiCall[];
  /**
   * Every volume the driver has, through Controller.ListVolumes on its socket (the ground truth
   * for leak counts), each with its CreateVolume name: from hostpathplugin's state file, or from
   * the mock driver's volume context.
   */
  listVolumes(): Promise<DriverVolumeInfo[]>;
  /**
   * Stops the driver (SIGTERM; SIGKILL with `crash: true`) and starts it again on the same
   * socket with the same state dir; resolves once the socket accepts connections. hostpathplugin
   * keeps its volumes across the restart (state.json); the mock driver loses them.
   */
  restartDriver(opts?: { crash?: boolean }): Promise<void>;
  /**
   * Creates the namespace and ServiceAccount if missing, gets a token for it through the
   * TokenRequest API and writes a kubeconfig (CA + bearer token). Returns the file's path.
   */
  kubeconfigFor(
    serviceAccount: ServiceAccountRef,
    opts?: { expirationSeconds?: number },
  ): Promise<string>;
  /** Gets a ServiceAccount token through the TokenRequest API (creating the SA if missing). */
  tokenFor(
    serviceAccount: ServiceAccountRef,
    opts?: { expirationSeconds?: number },
  ): Promise<string>;
  /** One request to the API server as admin (or with `opts.token`). Never throws on HTTP status. */
  request(
    method: string,
    apiPath: string,
    body?: unknown,
    opts?: RequestOptions,
  ): Promise<ApiResponse>;
  /** Runs the cluster's kubectl with the admin kubeconfig; resolves to stdout, rejects with stderr. */
  kubectl(args: string[], opts?: { input?: string }): Promise<string>;
  /**
   * Stops kube-apiserver (SIGTERM: a graceful shutdown that ends open watches; with `crash: true`,
   * SIGKILL) and starts it again on the same port; resolves once /readyz answers 200.
   */
  restartApiServer(opts?: { crash?: boolean }): Promise<void>;
  /** Ends every child (SIGTERM, then SIGKILL) and removes the temporary directory. Idempotent. */
  stop(): Promise<void>;
}

const DEFAULT_READY_TIMEOUT_MS = 120_000;
const STOP_GRACE_MS = 10_000;
const POLL_INTERVAL_MS = 100;
const SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24";
const SA_ISSUER = "https://kubernetes.default.svc.cluster.local";
const LOG_TAIL_LINES = 40;

/** An error thrown when a component fails to start; names the component and carries its log tail. */
export class ClusterStartError extends Error {
  readonly component: string;
  constructor(component: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ClusterStartError";
    this.component = component;
  }
}

/* ------------------------------------------------------------------------ */
/* Child processes                                                           */
/* ------------------------------------------------------------------------ */

interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly logFile: string;
  /** Resolves with a description ("exit code 1", "signal SIGKILL") when the process has exited. */
  readonly exited: Promise<string>;
  exitedWith: string | undefined;
}

const live = new Set<Child>();
let hooksInstalled = false;
const pdeathsig = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));

/**
 * Last-resort cleanup if this process exits without stop(): SIGKILL every live child. (When
 * setpriv exists the kernel does it too, even if this process is SIGKILLed.)
 */
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", () => {
    for (const c of live) killQuietly(c.proc, "SIGKILL");
  });
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const handler = () => {
      for (const c of live) killQuietly(c.proc, "SIGKILL");
      process.off(sig, handler);
      // Alone, this listener replaced the default action (exit): restore it.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

function killQuietly(proc: ChildProcess, sig: NodeJS.Signals): void {
  try {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
  } catch {
    // already gone
  }
}

function startChild(
  name: string,
  bin: string,
  args: string[],
  logFile: string,
  log: (line: string) => void,
): Child {
  installExitHooks();
  const out: WriteStream = createWriteStream(logFile, { flags: "a" });
  out.write(`--- ${new Date().toISOString()} ${bin} ${args.join(" ")}\n`);
  const [cmd, argv] = pdeathsig
    ? [pdeathsig, ["--pdeathsig", "SIGKILL", "--", bin, ...args]]
    : [bin, args];
  const proc = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"], env: childEnv() });
  let pending = "";
  const onData = (chunk: Buffer) => {
    out.write(chunk);
    pending += chunk.toString("utf8");
    let nl = pending.indexOf("\n");
    while (nl >= 0) {
      log(`[${name}] ${pending.slice(0, nl)}`);
      pending = pending.slice(nl + 1);
      nl = pending.indexOf("\n");
    }
  };
  proc.stdout?.on("data", onData);
  proc.stderr?.on("data", onData);
  const child: Child = {
    name,
    proc,
    logFile,
    exitedWith: undefined,
    exited: new Promise<string>((resolve) => {
      let spawnError: Error | undefined;
      proc.on("error", (err) => {
        spawnError = err;
        // "error" without "close" happens when spawn itself fails.
        if (proc.pid === undefined) finish(`failed to spawn: ${err.message}`);
      });
      proc.on("close", (code, signal) => {
        finish(
          spawnError && proc.pid === undefined
            ? `failed to spawn: ${spawnError.message}`
            : signal
              ? `signal ${signal}`
              : `exit code ${code}`,
        );
      });
      let done = false;
      function finish(how: string) {
        if (done) return;
        done = true;
        child.exitedWith = how;
        live.delete(child);
        if (pending) log(`[${name}] ${pending}`);
        // Resolve once the log file is flushed, so that a tail read afterwards is complete.
        out.end(`--- ${new Date().toISOString()} ${name} ended: ${how}\n`, () => resolve(how));
      }
    }),
  };
  live.add(child);
  return child;
}

/** The environment for children: this process's, minus proxies (all traffic is loopback). */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
  ]) {
    delete env[k];
  }
  env.NO_PROXY = "127.0.0.1,localhost";
  return env;
}

/** SIGTERM, wait up to graceMs, then SIGKILL and wait for the exit (graceMs <= 0: SIGKILL at once). */
async function stopChild(child: Child, graceMs = STOP_GRACE_MS): Promise<void> {
  if (child.exitedWith !== undefined) return;
  if (graceMs <= 0) {
    killQuietly(child.proc, "SIGKILL");
    await child.exited;
    return;
  }
  killQuietly(child.proc, "SIGTERM");
  const timer = delay(graceMs);
  const how = await Promise.race([child.exited, timer.promise.then(() => undefined)]);
  timer.cancel();
  if (how !== undefined) return;
  killQuietly(child.proc, "SIGKILL");
  await child.exited;
}

function delay(ms: number, signal?: AbortSignal): { promise: Promise<void>; cancel: () => void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const promise = new Promise<void>((resolve, reject) => {
    timer = setTimeout(resolve, ms);
    if (signal) {
      onAbort = () => {
        clearTimeout(timer);
        reject(signal.reason ?? new Error("aborted"));
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    }
  });
  return {
    promise,
    cancel: () => {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener("abort", onAbort);
    },
  };
}

function logTail(file: string, lines = LOG_TAIL_LINES): string {
  try {
    const all = readFileSync(file, "utf8").trimEnd().split("\n");
    return all.slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/**
 * Polls `probe` every POLL_INTERVAL_MS until it returns true, the deadline passes, the child
 * exits or the signal aborts. `probe` errors count as "not yet"; the last one is reported.
 */
async function waitReady(
  child: Child,
  what: string,
  timeoutMs: number,
  probe: () => Promise<boolean>,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  for (;;) {
    signal?.throwIfAborted();
    if (child.exitedWith !== undefined) {
      throw new ClusterStartError(
        child.name,
        `${child.name} exited (${child.exitedWith}) before ${what}`,
      );
    }
    try {
      if (await probe()) return;
      last = "not ready";
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) {
      throw new ClusterStartError(
        child.name,
        `${child.name}: no ${what} within ${timeoutMs} ms (last: ${last})`,
      );
    }
    const pause = delay(POLL_INTERVAL_MS, signal);
    try {
      await Promise.race([pause.promise, child.exited]);
    } finally {
      pause.cancel();
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Ports, sockets, HTTP                                                      */
/* ------------------------------------------------------------------------ */

/** A free TCP port on 127.0.0.1 (bound, read, released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no port assigned"))));
    });
  });
}

/** Resolves true if a unix socket (or host:port) accepts a connection within timeoutMs. */
export function canConnect(
  target: string | { host: string; port: number },
  timeoutMs = 1000,
): Promise<boolean> {
  return new Promise((resolve) => {
    const sock =
      typeof target === "string"
        ? net.connect({ path: target })
        : net.connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(false);
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.end();
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(false);
    });
  });
}

interface TlsClient {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

function httpRequest(
  url: string,
  method: string,
  tls: TlsClient | "insecure" | undefined,
  body: string | undefined,
  headers: Record<string, string>,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const base: https.RequestOptions = {
      method,
      hostname: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      headers: { Accept: "application/json", ...headers },
      agent: false,
      timeout: timeoutMs,
    };
    if (body !== undefined)
      (base.headers as Record<string, string | number>)["Content-Length"] = Buffer.byteLength(body);
    let req: http.ClientRequest;
    const onResponse = (res: http.IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
      );
      res.on("error", reject);
    };
    if (u.protocol === "https:") {
      const tlsOpts: https.RequestOptions =
        tls === "insecure" || tls === undefined
          ? { rejectUnauthorized: false }
          : { ca: tls.ca, cert: tls.cert, key: tls.key };
      req = https.request({ ...base, ...tlsOpts }, onResponse);
    } else {
      req = http.request(base, onResponse);
    }
    req.on("timeout", () =>
      req.destroy(new Error(`${method} ${url}: timed out after ${timeoutMs} ms`)),
    );
    req.on("error", reject);
    if (signal) {
      const onAbort = () =>
        req.destroy(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
      if (signal.aborted) onAbort();
      else {
        // Remove the listener when the request ends: the signal may outlive many requests.
        signal.addEventListener("abort", onAbort, { once: true });
        req.on("close", () => signal.removeEventListener("abort", onAbort));
      }
    }
    req.end(body);
  });
}

/* ------------------------------------------------------------------------ */
/* Certificates (openssl CLI, X.509 v3)                                      */
/* ------------------------------------------------------------------------ */

function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { cwd: opts.cwd, env: opts.env ?? process.env, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err)
          reject(
            new Error(
              `${path.basename(cmd)} ${args.join(" ")} failed: ${String(stderr).trim() || err.message}`,
            ),
          );
        else resolve(String(stdout));
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

interface CertFiles {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  saKey: string;
  saPub: string;
}

async function makeCerts(dir: string): Promise<CertFiles> {
  await mkdir(dir, { recursive: true });
  const f = (n: string) => path.join(dir, n);
  const files: CertFiles = {
    caCert: f("ca.crt"),
    caKey: f("ca.key"),
    serverCert: f("apiserver.crt"),
    serverKey: f("apiserver.key"),
    adminCert: f("admin.crt"),
    adminKey: f("admin.key"),
    saKey: f("sa.key"),
    saPub: f("sa.pub"),
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  // CA: self-signed, v3 with CA:TRUE.
  await run("openssl", [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    files.caKey,
    "-out",
    files.caCert,
    "-days",
    "3650",
    "-subj",
    "/CN=csi-provisioner-ts-e2e-ca",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    "-addext",
    "subjectKeyIdentifier=hash",
  ]);
  const leaf = async (name: string, subj: string, ext: string) => {
    const csr = f(`${name}.csr`);
    const extFile = f(`${name}.ext`);
    await writeFile(extFile, `[v3]\n${ext}\n`);
    await run("openssl", [
      "req",
      "-new",
      ...ec,
      "-keyout",
      f(`${name}.key`),
      "-out",
      csr,
      "-subj",
      subj,
    ]);
    await run("openssl", [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      files.caCert,
      "-CAkey",
      files.caKey,
      "-CAcreateserial",
      "-out",
      f(`${name}.crt`),
      "-days",
      "365",
      "-sha256",
      "-extfile",
      extFile,
      "-extensions",
      "v3",
    ]);
  };
  await leaf(
    "apiserver",
    "/CN=kube-apiserver",
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth",
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.0.0.1",
      "authorityKeyIdentifier=keyid",
    ].join("\n"),
  );
  await leaf(
    "admin",
    "/O=system:masters/CN=kubernetes-admin",
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=clientAuth",
      "authorityKeyIdentifier=keyid",
    ].join("\n"),
  );
  // Service-account token signing key pair.
  await run("openssl", [
    "genpkey",
    "-algorithm",
    "RSA",
    "-pkeyopt",
    "rsa_keygen_bits:2048",
    "-out",
    files.saKey,
  ]);
  await run("openssl", ["pkey", "-in", files.saKey, "-pubout", "-out", files.saPub]);
  for (const k of [files.caKey, files.serverKey, files.adminKey, files.saKey])
    await chmod(k, 0o600);
  return files;
}

function kubeconfigYaml(opts: {
  server: string;
  caPem: Buffer;
  user: { token: string } | { certPem: Buffer; keyPem: Buffer };
  name: string;
}): string {
  const b64 = (b: Buffer) => b.toString("base64");
  const user =
    "token" in opts.user
      ? `    token: ${opts.user.token}`
      : `    client-certificate-data: ${b64(opts.user.certPem)}\n    client-key-data: ${b64(opts.user.keyPem)}`;
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: e2e",
    "  cluster:",
    `    server: ${opts.server}`,
    `    certificate-authority-data: ${b64(opts.caPem)}`,
    "users:",
    `- name: ${opts.name}`,
    "  user:",
    user,
    "contexts:",
    `- name: ${opts.name}@e2e`,
    "  context:",
    "    cluster: e2e",
    `    user: ${opts.name}`,
    `current-context: ${opts.name}@e2e`,
    "",
  ].join("\n");
}

/* ------------------------------------------------------------------------ */
/* startCluster                                                              */
/* ------------------------------------------------------------------------ */

export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const log = opts.log ?? (() => {});
  const signal = opts.signal;
  const timeoutMs = opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  const driverName = opts.driverName ?? "hostpath.csi.k8s.io";
  const nodeName = opts.nodeName ?? "e2e-node";
  const driverKind: DriverKind = opts.driver ?? "hostpath";
  if (driverKind !== "hostpath" && driverKind !== "mock") {
    throw new ClusterStartError("cluster", `startCluster(): unknown driver ${String(driverKind)}`);
  }
  if (driverKind === "mock" && opts.capacity?.length) {
    throw new ClusterStartError("cluster", "startCluster(): capacity needs driver: hostpath");
  }
  const driverBin = driverKind === "hostpath" ? "hostpathplugin" : "csi-mock-driver";
  if (!opts.binDir) throw new ClusterStartError("cluster", "startCluster(): binDir is required");
  const binDir = path.resolve(opts.binDir);
  const bin = (n: string) => path.join(binDir, n);
  for (const b of ["etcd", "kube-apiserver", "kube-controller-manager", "kubectl", driverBin]) {
    if (!existsSync(bin(b))) {
      throw new ClusterStartError(
        b,
        `${bin(b)} is missing: build it with BIN=$(bash scripts/e2e/build.sh | tail -1)`,
      );
    }
  }
  signal?.throwIfAborted();

  const dir = await mkdtemp(path.join(opts.workDir ?? os.tmpdir(), "e2e-cluster-"));
  const children: Child[] = [];
  const logDir = path.join(dir, "logs");
  const logFiles: Record<string, string> = {
    etcd: path.join(logDir, "etcd.log"),
    "kube-apiserver": path.join(logDir, "kube-apiserver.log"),
    "kube-controller-manager": path.join(logDir, "kube-controller-manager.log"),
    "csi-driver": path.join(logDir, "csi-driver.log"),
  };
  const csiSocket = path.join(dir, "csi", "csi.sock");
  const driverStateDir = driverKind === "hostpath" ? path.join(dir, "hostpath-state") : undefined;
  if (Buffer.byteLength(csiSocket) > 100) {
    await rm(dir, { recursive: true, force: true });
    throw new ClusterStartError(
      "csi-driver",
      `socket path ${csiSocket} is too long for a unix socket; use a shorter workDir`,
    );
  }

  let stopped = false;
  let stoppingChildren: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;
  const stopChildren = (): Promise<void> => {
    stoppingChildren ??= (async () => {
      stopped = true;
      // Clients first, then the API server, then its storage.
      const order = [["kube-controller-manager", "csi-driver"], ["kube-apiserver"], ["etcd"]];
      for (const names of order) {
        await Promise.all(children.filter((c) => names.includes(c.name)).map((c) => stopChild(c)));
      }
      await Promise.all(children.map((c) => stopChild(c)));
    })();
    return stoppingChildren;
  };
  const stopAll = (): Promise<void> => {
    stopping ??= (async () => {
      await stopChildren();
      if (!opts.keepWorkDir) await rm(dir, { recursive: true, force: true });
      else log(`[cluster] kept ${dir}`);
    })();
    return stopping;
  };

  let current = "certificates";
  try {
    await mkdir(logDir, { recursive: true });
    await mkdir(path.dirname(csiSocket), { recursive: true });

    // Certificates and kubeconfig.
    log(`[cluster] work dir ${dir}`);
    const certs = await makeCerts(path.join(dir, "pki"));
    const caPem = await readFile(certs.caCert);
    const adminCertPem = await readFile(certs.adminCert);
    const adminKeyPem = await readFile(certs.adminKey);
    const tls: TlsClient = { ca: caPem, cert: adminCertPem, key: adminKeyPem };
    signal?.throwIfAborted();

    // etcd.
    current = "etcd";
    const [etcdPort, etcdPeerPort, apiPort, kcmPort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const etcdPeerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    const etcd = startChild(
      "etcd",
      bin("etcd"),
      [
        "--name=e2e",
        `--data-dir=${path.join(dir, "etcd")}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${etcdPeerUrl}`,
        `--initial-advertise-peer-urls=${etcdPeerUrl}`,
        `--initial-cluster=e2e=${etcdPeerUrl}`,
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",
        "--log-level=warn",
      ],
      logFiles.etcd!,
      log,
    );
    children.push(etcd);
    await waitReady(
      etcd,
      "healthy /health",
      timeoutMs,
      async () => {
        const r = await httpRequest(
          `${etcdUrl}/health`,
          "GET",
          undefined,
          undefined,
          {},
          2000,
          signal,
        );
        return r.status === 200 && /"health":\s*"true"/.test(r.body);
      },
      signal,
    );
    log(`[cluster] etcd ready on ${etcdUrl}`);

    // kube-apiserver.
    current = "kube-apiserver";
    const apiServerUrl = `https://127.0.0.1:${apiPort}`;
    const apiArgs = [
      `--etcd-servers=${etcdUrl}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${apiPort}`,
      `--cert-dir=${path.join(dir, "kube-apiserver")}`,
      `--tls-cert-file=${certs.serverCert}`,
      `--tls-private-key-file=${certs.serverKey}`,
      `--client-ca-file=${certs.caCert}`,
      "--authorization-mode=Node,RBAC",
      `--service-account-issuer=${SA_ISSUER}`,
      `--service-account-key-file=${certs.saPub}`,
      `--service-account-signing-key-file=${certs.saKey}`,
      `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
      // The "kubernetes" Service's endpoints may not be loopback addresses.
      "--endpoint-reconciler-type=none",
      // On SIGTERM, end open watches and exit: with the default (0s) it leaves them open and
      // waits for the HTTP server's shutdown timeout (60 s) while clients keep watching.
      "--shutdown-watch-termination-grace-period=2s",
      "--profiling=false",
      "--v=1",
      ...(opts.apiServerArgs ?? []),
    ];
    const startApiServer = async (): Promise<Child> => {
      const c = startChild(
        "kube-apiserver",
        bin("kube-apiserver"),
        apiArgs,
        logFiles["kube-apiserver"]!,
        log,
      );
      children.push(c);
      await waitReady(
        c,
        "ready /readyz",
        timeoutMs,
        async () => {
          const r = await httpRequest(
            `${apiServerUrl}/readyz`,
            "GET",
            tls,
            undefined,
            {},
            5000,
            signal,
          );
          return r.status === 200;
        },
        signal,
      );
      return c;
    };
    let apiServer = await startApiServer();
    log(`[cluster] kube-apiserver ready on ${apiServerUrl}`);

    const adminKubeconfig = path.join(dir, "admin.kubeconfig");
    await writeFile(
      adminKubeconfig,
      kubeconfigYaml({
        server: apiServerUrl,
        caPem,
        user: { certPem: adminCertPem, keyPem: adminKeyPem },
        name: "admin",
      }),
      { mode: 0o600 },
    );

    // kube-controller-manager.
    current = "kube-controller-manager";
    const kcm = startChild(
      "kube-controller-manager",
      bin("kube-controller-manager"),
      [
        `--kubeconfig=${adminKubeconfig}`,
        "--controllers=*",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        `--secure-port=${kcmPort}`,
        `--cert-dir=${path.join(dir, "kube-controller-manager")}`,
        `--service-account-private-key-file=${certs.saKey}`,
        `--root-ca-file=${certs.caCert}`,
        `--cluster-signing-cert-file=${certs.caCert}`,
        `--cluster-signing-key-file=${certs.caKey}`,
        `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
        "--use-service-account-credentials=false",
        // Resync claims and volumes often: tests wait on binding and release.
        "--pvclaimbinder-sync-period=2s",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
        "--profiling=false",
        "--v=1",
      ],
      logFiles["kube-controller-manager"]!,
      log,
    );
    children.push(kcm);
    await waitReady(
      kcm,
      "healthy /healthz",
      timeoutMs,
      async () => {
        const r = await httpRequest(
          `https://127.0.0.1:${kcmPort}/healthz`,
          "GET",
          "insecure",
          undefined,
          {},
          2000,
          signal,
        );
        return r.status === 200;
      },
      signal,
    );
    log("[cluster] kube-controller-manager healthy");

    // CSI driver.
    current = "csi-driver";
    const driverArgs = [
      `--endpoint=unix://${csiSocket}`,
      `--nodeid=${nodeName}`,
      `--drivername=${driverName}`,
    ];
    if (driverStateDir) {
      await mkdir(driverStateDir, { recursive: true });
      driverArgs.push(
        `--statedir=${driverStateDir}`,
        `--enable-topology=${opts.enableTopology ?? false}`,
        ...(opts.capacity ?? []).map((c) => `--capacity=${c}`),
        // -v=5 logs every call as `gRPCCall: {json}` (csiCalls() reads them).
        "-v=5",
      );
    } else if (opts.enableTopology) {
      driverArgs.push("--enable-topology");
    }
    driverArgs.push(...(opts.driverArgs ?? []));
    const startDriver = async (): Promise<Child> => {
      // A socket left by a killed driver would make the new one fail to listen.
      await rm(csiSocket, { force: true });
      const c = startChild("csi-driver", bin(driverBin), driverArgs, logFiles["csi-driver"]!, log);
      children.push(c);
      await waitReady(
        c,
        `a connection on ${csiSocket}`,
        timeoutMs,
        () => canConnect(csiSocket),
        signal,
      );
      return c;
    };
    let driver = await startDriver();
    log(`[cluster] CSI driver ${driverBin} (${driverName}) serving on ${csiSocket}`);

    const request = async (
      method: string,
      apiPath: string,
      body?: unknown,
      ro: RequestOptions = {},
    ): Promise<ApiResponse> => {
      const payload =
        body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
      const headers: Record<string, string> = {};
      if (payload !== undefined) headers["Content-Type"] = ro.contentType ?? "application/json";
      if (ro.token) headers.Authorization = `Bearer ${ro.token}`;
      const clientTls: TlsClient = ro.token ? { ca: caPem } : tls;
      const r = await httpRequest(
        `${apiServerUrl}${apiPath}`,
        method,
        clientTls,
        payload,
        headers,
        30_000,
        ro.signal,
      );
      return {
        status: r.status,
        body: r.body,
        json<T>() {
          return JSON.parse(r.body) as T;
        },
      };
    };

    const ensure = async (apiPath: string, obj: unknown, what: string) => {
      const r = await request("POST", apiPath, obj);
      if (r.status !== 201 && r.status !== 409)
        throw new Error(`create ${what}: HTTP ${r.status}: ${r.body}`);
    };

    const tokenFor = async (
      sa: ServiceAccountRef,
      to: { expirationSeconds?: number } = {},
    ): Promise<string> => {
      await ensure(
        "/api/v1/namespaces",
        { apiVersion: "v1", kind: "Namespace", metadata: { name: sa.namespace } },
        `namespace ${sa.namespace}`,
      );
      await ensure(
        `/api/v1/namespaces/${encodeURIComponent(sa.namespace)}/serviceaccounts`,
        {
          apiVersion: "v1",
          kind: "ServiceAccount",
          metadata: { name: sa.name, namespace: sa.namespace },
        },
        `service account ${sa.namespace}/${sa.name}`,
      );
      const r = await request(
        "POST",
        `/api/v1/namespaces/${encodeURIComponent(sa.namespace)}/serviceaccounts/${encodeURIComponent(sa.name)}/token`,
        {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenRequest",
          spec: { expirationSeconds: to.expirationSeconds ?? 86_400 },
        },
      );
      if (r.status !== 201 && r.status !== 200) {
        throw new Error(
          `token request for ${sa.namespace}/${sa.name}: HTTP ${r.status}: ${r.body}`,
        );
      }
      const token = r.json<{ status?: { token?: string } }>().status?.token;
      if (!token)
        throw new Error(`token request for ${sa.namespace}/${sa.name}: no token in ${r.body}`);
      return token;
    };

    const kubeconfigDir = path.join(dir, "kubeconfigs");
    const cluster: Cluster = {
      dir,
      apiServerUrl,
      adminKubeconfig,
      csiSocket,
      driver: driverKind,
      driverStateDir,
      driverName,
      nodeName,
      certs: { caFile: certs.caCert, adminCertFile: certs.adminCert, adminKeyFile: certs.adminKey },
      logFiles,
      csiCalls: () => csiCallsIn(logFiles["csi-driver"]!),
      listVolumes: () => listDriverVolumes(csiSocket, driverStateDir),
      async restartDriver(ro = {}) {
        if (stopped) throw new Error("cluster is stopped");
        log(`[cluster] restarting the CSI driver${ro.crash ? " (SIGKILL)" : ""}`);
        await stopChild(driver, ro.crash ? 0 : STOP_GRACE_MS);
        current = "csi-driver";
        try {
          driver = await startDriver();
        } catch (err) {
          throw withLogTail(err, "csi-driver", logFiles["csi-driver"]!);
        }
        log("[cluster] CSI driver serving again");
      },
      pids: () =>
        children
          .filter((c) => c.exitedWith === undefined && c.proc.pid !== undefined)
          .map((c) => c.proc.pid!),
      request,
      tokenFor,
      async kubeconfigFor(sa, to) {
        const token = await tokenFor(sa, to);
        await mkdir(kubeconfigDir, { recursive: true });
        const file = path.join(kubeconfigDir, `${sa.namespace}.${sa.name}.kubeconfig`);
        await writeFile(
          file,
          kubeconfigYaml({
            server: apiServerUrl,
            caPem,
            user: { token },
            name: `system:serviceaccount:${sa.namespace}:${sa.name}`,
          }),
          { mode: 0o600 },
        );
        return file;
      },
      kubectl(args, ko = {}) {
        return run(bin("kubectl"), [`--kubeconfig=${adminKubeconfig}`, ...args], {
          input: ko.input,
          env: childEnv(),
        });
      },
      async restartApiServer(ro = {}) {
        if (stopped) throw new Error("cluster is stopped");
        log(`[cluster] restarting kube-apiserver${ro.crash ? " (SIGKILL)" : ""}`);
        await stopChild(apiServer, ro.crash ? 0 : STOP_GRACE_MS);
        current = "kube-apiserver";
        try {
          apiServer = await startApiServer();
        } catch (err) {
          throw withLogTail(err, "kube-apiserver", logFiles["kube-apiserver"]!);
        }
        log("[cluster] kube-apiserver ready again");
      },
      stop: stopAll,
    };
    signal?.addEventListener("abort", () => void stopAll(), { once: true });
    return cluster;
  } catch (err) {
    // Stop every child first (their logs are flushed when they have exited), then read the tail.
    await stopChildren().catch(() => {});
    const failure = withLogTail(err, current, logFiles[current]);
    await stopAll().catch(() => {});
    throw failure;
  }
}

/** The gRPC calls a csi-mock-driver logged to `logFile` (one `gRPCCall: {json}` line each). */
export function csiCallsIn(logFile: string): CsiCall[] {
  let text: string;
  try {
    text = readFileSync(logFile, "utf8");
  } catch {
    return [];
  }
  return csiCallsOf(text.split("\n"));
}

/** The calls in driver log lines (`gRPCCall: {json}`); a line still being written is skipped. */
export function csiCallsOf(lines: readonly string[]): CsiCall[] {
  const calls: CsiCall[] = [];
  for (const line of lines) {
    const at = line.indexOf("gRPCCall: ");
    if (at < 0) continue;
    try {
      calls.push(JSON.parse(line.slice(at + "gRPCCall: ".length)) as CsiCall);
    } catch {
      // a line still being written
    }
  }
  return calls;
}

/** Connects to the CSI driver on `socketPath`, runs `use`, and closes the connection. */
export async function withDriver<T>(
  socketPath: string,
  use: (driver: CsiDriver) => Promise<T>,
): Promise<T> {
  const driver = await connectDriver({
    socketPath,
    clock: systemClock,
    logger: nullLogger,
    connectTimeoutMs: 10_000,
  });
  try {
    return await use(driver);
  } finally {
    driver.close();
  }
}

/**
 * The volumes of the driver on `socketPath` through ListVolumes (all at once: hostpathplugin ignores the starting
 * token's page end and returns no next_token, so paging would miss volumes), named from
 * hostpathplugin's state file (`<stateDir>/state.json`, when `stateDir` is given) or the mock's
 * volume context.
 */
export async function listDriverVolumes(
  socketPath: string,
  stateDir?: string,
): Promise<DriverVolumeInfo[]> {
  const out: DriverVolumeInfo[] = [];
  await withDriver(socketPath, async (driver) => {
    let token = "";
    for (;;) {
      const res = await driver.listVolumes({ startingToken: token, maxEntries: 0 });
      for (const e of res.entries) {
        const v = e.volume;
        if (v)
          out.push({
            id: v.volumeId,
            name: v.volumeContext.name ?? "",
            capacityBytes: v.capacityBytes,
          });
      }
      if (!res.nextToken || res.nextToken === token) break;
      token = res.nextToken;
    }
  });
  if (stateDir && out.length > 0) {
    // hostpathplugin rewrites state.json in place (not atomically) on every change: a read may
    // see a half-written file, or miss a volume created after ListVolumes. Read again then.
    const stateFile = path.join(stateDir, "state.json");
    let names = new Map<string, string>();
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        const state = JSON.parse(readFileSync(stateFile, "utf8")) as {
          Volumes?: { VolID?: string; VolName?: string }[] | null;
        };
        names = new Map((state.Volumes ?? []).map((v) => [v.VolID ?? "", v.VolName ?? ""]));
        if (out.every((v) => names.has(v.id))) break;
      } catch {
        // half-written
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const v of out) v.name = names.get(v.id) ?? v.name;
  }
  return out;
}

function withLogTail(err: unknown, component: string, logFile: string | undefined): Error {
  const msg = err instanceof Error ? err.message : String(err);
  const tail = logFile
    ? `\n--- last ${LOG_TAIL_LINES} lines of ${component} log ---\n${logTail(logFile)}`
    : "";
  return new ClusterStartError(
    component,
    `e2e cluster: ${component} failed to start: ${msg}${tail}`,
    { cause: err },
  );
}
