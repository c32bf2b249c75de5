/**
 * Every command-line flag, in one valibot table: name, default, type, help line, group, the
 * commands that accept it, and whether the feature behind it is built yet. `--help`, the README
 * table, the parser and the {@link Config} type all come from here.
 *
 * Conventions:
 * - A flag's config property is its name in camelCase (`--csi-address` -> `csiAddress`), except
 *   `-v`, which is `verbosity`. Durations are numbers of milliseconds and their property ends in
 *   `Ms` (`--timeout` -> `timeoutMs`, `--leader-election-lease-duration` ->
 *   `leaderElectionLeaseDurationMs`).
 * - Each flag's schema takes the list of values given on the command line, in order (`string[]`):
 *   scalar flags keep the last one, `--leader-election-labels`, `--feature-gates` and `--vmodule`
 *   merge them all. The default is written the way upstream's pflag shows it (`"10s"`, `"pvc"`)
 *   and goes through the same parsing as a user's value, so help text and behaviour cannot drift.
 * - Values are parsed with Go's rules (`strconv.ParseBool`, `ParseInt` with base prefixes,
 *   `time.ParseDuration`) because manifests written for the Go sidecar must mean the same here.
 */
import * as v from "valibot";
import { tryParseDuration } from "./duration.ts";

// ---------------------------------------------------------------------------------------------
// Vocabulary

/** Commands that take flags. `version` and `help` take none of their own. */
export type CommandName = "run" | "probe" | "dev" | "orphans";
export const COMMANDS: readonly CommandName[] = ["run", "probe", "dev", "orphans"];

/** Sections of `--help`, in display order. */
export type FlagGroup =
  | "common"
  | "leaderElection"
  | "provisioner"
  | "capacity"
  | "nodeDeployment"
  | "extensions"
  | "featureGates"
  | "logging"
  | "probe"
  | "dev";

export const GROUP_TITLES: Readonly<Record<FlagGroup, string>> = {
  common: "Common sidecar flags",
  leaderElection: "Leader election flags",
  provisioner: "Provisioner flags",
  capacity: "Storage capacity flags",
  nodeDeployment: "Distributed provisioning flags",
  extensions: "Beyond upstream (each off by default)",
  featureGates: "Feature gates",
  logging: "Logging flags",
  probe: "probe flags",
  dev: "dev flags",
};

/**
 * - `implemented`: the flag works.
 * - `planned`: accepted, but the feature behind it is not built yet; start-up warns when it is
 *   set to anything but its default.
 * - `no-op`: accepted for compatibility and deliberately without effect here (see `noEffect`).
 */
export type FlagStatus = "implemented" | "planned" | "no-op";

export type FlagKind =
  | "string"
  | "bool"
  | "int"
  | "uint"
  | "float"
  | "duration"
  | "enum"
  | "quantity"
  | "level"
  | "vmodule"
  | "labels"
  | "featureGates";

/** What the table says about one flag. */
export type FlagMeta = {
  /** Long name without dashes: `csi-address`. */
  readonly name: string;
  /** One-letter alias (`v`, `h`), written `-v`. */
  readonly shorthand?: string;
  readonly kind: FlagKind;
  /** The word `--help` shows after the flag name (pflag's type name); empty for booleans. */
  readonly typeName: string;
  /** The default as upstream's pflag shows it (`"10s"`, `"pvc"`, `"-1"`); absent for maps. */
  readonly default?: string;
  /** Replaces the default in help when it is derived from other flags. */
  readonly defaultText?: string;
  /** One line for `--help` and the README. */
  readonly help: string;
  readonly group: FlagGroup;
  readonly status: FlagStatus;
  /** Why a `no-op` flag has no effect. */
  readonly noEffect?: string;
  /** Commands that accept the flag. */
  readonly commands: readonly CommandName[];
  /** Later occurrences merge into earlier ones instead of replacing them. */
  readonly merge: boolean;
};

/** {@link FlagMeta} plus the config property it fills. */
export type FlagInfo = FlagMeta & { readonly key: string };

// ---------------------------------------------------------------------------------------------
// Go value syntax

type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = (error: string): Parsed<never> => ({ ok: false, error });

const TRUE_WORDS = new Set(["1", "t", "T", "TRUE", "true", "True"]);
const FALSE_WORDS = new Set(["0", "f", "F", "FALSE", "false", "False"]);

/** `strconv.ParseBool`. */
export function parseGoBool(text: string): Parsed<boolean> {
  if (TRUE_WORDS.has(text)) return ok(true);
  if (FALSE_WORDS.has(text)) return ok(false);
  return fail("not a boolean (use true or false)");
}

/** Go's `underscoreOK`: underscores only between digits or after a base prefix. */
function underscoresOk(body: string): boolean {
  let saw = "^";
  let i = 0;
  let hex = false;
  if (body.length >= 2 && body[0] === "0" && "bBoOxX".includes(body[1]!)) {
    hex = body[1] === "x" || body[1] === "X";
    i = 2;
    saw = "0";
  }
  for (; i < body.length; i++) {
    const c = body[i]!;
    if ((c >= "0" && c <= "9") || (hex && /[a-fA-F]/.test(c))) {
      saw = "0";
    } else if (c === "_") {
      if (saw !== "0") return false;
      saw = "_";
    } else {
      return false;
    }
  }
  return saw !== "_";
}

/**
 * `strconv.ParseInt(s, 0, 64)` (`signed`) or `ParseUint(s, 0, 64)`: decimal, `0x` hex, `0o` or
 * leading-zero octal, `0b` binary, `_` digit separators. Limited to JavaScript's safe integers.
 */
function parseGoInteger(text: string, signed: boolean): Parsed<number> {
  let s = text;
  let neg = false;
  if (signed && (s.startsWith("+") || s.startsWith("-"))) {
    neg = s[0] === "-";
    s = s.slice(1);
  }
  const what = signed ? "not an integer" : "not a non-negative integer";
  if (s === "" || !underscoresOk(s)) return fail(what);
  const digits = s.replaceAll("_", "");
  let base = 10;
  let body = digits;
  if (/^0[xX]/.test(digits)) {
    base = 16;
    body = digits.slice(2);
  } else if (/^0[bB]/.test(digits)) {
    base = 2;
    body = digits.slice(2);
  } else if (/^0[oO]/.test(digits)) {
    base = 8;
    body = digits.slice(2);
  } else if (digits.length > 1 && digits[0] === "0") {
    base = 8;
    body = digits.slice(1);
  }
  const alphabet = "0123456789abcdef".slice(0, base);
  if (body === "" || ![...body.toLowerCase()].every((c) => alphabet.includes(c))) return fail(what);
  const magnitude = BigInt(
    base === 10 ? body : `0${base === 16 ? "x" : base === 8 ? "o" : "b"}${body}`,
  );
  const value = neg ? -magnitude : magnitude;
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    return fail("out of range");
  }
  return ok(Number(value));
}

