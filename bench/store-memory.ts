/**
 * Memory per cached PVC and PV: the whole object as the API server returns it (managedFields
 * included) against the projection the informer caches (`src/kube/projections.ts`).
 *
 * Objects are built as JSON text and parsed one by one, as the client decodes them, so that
 * strings are not shared between objects the way literals in this file would be. Each variant
 * fills a `Store` (map, UID index) and the heap growth after a full GC is divided by the count.
 *
 *   node --expose-gc bench/store-memory.ts [count]
 *   bun bench/store-memory.ts [count]
 *   deno run -A --v8-flags=--expose-gc bench/store-memory.ts [count]
 *
 * Writes (merges its runtime's entry into) bench/results/store-memory.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { KubeObject, PersistentVolume, PersistentVolumeClaim } from "../src/kube/objects.ts";
import { projectPersistentVolume, projectPersistentVolumeClaim } from "../src/kube/projections.ts";
import { Store } from "../src/kube/store.ts";

const count = Number(process.argv[2] ?? 20_000);

type Runtime = "bun" | "deno" | "node";
const g = globalThis as {
  Bun?: { version: string; gc(force: boolean): void };
  Deno?: { version: { deno: string } };
  gc?: () => void;
};
const runtime: Runtime = g.Bun ? "bun" : g.Deno ? "deno" : "node";
const version = g.Bun?.version ?? g.Deno?.version.deno ?? process.versions.node;

function collect(): void {
  for (let i = 0; i < 4; i++) {
    if (g.Bun) g.Bun.gc(true);
    else if (g.gc) g.gc();
  }
}

function heapUsed(): number {
  collect();
  return process.memoryUsage().heapUsed;
}

function hex(i: number, salt: number, width: number): string {
  let x = (i * 2654435761 + salt * 40503) >>> 0;
  let s = "";
  while (s.length < width) {
    x = (x * 1103515245 + 12345) >>> 0;
    s += (x >>> 8).toString(16).padStart(6, "0");
  }
  return s.slice(0, width);
}

function uuid(i: number, salt: number): string {
  const h = hex(i, salt, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const driver = "hostpath.csi.k8s.io";
const time = "2026-01-01T00:00:00Z";

/** A bound PVC as a StatefulSet creates it and the PV controller binds it. */
function pvcJson(i: number): string {
  const uid = uuid(i, 1);
  const ns = `team-${i % 50}`;
  const pvc: PersistentVolumeClaim = {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: {
      annotations: {
        "pv.kubernetes.io/bind-completed": "yes",
        "pv.kubernetes.io/bound-by-controller": "yes",
        "volume.beta.kubernetes.io/storage-provisioner": driver,
        "volume.kubernetes.io/storage-provisioner": driver,
        "volume.kubernetes.io/selected-node": `node-${i % 100}`,
      },
      creationTimestamp: time,
      finalizers: ["kubernetes.io/pvc-protection"],
      labels: { app: `db-${i}`, "app.kubernetes.io/part-of": "bench" },
      managedFields: [
        {
          apiVersion: "v1",
          fieldsType: "FieldsV1",
          fieldsV1: {
            "f:metadata": {
              "f:labels": { ".": {}, "f:app": {}, "f:app.kubernetes.io/part-of": {} },
            },
            "f:spec": {
              "f:accessModes": {},
              "f:resources": { "f:requests": { ".": {}, "f:storage": {} } },
              "f:storageClassName": {},
              "f:volumeMode": {},
            },
          },
          manager: "kube-controller-manager",
          operation: "Update",
          time,
        },
        {
          apiVersion: "v1",
          fieldsType: "FieldsV1",
          fieldsV1: {
            "f:metadata": {
              "f:annotations": {
                ".": {},
                "f:pv.kubernetes.io/bind-completed": {},
                "f:pv.kubernetes.io/bound-by-controller": {},
                "f:volume.beta.kubernetes.io/storage-provisioner": {},
                "f:volume.kubernetes.io/storage-provisioner": {},
              },
            },
            "f:spec": { "f:volumeName": {} },
          },
          manager: "kube-controller-manager",
          operation: "Update",
          time,
        },
        {
          apiVersion: "v1",
          fieldsType: "FieldsV1",
          fieldsV1: {
            "f:status": {
              "f:accessModes": {},
              "f:capacity": { ".": {}, "f:storage": {} },
              "f:phase": {},
            },
          },
          manager: "kube-controller-manager",
          operation: "Update",
          subresource: "status",
          time,
        },
      ],
      name: `data-db-${i}`,
      namespace: ns,
      resourceVersion: String(100_000 + i),
      uid,
    },
    spec: {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: "10Gi" } },
      storageClassName: "csi-hostpath-sc",
      volumeMode: "Filesystem",
      volumeName: `pvc-${uid}`,
    },
    status: { accessModes: ["ReadWriteOnce"], capacity: { storage: "10Gi" }, phase: "Bound" },
  };
  return JSON.stringify(pvc);
}

