/**
 * Credentials for API requests: what goes into the `Authorization` (and impersonation) headers,
 * and a client certificate when a credential plugin hands one out.
 *
 * - {@link staticAuth}: a fixed bearer token or basic-auth pair from the kubeconfig.
 * - {@link tokenFileAuth}: a bearer token read from a file and re-read at most every minute, and
 *   at once after a 401, as client-go does for the in-cluster service-account token (bound
 *   tokens are rotated by the kubelet and expire within an hour) and kubeconfig `tokenFile`.
 * - {@link pluginAuth}: exec credential plugins and legacy `auth-provider`s, run by
 *   `@kubernetes/client-node`'s authenticators, which cache a credential until its
 *   `expirationTimestamp`; a 401 starts from a fresh authenticator, so the plugin runs again.
 *   This module only imports client-node's types: loading client-node costs 55-85 MB of RSS,
 *   so `config.ts` imports it lazily, only for kubeconfig files.
 *
 * The transport calls `credentials()` before each request and `invalidate(sentAt)` after a 401.
 */
import type { KubeConfig, User } from "@kubernetes/client-node";
import type { Clock } from "../util/clock.ts";

export interface Credentials {
  /** Extra request headers, e.g. `Authorization`, `Impersonate-User`. */
  headers: Record<string, string>;
  /** PEM client certificate from a credential plugin; replaces the connection's. */
  cert?: string;
  /** PEM key of `cert`. */
  key?: string;
}

export interface AuthProvider {
  /** The credentials to send now. Rejects when they cannot be obtained (plugin failure). */
  credentials(): Promise<Credentials>;
  /**
   * The server answered 401 to a request sent at `sentAt` (clock milliseconds): forget any
   * credentials obtained at or before that time, so the next call fetches fresh ones.
   */
  invalidate(sentAt: number): void;
}

/** No credentials (a `--master` URL alone, or a client-certificate-only kubeconfig user). */
export const noAuth: AuthProvider = {
  credentials: () => Promise.resolve({ headers: {} }),
  invalidate() {},
};

/** Fixed headers, e.g. `{ Authorization: "Bearer …" }`. */
export function staticAuth(headers: Record<string, string>): AuthProvider {
  const creds: Credentials = { headers: { ...headers } };
  return {
    credentials: () => Promise.resolve({ headers: { ...creds.headers } }),
    invalidate() {},
  };
}

/** Adds fixed headers (impersonation) to another provider's. */
export function withHeaders(auth: AuthProvider, extra: Record<string, string>): AuthProvider {
  if (Object.keys(extra).length === 0) return auth;
  return {
    async credentials() {
      const c = await auth.credentials();
      return { ...c, headers: { ...c.headers, ...extra } };
    },
    invalidate: (sentAt) => auth.invalidate(sentAt),
  };
}

export interface TokenFileAuthOptions {
  path: string;
  readFile: (path: string) => string | Promise<string>;
  clock: Clock;
  /** How long a read token is used before the file is read again; default 60 000 ms (client-go). */
  refreshMs?: number;
  /** A token already read from the file (at load time); default: read on first use. */
  initialToken?: string;
}

/**
 * A bearer token from a file that may be rewritten at any time. A failed re-read keeps the token
 * read before (client-go does the same); a failed first read rejects.
 */
export function tokenFileAuth(opts: TokenFileAuthOptions): AuthProvider {
  const refreshMs = opts.refreshMs ?? 60_000;
  let token = opts.initialToken?.trim();
  let readAt = token === undefined ? Number.NEGATIVE_INFINITY : opts.clock.now();
  let pending: Promise<string> | undefined;

  const reread = async (): Promise<string> => {
    const startedAt = opts.clock.now();
    try {
      const text = (await opts.readFile(opts.path)).trim();
      if (text === "") throw new Error(`token file ${opts.path} is empty`);
      token = text;
      readAt = startedAt;
    } catch (err) {
      if (token === undefined) {
        throw new Error(`Cannot read token file ${opts.path}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      // Keep the previous token; try again at the next refresh.
      readAt = startedAt;
    }
    return token;
  };

  return {
    async credentials() {
      if (token === undefined || opts.clock.now() - readAt >= refreshMs) {
        pending ??= reread().finally(() => {
          pending = undefined;
        });
        await pending;
      }
      return { headers: { Authorization: `Bearer ${token}` } };
    },
    invalidate(sentAt) {
      if (readAt <= sentAt) readAt = Number.NEGATIVE_INFINITY;
    },
  };
}

/** The parts of `https.RequestOptions` that client-node's authenticators fill in. */
interface AppliedOptions {
  headers?: Record<string, unknown>;
  cert?: unknown;
  key?: unknown;
}

function pem(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  return undefined;
}

/**
 * Credentials from client-node's authenticators for a kubeconfig user with `exec` or
 * `auth-provider`. Only the user's plugin settings are handed to client-node (no certificate
 * files), so a call costs a cache lookup until the credential expires. Calls are serialised, so
 * concurrent first requests run the plugin once.
 */
export function pluginAuth(opts: {
  user: User;
  clock: Clock;
  /** client-node's `KubeConfig` constructor (passed in so that client-node loads lazily). */
  KubeConfig: new () => KubeConfig;
}): AuthProvider {
  const { user, clock } = opts;
  const fresh = () => {
    const kc = new opts.KubeConfig();
    kc.loadFromClusterAndUser(
      // The server is never contacted; https keeps client-node from rejecting plain http.
      { name: "credentials", server: "https://credentials.invalid", skipTLSVerify: false },
      { name: user.name, exec: user.exec, authProvider: user.authProvider },
    );
    return { kc, createdAt: clock.now() };
  };
  let current = fresh();
  let chain: Promise<unknown> = Promise.resolve();

  const apply = async (): Promise<Credentials> => {
    const o: AppliedOptions = {};
    await current.kc.applyToHTTPSOptions(o as Parameters<KubeConfig["applyToHTTPSOptions"]>[0]);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(o.headers ?? {})) {
      if (v !== undefined && v !== null) headers[k] = String(v);
    }
    const creds: Credentials = { headers };
    const cert = pem(o.cert);
    const key = pem(o.key);
    if (cert !== undefined && key !== undefined) {
      creds.cert = cert;
      creds.key = key;
    }
    return creds;
  };

  return {
    credentials() {
      const run = chain.then(apply);
      chain = run.catch(() => {});
      return run;
    },
    invalidate(sentAt) {
      if (current.createdAt <= sentAt) current = fresh();
    },
  };
}
