/**
 * A lock file that says which process owns a directory: `<dir>/lock` holds the owner's PID,
 * created exclusively. A second process finds a live owner and is refused; a lock left behind
 * by a process that is gone (a crash, SIGKILL) is taken over.
 */
import { mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { readTextFileIfExists } from "./files.ts";

export type DirectoryLock =
  | { ok: true; path: string; release(): Promise<void> }
  /** Held by the live process `pid` (this very process when it locked it already). */
  | { ok: false; path: string; pid: number };

/** Locks held by this process: a lock with our own PID that is not here is a stale one. */
const held = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}

/** Takes the lock of `dir` (created when missing). */
export async function lockDirectory(dir: string): Promise<DirectoryLock> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, "lock");
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, "wx", 0o644);
      try {
        await handle.writeFile(`${process.pid}\n`, "utf8");
      } finally {
        await handle.close();
      }
      held.add(path);
      return {
        ok: true,
        path,
        async release() {
          if (!held.delete(path)) return;
          const text = await readTextFileIfExists(path);
          if (text?.trim() === String(process.pid)) await rm(path, { force: true });
        },
      };
    } catch (err) {
      if ((err as { code?: string }).code !== "EEXIST") throw err;
    }
    const pid = Number.parseInt((await readTextFileIfExists(path))?.trim() ?? "", 10);
    const live = pid === process.pid ? held.has(path) : pid > 0 && alive(pid);
    if (live) return { ok: false, path, pid };
    await rm(path, { force: true });
  }
  throw new Error(`Cannot lock ${dir}: ${path} keeps coming back`);
}
