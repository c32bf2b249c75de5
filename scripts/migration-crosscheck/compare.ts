/**
 * The TypeScript side of scripts/migration-crosscheck: generates cases for every translation
 * (in-tree StorageClass → CSI, CSI PV → in-tree, in-tree PV → CSI source) of the seven plugins,
 * runs them through csi-translation-lib (the Go program given as argument) and through
 * src/migration, and prints every case whose answers differ. Exit 1 when any does.
 *
 * Normalised on purpose: Go's JSON leaves out empty maps and nulls; upstream's "failed to translate
 * topology" error embeds a `%+v` dump of the whole PV, so only the text after `Error:` is compared.
 * Not generated: a class with both `zone` and `zones` (upstream picks one at random; ours refuses).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import type { PersistentVolume, StorageClass } from "../../src/kube/objects.ts";
import {
  csiNodeAffinityOfVolume,
  pluginForDriver,
  pluginForInTreeName,
  pluginForVolume,
} from "../../src/migration/registry.ts";

type Json = Record<string, unknown>;
interface Request {
  op: "class" | "toInTree" | "toCsi";
  plugin: string;
  obj: Json;
}

const GA_ZONE = "topology.kubernetes.io/zone";
const GA_REGION = "topology.kubernetes.io/region";
const BETA_ZONE = "failure-domain.beta.kubernetes.io/zone";
const BETA_REGION = "failure-domain.beta.kubernetes.io/region";

const IN_TREE = [
  "kubernetes.io/aws-ebs",
  "kubernetes.io/gce-pd",
  "kubernetes.io/azure-disk",
  "kubernetes.io/azure-file",
  "kubernetes.io/cinder",
  "kubernetes.io/vsphere-volume",
  "kubernetes.io/portworx-volume",
];
const PARAMETER_SETS: Record<string, string>[] = [
  {},
  { fstype: "xfs", type: "gp2" },
  { FsType: "ext3" },
  { zone: "us-east-1a" },
  { zones: "us-east-1a,us-east-1b, c" },
  { iopsPerGB: "10", type: "io1" },
  {
    "csi.storage.k8s.io/fstype": "ext4",
    datastore: "ds",
    diskformat: "thin",
    storagePolicyName: "gold",
    hostFailuresToTolerate: "1",
    iopslimit: "5",
    other: "x",
  },
  {
    "openstorage.io/auth-secret-name": "s",
    "openstorage.io/auth-secret-namespace": "n",
    repl: "3",
  },
  { skuName: "Premium_LRS", cachingMode: "ReadOnly", kind: "managed" },
  { availability: "nova" },
];
const ALLOWED_TOPOLOGIES: (StorageClass["allowedTopologies"] | undefined)[] = [
  undefined,
  [{ matchLabelExpressions: [{ key: GA_ZONE, values: ["us-east-1a", "0"] }] }],
  [
    {
      matchLabelExpressions: [
        { key: BETA_ZONE, values: ["1"] },
        { key: "rack", values: ["r"] },
      ],
    },
    { matchLabelExpressions: [{ key: GA_REGION, values: ["2"] }] },
  ],
];
/** Driver → handles to translate back, its zone key and zone value sets. */
const DRIVERS: Record<string, { handles: string[]; key: string; zones: string[][] }> = {
  "ebs.csi.aws.com": {
    handles: ["vol-1", "aws://x/vol-2"],
    key: "topology.ebs.csi.aws.com/zone",
    zones: [["us-east-1a"], ["us-east-1a", "us-east-1b"], ["us-east-1a", "us-west-2b"], ["weird"]],
  },
  "pd.csi.storage.gke.io": {
    handles: [
      "projects/p/zones/us-central1-a/disks/d1",
      "projects/p/regions/us-central1/disks/d2",
      "bad",
    ],
    key: "topology.gke.io/zone",
    zones: [["us-central1-a"], ["us-central1-a", "us-central1-b"], ["zz"]],
  },
  "disk.csi.azure.com": {
    handles: [
      "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1",
      "https://a.blob/vhds/x.vhd",
      "bad",
    ],
    key: "topology.disk.csi.azure.com/zone",
    zones: [["z1", "z2"]],
  },
  "file.csi.azure.com": {
    handles: ["rg#acct#share#x", "#acct#share", "a#b"],
    key: "x",
    zones: [["z1", "z2"]],
  },
  "cinder.csi.openstack.org": {
    handles: ["c1"],
    key: "topology.cinder.csi.openstack.org/zone",
    zones: [["z1", "z2"]],
  },
  "csi.vsphere.vmware.com": {
    handles: ["v1"],
    key: "topology.csi.vmware.com/zone",
    zones: [["z1", "z2"]],
  },
  "pxd.portworx.com": { handles: ["px"], key: "y", zones: [["z1", "z2"]] },
};
const ATTRIBUTE_SETS: Record<string, string>[] = [
  {},
  {
    partition: "2",
    cachingMode: "ReadOnly",
    fstype: "xfs",
    shareName: "sh",
    initialvolumefilepath: "[ds] p.vmdk",
  },
  { partition: "" },
  { partition: "x" },
];
const IN_TREE_SOURCES: [string, Json][] = [
  ["awsElasticBlockStore", { volumeID: "vol-1", fsType: "ext4", partition: 2, readOnly: true }],
  ["awsElasticBlockStore", { volumeID: "aws://z/vol-3" }],
  ["awsElasticBlockStore", { volumeID: "aws:///vol-4" }],
  ["awsElasticBlockStore", { volumeID: "aws://z/bad" }],
  ["gcePersistentDisk", { pdName: "d1", partition: 1 }],
  ["gcePersistentDisk", { pdName: "d2", fsType: "xfs", readOnly: true }],
  [
    "azureDisk",
    {
      diskName: "d",
      diskURI: "/subscriptions/x",
      cachingMode: "ReadWrite",
      fsType: "ext4",
      kind: "Managed",
      readOnly: false,
    },
  ],
  ["azureDisk", { diskName: "d", diskURI: "u", kind: "Shared" }],
  ["azureDisk", { diskName: "d", diskURI: "u" }],
  [
    "azureFile",
    { secretName: "azure-storage-account-acc-secret", shareName: "s", secretNamespace: "sn" },
  ],
  ["azureFile", { secretName: "plain", shareName: "s", readOnly: true }],
  ["cinder", { volumeID: "c1", fsType: "ext4", readOnly: true }],
  ["vsphereVolume", { volumePath: "[ds] a", fsType: "ext4", storagePolicyName: "gold" }],
  ["portworxVolume", { volumeID: "px", fsType: "ext4", readOnly: true }],
];

