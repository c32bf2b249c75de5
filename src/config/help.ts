/**
 * `--help` text and the README's flag tables, generated from the flag table in `schema.ts`.
 * Flag lines look like pflag's (`      --timeout duration   ... (default 10s)`), so people who
 * know the Go sidecar's help find their way.
 */
import { formatDuration, parseDuration } from "./duration.ts";
import {
  type CommandName,
  FEATURE_GATE_NAMES,
  FEATURE_GATES,
  FLAGS,
  type FlagGroup,
  type FlagInfo,
  type GateMeta,
  GROUP_TITLES,
  META_GATES,
  REMOVED_GATES,
} from "./schema.ts";

const PROGRAM = "csi-provisioner";
const WIDTH = 100;

const GROUP_ORDER: readonly FlagGroup[] = [
  "common",
  "provisioner",
  "leaderElection",
  "capacity",
  "nodeDeployment",
  "extensions",
  "featureGates",
  "logging",
  "probe",
  "dev",
];

const COMMAND_SUMMARIES: Readonly<Record<CommandName, string>> = {
  run: "Provision volumes for the driver on --csi-address (default).",
  probe: "Run the driver handshake and report what the sidecar would use.",
  dev: "Run locally against a driver socket, with a local API server.",
  orphans: "List the driver's volumes that nothing in the cluster explains.",
};

/**
 * The default as pflag prints it after the help line, or `undefined` when pflag would print
 * none (zero values: `false`, `""`, `0`, `0s`, empty maps).
 */
export function helpDefault(flag: FlagInfo): string | undefined {
  if (flag.defaultText !== undefined) return flag.defaultText;
  const d = flag.default;
  if (d === undefined) return undefined;
  switch (flag.kind) {
    case "bool":
      return d === "false" ? undefined : d;
    case "string":
    case "enum":
      return d === "" ? undefined : JSON.stringify(d);
    case "duration": {
      const text = formatDuration(parseDuration(d));
      return text === "0s" ? undefined : text;
    }
    default:
      return d === "0" || d === "" ? undefined : d;
  }
}

/** The default for the README: always shown. */
function tableDefault(flag: FlagInfo): string {
  if (flag.kind === "featureGates") return "see feature gates";
  if (flag.kind === "labels") return "`{}`";
  if (flag.defaultText !== undefined) return `\`${flag.defaultText}\``;
  const d = flag.default ?? "";
  if (flag.kind === "string" || flag.kind === "enum") return `\`${JSON.stringify(d)}\``;
  if (flag.kind === "duration") return `\`${formatDuration(parseDuration(d))}\``;
  return `\`${d}\``;
}

function statusNote(flag: Pick<FlagInfo, "status" | "noEffect">): string {
  if (flag.status === "planned") return " [not implemented yet]";
  if (flag.status === "no-op") return ` [no effect: ${flag.noEffect ?? "not applicable"}]`;
  return "";
}

function flagColumn(flag: FlagInfo): string {
  const names =
    flag.shorthand !== undefined ? `  -${flag.shorthand}, --${flag.name}` : `      --${flag.name}`;
  return flag.typeName === "" ? names : `${names} ${flag.typeName}`;
}

/** Wraps `text` to `WIDTH`, continuation lines indented by `indent` spaces. */
function wrap(first: string, text: string, indent: number): string {
  const pad = " ".repeat(indent);
  const lines: string[] = [];
  let line = first;
  let lineHasWords = false;
  for (const word of text.split(" ")) {
    if (lineHasWords && line.length + 1 + word.length > WIDTH) {
      lines.push(line);
      line = pad + word;
    } else {
      line += (lineHasWords ? " " : "") + word;
    }
    lineHasWords = true;
  }
  lines.push(line);
  return lines.join("\n");
}

function gateLine(name: string, stage: string, dflt: boolean, note: string): string {
  return `${name}=true|false (${stage} - default=${dflt})${note}`;
}

/** Column where help lines start; longer flag columns put the help on the next line. */
const MAX_COLUMN = 40;

function flagLines(flags: readonly FlagInfo[]): string {
  const column = Math.min(MAX_COLUMN, Math.max(...flags.map((f) => flagColumn(f).length)) + 3);
  const out: string[] = [];
  let group: FlagGroup | undefined;
  for (const flag of flags) {
    if (flag.group !== group) {
      if (group !== undefined) out.push("");
      out.push(`${GROUP_TITLES[flag.group]}:`);
      group = flag.group;
    }
    const dflt = helpDefault(flag);
    const text = `${flag.help}${dflt !== undefined ? ` (default ${dflt})` : ""}${statusNote(flag)}`;
    const names = flagColumn(flag);
    if (names.length + 2 > column) {
      out.push(names);
      out.push(wrap(" ".repeat(column), text, column));
    } else {
      out.push(wrap(names.padEnd(column), text, column));
    }
    if (flag.kind === "featureGates") {
      const pad = " ".repeat(column);
      for (const [name, stage] of Object.entries(META_GATES)) {
        out.push(pad + gateLine(name, stage, false, ""));
      }
      for (const name of FEATURE_GATE_NAMES) {
        const gate: GateMeta = FEATURE_GATES[name];
        out.push(pad + gateLine(name, gate.stage, gate.default, statusNote(gate)));
      }
      for (const name of Object.keys(REMOVED_GATES)) {
        out.push(`${pad}${name}=true (removed upstream, always on; accepted for old manifests)`);
      }
    }
  }
  return out.join("\n");
}

