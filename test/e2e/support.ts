/**
 * Helpers for the end-to-end scenarios (test/e2e/provisioner.test.ts): child processes (the
 * provisioner executable, extra CSI drivers) with their logs, a pausable proxy in front of a CSI
 * socket, API watches, manifests applied through the API, and the driver's volume list.
 *
 * Test support: uses node:* freely. Every process and server started here is ended by its
 * `stop()`/`close()`, and by the kernel if the test process dies (children are started through
 * `setpriv --pdeathsig SIGKILL` when setpriv exists).
 */

import { type ChildProcess, spawn } from "node:child_process";
import {
  closeSync,
  createWriteStream,
  existsSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  type WriteStream,
} from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import { constants as osConstants } from "node:os";
import { loadAll } from "js-yaml";
import type {
  CoreEvent,
  KubeList,
  KubeObject,
  PersistentVolume,
  PersistentVolumeClaim,
  StorageClass,
  WatchEvent,
} from "../../src/kube/objects.ts";
import { eventually, within as waitWithin } from "../support/wait.ts";
import type { ApiResponse, Cluster, CsiCall, DriverVolumeInfo } from "./cluster.ts";
import { csiCallsOf } from "./cluster.ts";

export { eventually };

/** `E2E_BIN_DIR`: the control plane and the peers (`bash scripts/e2e/build.sh | tail -1`). */
export const e2eBinDir: string | undefined = process.env.E2E_BIN_DIR;
/** An e2e suite's `skip`: why it cannot run, when `E2E_BIN_DIR` is not set. */
export const skipWithoutBinDir: string | false = e2eBinDir
  ? false
  : "E2E_BIN_DIR is not set: build the control plane with E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)";
/** With `E2E_VERBOSE=1`, every line the processes log, on stderr. */
export const verboseLog = process.env.E2E_VERBOSE
  ? (line: string) => console.error(line)
  : undefined;

/* ------------------------------------------------------------------------ */
/* Waiting                                                                   */
/* ------------------------------------------------------------------------ */

export const POLL_MS = 150;

/** Rejects with `what` if `promise` has not settled within `timeoutMs` (`../support/wait.ts`). */
export function within<T>(what: string, timeoutMs: number, promise: Promise<T>): Promise<T> {
  return waitWithin(promise, timeoutMs, what);
}

/* ------------------------------------------------------------------------ */
/* Child processes                                                           */
/* ------------------------------------------------------------------------ */

const pdeathsig = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));
const shell = ["/bin/sh", "/usr/bin/sh"].find((p) => existsSync(p));

/**
 * Runs "$@" in the background, forwards SIGTERM and SIGINT to it, and prints its exit status as
 * the last stderr line. Deno's node:child_process reports the signal a process was *sent* as the
 * way it ended (a child that handles SIGTERM and exits 0 shows as `signal SIGTERM`), so the exit
 * status is read from that line instead. SIGKILL ends the wrapper; the child then gets SIGKILL
 * from the kernel (`setpriv --pdeathsig`) when setpriv exists.
 */
const WRAPPER = [
  '"$@" &',
  "child=$!",
  "trap 'kill -TERM \"$child\" 2>/dev/null' TERM",
  "trap 'kill -INT \"$child\" 2>/dev/null' INT",
  'while :; do wait "$child"; status=$?; kill -0 "$child" 2>/dev/null || break; done',
  'echo "e2e-exit-status: $status" >&2',
  'exit "$status"',
].join("\n");
const EXIT_STATUS_LINE = /^e2e-exit-status: (\d+)$/;

function exitFromStatus(status: number): ProcessExit {
  if (status <= 128) return { code: status, signal: null };
  const name = Object.entries(osConstants.signals).find(([, n]) => n === status - 128)?.[0];
  return { code: null, signal: (name ?? `SIG${status - 128}`) as NodeJS.Signals };
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunningProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Every line the process wrote to stdout and stderr so far. */
  readonly lines: string[];
  /** Settles once the process has exited and its log is flushed. */
  readonly exited: Promise<ProcessExit>;
  /** Set once exited. */
  exit: ProcessExit | undefined;
  /** Sends a signal (no-op once exited). */
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit. Idempotent. */
  stop(graceMs?: number): Promise<ProcessExit>;
  /** Waits until a line matches `pattern`; fails after `timeoutMs` or if the process exits. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** The last `n` lines, for failure messages. */
  tail(n?: number): string;
}

