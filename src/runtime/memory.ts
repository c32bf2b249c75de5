/**
 * Gives start-up's garbage back to the system. On Bun a full collection followed by
 * `Bun.shrink()` returns JavaScriptCore's free heap pages: the garbage of module evaluation and
 * of the initial lists is otherwise kept until a later collection, and the idle RSS stays a few
 * MiB higher (bench/README.md, "Start-up and idle memory"). Called once the workers run, after
 * the first Probe. Node and Deno collect and release on their own; there it does nothing.
 */
export function releaseMemory(): void {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void; shrink(): void } }).Bun;
  if (!bun) return;
  bun.gc(true);
  bun.shrink();
}
