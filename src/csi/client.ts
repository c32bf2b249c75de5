/**
 * The connection to the CSI driver: wait for its unix socket, connect, and call it.
 *
 * - Start-up waits for the socket as upstream does: try every second, warn "Still connecting"
 *   every 10 s, give up after 30 s with an error naming the socket. Waiting goes through the
 *   injected {@link Clock}.
 * - Every call has a deadline (`--timeout`): it is sent to the driver as `grpc-timeout` and
 *   enforced locally through the clock, so a driver that never answers fails the call with
 *   `DeadlineExceeded`.
 * - Every failure is a `ConnectError` with its gRPC code, normalised once here.
 * - Each call is logged at `-v=5` (method, request, response or error) with every `csi_secret`
 *   field redacted, and reported to `onCall` (the hook the `csi_sidecar_operations_seconds`
 *   metric observes): Connect interceptors on the transport (`interceptors.ts`).
 * - Losing the connection after it was established calls `onConnectionLost` once; later calls
 *   fail at once with `Unavailable`. The client never reconnects (upstream behaviour: the
 *   process exits and Kubernetes restarts the container: `exitOnConnectionLoss` in
 *   `connection-loss.ts`).
 */
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type Interceptor } from "@connectrpc/connect";
import {
  Controller,
  type ControllerGetCapabilitiesResponse,
  type CreateVolumeRequestSchema,
  type CreateVolumeResponse,
  type DeleteVolumeRequestSchema,
  type DeleteVolumeResponse,
  type GetCapacityRequestSchema,
  type GetCapacityResponse,
  type GetPluginCapabilitiesResponse,
  type GetPluginInfoResponse,
  Identity,
  type ListVolumesRequestSchema,
  type ListVolumesResponse,
  Node,
  type NodeGetInfoResponse,
  type ProbeResponse,
} from "../gen/csi/v1/csi_pb.js";
import { type SocketAccess, socketAccess, socketPathState } from "../runtime/unix-socket.ts";
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { toConnectError } from "./errors.ts";
import { createUnixGrpcTransport, type UnixGrpcTransport } from "./grpc-transport.ts";
import {
  type CsiCallRecord,
  callGuardInterceptor,
  callLogInterceptor,
  callRecordInterceptor,
  MIGRATED_CALL,
} from "./interceptors.ts";

/** Options of a single call. */
export interface CallOptions {
  /** Cancels the call; it then fails with `Canceled`. */
  signal?: AbortSignal;
  /** Deadline of this call in ms; default the driver's `timeoutMs` (`--timeout`). */
  timeoutMs?: number;
  /** The call is for a CSI-migrated in-tree volume (the `migrated` metrics label). */
  migrated?: boolean;
}

export type { CsiCallRecord } from "./interceptors.ts";

/** A connected CSI driver. */
export interface CsiDriver {
  /** Filesystem path of the driver's socket. */
  readonly socketPath: string;
  /** Whether the connection was lost (every call then fails with `Unavailable`). */
  readonly connectionLost: boolean;
  /** Calls any unary CSI method, e.g. `driver.call(Controller.method.controllerGetVolume, req)`. */
  call<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    options?: CallOptions,
  ): Promise<MessageShape<O>>;
  /** Identity.Probe. */
  probe(options?: CallOptions): Promise<ProbeResponse>;
  /** Identity.GetPluginInfo. */
  getPluginInfo(options?: CallOptions): Promise<GetPluginInfoResponse>;
  /** Identity.GetPluginCapabilities. */
  getPluginCapabilities(options?: CallOptions): Promise<GetPluginCapabilitiesResponse>;
  /** Controller.ControllerGetCapabilities. */
  controllerGetCapabilities(options?: CallOptions): Promise<ControllerGetCapabilitiesResponse>;
  /** Controller.CreateVolume. */
  createVolume(
    request: MessageInitShape<typeof CreateVolumeRequestSchema>,
    options?: CallOptions,
  ): Promise<CreateVolumeResponse>;
  /** Controller.DeleteVolume. */
  deleteVolume(
    request: MessageInitShape<typeof DeleteVolumeRequestSchema>,
    options?: CallOptions,
  ): Promise<DeleteVolumeResponse>;
  /** Controller.GetCapacity. */
  getCapacity(
    request: MessageInitShape<typeof GetCapacityRequestSchema>,
    options?: CallOptions,
  ): Promise<GetCapacityResponse>;
  /** Controller.ListVolumes. */
  listVolumes(
    request: MessageInitShape<typeof ListVolumesRequestSchema>,
    options?: CallOptions,
  ): Promise<ListVolumesResponse>;
  /** Node.NodeGetInfo (for `--node-deployment`). */
  nodeGetInfo(options?: CallOptions): Promise<NodeGetInfoResponse>;
  /** Closes the connection; in-flight calls fail. No connection loss is reported. Idempotent. */
  close(): void;
}

