/**
 * The shape of the house: import cycles, imports that climb up the layers, and the largest rooms
 * of `src/`. Prints a report (or JSON with `--json`); the numbers are reproducible from the tree.
 *
 *   node_modules/.bin/bun scripts/house.ts [--json] [dir]
 *
 * - Folder cycles: strongly connected groups of `src/` folders, counting every relative import
 *   (type-only ones too: they tie the folders' designs together even when erased).
 * - File cycles: strongly connected groups of files, counting imports that load code (no
 *   `import type`).
 * - Upward imports: imports from a lower layer to a higher one, with the layers below (a folder
 *   may import its own layer and any layer under it).
 * - Escapes: imports from `src/` to files outside it (`examples/`, `test/`).
 * - The longest top-level functions (a `function` declaration at column 0 up to its closing
 *   brace at column 0; functions inside classes and closures are not counted on their own).
 * - The `run` closure: files the sidecar command can load — the static imports of `src/main.ts`,
 *   and the run command's module (`src/sidecar.ts`, formerly `src/cli/run.ts`) with everything it
 *   reaches, static and dynamic imports alike — and whether the dev kit (`src/dev/`, the
 *   embedded API server, the sample driver) is among them.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

/**
 * Top to bottom: a module may import its own layer and the ones below it. A folder not listed
 * counts as the bottom layer, so its imports show up as upward until it is placed here.
 */
const LAYERS: string[][] = [
  ["main.ts"],
  ["cli"],
  ["sidecar.ts", "dev", "apiserver"],
  ["controller", "capacity", "leader", "health", "audit"],
  ["provision"],
  ["migration"],
  ["csi", "kube", "metrics", "config"],
  ["runtime", "util", "gen", "version.ts"],
];

const root = resolve(process.argv.slice(2).find((a) => !a.startsWith("--")) ?? ".");
const json = process.argv.includes("--json");
const src = join(root, "src");

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (/\.(ts|js)$/.test(name) && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

interface Edge {
  from: string;
  to: string;
  typeOnly: boolean;
  dynamic: boolean;
}

const IMPORT =
  /(?:^|\n)\s*(import|export)\s+(type\s+)?(?:[^"';]*?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

function importsOf(file: string): Edge[] {
  const text = readFileSync(file, "utf8");
  const edges: Edge[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[3] ?? m[4];
    if (!spec?.startsWith(".")) continue;
    const to = resolve(dirname(file), spec);
    edges.push({ from: file, to, typeOnly: Boolean(m[2]), dynamic: m[4] !== undefined });
  }
  return edges;
}

/** `src/controller/claims.ts` → `controller`; `src/main.ts` → `main.ts`; outside → `../x`. */
function room(file: string): string {
  const rel = relative(src, file);
  if (rel.startsWith("..")) return relative(root, file).split("/")[0] ?? rel;
  const parts = rel.split("/");
  return parts.length === 1 ? (parts[0] ?? rel) : (parts[0] ?? rel);
}

function layerOf(r: string): number {
  const i = LAYERS.findIndex((l) => l.includes(r));
  return i < 0 ? LAYERS.length : i;
}

/** Tarjan's strongly connected components of size > 1 (and self-loops). */
function cycles(nodes: string[], next: (n: string) => string[]): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of next(v)) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v) ?? 0, idx.get(w) ?? 0));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      for (;;) {
        const w = stack.pop() as string;
        on.delete(w);
        comp.push(w);
        if (w === v) break;
      }
      if (comp.length > 1 || next(v).includes(v)) out.push(comp.sort());
    }
  };
  for (const n of nodes) if (!idx.has(n)) visit(n);
  return out;
}

const files = walk(src);
const examples = join(root, "examples");
const exampleFiles = statSync(examples, { throwIfNoEntry: false })?.isDirectory()
  ? walk(examples)
  : [];
const edges = [...files, ...exampleFiles].flatMap(importsOf);
const rel = (f: string) => relative(root, f);

// Rooms: lines per top-level folder of src/.
const lines = new Map<string, { files: number; lines: number }>();
for (const f of files) {
  if (rel(f).startsWith("src/gen/")) continue;
  const r = room(f);
  const n = readFileSync(f, "utf8").split("\n").length;
  const cur = lines.get(r) ?? { files: 0, lines: 0 };
  lines.set(r, { files: cur.files + 1, lines: cur.lines + n });
}
const rooms = [...lines.entries()]
  .map(([name, v]) => ({ name, ...v }))
  .sort((a, b) => b.lines - a.lines);

