import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { startApiServer } from "../../../src/dev/apiserver/mod.ts";
import type { StateFiles } from "../../../src/dev/apiserver/persist.ts";
import type { Status } from "../../../src/kube/objects.ts";
import { resources } from "../../../src/kube/resources.ts";
import { FakeClock } from "../../support/fake-clock.ts";
import { call, openWatch, pvc, pvcs, within } from "./support.ts";

describe("startApiServer() persistence", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "apiserver-state-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps objects and the resourceVersion counter across a restart", async () => {
    const clock = new FakeClock();
    const first = await startApiServer({ clock, dataDir: dir });
    const created = (await call(first.url, "POST", pvcs, pvc("kept"))).body;
    await call(first.url, "POST", "/api/v1/namespaces", { metadata: { name: "team" } });
    const rvBefore = first.resourceVersion;
    await first.close();

    const second = await startApiServer({ clock, dataDir: dir });
    try {
      const got = await call(second.url, "GET", `${pvcs}/kept`);
      assert.equal(got.status, 200);
      assert.equal(got.body.metadata.uid, created.metadata.uid);
      assert.equal(got.body.metadata.resourceVersion, created.metadata.resourceVersion);
      assert.equal((await call(second.url, "GET", "/api/v1/namespaces/team")).status, 200);
      assert.equal(second.resourceVersion, rvBefore);
      const next = (await call(second.url, "POST", pvcs, pvc("after"))).body;
      assert.ok(Number(next.metadata.resourceVersion) > Number(rvBefore));

      // History does not survive: a watch from before the restart is told to relist.
      const w = await openWatch(
        second.url,
        `${pvcs}?watch=1&resourceVersion=${created.metadata.resourceVersion}`,
      );
      const ev = await w.next();
      assert.equal(ev.type, "ERROR");
      assert.equal((ev.object as unknown as Status).code, 410);
      w.close();
    } finally {
      await second.close();
    }
  });

  it("debounces writes through the clock and replaces the file atomically", async () => {
    const clock = new FakeClock();
    const writes: string[] = [];
    let onWrite: (() => void) | undefined;
    const nextWrite = () => new Promise<void>((r) => (onWrite = r));
    const files: StateFiles = {
      read: async () => undefined,
      writeAtomic: async (path, text) => {
        writes.push(text);
        await writeFile(path, text);
        onWrite?.();
      },
    };
    const api = await startApiServer({ clock, dataDir: dir, files, persistDebounceMs: 500 });
    try {
      const startWrite = nextWrite();
      await clock.advance(500);
      await within(startWrite);
      const afterStart = writes.length;
      await call(api.url, "POST", pvcs, pvc("a"));
      await call(api.url, "POST", pvcs, pvc("b"));
      assert.equal(writes.length, afterStart, "nothing written before the debounce delay");
      const written = nextWrite();
      await clock.advance(500);
      await within(written, 5000, "the debounced write");
      await within(api.flush());
      assert.equal(writes.length, afterStart + 1, "two changes, one write");
      const state = JSON.parse(writes.at(-1)!) as {
        kind: string;
        resourceVersion: string;
        buckets: Record<string, unknown[]>;
      };
      assert.equal(state.kind, "ApiServerState");
      assert.equal(state.resourceVersion, api.resourceVersion);
      assert.equal(state.buckets.persistentvolumeclaims?.length, 2);
    } finally {
      await api.close();
    }
  });

  it("saves pending changes on close and leaves no temporary file", async () => {
    const clock = new FakeClock();
    const api = await startApiServer({ clock, dataDir: dir, persistDebounceMs: 60_000 });
    api.put(pvc("via-put"));
    await api.close();
    assert.deepEqual(await readdir(dir), ["state.json"]);
    const text = await readFile(join(dir, "state.json"), "utf8");
    assert.match(text, /"via-put"/);
    const again = await startApiServer({ clock, dataDir: dir });
    try {
      assert.equal(
        again.get(resources.persistentVolumeClaims, "via-put")?.metadata.name,
        "via-put",
      );
    } finally {
      await again.close();
    }
  });

  it("refuses to start on a state file it cannot read", async () => {
    await writeFile(join(dir, "state.json"), "{ not json");
    await assert.rejects(startApiServer({ dataDir: dir }), /Cannot read API server state/);
  });
});