const running = new Set<RunningProcess>();
let hooked = false;

/** Kills every process started here that is still running (SIGKILL). For `after` hooks. */
export async function killAllStarted(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop(0)));
}

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    // KUBECONFIG overrides --kubeconfig (as upstream): never let the caller's leak in.
    "KUBECONFIG",
    "POD_NAMESPACE",
  ]) {
    delete env[k];
  }
  env.NO_PROXY = "127.0.0.1,localhost";
  return env;
}

/** Starts `bin args`, logging every line to `logFile` (and `log`, prefixed with the name). */
export function startProcess(opts: {
  name: string;
  bin: string;
  args: string[];
  logFile: string;
  env?: Record<string, string>;
  log?: (line: string) => void;
}): RunningProcess {
  if (!hooked) {
    hooked = true;
    process.on("exit", () => {
      for (const p of running) p.kill("SIGKILL");
    });
  }
  const out: WriteStream = createWriteStream(opts.logFile, { flags: "a" });
  out.write(`--- ${new Date().toISOString()} ${opts.bin} ${opts.args.join(" ")}\n`);
  const guarded = pdeathsig
    ? [pdeathsig, "--pdeathsig", "SIGKILL", "--", opts.bin, ...opts.args]
    : [opts.bin, ...opts.args];
  const [cmd, argv] = shell
    ? [
        pdeathsig ?? shell,
        [
          ...(pdeathsig ? ["--pdeathsig", "SIGKILL", "--", shell] : []),
          "-c",
          WRAPPER,
          "e2e-wrapper",
          ...guarded,
        ],
      ]
    : [guarded[0]!, guarded.slice(1)];
  const proc: ChildProcess = spawn(cmd, argv, {
    stdio: ["ignore", "pipe", "pipe"],
    env: childEnv(opts.env ?? {}),
  });
  const lines: string[] = [];
  const lineWaiters = new Set<{ pattern: RegExp; resolve: (l: string) => void }>();
  const partial = { stdout: "", stderr: "" };
  const onLine = (line: string) => {
    lines.push(line);
    opts.log?.(`[${opts.name}] ${line}`);
    for (const w of lineWaiters) {
      if (w.pattern.test(line)) {
        lineWaiters.delete(w);
        w.resolve(line);
      }
    }
  };
  const onData = (which: "stdout" | "stderr") => (chunk: Buffer) => {
    out.write(chunk);
    let text = partial[which] + chunk.toString("utf8");
    let nl = text.indexOf("\n");
    while (nl >= 0) {
      onLine(text.slice(0, nl));
      text = text.slice(nl + 1);
      nl = text.indexOf("\n");
    }
    partial[which] = text;
  };
  proc.stdout?.on("data", onData("stdout"));
  proc.stderr?.on("data", onData("stderr"));

  let settle!: (e: ProcessExit) => void;
  const exited = new Promise<ProcessExit>((resolve) => {
    settle = resolve;
  });
  const p: RunningProcess = {
    name: opts.name,
    pid: proc.pid ?? -1,
    logFile: opts.logFile,
    lines,
    exited,
    exit: undefined,
    kill(signal) {
      if (p.exit !== undefined) return;
      try {
        proc.kill(signal);
      } catch {
        // already gone
      }
    },
    async stop(graceMs = 10_000) {
      if (p.exit) return p.exit;
      if (graceMs > 0) {
        p.kill("SIGTERM");
        const timer = setTimeout(() => p.kill("SIGKILL"), graceMs);
        try {
          return await exited;
        } finally {
          clearTimeout(timer);
        }
      }
      p.kill("SIGKILL");
      return exited;
    },
    waitForLine(pattern, timeoutMs = 60_000) {
      const seen = lines.find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<string>((resolve, reject) => {
        const w = {
          pattern,
          resolve: (l: string) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        const fail = (why: string) => {
          lineWaiters.delete(w);
          clearTimeout(timer);
          reject(new Error(`${opts.name}: no log line matching ${pattern} ${why}\n${p.tail()}`));
        };
        const timer = setTimeout(() => fail(`within ${timeoutMs} ms`), timeoutMs);
        lineWaiters.add(w);
        void exited.then((e) => {
          if (lineWaiters.has(w)) fail(`before it exited (${describeExit(e)})`);
        });
      });
    },
    tail(n = 60) {
      return lines.slice(-n).join("\n");
    },
  };
  running.add(p);
  let spawnError: Error | undefined;
  proc.on("error", (err) => {
    spawnError = err;
    if (proc.pid === undefined) finish(null, null);
  });
  proc.on("close", (code, signal) => finish(code, signal));
  let done = false;
  function finish(code: number | null, signal: NodeJS.Signals | null) {
    if (done) return;
    done = true;
    for (const which of ["stdout", "stderr"] as const) {
      if (partial[which]) onLine(partial[which]);
    }
    if (spawnError && proc.pid === undefined) onLine(`failed to spawn: ${spawnError.message}`);
    // The wrapper's status line comes last on stderr; stdout may still have flushed after it.
    const statusLine = lines.findLast((l) => EXIT_STATUS_LINE.test(l));
    const reported = statusLine ? EXIT_STATUS_LINE.exec(statusLine) : null;
    const e: ProcessExit = reported ? exitFromStatus(Number(reported[1])) : { code, signal };
    p.exit = e;
    running.delete(p);
    out.end(`--- ${new Date().toISOString()} ${opts.name} ended: ${describeExit(e)}\n`, () =>
      settle(e),
    );
  }
  return p;
}

export function describeExit(e: ProcessExit): string {
  return e.signal ? `signal ${e.signal}` : `exit code ${e.code}`;
}

/* ------------------------------------------------------------------------ */
/* A pausable proxy in front of a CSI socket                                 */
/* ------------------------------------------------------------------------ */

export interface CsiProxy {
  readonly socketPath: string;
  /**
   * Holds back everything the driver sends from now on (responses stay buffered in the proxy),
   * while requests still reach the driver: a CreateVolume then runs on the driver but its caller
   * never hears back, as if the driver were slow.
   */
  pause(): void;
  /** Delivers what was held back and stops holding. */
  resume(): void;
  /** Open client connections. */
  connections(): number;
  close(): Promise<void>;
}

/** A unix-socket proxy at `socketPath` forwarding byte for byte to the socket `target`. */
export function startCsiProxy(socketPath: string, target: string): Promise<CsiProxy> {
  let paused = false;
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket; held: Buffer[] }>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ path: target });
    const pair = { client, upstream, held: [] as Buffer[] };
    pairs.add(pair);
    client.on("data", (b) => upstream.write(b));
    upstream.on("data", (b) => {
      if (paused) pair.held.push(b);
      else client.write(b);
    });
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  return new Promise((resolve, reject) => {
    rmSync(socketPath, { force: true });
    server.once("error", reject);
    server.listen(socketPath, () => {
      server.off("error", reject);
      resolve({
        socketPath,
        pause() {
          paused = true;
        },
        resume() {
          paused = false;
          for (const p of pairs) {
            for (const b of p.held) p.client.write(b);
            p.held = [];
          }
        },
        connections: () => pairs.size,
        close() {
          for (const p of pairs) {
            p.client.destroy();
            p.upstream.destroy();
          }
          pairs.clear();
          return new Promise<void>((r) => server.close(() => r()));
        },
      });
    });
  });
}

