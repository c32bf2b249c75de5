/**
 * CSI migration end to end: claims of in-tree StorageClasses, handed over by the real
 * kube-controller-manager v1.36 (it sets `volume.kubernetes.io/storage-provisioner` to the CSI
 * driver and `pv.kubernetes.io/migrated-to`), provisioned and deleted by a sidecar of each of the
 * seven migrated drivers — first upstream's `csi-provisioner`, then ours, on the same drivers and
 * the same classes — and the PVs, events and DeleteVolume handles compared field by field.
 *
 *   export E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)
 *   E2E_PROVISIONER=/path/to/csi-provisioner node_modules/.bin/node --test test/e2e/migration.test.ts
 *
 * Drivers: `hostpathplugin` started as `ebs.csi.aws.com`, `cinder.csi.openstack.org` and
 * `pxd.portworx.com` (their in-tree forms take any volume id); the project's fake CSI driver, in
 * this process, as `pd.csi.storage.gke.io`, `disk.csi.azure.com`, `file.csi.azure.com` and
 * `csi.vsphere.vmware.com`, answering with the cloud's handle shapes, attributes and topology
 * keys (a hostpath UUID has no GCE PD, Azure disk or Azure file form, and the vSphere form needs
 * the driver's volume path). One cluster; the seven drivers provision in parallel.
 *
 * Skipped when E2E_BIN_DIR is not set. E2E_VERBOSE=1 prints every line the processes log.
 */

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import type { CoreEvent, PersistentVolume, StorageClass } from "../../src/kube/objects.ts";
import { type FakeDriver, startFakeDriver } from "../support/fake-driver.ts";
import { editVolume } from "../support/table.ts";
import {
  type Cluster,
  type CsiCall,
  canConnect,
  listDriverVolumes,
  startCluster,
} from "./cluster.ts";
import { type Flavour, type Sidecar, startSidecar } from "./peers.ts";
import {
  e2eBinDir as binDir,
  eventually,
  followCsiCalls,
  type Kube,
  killAllStarted,
  kube,
  verboseLog as log,
  type RunningProcess,
  skipWithoutBinDir as skip,
  startProcess,
  volumePath,
} from "./support.ts";

const NODE = "e2e-node";
const TEST_TIMEOUT_MS = 300_000;
const ZONE = "topology.kubernetes.io/zone";

/** One migrated plugin under test: its driver, its in-tree class and what its driver answers. */
interface Plugin {
  key: string;
  driverName: string;
  inTreeName: string;
  parameters: Record<string, string>;
  allowedTopologies?: StorageClass["allowedTopologies"];
  /** hostpathplugin, or the fake driver with these answers. */
  driver:
    | { kind: "hostpath" }
    | {
        kind: "fake";
        topology?: Record<string, string>;
        handle: (name: string) => string;
        context?: (name: string) => Record<string, string>;
      };
}

