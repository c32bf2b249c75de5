/**
 * The API resources the provisioner touches: where each lives in the REST path space.
 */
import type {
  CoreEvent,
  CSINode,
  CSIStorageCapacity,
  EventV1,
  KubeObject,
  Lease,
  Node,
  PersistentVolume,
  PersistentVolumeClaim,
  Secret,
  StorageClass,
  VolumeAttachment,
  VolumeAttributesClass,
  VolumeSnapshot,
  VolumeSnapshotContent,
} from "./objects.ts";

export interface Resource<T extends KubeObject = KubeObject> {
  /** "" for the core group. */
  group: string;
  version: string;
  /** Lower-case plural used in the path. */
  plural: string;
  kind: string;
  namespaced: boolean;
  /** Phantom field carrying the object type; never set. */
  readonly __type?: T;
}

function resource<T extends KubeObject>(
  group: string,
  version: string,
  plural: string,
  kind: string,
  namespaced: boolean,
): Resource<T> {
  return { group, version, plural, kind, namespaced };
}

export const resources = {
  persistentVolumes: resource<PersistentVolume>(
    "",
    "v1",
    "persistentvolumes",
    "PersistentVolume",
    false,
  ),
  persistentVolumeClaims: resource<PersistentVolumeClaim>(
    "",
    "v1",
    "persistentvolumeclaims",
    "PersistentVolumeClaim",
    true,
  ),
  secrets: resource<Secret>("", "v1", "secrets", "Secret", true),
  namespaces: resource<KubeObject>("", "v1", "namespaces", "Namespace", false),
  nodes: resource<Node>("", "v1", "nodes", "Node", false),
  storageClasses: resource<StorageClass>(
    "storage.k8s.io",
    "v1",
    "storageclasses",
    "StorageClass",
    false,
  ),
  csiNodes: resource<CSINode>("storage.k8s.io", "v1", "csinodes", "CSINode", false),
  volumeAttachments: resource<VolumeAttachment>(
    "storage.k8s.io",
    "v1",
    "volumeattachments",
    "VolumeAttachment",
    false,
  ),
  csiStorageCapacities: resource<CSIStorageCapacity>(
    "storage.k8s.io",
    "v1",
    "csistoragecapacities",
    "CSIStorageCapacity",
    true,
  ),
  volumeAttributesClasses: resource<VolumeAttributesClass>(
    "storage.k8s.io",
    "v1",
    "volumeattributesclasses",
    "VolumeAttributesClass",
    false,
  ),
  /** events.k8s.io/v1 view of events. */
  events: resource<EventV1>("events.k8s.io", "v1", "events", "Event", true),
  /** core/v1 events: what the provisioner writes (upstream RBAC grants events in the core group). */
  coreEvents: resource<CoreEvent>("", "v1", "events", "Event", true),
  leases: resource<Lease>("coordination.k8s.io", "v1", "leases", "Lease", true),
  volumeSnapshots: resource<VolumeSnapshot>(
    "snapshot.storage.k8s.io",
    "v1",
    "volumesnapshots",
    "VolumeSnapshot",
    true,
  ),
  volumeSnapshotContents: resource<VolumeSnapshotContent>(
    "snapshot.storage.k8s.io",
    "v1",
    "volumesnapshotcontents",
    "VolumeSnapshotContent",
    false,
  ),
  /** Gateway API ReferenceGrants (only with the CrossNamespaceVolumeDataSource gate). */
  referenceGrants: resource<KubeObject>(
    "gateway.networking.k8s.io",
    "v1beta1",
    "referencegrants",
    "ReferenceGrant",
    true,
  ),
} as const;

/** `apiVersion` as written in objects: `v1` or `group/version`. */
export function apiVersionOf(r: Resource): string {
  return r.group === "" ? r.version : `${r.group}/${r.version}`;
}

/**
 * The REST path of a collection or of one object:
 * `/api/v1/namespaces/ns/persistentvolumeclaims/name`, `/apis/storage.k8s.io/v1/storageclasses`.
 */
export function resourcePath(r: Resource, namespace?: string, name?: string, sub?: string): string {
  let p = r.group === "" ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;
  if (r.namespaced && namespace !== undefined && namespace !== "") {
    p += `/namespaces/${encodeURIComponent(namespace)}`;
  }
  p += `/${r.plural}`;
  if (name !== undefined) p += `/${encodeURIComponent(name)}`;
  if (sub !== undefined) p += `/${sub}`;
  return p;
}
