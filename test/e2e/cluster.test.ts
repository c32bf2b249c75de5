/**
 * Smoke test of the end-to-end control plane (test/e2e/cluster.ts).
 *
 *   export E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)
 *   node_modules/.bin/node --test test/e2e/cluster.test.ts
 *   node_modules/.bin/bun test --timeout 180000 ./test/e2e/cluster.test.ts   # Bun's default is 5 s
 *   node_modules/.bin/deno test -A test/e2e/cluster.test.ts
 *
 * Skipped when E2E_BIN_DIR is not set. E2E_VERBOSE=1 prints every line the components log.
 */

import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as http2 from "node:http2";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { eventually } from "../support/wait.ts";
import { type Cluster, canConnect, startCluster } from "./cluster.ts";
import { e2eBinDir as binDir, skipWithoutBinDir as skip } from "./support.ts";

const NS = "e2e-smoke";
/** Per test and hook; Bun's runner defaults to 5 s. */
const TEST_TIMEOUT_MS = 180_000;

/** PIDs of the live (non-zombie) children of a process, from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid ...: comm may hold spaces, so parse after the last ")".
      const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(ppid) === pid && state !== "Z") out.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/** Calls /csi.v1.Identity/Probe (an empty message) over HTTP/2; resolves to the grpc-status. */