/* ------------------------------------------------------------------------ */
/* The CSI driver's side                                                     */
/* ------------------------------------------------------------------------ */

/** One volume of a driver (id, CreateVolume name, capacity). */
export type DriverVolume = DriverVolumeInfo;

/**
 * Every volume the driver at `socketPath` has, through Controller.ListVolumes; names come from
 * hostpathplugin's `<stateDir>/state.json` when `stateDir` is given, else from the volume
 * context (csi-mock-driver keeps the name there).
 */
export { csiCallsIn, listDriverVolumes, withDriver } from "./cluster.ts";

/* ------------------------------------------------------------------------ */
/* The API                                                                   */
/* ------------------------------------------------------------------------ */

/** The REST collection path of a manifest object (the kinds deploy/ uses). */
export function collectionPath(obj: KubeObject): string {
  const kind = obj.kind ?? "";
  const plural: Record<string, string> = {
    ServiceAccount: "serviceaccounts",
    ClusterRole: "clusterroles",
    ClusterRoleBinding: "clusterrolebindings",
    Role: "roles",
    RoleBinding: "rolebindings",
  };
  const resource = plural[kind];
  if (!resource) throw new Error(`applyManifests: unsupported kind ${kind || "(none)"}`);
  const version = obj.apiVersion ?? "";
  const base = version === "v1" ? "/api/v1" : `/apis/${version}`;
  const ns = obj.metadata.namespace;
  return ns ? `${base}/namespaces/${ns}/${resource}` : `${base}/${resource}`;
}

