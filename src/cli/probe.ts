/**
 * `csi-provisioner probe`: for driver developers. Runs the start-up handshake against a driver
 * and reports what the sidecar sees: name, vendor version, manifest, plugin and controller
 * capabilities, and the verdict — can this sidecar serve the driver, and which of its features
 * the driver's capabilities switch on.
 *
 * Exit codes: 0 servable; 1 not servable, or the handshake failed (the failure is named);
 * 2 a bad `--csi-address` (other bad flags are the CLI parser's).
 */
import { csiAddressToPath } from "../config/schema.ts";
import { controllerCapabilityNames, pluginCapabilityNames } from "../csi/capabilities.ts";
import { connectDriver, DEFAULT_CALL_TIMEOUT_MS } from "../csi/client.ts";
import { type DriverInfo, HandshakeError, handshake } from "../csi/handshake.ts";
import { assessServability, type Verdict } from "../csi/servability.ts";
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";

export interface ProbeConfig {
  /** `--csi-address` as given: `/path`, `unix:///path`, `unix:path` or a relative path. */
  csiAddress: string;
  /** `--timeout`: deadline of each call in ms; default 10 000. */
  timeoutMs?: number;
  /** `--output`; default `text`. */
  output?: "text" | "json";
  /** `--connect-timeout`: how long to wait for the socket, in ms; default 30 000 (as the sidecar). */
  connectTimeoutMs?: number;
}

export interface ProbeDeps {
  clock: Clock;
  logger: Logger;
  /** Writes to standard output (the report). */
  write: (text: string) => void;
  /** Writes to standard error (a failure in text mode); default `write`. */
  writeError?: (text: string) => void;
  /** Stops waiting (Ctrl-C). */
  signal?: AbortSignal;
}

/** The JSON report. Keys are stable; absent facts are `null`, never missing. */
export interface ProbeReport {
  address: string;
  socketPath: string;
  /** Null when the handshake failed before the driver told its name. */
  driver: { name: string; vendorVersion: string; manifest: Record<string, string> } | null;
  pluginCapabilities: string[];
  controllerCapabilities: string[];
  servable: boolean;
  /** Why the driver cannot be served. */
  problems: string[];
  features: {
    key: string;
    title: string;
    capability: string;
    enabled: boolean;
    explanation: string;
  }[];
  /** The handshake failure, or null. */
  error: string | null;
}

/** How the handshake went: complete, failed after GetPluginInfo (`partial`), or failed. */
export type ProbeOutcome =
  | { info: DriverInfo; verdict: Verdict }
  | { error: string; partial?: Omit<DriverInfo, "controllerCapabilities"> };

function sortedRecord(record: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}

/** Builds the report from a handshake result (or its failure). */
export function buildProbeReport(
  address: string,
  socketPath: string,
  outcome: ProbeOutcome,
): ProbeReport {
  if ("error" in outcome) {
    const partial = outcome.partial;
    return {
      address,
      socketPath,
      driver: partial
        ? {
            name: partial.name,
            vendorVersion: partial.vendorVersion,
            manifest: sortedRecord(partial.manifest),
          }
        : null,
      pluginCapabilities: partial ? pluginCapabilityNames(partial.pluginCapabilities) : [],
      controllerCapabilities: [],
      servable: false,
      problems: [outcome.error],
      features: [],
      error: outcome.error,
    };
  }
  const { info, verdict } = outcome;
  return {
    address,
    socketPath,
    driver: {
      name: info.name,
      vendorVersion: info.vendorVersion,
      manifest: sortedRecord(info.manifest),
    },
    pluginCapabilities: pluginCapabilityNames(info.pluginCapabilities),
    controllerCapabilities: controllerCapabilityNames(info.controllerCapabilities),
    servable: verdict.servable,
    problems: [...verdict.problems],
    features: verdict.features.map((f) => ({
      key: f.key,
      title: f.title,
      capability: f.capability,
      enabled: f.enabled,
      explanation: f.explanation,
    })),
    error: null,
  };
}

