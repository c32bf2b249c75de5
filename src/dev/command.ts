/**
 * `csi-provisioner dev`: the provisioner on a laptop, no cluster needed.
 *
 * Starts an embedded Kubernetes API on loopback (the test API server, persisting to
 * `<data-dir>/api`), writes a kubeconfig for kubectl, starts the sample hostdir driver unless
 * `--csi-address` names a driver of your own, creates a StorageClass for the driver it finds,
 * and runs the provisioner against it, with a small stand-in for kube-controller-manager's PV
 * binder. Ctrl-C stops everything and leaves no socket, process or half-written file behind.
 *
 * `--demo` creates a claim, prints its PV, deletes the claim, waits for the volume to go and
 * exits: the whole life of a volume in one command.
 */

import type { Config } from "../config/schema.ts";
import { noAuth } from "../kube/auth.ts";
import type { PersistentVolume, PersistentVolumeClaim, StorageClass } from "../kube/objects.ts";
import { resources } from "../kube/resources.ts";
import { writeFileAtomic } from "../runtime/files.ts";
import { lockDirectory } from "../runtime/lock.ts";
import { writeStdout } from "../runtime/process.ts";
import type { RunDeps, StartedSidecar } from "../sidecar.ts";
import { startSidecar } from "../sidecar.ts";
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { type ApiServer, startApiServer } from "./apiserver/mod.ts";
import { runBinder } from "./binder.ts";
import { startHostdirDriver } from "./hostdir-driver/mod.ts";

/** The StorageClass name for a driver: its first DNS label (`hostdir.csi.example.com` → `hostdir`). */
export function devStorageClassName(driverName: string): string {
  const first =
    driverName
      .split(".")[0]
      ?.toLowerCase()
      .replace(/[^a-z0-9-]/g, "-") ?? "";
  return first.replace(/^-+|-+$/g, "") || "csi";
}

function describeVolume(pv: PersistentVolume): string {
  const csi = pv.spec.csi;
  return [
    `PersistentVolume ${pv.metadata.name}`,
    `  capacity:      ${pv.spec.capacity?.storage}`,
    `  access modes:  ${(pv.spec.accessModes ?? []).join(", ")}`,
    `  reclaim:       ${pv.spec.persistentVolumeReclaimPolicy}`,
    `  class:         ${pv.spec.storageClassName}`,
    `  claim:         ${pv.spec.claimRef?.namespace}/${pv.spec.claimRef?.name}`,
    `  driver:        ${csi?.driver}`,
    `  volume handle: ${csi?.volumeHandle}`,
    `  phase:         ${pv.status?.phase ?? ""}`,
  ].join("\n");
}

function samplePvc(className: string): string {
  return [
    "apiVersion: v1",
    "kind: PersistentVolumeClaim",
    "metadata:",
    "  name: my-claim",
    "spec:",
    "  accessModes: [ReadWriteOnce]",
    `  storageClassName: ${className}`,
    "  resources:",
    "    requests:",
    "      storage: 1Gi",
  ].join("\n");
}

/** Stops what `dev` started, last first; each step logged, a failing one does not stop the rest. */
class Cleanups {
  readonly #steps: [string, () => Promise<unknown>][] = [];
  readonly #logger: Logger;
  constructor(logger: Logger) {
    this.#logger = logger;
  }
  push(what: string, step: () => Promise<unknown>): void {
    this.#steps.push([what, step]);
  }
  async run(): Promise<void> {
    for (const [what, step] of this.#steps.reverse()) {
      try {
        this.#logger.v(2).info("Stopping", { what });
        await step();
      } catch (err) {
        this.#logger.warn("Cleanup step failed", { err });
      }
    }
    this.#steps.length = 0;
  }
}

