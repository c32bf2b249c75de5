/**
 * The tests' API server: the product's embedded API server (`src/dev/apiserver`) plus fault
 * injection (`faults.ts`) through its request hook: `failNext`, `latency`, `clearFaults`.
 * Everything else of `src/dev/apiserver/mod.ts` is re-exported, so tests import from here.
 */
import {
  type ApiServerOptions,
  type ApiServer as EmbeddedApiServer,
  startApiServer as startEmbeddedApiServer,
} from "../../src/dev/apiserver/mod.ts";
import { systemClock } from "../../src/util/clock.ts";
import { type FailRule, Faults, faultError } from "./faults.ts";

export * from "../../src/dev/apiserver/mod.ts";
export type { FailRule } from "./faults.ts";

export interface ApiServer extends EmbeddedApiServer {
  /** Fails the next matching request(s) with a Status (or an in-band watch ERROR). */
  failNext(rule: FailRule): void;
  /** Delays every request by `ms` through the clock (a fake clock must be advanced); 0 removes it. */
  latency(ms: number): void;
  /** Removes pending failures and latency. */
  clearFaults(): void;
}

/** Starts the embedded API server with fault injection; resolves once it listens. */
export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const faults = new Faults();
  const clock = opts.clock ?? systemClock;
  const server = await startEmbeddedApiServer({
    ...opts,
    async onRequest(info, signal) {
      if (faults.latencyMs > 0) await clock.sleep(faults.latencyMs, signal);
      const rule = faults.take(info);
      if (rule) return { error: faultError(rule), inBand: rule.inBand };
      // The caller's own hook (e.g. a test holding some requests) comes after the faults.
      return opts.onRequest?.(info, signal);
    },
  });
  return Object.assign(server, {
    failNext(rule: FailRule) {
      faults.add(rule);
    },
    latency(ms: number) {
      faults.latencyMs = Math.max(0, ms);
    },
    clearFaults() {
      faults.clear();
    },
  });
}
