/**
 * Captures what a csi-provisioner binary shows the outside world — its /metrics families, the
 * ProvisioningFailed event texts of a few failure causes, sample log lines in text and JSON form,
 * and the PV's provisioner identity — by running it against a real control plane
 * (test/e2e/cluster.ts) and the CSI mock driver. Run against upstream's build, it writes the
 * fixture `test/fixtures/upstream-behaviour.json` that test/metrics/upstream-families.test.ts,
 * test/controller/upstream-events.test.ts and test/util/log.test.ts compare this project against,
 * and test/e2e/upstream-parity.test.ts runs {@link capture} on this project's binary to compare
 * the two end to end:
 *
 *   E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1) \
 *     node_modules/.bin/node scripts/capture-upstream.ts [--binary=PATH] [--out=FILE]
 *
 * `--binary` defaults to `$E2E_BIN_DIR/csi-provisioner-upstream`; point it at
 * `dist/csi-provisioner-linux-x64` to capture this project's binary the same way (and diff).
 * `--out` defaults to `test/fixtures/upstream-behaviour.json` for upstream and to stdout otherwise.
 *
 * The scenario: one sidecar with `--leader-election --http-endpoint -v=5` and `NODE_NAME` set but
 * no `--node-deployment` serves the mock driver (no topology); it provisions and deletes a claim,
 * and fails a claim whose StorageClass has an unknown reserved parameter and one that asks for
 * more than the driver can give. A second sidecar, with `--logging-format=json`, serves a
 * second mock driver with topology, where a late-binding claim's selected node lacks the
 * topology label and an immediate claim finds no node with it. Then /metrics is scraped.
 */

import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { type Cluster, freePort, startCluster } from "../test/e2e/cluster.ts";
import { eventually, type RunningProcess, startProcess } from "../test/e2e/support.ts";
import { metricFamilies } from "../test/support/metric-families.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const FIXTURE = path.join(ROOT, "test/fixtures/upstream-behaviour.json");

const NS = "capture";
const TOPOLOGY_DRIVER = "topology.csi.k8s.io";
const TOPOLOGY_KEY = "io.kubernetes.storage.mock/node";
const NODE = "capture-node";

async function api(cluster: Cluster, method: string, apiPath: string, body?: unknown) {
  const res = await cluster.request(method, apiPath, body);
  if (res.status >= 300 && !(method === "POST" && res.status === 409)) {
    throw new Error(`${method} ${apiPath}: ${res.status} ${res.body}`);
  }
  return res;
}

const storageClass = (
  name: string,
  provisioner: string,
  extra: Record<string, unknown> = {},
): unknown => ({
  apiVersion: "storage.k8s.io/v1",
  kind: "StorageClass",
  metadata: { name },
  provisioner,
  reclaimPolicy: "Delete",
  volumeBindingMode: "Immediate",
  ...extra,
});

const claim = (
  name: string,
  className: string,
  size = "1Mi",
  annotations: Record<string, string> = {},
): unknown => ({
  apiVersion: "v1",
  kind: "PersistentVolumeClaim",
  metadata: { name, namespace: NS, annotations },
  spec: {
    accessModes: ["ReadWriteOnce"],
    storageClassName: className,
    resources: { requests: { storage: size } },
  },
});

interface CoreEvent {
  reason?: string;
  type?: string;
  message?: string;
  involvedObject?: { name?: string };
}

async function failureEvent(cluster: Cluster, claimName: string): Promise<string> {
  return eventually(`a ProvisioningFailed event for ${claimName}`, async () => {
    const res = await api(cluster, "GET", `/api/v1/namespaces/${NS}/events`);
    const items = res.json<{ items: CoreEvent[] }>().items;
    return items.find(
      (e) => e.involvedObject?.name === claimName && e.reason === "ProvisioningFailed",
    )?.message;
  });
}

function startSidecar(
  binary: string,
  name: string,
  socket: string,
  kubeconfig: string,
  dir: string,
  extra: string[],
  env: Record<string, string> = {},
): RunningProcess {
  return startProcess({
    name,
    bin: binary,
    args: [
      `--csi-address=${socket}`,
      `--kubeconfig=${kubeconfig}`,
      "--leader-election-namespace=default",
      "-v=5",
      ...extra,
    ],
    logFile: path.join(dir, `${name}.log`),
    env,
  });
}

