/**
 * A hint to the runtime's garbage collector. Bun (JavaScriptCore) lets the heap grow while a
 * long list is decoded page by page; asking for a collection between pages frees each page's
 * raw objects before the next arrives, which lowers the peak. Node and Deno offer no such call
 * without flags: a no-op there.
 */
export function collectGarbageSoon(): void {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  bun?.gc(false);
}
