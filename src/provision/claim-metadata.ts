/**
 * `--claim-metadata-prefixes` (off by default; not in upstream, which has long been asked for it:
 * external-provisioner #86, #700, #714, PR #1531): the claim's labels and annotations and its
 * namespace's labels whose keys start with one of the given prefixes reach the driver as
 * CreateVolume parameters, e.g. to tag the backend volume for billing.
 *
 * Keys, one family per source, all under the `csi.storage.k8s.io/` prefix that a StorageClass
 * cannot use for keys of its own (the provisioner rejects unknown ones) and one segment deeper
 * than `--extra-create-metadata`'s `csi.storage.k8s.io/pvc/name`, so nothing can collide:
 *
 * | Source | Parameter key |
 * |---|---|
 * | claim label `k` | `csi.storage.k8s.io/pvc/label/k` |
 * | claim annotation `k` | `csi.storage.k8s.io/pvc/annotation/k` |
 * | namespace label `k` | `csi.storage.k8s.io/namespace/label/k` |
 *
 * Keys under `csi.storage.k8s.io/` (where the claim may name secrets) and the
 * `kubectl.kubernetes.io/last-applied-configuration` annotation are never copied, whatever the
 * prefixes: secrets and whole-object copies never travel this way.
 */
import type { PersistentVolumeClaim } from "../kube/objects.ts";
import { errorText as errorMessage } from "../util/errors.ts";
import { CSI_PARAMETER_PREFIX } from "./parameters.ts";

export const CLAIM_LABEL_PARAMETER_PREFIX = `${CSI_PARAMETER_PREFIX}pvc/label/`;
export const CLAIM_ANNOTATION_PARAMETER_PREFIX = `${CSI_PARAMETER_PREFIX}pvc/annotation/`;
export const NAMESPACE_LABEL_PARAMETER_PREFIX = `${CSI_PARAMETER_PREFIX}namespace/label/`;

const NEVER_COPIED = new Set(["kubectl.kubernetes.io/last-applied-configuration"]);

/** Whether `key` is selected by `prefixes` and may be copied. */
export function selectedKey(key: string, prefixes: readonly string[]): boolean {
  if (key.startsWith(CSI_PARAMETER_PREFIX) || NEVER_COPIED.has(key)) return false;
  return prefixes.some((p) => key.startsWith(p));
}

function copy(
  into: Record<string, string>,
  from: Readonly<Record<string, string>> | null | undefined,
  prefixes: readonly string[],
  target: string,
): void {
  if (!from) return;
  for (const key of Object.keys(from).sort()) {
    if (selectedKey(key, prefixes)) into[`${target}${key}`] = from[key] ?? "";
  }
}

export interface ClaimMetadataInput {
  /** `--claim-metadata-prefixes`; empty: nothing is copied. */
  prefixes: readonly string[];
  claim: PersistentVolumeClaim;
  /** The labels of the claim's namespace; `undefined` when it could not be seen. */
  namespaceLabels: Readonly<Record<string, string>> | undefined;
}

/** The parameters to add to CreateVolume for the claim's selected metadata. */
export function claimMetadataParameters(input: ClaimMetadataInput): Record<string, string> {
  const out: Record<string, string> = {};
  if (input.prefixes.length === 0) return out;
  copy(out, input.claim.metadata.labels, input.prefixes, CLAIM_LABEL_PARAMETER_PREFIX);
  copy(out, input.claim.metadata.annotations, input.prefixes, CLAIM_ANNOTATION_PARAMETER_PREFIX);
  copy(out, input.namespaceLabels, input.prefixes, NAMESPACE_LABEL_PARAMETER_PREFIX);
  return out;
}

/**
 * Adds the selected metadata to `parameters` (the provisioning step), reading the namespace
 * labels through `getNamespaceLabels`. Returns an error message when the namespace cannot be
 * read (the attempt is then retried); a namespace that does not exist has no labels.
 */
export async function addClaimMetadata(
  parameters: Record<string, string>,
  prefixes: readonly string[] | undefined,
  claim: PersistentVolumeClaim,
  getNamespaceLabels:
    | ((name: string) => Promise<Readonly<Record<string, string>> | undefined>)
    | undefined,
): Promise<string | undefined> {
  if (!prefixes || prefixes.length === 0) return undefined;
  const namespace = claim.metadata.namespace ?? "";
  let namespaceLabels: Readonly<Record<string, string>> | undefined;
  if (getNamespaceLabels) {
    try {
      namespaceLabels = await getNamespaceLabels(namespace);
    } catch (error) {
      return `error getting namespace ${namespace} for --claim-metadata-prefixes (the provisioner needs get on namespaces): ${errorMessage(error)}`;
    }
  }
  Object.assign(parameters, claimMetadataParameters({ prefixes, claim, namespaceLabels }));
  return undefined;
}
