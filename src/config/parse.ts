/**
 * Command line and environment to {@link Config}, with pflag's syntax:
 *
 * - `--flag=value` and `--flag value`; a single dash works too (`-csi-address=/x`), as with Go's
 *   own flag package, which older manifests rely on (pflag proper accepts it only for `-v`).
 * - `-v=5`, `--v=5`, `-v 5`, `-v5`; `-h` is `--help`.
 * - Booleans: `--flag`, `--flag=true`, `--flag=false` (Go's `ParseBool` words). A boolean never
 *   takes the next argument; `--flag false` is refused rather than silently meaning true, as it
 *   would upstream.
 * - Repeated flags: the last wins, except `--feature-gates`, `--leader-election-labels` and
 *   `--vmodule`, which merge. `--` ends the flags.
 * - One positional word selects the command: none or `run`, `probe`, `dev`, `version`,
 *   `help [command]`. `--version` means `version`, `--help`/`-h` means `help`.
 *
 * Every problem is reported as one line that names the flag and the problem.
 */
import * as v from "valibot";
import {
  type CommandName,
  type Config,
  ConfigSchema,
  ENV_NAMES,
  FEATURE_GATES,
  FLAGS,
  type FlagInfo,
  flagByName,
  flagByShorthand,
  LEGACY_FLAGS,
  parseGoBool,
  REMOVED_GATES,
} from "./schema.ts";

export type HelpTopic = CommandName | undefined;

export type ParseResult =
  | {
      readonly ok: true;
      readonly command: CommandName;
      readonly config: Config;
      /** Lines to print at start-up (deprecations, GA feature gates, odd syntax). */
      readonly warnings: readonly string[];
    }
  | { readonly ok: true; readonly command: "version"; readonly warnings: readonly string[] }
  | {
      readonly ok: true;
      readonly command: "help";
      /** The command whose help was asked for; `undefined` for the overview. */
      readonly topic: HelpTopic;
      readonly warnings: readonly string[];
    }
  | { readonly ok: false; readonly error: string };

type Occurrence = { readonly flag: FlagInfo; readonly value: string };

