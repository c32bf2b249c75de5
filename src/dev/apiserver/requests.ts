/**
 * Request accounting for the embedded API server: counters of requests and writes by verb and
 * resource (the controllers' API budget is measured on the write counter), and the hook that
 * sees each request before it is handled (the tests' fault injection, `test/support/faults.ts`).
 */

import type { Resource } from "../../kube/resources.ts";
import type { ApiError } from "./status.ts";

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

/** What a {@link RequestHook} answers instead of the request's handling. */
export interface RequestVerdict {
  /** The Status error to answer with. */
  error: ApiError;
  /** For watch requests: answer 200 and send the Status as an in-band `ERROR` event. */
  inBand?: boolean;
}

/**
 * Sees every request before it is handled (after it is counted); may delay it (awaiting) or
 * answer it with an error. The product passes none.
 */
export type RequestHook = (
  info: RequestInfo,
  signal: AbortSignal,
) => Promise<RequestVerdict | undefined> | RequestVerdict | undefined;

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