/** The embedded API server, persisted under the data directory, and a kubeconfig for kubectl. */
async function startEmbeddedApi(
  config: Config,
  deps: RunDeps,
  dataDir: string,
  cleanups: Cleanups,
  print: (text: string) => void,
): Promise<ApiServer> {
  const apiserver = await startApiServer({
    dataDir: `${dataDir}/api`,
    port: config.port,
    clock: deps.clock,
    random: deps.random,
    logger: deps.logger,
  });
  cleanups.push("embedded API server", () => apiserver.close());
  await writeFileAtomic(config.kubeconfigOut, apiserver.kubeconfig());
  print(`Kubernetes API: ${apiserver.url}`);
  print(`Kubeconfig:     ${config.kubeconfigOut}`);
  return apiserver;
}

/** The driver's socket: the user's (`--csi-address`), or the sample driver's, started here. */
async function driverSocket(
  config: Config,
  logger: Logger,
  dataDir: string,
  cleanups: Cleanups,
  print: (text: string) => void,
): Promise<string> {
  if (config.explicitFlags.includes("csi-address")) return config.csiSocketPath;
  const driver = await startHostdirDriver({
    socketPath: `${dataDir}/hostdir.sock`,
    dataDir: `${dataDir}/volumes`,
    log: logger.with({ component: "hostdir-driver" }),
  });
  cleanups.push("sample driver", () => driver.close());
  print(`CSI driver:     ${driver.driverName} (sample driver, volumes in ${dataDir}/volumes)`);
  return driver.socketPath;
}

/** A default StorageClass for the driver found on the socket, unless one of that name exists. */
async function ensureStorageClass(
  apiserver: ApiServer,
  sidecar: StartedSidecar,
  print: (text: string) => void,
): Promise<string> {
  const className = devStorageClassName(sidecar.info.name);
  if (!apiserver.get(resources.storageClasses, className)) {
    const sc: StorageClass = {
      apiVersion: "storage.k8s.io/v1",
      kind: "StorageClass",
      metadata: {
        name: className,
        annotations: { "storageclass.kubernetes.io/is-default-class": "true" },
      },
      provisioner: sidecar.info.name,
      reclaimPolicy: "Delete",
      volumeBindingMode: "Immediate",
    };
    await sidecar.api.resource(resources.storageClasses).create(sc);
  }
  print(`StorageClass:   ${className} (provisioner ${sidecar.info.name})`);
  return className;
}

function printHowTo(config: Config, className: string, print: (text: string) => void): void {
  print("");
  print("Create a claim and watch its volume appear:");
  print(`  cat <<EOF | kubectl --kubeconfig ${config.kubeconfigOut} apply -f -`);
  print(samplePvc(className));
  print("EOF");
  print(`  kubectl --kubeconfig ${config.kubeconfigOut} get pv,pvc`);
  print("Stop with Ctrl-C.");
}

export async function runDev(config: Config, deps: RunDeps): Promise<number> {
  const { logger, clock, random } = deps;
  const dataDir = config.dataDir.replace(/\/+$/, "");
  const print = (text: string) => writeStdout(`${text}\n`);
  const stop = new AbortController();
  const onStop = () => stop.abort(deps.signal.reason);
  deps.signal.addEventListener("abort", onStop, { once: true });
  const cleanups = new Cleanups(logger);

  try {
    // 0. One dev per data directory: a second one would overwrite the first one's state.
    const lock = await lockDirectory(dataDir);
    if (!lock.ok) {
      logger.error(
        `Another csi-provisioner dev (pid ${lock.pid}) is using the data directory ${dataDir}: stop it, or pass another --data-dir`,
        { lock: lock.path },
      );
      return 1;
    }
    cleanups.push("data directory lock", () => lock.release());

    // 1. The embedded API server; 2. the driver.
    const apiserver = await startEmbeddedApi(config, deps, dataDir, cleanups, print);
    const socketPath = await driverSocket(config, logger, dataDir, cleanups, print);

    // 3. The provisioner, against the embedded API, and the stand-in for the PV binder.
    // The embedded API is local: unless asked otherwise, do not throttle the client.
    const given = new Set(config.explicitFlags);
    const sidecar = await startSidecar(
      {
        ...config,
        csiSocketPath: socketPath,
        kubeApiQps: given.has("kube-api-qps") ? config.kubeApiQps : 1000,
        kubeApiBurst: given.has("kube-api-burst") ? config.kubeApiBurst : 1000,
      },
      { ...deps, signal: stop.signal },
      { server: apiserver.url, tls: {}, auth: noAuth, source: "dev", namespace: "default" },
    );
    cleanups.push("provisioner", async () => {
      stop.abort();
      await sidecar.done;
    });
    const binderRun = runBinder({ api: sidecar.api, clock, random, logger }, stop.signal);
    cleanups.push("binder", () => binderRun);

    // 4. A StorageClass for the driver found on the socket.
    const className = await ensureStorageClass(apiserver, sidecar, print);
    if (config.demo) {
      return await runDemo(apiserver, sidecar.api, className, print, clock, stop.signal);
    }
    printHowTo(config, className, print);
    return await sidecar.done;
  } catch (err) {
    if (deps.signal.aborted) return 0;
    logger.error(err instanceof Error ? err.message : String(err));
    return 1;
  } finally {
    deps.signal.removeEventListener("abort", onStop);
    stop.abort();
    await cleanups.run();
  }
}