function grpcProbe(socketPath: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const session = http2.connect("http://localhost", {
      createConnection: () => net.connect(socketPath),
    });
    session.on("error", reject);
    const stream = session.request({
      ":method": "POST",
      ":path": "/csi.v1.Identity/Probe",
      "content-type": "application/grpc",
      te: "trailers",
    });
    let status: string | undefined;
    stream.on("response", (headers) => {
      // A trailers-only response carries grpc-status in the headers.
      if (headers["grpc-status"] !== undefined) status = String(headers["grpc-status"]);
    });
    stream.on("trailers", (trailers) => {
      status = String(trailers["grpc-status"]);
    });
    stream.on("data", () => {});
    stream.on("error", reject);
    stream.on("close", () => {
      session.close();
      resolve(status);
    });
    // gRPC frame: not compressed, length 0 (an empty ProbeRequest).
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("startCluster()", () => {
  let cluster: Cluster;

  before(
    async () => {
      if (!binDir) return;
      cluster = await startCluster({
        binDir: binDir!,
        log: process.env.E2E_VERBOSE ? (line) => console.error(line) : undefined,
      });
    },
    { timeout: TEST_TIMEOUT_MS },
  );

  after(
    async () => {
      await cluster?.stop();
    },
    { timeout: TEST_TIMEOUT_MS },
  );

  it("serves the pinned Kubernetes version with the admin certificate", {
    skip,
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const r = await cluster.request("GET", "/version");
    assert.equal(r.status, 200, r.body);
    assert.match(r.json<{ gitVersion: string }>().gitVersion, /^v1\.36\./);
    const kubectl = await cluster.kubectl(["get", "--raw", "/readyz"]);
    assert.equal(kubectl.trim(), "ok");
  });

  it("binds a PersistentVolume made by hand to a claim and releases it (kube-controller-manager runs)", {
    skip,
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const created = async (method: string, p: string, body: unknown) => {
      const r = await cluster.request(method, p, body);
      assert.ok(
        r.status === 201 || r.status === 409,
        `${method} ${p}: HTTP ${r.status}: ${r.body}`,
      );
    };
    await created("POST", "/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: NS },
    });
    await created("POST", "/apis/storage.k8s.io/v1/storageclasses", {
      apiVersion: "storage.k8s.io/v1",
      kind: "StorageClass",
      metadata: { name: "e2e-manual" },
      provisioner: "kubernetes.io/no-provisioner",
      volumeBindingMode: "Immediate",
      reclaimPolicy: "Retain",
    });
    await created("POST", "/api/v1/persistentvolumes", {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: "e2e-manual-pv" },
      spec: {
        storageClassName: "e2e-manual",
        capacity: { storage: "1Gi" },
        accessModes: ["ReadWriteOnce"],
        persistentVolumeReclaimPolicy: "Retain",
        csi: { driver: cluster.driverName, volumeHandle: "e2e-manual-volume" },
      },
    });
    await created("POST", `/api/v1/namespaces/${NS}/persistentvolumeclaims`, {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "claim" },
      spec: {
        storageClassName: "e2e-manual",
        accessModes: ["ReadWriteOnce"],
        resources: { requests: { storage: "1Gi" } },
      },
    });

    type Claim = { spec: { volumeName?: string }; status: { phase?: string } };
    const claim = await eventually("the claim to be Bound", async () => {
      const c = (
        await cluster.request("GET", `/api/v1/namespaces/${NS}/persistentvolumeclaims/claim`)
      ).json<Claim>();
      return c.status.phase === "Bound" ? c : undefined;
    });
    assert.equal(claim.spec.volumeName, "e2e-manual-pv");

    type Volume = {
      spec: { claimRef?: { namespace: string; name: string } };
      status: { phase?: string };
    };
    const pv = (
      await cluster.request("GET", "/api/v1/persistentvolumes/e2e-manual-pv")
    ).json<Volume>();
    assert.equal(pv.status.phase, "Bound");
    assert.equal(pv.spec.claimRef?.namespace, NS);
    assert.equal(pv.spec.claimRef?.name, "claim");

    // The claim carries kubernetes.io/pvc-protection: it goes away only if the
    // persistentvolumeclaim-protection controller runs.
    const del = await cluster.request(
      "DELETE",
      `/api/v1/namespaces/${NS}/persistentvolumeclaims/claim`,
    );
    assert.equal(del.status, 200, del.body);
    await eventually("the claim to be gone", async () => {
      const r = await cluster.request(
        "GET",
        `/api/v1/namespaces/${NS}/persistentvolumeclaims/claim`,
      );
      return r.status === 404 ? true : undefined;
    });
    await eventually("the volume to be Released", async () => {
      const v = (
        await cluster.request("GET", "/api/v1/persistentvolumes/e2e-manual-pv")
      ).json<Volume>();
      return v.status.phase === "Released" ? true : undefined;
    });
    // Likewise kubernetes.io/pv-protection and the persistentvolume-protection controller.
    const delPv = await cluster.request("DELETE", "/api/v1/persistentvolumes/e2e-manual-pv");
    assert.equal(delPv.status, 200, delPv.body);
    await eventually("the volume to be gone", async () => {
      const r = await cluster.request("GET", "/api/v1/persistentvolumes/e2e-manual-pv");
      return r.status === 404 ? true : undefined;
    });
  });

  it("serves the CSI driver on a unix socket and logs its calls", {
    skip,
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    assert.ok(existsSync(cluster.csiSocket), `${cluster.csiSocket} is missing`);
    assert.equal(await canConnect(cluster.csiSocket), true);
    assert.equal(await grpcProbe(cluster.csiSocket), "0");
    const call = await eventually("the Probe call in the driver's log", async () =>
      cluster.csiCalls().find((c) => c.Method === "/csi.v1.Identity/Probe"),
    );
    assert.equal(call.Error, "");
  });

  it("kubeconfigFor() gives a ServiceAccount token that RBAC restricts", {
    skip,
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const sa = { namespace: NS, name: "restricted" };
    const kubeconfig = await cluster.kubeconfigFor(sa);
    const text = readFileSync(kubeconfig, "utf8");
    assert.match(text, /certificate-authority-data: /);
    const token = /token: (\S+)/.exec(text)?.[1];
    assert.ok(token, "kubeconfig has no token");

    const denied = await cluster.request("GET", "/api/v1/persistentvolumes", undefined, { token });
    assert.equal(denied.status, 403, denied.body);

    const rbac = "/apis/rbac.authorization.k8s.io/v1";
    const role = await cluster.request("POST", `${rbac}/clusterroles`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: "e2e-pv-reader" },
      rules: [{ apiGroups: [""], resources: ["persistentvolumes"], verbs: ["list"] }],
    });
    assert.equal(role.status, 201, role.body);
    const binding = await cluster.request("POST", `${rbac}/clusterrolebindings`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: "e2e-pv-reader" },
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        name: "e2e-pv-reader",
      },
      subjects: [{ kind: "ServiceAccount", namespace: sa.namespace, name: sa.name }],
    });
    assert.equal(binding.status, 201, binding.body);
    await eventually("the binding to allow listing volumes", async () => {
      const r = await cluster.request("GET", "/api/v1/persistentvolumes", undefined, { token });
      return r.status === 200 ? true : undefined;
    });
    // kubectl accepts the kubeconfig as written.
    const out = await cluster.kubectl([
      "--kubeconfig",
      kubeconfig,
      "auth",
      "can-i",
      "list",
      "persistentvolumes",
    ]);
    assert.equal(out.trim(), "yes");
  });

  it("restarts kube-apiserver on the same port, gracefully and after a crash, keeping the objects", {
    skip,
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const before = cluster.apiServerUrl;
    await cluster.restartApiServer();
    assert.equal((await cluster.request("GET", "/readyz")).status, 200);
    await cluster.restartApiServer({ crash: true });
    assert.equal(cluster.apiServerUrl, before);
    const ready = await cluster.request("GET", "/readyz");
    assert.equal(ready.status, 200, ready.body);
    const ns = await cluster.request("GET", `/api/v1/namespaces/${NS}`);
    assert.equal(ns.status, 200, ns.body);
  });

  it("stop() ends every child process and removes its directory", {
    skip,
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const pids = cluster.pids();
    assert.equal(
      pids.length,
      4,
      `expected etcd, kube-apiserver, kube-controller-manager, csi-driver; got ${pids}`,
    );
    await cluster.stop();
    for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} still alive`);
    assert.deepEqual(childrenOf(process.pid), []);
    assert.deepEqual(cluster.pids(), []);
    assert.equal(existsSync(cluster.dir), false, `${cluster.dir} still exists`);
  });
});
