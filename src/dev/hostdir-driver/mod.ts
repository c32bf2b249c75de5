/**
 * The hostdir sample CSI driver, started in-process: volumes are directories under a data
 * directory, served over a unix socket. `csi-provisioner dev` starts it when no driver of your
 * own is named; `examples/hostdir-driver/main.ts` runs it on its own. The rules are in
 * `driver.ts`; everything that touches `node:*` is in `runtime/hostdir-io.ts`.
 */
import { createFsStorage, serveGrpc } from "../../runtime/hostdir-io.ts";
import { hostname } from "../../runtime/process.ts";
import { systemClock } from "../../util/clock.ts";
import { type Logger, nullLogger } from "../../util/log.ts";
import { createHostdirDriver, DEFAULT_CAPACITY_BYTES, DEFAULT_DRIVER_NAME } from "./driver.ts";

export { DEFAULT_CAPACITY_BYTES, DEFAULT_DRIVER_NAME } from "./driver.ts";

export interface StartHostdirDriverOptions {
  /** The unix socket to serve on; a stale socket file there is replaced, and removed on close. */
  socketPath: string;
  /** Where volumes, snapshots and their metadata are kept; created when missing. */
  dataDir: string;
  /** `GetPluginInfo.name`; default `hostdir.csi.example.com`. */
  driverName?: string;
  /** Size of the pool that GetCapacity reports on; default 100 GiB. */
  capacityBytes?: bigint;
  /** Advertise topology: one segment `topology.<driver name>/node=<node id>`; default false. */
  topology?: boolean;
  /** `NodeGetInfo.node_id`; default the host name. */
  nodeId?: string;
  /** One line per CSI call (and more at `-v=5`); default: nothing is logged. */
  log?: Logger;
}

export interface RunningHostdirDriver {
  readonly socketPath: string;
  readonly driverName: string;
  /** Stops serving and removes the socket file. Idempotent. */
  close(): Promise<void>;
}

/** Starts the hostdir driver in this process; resolves once it listens on `socketPath`. */
export async function startHostdirDriver(
  options: StartHostdirDriverOptions,
): Promise<RunningHostdirDriver> {
  const log = options.log ?? nullLogger;
  const driver = await createHostdirDriver({
    storage: await createFsStorage(options.dataDir),
    nodeId: options.nodeId ?? hostname(),
    clock: systemClock,
    newId: () => crypto.randomUUID(),
    driverName: options.driverName ?? DEFAULT_DRIVER_NAME,
    capacityBytes: options.capacityBytes ?? DEFAULT_CAPACITY_BYTES,
    topology: options.topology ?? false,
    log,
  });
  const server = await serveGrpc({
    socketPath: options.socketPath,
    routes: (router) => driver.routes(router),
    interceptors: [driver.interceptor],
  });
  log.info("Serving CSI", { driver: driver.driverName, socket: options.socketPath });
  return {
    socketPath: options.socketPath,
    driverName: driver.driverName,
    close: () => server.close(),
  };
}
