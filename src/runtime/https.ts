/**
 * HTTP(S) client I/O for the Kubernetes transport: the only module that opens connections to the
 * API server. Built on `node:http` / `node:https`, whose `{ ca, cert, key }` options honour a
 * private CA and a client certificate on Bun, Deno and Node alike (client-node's undici-based
 * calls do not under Bun; see DESIGN.md section 2); on Bun, on `fetch` (see below).
 *
 * - Responses stream: `body` yields chunks as they arrive, so a watch can be read line by line.
 *   A `gzip` content-encoding is decoded here.
 * - One keep-alive agent per TLS configuration (CA, client certificate and key, verification
 *   settings) is kept and reused; {@link closeIdleConnections} drops them all.
 * - Aborting `signal` destroys the socket, before or during the body.
 * - `proxyUrl` (an `http://` proxy) tunnels `https://` targets with `CONNECT` and forwards
 *   `http://` targets; proxied connections are not pooled.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream";
import tls from "node:tls";
import zlib from "node:zlib";

/** TLS material for an `https://` URL. Strings are PEM text. */
export interface TlsConfig {
  /** Certificate authorities to trust; default: the runtime's built-in roots. */
  ca?: string | Uint8Array;
  /** Client certificate chain (PEM). */
  cert?: string | Uint8Array;
  /** Private key of `cert` (PEM). */
  key?: string | Uint8Array;
  /** Do not verify the server certificate. Default false. */
  insecureSkipVerify?: boolean;
  /** Name to verify the server certificate against and send as SNI; default: the URL's host. */
  serverName?: string;
}

export interface HttpRequestOptions {
  url: string;
  method: string;
  headers: Record<string, string>;
  body?: Uint8Array | string;
  tls?: TlsConfig;
  /** Aborting closes the connection; the pending promise or body iteration rejects with the reason. */
  signal?: AbortSignal;
  /** An `http://host:port` proxy to go through; default: connect directly. */
  proxyUrl?: string;
  /**
   * Use a connection of its own instead of the keep-alive pool; default false. For long-lived
   * streams (watches): nothing is gained by pooling them, and Deno's `node:http` re-sends an
   * aborted request that waits for headers on a reused connection. The connection is closed
   * when the response ends, is closed, or the signal aborts.
   */
  dedicatedConnection?: boolean;
}

export interface HttpResponse {
  status: number;
  /** Lower-case names; repeated headers joined with `, `. */
  headers: Record<string, string>;
  /** The decoded (gunzipped) body, chunk by chunk. Iterate it at most once. */
  body: AsyncIterable<Uint8Array>;
  /** Stops reading and closes the connection. Safe to call at any time, also after the end. */
  close(): void;
  /**
   * The whole decoded body as UTF-8 text, where the runtime reads it natively (Bun's fetch);
   * use it instead of `body`, not as well.
   */
  text?(): Promise<string>;
}

const MAX_AGENTS = 16;
/** Keep-alive agents by protocol and TLS configuration; oldest first (a small LRU). */
const agents = new Map<string, http.Agent>();

function fingerprint(protocol: string, t: TlsConfig | undefined): string {
  const h = createHash("sha256");
  h.update(protocol);
  for (const part of [t?.ca, t?.cert, t?.key]) {
    h.update("\0");
    if (part !== undefined) h.update(part);
  }
  h.update(`\0${t?.insecureSkipVerify === true}\0${t?.serverName ?? ""}`);
  return h.digest("hex");
}

function agentFor(protocol: string, t: TlsConfig | undefined): http.Agent {
  const key = fingerprint(protocol, t);
  let agent = agents.get(key);
  if (agent) {
    agents.delete(key);
    agents.set(key, agent);
    return agent;
  }
  const options = { keepAlive: true, keepAliveMsecs: 30_000 };
  agent =
    protocol === "https:"
      ? new https.Agent({ ...options, ...tlsOptions(t) })
      : new http.Agent(options);
  agents.set(key, agent);
  if (agents.size > MAX_AGENTS) {
    const [oldestKey, oldest] = agents.entries().next().value as [string, http.Agent];
    agents.delete(oldestKey);
    oldest.destroy();
  }
  return agent;
}

/** Destroys every pooled keep-alive connection (tests call this in `after`). */
export function closeIdleConnections(): void {
  for (const agent of agents.values()) agent.destroy();
  agents.clear();
}

function tlsOptions(t: TlsConfig | undefined): tls.ConnectionOptions {
  const o: tls.ConnectionOptions = {};
  if (t?.ca !== undefined) o.ca = toTlsInput(t.ca);
  if (t?.cert !== undefined) o.cert = toTlsInput(t.cert);
  if (t?.key !== undefined) o.key = toTlsInput(t.key);
  if (t?.insecureSkipVerify) o.rejectUnauthorized = false;
  if (t?.serverName) o.servername = t.serverName;
  return o;
}

