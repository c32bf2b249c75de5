import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { afterEach, describe, it } from "node:test";
import { lockDirectory } from "../../src/runtime/lock.ts";

describe("lockDirectory()", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), "lock-"));
    dirs.push(d);
    return d;
  };

  it("locks a directory (creating it), refuses a second lock, and frees it on release", async () => {
    const dir = join(tempDir(), "data");
    const first = await lockDirectory(dir);
    assert.ok(first.ok);
    assert.equal(readFileSync(join(dir, "lock"), "utf8"), `${process.pid}\n`);
    const second = await lockDirectory(dir);
    assert.deepEqual(second, { ok: false, path: join(dir, "lock"), pid: process.pid });
    await first.release();
    const third = await lockDirectory(dir);
    assert.ok(third.ok);
    await third.release();
  });

  it("refuses a lock held by another live process", async () => {
    const dir = tempDir();
    // The parent of this test runner is alive for as long as the test runs.
    writeFileSync(join(dir, "lock"), `${process.ppid}\n`);
    const lock = await lockDirectory(dir);
    assert.deepEqual(lock, { ok: false, path: join(dir, "lock"), pid: process.ppid });
  });

  it("takes over a lock left by a process that is gone", async () => {
    const dir = tempDir();
    const gone = spawnSync(process.execPath, ["--version"]).pid;
    assert.ok(gone && gone > 0);
    writeFileSync(join(dir, "lock"), `${gone}\n`);
    const lock = await lockDirectory(dir);
    assert.ok(lock.ok, JSON.stringify(lock));
    assert.equal(readFileSync(join(dir, "lock"), "utf8"), `${process.pid}\n`);
    await lock.release();
  });

  it("takes over a lock with our own PID that this process does not hold (a restart as PID 1)", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "lock"), `${process.pid}\n`);
    const lock = await lockDirectory(dir);
    assert.ok(lock.ok);
    await lock.release();
  });
});
