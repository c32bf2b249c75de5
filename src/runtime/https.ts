/**
 * HTTP(S) client I/O for the Kubernetes transport: the only module that opens connections to the
 * API server.
 *
 * - On Bun, requests go through Bun's own `fetch` (below); proxied requests, and a failed TLS
 *   handshake asked again for its cause, go through `node-http.ts`.
 * - On Deno and Node, every request goes through `node-http.ts` (`node:http` / `node:https`,
 *   whose `{ ca, cert, key }` options honour a private CA and a client certificate on every
 *   runtime; client-node's undici-based calls do not under Bun: DESIGN.md section 2).
 * - `node-http.ts` is loaded on first use only: on Bun, `node:http`, `node:https`, `node:tls` and
 *   `node:zlib` are otherwise never loaded, which keeps ~3 MiB of the runtime's code out of
 *   memory.
 * - Responses stream: `body` yields chunks as they arrive, so a watch can be read line by line.
 *   A `gzip` content-encoding is decoded.
 * - Aborting `signal` closes the connection, before or during the body.
 */
import { Buffer } from "node:buffer";

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

/** PEM input as the TLS options take it. */
export function toTlsInput(v: string | Uint8Array): string | Buffer {
  return typeof v === "string" ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
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
      if (!stream) return bodyIterator(async () => DONE, close, signal);
      const r = stream.getReader();
      reader = r;
      return bodyIterator(
        async () => {
          const c = await r.read();
          return c.done ? DONE : { done: false, value: c.value };
        },
        close,
        signal,
      );
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

export function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/**
 * A response body's iterator over `read`: a failed read closes the connection and rejects with
 * the signal's reason if it aborted (else the read's error); `return()` closes it.
 */
export function bodyIterator(
  read: () => Promise<IteratorResult<Uint8Array>>,
  close: () => void,
  signal: AbortSignal | undefined,
): AsyncIterator<Uint8Array> {
  return {
    async next() {
      try {
        return await read();
      } catch (err) {
        close();
        throw signal?.aborted ? abortError(signal) : err;
      }
    },
    async return() {
      close();
      return DONE;
    },
  };
}

type NodeHttp = typeof import("./node-http.ts");
let nodeHttp: NodeHttp | undefined;

async function loadNodeHttp(): Promise<NodeHttp> {
  nodeHttp ??= await import("./node-http.ts");
  return nodeHttp;
}

/** Destroys every pooled keep-alive connection of `node:http(s)` (tests call this in `after`). */
export function closeIdleConnections(): void {
  nodeHttp?.closeNodeConnections();
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
  return (await loadNodeHttp()).nodeRequest(opts, target, secure, proxy);
}
