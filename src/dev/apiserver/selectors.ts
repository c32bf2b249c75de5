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
import type { KubeObject } from "../../kube/objects.ts";
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

// ---------------------------------------------------------------- label selector syntax

/**
 * Tokens of the label selector language, as Kubernetes' lexer splits them: special symbols
 * (longest match), and runs of other characters (identifiers, or the keywords `in` / `notin`).
 */
type Token = "eos" | "id" | "in" | "notin" | "(" | ")" | "," | "!" | "=" | "==" | "!=" | ">" | "<";

interface Scanned {
  tok: Token;
  lit: string;
}

const specialSymbols = "=!(),><";
const symbolTokens = new Set(["=", "==", "!", "!=", "(", ")", ",", ">", "<"]);

function isSpace(ch: string | undefined): boolean {
  return ch === " " || ch === "\t" || ch === "\r" || ch === "\n";
}

function lex(text: string): Scanned[] {
  const out: Scanned[] = [];
  let i = 0;
  for (;;) {
    while (isSpace(text[i])) i++;
    if (i >= text.length) {
      out.push({ tok: "eos", lit: "" });
      return out;
    }
    if (specialSymbols.includes(text[i]!)) {
      let buf = "";
      let last = "";
      while (i < text.length && specialSymbols.includes(text[i]!)) {
        if (symbolTokens.has(buf + text[i])) {
          buf += text[i];
          last = buf;
          i++;
        } else break;
      }
      out.push({ tok: last as Token, lit: last });
      continue;
    }
    let word = "";
    while (i < text.length && !isSpace(text[i]) && !specialSymbols.includes(text[i]!)) {
      word += text[i];
      i++;
    }
    out.push({ tok: word === "in" || word === "notin" ? word : "id", lit: word });
  }
}

const qualifiedNameFmt = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const qualifiedNameRe = new RegExp(`^${qualifiedNameFmt}$`);
const qualifiedNameMsg = `must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '${qualifiedNameFmt}')`;
const subdomainFmt = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const subdomainRe = new RegExp(`^${subdomainFmt}$`);
const labelValueFmt = `(${qualifiedNameFmt})?`;
const labelValueRe = new RegExp(`^${labelValueFmt}$`);

/** `validation.IsQualifiedName` as label keys use it. */
function labelKeyErrors(key: string): string[] {
  const parts = key.split("/");
  const errs: string[] = [];
  let name: string;
  if (parts.length === 1) name = parts[0]!;
  else if (parts.length === 2) {
    const prefix = parts[0]!;
    name = parts[1]!;
    if (prefix === "") errs.push("prefix part must be non-empty");
    else {
      if (prefix.length > 253) errs.push("prefix part must be no more than 253 characters");
      if (!subdomainRe.test(prefix)) {
        errs.push(
          `prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '${subdomainFmt}')`,
        );
      }
    }
  } else {
    return [
      `a valid label key ${qualifiedNameMsg} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`,
    ];
  }
  if (name === "") errs.push("name part must be non-empty");
  else if (name.length > 63) errs.push("name part must be no more than 63 characters");
  if (!qualifiedNameRe.test(name)) errs.push(`name part ${qualifiedNameMsg}`);
  return errs;
}

/** `validation.IsValidLabelValue`. */
function labelValueErrors(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 63) errs.push("must be no more than 63 characters");
  if (!labelValueRe.test(value)) {
    errs.push(
      `a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '${labelValueFmt}')`,
    );
  }
  return errs;
}

/** A syntax error, worded as Kubernetes' parser words it. */
class SelectorSyntaxError extends Error {}

const binaryOperators = "in, notin, =, ==, !=, gt, lt";

/**
 * Kubernetes' label selector parser: a requirement list, each requirement `[!]key`,
 * `key op value` or `key in|notin (values)`, checked with the same validation (key, values,
 * integer values for `>` `<`) and failing with the same messages.
 */
class LabelParser {
  readonly #items: Scanned[];
  #pos = 0;

  constructor(text: string) {
    this.#items = lex(text);
  }