// Folder cycles (all imports inside src/).
const folderNext = new Map<string, Set<string>>();
for (const e of edges) {
  const a = room(e.from);
  const b = room(e.to);
  if (a === b || relative(src, e.to).startsWith("..")) continue;
  if (!folderNext.has(a)) folderNext.set(a, new Set());
  folderNext.get(a)?.add(b);
}
const folderCycles = cycles([...folderNext.keys()], (n) => [...(folderNext.get(n) ?? [])]);

// File cycles (imports that load code).
const fileNext = new Map<string, string[]>();
for (const e of edges) {
  if (e.typeOnly) continue;
  fileNext.set(e.from, [...(fileNext.get(e.from) ?? []), e.to]);
}
const fileCycles = cycles(files, (n) => fileNext.get(n) ?? []).map((c) => c.map(rel));

// Upward imports and escapes.
const upward = edges
  .filter((e) => !relative(src, e.from).startsWith(".."))
  .filter((e) => !relative(src, e.to).startsWith(".."))
  .filter((e) => layerOf(room(e.to)) < layerOf(room(e.from)))
  .map((e) => `${rel(e.from)} -> ${rel(e.to)}${e.typeOnly ? " (type)" : ""}`);
const escapes = edges
  .filter((e) => !relative(src, e.from).startsWith(".."))
  .filter((e) => relative(src, e.to).startsWith(".."))
  .map((e) => `${rel(e.from)} -> ${rel(e.to)}`);

// The run closure: main.ts's static imports, and the run command's module with everything it
// reaches (dynamic imports too). The run command's module is the one main.ts loads for `run`.
const runEntry = ["src/sidecar.ts", "src/cli/run.ts"]
  .map((f) => join(root, f))
  .find((f) => statSync(f, { throwIfNoEntry: false }) !== undefined);
const closure = new Set<string>();
const pending = [join(src, "main.ts")];
if (runEntry) pending.push(runEntry);
for (let f = pending.pop(); f !== undefined; f = pending.pop()) {
  if (closure.has(f)) continue;
  closure.add(f);
  const main = f === join(src, "main.ts");
  for (const e of edges)
    if (e.from === f && !e.typeOnly && !(main && e.dynamic)) pending.push(e.to);
}
const runFiles = [...closure].map(rel).sort();
const devKit = runFiles.filter(
  (f) =>
    f.startsWith("src/dev/") ||
    f.startsWith("src/apiserver/") ||
    f.startsWith("examples/") ||
    f === "src/cli/dev.ts",
);
const runLines = [...closure].reduce(
  (n, f) => n + (rel(f).startsWith("src/gen/") ? 0 : readFileSync(f, "utf8").split("\n").length),
  0,
);

// The longest top-level functions.
const functions: { name: string; lines: number }[] = [];
for (const f of files) {
  if (rel(f).startsWith("src/gen/")) continue;
  const lines = readFileSync(f, "utf8").split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = /^(?:export )?(?:async )?function\*? ?(\w+)/.exec(lines[i] ?? "");
    if (!m) continue;
    let j = i;
    while (j < lines.length && lines[j] !== "}") j++;
    functions.push({ name: `${rel(f)}:${m[1]}`, lines: j - i + 1 });
  }
}
functions.sort((a, b) => b.lines - a.lines);

const report = {
  folderCycles,
  fileCycles,
  upwardImports: upward,
  escapes,
  run: { files: runFiles.length, lines: runLines, devKitFiles: devKit },
  rooms,
  longestFunctions: functions.slice(0, 8),
};

if (json) {
  console.log(JSON.stringify(report, null, 2));
} else {
  console.log(`Folder cycles: ${folderCycles.length}`);
  for (const c of folderCycles) console.log(`  ${c.join(" <-> ")}`);
  console.log(`File cycles (code-loading imports): ${fileCycles.length}`);
  for (const c of fileCycles) console.log(`  ${c.join(" <-> ")}`);
  console.log(`Upward imports (against the layers): ${upward.length}`);
  for (const u of upward) console.log(`  ${u}`);
  console.log(`Imports from src/ to outside it: ${escapes.length}`);
  for (const u of escapes) console.log(`  ${u}`);
  console.log(
    `run closure: ${runFiles.length} files, ${runLines} lines (without src/gen); dev-kit files in it: ${devKit.length}`,
  );
  for (const f of devKit) console.log(`  ${f}`);
  console.log("Longest top-level functions (lines):");
  for (const fn of functions.slice(0, 8))
    console.log(`  ${String(fn.lines).padStart(4)}  ${fn.name}`);
  console.log("Largest rooms (lines, without src/gen):");
  for (const r of rooms.slice(0, 8))
    console.log(`  ${r.name.padEnd(22)} ${r.lines} (${r.files} files)`);
}
