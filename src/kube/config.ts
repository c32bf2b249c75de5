/**
 * Where the API server is and how to authenticate to it, decided as upstream csi-provisioner
 * does: the `KUBECONFIG` environment variable overrides `--kubeconfig`; when either that or
 * `--master` is given, the kubeconfig (if any) is loaded and `--master` overrides its server;
 * otherwise the in-cluster configuration (`KUBERNETES_SERVICE_HOST` / `_PORT` and the
 * service-account token, CA and namespace files) is used.
 *
 * Kubeconfig files are read with js-yaml and `@kubernetes/client-node`'s kubeconfig entry
 * parsers (`config_types.js`: contexts, clusters, users, inline `*-data` and file
 * certificates), as client-node's `KubeConfig.loadFromString` does; its exec and auth-provider
 * plugins supply credentials (see `auth.ts`). Its HTTP stack is not used: the returned
 * {@link KubeConnection} feeds our own transport.
 *
 * client-node's main module is imported lazily, only for a user with an exec or auth-provider
 * plugin: loading it costs ~25 MiB of RSS in the compiled executable (its generated API models
 * and HTTP stack), which a token, token-file or certificate user does not need.
 *
 * Deviations, deliberately small: `token-file` is re-read as it rotates (client-node reads it
 * once); SOCKS proxies and `as-groups` impersonation are not supported.
 */
import type { Cluster, Context, User } from "@kubernetes/client-node";
import type { TlsConfig } from "../runtime/https.ts";
import type { Clock } from "../util/clock.ts";
import { type Logger, nullLogger } from "../util/log.ts";
import {
  type AuthProvider,
  noAuth,
  pluginAuth,
  staticAuth,
  tokenFileAuth,
  withHeaders,
} from "./auth.ts";

export interface KubeConnection {
  /** Base URL of the API server, without a trailing slash (may carry a path prefix). */
  server: string;
  tls: TlsConfig;
  auth: AuthProvider;
  /** An `http://` proxy from the kubeconfig's `proxy-url`. */
  proxyUrl?: string;
  /**
   * The namespace this process runs in: the service-account namespace file when in cluster,
   * else the kubeconfig context's namespace; undefined when neither says.
   */
  namespace?: string;
  /** Where the configuration came from, for the startup log: `in-cluster`, `kubeconfig …`. */
  source: string;
}

export interface LoadKubeConnectionOptions {
  /** `--kubeconfig`; default "" (none). The `KUBECONFIG` environment variable overrides it. */
  kubeconfigPath?: string;
  /** `--master`; default "" (none). Overrides the kubeconfig's server. */
  masterUrl?: string;
  /** The process environment (`KUBECONFIG`, `KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`). */
  env: Readonly<Record<string, string | undefined>>;
  /** Reads a text file (kubeconfig, PEM files, tokens). */
  readFile: (path: string) => string | Promise<string>;
  clock: Clock;
  /** Default `/var/run/secrets/kubernetes.io/serviceaccount`. */
  serviceAccountDir?: string;
  /** Re-read period of token files; default 60 000 ms. */
  tokenRefreshMs?: number;
  /** Default: discards. */
  logger?: Logger;
}

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/**
 * Loads the connection settings. Throws an `Error` with a one-line, user-facing message when the
 * configuration is missing or invalid.
 */
export async function loadKubeConnection(opts: LoadKubeConnectionOptions): Promise<KubeConnection> {
  const envPath = opts.env.KUBECONFIG;
  const kubeconfigPath =
    envPath !== undefined && envPath !== "" ? envPath : (opts.kubeconfigPath ?? "");
  const master = opts.masterUrl ?? "";
  if (kubeconfigPath !== "") {
    const conn = await loadKubeconfigFile(kubeconfigPath, opts);
    if (master !== "") {
      const hasTls =
        conn.tls.ca !== undefined || conn.tls.cert !== undefined || !!conn.tls.insecureSkipVerify;
      conn.server = normaliseServer(master, hasTls);
      conn.source += ` with --master ${conn.server}`;
    }
    return conn;
  }
  if (master !== "") {
    const server = normaliseServer(master, false);
    return { server, tls: {}, auth: noAuth, source: `--master ${server}` };
  }
  return loadInCluster(opts);
}

