/**
 * kubectl against the test API server (what the dev mode offers a driver author): discovery,
 * client-side apply, table output, JSON output, describe with events, watch and delete.
 * Uses `$KUBECTL` or /usr/bin/kubectl; skipped with a message when neither exists.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import {
  type ApiServer,
  namespacesResource,
  startApiServer,
} from "../../../src/dev/apiserver/mod.ts";
import type { KubeList, KubeObject } from "../../../src/kube/objects.ts";
import { resources } from "../../../src/kube/resources.ts";
import { call, pv, within } from "./support.ts";

const kubectl = process.env.KUBECTL ?? "/usr/bin/kubectl";
const missing = existsSync(kubectl)
  ? false
  : `kubectl not found at ${kubectl} (set KUBECTL to run this test)`;

const claimYaml = (labels = "") => `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: demo${labels}
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
  storageClassName: fast
`;

describe("kubectl against startApiServer()", { skip: missing }, () => {
  let api: ApiServer;
  let dir: string;
  const children: ChildProcess[] = [];

  const run = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(
        kubectl,
        [`--kubeconfig=${join(dir, "config")}`, `--cache-dir=${join(dir, "cache")}`, ...args],
        { timeout: 60_000, env: { ...process.env, HOME: dir } },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
          resolve({ code, stdout: String(stdout), stderr: String(stderr) });
        },
      );
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "apiserver-kubectl-"));
    api = await startApiServer();
    await writeFile(join(dir, "config"), api.kubeconfig());
    await writeFile(join(dir, "pvc.yaml"), claimYaml());
    await writeFile(join(dir, "pvc-labelled.yaml"), claimYaml("\n  labels:\n    app: demo"));
  });
  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("creates a namespace (a protobuf body), and answers get all, cluster-info and auth can-i", async () => {
    const ns = await run("create", "namespace", "team-a");
    assert.equal(ns.code, 0, ns.stderr);
    const created = api.get(namespacesResource, "team-a") as { status?: { phase?: string } };
    assert.equal(created?.status?.phase, "Active");
    const all = await run("get", "all");
    assert.equal(all.code, 0, all.stderr);
    const info = await run("cluster-info");
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /Kubernetes control plane is running at/);
    const can = await run("auth", "can-i", "delete", "persistentvolumes");
    assert.equal(can.code, 0, can.stderr);
    assert.equal(can.stdout.trim(), "yes");
  });

  it("gets pv,pvc from an empty cluster", async () => {
    const r = await run("get", "pv,pvc");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /No resources found/);
  });

  it("creates a claim with kubectl apply (client-side) and updates it on a second apply", async () => {
    const created = await run("apply", "-f", join(dir, "pvc.yaml"));
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /persistentvolumeclaim\/demo created/);
    const stored = api.get(resources.persistentVolumeClaims, "demo");
    assert.ok(stored?.metadata.annotations?.["kubectl.kubernetes.io/last-applied-configuration"]);

    const same = await run("apply", "-f", join(dir, "pvc.yaml"));
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /persistentvolumeclaim\/demo unchanged/);

    const labelled = await run("apply", "-f", join(dir, "pvc-labelled.yaml"));
    assert.equal(labelled.code, 0, labelled.stderr);
    assert.match(labelled.stdout, /persistentvolumeclaim\/demo configured/);
    assert.deepEqual(api.get(resources.persistentVolumeClaims, "demo")?.metadata.labels, {
      app: "demo",
    });
  });

  it("prints pv,pvc as tables", async () => {
    const volume = pv("pvc-1234");
    volume.status = { phase: "Bound" };
    (volume.spec as Record<string, unknown>).claimRef = { namespace: "default", name: "demo" };
    (volume.spec as Record<string, unknown>).persistentVolumeReclaimPolicy = "Delete";
    api.put(volume);
    const r = await run("get", "pv,pvc");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /NAME\s+CAPACITY\s+ACCESS MODES\s+RECLAIM POLICY\s+STATUS\s+CLAIM/);
    assert.match(
      r.stdout,
      /persistentvolume\/pvc-1234\s+1Gi\s+RWO\s+Delete\s+Bound\s+default\/demo\s+fast/,
    );
    assert.match(r.stdout, /persistentvolumeclaim\/demo\s+Pending/);
  });

  it("prints a claim as JSON", async () => {
    const r = await run("get", "pvc", "-o", "json");
    assert.equal(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as KubeList<KubeObject>;
    assert.deepEqual(
      list.items.map((o) => o.metadata.name),
      ["demo"],
    );
    assert.equal(list.items[0]!.kind, "PersistentVolumeClaim");
  });

  it("describes a claim with its events", async () => {
    const claim = api.get(resources.persistentVolumeClaims, "demo")!;
    const ev = await call(api.url, "POST", "/apis/events.k8s.io/v1/namespaces/default/events", {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { name: "demo.1" },
      eventTime: "2026-01-01T00:00:00.000000Z",
      reportingController: "csi-provisioner",
      reportingInstance: "csi-provisioner-1",
      action: "Provisioning",
      reason: "Provisioning",
      note: 'External provisioner is provisioning volume for claim "default/demo"',
      type: "Normal",
      regarding: {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        namespace: "default",
        name: "demo",
        uid: claim.metadata.uid,
      },
    });
    assert.equal(ev.status, 201);
    const r = await run("describe", "pvc", "demo");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Name:\s+demo/);
    assert.match(r.stdout, /Status:\s+Pending/);
    assert.match(
      r.stdout,
      /Normal\s+Provisioning\s+.*csi-provisioner\s+External provisioner is provisioning volume/,
    );
  });

  it("follows changes with kubectl get -w", async () => {
    const child = spawn(
      kubectl,
      [
        `--kubeconfig=${join(dir, "config")}`,
        `--cache-dir=${join(dir, "cache")}`,
        "get",
        "pvc",
        "-w",
      ],
      { env: { ...process.env, HOME: dir }, stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(child);
    let out = "";
    let wake: (() => void) | undefined;
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      wake?.();
    });
    const until = (re: RegExp) =>
      within(
        (async () => {
          while (!re.test(out)) await new Promise<void>((r) => (wake = r));
        })(),
        30_000,
        `kubectl output matching ${re}`,
      );
    await until(/demo\s+Pending/);
    await within(api.waitForWatches(1), 30_000, "kubectl's watch");
    const r = await call(api.url, "POST", "/api/v1/namespaces/default/persistentvolumeclaims", {
      metadata: { name: "watched" },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "2Gi" } } },
    });
    assert.equal(r.status, 201);
    await until(/watched\s+Pending/);
    assert.equal(out.match(/^NAME\s/gm)?.length, 1, "one header line");
    child.kill("SIGTERM");
    await call(api.url, "DELETE", "/api/v1/namespaces/default/persistentvolumeclaims/watched");
  });

  it("deletes a claim", async () => {
    const r = await run("delete", "pvc", "demo");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /persistentvolumeclaim "demo" deleted/);
    assert.equal(api.get(resources.persistentVolumeClaims, "demo"), undefined);
  });

  it("creates a claim with kubectl create -f", async () => {
    const r = await run("create", "-f", join(dir, "pvc.yaml"));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /persistentvolumeclaim\/demo created/);
    const again = await run("create", "-f", join(dir, "pvc.yaml"));
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /AlreadyExists|already exists/);
  });
});