/** How a flag is written in messages: `--timeout`, `-v`. */
export function spell(flag: Pick<FlagInfo, "name">): string {
  return flag.name.length === 1 ? `-${flag.name}` : `--${flag.name}`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(up + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

function unknownFlag(written: string, name: string): string {
  let best: FlagInfo | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const f of FLAGS) {
    const d = editDistance(name, f.name);
    if (d < bestDistance) {
      best = f;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(name.length / 4)));
  if (best !== undefined && bestDistance <= limit) {
    return `Unknown flag ${written}: did you mean ${spell(best)}?`;
  }
  return `Unknown flag ${written}: see --help for the list of flags`;
}

const COMMAND_WORDS = new Set(["run", "probe", "dev", "orphans", "version", "help"]);

function commandFlagsList(command: CommandName): string {
  return FLAGS.filter(
    (f) => f.commands.includes(command) && f.key !== "help" && f.key !== "version",
  )
    .map(spell)
    .join(", ");
}

/** Splits argv into flag occurrences and positional words. */
function tokenize(argv: readonly string[]) {
  const occurrences: Occurrence[] = [];
  const positionals: string[] = [];
  const warnings: string[] = [];
  let error: string | undefined;
  let helpRequested = false;
  /** Legacy flags already warned about (one warning each, however often given). */
  const legacyWarned = new Set<string>();
  const fail = (message: string) => {
    error ??= message;
  };

  let i = 0;
  let flagsEnded = false;
  while (i < argv.length) {
    const arg = argv[i++]!;
    if (flagsEnded || !arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    if (arg === "--") {
      flagsEnded = true;
      continue;
    }
    const dashes = arg.startsWith("--") ? 2 : 1;
    const body = arg.slice(dashes);
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    let inline: string | undefined = eq >= 0 ? body.slice(eq + 1) : undefined;
    if (name === "" || name.startsWith("-")) {
      fail(`Bad flag syntax ${JSON.stringify(arg)}: write --name=value`);
      continue;
    }
    let flag = flagByName(name);
    if (flag === undefined && dashes === 1) {
      // A one-letter alias, its value possibly attached: -v5, -v=5, -h.
      const alias = flagByShorthand(body[0]!);
      if (alias !== undefined) {
        flag = alias;
        const rest = body.slice(1);
        inline = rest.startsWith("=") ? rest.slice(1) : rest === "" ? undefined : rest;
        if (alias.kind === "bool" && rest !== "" && !rest.startsWith("=")) {
          fail(`Bad flag syntax ${JSON.stringify(arg)}: -${alias.shorthand} takes no value`);
          continue;
        }
      }
    }
    const legacy = flag === undefined ? LEGACY_FLAGS[name] : undefined;
    if (legacy?.kind === "alias") {
      flag = flagByName(legacy.replacement);
      if (!legacyWarned.has(name)) warnings.push(legacy.warning);
      legacyWarned.add(name);
    } else if (legacy?.kind === "value") {
      // An old flag with a value: checked and warned about, then dropped.
      let value = inline;
      if (value === undefined) {
        const next = argv[i];
        if (next === undefined || next.startsWith("--")) {
          fail(`Flag --${name} needs a value: write --${name}=<string>`);
          continue;
        }
        value = next;
        i++;
      }
      const problem = legacy.check?.(value);
      if (problem !== undefined) {
        fail(problem);
        continue;
      }
      if (!legacyWarned.has(name)) warnings.push(legacy.warning(value));
      legacyWarned.add(name);
      continue;
    }
    if (flag === undefined) {
      fail(unknownFlag(eq >= 0 ? arg.slice(0, dashes + eq) : arg, name));
      continue;
    }

    let value: string;
    if (flag.kind === "bool") {
      value = inline ?? "true";
      const next = argv[i];
      if (inline === undefined && !flagsEnded && (next === "true" || next === "false")) {
        i++;
        if (next === "false") {
          fail(
            `Flag ${spell(flag)} is a boolean and takes no separate value: write ${spell(flag)}=false (upstream would have read "${arg} false" as true)`,
          );
          continue;
        }
        warnings.push(
          `"${arg} true": a boolean flag takes no separate value; read as ${spell(flag)}=true (write it that way)`,
        );
      }
    } else if (inline !== undefined) {
      value = inline;
    } else {
      const next = argv[i];
      if (next === undefined || next.startsWith("--")) {
        fail(
          `Flag ${spell(flag)} needs a value: write ${spell(flag)}=<${flag.typeName || "value"}>`,
        );
        continue;
      }
      value = next;
      i++;
    }
    if (flag.key === "help") {
      const parsed = parseGoBool(value);
      if (parsed.ok && parsed.value) helpRequested = true;
    }
    occurrences.push({ flag, value });
  }
  return { occurrences, positionals, warnings, error, helpRequested };
}

type CommandWord = CommandName | "version" | "help";

function selectCommand(
  positionals: readonly string[],
): { ok: true; command: CommandWord; topic: HelpTopic } | { ok: false; error: string } {
  const [first, second, ...rest] = positionals;
  if (first === undefined) return { ok: true, command: "run", topic: undefined };
  if (!COMMAND_WORDS.has(first)) {
    return {
      ok: false,
      error: `Unknown command ${JSON.stringify(first)}: expected run, probe, dev, orphans, version or help`,
    };
  }
  const command = first as CommandWord;
  if (command === "help") {
    if (second === undefined) return { ok: true, command, topic: undefined };
    if (second !== "run" && second !== "probe" && second !== "dev" && second !== "orphans") {
      return {
        ok: false,
        error: `No help for ${JSON.stringify(second)}: expected run, probe, dev or orphans`,
      };
    }
    if (rest.length > 0)
      return { ok: false, error: `Unexpected argument ${JSON.stringify(rest[0])}` };
    return { ok: true, command, topic: second };
  }
  if (second !== undefined) {
    return {
      ok: false,
      error: `Unexpected argument ${JSON.stringify(second)} after the ${command} command`,
    };
  }
  return { ok: true, command, topic: command === "version" ? undefined : command };
}

/** Turns a valibot issue into one line naming the flag. */
function describeIssue(issue: v.BaseIssue<unknown>): string {
  const key = issue.path?.[0]?.key;
  const flag = typeof key === "string" ? FLAGS.find((f) => f.key === key) : undefined;
  if (flag === undefined) return issue.message;
  return `Invalid value ${issue.received} for ${spell(flag)}: ${issue.message}`;
}

/**
 * Parses the command line (`argv` without the program name) and the environment. Pure: reads
 * nothing but its arguments.
 */
export function parseArgs(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParseResult {
  const tokens = tokenize(argv);
  const selected = selectCommand(tokens.positionals);

  if (tokens.helpRequested || (selected.ok && selected.command === "help")) {
    const topic = selected.ok && selected.command !== "version" ? selected.topic : undefined;
    return { ok: true, command: "help", topic, warnings: tokens.warnings };
  }
  if (tokens.error !== undefined) return { ok: false, error: tokens.error };
  if (!selected.ok) return { ok: false, error: selected.error };
  if (selected.command === "version")
    return { ok: true, command: "version", warnings: tokens.warnings };
  const command = selected.command as CommandName;

  for (const { flag } of tokens.occurrences) {
    if (!flag.commands.includes(command)) {
      const owners = flag.commands.filter((c) => c !== "dev" || !flag.commands.includes("run"));
      const only =
        owners.length === 1
          ? ` (it belongs to the ${owners[0]} command)`
          : owners.length === 2
            ? ` (it belongs to the ${owners[0]} and ${owners[1]} commands)`
            : "";
      return {
        ok: false,
        error: `Flag ${spell(flag)} is not accepted by the ${command} command${only}; ${command} accepts ${commandFlagsList(command)}`,
      };
    }
  }

  // Collect the values of each flag, in order.
  const values: Record<string, string[]> = {};
  const explicitFlags: string[] = [];
  for (const { flag, value } of tokens.occurrences) {
    const list = values[flag.key];
    if (list === undefined) {
      values[flag.key] = [value];
      explicitFlags.push(flag.name);
    } else if (flag.merge) {
      list.push(value);
    } else {
      values[flag.key] = [value];
    }
  }
  const envInput: Record<string, string> = {};
  for (const name of ENV_NAMES) {
    const value = env[name];
    if (value !== undefined) envInput[name] = value;
  }

  const result = v.safeParse(ConfigSchema, { ...values, env: envInput, explicitFlags });
  if (!result.success) return { ok: false, error: describeIssue(result.issues[0]) };
  const config = result.output;

  // --version is checked after the flags parse, as upstream does.
  const versionValues = values.version;
  if (versionValues !== undefined) {
    const last = parseGoBool(versionValues[versionValues.length - 1]!);
    if (last.ok && last.value) return { ok: true, command: "version", warnings: tokens.warnings };
  }

  const warnings = [...tokens.warnings];
  if (config.metricsAddress !== "") {
    warnings.push("--metrics-address is deprecated: use --http-endpoint");
  }
  const envKubeconfig = env.KUBECONFIG;
  if (envKubeconfig !== undefined && envKubeconfig !== "" && values.kubeconfig !== undefined) {
    const flagValue = values.kubeconfig[values.kubeconfig.length - 1];
    if (flagValue !== envKubeconfig) {
      warnings.push(
        `The KUBECONFIG environment variable (${envKubeconfig}) overrides --kubeconfig=${flagValue}`,
      );
    }
  }
  const removed = new Set<string>();
  for (const occurrence of values.featureGates ?? []) {
    for (const pair of occurrence.split(",")) {
      const name = pair.split("=")[0]!.trim();
      if (name in REMOVED_GATES) removed.add(name);
    }
  }
  for (const name of removed) {
    warnings.push(`Feature gate ${name}=true is accepted and ignored: ${REMOVED_GATES[name]}`);
  }
  for (const gate of config.explicitFeatureGates) {
    if (FEATURE_GATES[gate].stage === "GA") {
      warnings.push(
        `Setting GA feature gate ${gate}=${config.featureGates[gate]}. It will be removed in a future release.`,
      );
    }
  }
  return { ok: true, command, config, warnings };
}