/** What {@link capture} records (the fixture's shape). */
export interface Capture {
  note: string;
  binary: string;
  capturedAt: string;
  driverName: string;
  provisionerIdentity: {
    nodeName: string;
    nodeDeployment: boolean;
    identity: string;
    endsWithNodeName: boolean;
  };
  events: Record<string, string>;
  logs: { text: string[]; json: string[] };
  metrics: ReturnType<typeof metricFamilies>;
}

/** Runs the scenario (see the module doc) with `binary` on a fresh control plane from `binDir`. */
export async function capture(
  binary: string,
  binDir: string,
  log: (line: string) => void = () => {},
): Promise<Capture> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "capture-upstream-"));
  const cluster = await startCluster({ binDir, log });
  /** Everything started here, stopped on the way out whatever happens. */
  const started: RunningProcess[] = [];
  const track = (p: RunningProcess) => {
    started.push(p);
    return p;
  };
  try {
    const kubeconfig = cluster.adminKubeconfig;
    await api(cluster, "POST", "/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: NS },
    });

    // A second mock driver, with topology.
    const topoSocket = path.join(dir, "topology.sock");
    const topoDriver = track(
      startProcess({
        name: "topology-driver",
        bin: path.join(binDir, "csi-mock-driver"),
        args: [
          `--endpoint=unix://${topoSocket}`,
          `--drivername=${TOPOLOGY_DRIVER}`,
          `--nodeid=${NODE}`,
          "--enable-topology",
        ],
        logFile: path.join(dir, "topology-driver.log"),
      }),
    );
    await eventually("the topology driver's socket", () =>
      existsSync(topoSocket) ? true : undefined,
    );

    // The Node exists but lacks the driver's topology label; its CSINode names the key.
    await api(cluster, "POST", "/api/v1/nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: NODE, labels: { "kubernetes.io/hostname": NODE } },
    });
    await api(cluster, "POST", "/apis/storage.k8s.io/v1/csinodes", {
      apiVersion: "storage.k8s.io/v1",
      kind: "CSINode",
      metadata: { name: NODE },
      spec: { drivers: [{ name: TOPOLOGY_DRIVER, nodeID: NODE, topologyKeys: [TOPOLOGY_KEY] }] },
    });

    const port = await freePort();
    const text = track(
      startSidecar(
        binary,
        "sidecar-text",
        cluster.csiSocket,
        kubeconfig,
        dir,
        [`--http-endpoint=127.0.0.1:${port}`, "--leader-election"],
        { NODE_NAME: NODE },
      ),
    );
    const json = track(
      startSidecar(binary, "sidecar-json", topoSocket, kubeconfig, dir, [
        "--logging-format=json",
        "--leader-election",
      ]),
    );

    // 1. Provision and delete a volume.
    await api(
      cluster,
      "POST",
      "/apis/storage.k8s.io/v1/storageclasses",
      storageClass("capture-sc", cluster.driverName),
    );
    await api(
      cluster,
      "POST",
      `/api/v1/namespaces/${NS}/persistentvolumeclaims`,
      claim("ok", "capture-sc"),
    );
    const pvName = await eventually("claim ok bound", async () => {
      const res = await api(cluster, "GET", `/api/v1/namespaces/${NS}/persistentvolumeclaims/ok`);
      const c = res.json<{ spec: { volumeName?: string }; status?: { phase?: string } }>();
      return c.status?.phase === "Bound" ? c.spec.volumeName : undefined;
    });
    const pv = (await api(cluster, "GET", `/api/v1/persistentvolumes/${pvName}`)).json<{
      metadata: { annotations?: Record<string, string> };
      spec: { csi?: { volumeAttributes?: Record<string, string> } };
    }>();
    const identity =
      pv.spec.csi?.volumeAttributes?.["storage.kubernetes.io/csiProvisionerIdentity"] ?? "";
    await api(cluster, "DELETE", `/api/v1/namespaces/${NS}/persistentvolumeclaims/ok`);
    await eventually("PV of claim ok deleted", async () => {
      const res = await cluster.request("GET", `/api/v1/persistentvolumes/${pvName}`);
      return res.status === 404 ? true : undefined;
    });

    // 2. Failures.
    await api(
      cluster,
      "POST",
      "/apis/storage.k8s.io/v1/storageclasses",
      storageClass("bad-parameter", cluster.driverName, {
        parameters: { "csi.storage.k8s.io/unknown": "x" },
      }),
    );
    await api(
      cluster,
      "POST",
      `/api/v1/namespaces/${NS}/persistentvolumeclaims`,
      claim("bad-parameter", "bad-parameter"),
    );
    await api(
      cluster,
      "POST",
      `/api/v1/namespaces/${NS}/persistentvolumeclaims`,
      claim("too-big", "capture-sc", "2Ti"),
    );
    await api(
      cluster,
      "POST",
      "/apis/storage.k8s.io/v1/storageclasses",
      storageClass("topology-late", TOPOLOGY_DRIVER, { volumeBindingMode: "WaitForFirstConsumer" }),
    );
    await api(
      cluster,
      "POST",
      "/apis/storage.k8s.io/v1/storageclasses",
      storageClass("topology-immediate", TOPOLOGY_DRIVER),
    );
    await api(
      cluster,
      "POST",
      `/api/v1/namespaces/${NS}/persistentvolumeclaims`,
      claim("topology-late", "topology-late", "1Mi", {
        "volume.kubernetes.io/selected-node": NODE,
      }),
    );
    await api(
      cluster,
      "POST",
      `/api/v1/namespaces/${NS}/persistentvolumeclaims`,
      claim("topology-immediate", "topology-immediate"),
    );
    const events: Record<string, string> = {};
    for (const name of ["bad-parameter", "too-big", "topology-late", "topology-immediate"]) {
      events[name] = await failureEvent(cluster, name);
    }

    // 3. Metrics, after everything above.
    const metricsText = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();

    await text.stop();
    await json.stop();
    await topoDriver.stop();
    const textLines = text.lines.filter((l) => /^[IWE]\d{4} /.test(l));
    const jsonLines = json.lines.filter((l) => l.startsWith("{"));
    const pick = (lines: string[], pattern: RegExp) =>
      lines.filter((l) => pattern.test(l)).slice(0, 3);

    return {
      note: [
        "Captured by scripts/capture-upstream.ts from the binary named below, against a real",
        "control plane (test/e2e/cluster.ts) and Kubernetes' CSI mock driver. Refresh with:",
        "E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1) node_modules/.bin/node scripts/capture-upstream.ts",
      ].join(" "),
      binary: path.basename(binary),
      capturedAt: new Date().toISOString(),
      driverName: cluster.driverName,
      provisionerIdentity: {
        nodeName: NODE,
        nodeDeployment: false,
        identity,
        endsWithNodeName: identity.endsWith(`-${NODE}`),
      },
      events,
      logs: {
        text: [...pick(textLines, /^I/), ...pick(textLines, /^W/), ...pick(textLines, /^E/)],
        json: [
          ...pick(jsonLines, /"v":0/),
          ...pick(jsonLines, /"v":[1-9]/),
          // Errors: no "v", the error under "err".
          ...jsonLines.filter((l) => !l.includes('"v":')).slice(0, 3),
        ],
      },
      metrics: metricFamilies(metricsText),
    };
  } finally {
    await Promise.all(started.map((p) => p.stop(5_000)));
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const binDir = process.env.E2E_BIN_DIR;
  if (!binDir) {
    console.error("E2E_BIN_DIR is not set: E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)");
    process.exit(2);
  }
  const arg = (name: string) =>
    process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const upstreamBinary = path.join(binDir, "csi-provisioner-upstream");
  const binary = arg("binary") ?? upstreamBinary;
  const out = arg("out") ?? (binary === upstreamBinary ? FIXTURE : "-");
  const result = await capture(binary, binDir, (line) => console.error(`[capture] ${line}`));
  const body = `${JSON.stringify(result, null, 2)}\n`;
  if (out === "-") process.stdout.write(body);
  else {
    writeFileSync(out, body);
    console.error(`[capture] wrote ${out}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