/** A bound PV as the provisioner writes it. */
function pvJson(i: number): string {
  const claimUid = uuid(i, 1);
  const pv: PersistentVolume = {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: {
      annotations: {
        "pv.kubernetes.io/provisioned-by": driver,
        "volume.kubernetes.io/provisioner-deletion-secret-name": "",
        "volume.kubernetes.io/provisioner-deletion-secret-namespace": "",
      },
      creationTimestamp: time,
      finalizers: [
        "external-provisioner.volume.kubernetes.io/finalizer",
        "kubernetes.io/pv-protection",
      ],
      managedFields: [
        {
          apiVersion: "v1",
          fieldsType: "FieldsV1",
          fieldsV1: {
            "f:metadata": {
              "f:annotations": {
                ".": {},
                "f:pv.kubernetes.io/provisioned-by": {},
                "f:volume.kubernetes.io/provisioner-deletion-secret-name": {},
                "f:volume.kubernetes.io/provisioner-deletion-secret-namespace": {},
              },
              "f:finalizers": {
                ".": {},
                'v:"external-provisioner.volume.kubernetes.io/finalizer"': {},
              },
            },
            "f:spec": {
              "f:accessModes": {},
              "f:capacity": { ".": {}, "f:storage": {} },
              "f:claimRef": {
                ".": {},
                "f:apiVersion": {},
                "f:kind": {},
                "f:name": {},
                "f:namespace": {},
                "f:resourceVersion": {},
                "f:uid": {},
              },
              "f:csi": {
                ".": {},
                "f:driver": {},
                "f:fsType": {},
                "f:volumeAttributes": {
                  ".": {},
                  "f:storage.kubernetes.io/csiProvisionerIdentity": {},
                },
                "f:volumeHandle": {},
              },
              "f:nodeAffinity": { ".": {}, "f:required": {} },
              "f:persistentVolumeReclaimPolicy": {},
              "f:storageClassName": {},
              "f:volumeMode": {},
            },
          },
          manager: "csi-provisioner",
          operation: "Update",
          time,
        },
        {
          apiVersion: "v1",
          fieldsType: "FieldsV1",
          fieldsV1: { "f:status": { "f:phase": {} } },
          manager: "kube-controller-manager",
          operation: "Update",
          subresource: "status",
          time,
        },
      ],
      name: `pvc-${claimUid}`,
      resourceVersion: String(200_000 + i),
      uid: uuid(i, 2),
    },
    spec: {
      accessModes: ["ReadWriteOnce"],
      capacity: { storage: "10Gi" },
      claimRef: {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        name: `data-db-${i}`,
        namespace: `team-${i % 50}`,
        resourceVersion: String(100_000 + i),
        uid: claimUid,
      },
      csi: {
        driver,
        fsType: "ext4",
        volumeAttributes: {
          "storage.kubernetes.io/csiProvisionerIdentity": `1767225600000-1234-${driver}`,
        },
        volumeHandle: uuid(i, 3),
      },
      nodeAffinity: {
        required: {
          nodeSelectorTerms: [
            {
              matchExpressions: [
                { key: "topology.hostpath.csi/node", operator: "In", values: [`node-${i % 100}`] },
              ],
            },
          ],
        },
      },
      persistentVolumeReclaimPolicy: "Delete",
      storageClassName: "csi-hostpath-sc",
      volumeMode: "Filesystem",
    },
    status: { lastPhaseTransitionTime: time, phase: "Bound" },
  };
  return JSON.stringify(pv);
}

interface Measured {
  /** Heap bytes per object with the whole object cached. */
  fullBytesPerObject: number;
  /** Heap bytes per object with the projection cached. */
  projectedBytesPerObject: number;
  /** 1 − projected / full. */
  saving: number;
  /** Size of one object's JSON, for scale. */
  jsonBytes: number;
}

/** Heap growth per object of a store filled from `texts`; the store is gone on return. */
function bytesPerObject<T extends KubeObject>(
  texts: readonly string[],
  project: ((o: T) => T) | undefined,
): number {
  const base = heapUsed();
  const store = new Store<T, T>({ project });
  for (const t of texts) store.upsert(JSON.parse(t) as T);
  const grown = heapUsed() - base;
  if (store.size !== texts.length) throw new Error("store size mismatch");
  return grown / texts.length;
}

function measure<T extends KubeObject>(
  make: (i: number) => string,
  project: (o: T) => T,
): Measured {
  const texts = Array.from({ length: count }, (_, i) => make(i));
  const fullBytes = bytesPerObject(texts, undefined);
  const projectedBytes = bytesPerObject(texts, project);
  return {
    fullBytesPerObject: Math.round(fullBytes),
    projectedBytesPerObject: Math.round(projectedBytes),
    saving: Math.round((1 - projectedBytes / fullBytes) * 1000) / 1000,
    jsonBytes: texts[0]!.length,
  };
}

if (!g.Bun && !g.gc) {
  console.error(
    "No GC hook: run with `node --expose-gc`, `deno run --v8-flags=--expose-gc`, or bun",
  );
  process.exit(2);
}

const result = {
  date: new Date().toISOString(),
  runtime,
  version,
  objects: count,
  pvc: measure<PersistentVolumeClaim>(pvcJson, projectPersistentVolumeClaim),
  pv: measure<PersistentVolume>(pvJson, projectPersistentVolume),
};
console.log(JSON.stringify(result, null, 2));

const file = join(dirname(fileURLToPath(import.meta.url)), "results", "store-memory.json");
mkdirSync(dirname(file), { recursive: true });
let all: Record<string, unknown> = {};
try {
  all = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
} catch {
  // first run
}
all[runtime] = result;
writeFileSync(file, `${JSON.stringify(all, null, 2)}\n`);