/** How long `--demo` waits for each step (claim bound, volume deleted) before it gives up. */
const DEMO_STEP_TIMEOUT_MS = 60_000;

/** `wait`, failing with "`what` did not happen within 60 s" after {@link DEMO_STEP_TIMEOUT_MS}. */
async function demoStep<R>(
  what: string,
  wait: (signal: AbortSignal) => Promise<R>,
  clock: Clock,
  signal: AbortSignal,
): Promise<R> {
  const deadline = new AbortController();
  clock.sleep(DEMO_STEP_TIMEOUT_MS, deadline.signal).then(
    () =>
      deadline.abort(
        new Error(`${what} did not happen within ${DEMO_STEP_TIMEOUT_MS / 1000} s: see the log`),
      ),
    () => {},
  );
  try {
    return await wait(AbortSignal.any([signal, deadline.signal]));
  } finally {
    deadline.abort();
  }
}

async function runDemo(
  apiserver: ApiServer,
  api: Awaited<ReturnType<typeof startSidecar>>["api"],
  className: string,
  print: (t: string) => void,
  clock: Clock,
  signal: AbortSignal,
): Promise<number> {
  const pvcs = api.resource(resources.persistentVolumeClaims);
  // The first free name: claims of an earlier, interrupted demo may still be there.
  let n = 0;
  while (apiserver.get(resources.persistentVolumeClaims, `demo-${n}`, "default")) n++;
  const name = `demo-${n}`;
  const claim: PersistentVolumeClaim = {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name, namespace: "default" },
    spec: {
      accessModes: ["ReadWriteOnce"],
      storageClassName: className,
      resources: { requests: { storage: "1Gi" } },
    },
  };
  print("");
  print(`Creating claim default/${name} (1Gi, ReadWriteOnce, class ${className})...`);
  const created = await pvcs.create(claim, { signal });
  const bound = await demoStep(
    `Binding of claim default/${name}`,
    (s) =>
      apiserver.waitFor(
        () => {
          const c = apiserver.get(resources.persistentVolumeClaims, name, "default");
          return c?.status?.phase === "Bound" ? c : undefined;
        },
        { signal: s },
      ),
    clock,
    signal,
  );
  const pv = apiserver.get(resources.persistentVolumes, bound.spec.volumeName ?? "")!;
  print(`Claim default/${name} is Bound.`);
  print(describeVolume(pv));
  print("");
  print(`Deleting claim default/${name}...`);
  await pvcs.delete(name, "default", { signal });
  await demoStep(
    `Deletion of volume ${pv.metadata.name}`,
    (s) =>
      apiserver.waitFor(() => !apiserver.get(resources.persistentVolumes, pv.metadata.name ?? ""), {
        signal: s,
      }),
    clock,
    signal,
  );
  print(`Volume ${pv.metadata.name} was deleted (claim uid ${created.metadata.uid}). Done.`);
  return 0;
}
