/**
 * Secret references from StorageClass parameters (upstream `getSecretReference`).
 *
 * Seven kinds of secret can be named, each by a `csi.storage.k8s.io/<kind>-secret-name` /
 * `-namespace` pair; four kinds also accept a deprecated un-prefixed pair (`csiProvisionerSecretName`
 * ...). When a kind names no secret, the default pair `csi.storage.k8s.io/secret-name` /
 * `-namespace` applies to it: upstream resolves every kind, the controller-modify kind included,
 * through the same function with the same default fallback.
 *
 * Values are templates expanded like Go's `os.Expand` (`${token}` or `$token`):
 * - namespace templates may use `${pv.name}` and `${pvc.namespace}`;
 * - name templates may use `${pv.name}`, `${pvc.name}`, `${pvc.namespace}` and
 *   `${pvc.annotations['KEY']}`.
 *
 * Any other token is an error listing it. The resolved namespace must be a DNS-1123 label and the
 * name a DNS-1123 subdomain.
 */
import type { PersistentVolume, Secret, SecretReference, StorageClass } from "../kube/objects.ts";
import { CSI_PARAMETER_PREFIX } from "./parameters.ts";

export type SecretKind =
  | "provisioner"
  | "controllerPublish"
  | "nodeStage"
  | "nodePublish"
  | "controllerExpand"
  | "nodeExpand"
  | "controllerModify";

/** Every kind, in the order upstream resolves them. */
export const SECRET_KINDS: readonly SecretKind[] = [
  "provisioner",
  "controllerPublish",
  "nodeStage",
  "nodePublish",
  "controllerExpand",
  "nodeExpand",
  "controllerModify",
];

interface SecretParams {
  /** The name used in messages, as upstream spells it. */
  display: string;
  nameKey: string;
  namespaceKey: string;
  deprecatedNameKey?: string;
  deprecatedNamespaceKey?: string;
}

function prefixed(kind: string, display: string, deprecated?: string): SecretParams {
  const params: SecretParams = {
    display,
    nameKey: `${CSI_PARAMETER_PREFIX}${kind}secret-name`,
    namespaceKey: `${CSI_PARAMETER_PREFIX}${kind}secret-namespace`,
  };
  if (deprecated) {
    params.deprecatedNameKey = `csi${deprecated}SecretName`;
    params.deprecatedNamespaceKey = `csi${deprecated}SecretNamespace`;
  }
  return params;
}

const DEFAULT_PARAMS = prefixed("", "Default");

const PARAMS: Record<SecretKind, SecretParams> = {
  provisioner: prefixed("provisioner-", "Provisioner", "Provisioner"),
  controllerPublish: prefixed("controller-publish-", "ControllerPublish", "ControllerPublish"),
  nodeStage: prefixed("node-stage-", "NodeStage", "NodeStage"),
  nodePublish: prefixed("node-publish-", "NodePublish", "NodePublish"),
  controllerExpand: prefixed("controller-expand-", "ControllerExpand"),
  nodeExpand: prefixed("node-expand-", "NodeExpand"),
  controllerModify: prefixed("controller-modify-", "ControllerModify"),
};

/** The StorageClass parameter keys of one kind of secret. */
export function secretParameterKeys(kind: SecretKind): {
  nameKey: string;
  namespaceKey: string;
  deprecatedNameKey?: string;
  deprecatedNamespaceKey?: string;
} {
  const { display: _, ...keys } = PARAMS[kind];
  return keys;
}

/** The templates of one kind, or `undefined` when the class names no such secret. */
function templatesFor(
  params: SecretParams,
  parameters: Readonly<Record<string, string>>,
): { name: string; namespace: string } | undefined {
  const has = (key: string | undefined): key is string =>
    key !== undefined && Object.hasOwn(parameters, key);
  const names = [params.deprecatedNameKey, params.nameKey].filter(has);
  const namespaces = [params.deprecatedNamespaceKey, params.namespaceKey].filter(has);
  // Upstream's texts (they reach the ProvisioningFailed event as they are).
  const what = `${params.display} secrets`;
  if (names.length > 1 || namespaces.length > 1) {
    throw new Error(
      `${what} specified in parameters with both "csi" and "${CSI_PARAMETER_PREFIX}" keys`,
    );
  }
  if (names.length !== namespaces.length) {
    throw new Error(`either name and namespace for ${what} specified, Both must be specified`);
  }
  if (names.length === 0) return undefined;
  const name = parameters[names[0]!]!;
  const namespace = parameters[namespaces[0]!]!;
  if (name === "" || namespace === "") {
    throw new Error(
      `${what} specified in parameters but value of either namespace or name is empty`,
    );
  }
  return { name, namespace };
}

/** Runs `fn`, prefixing the message of what it throws. */
function prefixError<T>(prefix: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw new Error(`${prefix}${(error as Error).message}`);
  }
}

