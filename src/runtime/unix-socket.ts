/**
 * HTTP/2 over a unix domain socket: the only part of the CSI client that touches `node:*`.
 *
 * One HTTP/2 session per connection, opened on `net.connect(path)`; Bun, Deno and Node all run
 * `node:http2` this way (DESIGN.md §2). The session never closes when idle and never pings, so
 * the only way the socket closes is the driver going away (or {@link UnixH2Connection.close});
 * that close is reported once as a connection loss. The gRPC protocol on top (framing, status,
 * interceptors) is `src/csi/grpc-transport.ts`.
 */
import { statSync } from "node:fs";
import * as http2 from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import process from "node:process";

/** Header or trailer fields of a response (lower-case names, `:status` included). */
export type H2Fields = Readonly<Record<string, string | string[] | number | undefined>>;

/** What came back on one stream: its headers, its trailers (if any) and its body's chunks. */
export interface H2Exchange {
  headers: H2Fields;
  trailers: H2Fields | undefined;
  body: Uint8Array[];
}

/**
 * A stream that ended without a complete response: reset by the peer (`rstCode`, an HTTP/2
 * error code), or cut because the connection closed (`rstCode` undefined).
 */
export class H2StreamError extends Error {
  override name = "H2StreamError";
  readonly rstCode: number | undefined;
  constructor(message: string, rstCode: number | undefined, options?: ErrorOptions) {
    super(message, options);
    this.rstCode = rstCode;
  }
}

/** HTTP/2's REFUSED_STREAM and CANCEL error codes. */
export const H2_REFUSED_STREAM = 0x7;
export const H2_CANCEL = 0x8;

export interface UnixH2Connection {
  /**
   * Opens the socket and the HTTP/2 session if they are not open. Resolves once connected;
   * rejects with the socket error (for example `ENOENT` or `ECONNREFUSED`).
   */
  connect(): Promise<void>;
  /**
   * Sends one request, the whole body at once, and resolves when the response has ended.
   * Aborting `signal` resets the stream (CANCEL) and rejects with the signal's reason; a reset
   * or a lost connection rejects with an {@link H2StreamError}.
   */
  exchange(
    headers: Record<string, string>,
    body: Uint8Array,
    signal: AbortSignal,
  ): Promise<H2Exchange>;
  /**
   * Registers the listener of connection loss: called at most once, with a reason, when a socket
   * that had connected closes while the connection is not being closed by {@link close}.
   */
  onConnectionLost(listener: (reason: string) => void): void;
  /** Whether a connection has been lost. */
  readonly lost: boolean;
  /** Closes the session and its socket; calls in flight fail. Idempotent. */
  close(): void;
}

/** Who may use a socket file, and who this process is (for a permission-denied message). */
export interface SocketAccess {
  /** The socket file's permission bits (`mode & 0o777`), owner and group. */
  mode: number;
  uid: number;
  gid: number;
  /** This process's effective user and group, and its supplementary groups. */
  processUid: number;
  processGid: number;
  processGroups: number[];
}

/** The socket file's owner and mode and this process's ids; `undefined` if there is no file. */
export function socketAccess(path: string): SocketAccess | undefined {
  try {
    const st = statSync(path);
    const p = process as {
      geteuid?: () => number;
      getegid?: () => number;
      getgroups?: () => number[];
    };
    let groups: number[] = [];
    try {
      groups = p.getgroups?.() ?? [];
    } catch {
      // Not every runtime implements getgroups; the message then names only the primary group.
    }
    return {
      mode: st.mode & 0o777,
      uid: st.uid,
      gid: st.gid,
      processUid: p.geteuid?.() ?? -1,
      processGid: p.getegid?.() ?? -1,
      processGroups: groups,
    };
  } catch {
    return undefined;
  }
}

/** What is at a socket path, for messages that tell the cases apart. */
export type SocketPathState =
  | { kind: "socket" }
  | { kind: "missing" }
  /** Something else: `what` is "a regular file", "a directory" or "not a unix socket". */
  | { kind: "not-socket"; what: string }
  /** A directory on the way may not be searched by this user. */
  | { kind: "no-access" };

/** What `path` is: a socket, nothing, something else, or out of this user's reach. */
export function socketPathState(path: string): SocketPathState {
  try {
    const st = statSync(path);
    if (st.isSocket()) return { kind: "socket" };
    return {
      kind: "not-socket",
      what: st.isDirectory() ? "a directory" : st.isFile() ? "a regular file" : "not a unix socket",
    };
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    if (code === "EACCES" || code === "EPERM") return { kind: "no-access" };
    return { kind: "missing" };
  }
}

function describeSocketError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" && !error.message.includes(code)
      ? `${code}: ${error.message}`
      : error.message;
  }
  return String(error);
}