/** One API request; never throws on an HTTP status (like `Cluster.request`). */
export type ApiRequest = (
  method: string,
  apiPath: string,
  body?: unknown,
  opts?: { contentType?: string },
) => Promise<ApiResponse>;

/** Creates every object of a multi-document YAML (AlreadyExists is fine). Returns them. */
export async function applyManifests(request: ApiRequest, yaml: string): Promise<KubeObject[]> {
  const objects = (loadAll(yaml) as (KubeObject | null)[]).filter(
    (o): o is KubeObject => o !== null && typeof o === "object",
  );
  for (const obj of objects) {
    const path = collectionPath(obj);
    const r = await request("POST", path, obj);
    if (r.status !== 201 && r.status !== 409) {
      throw new Error(
        `Cannot create ${obj.kind} ${obj.metadata.name}: HTTP ${r.status}: ${r.body}`,
      );
    }
  }
  return objects;
}

/** An `ApiRequest` to a plain-HTTP API server without authentication (the test API server). */
export function plainHttpRequest(baseUrl: string): ApiRequest {
  return async (method, apiPath, body, opts = {}) => {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = opts.contentType ?? "application/json";
    const res = await fetch(baseUrl + apiPath, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return {
      status: res.status,
      body: text,
      json: <T>() => JSON.parse(text) as T,
    };
  };
}

/** Where a watch connects: the API server's base URL and, for HTTPS, the admin credentials. */
export interface WatchTarget {
  baseUrl: string;
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
}

/** The watch target of a cluster from test/e2e/cluster.ts (admin client certificate). */
export function clusterWatchTarget(cluster: Cluster): WatchTarget {
  return {
    baseUrl: cluster.apiServerUrl,
    tls: {
      ca: readFileSync(cluster.certs.caFile),
      cert: readFileSync(cluster.certs.adminCertFile),
      key: readFileSync(cluster.certs.adminKeyFile),
    },
  };
}

export interface Watch<T extends KubeObject> {
  /** Every event received so far (BOOKMARKs excluded). */
  readonly events: WatchEvent<T>[];
  /** Resolves with the first event (past or future) matching `pred`. */
  waitFor(
    what: string,
    pred: (e: WatchEvent<T>) => boolean,
    timeoutMs?: number,
  ): Promise<WatchEvent<T>>;
  stop(): void;
}

/**
 * Watches `path` (a collection path; add a fieldSelector to narrow it) as admin, from now on.
 * One connection, no resumption: for short windows in which the API server stays up.
 */
export function watchPath<T extends KubeObject>(target: WatchTarget, path: string): Watch<T> {
  const events: WatchEvent<T>[] = [];
  const waiters = new Set<{
    pred: (e: WatchEvent<T>) => boolean;
    resolve: (e: WatchEvent<T>) => void;
  }>();
  let ended: string | undefined;
  const url = new URL(target.baseUrl + path);
  url.searchParams.set("watch", "true");
  url.searchParams.set("allowWatchBookmarks", "false");
  const options = { method: "GET", agent: false, headers: { accept: "application/json" } };
  const req = target.tls
    ? https.request(url, { ...options, ...target.tls })
    : http.request(url, options);
  const endWith = (why: string) => {
    ended ??= why;
  };
  req.on("response", (res) => {
    if (res.statusCode !== 200) endWith(`HTTP ${res.statusCode}`);
    let buf = "";
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
        if (!line) continue;
        let ev: WatchEvent<T>;
        try {
          ev = JSON.parse(line) as WatchEvent<T>;
        } catch {
          continue;
        }
        if (ev.type === "BOOKMARK") continue;
        events.push(ev);
        for (const w of waiters) {
          if (w.pred(ev)) {
            waiters.delete(w);
            w.resolve(ev);
          }
        }
      }
    });
    res.on("end", () => endWith("the watch ended"));
    res.on("error", (err) => endWith(err.message));
  });
  req.on("error", (err) => endWith(err.message));
  req.end();
  return {
    events,
    waitFor(what, pred, timeoutMs = 60_000) {
      const seen = events.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const w = {
          pred,
          resolve: (e: WatchEvent<T>) => {
            clearTimeout(timer);
            resolve(e);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(w);
          const seen = events.map((e) => e.type).join(", ") || "none";
          reject(
            new Error(
              `Timed out after ${timeoutMs} ms watching ${path} for ${what} (events: ${seen}${ended ? `; ${ended}` : ""})`,
            ),
          );
        }, timeoutMs);
        waiters.add(w);
      });
    },
    stop() {
      endWith("stopped");
      req.destroy();
    },
  };
}