function isShellSpecial(c: string): boolean {
  return "*#$@!?-0123456789".includes(c);
}

function isAlphaNum(c: string): boolean {
  return /^[A-Za-z0-9_]$/.test(c);
}

/**
 * Expands `$name` and `${name}` in `template` like Go's `os.Expand`, looking names up in
 * `params`. Throws `invalid tokens: ["a" "b"]` (sorted, de-duplicated) when a name is unknown.
 */
export function expandTemplate(template: string, params: ReadonlyMap<string, string>): string {
  const missing = new Set<string>();
  let out = "";
  let i = 0;
  while (i < template.length) {
    const c = template[i]!;
    if (c !== "$" || i + 1 >= template.length) {
      out += c;
      i++;
      continue;
    }
    const rest = template.slice(i + 1);
    let name = "";
    let width = 0;
    if (rest[0] === "{") {
      if (rest.length > 2 && isShellSpecial(rest[1]!) && rest[2] === "}") {
        name = rest[1]!;
        width = 3;
      } else {
        const close = rest.indexOf("}", 1);
        if (close === 1)
          width = 2; // "${}": bad syntax, eaten
        else if (close < 0)
          width = 1; // "${" without "}": bad syntax, "${" eaten
        else {
          name = rest.slice(1, close);
          width = close + 1;
        }
      }
    } else if (isShellSpecial(rest[0]!)) {
      name = rest[0]!;
      width = 1;
    } else {
      while (width < rest.length && isAlphaNum(rest[width]!)) width++;
      name = rest.slice(0, width);
    }
    if (name === "" && width === 0) {
      out += "$"; // "$" not followed by a name: kept
    } else if (name !== "") {
      const value = params.get(name);
      if (value === undefined) missing.add(name);
      else out += value;
    }
    i += 1 + width;
  }
  if (missing.size > 0) {
    const list = [...missing].sort().map((m) => JSON.stringify(m));
    throw new Error(`invalid tokens: [${list.join(" ")}]`);
  }
  return out;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A DNS-1123 label (a namespace name): at most 63 of `[a-z0-9-]`, alphanumeric at both ends. */
export function isDns1123Label(value: string): boolean {
  return value.length <= 63 && DNS1123_LABEL.test(value);
}

/** A DNS-1123 subdomain (a Secret name): at most 253 characters, dot-separated labels. */
export function isDns1123Subdomain(value: string): boolean {
  return value.length <= 253 && DNS1123_SUBDOMAIN.test(value);
}

/** The parts of the claim a template may read. Absent for a claim that no longer exists. */
export interface TemplateClaim {
  name: string;
  namespace: string;
  annotations?: Readonly<Record<string, string>>;
}

/**
 * The reference for one kind of secret (with the default-secret fallback), or `undefined` when the
 * class names none. Throws a message naming the kind and the cause for an invalid configuration.
 */
export function resolveSecretReference(
  kind: SecretKind,
  parameters: Readonly<Record<string, string>> | undefined,
  pvName: string,
  claim?: TemplateClaim,
): SecretReference | undefined {
  const params = parameters ?? {};
  const templates =
    prefixError("failed to get name and namespace template from params: ", () =>
      templatesFor(PARAMS[kind], params),
    ) ??
    prefixError("failed to get default name and namespace template from params: ", () =>
      templatesFor(DEFAULT_PARAMS, params),
    );
  if (!templates) return undefined;

  const namespaceParams = new Map([["pv.name", pvName]]);
  if (claim) namespaceParams.set("pvc.namespace", claim.namespace);
  let namespace: string;
  try {
    namespace = expandTemplate(templates.namespace, namespaceParams);
  } catch (error) {
    throw new Error(
      `error resolving value ${JSON.stringify(templates.namespace)}: ${(error as Error).message}`,
    );
  }
  if (!isDns1123Label(namespace)) {
    throw new Error(
      namespace === templates.namespace
        ? `${JSON.stringify(namespace)} is not a valid namespace name`
        : `${JSON.stringify(templates.namespace)} resolved to ${JSON.stringify(namespace)} which is not a valid namespace name`,
    );
  }

  const nameParams = new Map([["pv.name", pvName]]);
  if (claim) {
    nameParams.set("pvc.name", claim.name);
    nameParams.set("pvc.namespace", claim.namespace);
    for (const [key, value] of Object.entries(claim.annotations ?? {})) {
      nameParams.set(`pvc.annotations['${key}']`, value);
    }
  }
  let name: string;
  try {
    name = expandTemplate(templates.name, nameParams);
  } catch (error) {
    throw new Error(
      `error resolving value ${JSON.stringify(templates.name)}: ${(error as Error).message}`,
    );
  }
  if (!isDns1123Subdomain(name)) {
    throw new Error(
      name === templates.name
        ? `${JSON.stringify(name)} is not a valid secret name`
        : `${JSON.stringify(templates.name)} resolved to ${JSON.stringify(name)} which is not a valid secret name`,
    );
  }
  return { name, namespace };
}

/** The resolved reference of every kind; a kind the class does not name is absent. */
export type SecretReferences = Partial<Record<SecretKind, SecretReference>>;

/**
 * Resolves all seven kinds in upstream's order. Throws the first configuration error, as
 * {@link resolveSecretReference}.
 */
export function resolveSecretReferences(
  parameters: Readonly<Record<string, string>> | undefined,
  pvName: string,
  claim?: TemplateClaim,
): SecretReferences {
  const refs: SecretReferences = {};
  for (const kind of SECRET_KINDS) {
    const ref = resolveSecretReference(kind, parameters, pvName, claim);
    if (ref) refs[kind] = ref;
  }
  return refs;
}

/** PV annotations naming the provisioner secret, read again when the volume is deleted. */
export const ANN_DELETION_SECRET_NAME = "volume.kubernetes.io/provisioner-deletion-secret-name";
export const ANN_DELETION_SECRET_NAMESPACE =
  "volume.kubernetes.io/provisioner-deletion-secret-namespace";
/** PV annotations naming the controller-modify secret (read by the external-resizer). */
export const ANN_MODIFY_SECRET_NAME = "volume.kubernetes.io/controller-modify-secret-name";
export const ANN_MODIFY_SECRET_NAMESPACE =
  "volume.kubernetes.io/controller-modify-secret-namespace";

/**
 * The PV annotations for `refs`: the deletion-secret pair always (empty strings when there is no
 * provisioner secret), the controller-modify pair only when that secret is set.
 */
export function secretAnnotations(refs: SecretReferences): Record<string, string> {
  const annotations: Record<string, string> = {
    [ANN_DELETION_SECRET_NAME]: refs.provisioner?.name ?? "",
    [ANN_DELETION_SECRET_NAMESPACE]: refs.provisioner?.namespace ?? "",
  };
  if (refs.controllerModify) {
    annotations[ANN_MODIFY_SECRET_NAME] = refs.controllerModify.name ?? "";
    annotations[ANN_MODIFY_SECRET_NAMESPACE] = refs.controllerModify.namespace ?? "";
  }
  return annotations;
}

/** Which secret DeleteVolume for a PV needs. */
export type DeletionSecret =
  | { kind: "none" }
  | {
      kind: "secret";
      ref: { name: string; namespace: string };
      /** Where the reference came from: the PV's annotations, or the StorageClass (old PVs). */
      from: "annotations" | "storageClass";
    };

/**
 * The provisioner secret to send with DeleteVolume for `pv`:
 * - with both deletion-secret annotations present, they decide (both empty: no secret);
 * - without them (PVs from old provisioners), the provisioner secret is resolved again from
 *   `storageClass` (the PV's class, when it still exists) with a claim built from `claimRef`.
 *
 * Upstream deletes anyway when the Secret cannot be read, so the controller should log a failed
 * GET and go on without credentials. Throws when the StorageClass parameters are invalid.
 */
export function deletionSecret(pv: PersistentVolume, storageClass?: StorageClass): DeletionSecret {
  const annotations = pv.metadata.annotations ?? {};
  if (
    Object.hasOwn(annotations, ANN_DELETION_SECRET_NAME) &&
    Object.hasOwn(annotations, ANN_DELETION_SECRET_NAMESPACE)
  ) {
    const name = annotations[ANN_DELETION_SECRET_NAME]!;
    const namespace = annotations[ANN_DELETION_SECRET_NAMESPACE]!;
    if (name !== "" && namespace !== "") {
      return { kind: "secret", ref: { name, namespace }, from: "annotations" };
    }
    return { kind: "none" };
  }
  const claimRef = pv.spec.claimRef;
  if (!storageClass || !claimRef) return { kind: "none" };
  const ref = resolveSecretReference(
    "provisioner",
    storageClass.parameters,
    pv.metadata.name ?? "",
    { name: claimRef.name ?? "", namespace: claimRef.namespace ?? "" },
  );
  if (!ref) return { kind: "none" };
  return {
    kind: "secret",
    ref: { name: ref.name ?? "", namespace: ref.namespace ?? "" },
    from: "storageClass",
  };
}

/**
 * The credentials map of a Secret (`CreateVolumeRequest.secrets`, `DeleteVolumeRequest.secrets`):
 * every `data` key with its base64 value decoded as UTF-8. Never log the result.
 */
export function secretCredentials(secret: Secret): Record<string, string> {
  const decoder = new TextDecoder();
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(secret.data ?? {})) {
    const binary = atob(value);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    out[key] = decoder.decode(bytes);
  }
  return out;
}
