// biome-ignore-all lint/suspicious/noTemplateCurlyInString: secret name templates are "${...}" strings
/**
 * The differential suite's case table: flag sets × StorageClasses × claims, each run once with
 * upstream's `csi-provisioner` and once with ours against the same cluster and hostpathplugin
 * (test/e2e/differential.test.ts). Pure data plus a few constructors; validated by
 * `validateTable()`.
 *
 * Every case gets its own StorageClass `diff-<id>` (shared by both phases: a class is read-only to
 * the provisioner) and one claim named `<id>` in the phase's namespace. `expect` is what the case
 * is meant to exercise; upstream's outcome must match it, or the table is wrong.
 */

/** Topology key hostpathplugin reports (its `--enable-topology` is on by default). */
export const TOPOLOGY_KEY = "topology.hostpath.csi/node";
/** The second Node the suite creates (the first is the driver's own node). */
export const OTHER_NODE = "diff-node-2";
/** A Node that does not exist: a claim selecting it must be rescheduled. */
export const GHOST_NODE = "diff-ghost-node";
/** Placeholder for the driver's node name (the cluster's `nodeName`) in the table. */
export const DRIVER_NODE = "$DRIVER_NODE";
/** Namespace holding the fixed secrets the classes name. */
export const SECRETS_NS = "diff-secrets";
/** Placeholder for the claim's (phase's) namespace in `secrets`. */
export const CLAIM_NS = "$CLAIM_NS";

export interface FlagSet {
  id: string;
  /** Flags added to the common ones (--kubeconfig, --csi-address, -v=5). */
  args: string[];
  /** Extra environment; `DRIVER_NODE` in a value is replaced by the driver's node name. */
  env?: Record<string, string>;
  /** `--volume-name-uuid-length` of the set, so names can be normalised. */
  uuidLength?: number;
  what: string;
}

export const FLAG_SETS: readonly FlagSet[] = [
  { id: "default", args: [], what: "upstream's defaults" },
  {
    id: "meta",
    args: ["--extra-create-metadata", "--volume-name-prefix=vol", "--volume-name-uuid-length=16"],
    uuidLength: 16,
    what: "extra create metadata, name prefix and UUID length",
  },
  { id: "strict", args: ["--strict-topology"], what: "strict topology" },
  {
    id: "noimm",
    args: ["--immediate-topology=false"],
    what: "no aggregated topology for Immediate binding",
  },
  {
    id: "fs",
    args: ["--default-fstype=ext4", "--controller-publish-readonly"],
    what: "default fsType and read-only publish",
  },
  {
    id: "notopo",
    args: ["--feature-gates=Topology=false"],
    what: "Topology gate off: no requirements, no node affinity",
  },
  {
    id: "noconv",
    args: ["--prevent-volume-mode-conversion=false"],
    what: "volume mode conversion allowed",
  },
  {
    id: "node-noimm",
    args: [
      "--node-deployment",
      "--node-deployment-immediate-binding=false",
      "--node-deployment-base-delay=500ms",
      "--node-deployment-max-delay=2s",
    ],
    env: { NODE_NAME: DRIVER_NODE },
    what: "node deployment without taking Immediate claims",
  },
  {
    id: "node",
    args: [
      "--node-deployment",
      "--node-deployment-base-delay=500ms",
      "--node-deployment-max-delay=2s",
    ],
    env: { NODE_NAME: DRIVER_NODE },
    what: "node deployment",
  },
];

export type AccessMode = "ReadWriteOnce" | "ReadOnlyMany" | "ReadWriteMany" | "ReadWriteOncePod";

export interface ClassSpec {
  /** Default: the driver. */
  provisioner?: string;
  parameters?: Record<string, string>;
  mountOptions?: string[];
  reclaimPolicy?: "Delete" | "Retain";
  binding?: "Immediate" | "WaitForFirstConsumer";
  /** Values of TOPOLOGY_KEY (DRIVER_NODE allowed), one term with one expression. */
  allowedNodes?: string[];
  /** allowedTopologies terms as they are (keys the driver does not report, several terms). */
  allowedTerms?: Array<Array<{ key: string; values: string[] }>>;
}

