/**
 * The tests' one way to wait: on an event or a condition, with a deadline, never a sleep that
 * asserts timing. `within` bounds an awaited promise; `eventually` polls a condition that has no
 * event to await (another process's output, a file, a remote API).
 */

/** A description, or a function that builds it when the deadline passes (with current state). */
export type What = string | (() => string);

const describe = (what: What) => (typeof what === "string" ? what : what());

/**
 * Resolves with `p`, or rejects with "Timed out after `ms` ms waiting for `what`" once `ms` of
 * real time passed (a deadline for an awaited event, not a sleep).
 */
export function within<T>(p: Promise<T>, ms = 5000, what: What = "event"): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${ms} ms waiting for ${describe(what)}`)),
      ms,
    );
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Calls `probe` every `intervalMs` (default 100) until it returns something other than
 * `undefined`, and fails after `timeoutMs` (default 60 s) naming `what`, the last error seen and
 * `describe()`'s account of the state.
 */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  opts: { timeoutMs?: number; intervalMs?: number; describe?: () => string } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) {
      const cause = last instanceof Error ? `: ${last.message}` : last ? `: ${String(last)}` : "";
      const state = opts.describe ? ` (${opts.describe()})` : "";
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${cause}${state}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}