export function parseGoInt(text: string): Parsed<number> {
  return parseGoInteger(text, true);
}

export function parseGoUint(text: string): Parsed<number> {
  return parseGoInteger(text, false);
}

/** `strconv.ParseFloat(s, 64)` for finite decimal numbers (`5`, `0.5`, `1e3`). */
export function parseGoFloat(text: string): Parsed<number> {
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return fail("not a number");
  const n = Number(text);
  return Number.isFinite(n) ? ok(n) : fail("out of range");
}

/** A Kubernetes resource quantity such as `512`, `1K`, `2Ki`, `5Mi`, `1e3`. */
const QUANTITY = /^\+?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/;

/** Kubernetes label key (optional DNS-subdomain prefix + `/` + name) and value syntax. */
const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return `label key ${JSON.stringify(key)} has an invalid prefix (a DNS subdomain is expected)`;
  }
  if (!LABEL_NAME.test(name)) {
    return `label key ${JSON.stringify(key)} is not a valid label name (at most 63 characters: letters, digits, '-', '_', '.', starting and ending with a letter or digit)`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Value types: a valibot schema from the list of given values to the typed value

type ValueSchema<T> = v.GenericSchema<string[], T>;

type ValueType<T> = {
  readonly kind: FlagKind;
  readonly typeName: string;
  readonly merge: boolean;
  readonly schema: ValueSchema<T>;
};

/** A flag whose last occurrence wins, parsed by `parse`. */
function scalar<T>(
  kind: FlagKind,
  typeName: string,
  parse: (raw: string) => Parsed<T>,
): ValueType<T> {
  return {
    kind,
    typeName,
    merge: false,
    schema: v.pipe(
      v.array(v.string()),
      v.rawTransform(({ dataset, addIssue, NEVER }) => {
        const raw = dataset.value[dataset.value.length - 1] ?? "";
        const r = parse(raw);
        if (!r.ok) {
          addIssue({ message: r.error, received: JSON.stringify(raw) });
          return NEVER;
        }
        return r.value;
      }),
    ),
  };
}

/** A flag whose occurrences all count, folded by `parse`. */
function merged<T>(
  kind: FlagKind,
  typeName: string,
  parse: (all: string[]) => Parsed<T> & { raw?: string },
): ValueType<T> {
  return {
    kind,
    typeName,
    merge: true,
    schema: v.pipe(
      v.array(v.string()),
      v.rawTransform(({ dataset, addIssue, NEVER }) => {
        const r = parse(dataset.value);
        if (!r.ok) {
          addIssue({
            message: r.error,
            received: JSON.stringify(r.raw ?? dataset.value.join(",")),
          });
          return NEVER;
        }
        return r.value;
      }),
    ),
  };
}

type Check<T> = (value: T) => string | undefined;

function checked<T>(
  parse: (raw: string) => Parsed<T>,
  check?: Check<T>,
): (raw: string) => Parsed<T> {
  return (raw) => {
    const r = parse(raw);
    if (!r.ok || check === undefined) return r;
    const problem = check(r.value);
    return problem === undefined ? r : fail(problem);
  };
}

const stringValue = (check?: Check<string>) =>
  scalar(
    "string",
    "string",
    checked((raw) => ok(raw), check),
  );
const boolValue = () => scalar("bool", "", parseGoBool);
const intValue = (check?: Check<number>) => scalar("int", "int", checked(parseGoInt, check));
const uintValue = (check?: Check<number>) => scalar("uint", "uint", checked(parseGoUint, check));
const floatValue = () => scalar("float", "float", parseGoFloat);

/** A Go duration, as milliseconds. */
const durationValue = (check?: Check<number>) =>
  scalar(
    "duration",
    "duration",
    checked((raw) => {
      const r = tryParseDuration(raw);
      return r.ok ? ok(r.ms) : fail(r.error);
    }, check),
  );

function enumValue<const T extends string>(options: readonly T[]): ValueType<T> {
  return scalar("enum", "string", (raw) =>
    (options as readonly string[]).includes(raw)
      ? ok(raw as T)
      : fail(`must be one of ${options.map((o) => JSON.stringify(o)).join(", ")}`),
  );
}

const quantityValue = () =>
  scalar("quantity", "quantity", (raw) =>
    QUANTITY.test(raw) ? ok(raw) : fail("not a size (e.g. 512, 1K, 2Ki, 5Mi)"),
  );

/** klog's `-v`: `strconv.ParseUint(s, 10, 31)`. */
const levelValue = () =>
  scalar("level", "Level", (raw) =>
    /^\d+$/.test(raw) && Number(raw) < 2 ** 31
      ? ok(Number(raw))
      : fail("not a verbosity level (a non-negative integer)"),
  );

export type VModuleItem = { readonly pattern: string; readonly verbosity: number };

/** `--vmodule=pattern=N,...`; repeated flags append. */
const vmoduleValue = () =>
  merged<VModuleItem[]>("vmodule", "pattern=N,...", (all) => {
    const items: VModuleItem[] = [];
    for (const occurrence of all) {
      for (const part of occurrence.split(",")) {
        if (part === "") continue;
        const pieces = part.split("=");
        if (pieces.length !== 2 || pieces[0] === "" || pieces[1] === "") {
          return {
            ...fail(`${JSON.stringify(part)} does not have the pattern=N format`),
            raw: occurrence,
          };
        }
        if (!/^\d+$/.test(pieces[1]!) || Number(pieces[1]) >= 2 ** 31) {
          return { ...fail(`${JSON.stringify(part)} has an invalid verbosity`), raw: occurrence };
        }
        items.push({ pattern: pieces[0]!, verbosity: Number(pieces[1]) });
      }
    }
    return ok(items);
  });

/** `k1:v1,k2:v2` (csi-lib-utils `stringMap`); repeated flags merge, later keys win. */
const labelsValue = () =>
  merged<Record<string, string>>("labels", "mapStringString", (all) => {
    const labels: Record<string, string> = {};
    for (const occurrence of all) {
      for (const item of occurrence.split(",")) {
        const pieces = item.split(":");
        if (pieces.length !== 2) {
          return {
            ...fail(`malformed item ${JSON.stringify(item)} (expected key:value)`),
            raw: occurrence,
          };
        }
        const [key, value] = pieces as [string, string];
        const keyProblem = labelKeyProblem(key);
        if (keyProblem !== undefined) return { ...fail(keyProblem), raw: occurrence };
        if (value !== "" && !LABEL_NAME.test(value)) {
          return {
            ...fail(
              `label value ${JSON.stringify(value)} is not valid (at most 63 characters: letters, digits, '-', '_', '.', starting and ending with a letter or digit)`,
            ),
            raw: occurrence,
          };
        }
        labels[key] = value;
      }
    }
    return ok(labels);
  });

/** `a,b,c`: a list of key prefixes; repeated flags append. */
const prefixesValue = () =>
  merged<string[]>("string", "strings", (all) => {
    const out: string[] = [];
    for (const occurrence of all) {
      for (const item of occurrence.split(",")) {
        const prefix = item.trim();
        if (prefix === "") continue;
        if (/\s/.test(prefix)) {
          return {
            ...fail(`prefix ${JSON.stringify(prefix)} contains white space`),
            raw: occurrence,
          };
        }
        if (prefix.startsWith("csi.storage.k8s.io/")) {
          return {
            ...fail(
              `prefix ${JSON.stringify(prefix)} is reserved: keys under csi.storage.k8s.io/ (secret references) are never copied`,
            ),
            raw: occurrence,
          };
        }
        if (!out.includes(prefix)) out.push(prefix);
      }
    }
    return ok(out);
  });

// ---------------------------------------------------------------------------------------------
// Feature gates (reference 1.3)

export type GateStage = "ALPHA" | "BETA" | "GA";

export type GateMeta = {
  readonly stage: GateStage;
  readonly default: boolean;
  readonly help: string;
  /** Whether the feature the gate switches is built; see {@link FlagStatus}. */
  readonly status: Exclude<FlagStatus, "no-op">;
};

export const FEATURE_GATES = {
  Topology: {
    stage: "GA",
    default: true,
    help: "Pass topology requirements to CreateVolume when the driver has the VOLUME_ACCESSIBILITY_CONSTRAINTS capability.",
    status: "implemented",
  },
  CrossNamespaceVolumeDataSource: {
    stage: "ALPHA",
    default: false,
    help: "Allow dataSourceRef.namespace, checked against Gateway API ReferenceGrants.",
    status: "implemented",
  },
  VolumeAttributesClass: {
    stage: "GA",
    default: true,
    help: "Pass VolumeAttributesClass parameters to CreateVolume. When not set explicitly, it is turned off if the cluster lacks the storage.k8s.io/v1 VolumeAttributesClass API.",
    status: "implemented",
  },
  ReleaseLeaderElectionOnExit: {
    stage: "ALPHA",
    default: true,
    help: "On SIGTERM or SIGINT, stop the controllers, then release the leader-election Lease, so a standby replica takes over at once instead of after the lease duration. On by default here (upstream: off); =false keeps the Lease until it expires.",
    status: "implemented",
  },
} as const satisfies Record<string, GateMeta>;

export type FeatureGateName = keyof typeof FEATURE_GATES;
export type FeatureGates = Readonly<Record<FeatureGateName, boolean>>;
export const FEATURE_GATE_NAMES = Object.keys(FEATURE_GATES) as FeatureGateName[];

/**
 * Gates upstream has removed because they went GA and are always on. Upstream 6.2+ rejects them
 * as unknown, yet many published manifests still set them (ceph-csi, csi-driver-smb,
 * azuredisk-csi-driver); here `=true` is accepted with a warning and `=false` is an error, since
 * the behaviour cannot be turned off.
 */
export const REMOVED_GATES: Readonly<Record<string, string>> = {
  HonorPVReclaimPolicy:
    "the feature is GA and always on (the PV deletion-protection finalizer is always used)",
};

/**
 * Flags of older upstream releases that v6 rejects (exit 2) but published manifests still pass
 * (csi-driver-smb's older deploys, Portworx's operator for older images). Each is accepted with
 * one start-up warning and mapped onto today's meaning; none is listed in `--help`.
 */
export type LegacyFlag =
  | {
      /** A boolean read exactly like the flag it stands for. */
      readonly kind: "alias";
      readonly replacement: string;
      readonly warning: string;
    }
  | {
      /** Takes a value; `check` says why a value cannot be honoured. */
      readonly kind: "value";
      readonly warning: (value: string) => string;
      readonly check?: (value: string) => string | undefined;
    };

export const LEGACY_FLAGS: Readonly<Record<string, LegacyFlag>> = {
  "enable-leader-election": {
    kind: "alias",
    replacement: "leader-election",
    warning: "--enable-leader-election is the old name of --leader-election: read as such",
  },
  "leader-election-type": {
    kind: "value",
    warning: () =>
      "--leader-election-type=leases is accepted and ignored: a Lease is the only kind of leader-election lock",
    check: (value) =>
      value === "leases"
        ? undefined
        : `--leader-election-type=${value} is not supported: leader election uses coordination.k8s.io Leases only (--leader-election-type=leases, or drop the flag)`,
  },
  provisioner: {
    kind: "value",
    warning: (value) =>
      `--provisioner=${value} is ignored: the provisioner name is the driver's own, from GetPluginInfo`,
  },
};

/** Gates every Kubernetes feature gate set knows: they switch all alpha or all beta gates. */
export const META_GATES = { AllAlpha: "ALPHA", AllBeta: "BETA" } as const;

export type FeatureGateSettings = {
  readonly enabled: FeatureGates;
  /** Gates named on the command line (upstream treats an unset VolumeAttributesClass specially). */
  readonly explicit: readonly FeatureGateName[];
};

/**
 * `--feature-gates=A=true,B=false` (component-base `MapStringBool` + `FeatureGate.SetFromMap`):
 * repeated flags merge; unknown gates are an error; `AllAlpha`/`AllBeta` set every gate of that
 * stage that is not named itself.
 */
const featureGatesValue = () =>
  merged<FeatureGateSettings>("featureGates", "mapStringBool", (all) => {
    const set = new Map<string, boolean>();
    for (const occurrence of all) {
      for (const rawPair of occurrence.split(",")) {
        if (rawPair === "") continue;
        const eq = rawPair.indexOf("=");
        if (eq < 0) {
          return {
            ...fail(`malformed pair ${JSON.stringify(rawPair)} (expected Name=true|false)`),
            raw: occurrence,
          };
        }
        const name = rawPair.slice(0, eq).trim();
        const valueText = rawPair.slice(eq + 1).trim();
        const parsed = parseGoBool(valueText);
        if (!parsed.ok) {
          return {
            ...fail(
              `invalid value ${JSON.stringify(valueText)} for gate ${name} (use true or false)`,
            ),
            raw: occurrence,
          };
        }
        if (name in REMOVED_GATES) {
          if (!parsed.value) {
            return {
              ...fail(`${name} cannot be turned off: ${REMOVED_GATES[name]}`),
              raw: occurrence,
            };
          }
          continue;
        }
        if (!(name in FEATURE_GATES) && !(name in META_GATES)) {
          const known = [...Object.keys(META_GATES), ...FEATURE_GATE_NAMES].join(", ");
          return {
            ...fail(`unrecognized feature gate ${JSON.stringify(name)} (known: ${known})`),
            raw: occurrence,
          };
        }
        set.set(name, parsed.value);
      }
    }
    const enabled = {} as Record<FeatureGateName, boolean>;
    const explicit: FeatureGateName[] = [];
    for (const name of FEATURE_GATE_NAMES) {
      const gate: GateMeta = FEATURE_GATES[name];
      const own = set.get(name);
      if (own !== undefined) {
        enabled[name] = own;
        explicit.push(name);
        continue;
      }
      const all =
        gate.stage === "ALPHA"
          ? set.get("AllAlpha")
          : gate.stage === "BETA"
            ? set.get("AllBeta")
            : undefined;
      enabled[name] = all ?? gate.default;
    }
    return ok({ enabled, explicit });
  });

// ---------------------------------------------------------------------------------------------
// The table

const RUN: readonly CommandName[] = ["run", "dev"];
const ALL: readonly CommandName[] = ["run", "probe", "dev", "orphans"];
/** Flags the `orphans` audit shares with the sidecar (the API, the journal, the name form). */
const RUN_AND_ORPHANS: readonly CommandName[] = ["run", "dev", "orphans"];

type FlagSpec = Omit<FlagMeta, "kind" | "typeName" | "merge" | "commands" | "status"> & {
  readonly commands?: readonly CommandName[];
  /** Default `planned`. */
  readonly status?: FlagStatus;
};

/** One table row: the value type's schema with its default, tagged with the flag's metadata. */
function flag<T>(spec: FlagSpec, value: ValueType<T>) {
  const meta: FlagMeta = {
    ...spec,
    kind: value.kind,
    typeName: value.typeName,
    merge: value.merge,
    commands: spec.commands ?? RUN,
    status: spec.status ?? "implemented",
  };
  const fallback: string[] = spec.default === undefined ? [] : [spec.default];
  return v.pipe(
    v.optional(value.schema, () => [...fallback]),
    v.metadata(meta),
  );
}

const positive = (what: string) => (ms: number) =>
  ms > 0 ? undefined : `${what} must be greater than zero`;
const HOST_PORT = /^(\[[0-9A-Fa-f:.%\w]*\]|[^:[\]]*):(\d{1,5})$/;
const hostPort = (addr: string) => {
  if (addr === "") return undefined;
  const m = HOST_PORT.exec(addr);
  return m !== null && Number(m[2]) <= 65535 ? undefined : "expected host:port, e.g. :8080";
};

/**
 * The flag table. Entries are in `--help` order within each group. Help lines follow upstream's
 * meaning (reference section 1), in this project's words.
 */
export const FLAG_ENTRIES = {
  // Common sidecar flags (csi-lib-utils standardflags) -----------------------------------------
  help: flag(
    {
      name: "help",
      shorthand: "h",
      help: "Show this help and exit.",
      group: "common",
      commands: ALL,
      status: "implemented",
      default: "false",
    },
    boolValue(),
  ),
  version: flag(
    {
      name: "version",
      help: "Print the version and git commit, then exit.",
      group: "common",
      commands: ALL,
      status: "implemented",
      default: "false",
    },
    boolValue(),
  ),
  csiAddress: flag(
    {
      name: "csi-address",
      default: "/run/csi/socket",
      help: "The CSI driver's unix socket: /path, unix:///path or unix:path (a relative path is allowed for local use).",
      group: "common",
      commands: ALL,
      status: "implemented",
    },
    stringValue((s) => {
      const r = csiAddressToPath(s);
      return r.ok ? undefined : r.error;
    }),
  ),
  kubeconfig: flag(
    {
      name: "kubeconfig",
      default: "",
      help: "Path to a kubeconfig, for running outside a cluster. The KUBECONFIG environment variable, when set, overrides it.",
      group: "common",
      commands: RUN_AND_ORPHANS,
    },
    stringValue(),
  ),
  master: flag(
    {
      name: "master",
      default: "",
      help: "API server URL, for running outside a cluster (overrides the kubeconfig's server).",
      group: "common",
      commands: RUN_AND_ORPHANS,
    },
    stringValue(),
  ),
  kubeApiQps: flag(
    {
      name: "kube-api-qps",
      default: "5",
      help: "Queries per second to the Kubernetes API server.",
      group: "common",
      commands: RUN_AND_ORPHANS,
    },
    floatValue(),
  ),
  kubeApiBurst: flag(
    {
      name: "kube-api-burst",
      default: "10",
      help: "Burst of queries to the Kubernetes API server above the QPS.",
      group: "common",
      commands: RUN_AND_ORPHANS,
    },
    intValue(),
  ),
  httpEndpoint: flag(
    {
      name: "http-endpoint",
      default: "",
      help: "host:port of the diagnostics HTTP server (metrics, /healthz/leader-election, pprof). Empty disables it. Only one of --metrics-address and --http-endpoint can be set.",
      group: "common",
    },
    stringValue(hostPort),
  ),
  metricsAddress: flag(
    {
      name: "metrics-address",
      default: "",
      help: "(deprecated) host:port of a metrics-only HTTP server. Only one of --metrics-address and --http-endpoint can be set.",
      group: "common",
    },
    stringValue(hostPort),
  ),
  metricsPath: flag(
    {
      name: "metrics-path",
      default: "/metrics",
      help: "HTTP path of the Prometheus metrics.",
      group: "common",
    },
    stringValue((s) => (s.startsWith("/") ? undefined : "must start with /")),
  ),
  automaxprocs: flag(
    {
      name: "automaxprocs",
      default: "false",
      help: "Set GOMAXPROCS from the container CPU quota.",
      group: "common",
      status: "no-op",
      noEffect: "JavaScript runtimes have no GOMAXPROCS",
    },
    boolValue(),
  ),

  // Leader election --------------------------------------------------------------------------
  leaderElection: flag(
    {
      name: "leader-election",
      default: "false",
      help: "Elect a leader with a coordination.k8s.io Lease; only the leader provisions. Needs extra RBAC.",
      group: "leaderElection",
    },
    boolValue(),
  ),
  leaderElectionNamespace: flag(
    {
      name: "leader-election-namespace",
      default: "",
      help: "Namespace of the Lease. Empty: the POD_NAMESPACE environment variable, then the pod's own namespace.",
      group: "leaderElection",
      commands: RUN_AND_ORPHANS,
    },
    stringValue(),
  ),
  leaderElectionLeaseDurationMs: flag(
    {
      name: "leader-election-lease-duration",
      default: "15s",
      help: "How long non-leaders wait before they force-acquire the Lease.",
      group: "leaderElection",
    },
    durationValue(),
  ),
  leaderElectionRenewDeadlineMs: flag(
    {
      name: "leader-election-renew-deadline",
      default: "10s",
      help: "How long the leader retries renewing the Lease before it gives up.",
      group: "leaderElection",
    },
    durationValue(),
  ),
  leaderElectionRetryPeriodMs: flag(
    {
      name: "leader-election-retry-period",
      default: "5s",
      help: "Wait between leader-election attempts.",
      group: "leaderElection",
    },
    durationValue(),
  ),
  leaderElectionLabels: flag(
    {
      name: "leader-election-labels",
      help: "Labels added to the Lease while this replica leads, as key:value pairs: my-label:my-value,other:value.",
      group: "leaderElection",
    },
    labelsValue(),
  ),

  // Provisioner --------------------------------------------------------------------------------
  volumeNamePrefix: flag(
    {
      name: "volume-name-prefix",
      default: "pvc",
      help: "Prefix of PersistentVolume names and of CreateVolume request names.",
      group: "provisioner",
      commands: RUN_AND_ORPHANS,
    },
    stringValue((s) => (s === "" ? "must not be empty" : undefined)),
  ),
  volumeNameUuidLength: flag(
    {
      name: "volume-name-uuid-length",
      default: "-1",
      help: "-1 uses the claim UID as it is; N removes its dashes and keeps the first N characters (1-32).",
      group: "provisioner",
    },
    intValue((n) =>
      n === -1 || (n >= 1 && n <= 32)
        ? undefined
        : n === 0
          ? "0 would give every volume the same name; use -1 or 1-32"
          : "must be -1 (whole UID) or between 1 and 32",
    ),
  ),
  timeoutMs: flag(
    {
      name: "timeout",
      default: "10s",
      help: "Timeout of every call to the CSI driver (CreateVolume, DeleteVolume, GetCapacity, Probe, ...).",
      group: "provisioner",
      commands: ALL,
      status: "implemented",
    },
    durationValue(positive("the timeout")),
  ),
  retryIntervalStartMs: flag(
    {
      name: "retry-interval-start",
      default: "1s",
      help: "First retry delay after a failed provision or delete; it doubles with each failure up to --retry-interval-max.",
      group: "provisioner",
    },
    durationValue(positive("the retry interval")),
  ),
  retryIntervalMaxMs: flag(
    {
      name: "retry-interval-max",
      default: "5m",
      help: "Longest retry delay after failed provisions or deletes.",
      group: "provisioner",
    },
    durationValue(positive("the retry interval")),
  ),
  workerThreads: flag(
    {
      name: "worker-threads",
      default: "100",
      help: "Claims and volumes worked on at once: up to N CreateVolume and N DeleteVolume calls in flight.",
      group: "provisioner",
    },
    uintValue((n) => (n >= 1 ? undefined : "must be at least 1")),
  ),
  cloningProtectionThreads: flag(
    {
      name: "cloning-protection-threads",
      default: "1",
      help: "Workers removing the clone-source protection finalizer.",
      group: "provisioner",
    },
    uintValue(),
  ),
  snapshotOrphanSweepIntervalMs: flag(
    {
      name: "snapshot-orphan-sweep-interval",
      default: "5m",
      help: "How often to look for snapshot source-protection finalizers left behind by a crash. 0 disables the sweep.",
      group: "provisioner",
    },
    durationValue((ms) => (ms >= 0 ? undefined : "must not be negative (0 disables the sweep)")),
  ),
  strictTopology: flag(
    {
      name: "strict-topology",
      default: "false",
      help: "Late binding: pass only the selected node's topology to CreateVolume.",
      group: "provisioner",
    },
    boolValue(),
  ),
  immediateTopology: flag(
    {
      name: "immediate-topology",
      default: "true",
      help: "Immediate binding: pass the aggregated cluster topology to CreateVolume (false: pass none).",
      group: "provisioner",
    },
    boolValue(),
  ),
  extraCreateMetadata: flag(
    {
      name: "extra-create-metadata",
      default: "false",
      help: "Add csi.storage.k8s.io/pvc/name, csi.storage.k8s.io/pvc/namespace and csi.storage.k8s.io/pv/name to CreateVolume parameters.",
      group: "provisioner",
    },
    boolValue(),
  ),
  claimMetadataPrefixes: flag(
    {
      name: "claim-metadata-prefixes",
      default: "",
      help: "Comma-separated key prefixes: the claim's labels and annotations and its namespace's labels whose keys start with one go to CreateVolume as csi.storage.k8s.io/pvc/label/<key>, csi.storage.k8s.io/pvc/annotation/<key> and csi.storage.k8s.io/namespace/label/<key> parameters (keys under csi.storage.k8s.io/ never). Needs get on namespaces. Empty: off.",
      group: "extensions",
    },
    prefixesValue(),
  ),
  orphanAuditIntervalMs: flag(
    {
      name: "orphan-audit-interval",
      default: "0s",
      help: "How often the leader lists the driver's volumes (ListVolumes) and counts those no PV, provisioning intent or claim in flight explains (the controller_persistentvolume_orphans gauge). 0: off.",
      group: "extensions",
    },
    durationValue((ms) => (ms >= 0 ? undefined : "must not be negative (0 turns the audit off)")),
  ),
  orphanDelete: flag(
    {
      name: "orphan-delete",
      default: "false",
      help: "With --orphan-audit-interval: delete orphans named <--volume-name-prefix>-<claim UID> whose claim no longer exists and that no PV or intent references, once orphaned for --orphan-grace-period (one log line each). false: only log what would be deleted.",
      group: "extensions",
    },
    boolValue(),
  ),
  orphanGracePeriodMs: flag(
    {
      name: "orphan-grace-period",
      default: "1h",
      help: "How long a volume must stay an orphan, across audits of this process, before --orphan-delete deletes it.",
      group: "extensions",
    },
    durationValue((ms) => (ms >= 0 ? undefined : "must not be negative")),
  ),
  enablePprof: flag(
    {
      status: "no-op",
      noEffect: "there is no Go pprof profiler in this runtime; use its inspector (--inspect)",
      name: "enable-pprof",
      default: "false",
      help: "Serve /debug/pprof/ on the --http-endpoint server.",
      group: "provisioner",
    },
    boolValue(),
  ),
  defaultFstype: flag(
    {
      name: "default-fstype",
      default: "",
      help: "File system type for volumes whose StorageClass sets none.",
      group: "provisioner",
    },
    stringValue(),
  ),
  controllerPublishReadonly: flag(
    {
      name: "controller-publish-readonly",
      default: "false",
      help: "Set PV spec.csi.readOnly when the claim's only access mode is ReadOnlyMany.",
      group: "provisioner",
    },
    boolValue(),
  ),
  preventVolumeModeConversion: flag(
    {
      name: "prevent-volume-mode-conversion",
      default: "true",
      help: "Refuse to restore a snapshot into a different volume mode unless its VolumeSnapshotContent allows it.",
      group: "provisioner",
    },
    boolValue(),
  ),

  // Storage capacity ---------------------------------------------------------------------------
  enableCapacity: flag(
    {
      name: "enable-capacity",
      default: "false",
      help: "Publish CSIStorageCapacity objects from the driver's GetCapacity. Needs the NAMESPACE environment variable, and POD_NAME when --capacity-ownerref-level >= 0.",
      group: "capacity",
    },
    boolValue(),
  ),
  capacityOwnerrefLevel: flag(
    {
      name: "capacity-ownerref-level",
      default: "1",
      help: "Owner of CSIStorageCapacity objects, counted from this pod: -1 none, 0 the pod, 1 its StatefulSet/DaemonSet/ReplicaSet, 2 a Deployment, ...",
      group: "capacity",
    },
    intValue((n) => (n >= -1 ? undefined : "must be -1 (no owner) or more")),
  ),
  capacityThreads: flag(
    {
      name: "capacity-threads",
      default: "1",
      help: "Workers updating CSIStorageCapacity objects.",
      group: "capacity",
    },
    uintValue(),
  ),
  capacityPollIntervalMs: flag(
    {
      name: "capacity-poll-interval",
      default: "1m",
      help: "How often to refresh all capacities with GetCapacity.",
      group: "capacity",
    },
    durationValue(),
  ),
  capacityForImmediateBinding: flag(
    {
      name: "capacity-for-immediate-binding",
      default: "false",
      help: "Also publish capacity for StorageClasses with Immediate binding.",
      group: "capacity",
    },
    boolValue(),
  ),
  kubeApiCapacityQps: flag(
    {
      name: "kube-api-capacity-qps",
      default: "1",
      help: "Queries per second of the separate API client that writes CSIStorageCapacity objects.",
      group: "capacity",
    },
    floatValue(),
  ),
  kubeApiCapacityBurst: flag(
    {
      name: "kube-api-capacity-burst",
      default: "5",
      help: "Burst of the separate API client that writes CSIStorageCapacity objects.",
      group: "capacity",
    },
    intValue(),
  ),

  // Distributed provisioning -----------------------------------------------------------------
  nodeDeployment: flag(
    {
      name: "node-deployment",
      default: "false",
      help: "Run beside the driver on every node and provision node-local volumes. Needs the NODE_NAME environment variable.",
      group: "nodeDeployment",
    },
    boolValue(),
  ),
  nodeDeploymentImmediateBinding: flag(
    {
      name: "node-deployment-immediate-binding",
      default: "true",
      help: "In node mode, take Immediate-binding claims by setting the selected-node annotation.",
      group: "nodeDeployment",
    },
    boolValue(),
  ),
  nodeDeploymentBaseDelayMs: flag(
    {
      name: "node-deployment-base-delay",
      default: "20s",
      help: "First back-off (and jitter) before trying to take an Immediate-binding claim.",
      group: "nodeDeployment",
    },
    durationValue((ms) => (ms >= 0 ? undefined : "must not be negative")),
  ),
  nodeDeploymentMaxDelayMs: flag(
    {
      name: "node-deployment-max-delay",
      default: "60s",
      help: "Longest back-off before trying to take an Immediate-binding claim.",
      group: "nodeDeployment",
    },
    durationValue((ms) => (ms >= 0 ? undefined : "must not be negative")),
  ),

  // Feature gates ----------------------------------------------------------------------------
  featureGates: flag(
    {
      name: "feature-gates",
      help: "Feature gates as Name=true|false pairs, comma separated.",
      group: "featureGates",
      status: "implemented",
    },
    featureGatesValue(),
  ),

  // Logging (component-base logs) ------------------------------------------------------------
  loggingFormat: flag(
    {
      name: "logging-format",
      default: "text",
      help: 'Log format: "text" (klog style) or "json".',
      group: "logging",
      status: "implemented",
    },
    enumValue(["text", "json"]),
  ),
  verbosity: flag(
    {
      name: "v",
      shorthand: "v",
      default: "0",
      help: "Log verbosity: 5 logs every CSI request and response (secrets redacted).",
      group: "logging",
      commands: ALL,
      status: "implemented",
    },
    levelValue(),
  ),
  vmodule: flag(
    {
      status: "no-op",
      noEffect: "log lines carry no Go source file to match; use -v",
      name: "vmodule",
      help: "Per-file verbosity as pattern=N pairs, comma separated (text format only).",
      group: "logging",
    },
    vmoduleValue(),
  ),
  logFlushFrequencyMs: flag(
    {
      name: "log-flush-frequency",
      default: "5s",
      help: "Longest time between log flushes.",
      group: "logging",
      status: "no-op",
      noEffect: "log lines are written as they happen, never buffered",
    },
    durationValue(),
  ),
  logJsonSplitStream: flag(
    {
      name: "log-json-split-stream",
      default: "false",
      help: "[Alpha] In JSON format, write errors to stderr and info messages to stdout.",
      group: "logging",
    },
    boolValue(),
  ),
  logJsonInfoBufferSize: flag(
    {
      status: "no-op",
      noEffect: "log lines are written unbuffered",
      name: "log-json-info-buffer-size",
      default: "0",
      help: "[Alpha] In JSON format with split streams, buffer this much info output (512, 1K, 2Ki, 5Mi); 0 disables buffering.",
      group: "logging",
    },
    quantityValue(),
  ),
  logTextSplitStream: flag(
    {
      name: "log-text-split-stream",
      default: "false",
      help: "[Alpha] In text format, write errors to stderr and info messages to stdout.",
      group: "logging",
    },
    boolValue(),
  ),
  logTextInfoBufferSize: flag(
    {
      status: "no-op",
      noEffect: "log lines are written unbuffered",
      name: "log-text-info-buffer-size",
      default: "0",
      help: "[Alpha] In text format with split streams, buffer this much info output (512, 1K, 2Ki, 5Mi); 0 disables buffering.",
      group: "logging",
    },
    quantityValue(),
  ),

  // probe ------------------------------------------------------------------------------------
  output: flag(
    {
      name: "output",
      default: "text",
      help: 'Report format: "text" or "json" (orphans: "table", the same as "text").',
      group: "probe",
      commands: ["probe", "orphans"],
      status: "implemented",
    },
    enumValue(["text", "json", "table"]),
  ),
  connectTimeoutMs: flag(
    {
      name: "connect-timeout",
      default: "30s",
      help: "How long to wait for the driver's socket to appear and accept a connection (the sidecar waits 30 s); 0 tries once. --timeout bounds each call after that.",
      group: "probe",
      commands: ["probe"],
      status: "implemented",
    },
    durationValue((ms) => (ms >= 0 ? undefined : "the connect timeout must not be negative")),
  ),

  // dev --------------------------------------------------------------------------------------
  dataDir: flag(
    {
      name: "data-dir",
      default: "./.csi-provisioner-dev",
      help: "Directory for the local mode's state (API server data, kubeconfig).",
      group: "dev",
      commands: ["dev"],
    },
    stringValue((s) => (s === "" ? "must not be empty" : undefined)),
  ),
  port: flag(
    {
      name: "port",
      default: "0",
      help: "Port of the local API server; 0 picks a free one.",
      group: "dev",
      commands: ["dev"],
    },
    intValue((n) =>
      n >= 0 && n <= 65535 ? undefined : "must be a port number between 0 and 65535",
    ),
  ),
  demo: flag(
    {
      name: "demo",
      default: "false",
      help: "Create a demo claim, print its PV, delete the claim, wait for the volume to go, and exit.",
      group: "dev",
      commands: ["dev"],
      status: "implemented",
    },
    boolValue(),
  ),
  kubeconfigOut: flag(
    {
      name: "kubeconfig-out",
      default: "",
      defaultText: "<data-dir>/kubeconfig",
      help: "Where dev writes a kubeconfig for kubectl to reach its API server.",
      group: "dev",
      commands: ["dev"],
    },
    stringValue(),
  ),
};

export type FlagKey = keyof typeof FLAG_ENTRIES;

/** The table as a list, in definition order. */
export const FLAGS: readonly FlagInfo[] = Object.entries(FLAG_ENTRIES).map(([key, schema]) => ({
  key,
  ...(v.getMetadata(schema) as FlagMeta),
}));

const BY_NAME: ReadonlyMap<string, FlagInfo> = new Map(FLAGS.map((f) => [f.name, f]));
const BY_SHORTHAND: ReadonlyMap<string, FlagInfo> = new Map(
  FLAGS.filter((f) => f.shorthand !== undefined).map((f) => [f.shorthand!, f]),
);

/** The flag with this long name (no dashes), if any. */
export function flagByName(name: string): FlagInfo | undefined {
  return BY_NAME.get(name);
}

/** The flag with this one-letter alias, if any. */
export function flagByShorthand(letter: string): FlagInfo | undefined {
  return BY_SHORTHAND.get(letter);
}

// ---------------------------------------------------------------------------------------------
// Driver address

export type SocketPathResult =
  | { readonly ok: true; readonly path: string }
  | { readonly ok: false; readonly error: string };

/**
 * The filesystem path of a `--csi-address`: `/path`, `unix:///path`, `unix:/path`,
 * `unix:relative/path` and plain relative paths (`./csi.sock`, for local use). Other schemes
 * (`tcp://`, `dns:`, `localhost:1234`) are refused: CSI drivers listen on unix sockets.
 */
export function csiAddressToPath(address: string): SocketPathResult {
  if (address === "") return { ok: false, error: "must not be empty" };
  let path: string;
  if (address.startsWith("unix://")) {
    path = address.slice("unix://".length);
    if (!path.startsWith("/")) {
      return {
        ok: false,
        error: "unix:// must be followed by an absolute path, as in unix:///csi/csi.sock",
      };
    }
  } else if (address.startsWith("unix:")) {
    path = address.slice("unix:".length);
  } else if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(address)) {
    return {
      ok: false,
      error:
        "not a unix socket: use /path, unix:///path or unix:path (CSI drivers listen on unix sockets)",
    };
  } else {
    path = address;
  }
  if (path === "") return { ok: false, error: "the socket path is empty" };
  return { ok: true, path };
}