function cases(): Request[] {
  const out: Request[] = [];
  for (const plugin of IN_TREE) {
    for (const parameters of PARAMETER_SETS) {
      for (const allowedTopologies of ALLOWED_TOPOLOGIES) {
        out.push({
          op: "class",
          plugin,
          obj: {
            metadata: { name: "c" },
            provisioner: plugin,
            ...(Object.keys(parameters).length > 0 ? { parameters } : {}),
            ...(allowedTopologies ? { allowedTopologies } : {}),
          },
        });
      }
    }
  }
  for (const [driver, d] of Object.entries(DRIVERS)) {
    const termSets: (Json[] | undefined)[] = [
      undefined,
      [
        {
          matchExpressions: [{ key: "topology.hostpath.csi/node", operator: "In", values: ["n1"] }],
        },
      ],
      ...d.zones.map((zones) => [
        { matchExpressions: [{ key: d.key, operator: "In", values: zones }] },
        {
          matchExpressions: [
            { key: d.key, operator: "In", values: [zones[0]] },
            { key: "topology.csi.vmware.com/region", operator: "In", values: ["r1"] },
          ],
        },
      ]),
    ];
    for (const handle of d.handles) {
      for (const attributes of ATTRIBUTE_SETS) {
        for (const terms of termSets) {
          for (const labels of [undefined, { [BETA_ZONE]: "us-east-1a" }]) {
            for (const readOnly of [false, true]) {
              for (const fsType of ["", "ext4"]) {
                const csi: Json = {
                  driver,
                  volumeHandle: handle,
                  volumeAttributes: { id: "x", ...attributes },
                };
                if (fsType) csi.fsType = fsType;
                if (readOnly) csi.readOnly = true;
                if (driver === "file.csi.azure.com" && readOnly) {
                  csi.nodeStageSecretRef = { name: "sec", namespace: "sn" };
                }
                out.push({
                  op: "toInTree",
                  plugin: driver,
                  obj: {
                    metadata: {
                      name: "pvc-1",
                      ...(labels ? { labels } : {}),
                      annotations: { a: "b" },
                    },
                    spec: {
                      accessModes: ["ReadWriteOnce"],
                      capacity: { storage: "1Gi" },
                      csi,
                      ...(terms
                        ? { nodeAffinity: { required: { nodeSelectorTerms: terms } } }
                        : {}),
                      claimRef: { namespace: "ns", name: "c" },
                    },
                  },
                });
              }
            }
          }
        }
      }
    }
  }
  const labelSets = [
    undefined,
    { [GA_ZONE]: "us-central1-a" },
    { [BETA_ZONE]: "us-central1-a__us-central1-b" },
    { [GA_ZONE]: "a__b" },
  ];
  const annotationSets = [
    {},
    {
      "kubernetes.io/azure-file-resource-group": "rg9",
      "openstorage.io/auth-secret-name": "s",
      "openstorage.io/auth-secret-namespace": "n",
    },
  ];
  const affinities: (Json[] | undefined)[] = [
    undefined,
    [{ matchExpressions: [{ key: GA_ZONE, operator: "In", values: ["z1", "z2"] }] }],
    [
      {
        matchExpressions: [
          { key: BETA_ZONE, operator: "In", values: ["z1"] },
          { key: BETA_REGION, operator: "In", values: ["r1"] },
        ],
      },
      { matchExpressions: [{ key: GA_REGION, operator: "In", values: ["r2"] }] },
    ],
    [{ matchExpressions: [{ key: "rack", operator: "In", values: ["a"] }] }],
  ];
  for (const [field, source] of IN_TREE_SOURCES) {
    for (const labels of [...labelSets, { [GA_ZONE]: " a__b__ __a", [GA_REGION]: "r" }]) {
      for (const namespace of ["ns", ""]) {
        for (const annotations of annotationSets) {
          for (const terms of affinities) {
            out.push({
              op: "toCsi",
              plugin: field,
              obj: {
                metadata: { name: "pvc-1", ...(labels ? { labels } : {}), annotations },
                spec: {
                  [field]: source,
                  claimRef: { namespace, name: "c" },
                  ...(terms ? { nodeAffinity: { required: { nodeSelectorTerms: terms } } } : {}),
                },
              },
            });
          }
        }
      }
    }
  }
  return out;
}

