/**
 * HTTP(S) requests on `node:http` / `node:https`, for `https.ts`: every request on Deno and Node;
 * on Bun only proxied ones and the retry of a failed TLS handshake (for its cause). Loaded on
 * first use.
 *
 * - One keep-alive agent per TLS configuration (CA, client certificate and key, verification
 *   settings) is kept and reused; {@link closeNodeConnections} drops them all.
 * - `proxyUrl` (an `http://` proxy) tunnels `https://` targets with `CONNECT` and forwards
 *   `http://` targets; proxied connections are not pooled.
 * - A `gzip` content-encoding is decoded here; aborting `signal` destroys the socket.
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
import {
  abortError,
  bodyIterator,
  type HttpRequestOptions,
  type HttpResponse,
  type TlsConfig,
  toTlsInput,
} from "./https.ts";

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
export function closeNodeConnections(): void {
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

function hostOf(u: URL): string {
  return u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
}

function portOf(u: URL): number {
  if (u.port !== "") return Number(u.port);
  return u.protocol === "https:" ? 443 : 80;
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

/** Sends one request with `node:http(s)`; `https.ts` has checked the URL and the proxy. */
export async function nodeRequest(
  opts: HttpRequestOptions,
  target: URL,
  secure: boolean,
  proxy: URL | undefined,
): Promise<HttpResponse> {
  const { signal } = opts;
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
          return bodyIterator(
            async () => {
              const r = await it.next();
              if (r.done) detach();
              return r;
            },
            close,
            signal,
          );
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