  /** The next token; in value position the keywords read as identifiers. */
  #peek(): Scanned {
    const it = this.#items[this.#pos]!;
    return it.tok === "in" || it.tok === "notin" ? { tok: "id", lit: it.lit } : it;
  }

  #next(values = true): Scanned {
    const it = this.#items[this.#pos]!;
    if (this.#pos < this.#items.length - 1) this.#pos++;
    return values && (it.tok === "in" || it.tok === "notin") ? { tok: "id", lit: it.lit } : it;
  }

  parse(): LabelRequirement[] {
    const reqs: LabelRequirement[] = [];
    for (;;) {
      const { tok, lit } = this.#peek();
      if (tok === "eos") return reqs;
      if (tok !== "id" && tok !== "!") {
        throw new SelectorSyntaxError(
          `found '${lit}', expected: !, identifier, or 'end of string'`,
        );
      }
      try {
        reqs.push(this.#requirement());
      } catch (err) {
        if (err instanceof SelectorSyntaxError) {
          throw new SelectorSyntaxError(`unable to parse requirement: ${err.message}`);
        }
        throw err;
      }
      const t = this.#next();
      if (t.tok === "eos") return reqs;
      if (t.tok !== ",") {
        throw new SelectorSyntaxError(`found '${t.lit}', expected: ',' or 'end of string'`);
      }
      const t2 = this.#peek();
      if (t2.tok !== "id" && t2.tok !== "!") {
        throw new SelectorSyntaxError(`found '${t2.lit}', expected: identifier after ','`);
      }
    }
  }

  #requirement(): LabelRequirement {
    let t = this.#next();
    let negated = false;
    if (t.tok === "!") {
      negated = true;
      t = this.#next();
    }
    if (t.tok !== "id") throw new SelectorSyntaxError(`found '${t.lit}', expected: identifier`);
    const key = t.lit;
    const keyErrs = labelKeyErrors(key);
    if (keyErrs.length > 0) {
      throw new SelectorSyntaxError(
        `<nil>: Invalid value: ${JSON.stringify(key)}: ${keyErrs.join("; ")}`,
      );
    }
    const after = this.#peek().tok;
    if (after === "eos" || after === ",") {
      return { key, op: negated ? "!exists" : "exists", values: [] };
    }
    if (negated) {
      // "!key" followed by more: the requirement ends at the key (the caller reports the rest).
      return { key, op: "!exists", values: [] };
    }
    const opTok = this.#next(false);
    let op: LabelOp;
    switch (opTok.tok) {
      case "in":
      case "notin":
        op = opTok.tok;
        break;
      case "=":
      case "==":
        op = "=";
        break;
      case "!=":
      case ">":
      case "<":
        op = opTok.tok;
        break;
      default:
        throw new SelectorSyntaxError(`found '${opTok.lit}', expected: ${binaryOperators}`);
    }
    const values = op === "in" || op === "notin" ? this.#setValues() : [this.#exactValue()];
    const errs: string[] = [];
    if (op === ">" || op === "<") {
      values.forEach((v, i) => {
        if (!/^[+-]?\d+$/.test(v)) {
          errs.push(
            `values[${i}]: Invalid value: ${JSON.stringify(v)}: for 'Gt', 'Lt' operators, the value must be an integer`,
          );
        }
      });
    }
    values.forEach((v, i) => {
      const e = labelValueErrors(v);
      if (e.length > 0) {
        errs.push(`values[${i}][${key}]: Invalid value: ${JSON.stringify(v)}: ${e.join("; ")}`);
      }
    });
    if (errs.length > 0) {
      const unique = [...new Set(errs)];
      throw new SelectorSyntaxError(unique.length === 1 ? unique[0]! : `[${unique.join(", ")}]`);
    }
    return { key, op, values };
  }

  #exactValue(): string {
    const p = this.#peek();
    if (p.tok === "eos" || p.tok === ",") return "";
    const t = this.#next();
    if (t.tok === "id") return t.lit;
    throw new SelectorSyntaxError(`found '${t.lit}', expected: identifier`);
  }

  #setValues(): string[] {
    const open = this.#next();
    if (open.tok !== "(") throw new SelectorSyntaxError(`found '${open.lit}' expected: '('`);
    const p = this.#peek();
    if (p.tok === ")") {
      this.#next();
      return [""];
    }
    if (p.tok !== "id" && p.tok !== ",") {
      throw new SelectorSyntaxError(`found '${p.lit}', expected: ',', ')' or identifier`);
    }
    const values = new Set<string>();
    for (;;) {
      const t = this.#next();
      if (t.tok === "id") {
        values.add(t.lit);
        const t2 = this.#peek();
        if (t2.tok === ",") continue;
        if (t2.tok === ")") break;
        throw new SelectorSyntaxError(`found '${t2.lit}', expected: ',' or ')'`);
      }
      if (t.tok === ",") {
        if (values.size === 0) values.add("");
        const t2 = this.#peek();
        if (t2.tok === ")") {
          values.add("");
          break;
        }
        if (t2.tok === ",") {
          this.#next();
          values.add("");
        }
        continue;
      }
      throw new SelectorSyntaxError(`found '${t.lit}', expected: ',', or identifier`);
    }
    this.#next();
    return [...values].sort();
  }
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
      if (!has || !/^[+-]?\d+$/.test(v!)) return false;
      const n = Number(v);
      const bound = Number(r.values[0]);
      return r.op === ">" ? n > bound : n < bound;
    }
  }
}

/** Parses a `labelSelector` query value; throws a 400 ApiError on a syntax error. */
export function parseLabelSelector(text: string | null | undefined): Selector {
  if (text === null || text === undefined) return everything;
  let reqs: LabelRequirement[];
  try {
    reqs = new LabelParser(text).parse();
  } catch (err) {
    if (err instanceof SelectorSyntaxError) throw badRequest(err.message);
    throw err;
  }
  if (reqs.length === 0) return everything;
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
 * resource accepts; kube-apiserver answers 400 for others, with `unsupported(label)` as the
 * message (default "field label not supported: <label>").
 */
export function parseFieldSelector(
  text: string | null | undefined,
  supported?: readonly string[],
  unsupported: (label: string) => string = (label) => `field label not supported: ${label}`,
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
      throw badRequest(unsupported(path));
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