/** JSON without nulls, Go's `creationTimestamp: null` and empty `volumeAttributes`. */
function clean(v: unknown): unknown {
  return JSON.parse(
    JSON.stringify(v, (k, x) =>
      x === null ||
      k === "creationTimestamp" ||
      (k === "volumeAttributes" && typeof x === "object" && Object.keys(x).length === 0)
        ? undefined
        : x,
    ),
  );
}

type Answer = { value: unknown } | { error: string };

function ours(c: Request): Answer {
  const obj = clean(c.obj) as Json;
  if (c.op === "class") {
    const r = pluginForInTreeName(c.plugin)!.translateClass(obj as unknown as StorageClass);
    return r.ok
      ? { value: { parameters: r.value.parameters ?? {}, allowed: r.value.allowedTopologies } }
      : { error: r.error };
  }
  const pv = obj as unknown as PersistentVolume;
  if (c.op === "toInTree") {
    const r = pluginForDriver(c.plugin)!.toInTree(pv);
    return r.ok ? { value: shapeOfPv(r.value as unknown as Json) } : { error: r.error };
  }
  const r = pluginForVolume(pv)!.toCsi(pv);
  return r.ok
    ? { value: { csi: r.value, nodeAffinity: csiNodeAffinityOfVolume(pv) } }
    : { error: r.error };
}

function shapeOfPv(pv: Json): Json {
  const metadata = (pv.metadata ?? {}) as Json;
  return { spec: pv.spec, labels: metadata.labels ?? {}, annotations: metadata.annotations };
}

function theirs(c: Request, answer: Json): Answer {
  if ("error" in answer) return { error: String(answer.error) };
  const value = answer.value as Json;
  if (c.op === "class") {
    return { value: { parameters: value.parameters ?? {}, allowed: value.allowedTopologies } };
  }
  if (c.op === "toInTree") return { value: shapeOfPv(value) };
  return { value };
}

const translate = process.argv[2];
if (!translate) throw new Error("usage: compare.ts <csi-translation-lib program>");
const all = cases();
const lines = execFileSync(translate, {
  input: `${all.map((c) => JSON.stringify(c)).join("\n")}\n`,
  maxBuffer: 1 << 28,
})
  .toString()
  .trim()
  .split("\n");
let differ = 0;
all.forEach((c, i) => {
  const go = clean(theirs(c, JSON.parse(lines[i]!) as Json)) as Answer;
  const ts = clean(ours(c)) as Answer;
  if ("error" in go && "error" in ts && go.error.startsWith("failed to translate topology. PV:")) {
    go.error = go.error.replace(/^.* Error:/s, "");
    ts.error = ts.error.replace(/^.*?: /, "");
  }
  try {
    assert.deepEqual(ts, go);
  } catch {
    differ++;
    if (differ <= 20) {
      console.log(
        `${JSON.stringify(c)}\n  upstream: ${JSON.stringify(go)}\n  ours:     ${JSON.stringify(ts)}`,
      );
    }
  }
});
console.log(`${all.length} cases, ${differ} differ`);
process.exitCode = differ === 0 ? 0 : 1;
