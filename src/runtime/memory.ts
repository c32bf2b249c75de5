/**
 * Gives start-up's garbage back to the system. On Bun a full collection followed by
 * `Bun.shrink()` returns JavaScriptCore's free heap pages: the garbage of module evaluation and
 * of the initial lists is otherwise kept until a later collection, and the idle RSS stays a few
 * MiB higher (bench/README.md, "Start-up and idle memory"). Called once the workers run, after
 * the first Probe. Node and Deno collect and release on their own; there it does nothing.
 */
export function releaseMemory(): void {
  const bun = bunMemory();
  if (!bun) return;
  bun.gc(true);
  bun.shrink();
}

/**
 * A full collection, for code that makes garbage faster than the collector's own schedule
 * follows: a streaming list decodes tens of thousands of objects in a second or two, and on Bun
 * the heap grows ahead of that garbage (20,000 claims and 20,000 volumes: a peak of 162-168 MiB
 * without, 139 MiB with one collection per 1,000 objects; bench/README.md). Node's and Deno's
 * young-generation collections handle short-lived garbage on their own; there it does nothing.
 */
export function collectGarbage(): void {
  bunMemory()?.gc(true);
}

function bunMemory(): { gc(force: boolean): void; shrink(): void } | undefined {
  return (globalThis as { Bun?: { gc(force: boolean): void; shrink(): void } }).Bun;
}
