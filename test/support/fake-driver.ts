/**
 * A fake CSI driver for tests: a real gRPC server (Connect's node adapter on `node:http2`)
 * listening on a unix socket, serving the Identity, Controller and Node services.
 *
 * Out of the box it is a small in-memory driver:
 *
 * - `Probe` is ready; `GetPluginInfo` answers `name` / `vendorVersion` / `manifest`.
 * - Capabilities come from the options (default: CONTROLLER_SERVICE; CREATE_DELETE_VOLUME,
 *   LIST_VOLUMES, GET_CAPACITY). Setting `topology` adds VOLUME_ACCESSIBILITY_CONSTRAINTS.
 * - `CreateVolume` is idempotent by name: the same name returns the same volume (`id-<name>`);
 *   a different size for an existing name is `AlreadyExists`, as the spec says. The volume gets
 *   the requested capacity (required, else limit, else `defaultVolumeBytes`), the content source,
 *   and, with topology, the first preferred (else requisite, else the node's) segment. A clone of
 *   an unknown volume is `NotFound`; exceeding `capacityBytes` is `ResourceExhausted`.
 * - `DeleteVolume` is idempotent; `GetCapacity` reports what is left of `capacityBytes`;
 *   `ListVolumes` pages through the volumes; `NodeGetInfo` reports `nodeId` and the topology.
 * - Every other method is `Unimplemented`.
 *
 * Tests script any method: `on(method, handler)` for all later calls, `once(method, handler)` for
 * the next call (queued, first in first out), with the helpers {@link respond}, {@link fail},
 * {@link hangForever} and {@link delayUntil}, or `hold(method)` to stop the next call until the
 * test releases it. Every call is recorded (`calls`, `callsTo`, `waitForCalls`), and `volumes()`
 * shows the backend's volumes, so a test can assert "exactly one volume per claim".
 *
 * `disappear()` makes the driver vanish as a crashed one would (sessions destroyed, socket file
 * deleted); `close()` cleans everything up and is safe to call twice.
 *
 * ```ts
 * const driver = await startFakeDriver({ controllerCapabilities: [Cap.CREATE_DELETE_VOLUME] });
 * after(() => driver.close());
 * driver.once("createVolume", fail(Code.ResourceExhausted, "pool is full"));
 * const held = driver.hold("deleteVolume");
 * // ... run the code under test ...
 * await held.arrived;
 * held.release();
 * assert.equal(driver.volumes().size, 1);
 * ```
 */
import { mkdtempSync, rmSync } from "node:fs";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DescMethodUnary, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  Controller,
  ControllerServiceCapability_RPC_Type,
  Identity,
  Node,
  PluginCapability_Service_Type,
  type PluginCapability_VolumeExpansion_Type,
  type Topology,
  TopologySchema,
  type VolumeContentSource,
} from "../../src/gen/csi/v1/csi_pb.js";

type IdentityMethods = (typeof Identity)["method"];
type ControllerMethods = (typeof Controller)["method"];
type NodeMethods = (typeof Node)["method"];

/** A method of the fake, by its local name: `probe`, `createVolume`, `nodeGetInfo`, ... */
export type FakeMethod = keyof IdentityMethods | keyof ControllerMethods | keyof NodeMethods;

type MethodDesc<K extends FakeMethod> = K extends keyof IdentityMethods
  ? IdentityMethods[K]
  : K extends keyof ControllerMethods
    ? ControllerMethods[K]
    : K extends keyof NodeMethods
      ? NodeMethods[K]
      : never;

/** The request message of method `K`. */
export type FakeRequest<K extends FakeMethod> = MessageShape<MethodDesc<K>["input"]>;
/** What a handler of method `K` returns: the response message or its init shape. */
export type FakeResponse<K extends FakeMethod> = MessageInitShape<MethodDesc<K>["output"]>;

/** One call the fake received. */
export interface FakeCall<K extends FakeMethod = FakeMethod> {
  readonly method: K;
  /** e.g. `/csi.v1.Controller/CreateVolume`. */
  readonly fullName: string;
  readonly request: FakeRequest<K>;
  /** 0-based index among the calls of this method. */
  readonly index: number;
  readonly requestHeader: Headers;
}