/** Opens HTTP/2 connections to the unix socket at `socketPath`, one at a time. */
export function createUnixH2Connection(socketPath: string): UnixH2Connection {
  let closing = false;
  let lost = false;
  let lostListener: ((reason: string) => void) | undefined;
  let session: http2.ClientHttp2Session | undefined;
  let socket: Socket | undefined;

  const closedError = () => new Error(`Connection to CSI driver at ${socketPath} is closed`);

  const reportLoss = (reason: string) => {
    if (closing || lost) return;
    lost = true;
    lostListener?.(reason);
  };

  /** Connects the socket, then starts HTTP/2 on it and waits for the server's settings. */
  const open = () =>
    new Promise<void>((resolve, reject) => {
      const sock = netConnect(socketPath);
      let settled = false;
      let opened = false;
      let lastError: unknown;
      const fail = (error: unknown) => {
        if (settled) return;
        settled = true;
        sock.destroy();
        reject(error);
      };
      sock.on("error", (err) => {
        lastError = err;
        fail(err);
      });
      sock.once("close", () => {
        if (socket === sock) socket = undefined;
        if (!opened) {
          fail(lastError ?? new Error(`the driver at ${socketPath} closed the connection`));
          return;
        }
        const cause =
          lastError === undefined
            ? "the driver closed the connection"
            : describeSocketError(lastError);
        reportLoss(`Lost connection to CSI driver at ${socketPath}: ${cause}`);
      });
      sock.once("connect", () => {
        if (closing) {
          fail(closedError());
          return;
        }
        const s = http2.connect("http://localhost", { createConnection: () => sock });
        s.on("error", (err) => {
          lastError ??= err;
          fail(err);
        });
        s.once("close", () => {
          if (session === s) session = undefined;
          // A session that ends ends its socket; the socket's close reports the loss.
          sock.destroy();
        });
        s.once("connect", () => {
          if (closing) {
            s.destroy();
            fail(closedError());
            return;
          }
          if (settled) return;
          settled = true;
          opened = true;
          socket = sock;
          session = s;
          resolve();
        });
      });
    });

  return {
    async connect() {
      if (closing) throw closedError();
      if (session !== undefined && !session.closed && !session.destroyed) return;
      await open();
    },
    exchange(headers, body, signal) {
      const s = session;
      if (s === undefined || s.closed || s.destroyed) {
        return Promise.reject(
          new H2StreamError(`not connected to the CSI driver at ${socketPath}`, undefined),
        );
      }
      return exchangeOn(s, socketPath, headers, body, signal, () => lost || closing);
    },
    onConnectionLost(listener) {
      lostListener = listener;
    },
    get lost() {
      return lost;
    },
    close() {
      if (closing) return;
      closing = true;
      session?.destroy();
      socket?.destroy();
      session = undefined;
      socket = undefined;
    },
  };
}

/**
 * One request on `session`: sends the headers and the whole body, resolves with the response
 * once it has ended. `ending()` tells whether the connection is going away (its close then cuts
 * the stream, rather than the driver resetting it).
 */
function exchangeOn(
  session: http2.ClientHttp2Session,
  socketPath: string,
  headers: Record<string, string>,
  body: Uint8Array,
  signal: AbortSignal,
  ending: () => boolean,
): Promise<H2Exchange> {
  return new Promise<H2Exchange>((resolve, reject) => {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers);
    } catch (err) {
      reject(
        new H2StreamError(`cannot start a stream to the CSI driver at ${socketPath}`, undefined, {
          cause: err,
        }),
      );
      return;
    }
    let done = false;
    let ended = false;
    let streamError: unknown;
    let resHeaders: H2Fields | undefined;
    let trailers: H2Fields | undefined;
    const chunks: Uint8Array[] = [];
    const onAbort = () => {
      if (done) return;
      done = true;
      stream.close(H2_CANCEL);
      reject(signal.reason);
    };
    stream.on("response", (h) => {
      resHeaders = h;
    });
    stream.on("trailers", (t) => {
      trailers = t;
    });
    stream.on("data", (chunk: Uint8Array) => {
      chunks.push(chunk);
    });
    stream.on("end", () => {
      ended = true;
    });
    stream.on("error", (err) => {
      streamError = err;
    });
    stream.once("close", () => {
      signal.removeEventListener("abort", onAbort);
      if (done) return;
      done = true;
      if (ended && resHeaders !== undefined) {
        resolve({ headers: resHeaders, trailers, body: chunks });
        return;
      }
      // Bun reports a reset by the peer with rstCode 0; Node and Deno with the peer's code.
      const code = stream.rstCode;
      const cut = ending() || session.destroyed || session.closed;
      reject(
        new H2StreamError(
          cut || code === undefined
            ? `the connection to the CSI driver at ${socketPath} closed during the call`
            : `the CSI driver reset the stream (HTTP/2 error code ${code})`,
          cut ? undefined : code,
          streamError === undefined ? undefined : { cause: streamError },
        ),
      );
    });
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    stream.end(body);
  });
}
