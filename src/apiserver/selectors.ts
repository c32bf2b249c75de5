/**
 * Label and field selectors, parsed and matched as kube-apiserver does.
 *
 * Labels: comma-separated requirements `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
 * `k notin (a,b)`, `k>n`, `k<n`. `!=` and `notin` also match objects without the label.
 *
 * Fields: comma-separated `path=value`, `path==value`, `path!=value`, where `path` is a dotted
 * path into the object (`metadata.name`, `involvedObject.kind`); `\,` `\=` `\\` escape. A missing
 * field reads as "".
 */
import type { KubeObject } from "../kube/objects.ts";
import { badRequest } from "./status.ts";

type LabelOp = "exists" | "!exists" | "=" | "!=" | "in" | "notin" | ">" | "<";

interface LabelRequirement {
  key: string;
  op: LabelOp;
  values: string[];
}

export interface Selector {
  readonly empty: boolean;
  matches(obj: KubeObject): boolean;
}

export const everything: Selector = { empty: true, matches: () => true };

const labelKeyRe =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const labelValueRe = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of text) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
      continue;
    }
    cur += ch;
  }
  parts.push(cur);
  return parts;
}

function parseLabelRequirement(raw: string): LabelRequirement {
  const text = raw.trim();
  const fail = (why: string) =>
    badRequest(`unable to parse requirement: ${why}: ${JSON.stringify(text)}`);
  let m = /^!\s*([^\s=!<>(),]+)$/.exec(text);
  if (m) return checkKey({ key: m[1]!, op: "!exists", values: [] }, fail);
  m = /^([^\s=!<>(),]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(text);
  if (m) {
    const values = m[3]!
      .split(",")
      .map((v) => v.trim())
      .filter((v, _i, all) => !(v === "" && all.length === 1));
    if (values.length === 0) {
      throw fail("for 'in', 'notin' operators, values set can't be empty");
    }
    return checkKey({ key: m[1]!, op: m[2] as LabelOp, values }, fail);
  }
  m = /^([^\s=!<>(),]+)\s*(==|=|!=|>|<)\s*([^\s=!<>(),]*)$/.exec(text);
  if (m) {
    const op = m[2] === "==" ? "=" : (m[2] as LabelOp);
    if ((op === ">" || op === "<") && !/^-?\d+$/.test(m[3]!)) {
      throw fail("for 'Gt', 'Lt' operators, the value must be an integer");
    }
    return checkKey({ key: m[1]!, op, values: [m[3]!] }, fail);
  }
  m = /^([^\s=!<>(),]+)$/.exec(text);
  if (m) return checkKey({ key: m[1]!, op: "exists", values: [] }, fail);
  throw fail("found unexpected token");
}

function checkKey(r: LabelRequirement, fail: (why: string) => Error): LabelRequirement {
  if (!labelKeyRe.test(r.key) || r.key.length > 317) throw fail(`invalid label key "${r.key}"`);
  if (r.op !== ">" && r.op !== "<") {
    for (const v of r.values) {
      if (v.length > 63 || !labelValueRe.test(v)) throw fail(`invalid label value: "${v}"`);
    }
  }
  return r;
}

function matchLabel(r: LabelRequirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, r.key);
  const v = labels[r.key];
  switch (r.op) {
    case "exists":
      return has;
    case "!exists":
      return !has;
    case "=":
    case "in":
      return has && r.values.includes(v!);
    case "!=":
    case "notin":
      return !has || !r.values.includes(v!);
    case ">":
    case "<": {
      if (!has || !/^-?\d+$/.test(v!)) return false;
      const n = Number(v);
      const bound = Number(r.values[0]);
      return r.op === ">" ? n > bound : n < bound;
    }
  }
}

/** Parses a `labelSelector` query value; throws a 400 ApiError on a syntax error. */
export function parseLabelSelector(text: string | null | undefined): Selector {
  if (text === null || text === undefined || text.trim() === "") return everything;
  const reqs = splitTopLevel(text).map(parseLabelRequirement);
  return {
    empty: false,
    matches: (obj) => {
      const labels = obj.metadata?.labels ?? {};
      return reqs.every((r) => matchLabel(r, labels));
    },
  };
}

interface FieldRequirement {
  path: string;
  negate: boolean;
  value: string;
}

function unescapeField(s: string): string {
  return s.replace(/\\([\\,=])/g, "$1");
}

function splitUnescaped(text: string, sep: string): string[] {
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === "\\" && i + 1 < text.length) {
      cur += ch + text[i + 1];
      i++;
      continue;
    }
    if (ch === sep) {
      parts.push(cur);
      cur = "";
      continue;
    }
    cur += ch;
  }
  parts.push(cur);
  return parts;
}

/** The string value of a dotted path in an object, "" when absent, as field selectors see it. */
export function fieldValue(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object") return "";
    cur = (cur as Record<string, unknown>)[part];
  }
  if (cur === null || cur === undefined) return "";
  if (typeof cur === "string") return cur;
  if (typeof cur === "number" || typeof cur === "boolean") return String(cur);
  return JSON.stringify(cur);
}

/**
 * Parses a `fieldSelector` query value. `supported`, when given, lists the field labels the
 * resource accepts (kube-apiserver answers 400 "field label not supported" for others).
 */
export function parseFieldSelector(
  text: string | null | undefined,
  supported?: readonly string[],
): Selector {
  if (text === null || text === undefined || text.trim() === "") return everything;
  const reqs: FieldRequirement[] = [];
  for (const raw of splitUnescaped(text, ",")) {
    const part = raw.trim();
    if (part === "") continue;
    const m = /^(.*?)(!=|==|=)(.*)$/.exec(part);
    if (!m || m[1]!.trim() === "") {
      throw badRequest(`invalid selector: '${text}'; can't understand '${part}'`);
    }
    const path = unescapeField(m[1]!.trim());
    if (supported !== undefined && !supported.includes(path)) {
      throw badRequest(`field label not supported: ${path}`);
    }
    reqs.push({ path, negate: m[2] === "!=", value: unescapeField(m[3]!) });
  }
  if (reqs.length === 0) return everything;
  return {
    empty: false,
    matches: (obj) => reqs.every((r) => (fieldValue(obj, r.path) === r.value) !== r.negate),
  };
}

/** Both selectors together. */
export function both(a: Selector, b: Selector): Selector {
  if (a.empty) return b;
  if (b.empty) return a;
  return { empty: false, matches: (obj) => a.matches(obj) && b.matches(obj) };
}
