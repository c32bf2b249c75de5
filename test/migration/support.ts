/** Builders and assertions shared by the CSI migration table tests. */
import assert from "node:assert/strict";
import type {
  CSIPersistentVolumeSource,
  NodeSelectorTerm,
  PersistentVolume,
  StorageClass,
  TopologySelectorTerm,
} from "../../src/kube/objects.ts";
import type { Translated } from "../../src/migration/common.ts";

export function storageClass(
  provisioner: string,
  parameters?: Record<string, string>,
  allowedTopologies?: TopologySelectorTerm[],
): StorageClass {
  const sc: StorageClass = {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: { name: "in-tree", uid: "sc-uid" },
    provisioner,
    reclaimPolicy: "Delete",
  };
  if (parameters) sc.parameters = parameters;
  if (allowedTopologies) sc.allowedTopologies = allowedTopologies;
  return sc;
}

/** One allowed-topology term `key In values`. */
export function zoneTerm(key: string, ...values: string[]): TopologySelectorTerm {
  return { matchLabelExpressions: [{ key, values }] };
}

/** One node-selector term of `key In values` pairs. */
export function nodeTerm(...pairs: [string, string[]][]): NodeSelectorTerm {
  return { matchExpressions: pairs.map(([key, values]) => ({ key, operator: "In", values })) };
}

/** A PV as the provisioner builds it before translation back to in-tree. */
export function csiVolume(
  csi: CSIPersistentVolumeSource,
  opts: { terms?: NodeSelectorTerm[]; labels?: Record<string, string> } = {},
): PersistentVolume {
  const pv: PersistentVolume = {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: {
      name: "pvc-1",
      annotations: { "pv.kubernetes.io/provisioned-by": "in-tree" },
    },
    spec: {
      accessModes: ["ReadWriteOnce"],
      capacity: { storage: "1Gi" },
      claimRef: { kind: "PersistentVolumeClaim", namespace: "ns", name: "data", uid: "u1" },
      csi,
      persistentVolumeReclaimPolicy: "Delete",
      storageClassName: "in-tree",
    },
  };
  if (opts.terms) pv.spec.nodeAffinity = { required: { nodeSelectorTerms: opts.terms } };
  if (opts.labels) pv.metadata.labels = opts.labels;
  return pv;
}

/** An in-tree PV with `source` under `field`. */
export function inTreeVolume(
  field: string,
  source: object,
  opts: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    claimNamespace?: string;
  } = {},
): PersistentVolume {
  const pv: PersistentVolume = {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: { name: "pvc-1", annotations: opts.annotations ?? {} },
    spec: {
      [field]: source,
      claimRef: {
        kind: "PersistentVolumeClaim",
        namespace: opts.claimNamespace ?? "ns",
        name: "data",
      },
    },
  };
  if (opts.labels) pv.metadata.labels = opts.labels;
  return pv;
}

export function value<T>(t: Translated<T>): T {
  if (!t.ok) assert.fail(`expected a translation, got the error: ${t.error}`);
  return t.value;
}

export function error<T>(t: Translated<T>): string {
  if (t.ok) assert.fail(`expected an error, got ${JSON.stringify(t.value)}`);
  return t.error;
}