export interface ConnectDriverOptions {
  /** Filesystem path of the driver's unix socket (`--csi-address`, already normalised). */
  socketPath: string;
  /** Deadline of each call in ms (`--timeout`); default 10 000. */
  timeoutMs?: number;
  clock: Clock;
  logger: Logger;
  /** Aborts waiting for the socket (calls are not affected: each takes its own signal). */
  signal?: AbortSignal;
  /** Called once, with a message naming the socket and cause, when the connection is lost. */
  onConnectionLost?: (reason: string) => void;
  /** Called after every call, successful or not (metrics). */
  onCall?: (record: CsiCallRecord) => void;
  /** How long to wait for the socket before giving up, in ms; default 30 000. */
  connectTimeoutMs?: number;
  /** Wait between connection attempts, in ms; default 1 000. */
  connectRetryMs?: number;
  /** Interval of the "Still connecting" warning, in ms; default 10 000. */
  stillConnectingLogMs?: number;
  /** Opens the gRPC transport to the socket; default a unix-socket transport (tests replace it). */
  createTransport?: (socketPath: string, interceptors: Interceptor[]) => UnixGrpcTransport;
}

/** The errno code (`EACCES`, `ENOENT`, ...) anywhere in an error's cause chain. */
function errnoCode(error: unknown): string | undefined {
  const seen = new Set<unknown>();
  for (let e = error; e instanceof Error && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code;
  }
  return undefined;
}

/** `srwxr-xr-x` for a socket with permission bits 0o755. */
function socketModeString(mode: number): string {
  const bits = "rwxrwxrwx";
  let out = "s";
  for (let i = 0; i < 9; i++) out += mode & (0o400 >> i) ? bits[i] : "-";
  return out;
}

/**
 * Who may connect to the socket, who this process is, and what fixes it: connecting to a unix
 * socket needs write permission on the socket file, which CSI drivers usually create as root
 * with mode 0755 (`srwxr-xr-x`), so that only root can connect.
 */
export function permissionDetail(access: SocketAccess | undefined): string {
  const who =
    access === undefined
      ? "this process"
      : `this process (uid ${access.processUid}, gid ${access.processGid}` +
        `${access.processGroups.length > 0 ? `, groups ${access.processGroups.join(",")}` : ""})`;
  const socket =
    access === undefined
      ? "the socket"
      : `the socket (${socketModeString(access.mode)}, owner ${access.uid}:${access.gid})`;
  return (
    `${who} may not write to ${socket}. ` +
    "Run the sidecar as the socket's owner (the default image runs as root, as upstream's), " +
    "or have the driver create the socket group-writable and run both containers in that " +
    "group (pod securityContext.fsGroup)"
  );
}

/** A start-up failure of the driver connection: one line that names the socket and the cause. */
export class DriverStartupError extends Error {
  override name = "DriverStartupError";
}