/** client-go's default-scheme rule: `host:port` gets https when TLS is configured, else http. */
function normaliseServer(url: string, tlsConfigured: boolean): string {
  let u: URL | undefined;
  try {
    u = new URL(url);
    if (u.protocol !== "http:" && u.protocol !== "https:") u = undefined;
  } catch {
    u = undefined;
  }
  if (u === undefined) {
    try {
      u = new URL(`${tlsConfigured ? "https" : "http"}://${url}`);
    } catch {
      throw new Error(`Invalid API server URL ${JSON.stringify(url)}`);
    }
  }
  return `${u.protocol}//${u.host}${u.pathname}`.replace(/\/+$/, "");
}

async function loadInCluster(opts: LoadKubeConnectionOptions): Promise<KubeConnection> {
  const host = opts.env.KUBERNETES_SERVICE_HOST ?? "";
  const port = opts.env.KUBERNETES_SERVICE_PORT ?? "";
  if (host === "" || port === "") {
    throw new Error(
      "Unable to load in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined (or pass --kubeconfig or --master)",
    );
  }
  const dir = (opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR).replace(/\/+$/, "");
  const logger = opts.logger ?? nullLogger;
  const tokenPath = `${dir}/token`;
  let token: string;
  try {
    token = (await opts.readFile(tokenPath)).trim();
  } catch (err) {
    throw new Error(
      `Unable to load in-cluster configuration: cannot read ${tokenPath}: ${message(err)}`,
      {
        cause: err,
      },
    );
  }
  const tls: TlsConfig = {};
  try {
    tls.ca = await opts.readFile(`${dir}/ca.crt`);
  } catch (err) {
    // client-go logs and goes on with the system roots.
    logger.error("Expected to load root CA config, but got an error", {
      path: `${dir}/ca.crt`,
      err: message(err),
    });
  }
  let namespace: string | undefined;
  try {
    namespace = (await opts.readFile(`${dir}/namespace`)).trim() || undefined;
  } catch {
    namespace = undefined;
  }
  const hostPart = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  const server = `https://${hostPart}:${port}`;
  const conn: KubeConnection = {
    server,
    tls,
    auth: tokenFileAuth({
      path: tokenPath,
      readFile: opts.readFile,
      clock: opts.clock,
      refreshMs: opts.tokenRefreshMs,
      initialToken: token,
    }),
    source: `in-cluster ${server}`,
  };
  if (namespace !== undefined) conn.namespace = namespace;
  return conn;
}

type Raw = Record<string, unknown>;

function isRecord(v: unknown): v is Raw {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  if (i < 0) return ".";
  return i === 0 ? "/" : path.slice(0, i);
}

function resolvePath(dir: string, p: string): string {
  return p.startsWith("/") ? p : `${dir}/${p}`;
}

