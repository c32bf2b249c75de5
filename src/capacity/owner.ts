/**
 * The owner of the CSIStorageCapacity objects (`--capacity-ownerref-level`, reference §1.2):
 * walk up the controller chain from the provisioner's own pod.
 *
 * - level < 0: no owner;
 * - level 0: the pod itself;
 * - level 1: the pod's controller (ReplicaSet, StatefulSet, DaemonSet) — taken from the pod's
 *   ownerReferences, so only `get` on pods is needed (upstream's RBAC);
 * - level 2: that controller's controller (the Deployment of a ReplicaSet), and so on: each
 *   further level GETs the object reached so far.
 *
 * At every step the owner followed is the reference with `controller: true`. The result always
 * has `controller: true` (so objects are recognised as "controlled by us") and no
 * `blockOwnerDeletion`.
 */
import type { KubeApi } from "../kube/api.ts";
import type { KubeObject, OwnerReference } from "../kube/objects.ts";
import type { Resource } from "../kube/resources.ts";
import { errorText } from "../util/errors.ts";

/** The owner written into every CSIStorageCapacity object. */
export interface CapacityOwner {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

/** `group/version` → group and version (`v1` is the core group). */
function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const i = apiVersion.indexOf("/");
  return i < 0
    ? { group: "", version: apiVersion }
    : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

/**
 * The REST resource of a kind: the lower-case plural (`ReplicaSet` → `replicasets`,
 * `DaemonSet` → `daemonsets`). Right for every built-in workload kind; a custom kind with an
 * irregular plural would need discovery, which this deliberately avoids.
 */
export function resourceForKind(apiVersion: string, kind: string): Resource {
  const { group, version } = splitApiVersion(apiVersion);
  const lower = kind.toLowerCase();
  let plural: string;
  if (/(s|x|z|ch|sh)$/.test(lower)) plural = `${lower}es`;
  else if (/[^aeiou]y$/.test(lower)) plural = `${lower.slice(0, -1)}ies`;
  else plural = `${lower}s`;
  return { group, version, plural, kind, namespaced: true };
}

/**
 * Resolves the owner of the CSIStorageCapacity objects: `undefined` for a negative `level`,
 * else the object `level` steps up the controller chain from pod `namespace/podName`. Rejects
 * when an object on the way cannot be read or has no controlling owner.
 */
export async function resolveOwner(
  api: KubeApi,
  namespace: string,
  podName: string,
  level: number,
  signal?: AbortSignal,
): Promise<CapacityOwner | undefined> {
  if (level < 0) return undefined;
  let current = { apiVersion: "v1", kind: "Pod", name: podName };
  for (let remaining = level; ; remaining--) {
    const resource = resourceForKind(current.apiVersion, current.kind);
    let obj: KubeObject;
    try {
      obj = await api.resource(resource).get(current.name, namespace, { signal });
    } catch (e) {
      throw new Error(
        `Cannot look up the owner of CSIStorageCapacity objects: cannot get ${current.kind} ${namespace}/${current.name}: ${errorText(e)}`,
        { cause: e },
      );
    }
    if (remaining === 0) {
      return { ...current, uid: obj.metadata.uid ?? "" };
    }
    const controller = (obj.metadata.ownerReferences ?? []).find(
      (r: OwnerReference) => r.controller === true,
    );
    if (!controller) {
      throw new Error(
        `Cannot look up the owner of CSIStorageCapacity objects: ${current.kind} ${namespace}/${current.name} has no controlling owner, so --capacity-ownerref-level=${level} cannot be reached`,
      );
    }
    if (remaining === 1) {
      return {
        apiVersion: controller.apiVersion,
        kind: controller.kind,
        name: controller.name,
        uid: controller.uid,
      };
    }
    current = { apiVersion: controller.apiVersion, kind: controller.kind, name: controller.name };
  }
}

/** The ownerReference written for `owner`. */
export function ownerReferenceOf(owner: CapacityOwner): OwnerReference {
  return {
    apiVersion: owner.apiVersion,
    kind: owner.kind,
    name: owner.name,
    uid: owner.uid,
    controller: true,
  };
}

/** Whether `obj` is controlled by `owner` (a `controller: true` reference with its UID). */
export function isControlledBy(obj: KubeObject, owner: CapacityOwner): boolean {
  return (obj.metadata.ownerReferences ?? []).some(
    (r) => r.controller === true && r.uid === owner.uid,
  );
}