/** Flags a command accepts, grouped in help order. */
export function flagsOf(command: CommandName): FlagInfo[] {
  return GROUP_ORDER.flatMap((g) =>
    FLAGS.filter((f) => f.group === g && f.commands.includes(command)),
  );
}

/**
 * The text `--help` prints. `topic` undefined gives the overview with the flags of `run`;
 * a command gives that command's usage and flags.
 */
export function helpText(topic?: CommandName): string {
  const parts: string[] = [];
  if (topic === undefined) {
    parts.push(
      `${PROGRAM}: the Kubernetes CSI external-provisioner sidecar, for Bun, Deno and Node.js.`,
      "",
      "Usage:",
      `  ${PROGRAM} [run] [flags]      ${COMMAND_SUMMARIES.run}`,
      `  ${PROGRAM} probe [flags]      ${COMMAND_SUMMARIES.probe}`,
      `  ${PROGRAM} dev [flags]        ${COMMAND_SUMMARIES.dev}`,
      `  ${PROGRAM} orphans [flags]    ${COMMAND_SUMMARIES.orphans}`,
      `  ${PROGRAM} version            Print the version and git commit.`,
      `  ${PROGRAM} help [command]     Show the flags of a command.`,
      "",
      "Flags of run:",
      "",
    );
  } else {
    parts.push(
      `Usage: ${PROGRAM} ${topic === "run" ? "[run]" : topic} [flags]`,
      "",
      COMMAND_SUMMARIES[topic],
      "",
    );
  }
  parts.push(flagLines(flagsOf(topic ?? "run")));
  parts.push(
    "",
    "Values use Go syntax: durations like 150s, 1m30s or 500ms; booleans as --flag or --flag=false.",
    "Flags marked [no effect] are accepted for compatibility; start-up warns when one is set.",
  );
  return `${parts.join("\n")}\n`;
}

function cell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

function tableStatus(flag: Pick<FlagInfo, "status" | "noEffect">): string {
  if (flag.status === "implemented") return "implemented";
  if (flag.status === "planned") return "not implemented yet";
  return `no effect: ${flag.noEffect ?? "not applicable"}`;
}

/**
 * A Markdown table of every flag (name, default, meaning, status), in help order. README.md
 * embeds it; a test keeps the copy current.
 */
export function flagsMarkdownTable(): string {
  const rows = ["| Flag | Default | Meaning | Status |", "|---|---|---|---|"];
  const seen = new Set<string>();
  for (const command of ["run", "probe", "dev", "orphans"] as const) {
    for (const flag of flagsOf(command)) {
      if (seen.has(flag.key)) continue;
      seen.add(flag.key);
      const name =
        flag.shorthand !== undefined
          ? `\`-${flag.shorthand}\`, \`--${flag.name}\``
          : `\`--${flag.name}\``;
      const only = flag.commands.length === 1 ? `\`${flag.commands[0]}\` only. ` : "";
      rows.push(
        `| ${name} | ${tableDefault(flag)} | ${cell(only + flag.help)} | ${tableStatus(flag)} |`,
      );
    }
  }
  return `${rows.join("\n")}\n`;
}

/** A Markdown table of the feature gates (`--feature-gates`). */
export function featureGatesMarkdownTable(): string {
  const rows = ["| Gate | Stage | Default | Meaning | Status |", "|---|---|---|---|---|"];
  for (const [name, stage] of Object.entries(META_GATES)) {
    rows.push(
      `| \`${name}\` | ${stage} | \`false\` | Turn on every ${stage.toLowerCase()} gate not named itself. | implemented |`,
    );
  }
  for (const name of FEATURE_GATE_NAMES) {
    const gate: GateMeta = FEATURE_GATES[name];
    rows.push(
      `| \`${name}\` | ${gate.stage} | \`${gate.default}\` | ${cell(gate.help)} | ${tableStatus(gate)} |`,
    );
  }
  for (const [name, why] of Object.entries(REMOVED_GATES)) {
    rows.push(
      `| \`${name}\` | removed | \`true\` | Accepted as \`=true\` only: ${cell(why)}. | implemented |`,
    );
  }
  return `${rows.join("\n")}\n`;
}
