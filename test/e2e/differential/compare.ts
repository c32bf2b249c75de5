/**
 * Field-by-field comparison of two normalised observations (upstream's and ours) of one case,
 * the allowlist check, and the suite's one-line summary. Pure functions.
 */

import type { Json } from "./normalise.ts";

export interface Difference {
  case: string;
  /** Field path, e.g. `pv.spec.csi.fsType` or `events["Normal Provisioning"]`. */
  path: string;
  /** undefined: the field is absent on that side. */
  upstream: Json | undefined;
  ours: Json | undefined;
}

/** One difference that is on purpose (listed in README "What is different from upstream"). */
export interface Intentional {
  id: string;
  /** Why, in one sentence (the README says more). */
  reason: string;
  /** Case ids it applies to; omitted: every case. */
  cases?: readonly string[];
  /** The field path: exact, or a pattern over the whole path. */
  path: string | RegExp;
  /** A further condition on the values (e.g. "absent in ours"). */
  when?: (d: Difference) => boolean;
}

const IDENT = /^[A-Za-z_$][\w$]*$/;

function child(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  if (IDENT.test(key)) return path ? `${path}.${key}` : key;
  return `${path}[${JSON.stringify(key)}]`;
}

/**
 * Every leaf where `upstream` and `ours` differ. Objects are compared key by key; arrays element
 * by element when both have the same length, else as one value (a list with an element more or
 * less is one difference, shown whole).
 */
export function diff(
  caseId: string,
  upstream: Json | undefined,
  ours: Json | undefined,
  path = "",
): Difference[] {
  if (upstream === ours) return [];
  const bothObjects =
    upstream !== null &&
    ours !== null &&
    typeof upstream === "object" &&
    typeof ours === "object" &&
    !Array.isArray(upstream) &&
    !Array.isArray(ours);
  if (bothObjects) {
    const keys = [...new Set([...Object.keys(upstream), ...Object.keys(ours)])].sort();
    return keys.flatMap((k) => diff(caseId, upstream[k], ours[k], child(path, k)));
  }
  if (Array.isArray(upstream) && Array.isArray(ours)) {
    if (upstream.length === ours.length) {
      return upstream.flatMap((u, i) => diff(caseId, u, ours[i], child(path, i)));
    }
    return [{ case: caseId, path, upstream, ours }];
  }
  if (JSON.stringify(upstream) === JSON.stringify(ours)) return [];
  return [{ case: caseId, path, upstream, ours }];
}

/** The allowlist entry that covers `d`, if any. */
export function intentionalFor(
  d: Difference,
  allowlist: readonly Intentional[],
): Intentional | undefined {
  return allowlist.find(
    (a) =>
      (a.cases === undefined || a.cases.includes(d.case)) &&
      (typeof a.path === "string" ? a.path === d.path : a.path.test(d.path)) &&
      (a.when === undefined || a.when(d)),
  );
}

export type Verdict = "identical" | "intentional" | "unexpected";

export interface CaseResult {
  case: string;
  verdict: Verdict;
  /** Each difference with the allowlist entry that covers it (undefined: unexpected). */
  differences: Array<{ d: Difference; intentional: Intentional | undefined }>;
}

/** A case's verdict: identical, only intentional differences, or at least one unexpected. */
export function judge(
  caseId: string,
  differences: Difference[],
  allowlist: readonly Intentional[],
): CaseResult {
  const judged = differences.map((d) => ({ d, intentional: intentionalFor(d, allowlist) }));
  const verdict: Verdict =
    judged.length === 0
      ? "identical"
      : judged.every((j) => j.intentional)
        ? "intentional"
        : "unexpected";
  return { case: caseId, verdict, differences: judged };
}

const show = (v: Json | undefined): string => (v === undefined ? "(absent)" : JSON.stringify(v));

/** One line per difference: case, field path, upstream's value, ours, and the verdict. */
export function describeDifference(j: { d: Difference; intentional: Intentional | undefined }) {
  const tag = j.intentional ? `intentional (${j.intentional.id})` : "UNEXPECTED";
  return `${j.d.case}: ${j.d.path || "(whole)"}: upstream ${show(j.d.upstream)} | ours ${show(j.d.ours)} — ${tag}`;
}

/** `differential: N cases, N identical, N intentional differences, N unexpected` */
export function summaryLine(results: readonly CaseResult[]): string {
  const n = (v: Verdict) => results.filter((r) => r.verdict === v).length;
  return `differential: ${results.length} cases, ${n("identical")} identical, ${n("intentional")} intentional differences, ${n("unexpected")} unexpected`;
}

/** Allowlist entries no difference used (stale entries are worth knowing about). */
export function unusedEntries(
  results: readonly CaseResult[],
  allowlist: readonly Intentional[],
): Intentional[] {
  const used = new Set(results.flatMap((r) => r.differences.map((j) => j.intentional?.id)));
  return allowlist.filter((a) => !used.has(a.id));
}
