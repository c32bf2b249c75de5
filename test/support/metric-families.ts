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