/** client-node's `makeAbsolutePath`: `path.join(dir, file)` (normalised) unless `file` is absolute. */
function absolutePath(dir: string, file: string): string {
  if (!dir || file.startsWith("/")) return file;
  const out: string[] = [];
  const absolute = dir.startsWith("/");
  for (const part of `${dir}/${file}`.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === ".." && out.length > 0 && out[out.length - 1] !== "..") out.pop();
    else if (part !== ".." || !absolute) out.push(part);
  }
  const joined = (absolute ? "/" : "") + out.join("/");
  if (!joined) return file.endsWith("/") ? "./" : ".";
  return file.endsWith("/") && joined !== "/" ? `${joined}/` : joined;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function base64ToText(b64: string): string {
  const bin = atob(b64.replace(/\s+/g, ""));
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

async function loadKubeconfigFile(
  path: string,
  opts: LoadKubeConnectionOptions,
): Promise<KubeConnection> {
  const fail = (why: string, cause?: unknown): never => {
    throw new Error(`Invalid kubeconfig ${path}: ${why}`, { cause });
  };
  let text: string;
  try {
    text = await opts.readFile(path);
  } catch (err) {
    throw new Error(`Cannot read kubeconfig ${path}: ${message(err)}`, { cause: err });
  }
  const dir = dirname(path);

  const [{ load }, { newClusters, newContexts, newUsers }] = await Promise.all([
    import("js-yaml"),
    import("@kubernetes/client-node/dist/config_types.js"),
  ]);
  let raw: unknown;
  try {
    raw = load(text);
    if (!raw) throw new Error("Failed to load YAML");
  } catch (err) {
    fail(message(err), err);
  }
  if (!isRecord(raw)) return fail("not a YAML mapping");

  // What client-node does not keep, or handles differently from client-go, is taken out here.
  const tokenFiles = new Map<string, string>();
  const impersonation = new Map<string, Record<string, string>>();
  const clustersByName = new Map<string, Raw>();
  for (const c of Array.isArray(raw.clusters) ? raw.clusters : []) {
    if (isRecord(c) && typeof c.name === "string" && isRecord(c.cluster)) {
      clustersByName.set(c.name, c.cluster);
    }
  }
  for (const u of Array.isArray(raw.users) ? raw.users : []) {
    if (!isRecord(u) || typeof u.name !== "string" || !isRecord(u.user)) continue;
    const user = u.user;
    if (typeof user["token-file"] === "string" && user["token-file"] !== "") {
      tokenFiles.set(u.name, resolvePath(dir, user["token-file"]));
    }
    delete user["token-file"];
    const imp: Record<string, string> = {};
    if (typeof user["as-uid"] === "string" && user["as-uid"] !== "")
      imp["Impersonate-Uid"] = user["as-uid"];
    impersonation.set(u.name, imp);
    if (isRecord(user.exec)) {
      const exec = user.exec;
      if (typeof exec.command === "string" && exec.command.includes("/")) {
        exec.command = resolvePath(dir, exec.command);
      }
    }
  }

  // What KubeConfig.loadFromString and makePathsAbsolute do, without loading client-node. The
  // JSON round trip is what handing client-node the edited document as JSON text did: YAML
  // timestamps become strings.
  let clusters: Cluster[] = [];
  let contexts: Context[] = [];
  let users: User[] = [];
  const doc = JSON.parse(JSON.stringify(raw)) as Raw;
  try {
    clusters = newClusters(doc.clusters);
    contexts = newContexts(doc.contexts);
    users = newUsers(doc.users);
  } catch (err) {
    fail(message(err), err);
  }
  for (const c of clusters) if (c.caFile) c.caFile = absolutePath(dir, c.caFile);
  for (const u of users) {
    if (u.certFile) u.certFile = absolutePath(dir, u.certFile);
    if (u.keyFile) u.keyFile = absolutePath(dir, u.keyFile);
  }
  const byName = <T extends { name: string }>(list: T[], name: string): T | null =>
    list.find((x) => x.name === name) ?? null;

  const contextName = doc["current-context"] as string | undefined;
  if (!contextName) fail("no current-context is set");
  const context = byName(contexts, contextName!);
  if (!context) return fail(`current-context ${JSON.stringify(contextName)} is not defined`);
  const cluster = byName(clusters, context.cluster);
  if (!cluster) {
    return fail(
      `cluster ${JSON.stringify(context.cluster)} of context ${JSON.stringify(contextName)} is not defined`,
    );
  }
  const user = context.user ? byName(users, context.user) : null;
  if (context.user && !user) {
    fail(
      `user ${JSON.stringify(context.user)} of context ${JSON.stringify(contextName)} is not defined`,
    );
  }

  const pemFrom = async (what: string, file?: string | null, data?: string | null) => {
    if (file) {
      try {
        return await opts.readFile(file);
      } catch (err) {
        return fail(`cannot read ${what} ${file}: ${message(err)}`, err);
      }
    }
    if (data) {
      try {
        return base64ToText(data);
      } catch (err) {
        return fail(`${what} data is not valid base64`, err);
      }
    }
    return undefined;
  };

  const tls: TlsConfig = {};
  if (cluster.skipTLSVerify) tls.insecureSkipVerify = true;
  else {
    const ca = await pemFrom("certificate-authority", cluster.caFile, cluster.caData);
    if (ca !== undefined) tls.ca = ca;
  }
  if (cluster.tlsServerName) tls.serverName = cluster.tlsServerName;
  if (user) {
    const cert = await pemFrom("client-certificate", user.certFile, user.certData);
    const key = await pemFrom("client-key", user.keyFile, user.keyData);
    if ((cert === undefined) !== (key === undefined)) {
      fail(
        `user ${JSON.stringify(user.name)} has a client certificate without a key or a key without a certificate`,
      );
    }
    if (cert !== undefined) tls.cert = cert;
    if (key !== undefined) tls.key = key;
  }

  let auth: AuthProvider = noAuth;
  if (user) {
    if (user.exec || user.authProvider) {
      if (user.exec) addExecInfo(user.exec as Raw, cluster, tls);
      const { KubeConfig } = await import("@kubernetes/client-node");
      auth = pluginAuth({ user, clock: opts.clock, KubeConfig });
    } else if (tokenFiles.has(user.name)) {
      const tokenPath = tokenFiles.get(user.name)!;
      let initialToken: string;
      try {
        initialToken = await opts.readFile(tokenPath);
      } catch (err) {
        return fail(`cannot read token-file ${tokenPath}: ${message(err)}`, err);
      }
      auth = tokenFileAuth({
        path: tokenPath,
        readFile: opts.readFile,
        clock: opts.clock,
        refreshMs: opts.tokenRefreshMs,
        initialToken,
      });
    } else if (user.token) {
      auth = staticAuth({ Authorization: `Bearer ${user.token.trim()}` });
    } else if (user.username) {
      const basic = btoa(
        String.fromCharCode(...new TextEncoder().encode(`${user.username}:${user.password ?? ""}`)),
      );
      auth = staticAuth({ Authorization: `Basic ${basic}` });
    }
    const imp = { ...impersonation.get(user.name) };
    if (user.impersonateUser) imp["Impersonate-User"] = user.impersonateUser;
    auth = withHeaders(auth, imp);
  }

  let proxyUrl: string | undefined;
  if (cluster.proxyUrl) {
    let proto: string;
    try {
      proto = new URL(cluster.proxyUrl).protocol;
    } catch {
      return fail(`proxy-url ${JSON.stringify(cluster.proxyUrl)} is not a URL`);
    }
    if (proto !== "http:") {
      fail(`proxy-url ${cluster.proxyUrl}: only http:// proxies are supported`);
    }
    proxyUrl = cluster.proxyUrl;
  }

  const hasTls = tls.ca !== undefined || tls.cert !== undefined || !!tls.insecureSkipVerify;
  const conn: KubeConnection = {
    server: normaliseServer(cluster.server, hasTls),
    tls,
    auth,
    source: `kubeconfig ${path} (context ${contextName})`,
  };
  if (proxyUrl !== undefined) conn.proxyUrl = proxyUrl;
  if (context.namespace) conn.namespace = context.namespace;
  return conn;
}

/**
 * Passes `KUBERNETES_EXEC_INFO` to an exec plugin as client-go does (non-interactive; with the
 * cluster when `provideClusterInfo` is set). client-node merges `exec.env` into the environment.
 */
function addExecInfo(
  exec: Raw,
  cluster: { server: string; tlsServerName?: string; proxyUrl?: string; skipTLSVerify: boolean },
  tls: TlsConfig,
): void {
  const apiVersion =
    typeof exec.apiVersion === "string" ? exec.apiVersion : "client.authentication.k8s.io/v1beta1";
  const spec: Raw = { interactive: false };
  if (exec.provideClusterInfo === true) {
    const c: Raw = { server: cluster.server };
    if (typeof tls.ca === "string") c["certificate-authority-data"] = btoa(tls.ca);
    if (cluster.skipTLSVerify) c["insecure-skip-tls-verify"] = true;
    if (cluster.tlsServerName) c["tls-server-name"] = cluster.tlsServerName;
    if (cluster.proxyUrl) c["proxy-url"] = cluster.proxyUrl;
    spec.cluster = c;
  }
  const info = JSON.stringify({ apiVersion, kind: "ExecCredential", spec });
  const env = Array.isArray(exec.env)
    ? exec.env.filter((e) => !(isRecord(e) && e.name === "KUBERNETES_EXEC_INFO"))
    : [];
  env.push({ name: "KUBERNETES_EXEC_INFO", value: info });
  exec.env = env;
}
