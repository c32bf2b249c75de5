/**
 * Realistic PVC and PV JSON for the benchmarks: a bound claim as a StatefulSet creates it and the
 * PV controller binds it, and the PV the provisioner writes for it, with the managedFields the
 * API server adds (about 2-3 KB each). Object `i` has unique names, UIDs and resourceVersions.
 */
import type { PersistentVolume, PersistentVolumeClaim } from "../src/kube/objects.ts";

function hex(i: number, salt: number, width: number): string {
  let x = (i * 2654435761 + salt * 40503) >>> 0;
  let s = "";
  while (s.length < width) {
    x = (x * 1103515245 + 12345) >>> 0;
    s += (x >>> 8).toString(16).padStart(6, "0");
  }
  return s.slice(0, width);
}

export function uuid(i: number, salt: number): string {
  const h = hex(i, salt, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const driver = "hostpath.csi.k8s.io";
const time = "2026-01-01T00:00:00Z";

/** A bound PVC as a StatefulSet creates it and the PV controller binds it. */
export function pvcJson(i: number): string {
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
export function pvJson(i: number): string {
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