export interface FakeCallContext<K extends FakeMethod> {
  /** 0-based index among the calls of this method. */
  readonly index: number;
  /** Aborted when the client cancels the call, its deadline passes or the fake closes. */
  readonly signal: AbortSignal;
  readonly requestHeader: Headers;
  /**
   * The behaviour this handler replaces: for a `once` handler the `on` handler if any, else the
   * in-memory default; for an `on` handler, the default.
   */
  next(): Promise<FakeResponse<K>>;
}

/** A scripted behaviour: return (or resolve to) a response, or throw a `ConnectError`. */
export type FakeHandler<K extends FakeMethod> = (
  request: FakeRequest<K>,
  context: FakeCallContext<K>,
) => FakeResponse<K> | Promise<FakeResponse<K>>;

/** A volume of the in-memory backend. */
export interface FakeVolume {
  readonly volumeId: string;
  /** The CreateVolume name it was created with. */
  readonly name: string;
  readonly capacityBytes: bigint;
  readonly parameters: Readonly<Record<string, string>>;
  readonly mutableParameters: Readonly<Record<string, string>>;
  readonly volumeContext: Readonly<Record<string, string>>;
  readonly contentSource?: VolumeContentSource;
  readonly accessibleTopology: readonly Readonly<Record<string, string>>[];
}

export interface FakeDriverOptions {
  /** Where to listen; default `csi.sock` in a fresh temporary directory (removed on close). */
  socketPath?: string;
  /** `GetPluginInfo.name`; default `fake.csi.k8s.io`. */
  name?: string;
  /** `GetPluginInfo.vendor_version`; default `1.0.0`. */
  vendorVersion?: string;
  /** `GetPluginInfo.manifest`; default `{}`. */
  manifest?: Record<string, string>;
  /**
   * Plugin service capabilities; default `[CONTROLLER_SERVICE]`. VOLUME_ACCESSIBILITY_CONSTRAINTS
   * is added when `topology` is set.
   */
  pluginCapabilities?: PluginCapability_Service_Type[];
  /** Plugin volume expansion capabilities; default none. */
  volumeExpansion?: PluginCapability_VolumeExpansion_Type[];
  /** Controller capabilities; default `[CREATE_DELETE_VOLUME, LIST_VOLUMES, GET_CAPACITY]`. */
  controllerCapabilities?: ControllerServiceCapability_RPC_Type[];
  /**
   * The node's topology segment (e.g. `{ "topology.fake.csi.k8s.io/zone": "a" }`). Setting it
   * turns topology on: advertised, reported by NodeGetInfo, applied to created volumes.
   */
  topology?: Record<string, string>;
  /** `NodeGetInfo.node_id`; default `fake-node`. */
  nodeId?: string;
  /** Total bytes of the backend; default 1 TiB. */
  capacityBytes?: bigint;
  /** Size of a volume created without a capacity range; default 1 GiB. */
  defaultVolumeBytes?: bigint;
}

/** A handle on a held call (see {@link FakeDriver.hold}). */
export interface HeldCall<K extends FakeMethod> {
  /** Resolves when the held call reaches the driver. */
  readonly arrived: Promise<FakeCall<K>>;
  /** Lets the call continue with the behaviour it would have had (idempotent). */
  release(): void;
}

export interface FakeDriver {
  readonly socketPath: string;
  /** Every call received, in order of arrival. */
  readonly calls: readonly FakeCall[];
  /** The calls of one method, in order. */
  callsTo<K extends FakeMethod>(method: K): FakeCall<K>[];
  /**
   * Resolves with the calls of `method` once there are at least `count` (default 1); rejects
   * after `timeoutMs` (default 5 000) naming what was awaited.
   */
  waitForCalls<K extends FakeMethod>(
    method: K,
    count?: number,
    timeoutMs?: number,
  ): Promise<FakeCall<K>[]>;
  /** Uses `handler` for every later call of `method` (replaces an earlier `on`). */
  on<K extends FakeMethod>(method: K, handler: FakeHandler<K>): this;
  /** Uses `handler` for the next call of `method` only; several `once` queue up. */
  once<K extends FakeMethod>(method: K, handler: FakeHandler<K>): this;
  /** Drops the `on` and `once` handlers of `method`, or of every method. */
  reset(method?: FakeMethod): this;
  /** Stops the next call of `method` until `release()`; it then continues normally. */
  hold<K extends FakeMethod>(method: K): HeldCall<K>;
  /** The backend's volumes by volume id. */
  volumes(): ReadonlyMap<string, FakeVolume>;
  /** Adds a volume to the backend, as if created earlier (for delete tests). */
  addVolume(volume: Partial<FakeVolume> & { name: string }): FakeVolume;
  /**
   * The driver vanishes: the server stops, every connection is destroyed and the socket file is
   * deleted. Clients see the connection close.
   */
  disappear(): Promise<void>;
  /** Stops the server, destroys connections, removes the socket (and its temp dir). */
  close(): Promise<void>;
}

