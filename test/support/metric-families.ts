/**
 * The shape of a Prometheus exposition: families with their type and, per label name, the label
 * values seen. scripts/capture-upstream.ts stores upstream's in a fixture; tests compare ours.
 */

/** One metric family as the fixture keeps it: type, and per label name its sorted values. */
export interface FamilyShape {
  type: string;
  help: string;
  labels: Record<string, string[]>;
}

/**
 * Families, their types, label names and label values, from the Prometheus text format. A family
 * without samples is left out: Go's client does not even write its TYPE line.
 */
export function metricFamilies(text: string): Record<string, FamilyShape> {
  const families: Record<string, FamilyShape> = {};
  const types = new Map<string, string>();
  const sets: Record<string, Map<string, Set<string>>> = {};
  const sampled = new Set<string>();
  const helps = new Map<string, string>();
  for (const line of text.split("\n")) {
    const helpLine = /^# HELP (\S+) ?(.*)$/.exec(line);
    if (helpLine) {
      helps.set(helpLine[1]!, helpLine[2]!);
      continue;
    }
    const typeLine = /^# TYPE (\S+) (\S+)/.exec(line);
    if (typeLine) {
      types.set(typeLine[1]!, typeLine[2]!);
      families[typeLine[1]!] = {
        type: typeLine[2]!,
        help: helps.get(typeLine[1]!) ?? "",
        labels: {},
      };
      sets[typeLine[1]!] = new Map();
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? /.exec(line);
    if (!sample) continue;
    let name = sample[1]!;
    if (!types.has(name)) name = name.replace(/_(bucket|sum|count|total|created)$/, "");
    const labels = sets[name];
    if (!labels) continue;
    sampled.add(name);
    for (const m of (sample[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      const values = labels.get(m[1]!) ?? new Set<string>();
      values.add(m[2]!);
      labels.set(m[1]!, values);
    }
  }
  for (const [name, labels] of Object.entries(sets)) {
    for (const [label, values] of labels) families[name]!.labels[label] = [...values].sort();
  }
  return Object.fromEntries(
    Object.entries(families)
      .filter(([name]) => sampled.has(name))
      .sort(([a], [b]) => a.localeCompare(b)),
  );
}

/** Families upstream serves that this sidecar leaves out on purpose, with the reason. */
export const ABSENT_ON_PURPOSE: readonly [RegExp, string][] = [
  [/^go_/, "Go runtime statistics: there is no Go runtime here"],
  [
    /^(aggregator_discovery_|apiserver_|cardinality_enforcement_|disabled_metrics_total$|hidden_metrics_total$|registered_metrics_total$)/,
    "registered by the k8s.io/apiserver and component-base packages upstream links in; they describe those Go libraries (audit, envelope encryption, the metric registry itself), not provisioning",
  ],
];

/** Label values upstream has that this sidecar never produces, with the reason. */
export const VALUES_ABSENT_ON_PURPOSE: Readonly<Record<string, string>> = {
  "name=unsavedpvs":
    "upstream's library retries unsaved PVs on a queue of their own; here the claim's own queue retries them (src/controller/claims.ts keeps the built PV), so there is no such queue",
};

/** Families this sidecar adds, with the reason. */
export const OURS_ONLY: Readonly<Record<string, string>> = {
  process_heap_bytes: "the JavaScript heap; Go reports its heap under go_memstats_*",
  controller_persistentvolumeclaim_provision_end_to_end_seconds:
    "end-to-end latency, not in upstream (src/metrics/latency-metrics.ts)",
  controller_persistentvolume_delete_end_to_end_seconds:
    "end-to-end latency, not in upstream (src/metrics/latency-metrics.ts)",
  controller_persistentvolumeclaim_api_wait_seconds:
    "the PV save's wait for the API budget, not in upstream (src/metrics/latency-metrics.ts)",
};

/** Families with samples only when something specific happens (a failed delete). */
export const ONLY_SOMETIMES: ReadonlySet<string> = new Set([
  "controller_persistentvolume_delete_failed_total",
]);

const absentOnPurpose = (name: string) => ABSENT_ON_PURPOSE.some(([re]) => re.test(name));

/**
 * Every way `ours` differs from `upstream` beyond the differences named above: a missing or
 * extra family, another type or help text, other label names or label values. Upstream's driver
 * name is read as `driverName` (a test's own driver). Empty when they agree.
 */
export function familyDifferences(
  ours: Record<string, FamilyShape>,
  upstream: Record<string, FamilyShape>,
  driverNames: { upstream: string; ours: string },
): string[] {
  const out: string[] = [];
  for (const name of Object.keys(upstream)) {
    if (!absentOnPurpose(name) && !ONLY_SOMETIMES.has(name) && !(name in ours)) {
      out.push(`missing family ${name}`);
    }
  }
  for (const name of Object.keys(ours)) {
    if (!(name in upstream) && !(name in OURS_ONLY) && !ONLY_SOMETIMES.has(name)) {
      out.push(`extra family ${name}`);
    }
  }
  for (const [name, theirs] of Object.entries(upstream)) {
    const mine = ours[name];
    if (absentOnPurpose(name) || mine === undefined) continue;
    if (mine.type !== theirs.type) out.push(`${name}: type ${mine.type}, upstream ${theirs.type}`);
    if (mine.help !== theirs.help)
      out.push(
        `${name}: help ${JSON.stringify(mine.help)}, upstream ${JSON.stringify(theirs.help)}`,
      );
    const names = (f: FamilyShape) => Object.keys(f.labels).sort().join(",");
    if (names(mine) !== names(theirs)) {
      out.push(`${name}: labels {${names(mine)}}, upstream {${names(theirs)}}`);
      continue;
    }
    for (const [label, values] of Object.entries(theirs.labels)) {
      const expected = values
        .map((v) => (label === "driver_name" && v === driverNames.upstream ? driverNames.ours : v))
        .filter((v) => VALUES_ABSENT_ON_PURPOSE[`${label}=${v}`] === undefined)
        .sort();
      const got = mine.labels[label] ?? [];
      if (JSON.stringify(got) !== JSON.stringify(expected)) {
        out.push(`${name}{${label}}: ${JSON.stringify(got)}, upstream ${JSON.stringify(expected)}`);
      }
    }
  }
  return out;
}