/* ------------------------------------------------------------------------ */
/* Typed API calls for scenarios                                             */
/* ------------------------------------------------------------------------ */

export interface ClaimSpec {
  size?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  accessModes?: string[];
  volumeMode?: "Filesystem" | "Block";
  dataSource?: { apiGroup?: string; kind: string; name: string };
}

/** Scenario helpers over one `ApiRequest` (as admin): calls that throw on an unexpected status. */
export interface Kube {
  readonly request: ApiRequest;
  /** A request that must answer 2xx; returns the parsed body. */
  call<T>(method: string, apiPath: string, body?: unknown, contentType?: string): Promise<T>;
  /** GET; undefined on 404. */
  get<T>(apiPath: string): Promise<T | undefined>;
  /** POST that tolerates AlreadyExists. */
  ensure(collectionPath: string, obj: unknown): Promise<void>;
  ensureNamespace(name: string): Promise<void>;
  /**
   * POST of StorageClass `name` for `provisioner` that tolerates AlreadyExists: reclaim policy
   * Delete and Immediate binding unless `more` says otherwise.
   */
  ensureStorageClass(
    name: string,
    provisioner: string,
    more?: Omit<Partial<StorageClass>, "metadata">,
  ): Promise<void>;
  /** A merge patch of metadata.annotations (null removes a key). */
  annotate(apiPath: string, annotations: Record<string, string | null>): Promise<void>;
  createClaim(
    ns: string,
    name: string,
    className: string,
    spec?: ClaimSpec,
  ): Promise<PersistentVolumeClaim>;
  claim(ns: string, name: string): Promise<PersistentVolumeClaim | undefined>;
  volume(name: string): Promise<PersistentVolume | undefined>;
  /** Waits until every named claim of `ns` is Bound; returns them by name. */
  waitBound(
    ns: string,
    names: string[],
    timeoutMs?: number,
  ): Promise<Map<string, PersistentVolumeClaim>>;
  /** Events whose involvedObject has this name, in `ns`. */
  eventsOf(ns: string, name: string): Promise<CoreEvent[]>;
  /** Waits for an event with `reason` on `ns/name`. */
  waitEvent(ns: string, name: string, reason: string, timeoutMs?: number): Promise<CoreEvent>;
  /** Waits until `apiPath` answers 404. */
  waitGone(what: string, apiPath: string, timeoutMs?: number): Promise<void>;
}

export const claimPath = (ns: string, name = "") =>
  `/api/v1/namespaces/${ns}/persistentvolumeclaims${name ? `/${name}` : ""}`;
export const volumePath = (name = "") => `/api/v1/persistentvolumes${name ? `/${name}` : ""}`;