export interface ClaimSpec {
  accessModes?: AccessMode[];
  /** Default 1Gi. */
  size?: string;
  /** resources.limits.storage (upstream sends no limit_bytes). */
  limit?: string;
  volumeMode?: "Filesystem" | "Block";
  annotations?: Record<string, string>;
  /** `volume.kubernetes.io/selected-node` at creation (the scheduler's choice). */
  selectedNode?: string;
  /** A label selector (upstream refuses it). */
  selector?: Record<string, string>;
  /**
   * Clone of another case's claim in the same flag set. Each clone has its own source: upstream
   * adds the source's protection finalizer with an Update, and clones of one source started
   * together fail with a transient Conflict.
   */
  cloneOf?: string;
  /** Restore of a VolumeSnapshot of another case's claim in the same flag set. */
  restoreOf?: string;
  /** A claim-side data source that does not exist (kind and name). */
  missingSource?: { kind: "PersistentVolumeClaim" | "VolumeSnapshot"; name: string };
  /** A dataSourceRef to a kind nobody provisions (a volume populator's). */
  populator?: boolean;
  /** spec.volumeAttributesClassName (the suite creates the class for the driver). */
  attributesClass?: string;
  /**
   * Bound to a PV made by hand (a static CSI volume of this driver, reclaim Delete, pre-bound to
   * the claim) instead of a provisioned one.
   */
  staticVolume?: boolean;
}

/**
 * What happens between observing a bound claim and deleting it:
 * delete-pv-first: the PV is deleted first (its finalizer keeps it until the volume is gone);
 * delete-secret-first: the case's secrets in the claim's namespace are deleted first;
 * strip-deletion-secrets: the PV's deletion-secret annotations are removed (a PV from an older
 * release), so deletion resolves the secret from the StorageClass again.
 */
export type Lifecycle = "delete-pv-first" | "delete-secret-first" | "strip-deletion-secrets";

/**
 * provisioned: the claim gets a PV. fails: a ProvisioningFailed event (or a reschedule).
 * ignored: nothing happens to the claim (observed once the others have settled).
 */
export type Expect = "provisioned" | "fails" | "ignored";

export interface Case {
  id: string;
  flags: string;
  what: string;
  class: ClassSpec;
  claim: ClaimSpec;
  expect: Expect;
  /** Secrets to create first (namespace SECRETS_NS or CLAIM_NS). */
  secrets?: Array<{ namespace: string; name: string }>;
  /** "fails" by rescheduling: settled once the selected-node annotation is gone. */
  rescheduled?: boolean;
  lifecycle?: Lifecycle;
}

export interface BadFlagCase {
  id: string;
  what: string;
  args: string[];
  env?: Record<string, string>;
}

const SECRET = "csi.storage.k8s.io/";
const fixedSecret = (kind: string, name: string) => ({
  [`${SECRET}${kind}-secret-name`]: name,
  [`${SECRET}${kind}-secret-namespace`]: SECRETS_NS,
});