// ---------------------------------------------------------------------------------------------
// Environment and the whole configuration

/** Environment variables the sidecar reads (reference 1.5). Empty values count as unset. */
export const ENV_NAMES = [
  "KUBECONFIG",
  "NODE_NAME",
  "NAMESPACE",
  "POD_NAME",
  "POD_NAMESPACE",
] as const;

const EnvSchema = v.object({
  KUBECONFIG: v.optional(v.string()),
  NODE_NAME: v.optional(v.string()),
  NAMESPACE: v.optional(v.string()),
  POD_NAME: v.optional(v.string()),
  POD_NAMESPACE: v.optional(v.string()),
});

const nonEmpty = (s: string | undefined): string | undefined =>
  s === undefined || s === "" ? undefined : s;

/**
 * From flag values and environment to {@link Config}: drops `help`/`version`, applies
 * KUBECONFIG, resolves `--kubeconfig-out`, adds the socket path and the environment.
 */
function derive(input: v.InferOutput<typeof RawConfigSchema>) {
  const { help: _help, version: _version, env, featureGates, explicitFlags, ...flags } = input;
  const socket = csiAddressToPath(flags.csiAddress);
  const envKubeconfig = nonEmpty(env.KUBECONFIG);
  return {
    ...flags,
    /** The effective kubeconfig path: KUBECONFIG when set, else `--kubeconfig`. */
    kubeconfig: envKubeconfig ?? flags.kubeconfig,
    /** `--kubeconfig-out`, or `<data-dir>/kubeconfig` when not given. */
    kubeconfigOut:
      flags.kubeconfigOut !== ""
        ? flags.kubeconfigOut
        : `${flags.dataDir.replace(/\/+$/, "")}/kubeconfig`,
    /** `--csi-address` as a filesystem path (possibly relative). */
    csiSocketPath: socket.ok ? socket.path : "",
    featureGates: featureGates.enabled,
    /** Gates named in `--feature-gates`. */
    explicitFeatureGates: featureGates.explicit,
    /** Long names of the flags given on the command line, in first-seen order. */
    explicitFlags,
    /**
     * `NODE_NAME`: this node, in `--node-deployment` mode; unset otherwise, as upstream reads it
     * only there (it ends the provisioner identity, so a stray NODE_NAME must not change it).
     */
    nodeName: flags.nodeDeployment ? nonEmpty(env.NODE_NAME) : undefined,
    /** `NAMESPACE`: where CSIStorageCapacity objects live. */
    namespace: nonEmpty(env.NAMESPACE),
    /** `POD_NAME`: this pod, the start of the CSIStorageCapacity owner chain. */
    podName: nonEmpty(env.POD_NAME),
    /** `POD_NAMESPACE`: the Lease namespace when `--leader-election-namespace` is empty. */
    podNamespace: nonEmpty(env.POD_NAMESPACE),
  };
}

