/**
 * Memory per cached PVC and PV: the whole object as the API server returns it (managedFields
 * included) against the projection the informer caches (`src/kube/projections.ts`).
 *
 * Objects are built as JSON text and parsed one by one, as the client decodes them, so that
 * strings are not shared between objects the way literals in this file would be. Each variant
 * fills a `Store` (map, UID index) and the heap growth after a full GC is divided by the count.
 *
 *   node --expose-gc bench/store-memory.ts [count]
 *   bun bench/store-memory.ts [count]
 *   deno run -A --v8-flags=--expose-gc bench/store-memory.ts [count]
 *
 * Writes (merges its runtime's entry into) bench/results/store-memory.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { KubeObject, PersistentVolume, PersistentVolumeClaim } from "../src/kube/objects.ts";
import { projectPersistentVolume, projectPersistentVolumeClaim } from "../src/kube/projections.ts";
import { Store } from "../src/kube/store.ts";
import { pvcJson, pvJson } from "./objects.ts";

const count = Number(process.argv[2] ?? 20_000);

type Runtime = "bun" | "deno" | "node";
const g = globalThis as {
  Bun?: { version: string; gc(force: boolean): void };
  Deno?: { version: { deno: string } };
  gc?: () => void;
};
const runtime: Runtime = g.Bun ? "bun" : g.Deno ? "deno" : "node";
const version = g.Bun?.version ?? g.Deno?.version.deno ?? process.versions.node;

function collect(): void {
  for (let i = 0; i < 4; i++) {
    if (g.Bun) g.Bun.gc(true);
    else if (g.gc) g.gc();
  }
}

function heapUsed(): number {
  collect();
  return process.memoryUsage().heapUsed;
}

interface Measured {
  /** Heap bytes per object with the whole object cached. */
  fullBytesPerObject: number;
  /** Heap bytes per object with the projection cached. */
  projectedBytesPerObject: number;
  /** 1 − projected / full. */
  saving: number;
  /** Size of one object's JSON, for scale. */
  jsonBytes: number;
}

/** Heap growth per object of a store filled from `texts`; the store is gone on return. */
function bytesPerObject<T extends KubeObject>(
  texts: readonly string[],
  project: ((o: T) => T) | undefined,
): number {
  const base = heapUsed();
  const store = new Store<T, T>({ project });
  for (const t of texts) store.upsert(JSON.parse(t) as T);
  const grown = heapUsed() - base;
  if (store.size !== texts.length) throw new Error("store size mismatch");
  return grown / texts.length;
}

function measure<T extends KubeObject>(
  make: (i: number) => string,
  project: (o: T) => T,
): Measured {
  const texts = Array.from({ length: count }, (_, i) => make(i));
  const fullBytes = bytesPerObject(texts, undefined);
  const projectedBytes = bytesPerObject(texts, project);
  return {
    fullBytesPerObject: Math.round(fullBytes),
    projectedBytesPerObject: Math.round(projectedBytes),
    saving: Math.round((1 - projectedBytes / fullBytes) * 1000) / 1000,
    jsonBytes: texts[0]!.length,
  };
}

if (!g.Bun && !g.gc) {
  console.error(
    "No GC hook: run with `node --expose-gc`, `deno run --v8-flags=--expose-gc`, or bun",
  );
  process.exit(2);
}

const result = {
  date: new Date().toISOString(),
  runtime,
  version,
  objects: count,
  pvc: measure<PersistentVolumeClaim>(pvcJson, projectPersistentVolumeClaim),
  pv: measure<PersistentVolume>(pvJson, projectPersistentVolume),
};
console.log(JSON.stringify(result, null, 2));

const file = join(dirname(fileURLToPath(import.meta.url)), "results", "store-memory.json");
mkdirSync(dirname(file), { recursive: true });
let all: Record<string, unknown> = {};
try {
  all = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
} catch {
  // first run
}
all[runtime] = result;
writeFileSync(file, `${JSON.stringify(all, null, 2)}\n`);