const PLUGINS: Plugin[] = [
  {
    key: "ebs",
    driverName: "ebs.csi.aws.com",
    inTreeName: "kubernetes.io/aws-ebs",
    parameters: {
      type: "io1",
      iopsPerGB: "10",
      encrypted: "true",
      fsType: "xfs",
      zone: "us-east-1a",
    },
    driver: { kind: "hostpath" },
  },
  {
    key: "cinder",
    driverName: "cinder.csi.openstack.org",
    inTreeName: "kubernetes.io/cinder",
    parameters: { type: "ssd", availability: "nova", fsType: "ext4" },
    allowedTopologies: [{ matchLabelExpressions: [{ key: ZONE, values: ["nova"] }] }],
    driver: { kind: "hostpath" },
  },
  {
    key: "px",
    driverName: "pxd.portworx.com",
    inTreeName: "kubernetes.io/portworx-volume",
    parameters: {
      repl: "2",
      io_profile: "db",
      "openstorage.io/auth-secret-name": "px-auth",
      "openstorage.io/auth-secret-namespace": "default",
    },
    driver: { kind: "hostpath" },
  },
  {
    key: "gce",
    driverName: "pd.csi.storage.gke.io",
    inTreeName: "kubernetes.io/gce-pd",
    parameters: {
      type: "pd-ssd",
      "replication-type": "none",
      fstype: "ext4",
      zone: "us-central1-a",
    },
    driver: {
      kind: "fake",
      topology: { "topology.gke.io/zone": "us-central1-b" },
      handle: (name) => `projects/e2e-project/zones/us-central1-a/disks/${name}`,
    },
  },
  {
    key: "azdisk",
    driverName: "disk.csi.azure.com",
    inTreeName: "kubernetes.io/azure-disk",
    parameters: {
      skuName: "Premium_LRS",
      kind: "Managed",
      cachingMode: "ReadOnly",
      zones: "eastus-1",
    },
    driver: {
      kind: "fake",
      topology: { "topology.disk.csi.azure.com/zone": "eastus-2" },
      handle: (name) =>
        `/subscriptions/e2e-sub/resourceGroups/e2e-rg/providers/Microsoft.Compute/disks/${name}`,
      context: () => ({ cachingMode: "ReadOnly", skuName: "Premium_LRS" }),
    },
  },
  {
    key: "azfile",
    driverName: "file.csi.azure.com",
    inTreeName: "kubernetes.io/azure-file",
    parameters: { skuName: "Standard_LRS", location: "eastus" },
    driver: { kind: "fake", handle: (name) => `e2e-rg#e2eaccount#${name}###default` },
  },
  {
    key: "vsphere",
    driverName: "csi.vsphere.vmware.com",
    inTreeName: "kubernetes.io/vsphere-volume",
    parameters: { datastore: "ds1", diskformat: "thin", storagePolicyName: "gold", fstype: "ext4" },
    allowedTopologies: [{ matchLabelExpressions: [{ key: ZONE, values: ["zone-a"] }] }],
    driver: {
      kind: "fake",
      topology: { "topology.csi.vmware.com/zone": "zone-b" },
      handle: (name) => `fcd-${name}`,
      context: (name) => ({
        initialvolumefilepath: `[ds1] kubevols/${name}.vmdk`,
        type: "vSphere CNS Block Volume",
      }),
    },
  },
];

/** The in-tree class of the bad-parameters case: zone next to allowed topologies. */
const BAD_CLASS = "ebs-bad";

interface Driver {
  plugin: Plugin;
  socket: string;
  stateDir?: string;
  fake?: FakeDriver;
}

/** What one flavour's run left behind, per plugin key. */
interface Outcome {
  pvs: Map<string, PersistentVolume>;
  deletedHandles: Map<string, string[]>;
  badEvent: string;
  /** The label sets of the sidecar's CreateVolume and DeleteVolume series, per plugin key. */
  callSeries: Map<string, string[]>;
}

/** The label sets of `csi_sidecar_operations_seconds` for CreateVolume and DeleteVolume. */
async function volumeCallSeries(sidecar: Sidecar): Promise<string[]> {
  const text = await (await fetch(`http://${sidecar.httpEndpoint}/metrics`)).text();
  const out = new Set<string>();
  for (const m of text.matchAll(/^csi_sidecar_operations_seconds_count\{([^}]*)\}/gm)) {
    if (/method_name="[^"]*\/(Create|Delete)Volume"/.test(m[1]!)) out.add(m[1]!);
  }
  return [...out].sort();
}

let cluster: Cluster;
let k: Kube;
const drivers = new Map<string, Driver>();
const hostpaths: RunningProcess[] = [];
const outcomes = new Map<Flavour, Outcome>();

function inTreeClass(
  name: string,
  provisioner: string,
  parameters: Record<string, string>,
  allowedTopologies?: StorageClass["allowedTopologies"],
): StorageClass {
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: { name },
    provisioner,
    parameters,
    reclaimPolicy: "Delete",
    volumeBindingMode: "Immediate",
    ...(allowedTopologies ? { allowedTopologies } : {}),
  };
}

async function startHostpath(name: string, driverName: string, extra: string[] = []) {
  const socket = path.join(cluster.dir, `${name}.sock`);
  const stateDir = path.join(cluster.dir, `${name}-state`);
  mkdirSync(stateDir, { recursive: true });
  const p = startProcess({
    name: `hostpath-${name}`,
    bin: path.join(binDir!, "hostpathplugin"),
    args: [
      `--endpoint=unix://${socket}`,
      `--nodeid=${NODE}`,
      `--drivername=${driverName}`,
      `--statedir=${stateDir}`,
      "--enable-topology=false",
      "-v=5",
      ...extra,
    ],
    logFile: path.join(cluster.dir, `hostpath-${name}.log`),
    log,
  });
  hostpaths.push(p);
  await eventually(`hostpathplugin ${driverName} to listen on ${socket}`, async () =>
    existsSync(socket) && (await canConnect(socket)) ? true : undefined,
  );
  return { socket, stateDir };
}