/** Default of `--timeout` (upstream's code default, not its README's 15 s). */
export const DEFAULT_CALL_TIMEOUT_MS = 10_000;

/** `10s`, `1.5s`, `250ms`: a duration for messages. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

/** The `grpc-timeout` header value: at most 8 digits and a unit, rounded up. */
export function encodeGrpcTimeout(ms: number): string {
  const units: [string, number][] = [
    ["m", 1],
    ["S", 1000],
    ["M", 60_000],
    ["H", 3_600_000],
  ];
  for (const [unit, size] of units) {
    const value = Math.ceil(Math.max(0, ms) / size);
    if (value <= 99_999_999) return `${value}${unit}`;
  }
  return "99999999H";
}

function abortError(signal: AbortSignal): ConnectError {
  const reason: unknown = signal.reason;
  if (reason instanceof ConnectError) return reason;
  const cause = reason instanceof Error ? `: ${reason.message}` : "";
  return new ConnectError(
    `the call was canceled${cause}`,
    Code.Canceled,
    undefined,
    undefined,
    reason,
  );
}

/**
 * Why connecting to the socket at `socketPath` failed, in words a driver author can act on:
 * nothing there, something that is not a socket, a path or socket this user may not open, or a
 * socket nobody listens on.
 */
export function connectFailureCause(socketPath: string, failure: unknown): string {
  const state = socketPathState(socketPath);
  switch (state.kind) {
    case "missing":
      return "nothing exists at that path (is the driver running and listening there?)";
    case "not-socket":
      return `the path is ${state.what}, not a unix socket`;
    case "no-access":
      return "permission denied: this user may not reach that path";
    case "socket": {
      const message = failure instanceof Error ? failure.message : String(failure);
      const code = errnoCode(failure);
      if (
        code === "EACCES" ||
        code === "EPERM" ||
        /EACCES|EPERM|permission denied/i.test(message)
      ) {
        return `permission denied: the socket exists but this user may not connect to it: ${permissionDetail(socketAccess(socketPath))}`;
      }
      if (/ECONNREFUSED|connection refused/i.test(message)) {
        return "connection refused: the socket exists but nothing listens on it (did the driver exit?)";
      }
      return message;
    }
  }
}

/**
 * Waits for the driver's socket, connects, and returns the driver. Rejects with a
 * {@link DriverStartupError} after `connectTimeoutMs`, or with the signal's reason on abort.
 */