// biome-ignore format: one case per line, so that the table reads as a table
export const CASES: readonly Case[] = [
  // ---- default flags: parameters, fsType, modes, reclaim, topology, secrets, sources -----------
  { id: "plain", flags: "default", what: "no parameters, RWO", class: {}, claim: {}, expect: "provisioned" },
  { id: "params", flags: "default", what: "opaque parameters pass through", class: { parameters: { "custom-param": "x", "other.example.com/key": "y" } }, claim: {}, expect: "provisioned" },
  { id: "mount-options", flags: "default", what: "mount options reach mount_flags and the PV", class: { mountOptions: ["debug", "noatime"] }, claim: {}, expect: "provisioned" },
  { id: "fstype", flags: "default", what: "csi.storage.k8s.io/fstype", class: { parameters: { [`${SECRET}fstype`]: "xfs" } }, claim: {}, expect: "provisioned" },
  { id: "fstype-legacy", flags: "default", what: "deprecated fsType key (any case)", class: { parameters: { fsType: "ext3" } }, claim: {}, expect: "provisioned" },
  { id: "fstype-both", flags: "default", what: "both fstype keys", class: { parameters: { fstype: "ext3", [`${SECRET}fstype`]: "xfs" } }, claim: {}, expect: "fails" },
  { id: "block", flags: "default", what: "Block mode ignores fsType", class: { parameters: { [`${SECRET}fstype`]: "xfs" } }, claim: { volumeMode: "Block" }, expect: "provisioned" },
  { id: "rwx", flags: "default", what: "ReadWriteMany", class: {}, claim: { accessModes: ["ReadWriteMany"] }, expect: "provisioned" },
  { id: "rox", flags: "default", what: "ReadOnlyMany", class: {}, claim: { accessModes: ["ReadOnlyMany"] }, expect: "provisioned" },
  { id: "rwop", flags: "default", what: "ReadWriteOncePod", class: {}, claim: { accessModes: ["ReadWriteOncePod"] }, expect: "provisioned" },
  { id: "block-mount-options", flags: "default", what: "Block mode with class mount options", class: { mountOptions: ["debug"] }, claim: { volumeMode: "Block" }, expect: "provisioned" },
  { id: "limit", flags: "default", what: "a claim with a storage limit", class: {}, claim: { limit: "2Gi" }, expect: "provisioned" },
  { id: "allowed-terms", flags: "default", what: "allowedTopologies with two terms and a key the driver does not report", class: { allowedTerms: [[{ key: "example.com/zone", values: ["b", "a"] }, { key: TOPOLOGY_KEY, values: [DRIVER_NODE] }], [{ key: TOPOLOGY_KEY, values: [OTHER_NODE] }]] }, claim: {}, expect: "provisioned" },
  { id: "two-modes", flags: "default", what: "RWO and ROX", class: {}, claim: { accessModes: ["ReadWriteOnce", "ReadOnlyMany"] }, expect: "provisioned" },
  { id: "odd-size", flags: "default", what: "a size that is no whole GiB", class: {}, claim: { size: "1500Mi" }, expect: "provisioned" },
  { id: "too-big", flags: "default", what: "driver says OutOfRange", class: {}, claim: { size: "2Ti" }, expect: "fails" },
  { id: "retain", flags: "default", what: "reclaimPolicy Retain", class: { reclaimPolicy: "Retain" }, claim: {}, expect: "provisioned" },
  { id: "allowed-topology", flags: "default", what: "allowedTopologies, Immediate", class: { allowedNodes: [DRIVER_NODE, OTHER_NODE] }, claim: {}, expect: "provisioned" },
  { id: "wffc", flags: "default", what: "WaitForFirstConsumer, node selected", class: { binding: "WaitForFirstConsumer" }, claim: { selectedNode: DRIVER_NODE }, expect: "provisioned" },
  { id: "wffc-allowed", flags: "default", what: "WaitForFirstConsumer with allowedTopologies", class: { binding: "WaitForFirstConsumer", allowedNodes: [OTHER_NODE, DRIVER_NODE] }, claim: { selectedNode: DRIVER_NODE }, expect: "provisioned" },
  { id: "wffc-ghost", flags: "default", what: "selected node does not exist: reschedule", class: { binding: "WaitForFirstConsumer" }, claim: { selectedNode: GHOST_NODE }, expect: "fails", rescheduled: true },
  { id: "other-driver", flags: "default", what: "a class of another provisioner", class: { provisioner: "other.example.com" }, claim: {}, expect: "ignored" },
  { id: "selector", flags: "default", what: "a claim with a selector", class: {}, claim: { selector: { app: "x" } }, expect: "fails" },
  { id: "bad-reserved", flags: "default", what: "unknown csi.storage.k8s.io/ parameter", class: { parameters: { [`${SECRET}bogus`]: "x" } }, claim: {}, expect: "fails" },
  { id: "vac", flags: "default", what: "VolumeAttributesClass without MODIFY_VOLUME", class: {}, claim: { attributesClass: "diff-vac" }, expect: "fails" },
  { id: "secret-prov", flags: "default", what: "provisioner secret, fixed name", class: { parameters: fixedSecret("provisioner", "prov") }, claim: {}, expect: "provisioned", secrets: [{ namespace: SECRETS_NS, name: "prov" }] },
  { id: "secret-default", flags: "default", what: "default secret for every kind", class: { parameters: { [`${SECRET}secret-name`]: "shared", [`${SECRET}secret-namespace`]: SECRETS_NS } }, claim: {}, expect: "provisioned", secrets: [{ namespace: SECRETS_NS, name: "shared" }] },
  { id: "secret-kinds", flags: "default", what: "one secret per kind on the PV", class: { parameters: { ...fixedSecret("controller-publish", "cp"), ...fixedSecret("node-stage", "ns"), ...fixedSecret("node-publish", "np"), ...fixedSecret("controller-expand", "ce"), ...fixedSecret("node-expand", "ne") } }, claim: {}, expect: "provisioned" },
  { id: "secret-tmpl-pvc", flags: "default", what: "${pvc.name} and ${pvc.namespace} templates", class: { parameters: { [`${SECRET}provisioner-secret-name`]: "${pvc.name}-secret", [`${SECRET}provisioner-secret-namespace`]: "${pvc.namespace}" } }, claim: {}, expect: "provisioned", secrets: [{ namespace: CLAIM_NS, name: "secret-tmpl-pvc-secret" }] },
  { id: "secret-tmpl-pv", flags: "default", what: "${pv.name} template", class: { parameters: { [`${SECRET}node-publish-secret-name`]: "${pv.name}", [`${SECRET}node-publish-secret-namespace`]: "${pvc.namespace}" } }, claim: {}, expect: "provisioned" },
  { id: "secret-tmpl-ann", flags: "default", what: "${pvc.annotations['...']} template", class: { parameters: { [`${SECRET}node-stage-secret-name`]: "${pvc.annotations['example.com/team']}-stage", [`${SECRET}node-stage-secret-namespace`]: SECRETS_NS } }, claim: { annotations: { "example.com/team": "blue" } }, expect: "provisioned" },
  { id: "secret-deprecated", flags: "default", what: "deprecated csiProvisionerSecretName keys", class: { parameters: { csiProvisionerSecretName: "prov", csiProvisionerSecretNamespace: SECRETS_NS } }, claim: {}, expect: "provisioned", secrets: [{ namespace: SECRETS_NS, name: "prov" }] },
  { id: "secret-missing", flags: "default", what: "provisioner secret does not exist", class: { parameters: fixedSecret("provisioner", "nope") }, claim: {}, expect: "fails" },
  { id: "secret-name-only", flags: "default", what: "secret name without namespace", class: { parameters: { [`${SECRET}provisioner-secret-name`]: "prov" } }, claim: {}, expect: "fails" },
  { id: "secret-bad-token", flags: "default", what: "unknown template token", class: { parameters: { [`${SECRET}node-publish-secret-name`]: "${pvc.uid}", [`${SECRET}node-publish-secret-namespace`]: SECRETS_NS } }, claim: {}, expect: "fails" },
  { id: "secret-both-keys", flags: "default", what: "deprecated and prefixed key together", class: { parameters: { csiNodePublishSecretName: "np", csiNodePublishSecretNamespace: SECRETS_NS, ...fixedSecret("node-publish", "np") } }, claim: {}, expect: "fails" },
  { id: "secret-bad-name", flags: "default", what: "template resolves to an invalid name", class: { parameters: { [`${SECRET}node-stage-secret-name`]: "${pvc.annotations['example.com/team']}", [`${SECRET}node-stage-secret-namespace`]: SECRETS_NS } }, claim: { annotations: { "example.com/team": "Not_Valid" } }, expect: "fails" },
  { id: "clone", flags: "default", what: "clone of a bound claim", class: {}, claim: { cloneOf: "plain" }, expect: "provisioned" },
  { id: "clone-bigger", flags: "default", what: "clone into a bigger claim", class: {}, claim: { cloneOf: "params", size: "2Gi" }, expect: "provisioned" },
  { id: "clone-smaller", flags: "default", what: "clone into a smaller claim", class: {}, claim: { cloneOf: "mount-options", size: "512Mi" }, expect: "fails" },
  { id: "clone-missing", flags: "default", what: "clone of a claim that does not exist", class: {}, claim: { missingSource: { kind: "PersistentVolumeClaim", name: "nope" } }, expect: "fails" },
  { id: "restore", flags: "default", what: "restore a VolumeSnapshot", class: {}, claim: { restoreOf: "plain" }, expect: "provisioned" },
  { id: "restore-block", flags: "default", what: "restore a Filesystem snapshot as Block (conversion refused)", class: {}, claim: { restoreOf: "fstype", volumeMode: "Block" }, expect: "fails" },
  { id: "restore-missing", flags: "default", what: "restore a VolumeSnapshot that does not exist", class: {}, claim: { missingSource: { kind: "VolumeSnapshot", name: "nope" } }, expect: "fails" },
  { id: "static", flags: "default", what: "a static CSI PV of this driver, reclaim Delete", class: {}, claim: { staticVolume: true }, expect: "provisioned" },
  { id: "pv-deleted-first", flags: "default", what: "PV deleted before its claim: the volume is still deleted", class: {}, claim: {}, expect: "provisioned", lifecycle: "delete-pv-first" },
  { id: "secret-gone", flags: "default", what: "deletion secret deleted before the claim", class: { parameters: { [`${SECRET}provisioner-secret-name`]: "${pvc.name}-secret", [`${SECRET}provisioner-secret-namespace`]: "${pvc.namespace}" } }, claim: {}, expect: "provisioned", secrets: [{ namespace: CLAIM_NS, name: "secret-gone-secret" }], lifecycle: "delete-secret-first" },
  { id: "secret-from-class", flags: "default", what: "PV without deletion-secret annotations", class: { parameters: fixedSecret("provisioner", "prov") }, claim: {}, expect: "provisioned", lifecycle: "strip-deletion-secrets" },
  { id: "populator", flags: "default", what: "dataSourceRef to a populator's kind", class: {}, claim: { populator: true }, expect: "ignored" },

  // ---- --extra-create-metadata --volume-name-prefix=vol --volume-name-uuid-length=16 -----------
  { id: "meta-plain", flags: "meta", what: "extra metadata, prefix, UUID length", class: {}, claim: {}, expect: "provisioned" },
  { id: "meta-params", flags: "meta", what: "extra metadata next to class parameters", class: { parameters: { "custom-param": "x" } }, claim: {}, expect: "provisioned" },
  { id: "meta-secret-pv", flags: "meta", what: "${pv.name} template with a prefix", class: { parameters: { [`${SECRET}node-publish-secret-name`]: "${pv.name}", [`${SECRET}node-publish-secret-namespace`]: SECRETS_NS } }, claim: {}, expect: "provisioned" },
  { id: "meta-clone", flags: "meta", what: "clone with a prefix", class: {}, claim: { cloneOf: "meta-plain" }, expect: "provisioned" },

  // ---- --strict-topology ------------------------------------------------------------------------
  { id: "strict-wffc", flags: "strict", what: "only the selected node's topology", class: { binding: "WaitForFirstConsumer" }, claim: { selectedNode: DRIVER_NODE }, expect: "provisioned" },
  { id: "strict-allowed", flags: "strict", what: "selected node within allowedTopologies", class: { binding: "WaitForFirstConsumer", allowedNodes: [DRIVER_NODE, OTHER_NODE] }, claim: { selectedNode: DRIVER_NODE }, expect: "provisioned" },
  { id: "strict-disallowed", flags: "strict", what: "selected node outside allowedTopologies", class: { binding: "WaitForFirstConsumer", allowedNodes: [OTHER_NODE] }, claim: { selectedNode: DRIVER_NODE }, expect: "fails" },
  { id: "strict-immediate", flags: "strict", what: "Immediate binding under strict topology", class: {}, claim: {}, expect: "provisioned" },

  // ---- --immediate-topology=false ---------------------------------------------------------------
  { id: "noimm-plain", flags: "noimm", what: "no requirements for Immediate binding", class: {}, claim: {}, expect: "provisioned" },
  { id: "noimm-allowed", flags: "noimm", what: "allowedTopologies still apply", class: { allowedNodes: [DRIVER_NODE] }, claim: {}, expect: "provisioned" },
  { id: "noimm-wffc", flags: "noimm", what: "late binding still aggregates", class: { binding: "WaitForFirstConsumer" }, claim: { selectedNode: DRIVER_NODE }, expect: "provisioned" },

  // ---- --default-fstype=ext4 --controller-publish-readonly --------------------------------------
  { id: "fs-default", flags: "fs", what: "default fsType", class: {}, claim: {}, expect: "provisioned" },
  { id: "fs-explicit", flags: "fs", what: "class fsType wins", class: { parameters: { [`${SECRET}fstype`]: "xfs" } }, claim: {}, expect: "provisioned" },
  { id: "fs-block", flags: "fs", what: "Block has no fsType", class: {}, claim: { volumeMode: "Block" }, expect: "provisioned" },
  { id: "fs-rox", flags: "fs", what: "ROX only: readOnly PV", class: {}, claim: { accessModes: ["ReadOnlyMany"] }, expect: "provisioned" },
  { id: "fs-rox-rwo", flags: "fs", what: "ROX and RWO: not readOnly", class: {}, claim: { accessModes: ["ReadOnlyMany", "ReadWriteOnce"] }, expect: "provisioned" },

  // ---- --feature-gates=Topology=false -----------------------------------------------------------
  { id: "notopo-immediate", flags: "notopo", what: "Immediate binding", class: {}, claim: {}, expect: "provisioned" },
  { id: "notopo-wffc", flags: "notopo", what: "late binding, node selected", class: { binding: "WaitForFirstConsumer" }, claim: { selectedNode: DRIVER_NODE }, expect: "provisioned" },
  { id: "notopo-allowed", flags: "notopo", what: "allowedTopologies ignored", class: { allowedNodes: [OTHER_NODE] }, claim: {}, expect: "provisioned" },

  // ---- --prevent-volume-mode-conversion=false ---------------------------------------------------
  { id: "noconv-source", flags: "noconv", what: "a Filesystem claim to snapshot", class: {}, claim: {}, expect: "provisioned" },
  { id: "noconv-block", flags: "noconv", what: "restore a Filesystem snapshot as Block", class: {}, claim: { restoreOf: "noconv-source", volumeMode: "Block" }, expect: "provisioned" },

  // ---- --node-deployment --node-deployment-immediate-binding=false ------------------------------
  { id: "node-noimm-immediate", flags: "node-noimm", what: "Immediate claim left alone", class: {}, claim: {}, expect: "ignored" },
  { id: "node-noimm-mine", flags: "node-noimm", what: "late binding on this node", class: { binding: "WaitForFirstConsumer" }, claim: { selectedNode: DRIVER_NODE }, expect: "provisioned" },

  // ---- --node-deployment ------------------------------------------------------------------------
  { id: "node-immediate", flags: "node", what: "Immediate claim taken by the node", class: {}, claim: {}, expect: "provisioned" },
  { id: "node-mine", flags: "node", what: "late binding on this node", class: { binding: "WaitForFirstConsumer" }, claim: { selectedNode: DRIVER_NODE }, expect: "provisioned" },
  { id: "node-other", flags: "node", what: "late binding on another node", class: { binding: "WaitForFirstConsumer" }, claim: { selectedNode: OTHER_NODE }, expect: "ignored" },
];