/** Runs the seven plugins' claims and the bad class's claim through `flavour`'s sidecars. */
async function runFlavour(flavour: Flavour): Promise<Outcome> {
  const ns = `mig-${flavour}`;
  await k.ensureNamespace(ns);
  // One at a time: the sidecars of a flavour share a ServiceAccount and its kubeconfig file.
  const sidecars: Sidecar[] = [];
  for (const d of drivers.values()) {
    sidecars.push(
      await startSidecar(cluster, {
        flavour,
        binDir: binDir!,
        csiSocket: d.socket,
        name: `${flavour}-${d.plugin.key}`,
        args: ["--retry-interval-max=2s", "--timeout=30s"],
        log,
      }),
    );
  }
  const fakeDeletesBefore = new Map(
    [...drivers.values()].map((d) => [d.plugin.key, d.fake?.callsTo("deleteVolume").length ?? 0]),
  );
  try {
    for (const p of PLUGINS) await k.createClaim(ns, p.key, p.key);
    await k.createClaim(ns, "bad", BAD_CLASS);
    const bound = await k.waitBound(
      ns,
      PLUGINS.map((p) => p.key),
    );
    const pvs = new Map<string, PersistentVolume>();
    for (const p of PLUGINS) {
      const claim = bound.get(p.key)!;
      // The binder finishes with the PV: wait until it is Bound too.
      const pv = await eventually(`PV of ${ns}/${p.key} to be Bound`, async () => {
        const v = await k.volume(claim.spec.volumeName!);
        return v?.status?.phase === "Bound" ? v : undefined;
      });
      pvs.set(p.key, pv);
    }
    const bad: CoreEvent = await eventually(`the ProvisioningFailed event of ${ns}/bad`, async () =>
      (await k.eventsOf(ns, "bad")).find((e) => e.reason === "ProvisioningFailed"),
    );
    await k.call("DELETE", `/api/v1/namespaces/${ns}/persistentvolumeclaims/bad`);

    // Deletion: every claim goes; its PV is released, its volume deleted, the PV removed.
    for (const p of PLUGINS) {
      await k.call("DELETE", `/api/v1/namespaces/${ns}/persistentvolumeclaims/${p.key}`);
    }
    for (const [key, pv] of pvs) {
      await k.waitGone(`PV ${pv.metadata.name} of ${ns}/${key}`, volumePath(pv.metadata.name));
    }
    const deletedHandles = new Map<string, string[]>();
    for (const d of drivers.values()) {
      if (d.fake) {
        const calls = d.fake.callsTo("deleteVolume").slice(fakeDeletesBefore.get(d.plugin.key));
        deletedHandles.set(
          d.plugin.key,
          calls.map((c) => c.request.volumeId),
        );
      } else {
        const left = await listDriverVolumes(d.socket, d.stateDir);
        assert.deepEqual(left, [], `${d.plugin.driverName} keeps no volume after ${flavour}'s run`);
      }
    }
    const callSeries = new Map<string, string[]>();
    for (const [i, d] of [...drivers.values()].entries()) {
      callSeries.set(d.plugin.key, await volumeCallSeries(sidecars[i]!));
    }
    return { pvs, deletedHandles, badEvent: bad.message, callSeries };
  } finally {
    await Promise.all(sidecars.map((s) => s.stop()));
  }
}

/** A PV with what differs between any two runs (names, UIDs, times, versions) replaced. */
function normalise(pv: PersistentVolume, ns: string): unknown {
  const name = pv.metadata.name!;
  const uid = pv.spec.claimRef?.uid ?? "";
  let text = JSON.stringify(pv)
    .replaceAll(name, "<pv>")
    .replaceAll(uid, "<claim-uid>")
    .replaceAll(`"${ns}"`, '"<ns>"');
  text = text.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "<uuid>");
  const out = JSON.parse(text) as PersistentVolume;
  const {
    uid: _u,
    resourceVersion: _r,
    creationTimestamp: _c,
    managedFields: _m,
    ...meta
  } = out.metadata as PersistentVolume["metadata"] & { managedFields?: unknown };
  out.metadata = meta;
  if (out.spec.claimRef) delete out.spec.claimRef.resourceVersion;
  if (out.status) delete out.status.lastPhaseTransitionTime;
  return out;
}

