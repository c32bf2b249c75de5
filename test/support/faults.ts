/**
 * Fault injection for the tests' API server (`apiserver.ts`): scripted failures for the next
 * matching requests and added latency, applied through the server's request hook. Test support
 * only: the product's embedded API server has no faults.
 */

import type { RequestInfo } from "../../src/dev/apiserver/requests.ts";
import { type ApiError, failure, reasonForCode } from "../../src/dev/apiserver/status.ts";
import type { Status } from "../../src/kube/objects.ts";
import type { Resource } from "../../src/kube/resources.ts";

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
