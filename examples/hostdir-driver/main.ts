/**
 * The hostdir sample CSI driver: volumes are directories under a data directory, served over a
 * unix socket. Run it with Bun, Deno or Node >= 22:
 *
 * ```sh
 * bun examples/hostdir-driver/main.ts --endpoint=unix:///tmp/hostdir.sock
 * deno run -A examples/hostdir-driver/main.ts --endpoint=/tmp/hostdir.sock --topology
 * node examples/hostdir-driver/main.ts --data-dir=/var/tmp/hostdir --capacity=1Ti -v=5
 * ```
 *
 * The driver itself is in `src/dev/hostdir-driver/` (`csi-provisioner dev` starts it in-process);
 * this file is its command line. Importing it starts nothing.
 */

import {
  DEFAULT_CAPACITY_BYTES,
  DEFAULT_DRIVER_NAME,
  type RunningHostdirDriver,
  startHostdirDriver,
} from "../../src/dev/hostdir-driver/mod.ts";
import { parseQuantity } from "../../src/provision/quantity.ts";
import { argv, exit, onTerminationSignal, writeStderr } from "../../src/runtime/process.ts";
import { systemClock } from "../../src/util/clock.ts";
import { createLogger } from "../../src/util/log.ts";

export type {
  RunningHostdirDriver,
  StartHostdirDriverOptions,
} from "../../src/dev/hostdir-driver/mod.ts";
export { startHostdirDriver };

/** The default data directory (relative to the working directory). */
export const DEFAULT_DATA_DIR = "./.hostdir-driver";

// ---------------------------------------------------------------------------------------------
// Command line.

export const USAGE = `Usage: main.ts [flags]

The hostdir sample CSI driver: each volume is a directory under --data-dir.

Flags:
  --endpoint=PATH        unix socket to serve on: unix:///abs/path.sock, unix:rel.sock or a path
                         (default: csi.sock in --data-dir)
  --drivername=NAME      driver name reported by GetPluginInfo (default ${DEFAULT_DRIVER_NAME})
  --data-dir=DIR         where volumes are kept (default ${DEFAULT_DATA_DIR})
  --capacity=QUANTITY    size of the pool GetCapacity reports on, e.g. 100Gi (default 100Gi)
  --topology             advertise topology: segment topology.<driver name>/node=<node id>
  --node-id=ID           node id reported by NodeGetInfo (default: the host name)
  -v=N                   log verbosity: 0 logs each call, 5 adds requests and responses
  -h, --help             print this help
`;

export interface HostdirFlags {
  /** Filesystem path of the socket. */
  socketPath: string;
  driverName: string;
  dataDir: string;
  capacityBytes: bigint;
  topology: boolean;
  nodeId?: string;
  verbosity: number;
  help: boolean;
}

/** A command-line mistake: print it with the usage and exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The socket path of an endpoint: `unix:///abs`, `unix://rel`, `unix:rel` or a plain path. */
export function socketPathOf(endpoint: string): string {
  const path = endpoint.startsWith("unix://")
    ? endpoint.slice("unix://".length)
    : endpoint.startsWith("unix:")
      ? endpoint.slice("unix:".length)
      : endpoint;
  if (path === "" || /^[a-z][a-z0-9+.-]*:\/\//i.test(path)) {
    throw new UsageError(
      `Invalid --endpoint ${JSON.stringify(endpoint)}: want unix:///path/to.sock or a path`,
    );
  }
  return path;
}

/** Parses the flags (`--name=value` or `--name value`; booleans also as `--name=false`). */
export function parseHostdirFlags(args: readonly string[]): HostdirFlags {
  const values = new Map<string, string>();
  const booleans = new Set(["topology", "help", "h"]);
  const known = new Set([
    "endpoint",
    "drivername",
    "data-dir",
    "capacity",
    "node-id",
    "v",
    ...booleans,
  ]);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const match = /^--?([a-z-]+)(?:=(.*))?$/s.exec(arg);
    if (!match) throw new UsageError(`Unexpected argument ${JSON.stringify(arg)}`);
    const name = match[1]!;
    if (!known.has(name)) throw new UsageError(`Unknown flag ${arg.split("=")[0]}`);
    let value = match[2];
    if (value === undefined) {
      if (booleans.has(name)) value = "true";
      else if (i + 1 < args.length) value = args[++i]!;
      else throw new UsageError(`Flag --${name} needs a value`);
    }
    values.set(name, value);
  }
  const bool = (name: string): boolean => {
    const value = values.get(name);
    if (value === undefined || value === "false") return false;
    if (value === "true") return true;
    throw new UsageError(`Invalid --${name}=${value}: want true or false`);
  };

  const dataDir = values.get("data-dir") ?? DEFAULT_DATA_DIR;
  if (dataDir === "") throw new UsageError("Invalid --data-dir: must not be empty");
  const endpoint = values.get("endpoint");
  const socketPath =
    endpoint === undefined ? `${dataDir.replace(/\/+$/, "")}/csi.sock` : socketPathOf(endpoint);

  let capacityBytes = DEFAULT_CAPACITY_BYTES;
  const capacity = values.get("capacity");
  if (capacity !== undefined) {
    try {
      capacityBytes = parseQuantity(capacity);
    } catch (err) {
      throw new UsageError(`Invalid --capacity: ${(err as Error).message}`);
    }
    if (capacityBytes <= 0n)
      throw new UsageError(`Invalid --capacity=${capacity}: must be positive`);
  }

  const verbosityText = values.get("v") ?? "0";
  if (!/^\d{1,2}$/.test(verbosityText))
    throw new UsageError(`Invalid -v=${verbosityText}: want a number`);

  const nodeId = values.get("node-id");
  if (nodeId === "") throw new UsageError("Invalid --node-id: must not be empty");
  return {
    socketPath,
    driverName: values.get("drivername") ?? DEFAULT_DRIVER_NAME,
    dataDir,
    capacityBytes,
    topology: bool("topology"),
    ...(nodeId !== undefined ? { nodeId } : {}),
    verbosity: Number(verbosityText),
    help: bool("help") || bool("h"),
  };
}

/** Runs the driver until SIGTERM or SIGINT; returns the exit status. */
export async function main(args: readonly string[]): Promise<number> {
  let flags: HostdirFlags;
  try {
    flags = parseHostdirFlags(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    writeStderr(`${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (flags.help) {
    writeStderr(USAGE);
    return 0;
  }
  const log = createLogger({
    write: (line) => writeStderr(`${line}\n`),
    clock: systemClock,
    verbosity: flags.verbosity,
  });

  // Listen for signals before serving, so that a signal right after "Serving CSI" is not lost.
  // A second signal while closing exits at once with status 1 (see onTerminationSignal).
  const stopped = new Promise<string>((resolve) => onTerminationSignal(resolve));
  let driver: RunningHostdirDriver;
  try {
    driver = await startHostdirDriver({
      socketPath: flags.socketPath,
      dataDir: flags.dataDir,
      driverName: flags.driverName,
      capacityBytes: flags.capacityBytes,
      topology: flags.topology,
      ...(flags.nodeId !== undefined ? { nodeId: flags.nodeId } : {}),
      log,
    });
  } catch (err) {
    log.error("Cannot start the hostdir driver", { err });
    return 1;
  }

  const signal = await stopped;
  log.info("Stopping", { signal });
  await driver.close();
  log.info("Stopped: socket removed", { socket: flags.socketPath });
  return 0;
}

if (import.meta.main) {
  exit(await main(argv()));
}
