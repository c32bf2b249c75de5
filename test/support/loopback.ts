/**
 * Loopback servers for client tests: an HTTP or HTTPS server (optionally requiring a client
 * certificate signed by the test CA) that records every request and answers through a handler,
 * and a minimal HTTP `CONNECT` proxy. Both track their sockets so `close()` really closes.
 */
import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { TestPki } from "./certs.ts";

export interface RecordedRequest {
  method: string;
  /** Path without the query. */
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The client's port: requests with the same one came over one connection. */
  remotePort: number;
}

export type Handler = (
  req: RecordedRequest,
  res: http.ServerResponse,
  raw: http.IncomingMessage,
) => unknown;

export interface Loopback {
  /** `https://127.0.0.1:<port>` or `http://…`. */
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** Replaces the handler. */
  handler: Handler;
  close(): Promise<void>;
}

function track(server: net.Server): () => void {
  const sockets = new Set<net.Socket>();
  server.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.on("secureConnection", (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  return () => {
    for (const s of sockets) s.destroy();
  };
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return (server.address() as net.AddressInfo).port;
}

async function closeServer(server: net.Server, destroyAll: () => void): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  destroyAll();
  await closed;
}

/**
 * Starts a server on 127.0.0.1. With `pki` it speaks HTTPS with the test server certificate;
 * `requireClientCert` (default true with `pki`) rejects clients without a certificate signed
 * by the test CA during the handshake.
 */
export async function startLoopback(opts: {
  pki?: TestPki;
  requireClientCert?: boolean;
  handler?: Handler;
}): Promise<Loopback> {
  const requests: RecordedRequest[] = [];
  const state: Loopback = {
    url: "",
    port: 0,
    requests,
    handler: opts.handler ?? ((_req, res) => res.end("{}")),
    close: async () => {},
  };
  const onRequest = (raw: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    raw.on("data", (c: Buffer) => chunks.push(c));
    raw.on("end", () => {
      const u = new URL(raw.url ?? "/", "http://x");
      const rec: RecordedRequest = {
        method: raw.method ?? "",
        path: u.pathname,
        query: u.searchParams,
        headers: raw.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        remotePort: raw.socket.remotePort ?? 0,
      };
      requests.push(rec);
      Promise.resolve(state.handler(rec, res, raw)).catch((err) => {
        res.statusCode = 599;
        res.end(String(err));
      });
    });
  };
  let server: http.Server | https.Server;
  if (opts.pki) {
    const require = opts.requireClientCert ?? true;
    server = https.createServer(
      {
        ca: opts.pki.caPem,
        cert: opts.pki.serverCertPem,
        key: opts.pki.serverKeyPem,
        requestCert: require,
        rejectUnauthorized: require,
      },
      onRequest,
    );
  } else {
    server = http.createServer(onRequest);
  }
  const destroyAll = track(server);
  const port = await listen(server);
  state.port = port;
  state.url = `${opts.pki ? "https" : "http"}://127.0.0.1:${port}`;
  state.close = () => closeServer(server, destroyAll);
  return state;
}

export interface ConnectProxy {
  url: string;
  /** `host:port` of every CONNECT seen. */
  tunnels: string[];
  close(): Promise<void>;
}

/** A forward proxy that only supports `CONNECT` tunnels. */
export async function startConnectProxy(): Promise<ConnectProxy> {
  const tunnels: string[] = [];
  const server = http.createServer((_req, res) => {
    res.statusCode = 405;
    res.end();
  });
  const upstreams = new Set<net.Socket>();
  server.on("connect", (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const authority = req.url ?? "";
    tunnels.push(authority);
    const i = authority.lastIndexOf(":");
    const up = net.connect(Number(authority.slice(i + 1)), authority.slice(0, i), () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    upstreams.add(up);
    up.on("close", () => upstreams.delete(up));
    up.on("error", () => client.destroy());
    client.on("error", () => up.destroy());
  });
  const destroyAll = track(server);
  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}`,
    tunnels,
    close: () =>
      closeServer(server, () => {
        destroyAll();
        for (const s of upstreams) s.destroy();
      }),
  };
}

/** Sends a JSON answer. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/** A metav1.Status failure body. */
export function statusBody(code: number, reason: string, message: string, details?: unknown) {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    code,
    ...(details === undefined ? {} : { details }),
  };
}
