/**
 * Small file helpers over `node:fs/promises` (available on Bun, Deno and Node): read a text file
 * that may not exist, and replace a file atomically (write a temporary file beside it, flush it,
 * then rename it over the target), so that a crash never leaves a half-written file behind.
 */
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import process from "node:process";

/** Text-file access as a dependency (see {@link nodeTextFiles}). */
export interface TextFiles {
  /** The file's text, or `undefined` when it does not exist. */
  read(path: string): Promise<string | undefined>;
  /** Replaces the file's content atomically, creating parent directories as needed. */
  writeAtomic(path: string, text: string): Promise<void>;
  /** Joins path segments. */
  join(...parts: string[]): string;
}

let tempCounter = 0;

export async function readTextFileIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * Replaces `path` with `text` (creating its parent directories): a temporary file beside it
 * (`<path>.tmp-<pid>-<n>`, created with `mode`), flushed, then renamed over it.
 */
export async function writeFileAtomic(path: string, text: string, mode = 0o600): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.tmp-${process.pid}-${++tempCounter}`;
  try {
    const handle = await open(temp, "w", mode);
    try {
      await handle.writeFile(text, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => {});
    throw err;
  }
}

/** {@link TextFiles} on the local file system. */
export const nodeTextFiles: TextFiles = {
  read: readTextFileIfExists,
  writeAtomic: writeFileAtomic,
  join: (...parts) => join(...parts),
};