function toTlsInput(v: string | Uint8Array): string | Buffer {
  return typeof v === "string" ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function hostOf(u: URL): string {
  return u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
}

function portOf(u: URL): number {
  if (u.port !== "") return Number(u.port);
  return u.protocol === "https:" ? 443 : 80;
}

/**
 * On Bun, every request but proxied ones goes through Bun's own `fetch`, which takes the CA,
 * client certificate and key in its `tls` option: it spends about a quarter of the CPU per
 * request of Bun's `node:https` (0.07 vs 0.31 ms, bench/README.md), and a watch read from it
 * costs the JavaScript thread less per event (bench/watch-cpu.ts). It decodes gzip itself and
 * pools connections per TLS configuration; a `dedicatedConnection` request is sent with
 * `keepalive: false`, so it gets a connection of its own that closes when the body ends or is
 * cancelled (an abort cancels it).
 */
const bunFetch = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

async function fetchRequest(opts: HttpRequestOptions, secure: boolean): Promise<HttpResponse> {
  const { signal } = opts;
  const t = opts.tls;
  const init: RequestInit & {
    tls?: Record<string, unknown>;
    decompress?: boolean;
    timeout?: boolean;
  } = {
    method: opts.method,
    headers: opts.headers,
    body: opts.body as BodyInit | undefined,
    signal,
    redirect: "manual",
  };
  if (opts.dedicatedConnection) {
    // A connection of its own, closed when the body ends or is cancelled, never pooled.
    init.keepalive = false;
    // And no idle timer of Bun's (300 s by default in some versions; 1.4.5 left a body silent
    // for 330 s open): the caller decides when a silent stream is dead (the reflector's
    // watchdog).
    init.timeout = false;
  }
  if (secure && t) {
    const tlsInit: Record<string, unknown> = {};
    if (t.ca !== undefined) tlsInit.ca = toTlsInput(t.ca);
    if (t.cert !== undefined) tlsInit.cert = toTlsInput(t.cert);
    if (t.key !== undefined) tlsInit.key = toTlsInput(t.key);
    if (t.insecureSkipVerify) tlsInit.rejectUnauthorized = false;
    if (t.serverName) tlsInit.serverName = t.serverName;
    init.tls = tlsInit;
  }
  let res: Response;
  try {
    res = await fetch(opts.url, init);
  } catch (err) {
    throw signal?.aborted ? abortError(signal) : err;
  }
  const headers: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    headers[k.toLowerCase()] = headers[k.toLowerCase()] === undefined ? v : `${headers[k]}, ${v}`;
  });
  // fetch has decoded the body already.
  delete headers["content-encoding"];
  const stream = res.body;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  const close = () => {
    if (reader) reader.cancel().catch(() => {});
    else if (stream && !stream.locked) stream.cancel().catch(() => {});
  };
  const body: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]() {
      if (!stream) {
        return {
          next: async () => ({ done: true, value: undefined }),
          return: async () => ({ done: true, value: undefined }),
        };
      }
      reader = stream.getReader();
      const r = reader;
      return {
        async next() {
          try {
            const c = await r.read();
            return c.done ? { done: true, value: undefined } : { done: false, value: c.value };
          } catch (err) {
            close();
            throw signal?.aborted ? abortError(signal) : err;
          }
        },
        async return() {
          close();
          return { done: true, value: undefined };
        },
      };
    },
  };
  const text = async () => {
    try {
      return await res.text();
    } catch (err) {
      throw signal?.aborted ? abortError(signal) : err;
    }
  };
  return { status: res.status, headers, body, close, text };
}

function isHandshakeFailure(err: unknown): boolean {
  const code = String((err as { code?: unknown })?.code ?? "");
  return /EPROTO|CERT|TLS|SSL|SELF_SIGNED|UNABLE_TO|HOSTNAME|ERR_TLS/i.test(code);
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

function flattenHeaders(h: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : String(v);
  }
  return out;
}

/**
 * Opens a `CONNECT` tunnel through an HTTP proxy and starts TLS on it. Resolves with the TLS
 * socket once the handshake is done.
 */
function tunnel(
  proxy: URL,
  target: URL,
  t: TlsConfig | undefined,
  signal: AbortSignal | undefined,
): Promise<tls.TLSSocket> {
  const authority = `${target.hostname}:${portOf(target)}`;
  const headers: Record<string, string> = { host: authority };
  if (proxy.username !== "") {
    const cred = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
    headers["proxy-authorization"] = `Basic ${Buffer.from(cred).toString("base64")}`;
  }
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: hostOf(proxy),
      port: portOf(proxy),
      method: "CONNECT",
      path: authority,
      headers,
      agent: false,
    });
    const onAbort = () => req.destroy(abortError(signal!) as Error);
    signal?.addEventListener("abort", onAbort, { once: true });
    const done = () => signal?.removeEventListener("abort", onAbort);
    req.on("error", (err) => {
      done();
      reject(err);
    });
    req.on("connect", (res, socket) => {
      if (res.statusCode !== 200) {
        done();
        socket.destroy();
        reject(new Error(`proxy ${proxy.host} refused CONNECT ${authority}: ${res.statusCode}`));
        return;
      }
      const host = hostOf(target);
      const sock = tls.connect({
        ...tlsOptions(t),
        socket,
        servername: t?.serverName ?? (isIP(host) === 0 ? host : undefined),
      });
      sock.once("secureConnect", () => {
        done();
        resolve(sock);
      });
      sock.once("error", (err) => {
        done();
        reject(err);
      });
      signal?.addEventListener("abort", () => sock.destroy(), { once: true });
    });
    req.end();
  });
}

