/**
 * `kubernetes.io/aws-ebs` ↔ `ebs.csi.aws.com` (in-tree source `awsElasticBlockStore`).
 *
 * Class: `fstype` → `csi.storage.k8s.io/fstype`; `zone` / `zones` → allowed topologies of
 * `topology.ebs.csi.aws.com/zone`; `iopsPerGB` is kept and `allowautoiopspergbincrease: "true"`
 * added (the in-tree plugin raised too-low IOPS to AWS's minimum). PV: the handle is the
 * `volumeID`, the `partition` attribute the partition; zones become zone labels with the region
 * derived from them (`us-west-2a` → `us-west-2`).
 */
import type { CSIPersistentVolumeSource, PersistentVolume, StorageClass } from "../kube/objects.ts";
import {
  atoi,
  clone,
  failure,
  fsTypeParam,
  inTreeSource,
  type MigratedPlugin,
  ok,
  setInTreeSource,
  singleRegion,
  type Translated,
  topologyError,
  topologyToCsi,
  topologyToInTree,
  translateZonalClass,
} from "./common.ts";

export const AWS_EBS_DRIVER = "ebs.csi.aws.com";
export const AWS_EBS_IN_TREE = "kubernetes.io/aws-ebs";
export const AWS_EBS_TOPOLOGY_KEY = "topology.ebs.csi.aws.com/zone";
const IOPS_PER_GB = "iopspergb";
const ALLOW_INCREASE_IOPS = "allowautoiopspergbincrease";

interface AwsEbsSource {
  volumeID: string;
  fsType?: string;
  partition?: number;
  readOnly?: boolean;
}

/** The region of AWS zones (`us-west-2a`, `us-gov-east-1a`, local and wavelength zones). */
export function awsRegionFromZones(zones: string[]): Translated<string> {
  return singleRegion(zones, (zone) => {
    const parts = zone.split("-");
    const last = parts[parts.length - 1]!;
    if ((parts.length === 3 || parts.length === 4) && last.length === 2) {
      parts[parts.length - 1] = last.slice(0, 1);
      return ok(parts.join("-"));
    }
    if (parts.length === 5 || parts.length === 7) return ok(parts.slice(0, 3).join("-"));
    return failure(`Unexpected zone format: ${zone} is not a valid AWS zone`);
  });
}

/** An in-tree EBS volume id (`aws://<zone>/vol-…`, `aws:///vol-…` or bare) as the EBS id. */
export function ebsVolumeId(kubernetesId: string): Translated<string> {
  if (!kubernetesId.startsWith("aws://")) return ok(kubernetesId);
  const rest = kubernetesId.slice("aws://".length);
  const slash = rest.indexOf("/");
  const path = slash < 0 ? "" : rest.slice(slash).split(/[?#]/)[0]!;
  const id = path.replace(/^\/+|\/+$/g, "");
  if (!/^vol-[^/]*$/.test(id)) return failure(`Invalid format for AWS volume (${kubernetesId})`);
  return ok(id);
}

export const awsEbs: MigratedPlugin = {
  inTreeName: AWS_EBS_IN_TREE,
  driverName: AWS_EBS_DRIVER,
  sourceField: "awsElasticBlockStore",

  translateClass(sc: StorageClass) {
    return translateZonalClass(sc, AWS_EBS_TOPOLOGY_KEY, (lower, key, value, params) => {
      if (lower === IOPS_PER_GB) {
        params[key] = value;
        params[ALLOW_INCREASE_IOPS] = "true";
      } else fsTypeParam(lower, key, value, params);
    });
  },

  toInTree(input: PersistentVolume) {
    const pv = clone(input);
    const csi = pv.spec.csi;
    if (!csi) return failure("pv is nil or CSI source not defined on pv");
    const source: AwsEbsSource = { volumeID: csi.volumeHandle };
    if (csi.fsType) source.fsType = csi.fsType;
    const partition = csi.volumeAttributes?.partition;
    if (partition !== undefined) {
      const n = atoi(partition);
      if (!n.ok) return failure(`failed to convert partition ${partition} to integer: ${n.error}`);
      if (n.value !== 0) source.partition = n.value;
    }
    if (csi.readOnly) source.readOnly = true;
    const topology = topologyToInTree(pv, AWS_EBS_TOPOLOGY_KEY, awsRegionFromZones);
    if (!topology.ok) return failure(topologyError(pv, topology.error));
    setInTreeSource(pv, "awsElasticBlockStore", source);
    return ok(pv);
  },

  toCsi(pv: PersistentVolume) {
    const source = inTreeSource<AwsEbsSource>(pv, "awsElasticBlockStore");
    if (!source) return failure("pv is nil or AWS EBS not defined on pv");
    const id = ebsVolumeId(source.volumeID ?? "");
    if (!id.ok) return failure(`failed to translate Kubernetes ID to EBS Volume ID ${id.error}`);
    const csi: CSIPersistentVolumeSource = {
      driver: AWS_EBS_DRIVER,
      volumeHandle: id.value,
      volumeAttributes: { partition: String(source.partition ?? 0) },
    };
    if (source.fsType) csi.fsType = source.fsType;
    if (source.readOnly) csi.readOnly = true;
    return ok(csi);
  },

  nodeAffinityToCsi(pv: PersistentVolume) {
    return topologyToCsi(pv, AWS_EBS_TOPOLOGY_KEY);
  },
};