/** Flags rejected at start-up: only the exit code is compared. */
// biome-ignore format: one case per line, so that the table reads as a table
export const BAD_FLAGS: readonly BadFlagCase[] = [
  { id: "unknown-flag", what: "a flag that does not exist", args: ["--no-such-flag"] },
  { id: "uuid-length-nan", what: "a number flag given text", args: ["--volume-name-uuid-length=abc"] },
  { id: "timeout-bad", what: "a duration flag given text", args: ["--timeout=forever"] },
  { id: "bool-bad", what: "a boolean flag given text", args: ["--extra-create-metadata=maybe"] },
  { id: "qps-bad", what: "a float flag given text", args: ["--kube-api-qps=fast"] },
  { id: "both-endpoints", what: "--metrics-address and --http-endpoint together", args: ["--metrics-address=127.0.0.1:0", "--http-endpoint=127.0.0.1:0"] },
  { id: "node-no-env", what: "--node-deployment without NODE_NAME", args: ["--node-deployment"] },
  { id: "gate-unknown", what: "an unknown feature gate", args: ["--feature-gates=NoSuchGate=true"] },
  { id: "gate-bad-value", what: "a feature gate given text", args: ["--feature-gates=Topology=maybe"] },
  { id: "logging-format", what: "an unknown logging format", args: ["--logging-format=yaml"] },
  { id: "capacity-no-env", what: "--enable-capacity without NAMESPACE", args: ["--enable-capacity"] },
  { id: "uuid-length-big", what: "a UUID length beyond a UUID", args: ["--volume-name-uuid-length=64"] },
  { id: "workers-zero", what: "no worker threads", args: ["--worker-threads=0"] },
  { id: "timeout-zero", what: "a zero CSI timeout", args: ["--timeout=0s"] },
  { id: "help", what: "--help exits 0", args: ["--help"] },
];

