/**
 * argv and environment to what the entry point does next. The entry point prints and exits;
 * this module decides, without touching the process.
 */
import { helpText } from "../config/help.ts";
import { parseArgs, spell } from "../config/parse.ts";
import {
  type CommandName,
  type Config,
  FEATURE_GATE_NAMES,
  FEATURE_GATES,
  FLAG_DEFAULTS,
  FLAGS,
  type FlagInfo,
  type GateMeta,
} from "../config/schema.ts";

export type ResolvedCommand =
  | {
      readonly kind: CommandName;
      readonly config: Config;
      /**
       * Everything to print as warnings at start-up, in order: parse warnings (deprecated
       * flags, GA feature gates, ...) and then the one line from {@link unimplementedWarnings}.
       */
      readonly warnings: readonly string[];
    }
  /** Print `text` to standard output and exit 0. */
  | { readonly kind: "help"; readonly text: string }
  /** Print `versionLine(runtimeVersion())` and exit 0. */
  | { readonly kind: "version" }
  /** Print `message` (one line) to standard error and exit with `exitCode`. */
  | { readonly kind: "error"; readonly message: string; readonly exitCode: 2 };

/** Decides what to do for this command line and environment. */
export function resolveCommand(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ResolvedCommand {
  const parsed = parseArgs(argv, env);
  if (!parsed.ok) return { kind: "error", message: parsed.error, exitCode: 2 };
  switch (parsed.command) {
    case "help":
      return { kind: "help", text: helpText(parsed.topic) };
    case "version":
      return { kind: "version" };
    default:
      return {
        kind: parsed.command,
        config: parsed.config,
        warnings: [...parsed.warnings, ...unimplementedWarnings(parsed.config)],
      };
  }
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Flags (and feature gates) the user set to something other than the default whose feature is
 * not built yet (`planned`) or has no effect here (`no-op`), spelled as on the command line
 * with the reason: `--enable-capacity (not implemented yet)`. A flag set to its default changes
 * nothing, so it is not named.
 */
export function unimplementedFlags(config: Config): string[] {
  const named: string[] = [];
  const given = new Set(config.explicitFlags);
  const values = config as unknown as Record<string, unknown>;
  const defaults = FLAG_DEFAULTS as unknown as Record<string, unknown>;
  for (const flag of FLAGS) {
    if (flag.status === "implemented" || !given.has(flag.name)) continue;
    if (sameValue(values[flag.key], defaults[flag.key])) continue;
    named.push(`${spell(flag)} (${reason(flag)})`);
  }
  for (const gate of config.explicitFeatureGates) {
    const meta: GateMeta = FEATURE_GATES[gate];
    if (meta.status === "implemented" || config.featureGates[gate] === meta.default) continue;
    named.push(`--feature-gates=${gate}=${config.featureGates[gate]} (not implemented yet)`);
  }
  // AllAlpha/AllBeta can switch gates on without naming them.
  for (const gate of FEATURE_GATE_NAMES) {
    const meta: GateMeta = FEATURE_GATES[gate];
    if (config.explicitFeatureGates.includes(gate) || meta.status === "implemented") continue;
    if (config.featureGates[gate] !== meta.default) {
      named.push(`feature gate ${gate}=${config.featureGates[gate]} (not implemented yet)`);
    }
  }
  return named;
}

function reason(flag: FlagInfo): string {
  return flag.status === "no-op" ? (flag.noEffect ?? "not applicable here") : "not implemented yet";
}

/**
 * The warning lines start-up prints for {@link unimplementedFlags}: none, or exactly one line
 * naming every such flag.
 */
export function unimplementedWarnings(config: Config): string[] {
  const named = unimplementedFlags(config);
  if (named.length === 0) return [];
  return [`Flags accepted without effect: ${named.join(", ")}`];
}
