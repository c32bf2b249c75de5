/**
 * `csi-provisioner orphans --csi-address=... [--kubeconfig=...] [--output=table|json]`: lists
 * the driver's volumes that no PersistentVolume, provisioning intent or claim in flight explains
 * (see `audit/orphans.ts`), with what is known of each: ID, capacity, name, the claim UID its
 * name encodes and whether that claim still exists, the driver's volume condition, and whether
 * the running sidecar's `--orphan-delete` would delete it. It changes nothing.
 *
 * Exit codes: 0 no orphans; 1 orphans found; 2 bad flags, or the driver or the API failed
 * (named); 3 the driver has no LIST_VOLUMES capability.
 */
import { listEverything } from "../audit/auditor.ts";
import { auditOrphans, type OrphanedVolume } from "../audit/orphans.ts";
import { csiAddressToPath } from "../config/schema.ts";
import { createIntentJournal } from "../controller/journal.ts";
import { type CsiDriver, connectDriver } from "../csi/client.ts";
import { handshake } from "../csi/handshake.ts";
import { createKubeApi } from "../kube/client.ts";
import { type KubeConnection, loadKubeConnection } from "../kube/config.ts";
import { createRateLimiter } from "../kube/ratelimit.ts";
import { resources } from "../kube/resources.ts";
import { KubeTransport } from "../kube/transport.ts";
import type { Clock, Random } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";
import { VERSION } from "../version.ts";

export interface OrphansConfig {
  csiAddress: string;
  timeoutMs: number;
  /** `--output`: `text` and `table` print a table. */
  output: "text" | "table" | "json";
  kubeconfig: string;
  master: string;
  kubeApiQps: number;
  kubeApiBurst: number;
  volumeNamePrefix: string;
  /** Where the intent journal lives: `--leader-election-namespace`, then `POD_NAMESPACE`. */
  journalNamespace: string | undefined;
}

export interface OrphansDeps {
  clock: Clock;
  random: Random;
  logger: Logger;
  env: Readonly<Record<string, string | undefined>>;
  readFile: (path: string) => string;
  write: (text: string) => void;
  writeError: (text: string) => void;
  signal?: AbortSignal;
  /** The Kubernetes connection (tests); default: from the flags and the environment. */
  kube?: KubeConnection;
}

function bytes(n: number | undefined): string {
  if (n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1 && Number.isInteger(v / 1024)) {
    v /= 1024;
    u++;
  }
  return `${v}${units[u]}`;
}

/** A fixed-width table, one row per orphan. */
export function orphansTable(orphans: readonly OrphanedVolume[]): string {
  const rows = [
    ["VOLUME ID", "CAPACITY", "NAME", "CLAIM UID", "CLAIM", "CONDITION", "DELETABLE"],
    ...orphans.map((o) => [
      o.volumeId,
      bytes(o.capacityBytes),
      o.name ?? "-",
      o.claimUid ?? "-",
      o.claimExists === undefined ? "-" : o.claimExists ? "exists" : "gone",
      o.condition ? (o.condition.abnormal ? `abnormal: ${o.condition.message}` : "normal") : "-",
      o.deletable ? "yes" : "no",
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")}\n`;
}

export async function runOrphans(config: OrphansConfig, deps: OrphansDeps): Promise<number> {
  const parsed = csiAddressToPath(config.csiAddress);
  if (!parsed.ok) {
    deps.writeError(
      `Invalid --csi-address ${JSON.stringify(config.csiAddress)}: ${parsed.error}\n`,
    );
    return 2;
  }
  const { clock, random, logger, signal } = deps;
  let driver: CsiDriver | undefined;
  try {
    driver = await connectDriver({
      socketPath: parsed.path,
      timeoutMs: config.timeoutMs,
      clock,
      logger,
      ...(signal ? { signal } : {}),
    });
    const info = await handshake(driver, { clock, logger, ...(signal ? { signal } : {}) });
    const connection =
      deps.kube ??
      (await loadKubeConnection({
        kubeconfigPath: config.kubeconfig || undefined,
        masterUrl: config.master || undefined,
        env: deps.env,
        readFile: deps.readFile,
        clock,
        logger,
      }));
    const api = createKubeApi(
      new KubeTransport({
        connection,
        version: VERSION,
        clock,
        random,
        logger,
        rateLimiter: createRateLimiter({
          qps: config.kubeApiQps,
          burst: config.kubeApiBurst,
          clock,
        }),
      }),
    );
    const journal = createIntentJournal({
      leases: api.resource(resources.leases),
      namespace: config.journalNamespace || connection.namespace || "default",
      driverName: info.name,
      clock,
      logger,
    });
    const [volumes, claims, intents] = await Promise.all([
      listEverything(api.resource(resources.persistentVolumes), signal),
      listEverything(api.resource(resources.persistentVolumeClaims), signal),
      journal.load(signal),
    ]);
    const result = await auditOrphans({
      driver,
      driverName: info.name,
      controllerCapabilities: info.controllerCapabilities,
      volumeNamePrefix: config.volumeNamePrefix,
      volumes,
      claims,
      intents,
      ...(signal ? { signal } : {}),
    });
    if (result.kind === "unsupported") {
      deps.writeError(`${result.message}\n`);
      return 3;
    }
    if (config.output === "json") {
      deps.write(
        `${JSON.stringify(
          {
            driver: info.name,
            volumes: result.volumes,
            orphans: result.orphans.map((o) => ({
              volumeId: o.volumeId,
              capacityBytes: o.capacityBytes ?? null,
              name: o.name ?? null,
              claimUid: o.claimUid ?? null,
              claimExists: o.claimExists ?? null,
              condition: o.condition ?? null,
              deletable: o.deletable,
            })),
          },
          null,
          2,
        )}\n`,
      );
    } else {
      deps.write(
        `${result.orphans.length} orphaned of ${result.volumes} volumes of CSI driver ${info.name}\n`,
      );
      if (result.orphans.length > 0) deps.write(orphansTable(result.orphans));
    }
    return result.orphans.length > 0 ? 1 : 0;
  } catch (err) {
    deps.writeError(`Orphaned-volume audit failed: ${errorText(err)}\n`);
    return 2;
  } finally {
    driver?.close();
  }
}
