/**
 * The start-up handshake with the driver, as upstream (reference §2.1 steps 5-8):
 *
 * 1. `Probe` every second until the driver is ready. Only `DeadlineExceeded` and `ready=false`
 *    are retried; an unset `ready` means ready; any other error is fatal.
 * 2. `GetPluginInfo`: the driver name (empty is fatal), vendor version and manifest.
 * 3. `GetPluginCapabilities` and `ControllerGetCapabilities`, each with its own deadline.
 *    Upstream calls ControllerGetCapabilities whether or not CONTROLLER_SERVICE is advertised,
 *    and so does this.
 *
 * Every failure is a {@link DriverStartupError} with one line naming the socket, the call and
 * the cause.
 */
import { Code } from "@connectrpc/connect";
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import {
  type ControllerCapabilities,
  type PluginCapabilities,
  summarizeControllerCapabilities,
  summarizePluginCapabilities,
} from "./capabilities.ts";
import { type CsiDriver, DriverStartupError } from "./client.ts";
import { describeCsiError, hasCode, toConnectError } from "./errors.ts";

/** What the handshake learnt about the driver. */
export interface DriverInfo {
  /** `GetPluginInfo.name`: the provisioner name (never empty). */
  readonly name: string;
  /** `GetPluginInfo.vendor_version` (may be empty). */
  readonly vendorVersion: string;
  /** `GetPluginInfo.manifest`. */
  readonly manifest: Readonly<Record<string, string>>;
  readonly pluginCapabilities: PluginCapabilities;
  readonly controllerCapabilities: ControllerCapabilities;
}

export interface HandshakeOptions {
  clock: Clock;
  logger: Logger;
  /** Stops probing; the handshake then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Wait between probes, in ms; default 1 000. */
  probeIntervalMs?: number;
}

/**
 * A handshake that failed after the driver told its name: what it learnt so far rides along, so
 * that `probe` can still show it.
 */
export class HandshakeError extends DriverStartupError {
  override name = "HandshakeError";
  readonly partial: Omit<DriverInfo, "controllerCapabilities">;
  constructor(
    message: string,
    partial: Omit<DriverInfo, "controllerCapabilities">,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.partial = partial;
  }
}

function fail(driver: CsiDriver, call: string, error: unknown): DriverStartupError {
  return new DriverStartupError(
    `${call} of CSI driver at ${driver.socketPath} failed: ${describeCsiError(error)}`,
    { cause: toConnectError(error) },
  );
}

/**
 * Calls `Probe` until the driver says it is ready: immediately, then every `probeIntervalMs`
 * while it answers `ready=false` or the call fails with `DeadlineExceeded`.
 */
export async function probeUntilReady(driver: CsiDriver, options: HandshakeOptions): Promise<void> {
  const { clock, logger, signal } = options;
  const interval = options.probeIntervalMs ?? 1_000;
  for (;;) {
    if (signal?.aborted) throw signal.reason;
    logger.info("Probing CSI driver for readiness", { address: driver.socketPath });
    try {
      const response = await driver.probe({ signal });
      // "If not present, the caller SHALL assume that the plugin is in a ready state."
      if (response.ready !== false) return;
      logger.info("CSI driver is not ready", { address: driver.socketPath });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (!hasCode(error, Code.DeadlineExceeded)) throw fail(driver, "Probe", error);
      logger.info("CSI driver probe timed out", { address: driver.socketPath });
    }
    await clock.sleep(interval, signal);
  }
}

/** Runs the whole start-up handshake and returns what the driver is and can do. */
export async function handshake(driver: CsiDriver, options: HandshakeOptions): Promise<DriverInfo> {
  await probeUntilReady(driver, options);
  const { signal } = options;

  let name: string;
  let vendorVersion: string;
  let manifest: Record<string, string>;
  try {
    const info = await driver.getPluginInfo({ signal });
    name = info.name;
    vendorVersion = info.vendorVersion;
    manifest = { ...info.manifest };
  } catch (error) {
    throw fail(driver, "GetPluginInfo", error);
  }
  if (name === "") {
    throw new DriverStartupError(
      `GetPluginInfo of CSI driver at ${driver.socketPath} failed: the driver name is empty`,
    );
  }

  let pluginCapabilities: PluginCapabilities;
  try {
    pluginCapabilities = summarizePluginCapabilities(
      await driver.getPluginCapabilities({ signal }),
    );
  } catch (error) {
    throw fail(driver, "GetPluginCapabilities", error);
  }

  let controllerCapabilities: ControllerCapabilities;
  try {
    controllerCapabilities = summarizeControllerCapabilities(
      await driver.controllerGetCapabilities({ signal }),
    );
  } catch (error) {
    const partial = { name, vendorVersion, manifest, pluginCapabilities };
    // A driver without the Controller service answers Unimplemented (HTTP 404 on the wire).
    const cause = hasCode(error, Code.Unimplemented)
      ? `the driver serves no Controller service (${describeCsiError(error)}); provisioning needs its CreateVolume and DeleteVolume`
      : describeCsiError(error);
    throw new HandshakeError(
      `ControllerGetCapabilities of CSI driver at ${driver.socketPath} failed: ${cause}`,
      partial,
      { cause: toConnectError(error) },
    );
  }

  options.logger.info("CSI driver is ready", {
    address: driver.socketPath,
    driver: name,
    vendorVersion,
  });
  return { name, vendorVersion, manifest, pluginCapabilities, controllerCapabilities };
}
