/** Shared objects for the provisioning table tests. */
import {
  PluginCapability_Service_Type as Plugin,
  ControllerServiceCapability_RPC_Type as Rpc,
} from "../../src/gen/csi/v1/csi_pb.js";
import type {
  CSINode,
  Node,
  PersistentVolume,
  PersistentVolumeClaim,
  Secret,
  StorageClass,
  VolumeAttributesClass,
  VolumeSnapshot,
  VolumeSnapshotContent,
} from "../../src/kube/objects.ts";
import type { ReferenceGrant } from "../../src/provision/data-source.ts";
import type { ProvisionerConfig, ProvisionLookups } from "../../src/provision/request.ts";

export const DRIVER = "test.csi.example.com";
export const UID = "2d2a1f9e-1c4b-4d6e-8f00-0123456789ab";
export const PV_NAME = `pvc-${UID}`;
export const GI = 1024n ** 3n;

export function config(overrides: Partial<ProvisionerConfig> = {}): ProvisionerConfig {
  return {
    driverName: DRIVER,
    capabilities: {
      plugin: new Set([Plugin.CONTROLLER_SERVICE]),
      controller: new Set([Rpc.CREATE_DELETE_VOLUME]),
    },
    volumeNamePrefix: "pvc",
    volumeNameUuidLength: -1,
    ...overrides,
  };
}

/** The capability sets of `config()` plus `extra`. */
export function withCapabilities(
  plugin: Plugin[],
  controller: Rpc[],
): ProvisionerConfig["capabilities"] {
  return {
    plugin: new Set([Plugin.CONTROLLER_SERVICE, ...plugin]),
    controller: new Set([Rpc.CREATE_DELETE_VOLUME, ...controller]),
  };
}

export function claim(
  spec: Partial<PersistentVolumeClaim["spec"]> = {},
  metadata: Partial<PersistentVolumeClaim["metadata"]> = {},
): PersistentVolumeClaim {
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: {
      name: "data",
      namespace: "apps",
      uid: UID,
      resourceVersion: "42",
      annotations: { "volume.kubernetes.io/storage-provisioner": DRIVER },
      ...metadata,
    },
    spec: {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: "1Gi" } },
      storageClassName: "fast",
      ...spec,
    },
  };
}

export function storageClass(overrides: Partial<StorageClass> = {}): StorageClass {
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: { name: "fast", uid: "sc-uid" },
    provisioner: DRIVER,
    reclaimPolicy: "Delete",
    volumeBindingMode: "Immediate",
    ...overrides,
  };
}

export interface World {
  secrets?: Secret[];
  claims?: PersistentVolumeClaim[];
  volumes?: PersistentVolume[];
  snapshots?: VolumeSnapshot[];
  contents?: VolumeSnapshotContent[];
  vacs?: VolumeAttributesClass[];
  grants?: ReferenceGrant[];
  csiNodes?: CSINode[];
  nodes?: Node[];
  /** Names of lookups that throw (an API failure), e.g. `getSecret`. */
  failing?: string[];
}

/** Lookups over fixed objects; every call is recorded in `calls`. */
export function lookups(world: World = {}): ProvisionLookups & { calls: string[] } {
  const calls: string[] = [];
  const find = <T extends { metadata: { name?: string; namespace?: string } }>(
    method: string,
    items: T[] | undefined,
    name: string,
    namespace?: string,
  ): Promise<T | undefined> => {
    calls.push(namespace === undefined ? `${method} ${name}` : `${method} ${namespace}/${name}`);
    if (world.failing?.includes(method)) {
      return Promise.reject(new Error("the server is currently unable to handle the request"));
    }
    return Promise.resolve(
      (items ?? []).find(
        (i) =>
          i.metadata.name === name &&
          (namespace === undefined || i.metadata.namespace === namespace),
      ),
    );
  };
  return {
    calls,
    getSecret: (ns, name) => find("getSecret", world.secrets, name, ns),
    getClaim: (ns, name) => find("getClaim", world.claims, name, ns),
    getVolume: (name) => find("getVolume", world.volumes, name),
    getVolumeSnapshot: (ns, name) => find("getVolumeSnapshot", world.snapshots, name, ns),
    getVolumeSnapshotContent: (name) => find("getVolumeSnapshotContent", world.contents, name),
    getVolumeAttributesClass: (name) => find("getVolumeAttributesClass", world.vacs, name),
    listReferenceGrants: (ns) => {
      calls.push(`listReferenceGrants ${ns}`);
      return Promise.resolve((world.grants ?? []).filter((g) => g.metadata.namespace === ns));
    },
    csiNodes: () => {
      calls.push("csiNodes");
      return world.csiNodes ?? [];
    },
    nodes: () => {
      calls.push("nodes");
      return world.nodes ?? [];
    },
  };
}

export function secret(namespace: string, name: string, data: Record<string, string>): Secret {
  return {
    metadata: { name, namespace },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, btoa(v)])),
  };
}

/** A Bound source claim `src` in `apps` with its Bound CSI volume `pv-src`. */
export function cloneSource(
  overrides: {
    claim?: Partial<PersistentVolumeClaim["spec"]>;
    volume?: Partial<PersistentVolume["spec"]>;
  } = {},
): { claims: PersistentVolumeClaim[]; volumes: PersistentVolume[] } {
  return {
    claims: [
      {
        metadata: { name: "src", namespace: "apps", uid: "src-uid" },
        spec: {
          accessModes: ["ReadWriteOnce"],
          resources: { requests: { storage: "1Gi" } },
          storageClassName: "fast",
          volumeName: "pv-src",
          ...overrides.claim,
        },
        status: { phase: "Bound" },
      },
    ],
    volumes: [
      {
        metadata: { name: "pv-src" },
        spec: {
          csi: { driver: DRIVER, volumeHandle: "vol-src" },
          claimRef: { name: "src", namespace: "apps", uid: "src-uid" },
          ...overrides.volume,
        },
        status: { phase: "Bound" },
      },
    ],
  };
}

/** A ready VolumeSnapshot `snap` in `apps` bound to the content `snapcontent-1`. */
export function snapshotSource(
  overrides: {
    snapshot?: Partial<VolumeSnapshot["metadata"]>;
    status?: Partial<NonNullable<VolumeSnapshot["status"]>>;
    content?: Partial<VolumeSnapshotContent["spec"]>;
    contentStatus?: NonNullable<VolumeSnapshotContent["status"]> | null;
    contentAnnotations?: Record<string, string>;
  } = {},
): { snapshots: VolumeSnapshot[]; contents: VolumeSnapshotContent[] } {
  return {
    snapshots: [
      {
        metadata: { name: "snap", namespace: "apps", uid: "snap-uid", ...overrides.snapshot },
        spec: { source: { persistentVolumeClaimName: "src" } },
        status: {
          boundVolumeSnapshotContentName: "snapcontent-1",
          readyToUse: true,
          restoreSize: "1Gi",
          ...overrides.status,
        },
      },
    ],
    contents: [
      {
        metadata: {
          name: "snapcontent-1",
          ...(overrides.contentAnnotations ? { annotations: overrides.contentAnnotations } : {}),
        },
        spec: {
          volumeSnapshotRef: { name: "snap", namespace: "apps", uid: "snap-uid" },
          driver: DRIVER,
          deletionPolicy: "Delete",
          source: { volumeHandle: "vol-src" },
          ...overrides.content,
        },
        ...(overrides.contentStatus === null
          ? {}
          : {
              status: overrides.contentStatus ?? {
                snapshotHandle: "snap-handle",
                readyToUse: true,
              },
            }),
      },
    ],
  };
}