/**
 * Sends one request and resolves once the response head has arrived. Rejects on a connection or
 * TLS failure (the runtime's error, e.g. `ECONNREFUSED`), or with the signal's reason on abort.
 */
export async function httpRequest(opts: HttpRequestOptions): Promise<HttpResponse> {
  const { signal } = opts;
  if (signal?.aborted) throw abortError(signal);
  const target = new URL(opts.url);
  if (target.protocol !== "https:" && target.protocol !== "http:") {
    throw new Error(`unsupported URL scheme ${target.protocol} in ${opts.url}`);
  }
  const secure = target.protocol === "https:";
  const proxy = opts.proxyUrl ? new URL(opts.proxyUrl) : undefined;
  if (proxy && proxy.protocol !== "http:") {
    throw new Error(
      `unsupported proxy scheme ${proxy.protocol}: only http:// proxies are supported`,
    );
  }
  if (bunFetch && !proxy) {
    try {
      return await fetchRequest(opts, secure);
    } catch (err) {
      // A failed TLS handshake sent nothing: ask node:https again, whose error names the cause
      // (fetch only says "The TLS handshake failed").
      if (!isHandshakeFailure(err) || signal?.aborted) throw err;
    }
  }

  const headers: Record<string, string> = { ...opts.headers };
  const body = typeof opts.body === "string" ? Buffer.from(opts.body) : opts.body;
  if (body !== undefined) headers["content-length"] = String(body.byteLength);

  const reqOpts: https.RequestOptions = {
    method: opts.method,
    headers,
  };
  if (proxy && !secure) {
    // Plain HTTP through a forward proxy: absolute-form request target.
    reqOpts.host = hostOf(proxy);
    reqOpts.port = portOf(proxy);
    reqOpts.path = target.href;
    reqOpts.agent = false;
    if (proxy.username !== "") {
      const cred = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
      headers["proxy-authorization"] = `Basic ${Buffer.from(cred).toString("base64")}`;
    }
  } else {
    reqOpts.host = hostOf(target);
    reqOpts.port = portOf(target);
    reqOpts.path = target.pathname + target.search;
    if (secure) Object.assign(reqOpts, tlsOptions(opts.tls));
    if (proxy) {
      const sock = await tunnel(proxy, target, opts.tls, signal);
      reqOpts.agent = false;
      reqOpts.createConnection = () => sock;
    } else {
      reqOpts.agent = opts.dedicatedConnection ? false : agentFor(target.protocol, opts.tls);
    }
  }

  const mod = secure ? https : http;
  return new Promise<HttpResponse>((resolve, reject) => {
    let settled = false;
    let stream: Readable | undefined;
    const req = mod.request(reqOpts);
    const onAbort = () => {
      const reason = abortError(signal!) as Error;
      stream?.destroy(reason);
      req.destroy(reason);
      if (!settled) {
        settled = true;
        reject(reason);
      }
    };
    const detach = () => signal?.removeEventListener("abort", onAbort);
    signal?.addEventListener("abort", onAbort, { once: true });

    req.on("error", (err) => {
      if (settled) return;
      settled = true;
      detach();
      reject(signal?.aborted ? abortError(signal) : err);
    });

    req.on("response", (res) => {
      const resHeaders = flattenHeaders(res.headers);
      const encoding = resHeaders["content-encoding"]?.trim().toLowerCase();
      let s: Readable = res;
      if (encoding === "gzip" || encoding === "x-gzip") {
        s = pipeline(res, zlib.createGunzip(), () => {});
      }
      stream = s;
      const close = () => {
        detach();
        if (!s.destroyed) s.destroy();
        if (!res.destroyed) res.destroy();
      };
      const bodyIterable: AsyncIterable<Uint8Array> = {
        [Symbol.asyncIterator]() {
          const it = s[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
          return {
            async next() {
              try {
                const r = await it.next();
                if (r.done) detach();
                return r;
              } catch (err) {
                close();
                throw signal?.aborted ? abortError(signal) : err;
              }
            },
            async return() {
              close();
              return { done: true, value: undefined };
            },
          };
        },
      };
      settled = true;
      resolve({
        status: res.statusCode ?? 0,
        headers: resHeaders,
        body: bodyIterable,
        close,
      });
    });

    req.end(body);
  });
}
