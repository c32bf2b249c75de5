/**
 * Runs the real sidecar (`startSidecar`, the same code path as the `run` command) against the
 * test Kubernetes API server and the fake CSI driver, in-process, and gives tests handles on all
 * three. `stop()` drains the sidecar; `close()` stops everything and frees sockets and ports.
 */

import { resolveCommand } from "../../src/cli/main-args.ts";
import type { Config } from "../../src/config/schema.ts";
import { noAuth } from "../../src/kube/auth.ts";
import type { KubeConnection } from "../../src/kube/config.ts";
import type { PersistentVolumeClaim, StorageClass } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { type RunDeps, type StartedSidecar, startSidecar } from "../../src/sidecar.ts";
import { systemClock } from "../../src/util/clock.ts";
import { createLogger, type Logger } from "../../src/util/log.ts";
import { type ApiServer, startApiServer } from "./apiserver.ts";
import { type FakeDriver, type FakeDriverOptions, startFakeDriver } from "./fake-driver.ts";

export interface RunningSidecar extends StartedSidecar {
  /** Aborts the sidecar and resolves with its exit code once it drained. */
  stop(): Promise<number>;
}

export interface Harness {
  apiserver: ApiServer;
  driver: FakeDriver;
  logs: string[];
  /**
   * Starts a sidecar with the default flags plus `args` (e.g. `--worker-threads=2`) and `env`;
   * `deps` overrides dependencies (e.g. `processStats`).
   */
  start(
    args?: string[],
    env?: Record<string, string>,
    deps?: Partial<RunDeps>,
  ): Promise<RunningSidecar>;
  /** Stops every sidecar, the driver and the API server. */
  close(): Promise<void>;
}

export const DRIVER = "fake.csi.k8s.io";

export function configFor(
  socketPath: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Config {
  const r = resolveCommand(
    [`--csi-address=${socketPath}`, "--retry-interval-start=20ms", ...args],
    { POD_NAMESPACE: "kube-system", ...env },
  );
  if (r.kind !== "run") throw new Error(`bad test flags: ${JSON.stringify(r)}`);
  return r.config;
}

export async function startHarness(
  opts: { driver?: FakeDriverOptions; apiserver?: ApiServer; verbose?: boolean } = {},
): Promise<Harness> {
  const apiserver = opts.apiserver ?? (await startApiServer());
  const driver = await startFakeDriver({ name: DRIVER, ...opts.driver });
  const logs: string[] = [];
  const sidecars = new Set<RunningSidecar>();
  const logger: Logger = createLogger({
    write: (l) => {
      logs.push(l);
      if (opts.verbose) console.error(l);
    },
    clock: systemClock,
    verbosity: 5,
  });
  const kube: KubeConnection = { server: apiserver.url, tls: {}, auth: noAuth, source: "test" };
  let n = 0;
  return {
    apiserver,
    driver,
    logs,
    async start(args = [], env = {}, overrides = {}) {
      const stop = new AbortController();
      const deps: RunDeps = {
        logger: logger.with({ sidecar: ++n }),
        signal: stop.signal,
        clock: systemClock,
        random: Math.random,
        env: {},
        readFile: () => {
          throw new Error("no files in tests");
        },
        hostname: `test-host-${n}`,
        uuid: () => crypto.randomUUID(),
        writeTerminationMessage: () => false,
        exit: (code) => {
          throw new Error(`sidecar asked to exit with ${code}`);
        },
        ...overrides,
      };
      const started = await startSidecar(configFor(driver.socketPath, args, env), deps, kube);
      const running: RunningSidecar = {
        ...started,
        stop: async () => {
          stop.abort();
          sidecars.delete(running);
          return started.done;
        },
      };
      sidecars.add(running);
      return running;
    },
    async close() {
      await Promise.all([...sidecars].map((s) => s.stop()));
      await driver.close();
      if (!opts.apiserver) await apiserver.close();
    },
  };
}

/** A StorageClass for the fake driver. */
export function storageClass(name: string, extra: Partial<StorageClass> = {}): StorageClass {
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: { name },
    provisioner: DRIVER,
    reclaimPolicy: "Delete",
    volumeBindingMode: "Immediate",
    ...extra,
  };
}

/** A claim asking the fake driver for `size` from class `className`. */
export function claim(
  name: string,
  className: string,
  extra: { size?: string; namespace?: string; annotations?: Record<string, string> } & Partial<
    PersistentVolumeClaim["spec"]
  > = {},
): PersistentVolumeClaim {
  const { size, namespace, annotations, ...spec } = extra;
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: {
      name,
      namespace: namespace ?? "default",
      annotations: { "volume.kubernetes.io/storage-provisioner": DRIVER, ...annotations },
    },
    spec: {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: size ?? "1Gi" } },
      storageClassName: className,
      ...spec,
    },
  };
}

/** Plays kube-controller-manager's PV binder for a claim whose PV is gone: marks PVs Released. */
export function releaseVolumesOf(apiserver: ApiServer, claimUid: string): number {
  let n = 0;
  for (const pv of apiserver.objects(resources.persistentVolumes)) {
    if (pv.spec.claimRef?.uid === claimUid && pv.status?.phase !== "Released") {
      apiserver.put({ ...pv, status: { ...pv.status, phase: "Released" } });
      n++;
    }
  }
  return n;
}