export function flagSet(id: string): FlagSet {
  const f = FLAG_SETS.find((s) => s.id === id);
  if (!f) throw new Error(`unknown flag set ${id}`);
  return f;
}

export function casesOf(flags: string): Case[] {
  return CASES.filter((c) => c.flags === flags);
}

/**
 * Checks the table: unique ids that are valid object names, known flag sets, and sources that
 * are provisioned cases of the same flag set created before the cases using them, each used by
 * one case only (upstream updates a source's finalizers, and concurrent updates of one source
 * conflict). Returns the problems (empty when the table is sound).
 */
export function validateTable(
  cases: readonly Case[] = CASES,
  sets: readonly FlagSet[] = FLAG_SETS,
  badFlags: readonly BadFlagCase[] = BAD_FLAGS,
): string[] {
  const problems: string[] = [];
  const ids = new Set<string>();
  const dns = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
  for (const c of [...cases, ...badFlags]) {
    if (ids.has(c.id)) problems.push(`duplicate case id ${c.id}`);
    ids.add(c.id);
    if (!dns.test(c.id) || c.id.length > 40) problems.push(`case id ${c.id} is no short DNS label`);
  }
  const sourceUsers = new Map<string, string>();
  for (const c of cases) {
    if (!sets.some((s) => s.id === c.flags)) problems.push(`${c.id}: unknown flag set ${c.flags}`);
    for (const [how, src] of [
      ["clone", c.claim.cloneOf],
      ["restore", c.claim.restoreOf],
    ] as const) {
      if (src === undefined) continue;
      const user = sourceUsers.get(`${c.flags} ${how} ${src}`);
      if (user) problems.push(`${c.id}: ${how} source ${src} is used by ${user} too`);
      sourceUsers.set(`${c.flags} ${how} ${src}`, c.id);
      const s = cases.find((x) => x.id === src);
      if (!s) problems.push(`${c.id}: source ${src} is no case`);
      else if (s.flags !== c.flags) problems.push(`${c.id}: source ${src} is in another flag set`);
      else if (s.expect !== "provisioned")
        problems.push(`${c.id}: source ${src} is not provisioned`);
      else if (s.claim.cloneOf || s.claim.restoreOf)
        problems.push(`${c.id}: source ${src} has a source itself`);
    }
  }
  return problems;
}