/** A handler that always answers `response`. */
export function respond<K extends FakeMethod>(response: FakeResponse<K>): FakeHandler<K> {
  return () => response;
}

/** A handler that fails with gRPC `code` and `message`. */
export function fail<K extends FakeMethod>(
  code: Code,
  message = "injected by the test",
): FakeHandler<K> {
  return () => {
    throw new ConnectError(message, code);
  };
}

/** A handler that never answers: it ends only when the client cancels or its deadline passes. */
export function hangForever<K extends FakeMethod>(): FakeHandler<K> {
  return (_request, context) =>
    new Promise<never>((_resolve, reject) => {
      const onAbort = () => reject(new ConnectError("the call was abandoned", Code.Canceled));
      if (context.signal.aborted) onAbort();
      else context.signal.addEventListener("abort", onAbort, { once: true });
    });
}

/** A handler that waits for `gate`, then behaves as `then` (default: as it otherwise would). */
export function delayUntil<K extends FakeMethod>(
  gate: Promise<unknown>,
  then?: FakeHandler<K>,
): FakeHandler<K> {
  return async (request, context) => {
    await gate;
    return then ? then(request, context) : context.next();
  };
}

/** A fresh socket path in a new temporary directory, and a function that removes the directory. */
export function tempSocketPath(): { path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "fake-csi-"));
  return {
    path: join(dir, "csi.sock"),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

const GiB = 1024n ** 3n;
const TiB = 1024n ** 4n;

function segments(topology: Topology): Record<string, string> {
  return { ...topology.segments };
}

/** Starts a fake CSI driver listening on a unix socket. */
export async function startFakeDriver(options: FakeDriverOptions = {}): Promise<FakeDriver> {
  const temp = options.socketPath === undefined ? tempSocketPath() : undefined;
  const socketPath = options.socketPath ?? temp!.path;
  const name = options.name ?? "fake.csi.k8s.io";
  const topology = options.topology;
  const capacityBytes = options.capacityBytes ?? TiB;
  const defaultVolumeBytes = options.defaultVolumeBytes ?? GiB;
  const pluginCaps = [
    ...(options.pluginCapabilities ?? [PluginCapability_Service_Type.CONTROLLER_SERVICE]),
  ];
  if (
    topology &&
    !pluginCaps.includes(PluginCapability_Service_Type.VOLUME_ACCESSIBILITY_CONSTRAINTS)
  ) {
    pluginCaps.push(PluginCapability_Service_Type.VOLUME_ACCESSIBILITY_CONSTRAINTS);
  }
  const controllerCaps = options.controllerCapabilities ?? [
    ControllerServiceCapability_RPC_Type.CREATE_DELETE_VOLUME,
    ControllerServiceCapability_RPC_Type.LIST_VOLUMES,
    ControllerServiceCapability_RPC_Type.GET_CAPACITY,
  ];

  const volumes = new Map<string, FakeVolume>();
  const calls: FakeCall[] = [];
  const perMethodCount = new Map<FakeMethod, number>();
  const persistent = new Map<FakeMethod, FakeHandler<FakeMethod>>();
  const queued = new Map<FakeMethod, FakeHandler<FakeMethod>[]>();
  const callWaiters = new Set<() => void>();
  const closing = new AbortController();

  const used = () => [...volumes.values()].reduce((sum, v) => sum + v.capacityBytes, 0n);

  // The in-memory driver. Each entry answers one method; missing methods are Unimplemented.
  const defaults: { [K in FakeMethod]?: (request: FakeRequest<K>) => FakeResponse<K> } = {
    probe: () => ({ ready: true }),
    getPluginInfo: () => ({
      name,
      vendorVersion: options.vendorVersion ?? "1.0.0",
      manifest: options.manifest ?? {},
    }),
    getPluginCapabilities: () => ({
      capabilities: [
        ...pluginCaps.map((type) => ({ type: { case: "service" as const, value: { type } } })),
        ...(options.volumeExpansion ?? []).map((type) => ({
          type: { case: "volumeExpansion" as const, value: { type } },
        })),
      ],
    }),
    controllerGetCapabilities: () => ({
      capabilities: controllerCaps.map((type) => ({
        type: { case: "rpc" as const, value: { type } },
      })),
    }),
    createVolume: (req) => {
      if (req.name === "") throw new ConnectError("name is required", Code.InvalidArgument);
      if (req.volumeCapabilities.length === 0) {
        throw new ConnectError("volume_capabilities are required", Code.InvalidArgument);
      }
      const required = req.capacityRange?.requiredBytes ?? 0n;
      const limit = req.capacityRange?.limitBytes ?? 0n;
      const size = required > 0n ? required : limit > 0n ? limit : defaultVolumeBytes;
      const volumeId = `id-${req.name}`;
      const existing = volumes.get(volumeId);
      if (existing) {
        if (existing.capacityBytes < required || (limit > 0n && existing.capacityBytes > limit)) {
          throw new ConnectError(
            `volume ${req.name} exists with ${existing.capacityBytes} bytes`,
            Code.AlreadyExists,
          );
        }
        return { volume: toVolumeMessage(existing) };
      }
      const source = req.volumeContentSource;
      if (source?.type.case === "volume" && !volumes.has(source.type.value.volumeId)) {
        throw new ConnectError(
          `source volume ${source.type.value.volumeId} not found`,
          Code.NotFound,
        );
      }
      if (used() + size > capacityBytes) {
        throw new ConnectError(`not enough space for ${size} bytes`, Code.ResourceExhausted);
      }
      let accessible: Record<string, string>[] = [];
      if (topology) {
        const reqs = req.accessibilityRequirements;
        const chosen = reqs?.preferred[0] ?? reqs?.requisite[0];
        accessible = [chosen ? segments(chosen) : { ...topology }];
      }
      const volume: FakeVolume = {
        volumeId,
        name: req.name,
        capacityBytes: size,
        parameters: { ...req.parameters },
        mutableParameters: { ...req.mutableParameters },
        volumeContext: {},
        ...(source?.type.case !== undefined ? { contentSource: source } : {}),
        accessibleTopology: accessible,
      };
      volumes.set(volumeId, volume);
      return { volume: toVolumeMessage(volume) };
    },
    deleteVolume: (req) => {
      if (req.volumeId === "")
        throw new ConnectError("volume_id is required", Code.InvalidArgument);
      volumes.delete(req.volumeId);
      return {};
    },
    getCapacity: () => ({ availableCapacity: capacityBytes - used() }),
    listVolumes: (req) => {
      const all = [...volumes.values()];
      const start = req.startingToken === "" ? 0 : Number(req.startingToken);
      if (!Number.isInteger(start) || start < 0 || start > all.length) {
        throw new ConnectError(`bad starting_token ${req.startingToken}`, Code.Aborted);
      }
      const end = req.maxEntries > 0 ? Math.min(all.length, start + req.maxEntries) : all.length;
      return {
        entries: all.slice(start, end).map((v) => ({ volume: toVolumeMessage(v) })),
        nextToken: end < all.length ? String(end) : "",
      };
    },
    nodeGetInfo: () => ({
      nodeId: options.nodeId ?? "fake-node",
      ...(topology ? { accessibleTopology: { segments: { ...topology } } } : {}),
    }),
  };

  function toVolumeMessage(v: FakeVolume) {
    return {
      volumeId: v.volumeId,
      capacityBytes: v.capacityBytes,
      volumeContext: { ...v.volumeContext },
      ...(v.contentSource ? { contentSource: v.contentSource } : {}),
      accessibleTopology: v.accessibleTopology.map((s) =>
        create(TopologySchema, { segments: { ...s } }),
      ),
    };
  }

  async function runDefault<K extends FakeMethod>(
    method: K,
    fullName: string,
    request: FakeRequest<K>,
  ) {
    const impl = defaults[method] as ((r: FakeRequest<K>) => FakeResponse<K>) | undefined;
    if (!impl)
      throw new ConnectError(
        `${fullName} is not implemented by the fake driver`,
        Code.Unimplemented,
      );
    return impl(request);
  }

  async function dispatch<K extends FakeMethod>(
    method: K,
    fullName: string,
    request: FakeRequest<K>,
    ctx: HandlerContext,
  ): Promise<FakeResponse<K>> {
    const index = perMethodCount.get(method) ?? 0;
    perMethodCount.set(method, index + 1);
    calls.push({ method, fullName, request, index, requestHeader: ctx.requestHeader } as FakeCall);
    for (const wake of [...callWaiters]) wake();

    const signal = AbortSignal.any([ctx.signal, closing.signal]);
    const context = (next: () => Promise<FakeResponse<K>>): FakeCallContext<K> => ({
      index,
      signal,
      requestHeader: ctx.requestHeader,
      next,
    });
    const defaultBehaviour = () => runDefault(method, fullName, request);
    const on = persistent.get(method) as FakeHandler<K> | undefined;
    const persistentBehaviour = on
      ? async () => on(request, context(defaultBehaviour))
      : defaultBehaviour;
    const once = queued.get(method)?.shift() as FakeHandler<K> | undefined;
    if (once) return once(request, context(persistentBehaviour));
    return persistentBehaviour();
  }

  const routes = (router: ConnectRouter) => {
    for (const service of [Identity, Controller, Node]) {
      for (const m of service.methods) {
        if (m.methodKind !== "unary") continue;
        const method = m.localName as FakeMethod;
        const fullName = `/${service.typeName}/${m.name}`;
        router.rpc(m as DescMethodUnary, (request, ctx) =>
          dispatch(method, fullName, request as FakeRequest<typeof method>, ctx),
        );
      }
    }
  };

  const server = http2.createServer(connectNodeAdapter({ routes }));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= new Promise<void>((resolve) => {
      closing.abort();
      server.close(() => resolve());
      for (const session of sessions) session.destroy();
      sessions.clear();
      rmSync(socketPath, { force: true });
    });
    return stopped;
  };

  const driver: FakeDriver = {
    socketPath,
    calls,
    callsTo<K extends FakeMethod>(method: K) {
      return calls.filter((c): c is FakeCall<K> => c.method === method);
    },
    waitForCalls<K extends FakeMethod>(method: K, count = 1, timeoutMs = 5_000) {
      return new Promise<FakeCall<K>[]>((resolve, reject) => {
        const check = () => {
          const matching = driver.callsTo(method);
          if (matching.length < count) return false;
          callWaiters.delete(check);
          clearTimeout(timer);
          resolve(matching);
          return true;
        };
        const timer = setTimeout(() => {
          callWaiters.delete(check);
          reject(
            new Error(
              `Fake driver: expected ${count} ${method} call(s) within ${timeoutMs}ms, got ${driver.callsTo(method).length}`,
            ),
          );
        }, timeoutMs);
        callWaiters.add(check);
        check();
      });
    },
    on(method, handler) {
      persistent.set(method, handler as unknown as FakeHandler<FakeMethod>);
      return driver;
    },
    once(method, handler) {
      const queue = queued.get(method) ?? [];
      queue.push(handler as unknown as FakeHandler<FakeMethod>);
      queued.set(method, queue);
      return driver;
    },
    reset(method) {
      if (method === undefined) {
        persistent.clear();
        queued.clear();
      } else {
        persistent.delete(method);
        queued.delete(method);
      }
      return driver;
    },
    hold<K extends FakeMethod>(method: K): HeldCall<K> {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      let arrive!: (call: FakeCall<K>) => void;
      const arrived = new Promise<FakeCall<K>>((resolve) => {
        arrive = resolve;
      });
      driver.once(method, async (_request, context) => {
        const call = driver.callsTo(method).find((c) => c.index === context.index);
        if (call) arrive(call);
        await gate;
        return context.next();
      });
      return { arrived, release: () => release() };
    },
    volumes: () => new Map(volumes),
    addVolume(volume) {
      const v: FakeVolume = {
        volumeId: volume.volumeId ?? `id-${volume.name}`,
        name: volume.name,
        capacityBytes: volume.capacityBytes ?? defaultVolumeBytes,
        parameters: volume.parameters ?? {},
        mutableParameters: volume.mutableParameters ?? {},
        volumeContext: volume.volumeContext ?? {},
        ...(volume.contentSource ? { contentSource: volume.contentSource } : {}),
        accessibleTopology: volume.accessibleTopology ?? [],
      };
      volumes.set(v.volumeId, v);
      return v;
    },
    disappear: () => stop(),
    async close() {
      await stop();
      temp?.cleanup();
    },
  };
  return driver;
}
