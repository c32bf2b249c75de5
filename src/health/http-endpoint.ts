/**
 * The diagnostics HTTP server of `--http-endpoint` (or the deprecated `--metrics-address`):
 * Prometheus metrics on `--metrics-path`, `/healthz/leader-election` when leader election is
 * on, and a plain `/healthz`. A pure request handler; the listening is done by `runtime/serve`.
 */
import { PROMETHEUS_CONTENT_TYPE, type Registry } from "../metrics/registry.ts";

export interface EndpointOptions {
  registry: Registry;
  /** `--metrics-path`; default `/metrics`. */
  metricsPath?: string;
  /** Leader-election health; absent when leader election is off. */
  leaderHealthy?: () => boolean;
  /** Whether the controllers are running (for `/healthz`). */
  ready?: () => boolean;
}

export function createEndpointHandler(o: EndpointOptions): (req: Request) => Promise<Response> {
  const metricsPath = o.metricsPath ?? "/metrics";
  return async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405 });
    }
    if (path === metricsPath) {
      return new Response(o.registry.render(), {
        headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
      });
    }
    if (path === "/healthz/leader-election" && o.leaderHealthy) {
      return o.leaderHealthy()
        ? new Response("ok\n")
        : new Response("leader election lease not renewed in time\n", { status: 500 });
    }
    if (path === "/healthz" || path === "/healthz/ping") {
      const ok = o.ready?.() ?? true;
      return new Response(ok ? "ok\n" : "not ready\n", { status: ok ? 200 : 503 });
    }
    return new Response("404 page not found\n", { status: 404 });
  };
}

/**
 * Splits Go's `host:port` listen address (`:8080`, `0.0.0.0:8080`, `[::1]:8080`). As Go's
 * `net.Listen("tcp", ...)`, an empty or unspecified host (``, `0.0.0.0`, `::`) means every
 * interface of both families: `::` (see `serve`), so the port answers over IPv4 and IPv6 alike.
 * Any other host is listened on as given.
 */
export function parseListenAddress(address: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  if (!m) throw new Error(`Invalid listen address ${JSON.stringify(address)}: expected host:port`);
  const host = m[1] ?? m[2] ?? "";
  const unspecified = host === "" || host === "0.0.0.0" || host === "::";
  return { hostname: unspecified ? "::" : host, port: Number(m[3]) };
}
