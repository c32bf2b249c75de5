/**
 * StorageClass parameters -> `CreateVolumeRequest.parameters`: the reserved
 * `csi.storage.k8s.io/` keys are the provisioner's own and never reach the driver; an unknown key
 * under that prefix is a configuration error. Also the fsType rules and `--extra-create-metadata`.
 */

/** Keys under this prefix are reserved for the provisioner. */
export const CSI_PARAMETER_PREFIX = "csi.storage.k8s.io/";

/** `csi.storage.k8s.io/fstype`. */
export const PREFIXED_FSTYPE_KEY = `${CSI_PARAMETER_PREFIX}fstype`;

/** The `--extra-create-metadata` keys. */
export const PVC_NAME_KEY = `${CSI_PARAMETER_PREFIX}pvc/name`;
export const PVC_NAMESPACE_KEY = `${CSI_PARAMETER_PREFIX}pvc/namespace`;
export const PV_NAME_KEY = `${CSI_PARAMETER_PREFIX}pv/name`;

/** Every reserved key the provisioner understands (stripped from the driver's parameters). */
export const RESERVED_PARAMETER_KEYS: ReadonlySet<string> = new Set(
  [
    "fstype",
    "secret-name",
    "secret-namespace",
    "provisioner-secret-name",
    "provisioner-secret-namespace",
    "controller-publish-secret-name",
    "controller-publish-secret-namespace",
    "node-stage-secret-name",
    "node-stage-secret-namespace",
    "node-publish-secret-name",
    "node-publish-secret-namespace",
    "controller-expand-secret-name",
    "controller-expand-secret-namespace",
    "node-expand-secret-name",
    "node-expand-secret-namespace",
    "controller-modify-secret-name",
    "controller-modify-secret-namespace",
  ].map((key) => CSI_PARAMETER_PREFIX + key),
);

export interface FsTypeResult {
  /** The fsType to use; `""` when neither the class nor `--default-fstype` names one. */
  fsType: string;
  /** Set when the class uses the deprecated `fstype` key (any case); worth a warning log. */
  deprecatedKey?: string;
}

/**
 * The fsType from the class parameters: `fstype` (case-insensitive, deprecated) or
 * `csi.storage.k8s.io/fstype`, falling back to `defaultFsType` (`--default-fstype`). Throws when
 * more than one of those keys is present.
 */
export function resolveFsType(
  parameters: Readonly<Record<string, string>> | undefined,
  defaultFsType = "",
): FsTypeResult {
  let fsType = "";
  let found = 0;
  let deprecatedKey: string | undefined;
  for (const [key, value] of Object.entries(parameters ?? {})) {
    if (key.toLowerCase() === "fstype") {
      deprecatedKey = key;
      fsType = value;
      found++;
    } else if (key === PREFIXED_FSTYPE_KEY) {
      fsType = value;
      found++;
    }
  }
  if (found > 1) {
    throw new Error(
      `fstype specified in parameters with both "fstype" and "${PREFIXED_FSTYPE_KEY}" keys`,
    );
  }
  if (fsType === "") fsType = defaultFsType;
  return deprecatedKey === undefined ? { fsType } : { fsType, deprecatedKey };
}

/**
 * The parameters the driver sees: every key outside `csi.storage.k8s.io/` is passed through
 * (including the deprecated `csiProvisionerSecretName` style keys); the known reserved keys are
 * dropped. Throws for an unknown key under the reserved prefix.
 */
export function stripReservedParameters(
  parameters: Readonly<Record<string, string>> | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(parameters ?? {})) {
    if (key.startsWith(CSI_PARAMETER_PREFIX)) {
      if (!RESERVED_PARAMETER_KEYS.has(key)) {
        throw new Error(
          `found unknown parameter key "${key}" with reserved namespace ${CSI_PARAMETER_PREFIX}`,
        );
      }
      continue;
    }
    out[key] = value;
  }
  return out;
}

export interface CreateParametersInput {
  /** `storageClass.parameters`. */
  parameters: Readonly<Record<string, string>> | undefined;
  /** `--extra-create-metadata`; default false. */
  extraCreateMetadata: boolean;
  pvcName: string;
  pvcNamespace: string;
  pvName: string;
}

/**
 * `CreateVolumeRequest.parameters`: {@link stripReservedParameters}, plus with
 * `--extra-create-metadata` the `csi.storage.k8s.io/pvc/name`, `.../pvc/namespace` and
 * `.../pv/name` keys. Throws as {@link stripReservedParameters}.
 */
export function buildCreateParameters(input: CreateParametersInput): Record<string, string> {
  const out = stripReservedParameters(input.parameters);
  if (input.extraCreateMetadata) {
    out[PVC_NAME_KEY] = input.pvcName;
    out[PVC_NAMESPACE_KEY] = input.pvcNamespace;
    out[PV_NAME_KEY] = input.pvName;
  }
  return out;
}
