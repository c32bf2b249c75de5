/**
 * An HTTP(S) server for a web-standard `Request` → `Response` handler, on `node:http` /
 * `node:https`, which Bun, Deno and Node all provide. Response bodies are streamed chunk by
 * chunk (a watch stream is a `ReadableStream` that never ends on its own), with the headers
 * flushed before the first chunk so that a client sees a silent stream as open.
 *
 * Each request's `signal` aborts when the client goes away or the server closes, so a
 * streaming handler can stop producing. `close()` ends every open response, destroys every
 * connection and frees the port.
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Socket } from "node:net";
import { type Clock, systemClock } from "../util/clock.ts";

export type FetchHandler = (req: Request) => Promise<Response>;

export interface ServeOptions {
  /**
   * Interface to listen on; default `127.0.0.1` (loopback only). `::` listens on every interface
   * of both families (IPv4 clients arrive as IPv4-mapped addresses), falling back to `0.0.0.0`
   * where the kernel has no IPv6, as Go's `net.Listen("tcp", ":port")` does.
   */
  hostname?: string;
  /** TCP port; default 0 (a free port chosen by the system). */
  port?: number;
  /** Closes the server when aborted. */
  signal?: AbortSignal;
  /** PEM certificate chain and key: serve HTTPS instead of HTTP. */
  tls?: { cert: string; key: string };
  /**
   * How long `close()` lets open responses finish after telling their handlers (through the
   * request signal) before cutting the connections; default 2000 ms.
   */
  closeGraceMs?: number;
  /** Times the close grace period; default the system clock. */
  clock?: Clock;
}

export interface ServedServer {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`. */
  url: string;
  port: number;
  /** Ends open responses (watch streams included), drops connections and frees the port. */
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of req) {
    chunks.push(typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk);
  }
  const total = chunks.reduce((n, c) => n + c.byteLength, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

function toHeaders(req: IncomingMessage): Headers {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    headers.append(raw[i]!, raw[i + 1]!);
  }
  return headers;
}

function waitDrain(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/** Ends the response and waits until its last bytes are handed to the system. */
function endAndWait(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    if (res.destroyed || res.writableFinished) {
      resolve();
      return;
    }
    res.once("finish", () => resolve());
    res.once("close", () => resolve());
    res.end();
  });
}

/** Starts serving `handler`; resolves once the server listens. */
export function serve(handler: FetchHandler, opts: ServeOptions = {}): Promise<ServedServer> {
  const hostname = opts.hostname ?? "127.0.0.1";
  const sockets = new Set<Socket>();
  const inflight = new Map<AbortController, Promise<void>>();
  let closing: Promise<void> | undefined;

  const onRequest = async (
    req: IncomingMessage,
    res: ServerResponse,
    aborter: AbortController,
  ): Promise<void> => {
    const abort = () => aborter.abort(new Error("Client closed the connection"));
    res.on("close", abort);
    try {
      const method = req.method ?? "GET";
      const body = method === "GET" || method === "HEAD" ? undefined : await readBody(req);
      const host = req.headers.host ?? `${hostname}:${port}`;
      const request = new Request(`${scheme}://${host}${req.url ?? "/"}`, {
        method,
        headers: toHeaders(req),
        body: body && body.byteLength > 0 ? (body as Uint8Array<ArrayBuffer>) : undefined,
        signal: aborter.signal,
      });
      let response: Response;
      try {
        response = await handler(request);
      } catch (err) {
        response = new Response(`Internal error: ${String(err)}`, { status: 500 });
      }
      const headers: Record<string, string | string[]> = {};
      response.headers.forEach((value, key) => {
        const prev = headers[key];
        if (prev === undefined) headers[key] = value;
        else headers[key] = Array.isArray(prev) ? [...prev, value] : [prev, value];
      });
      res.writeHead(response.status, headers);
      if (response.body === null || method === "HEAD") {
        await endAndWait(res);
        return;
      }
      const reader = response.body.getReader();
      if (res.destroyed) {
        reader.cancel(new Error("Connection closed")).catch(() => {});
        return;
      }
      res.flushHeaders();
      // Nobody to send to once the connection is gone: stop the body.
      res.once("close", () => {
        if (!res.writableFinished) reader.cancel(new Error("Connection closed")).catch(() => {});
      });
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch {
          // The body failed: end the connection abruptly, as a dropped stream would.
          res.destroy();
          return;
        }
        if (chunk.done) break;
        if (res.destroyed) {
          reader.cancel().catch(() => {});
          return;
        }
        if (!res.write(chunk.value)) await waitDrain(res);
      }
      await endAndWait(res);
    } catch {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500);
        res.end();
      } else {
        res.destroy();
      }
    } finally {
      res.off("close", abort);
    }
  };

  const scheme = opts.tls ? "https" : "http";
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    const aborter = new AbortController();
    const done = onRequest(req, res, aborter).finally(() => inflight.delete(aborter));
    inflight.set(aborter, done);
  };
  const server: Server = opts.tls
    ? (createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, listener) as unknown as Server)
    : createHttpServer(listener);
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  let port = 0;

  /**
   * Stops accepting connections, tells every in-flight request that the server is closing (its
   * signal aborts, so a streaming handler can end its body), lets the responses finish for a
   * grace period, then destroys every connection left.
   */
  const close = (): Promise<void> => {
    if (closing) return closing;
    closing = (async () => {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const a of inflight.keys()) a.abort(new Error("Server closed"));
      if (inflight.size > 0) {
        const grace = new AbortController();
        await Promise.race([
          Promise.all(inflight.values()),
          (opts.clock ?? systemClock)
            .sleep(opts.closeGraceMs ?? 2000, grace.signal)
            .catch(() => {}),
        ]);
        grace.abort();
      }
      const s = server as Server & { closeAllConnections?: () => void };
      s.closeAllConnections?.();
      for (const socket of sockets) socket.destroy();
      await Promise.all(inflight.values());
      await stopped;
    })();
    return closing;
  };

  const listen = (host: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once("error", onError);
      // ipv6Only false: `::` takes IPv4 connections too, whatever the host's bindv6only says.
      server.listen({ port: opts.port ?? 0, host, ipv6Only: false }, () => {
        server.off("error", onError);
        resolve();
      });
    });

  return (async (): Promise<ServedServer> => {
    let bound = hostname;
    try {
      await listen(bound);
    } catch (err) {
      if (!(hostname === "::" && noIpv6(err))) throw err;
      bound = "0.0.0.0";
      await listen(bound);
    }
    const addr = server.address();
    port = typeof addr === "object" && addr !== null ? addr.port : (opts.port ?? 0);
    const host = bound.includes(":") ? `[${bound}]` : bound;
    if (opts.signal) {
      if (opts.signal.aborted) void close();
      else opts.signal.addEventListener("abort", () => void close(), { once: true });
    }
    return { url: `${scheme}://${host}:${port}`, port, close };
  })();
}

/** Whether a listen error means that this kernel has no IPv6 (then `::` falls back to IPv4). */
export function noIpv6(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "EAFNOSUPPORT" || code === "EPROTONOSUPPORT";
}