function table(rows: string[][], indent = "  "): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows.map(
    (row) =>
      indent +
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
  );
}

/** The text report: aligned sections, one fact per line. */
export function formatProbeText(report: ProbeReport): string {
  const lines: string[] = [];
  lines.push(`CSI driver at ${report.address}`);
  if (report.driver === null) {
    lines.push(
      "",
      "Verdict: cannot serve this driver",
      `  ${report.error ?? "the handshake failed"}`,
    );
    return `${lines.join("\n")}\n`;
  }
  const manifest = Object.entries(report.driver.manifest);
  lines.push(
    "",
    ...table([
      ["Name:", report.driver.name],
      [
        "Vendor version:",
        report.driver.vendorVersion === "" ? "(none)" : report.driver.vendorVersion,
      ],
      ["Manifest:", manifest.length === 0 ? "(none)" : `${manifest[0]![0]}=${manifest[0]![1]}`],
      ...manifest.slice(1).map(([k, v]) => ["", `${k}=${v}`]),
    ]),
    "",
    "Plugin capabilities:",
    ...(report.pluginCapabilities.length === 0
      ? ["  (none)"]
      : report.pluginCapabilities.map((c) => `  ${c}`)),
    "",
    "Controller capabilities:",
    ...(report.error !== null
      ? ["  (unknown: ControllerGetCapabilities failed)"]
      : report.controllerCapabilities.length === 0
        ? ["  (none)"]
        : report.controllerCapabilities.map((c) => `  ${c}`)),
    "",
  );
  if (report.error !== null) {
    lines.push(`Verdict: this sidecar cannot serve ${report.driver.name}`, `  ${report.error}`);
    return `${lines.join("\n")}\n`;
  }
  if (report.servable) {
    lines.push(`Verdict: this sidecar can serve ${report.driver.name}`);
  } else {
    lines.push(`Verdict: this sidecar cannot serve ${report.driver.name}`);
    for (const problem of report.problems) lines.push(`  - ${problem}`);
  }
  lines.push(
    "",
    "Features:",
    ...table(
      report.features.map((f) => [f.title, f.enabled ? "yes" : "no", f.capability, f.explanation]),
    ),
  );
  return `${lines.join("\n")}\n`;
}

/** The JSON report, pretty-printed, with a trailing newline. */
export function formatProbeJson(report: ProbeReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

/** Runs `probe`; resolves with the exit code. */
export async function runProbe(options: { config: ProbeConfig; deps: ProbeDeps }): Promise<number> {
  const { config, deps } = options;
  const output = config.output ?? "text";
  const writeError = deps.writeError ?? deps.write;
  const address = config.csiAddress;
  const parsed = csiAddressToPath(address);
  if (!parsed.ok) {
    writeError(`Invalid --csi-address ${JSON.stringify(address)}: ${parsed.error}\n`);
    return 2;
  }
  const socketPath = parsed.path;

  let outcome: ProbeOutcome;
  let driver: Awaited<ReturnType<typeof connectDriver>> | undefined;
  try {
    driver = await connectDriver({
      socketPath,
      timeoutMs: config.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
      clock: deps.clock,
      logger: deps.logger,
      ...(deps.signal ? { signal: deps.signal } : {}),
      ...(config.connectTimeoutMs !== undefined
        ? { connectTimeoutMs: config.connectTimeoutMs }
        : {}),
    });
    const info = await handshake(driver, {
      clock: deps.clock,
      logger: deps.logger,
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
    outcome = {
      info,
      verdict: assessServability(info.pluginCapabilities, info.controllerCapabilities),
    };
  } catch (error) {
    outcome = {
      error: error instanceof Error ? error.message : String(error),
      ...(error instanceof HandshakeError ? { partial: error.partial } : {}),
    };
  } finally {
    driver?.close();
  }

  const report = buildProbeReport(address, socketPath, outcome);
  if (output === "json") {
    deps.write(formatProbeJson(report));
  } else if (report.driver === null) {
    writeError(formatProbeText(report));
  } else {
    deps.write(formatProbeText(report));
  }
  return report.servable ? 0 : 1;
}
