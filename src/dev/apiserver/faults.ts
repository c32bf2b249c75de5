/**
 * Fault injection and request accounting for the test API server: scripted failures for the
 * next matching requests, added latency, and counters of requests and writes by verb and
 * resource (the controllers' API budget is measured on the write counter).
 */

import type { Status } from "../../kube/objects.ts";
import type { Resource } from "../../kube/resources.ts";
import { type ApiError, failure, reasonForCode } from "./status.ts";

/** What a request is, as the fault rules and counters see it. */
export interface RequestInfo {
  /** HTTP method, upper case. */
  method: string;
  /** Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection. */
  verb: string;
  /** Plural resource name ("" for non-resource paths such as `/version`). */
  resource: string;
  /** Subresource ("" for the main resource), e.g. `status`. */
  subresource: string;
  /** URL path. */
  path: string;
  watch: boolean;
}

/** A scripted failure for the next matching requests. Unset matchers match everything. */
export interface FailRule {
  /** HTTP method to match, e.g. `PUT`. */
  method?: string;
  /** Kubernetes verb to match, e.g. `create`, `watch`, `list`. */
  verb?: string;
  /** Plural resource to match, e.g. `persistentvolumes` (or a `Resource` descriptor). */
  resource?: string | Resource;
  /** Subresource to match; "" for the main resource only. */
  subresource?: string;
  /** URL path prefix to match, e.g. `/api/v1/persistentvolumes`. */
  pathPrefix?: string;
  /** Match only watch requests (true) or only other requests (false). */
  watch?: boolean;
  /** HTTP status of the answer: 500, 429, 410, 409, 503, 504, 403… */
  status: number;
  /** Status `reason`; default the one Kubernetes uses for the code (`InternalError`, `Expired`…). */
  reason?: string;
  /** Status `message`; default a sentence naming the injected fault. */
  message?: string;
  /** Adds `Retry-After` and `details.retryAfterSeconds` (for 429 and 503). Default 1 for 429. */
  retryAfterSeconds?: number;
  /** How many matching requests fail; default 1. `Infinity` until `clearFaults()`. */
  count?: number;
  /**
   * For watch requests: answer 200 and send the Status as an in-band `ERROR` event, then end
   * the stream (how kube-apiserver reports 410 Expired on a watch). Default false.
   */
  inBand?: boolean;
}

export class Faults {
  #rules: { rule: FailRule; remaining: number }[] = [];
  /** Added to every request before it is handled, in milliseconds (through the clock). */
  latencyMs = 0;

  add(rule: FailRule): void {
    this.#rules.push({ rule, remaining: rule.count ?? 1 });
  }

  clear(): void {
    this.#rules = [];
    this.latencyMs = 0;
  }

  /** Number of scripted failures still pending. */
  get pending(): number {
    return this.#rules.reduce((n, r) => n + r.remaining, 0);
  }

  /** The first rule matching `info`, consumed once; undefined when none matches. */
  take(info: RequestInfo): FailRule | undefined {
    for (const entry of this.#rules) {
      if (entry.remaining <= 0 || !matches(entry.rule, info)) continue;
      entry.remaining--;
      this.#rules = this.#rules.filter((e) => e.remaining > 0);
      return entry.rule;
    }
    return undefined;
  }
}

function matches(rule: FailRule, info: RequestInfo): boolean {
  if (rule.method !== undefined && rule.method.toUpperCase() !== info.method) return false;
  if (rule.verb !== undefined && rule.verb !== info.verb) return false;
  if (rule.resource !== undefined) {
    const plural = typeof rule.resource === "string" ? rule.resource : rule.resource.plural;
    if (plural !== info.resource) return false;
  }
  if (rule.subresource !== undefined && rule.subresource !== info.subresource) return false;
  if (rule.pathPrefix !== undefined && !info.path.startsWith(rule.pathPrefix)) return false;
  if (rule.watch !== undefined && rule.watch !== info.watch) return false;
  return true;
}

/** The Status error a rule answers with. */
export function faultError(rule: FailRule): ApiError {
  const code = rule.status;
  const reason = rule.reason ?? reasonForCode(code);
  const message =
    rule.message ??
    (code === 410
      ? "too old resource version: 1 (2)"
      : code === 429
        ? "Too many requests, please try again later."
        : `Injected fault: ${reason}`);
  const retry = rule.retryAfterSeconds ?? (code === 429 ? 1 : undefined);
  const details: NonNullable<Status["details"]> | undefined =
    retry !== undefined ? { retryAfterSeconds: retry } : undefined;
  return failure(
    code,
    reason,
    message,
    details,
    retry !== undefined ? { "Retry-After": String(retry) } : {},
  );
}

/** A query over counted requests. Unset fields match everything. */
export interface CountQuery {
  verb?: string;
  /** Plural resource name or a `Resource` descriptor; a path such as `/version` for non-resource requests. */
  resource?: string | Resource;
  /** "" for the main resource only, `status` for the status subresource only. */
  subresource?: string;
}

/** Counts requests by verb, resource and subresource. */
export class RequestCounter {
  #counts = new Map<string, { verb: string; resource: string; subresource: string; n: number }>();
  #total = 0;

  /** Every counted request. */
  get total(): number {
    return this.#total;
  }

  add(verb: string, resource: string, subresource = ""): void {
    const key = `${verb} ${resource}${subresource ? `/${subresource}` : ""}`;
    const entry = this.#counts.get(key);
    if (entry) entry.n++;
    else this.#counts.set(key, { verb, resource, subresource, n: 1 });
    this.#total++;
  }

  /** Requests matching the query (all of them without one). */
  count(q: CountQuery = {}): number {
    const plural = typeof q.resource === "string" ? q.resource : q.resource?.plural;
    let n = 0;
    for (const e of this.#counts.values()) {
      if (q.verb !== undefined && e.verb !== q.verb) continue;
      if (plural !== undefined && e.resource !== plural) continue;
      if (q.subresource !== undefined && e.subresource !== q.subresource) continue;
      n += e.n;
    }
    return n;
  }

  /** Counts by `verb resource[/subresource]`, e.g. `{ "create persistentvolumes": 3 }`. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, e] of [...this.#counts].sort((a, b) => (a[0] < b[0] ? -1 : 1))) out[k] = e.n;
    return out;
  }

  reset(): void {
    this.#counts.clear();
    this.#total = 0;
  }
}