export async function connectDriver(options: ConnectDriverOptions): Promise<CsiDriver> {
  const { socketPath, clock, logger, signal } = options;
  const timeoutMs = options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const connectTimeoutMs = options.connectTimeoutMs ?? 30_000;
  const retryMs = options.connectRetryMs ?? 1_000;
  const stillConnectingMs = options.stillConnectingLogMs ?? 10_000;

  let connectionLost = false;
  // Outermost first: the record and the log also see the calls the guard refuses.
  const interceptors: Interceptor[] = [
    ...(options.onCall ? [callRecordInterceptor({ clock, logger, onCall: options.onCall })] : []),
    callLogInterceptor(logger),
    callGuardInterceptor({ socketPath, lost: () => connectionLost || conn.lost }),
  ];
  const conn =
    options.createTransport?.(socketPath, interceptors) ??
    createUnixGrpcTransport({ socketPath, interceptors });
  conn.onConnectionLost((reason) => {
    connectionLost = true;
    logger.error("Lost connection to CSI driver", { address: socketPath, reason });
    options.onConnectionLost?.(reason);
  });

  logger.info("Connecting to CSI driver", { address: socketPath });
  const start = clock.now();
  let lastWarning = start;
  let deniedLogged = false;
  for (;;) {
    if (signal?.aborted) {
      conn.close();
      throw signal.reason;
    }
    let failure: unknown;
    try {
      // A unix socket connects or fails at once (ENOENT, ECONNREFUSED): no attempt deadline.
      await conn.connect();
      break;
    } catch (error) {
      failure = error;
    }
    const elapsed = clock.now() - start;
    const cause = connectFailureCause(socketPath, failure);
    // Retrying will not fix a permission problem unless the driver recreates its socket: say so
    // at once rather than after the first "Still connecting" interval.
    const denied = cause.startsWith("permission denied");
    if (denied && !deniedLogged) {
      deniedLogged = true;
      logger.error(`Cannot connect to CSI driver at ${socketPath}: ${cause}`);
    } else if (!denied) {
      deniedLogged = false;
    }
    if (elapsed >= connectTimeoutMs) {
      conn.close();
      throw new DriverStartupError(
        `Failed to connect to CSI driver at ${socketPath} within ` +
          `${formatDuration(connectTimeoutMs)}: ${cause}`,
        { cause: failure },
      );
    }
    if (clock.now() - lastWarning >= stillConnectingMs) {
      lastWarning = clock.now();
      logger.warn(`Still connecting to CSI driver at ${socketPath}`, { err: cause });
    }
    try {
      await clock.sleep(Math.min(retryMs, start + connectTimeoutMs - clock.now()), signal);
    } catch (error) {
      conn.close();
      throw error;
    }
  }
  logger.info("Connected to CSI driver", { address: socketPath });

  /** Stops a call's deadline timer: one shared reason (an abort without one makes an error). */
  const CALL_ENDED = new Error("the call ended");
  async function call<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    init: MessageInitShape<I>,
    callOptions: CallOptions = {},
  ): Promise<MessageShape<O>> {
    const request = create(method.input, init);
    const callTimeoutMs = callOptions.timeoutMs ?? timeoutMs;

    const controller = new AbortController();
    const cleanups: (() => void)[] = [];
    const callSignal = callOptions.signal;
    if (callSignal?.aborted) {
      controller.abort(abortError(callSignal));
    } else if (callSignal) {
      const onAbort = () => controller.abort(abortError(callSignal));
      callSignal.addEventListener("abort", onAbort, { once: true });
      cleanups.push(() => callSignal.removeEventListener("abort", onAbort));
    }
    const deadlineDone = new AbortController();
    cleanups.push(() => deadlineDone.abort(CALL_ENDED));
    clock.sleep(callTimeoutMs, deadlineDone.signal).then(
      () =>
        controller.abort(
          new ConnectError(
            `${method.name} did not finish within ${formatDuration(callTimeoutMs)}`,
            Code.DeadlineExceeded,
          ),
        ),
      () => {},
    );
    const contextValues = createContextValues().set(MIGRATED_CALL, callOptions.migrated === true);
    try {
      const response = await conn.transport.unary(
        method,
        controller.signal,
        undefined,
        { "grpc-timeout": encodeGrpcTimeout(callTimeoutMs) },
        request,
        contextValues,
      );
      return response.message;
    } catch (error) {
      throw toConnectError(error);
    } finally {
      for (const cleanup of cleanups) cleanup();
    }
  }

  return {
    socketPath,
    get connectionLost() {
      return connectionLost;
    },
    call,
    probe: (o) => call(Identity.method.probe, {}, o),
    getPluginInfo: (o) => call(Identity.method.getPluginInfo, {}, o),
    getPluginCapabilities: (o) => call(Identity.method.getPluginCapabilities, {}, o),
    controllerGetCapabilities: (o) => call(Controller.method.controllerGetCapabilities, {}, o),
    createVolume: (r, o) => call(Controller.method.createVolume, r, o),
    deleteVolume: (r, o) => call(Controller.method.deleteVolume, r, o),
    getCapacity: (r, o) => call(Controller.method.getCapacity, r, o),
    listVolumes: (r, o) => call(Controller.method.listVolumes, r, o),
    nodeGetInfo: (o) => call(Node.method.nodeGetInfo, {}, o),
    close: () => conn.close(),
  };
}