const RawConfigSchema = v.object({
  ...FLAG_ENTRIES,
  env: EnvSchema,
  explicitFlags: v.array(v.string()),
});

/** client-go's leader-election jitter factor: renew deadline must exceed 1.2 x retry period. */
const LEADER_JITTER = 1.2;

/** Flag combinations that cannot work together (reference 1.1-1.5, 2.1, 2.14). */
function contradictions(c: ReturnType<typeof derive>): string | undefined {
  if (c.metricsAddress !== "" && c.httpEndpoint !== "") {
    return "Only one of --metrics-address and --http-endpoint can be set: use --http-endpoint (--metrics-address is deprecated)";
  }
  if (c.nodeDeployment && c.nodeName === undefined) {
    return "--node-deployment needs the NODE_NAME environment variable: set it from spec.nodeName with the downward API";
  }
  if (c.enableCapacity && c.namespace === undefined) {
    return "--enable-capacity needs the NAMESPACE environment variable: set it from metadata.namespace with the downward API";
  }
  if (c.enableCapacity && c.capacityOwnerrefLevel >= 0 && c.podName === undefined) {
    return `--enable-capacity with --capacity-ownerref-level=${c.capacityOwnerrefLevel} needs the POD_NAME environment variable: set it from metadata.name with the downward API, or use --capacity-ownerref-level=-1`;
  }
  if (c.enableCapacity && c.capacityPollIntervalMs <= 0) {
    return "--capacity-poll-interval must be greater than zero when --enable-capacity is set";
  }
  if (c.retryIntervalStartMs > c.retryIntervalMaxMs) {
    return "--retry-interval-start must not be greater than --retry-interval-max";
  }
  if (c.nodeDeployment && c.nodeDeploymentBaseDelayMs > c.nodeDeploymentMaxDelayMs) {
    return "--node-deployment-base-delay must not be greater than --node-deployment-max-delay";
  }
  if (c.leaderElection) {
    const lease = c.leaderElectionLeaseDurationMs;
    const renew = c.leaderElectionRenewDeadlineMs;
    const retry = c.leaderElectionRetryPeriodMs;
    if (lease <= 0 || renew <= 0 || retry <= 0) {
      return "--leader-election-lease-duration, --leader-election-renew-deadline and --leader-election-retry-period must be greater than zero";
    }
    if (lease <= renew) {
      return "--leader-election-lease-duration must be greater than --leader-election-renew-deadline";
    }
    if (renew <= LEADER_JITTER * retry) {
      return "--leader-election-renew-deadline must be greater than 1.2 x --leader-election-retry-period";
    }
  }
  return undefined;
}

/**
 * The whole configuration schema. Input: for each flag given, the list of its values
 * (`{ timeoutMs: ["150s"] }`), the environment, and the names of the flags given.
 */
export const ConfigSchema = v.pipe(
  RawConfigSchema,
  v.transform(derive),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const problem = contradictions(dataset.value);
    if (problem !== undefined) addIssue({ message: problem });
  }),
);

export type ConfigInput = v.InferInput<typeof ConfigSchema>;

/** Everything the sidecar was told: flags (typed, defaults filled) and environment. */
export type Config = v.InferOutput<typeof ConfigSchema>;

/** Typed default of every flag (what an empty command line gives). */
export const FLAG_DEFAULTS = v.parse(v.object(FLAG_ENTRIES), {}) as v.InferOutput<
  v.ObjectSchema<typeof FLAG_ENTRIES, undefined>
>;