describe("CSI migration (kube-controller-manager v1.36, upstream vs ours)", { skip }, () => {
  before(
    async () => {
      cluster = await startCluster({
        binDir: binDir!,
        driver: "hostpath",
        driverName: "hostpath.csi.k8s.io",
        nodeName: NODE,
        log,
      });
      k = kube((m, p, b, o) => cluster.request(m, p, b, o));
      for (const p of PLUGINS) {
        let d: Driver;
        if (p.driver.kind === "hostpath") {
          d = { plugin: p, ...(await startHostpath(p.key, p.driverName)) };
        } else {
          const spec = p.driver;
          const socket = path.join(cluster.dir, `${p.key}.sock`);
          const fake = await startFakeDriver({
            name: p.driverName,
            socketPath: socket,
            nodeId: NODE,
            ...(spec.topology ? { topology: spec.topology } : {}),
          });
          fake.on(
            "createVolume",
            editVolume((v) => {
              const name = v.volumeId.replace(/^id-/, "");
              v.volumeId = spec.handle(name);
              v.volumeContext = spec.context?.(name) ?? {};
            }),
          );
          d = { plugin: p, socket, fake };
        }
        drivers.set(p.key, d);
        await k.ensure(
          "/apis/storage.k8s.io/v1/storageclasses",
          inTreeClass(p.key, p.inTreeName, p.parameters, p.allowedTopologies),
        );
      }
      await k.ensure(
        "/apis/storage.k8s.io/v1/storageclasses",
        inTreeClass(BAD_CLASS, "kubernetes.io/aws-ebs", { zone: "us-east-1a" }, [
          { matchLabelExpressions: [{ key: ZONE, values: ["us-east-1b"] }] },
        ]),
      );
      await k.ensure("/api/v1/namespaces/default/secrets", {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "px-auth", namespace: "default" },
        stringData: { token: "px-token" },
      });
    },
    { timeout: TEST_TIMEOUT_MS },
  );

  after(async () => {
    await Promise.all([...drivers.values()].map((d) => d.fake?.close()));
    await Promise.all(hostpaths.map((p) => p.stop()));
    await cluster?.stop();
    await killAllStarted();
  });

  it("upstream's sidecar: kube-controller-manager hands the claims over, in-tree PVs written", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    // Upstream's RBAC ships the secrets rule commented out; portworx's class names a secret.
    await k.ensure("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: "e2e-upstream-secrets" },
      rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["get", "list"] }],
    });
    await k.ensure("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: "e2e-upstream-secrets" },
      subjects: [
        { kind: "ServiceAccount", name: "csi-provisioner-upstream", namespace: "default" },
      ],
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        name: "e2e-upstream-secrets",
      },
    });
    outcomes.set("upstream", await runFlavour("upstream"));
  });

  it("ours: the same claims give the same PVs, events and DeleteVolume handles", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const ours = await runFlavour("ours");
    outcomes.set("ours", ours);
    const theirs = outcomes.get("upstream");
    assert.ok(theirs, "upstream's run must have succeeded first");
    for (const p of PLUGINS) {
      const a = ours.pvs.get(p.key)!;
      const b: PersistentVolume = theirs.pvs.get(p.key)!;
      assert.equal(a.spec.csi, undefined, `${p.key}: the PV has no CSI source`);
      assert.equal(
        a.metadata.annotations?.["pv.kubernetes.io/provisioned-by"],
        p.inTreeName,
        `${p.key}: provisioned-by names the in-tree plugin`,
      );
      assert.equal(
        a.metadata.annotations?.["pv.kubernetes.io/migrated-to"],
        p.driverName,
        `${p.key}: kube-controller-manager marked the PV migrated`,
      );
      assert.deepEqual(
        normalise(a, "mig-ours"),
        normalise(b, "mig-upstream"),
        `${p.key}: our PV is upstream's, field by field`,
      );
      // Unique handles: upstream sometimes calls DeleteVolume twice for one PV (the update of
      // the PV after its volume was deleted races with the PV's removal).
      const handles = (o: Outcome, pv: PersistentVolume) => [
        ...new Set(
          (o.deletedHandles.get(p.key) ?? []).map((h) => h.replaceAll(pv.metadata.name!, "<pv>")),
        ),
      ];
      assert.deepEqual(
        ours.callSeries.get(p.key),
        theirs.callSeries.get(p.key),
        `${p.key}: csi_sidecar_operations_seconds has upstream's labels (migrated="true")`,
      );
      assert.ok(
        ours.callSeries.get(p.key)?.some((l) => l.includes('migrated="true"')),
        `${p.key}: migrated calls are labelled`,
      );
      assert.deepEqual(
        handles(ours, a),
        handles(theirs, b),
        `${p.key}: DeleteVolume got the same handle`,
      );
    }
    assert.equal(ours.badEvent, theirs.badEvent, "the bad class's event text is upstream's");
    assert.equal(
      ours.badEvent,
      "failed to translate storage class: cannot simultaneously set allowed topologies and zone/zones parameters",
    );
  });

  it("a volume with no in-tree form: upstream leaks it and retries; ours deletes it and says why", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    // hostpathplugin as ebs.csi.aws.com with topology on: its volumes carry
    // topology.hostpath.csi/node, which has no zone, so aws-ebs's in-tree PV cannot be built.
    const topo = await startHostpath("ebs-topo", "ebs.csi.aws.com", ["--enable-topology=true"]);
    await k.ensure(
      "/apis/storage.k8s.io/v1/storageclasses",
      inTreeClass("ebs-topo", "kubernetes.io/aws-ebs", { type: "gp3" }, [
        { matchLabelExpressions: [{ key: "topology.hostpath.csi/node", values: [NODE] }] },
      ]),
    );
    const volumesNamed = async (name: string) =>
      (await listDriverVolumes(topo.socket, topo.stateDir)).filter((v) => v.name === name);
    const run = async (flavour: Flavour) => {
      const ns = `mig-topo-${flavour}`;
      await k.ensureNamespace(ns);
      const sidecar = await startSidecar(cluster, {
        flavour,
        binDir: binDir!,
        csiSocket: topo.socket,
        name: `${flavour}-ebs-topo`,
        args: ["--retry-interval-max=2s"],
        log,
      });
      try {
        const claim = await k.createClaim(ns, "topo", "ebs-topo");
        const pvName = `pvc-${claim.metadata.uid}`;
        const event = await eventually(`the ProvisioningFailed event of ${ns}/topo`, async () =>
          (await k.eventsOf(ns, "topo")).find((e) => e.reason === "ProvisioningFailed"),
        );
        assert.equal(await k.volume(pvName), undefined, `${flavour} writes no PV`);
        return { sidecar, claim, pvName, event, ns };
      } catch (err) {
        await sidecar.stop();
        throw err;
      }
    };

    // Upstream: the translation error in the event, then it cannot delete what it created.
    const up = await run("upstream");
    assert.match(up.event.message, /^failed to translate topology\. PV:.*no zones specified$/s);
    await up.sidecar.process.waitForLine(/failed to delete partly provisioned PV: invalid CSI PV/);
    await up.sidecar.stop();
    await k.call("DELETE", `/api/v1/namespaces/${up.ns}/persistentvolumeclaims/topo`);
    assert.equal(
      (await volumesNamed(up.pvName)).length,
      1,
      "upstream leaves its volume behind once its claim is gone",
    );

    // Ours: the volume is deleted and the event gives the reason.
    const calls = followCsiCalls(path.join(cluster.dir, "hostpath-ebs-topo.log"));
    const ours = await run("ours");
    try {
      assert.match(
        ours.event.message,
        new RegExp(
          `^failed to translate topology of PersistentVolume ${ours.pvName}: Failed to handle region topology\\. error: no zones specified; volume [0-9a-f-]{36} was deleted$`,
        ),
      );
      const volumeId = /; volume (\S+) was deleted$/.exec(ours.event.message)![1];
      const seen: CsiCall[] = [];
      await eventually(`DeleteVolume ${volumeId} in the driver's log`, () => {
        seen.push(...calls.poll());
        const deleted = seen.some(
          (c) => c.Method.endsWith("/DeleteVolume") && c.Request.volume_id === volumeId && !c.Error,
        );
        return deleted ? true : undefined;
      });
      await k.call("DELETE", `/api/v1/namespaces/${ours.ns}/persistentvolumeclaims/topo`);
      await eventually(`no volume ${ours.pvName} on the driver`, async () =>
        (await volumesNamed(ours.pvName)).length === 0 ? true : undefined,
      );
    } finally {
      await ours.sidecar.stop();
    }
  });
});