export function kube(request: ApiRequest, defaults: { timeoutMs?: number } = {}): Kube {
  const settle = defaults.timeoutMs ?? 90_000;
  const call = async <T>(method: string, apiPath: string, body?: unknown, contentType?: string) => {
    const r = await request(method, apiPath, body, contentType ? { contentType } : {});
    if (r.status < 200 || r.status > 299) {
      throw new Error(`${method} ${apiPath}: HTTP ${r.status}: ${r.body}`);
    }
    return r.json<T>();
  };
  const get = async <T>(apiPath: string) => {
    const r = await request("GET", apiPath);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new Error(`GET ${apiPath}: HTTP ${r.status}: ${r.body}`);
    return r.json<T>();
  };
  const ensure = async (path: string, obj: unknown) => {
    const r = await request("POST", path, obj);
    if (r.status !== 201 && r.status !== 409) {
      throw new Error(`POST ${path}: HTTP ${r.status}: ${r.body}`);
    }
  };
  const eventsOf = async (ns: string, name: string) => {
    const selector = encodeURIComponent(`involvedObject.name=${name}`);
    return (
      await call<KubeList<CoreEvent>>(
        "GET",
        `/api/v1/namespaces/${ns}/events?fieldSelector=${selector}`,
      )
    ).items;
  };
  return {
    request,
    call,
    get,
    ensure,
    ensureNamespace: (name) =>
      ensure("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } }),
    ensureStorageClass: (name, provisioner, more = {}) =>
      ensure("/apis/storage.k8s.io/v1/storageclasses", {
        apiVersion: "storage.k8s.io/v1",
        kind: "StorageClass",
        metadata: { name },
        provisioner,
        reclaimPolicy: "Delete",
        volumeBindingMode: "Immediate",
        ...more,
      }),
    async annotate(apiPath, annotations) {
      await call("PATCH", apiPath, { metadata: { annotations } }, "application/merge-patch+json");
    },
    createClaim: (ns, name, className, spec = {}) =>
      call<PersistentVolumeClaim>("POST", claimPath(ns), {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        metadata: { name, namespace: ns, annotations: spec.annotations, labels: spec.labels },
        spec: {
          storageClassName: className,
          accessModes: spec.accessModes ?? ["ReadWriteOnce"],
          volumeMode: spec.volumeMode,
          dataSource: spec.dataSource,
          resources: { requests: { storage: spec.size ?? "1Gi" } },
        },
      }),
    claim: (ns, name) => get<PersistentVolumeClaim>(claimPath(ns, name)),
    volume: (name) => get<PersistentVolume>(volumePath(name)),
    async waitBound(ns, names, timeoutMs = settle) {
      let pending = names;
      return eventually(
        `${names.length} claim(s) in ${ns} to be Bound`,
        async () => {
          const list = await call<KubeList<PersistentVolumeClaim>>("GET", claimPath(ns));
          const byName = new Map(list.items.map((c) => [c.metadata.name!, c]));
          pending = names.filter((n) => byName.get(n)?.status?.phase !== "Bound");
          return pending.length === 0 ? byName : undefined;
        },
        {
          timeoutMs,
          intervalMs: 250,
          describe: () => `${pending.length} not Bound: ${pending.slice(0, 10).join(", ")}`,
        },
      );
    },
    eventsOf,
    waitEvent: (ns, name, reason, timeoutMs = settle) =>
      eventually(
        `a ${reason} event on ${ns}/${name}`,
        async () => (await eventsOf(ns, name)).find((e) => e.reason === reason),
        { timeoutMs },
      ),
    async waitGone(what, apiPath, timeoutMs = settle) {
      await eventually(what, async () => ((await get(apiPath)) === undefined ? true : undefined), {
        timeoutMs,
      });
    },
  };
}

/**
 * Follows a driver log (csi-mock-driver or hostpathplugin at -v=5) from its current end: each
 * `poll()` returns the gRPC calls logged since the previous one, reading only the new bytes.
 */
export function followCsiCalls(logFile: string): { poll(): CsiCall[] } {
  let offset = 0;
  try {
    offset = statSync(logFile).size;
  } catch {
    // not written yet
  }
  let partial = "";
  return {
    poll() {
      let fd: number;
      try {
        fd = openSync(logFile, "r");
      } catch {
        return [];
      }
      const chunks: Buffer[] = [];
      try {
        const buf = Buffer.alloc(1 << 20);
        for (;;) {
          const n = readSync(fd, buf, 0, buf.length, offset);
          if (n <= 0) break;
          offset += n;
          chunks.push(Buffer.from(buf.subarray(0, n)));
        }
      } finally {
        closeSync(fd);
      }
      const text = partial + Buffer.concat(chunks).toString("utf8");
      const lines = text.split("\n");
      partial = lines.pop() ?? "";
      return csiCallsOf(lines);
    },
  };
}
