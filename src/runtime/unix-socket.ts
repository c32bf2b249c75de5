/**
 * gRPC over a unix domain socket: the only part of the CSI client that touches `node:*`.
 *
 * One HTTP/2 session per transport, opened with `net.connect(path)`. Bun, Deno and Node all run
 * `@connectrpc/connect-node`'s gRPC transport this way (DESIGN.md §2). The session manager is
 * connect-node's own, configured to never close an idle connection and never ping, so that the
 * only way the socket closes is the driver going away (or {@link UnixGrpcTransport.close}); that
 * close is reported once as a connection loss.
 */
import { statSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import process from "node:process";
import { ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

/** Largest setTimeout delay; connect-node ignores larger idle timeouts, i.e. never closes idle. */
const NEVER_MS = 2 ** 31;

export interface UnixGrpcTransportOptions {
  /** Filesystem path of the unix socket. */
  socketPath: string;
  /** Interceptors of every call; default none. */
  interceptors?: Interceptor[];
}

export interface UnixGrpcTransport {
  /** The Connect transport; every call goes through the single HTTP/2 session. */
  readonly transport: Transport;
  /**
   * Opens the HTTP/2 session if it is not open. Resolves once the socket is connected; rejects
   * with the socket error (for example `ENOENT` or `ECONNREFUSED`).
   */
  connect(): Promise<void>;
  /**
   * Registers the listener of connection loss: called at most once, with a reason, when a socket
   * that had connected closes while the transport is not being closed by {@link close}.
   */
  onConnectionLost(listener: (reason: string) => void): void;
  /** Whether a connection has been lost. */
  readonly lost: boolean;
  /** Closes the session and its socket. Idempotent. No loss is reported afterwards. */
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
  if (error instanceof ConnectError) return error.rawMessage;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" && !error.message.includes(code)
      ? `${code}: ${error.message}`
      : error.message;
  }
  return String(error);
}

/** Creates a gRPC transport that talks to the unix socket at `socketPath`. */
export function createUnixGrpcTransport(options: UnixGrpcTransportOptions): UnixGrpcTransport {
  const { socketPath } = options;
  let closing = false;
  let lost = false;
  let lostListener: ((reason: string) => void) | undefined;
  const sockets = new Set<Socket>();

  const reportLoss = (reason: string) => {
    if (closing || lost) return;
    lost = true;
    lostListener?.(reason);
  };

  const createConnection = (): Socket => {
    const socket = netConnect(socketPath);
    let connected = false;
    let lastError: unknown;
    sockets.add(socket);
    socket.once("connect", () => {
      connected = true;
    });
    socket.on("error", (err) => {
      lastError = err;
    });
    socket.once("close", () => {
      sockets.delete(socket);
      if (!connected) return;
      const cause =
        lastError === undefined
          ? "the driver closed the connection"
          : describeSocketError(lastError);
      reportLoss(`Lost connection to CSI driver at ${socketPath}: ${cause}`);
    });
    return socket;
  };

  const sessionManager = new Http2SessionManager(
    "http://localhost",
    { idleConnectionTimeoutMs: NEVER_MS },
    { createConnection },
  );
  const transport = createGrpcTransport({
    baseUrl: "http://localhost",
    sessionManager,
    interceptors: options.interceptors ?? [],
  });

  return {
    transport,
    async connect() {
      if (closing) throw new Error(`Connection to CSI driver at ${socketPath} is closed`);
      const state = await sessionManager.connect();
      if (state === "error") {
        const error = sessionManager.error();
        throw new Error(describeSocketError(error), { cause: error });
      }
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
      sessionManager.abort();
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
  };
}
