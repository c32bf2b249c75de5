/**
 * Helpers for the API server tests: JSON requests over real HTTP, and a watch reader that
 * awaits the next event with a deadline (never a sleep).
 */
import type { KubeObject, Status, WatchEvent } from "../../../src/kube/objects.ts";
import { within } from "../../support/wait.ts";

export { within };

export interface Reply<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

/** Sends a request with an optional JSON body; parses a JSON answer. */
export async function call<T = KubeObject>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply<T>> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)["content-type"] ??= "application/json";
  }
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get("content-type") ?? "").includes("json") && text !== "") {
    parsed = JSON.parse(text);
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
}

export const asStatus = (r: Reply<unknown>): Status => r.body as Status;

export interface WatchReader {
  status: number;
  headers: Headers;
  /** The next event; rejects after the deadline or when the stream ends first. */
  next(ms?: number): Promise<WatchEvent>;
  /** Resolves `"end"` when the stream ends cleanly, `"error"` when it is cut. */
  ended(ms?: number): Promise<"end" | "error">;
  close(): void;
}

/** Opens a watch (GET `path`) and reads its newline-delimited events. */
export async function openWatch(
  base: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<WatchReader> {
  const aborter = new AbortController();
  const res = await fetch(`${base}${path}`, { signal: aborter.signal, headers });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const queue: WatchEvent[] = [];
  let buffer = "";
  let finished: "end" | "error" | undefined;
  let wake: (() => void) | undefined;
  void (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let nl = buffer.indexOf("\n");
        while (nl >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (line.trim() !== "") queue.push(JSON.parse(line) as WatchEvent);
          nl = buffer.indexOf("\n");
        }
        wake?.();
      }
      finished = "end";
    } catch {
      finished = "error";
    }
    wake?.();
  })();
  const waitChange = () => new Promise<void>((r) => (wake = r));
  return {
    status: res.status,
    headers: res.headers,
    async next(ms = 5000) {
      return within(
        (async () => {
          for (;;) {
            const ev = queue.shift();
            if (ev) return ev;
            if (finished) throw new Error(`Watch stream ended (${finished}) before the next event`);
            await waitChange();
          }
        })(),
        ms,
        "a watch event",
      );
    },
    async ended(ms = 5000) {
      return within(
        (async () => {
          while (!finished) await waitChange();
          return finished;
        })(),
        ms,
        "the end of the watch",
      );
    },
    close() {
      aborter.abort();
    },
  };
}

export function pvc(name: string, extra: Partial<KubeObject> = {}): KubeObject {
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name },
    spec: {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: "1Gi" } },
      storageClassName: "fast",
    },
    ...extra,
  };
}

export function pv(name: string, extra: Partial<KubeObject> = {}): KubeObject {
  return {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: { name },
    spec: {
      accessModes: ["ReadWriteOnce"],
      capacity: { storage: "1Gi" },
      csi: { driver: "hostpath.csi.k8s.io", volumeHandle: name },
      storageClassName: "fast",
    },
    ...extra,
  };
}

export const pvcs = "/api/v1/namespaces/default/persistentvolumeclaims";
export const pvs = "/api/v1/persistentvolumes";
