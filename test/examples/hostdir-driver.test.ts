/**
 * The hostdir sample driver, black box: a Connect gRPC client over its unix socket, the driver
 * started in-process with `startHostdirDriver()` (and once as a child process, for SIGTERM).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { afterEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  parseHostdirFlags,
  type RunningHostdirDriver,
  type StartHostdirDriverOptions,
  startHostdirDriver,
  UsageError,
} from "../../examples/hostdir-driver/main.ts";
import { chooseVolumeSize, page } from "../../src/dev/hostdir-driver/driver.ts";
import {
  Controller,
  ControllerServiceCapability_RPC_Type as ControllerRpc,
  type CreateVolumeRequest,
  type CreateVolumeRequestSchema,
  Identity,
  VolumeCapability_AccessMode_Mode as Mode,
  Node,
  PluginCapability_Service_Type as PluginService,
} from "../../src/gen/csi/v1/csi_pb.js";

const GiB = 1024n ** 3n;
const MAIN = fileURLToPath(new URL("../../examples/hostdir-driver/main.ts", import.meta.url));

const mountRwo = {
  accessType: { case: "mount" as const, value: {} },
  accessMode: { mode: Mode.SINGLE_NODE_WRITER },
};

/** The init shape of a CreateVolumeRequest (not the message class). */
type CreateInit = Exclude<MessageInitShape<typeof CreateVolumeRequestSchema>, CreateVolumeRequest>;

function volumeRequest(name: string, extra: Partial<CreateInit> = {}): CreateInit {
  return { name, volumeCapabilities: [mountRwo], ...extra };
}

async function rejects(
  call: Promise<unknown>,
  code: Code,
  pattern?: RegExp,
): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    assert.equal(Code[err.code], Code[code], err.rawMessage);
    if (pattern) assert.match(err.rawMessage, pattern);
    return err;
  }
  assert.fail(`expected the call to fail with ${Code[code]}`);
}

interface Harness {
  dir: string;
  socketPath: string;
  dataDir: string;
  driver: RunningHostdirDriver;
  identity: Client<typeof Identity>;
  controller: Client<typeof Controller>;
  node: Client<typeof Node>;
  /** Stops the driver and closes the client's connections (the data directory stays). */
  stop(): Promise<void>;
}

describe("hostdir sample driver", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "hostdir-test-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  async function start(
    options: Partial<StartHostdirDriverOptions> & { dir?: string } = {},
  ): Promise<Harness> {
    const dir = options.dir ?? tempDir();
    const socketPath = join(dir, "csi.sock");
    const dataDir = join(dir, "data");
    const driver = await startHostdirDriver({ socketPath, dataDir, nodeId: "node-1", ...options });
    const sockets = new Set<Socket>();
    const transport = createGrpcTransport({
      baseUrl: "http://localhost",
      nodeOptions: {
        createConnection: () => {
          const socket = netConnect(socketPath);
          sockets.add(socket);
          return socket;
        },
      },
    });
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      for (const socket of sockets) socket.destroy();
      await driver.close();
    };
    cleanups.push(stop);
    return {
      dir,
      socketPath,
      dataDir,
      driver,
      identity: createClient(Identity, transport),
      controller: createClient(Controller, transport),
      node: createClient(Node, transport),
      stop,
    };
  }

  it("reports its name, capabilities and readiness", async () => {
    const h = await start();
    const info = await h.identity.getPluginInfo({});
    assert.equal(info.name, "hostdir.csi.example.com");
    assert.notEqual(info.vendorVersion, "");
    assert.equal((await h.identity.probe({})).ready, true);
    const plugin = await h.identity.getPluginCapabilities({});
    assert.deepEqual(
      plugin.capabilities.map((c) => (c.type.case === "service" ? c.type.value.type : undefined)),
      [PluginService.CONTROLLER_SERVICE],
    );
    const controller = await h.controller.controllerGetCapabilities({});
    const rpcs = controller.capabilities.map((c) =>
      c.type.case === "rpc" ? c.type.value.type : -1,
    );
    for (const want of [
      ControllerRpc.CREATE_DELETE_VOLUME,
      ControllerRpc.LIST_VOLUMES,
      ControllerRpc.GET_CAPACITY,
      ControllerRpc.CLONE_VOLUME,
      ControllerRpc.SINGLE_NODE_MULTI_WRITER,
      ControllerRpc.CREATE_DELETE_SNAPSHOT,
    ]) {
      assert.ok(rpcs.includes(want), `missing ${ControllerRpc[want]}`);
    }
    assert.ok(!rpcs.includes(ControllerRpc.PUBLISH_UNPUBLISH_VOLUME));
    const h2 = await start({ driverName: "other.example.org" });
    assert.equal((await h2.identity.getPluginInfo({})).name, "other.example.org");
  });

  it("creates a volume as a directory, idempotently by name", async () => {
    const h = await start();
    const first = await h.controller.createVolume(
      volumeRequest("pvc-1", {
        capacityRange: { requiredBytes: 2n * GiB },
        parameters: { a: "b" },
      }),
    );
    const again = await h.controller.createVolume(
      volumeRequest("pvc-1", {
        capacityRange: { requiredBytes: 2n * GiB },
        parameters: { a: "b" },
      }),
    );
    assert.ok(first.volume?.volumeId);
    assert.equal(again.volume?.volumeId, first.volume.volumeId);
    assert.equal(first.volume.capacityBytes, 2n * GiB);
    const path = first.volume.volumeContext.path!;
    assert.ok(lstatSync(path).isDirectory());
    const meta = JSON.parse(readFileSync(`${path}.json`, "utf8"));
    assert.equal(meta.name, "pvc-1");
    assert.equal(meta.capacityBytes, String(2n * GiB));
    assert.deepEqual(meta.parameters, { a: "b" });
    assert.ok(!Number.isNaN(Date.parse(meta.createdAt)));
    // A compatible range (the existing size is inside it) is the same volume.
    const ranged = await h.controller.createVolume(
      volumeRequest("pvc-1", {
        capacityRange: { requiredBytes: GiB, limitBytes: 3n * GiB },
        parameters: { a: "b" },
      }),
    );
    assert.equal(ranged.volume?.volumeId, first.volume.volumeId);
    // Without a range the volume gets the default size.
    const plain = await h.controller.createVolume(volumeRequest("pvc-2"));
    assert.equal(plain.volume?.capacityBytes, GiB);
    assert.notEqual(plain.volume?.volumeId, first.volume.volumeId);
  });

  it("answers ALREADY_EXISTS for the same name with an incompatible request", async () => {
    const h = await start();
    await h.controller.createVolume(
      volumeRequest("pvc-1", {
        capacityRange: { requiredBytes: GiB, limitBytes: GiB },
        parameters: { a: "b" },
      }),
    );
    await rejects(
      h.controller.createVolume(
        volumeRequest("pvc-1", {
          capacityRange: { requiredBytes: 2n * GiB },
          parameters: { a: "b" },
        }),
      ),
      Code.AlreadyExists,
      /pvc-1.*outside the requested range/,
    );
    await rejects(
      h.controller.createVolume(
        volumeRequest("pvc-1", { capacityRange: { requiredBytes: GiB }, parameters: { a: "c" } }),
      ),
      Code.AlreadyExists,
      /other parameters/,
    );
  });

  it("rejects impossible capacity ranges with OUT_OF_RANGE and a full pool with RESOURCE_EXHAUSTED", async () => {
    const h = await start({ capacityBytes: 10n * GiB });
    await rejects(
      h.controller.createVolume(
        volumeRequest("a", { capacityRange: { requiredBytes: 2n * GiB, limitBytes: GiB } }),
      ),
      Code.OutOfRange,
      /limit_bytes .* below required_bytes/,
    );
    await rejects(
      h.controller.createVolume(
        volumeRequest("b", { capacityRange: { requiredBytes: 11n * GiB } }),
      ),
      Code.OutOfRange,
      /exceeds the driver's total capacity/,
    );
    await h.controller.createVolume(
      volumeRequest("c", { capacityRange: { requiredBytes: 6n * GiB } }),
    );
    await rejects(
      h.controller.createVolume(volumeRequest("d", { capacityRange: { requiredBytes: 6n * GiB } })),
      Code.ResourceExhausted,
      /does not fit: 4294967296 bytes free/,
    );
    const list = await h.controller.listVolumes({});
    assert.equal(list.entries.length, 1);
  });

  it("rejects missing fields and unsupported capabilities with INVALID_ARGUMENT", async () => {
    const h = await start();
    await rejects(
      h.controller.createVolume({ volumeCapabilities: [mountRwo] }),
      Code.InvalidArgument,
      /name/,
    );
    await rejects(
      h.controller.createVolume({ name: "x" }),
      Code.InvalidArgument,
      /volume_capabilities/,
    );
    const block = {
      accessType: { case: "block" as const, value: {} },
      accessMode: { mode: Mode.SINGLE_NODE_WRITER },
    };
    await rejects(
      h.controller.createVolume({ name: "x", volumeCapabilities: [block] }),
      Code.InvalidArgument,
      /block access is not supported/,
    );
    const unknownMode = {
      accessType: { case: "mount" as const, value: {} },
      accessMode: { mode: Mode.UNKNOWN },
    };
    await rejects(
      h.controller.createVolume({ name: "x", volumeCapabilities: [unknownMode] }),
      Code.InvalidArgument,
    );
    await rejects(
      h.controller.createVolume(volumeRequest("x", { mutableParameters: { iops: "10" } })),
      Code.InvalidArgument,
      /mutable_parameters/,
    );
    for (const mode of [
      Mode.SINGLE_NODE_MULTI_WRITER,
      Mode.SINGLE_NODE_SINGLE_WRITER,
      Mode.MULTI_NODE_MULTI_WRITER,
    ]) {
      const capability = {
        accessType: { case: "mount" as const, value: {} },
        accessMode: { mode },
      };
      const ok = await h.controller.createVolume({
        name: `mode-${mode}`,
        volumeCapabilities: [capability],
      });
      assert.ok(ok.volume?.volumeId);
    }
    await rejects(h.controller.deleteVolume({}), Code.InvalidArgument, /volume_id/);
    await rejects(h.controller.validateVolumeCapabilities({ volumeId: "v" }), Code.InvalidArgument);
    await rejects(
      h.controller.validateVolumeCapabilities({ volumeId: "nope", volumeCapabilities: [mountRwo] }),
      Code.NotFound,
    );
    const created = await h.controller.createVolume(volumeRequest("validate-me"));
    const confirmed = await h.controller.validateVolumeCapabilities({
      volumeId: created.volume!.volumeId,
      volumeCapabilities: [mountRwo],
    });
    assert.equal(confirmed.confirmed?.volumeCapabilities.length, 1);
    const refused = await h.controller.validateVolumeCapabilities({
      volumeId: created.volume!.volumeId,
      volumeCapabilities: [block],
    });
    assert.equal(refused.confirmed, undefined);
    assert.match(refused.message, /block/);
  });

  it("clones a volume by copying its directory", async () => {
    const h = await start();
    const source = await h.controller.createVolume(
      volumeRequest("source", { capacityRange: { requiredBytes: 2n * GiB } }),
    );
    const sourcePath = source.volume!.volumeContext.path!;
    mkdirSync(join(sourcePath, "sub"));
    writeFileSync(join(sourcePath, "sub", "hello.txt"), "hello from the source");
    const clone = await h.controller.createVolume(
      volumeRequest("clone", {
        volumeContentSource: {
          type: { case: "volume", value: { volumeId: source.volume!.volumeId } },
        },
      }),
    );
    const contentSource = clone.volume?.contentSource?.type;
    assert.equal(contentSource?.case, "volume");
    assert.equal(contentSource?.value.volumeId, source.volume!.volumeId);
    assert.equal(
      clone.volume?.capacityBytes,
      2n * GiB,
      "a clone is at least as large as its source",
    );
    const clonePath = clone.volume!.volumeContext.path!;
    assert.notEqual(clonePath, sourcePath);
    assert.equal(
      readFileSync(join(clonePath, "sub", "hello.txt"), "utf8"),
      "hello from the source",
    );
    // The copy is independent of its source.
    writeFileSync(join(sourcePath, "sub", "hello.txt"), "changed");
    assert.equal(
      readFileSync(join(clonePath, "sub", "hello.txt"), "utf8"),
      "hello from the source",
    );
    await rejects(
      h.controller.createVolume(
        volumeRequest("orphan", {
          volumeContentSource: { type: { case: "volume", value: { volumeId: "missing" } } },
        }),
      ),
      Code.NotFound,
      /Source volume missing not found/,
    );
    await rejects(
      h.controller.createVolume(
        volumeRequest("small", {
          capacityRange: { limitBytes: GiB },
          volumeContentSource: {
            type: { case: "volume", value: { volumeId: source.volume!.volumeId } },
          },
        }),
      ),
      Code.OutOfRange,
    );
  });

  it("takes snapshots and restores them into new volumes", async () => {
    const h = await start();
    const source = await h.controller.createVolume(volumeRequest("source"));
    const sourcePath = source.volume!.volumeContext.path!;
    writeFileSync(join(sourcePath, "data.txt"), "version 1");
    const snap = await h.controller.createSnapshot({
      name: "snap-1",
      sourceVolumeId: source.volume!.volumeId,
    });
    assert.equal(snap.snapshot?.readyToUse, true);
    assert.equal(snap.snapshot?.sourceVolumeId, source.volume!.volumeId);
    assert.ok(snap.snapshot?.creationTime);
    const again = await h.controller.createSnapshot({
      name: "snap-1",
      sourceVolumeId: source.volume!.volumeId,
    });
    assert.equal(again.snapshot?.snapshotId, snap.snapshot.snapshotId);
    const other = await h.controller.createVolume(volumeRequest("other"));
    await rejects(
      h.controller.createSnapshot({ name: "snap-1", sourceVolumeId: other.volume!.volumeId }),
      Code.AlreadyExists,
    );
    writeFileSync(join(sourcePath, "data.txt"), "version 2");
    const restored = await h.controller.createVolume(
      volumeRequest("restored", {
        volumeContentSource: {
          type: { case: "snapshot", value: { snapshotId: snap.snapshot.snapshotId } },
        },
      }),
    );
    assert.equal(restored.volume?.contentSource?.type.case, "snapshot");
    assert.equal(
      readFileSync(join(restored.volume!.volumeContext.path!, "data.txt"), "utf8"),
      "version 1",
    );
    const listed = await h.controller.listSnapshots({ sourceVolumeId: source.volume!.volumeId });
    assert.deepEqual(
      listed.entries.map((e) => e.snapshot?.snapshotId),
      [snap.snapshot.snapshotId],
    );
    await h.controller.deleteSnapshot({ snapshotId: snap.snapshot.snapshotId });
    await h.controller.deleteSnapshot({ snapshotId: snap.snapshot.snapshotId });
    assert.equal((await h.controller.listSnapshots({})).entries.length, 0);
    await rejects(
      h.controller.createVolume(
        volumeRequest("gone", {
          volumeContentSource: {
            type: { case: "snapshot", value: { snapshotId: snap.snapshot.snapshotId } },
          },
        }),
      ),
      Code.NotFound,
    );
  });

  it("deletes idempotently and removes the directory", async () => {
    const h = await start();
    const created = await h.controller.createVolume(volumeRequest("pvc-1"));
    const path = created.volume!.volumeContext.path!;
    writeFileSync(join(path, "file"), "x");
    await h.controller.deleteVolume({ volumeId: created.volume!.volumeId });
    assert.equal(existsSync(path), false);
    assert.equal(existsSync(`${path}.json`), false);
    await h.controller.deleteVolume({ volumeId: created.volume!.volumeId });
    await h.controller.deleteVolume({ volumeId: "never-existed" });
    assert.equal((await h.controller.listVolumes({})).entries.length, 0);
    // The name is free again.
    const recreated = await h.controller.createVolume(volumeRequest("pvc-1"));
    assert.notEqual(recreated.volume?.volumeId, created.volume!.volumeId);
  });

  it("reports less capacity as volumes are created and more as they are deleted", async () => {
    const h = await start({ capacityBytes: 100n * GiB });
    assert.equal((await h.controller.getCapacity({})).availableCapacity, 100n * GiB);
    const a = await h.controller.createVolume(
      volumeRequest("a", { capacityRange: { requiredBytes: 10n * GiB } }),
    );
    await h.controller.createVolume(
      volumeRequest("b", { capacityRange: { requiredBytes: 5n * GiB } }),
    );
    const after = await h.controller.getCapacity({ volumeCapabilities: [mountRwo] });
    assert.equal(after.availableCapacity, 85n * GiB);
    assert.equal(after.maximumVolumeSize, 85n * GiB);
    await h.controller.deleteVolume({ volumeId: a.volume!.volumeId });
    assert.equal((await h.controller.getCapacity({})).availableCapacity, 95n * GiB);
    const block = {
      accessType: { case: "block" as const, value: {} },
      accessMode: { mode: Mode.SINGLE_NODE_WRITER },
    };
    assert.equal(
      (await h.controller.getCapacity({ volumeCapabilities: [block] })).availableCapacity,
      0n,
    );
  });

  it("pages through ListVolumes in creation order, with tokens that survive deletions", async () => {
    const h = await start();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push((await h.controller.createVolume(volumeRequest(`v${i}`))).volume!.volumeId);
    const all = await h.controller.listVolumes({});
    assert.deepEqual(
      all.entries.map((e) => e.volume?.volumeId),
      ids,
    );
    assert.equal(all.nextToken, "");
    const first = await h.controller.listVolumes({ maxEntries: 2 });
    assert.deepEqual(
      first.entries.map((e) => e.volume?.volumeId),
      ids.slice(0, 2),
    );
    assert.notEqual(first.nextToken, "");
    // Deleting the last entry of a page does not shift the next page; new volumes come last.
    await h.controller.deleteVolume({ volumeId: ids[1]! });
    const added = (await h.controller.createVolume(volumeRequest("v5"))).volume!.volumeId;
    const second = await h.controller.listVolumes({
      maxEntries: 2,
      startingToken: first.nextToken,
    });
    assert.deepEqual(
      second.entries.map((e) => e.volume?.volumeId),
      ids.slice(2, 4),
    );
    const third = await h.controller.listVolumes({
      maxEntries: 2,
      startingToken: second.nextToken,
    });
    assert.deepEqual(
      third.entries.map((e) => e.volume?.volumeId),
      [ids[4], added],
    );
    assert.equal(third.nextToken, "");
    await rejects(h.controller.listVolumes({ startingToken: "not-a-token" }), Code.Aborted);
    await rejects(h.controller.listVolumes({ maxEntries: -1 }), Code.InvalidArgument);
  });

  it("keeps volumes and snapshots across a restart on the same data directory", async () => {
    const dir = tempDir();
    const h1 = await start({ dir, capacityBytes: 50n * GiB });
    const vol = await h1.controller.createVolume(
      volumeRequest("pvc-1", { capacityRange: { requiredBytes: 3n * GiB } }),
    );
    writeFileSync(join(vol.volume!.volumeContext.path!, "kept.txt"), "still here");
    const snap = await h1.controller.createSnapshot({
      name: "snap-1",
      sourceVolumeId: vol.volume!.volumeId,
    });
    await h1.stop();
    assert.equal(existsSync(h1.socketPath), false);
    // Leftovers of an interrupted create: a directory without metadata and a temporary file.
    mkdirSync(join(h1.dataDir, "volumes", "interrupted"));
    writeFileSync(join(h1.dataDir, "volumes", "half.json.tmp"), "{");

    const h2 = await start({ dir, capacityBytes: 50n * GiB });
    const listed = await h2.controller.listVolumes({});
    assert.deepEqual(
      listed.entries.map((e) => [e.volume?.volumeId, e.volume?.capacityBytes]),
      [[vol.volume!.volumeId, 3n * GiB]],
    );
    const again = await h2.controller.createVolume(
      volumeRequest("pvc-1", { capacityRange: { requiredBytes: 3n * GiB } }),
    );
    assert.equal(again.volume?.volumeId, vol.volume!.volumeId);
    assert.equal(
      readFileSync(join(again.volume!.volumeContext.path!, "kept.txt"), "utf8"),
      "still here",
    );
    assert.equal((await h2.controller.getCapacity({})).availableCapacity, 47n * GiB);
    const snaps = await h2.controller.listSnapshots({});
    assert.deepEqual(
      snaps.entries.map((e) => e.snapshot?.snapshotId),
      [snap.snapshot!.snapshotId],
    );
    assert.equal(existsSync(join(h1.dataDir, "volumes", "interrupted")), false);
    assert.equal(existsSync(join(h1.dataDir, "volumes", "half.json.tmp")), false);
    // New volumes page after the old ones.
    const newer = await h2.controller.createVolume(volumeRequest("pvc-2"));
    const firstPage = await h2.controller.listVolumes({ maxEntries: 1 });
    const next = await h2.controller.listVolumes({ startingToken: firstPage.nextToken });
    assert.deepEqual(
      next.entries.map((e) => e.volume?.volumeId),
      [newer.volume!.volumeId],
    );
  });

  it("publishes a volume as a symbolic link at the target path and unpublishes it", async () => {
    const h = await start();
    const vol = await h.controller.createVolume(volumeRequest("pvc-1"));
    const volumeId = vol.volume!.volumeId;
    writeFileSync(join(vol.volume!.volumeContext.path!, "f.txt"), "published");
    const targetPath = join(h.dir, "target");
    mkdirSync(targetPath); // The CO may create the target directory; the driver replaces it.
    await h.node.nodePublishVolume({ volumeId, targetPath, volumeCapability: mountRwo });
    await h.node.nodePublishVolume({ volumeId, targetPath, volumeCapability: mountRwo });
    assert.ok(lstatSync(targetPath).isSymbolicLink());
    assert.equal(readFileSync(join(targetPath, "f.txt"), "utf8"), "published");
    await rejects(
      h.node.nodePublishVolume({
        volumeId,
        targetPath,
        volumeCapability: mountRwo,
        readonly: true,
      }),
      Code.AlreadyExists,
    );
    await rejects(h.controller.deleteVolume({ volumeId }), Code.FailedPrecondition, /published at/);
    await rejects(
      h.node.nodePublishVolume({ volumeId: "missing", targetPath, volumeCapability: mountRwo }),
      Code.NotFound,
    );
    await rejects(
      h.node.nodePublishVolume({ volumeId, volumeCapability: mountRwo }),
      Code.InvalidArgument,
    );
    await h.node.nodeUnpublishVolume({ volumeId, targetPath });
    await h.node.nodeUnpublishVolume({ volumeId, targetPath });
    assert.equal(existsSync(targetPath), false);
    await h.controller.deleteVolume({ volumeId });

    // A SINGLE_NODE_SINGLE_WRITER volume is published at one target at a time.
    const single = {
      accessType: { case: "mount" as const, value: {} },
      accessMode: { mode: Mode.SINGLE_NODE_SINGLE_WRITER },
    };
    const sv = await h.controller.createVolume({ name: "single", volumeCapabilities: [single] });
    await h.node.nodePublishVolume({
      volumeId: sv.volume!.volumeId,
      targetPath,
      volumeCapability: single,
    });
    await rejects(
      h.node.nodePublishVolume({
        volumeId: sv.volume!.volumeId,
        targetPath: join(h.dir, "other"),
        volumeCapability: single,
      }),
      Code.FailedPrecondition,
    );
    await h.node.nodeUnpublishVolume({ volumeId: sv.volume!.volumeId, targetPath });
    const info = await h.node.nodeGetInfo({});
    assert.equal(info.nodeId, "node-1");
    assert.equal(info.accessibleTopology, undefined);
  });

  it("with topology, reports the node's segment and provisions only there", async () => {
    const h = await start({ topology: true, nodeId: "laptop" });
    const segment = { "topology.hostdir.csi.example.com/node": "laptop" };
    const plugin = await h.identity.getPluginCapabilities({});
    const services = plugin.capabilities.map((c) =>
      c.type.case === "service" ? c.type.value.type : undefined,
    );
    assert.ok(services.includes(PluginService.VOLUME_ACCESSIBILITY_CONSTRAINTS));
    const info = await h.node.nodeGetInfo({});
    assert.deepEqual(info.accessibleTopology?.segments, segment);
    const vol = await h.controller.createVolume(
      volumeRequest("pvc-1", {
        accessibilityRequirements: {
          requisite: [{ segments: segment }],
          preferred: [{ segments: segment }],
        },
      }),
    );
    assert.deepEqual(
      vol.volume?.accessibleTopology.map((t) => t.segments),
      [segment],
    );
    const elsewhere = { "topology.hostdir.csi.example.com/node": "other" };
    await rejects(
      h.controller.createVolume(
        volumeRequest("pvc-2", {
          accessibilityRequirements: { requisite: [{ segments: elsewhere }] },
        }),
      ),
      Code.ResourceExhausted,
    );
    assert.equal(
      (await h.controller.getCapacity({ accessibleTopology: { segments: elsewhere } }))
        .availableCapacity,
      0n,
    );
    assert.ok(
      (await h.controller.getCapacity({ accessibleTopology: { segments: segment } }))
        .availableCapacity > 0n,
    );
  });

  it("stops on SIGTERM, removes its socket and exits 0", async () => {
    const dir = tempDir();
    const socketPath = join(dir, "driver.sock");
    const runtime = process.versions.bun ? "bun" : process.versions.deno ? "deno" : "node";
    const args = runtime === "deno" ? ["run", "-A", MAIN] : [MAIN];
    const child: ChildProcess = spawn(
      process.execPath,
      [
        ...args,
        `--endpoint=unix://${socketPath}`,
        `--data-dir=${join(dir, "data")}`,
        "--node-id=n1",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    const exited = new Promise<number | null>((resolve) =>
      child.once("exit", (code) => resolve(code)),
    );
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      return exited;
    });
    await new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(
        () => reject(new Error(`The driver did not start within 30 s: ${stderr}`)),
        30_000,
      );
      child.stderr!.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
        if (stderr.includes("Serving CSI")) {
          clearTimeout(deadline);
          resolve();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(deadline);
        reject(new Error(`The driver exited with ${code} before serving: ${stderr}`));
      });
    });
    assert.ok(lstatSync(socketPath).isSocket());
    // process.kill rather than child.kill: after child.kill(), Deno's child_process reports the
    // signal instead of the exit status the child chose.
    process.kill(child.pid!, "SIGTERM");
    assert.equal(await exited, 0, stderr);
    assert.equal(existsSync(socketPath), false);
    assert.match(stderr, /Stopping.*SIGTERM/);
  });
});

describe("parseHostdirFlags()", () => {
  it("reads the endpoint in every form, the capacity as a quantity and booleans", () => {
    const flags = parseHostdirFlags([
      "--endpoint=unix:///run/csi/hostdir.sock",
      "--drivername",
      "x.example.com",
      "--data-dir=/var/tmp/hd",
      "--capacity=2Ti",
      "--topology",
      "--node-id=n1",
      "-v=5",
    ]);
    assert.deepEqual(flags, {
      socketPath: "/run/csi/hostdir.sock",
      driverName: "x.example.com",
      dataDir: "/var/tmp/hd",
      capacityBytes: 2n * 1024n * GiB,
      topology: true,
      nodeId: "n1",
      verbosity: 5,
      help: false,
    });
    assert.equal(parseHostdirFlags(["--endpoint=/tmp/a.sock"]).socketPath, "/tmp/a.sock");
    assert.equal(parseHostdirFlags(["--endpoint=unix:rel.sock"]).socketPath, "rel.sock");
    assert.equal(parseHostdirFlags([]).socketPath, "./.hostdir-driver/csi.sock");
    assert.equal(parseHostdirFlags(["--topology=false"]).topology, false);
    assert.equal(parseHostdirFlags([]).capacityBytes, 100n * GiB);
  });

  it("rejects unknown flags and bad values with a UsageError", () => {
    assert.throws(() => parseHostdirFlags(["--nope"]), UsageError);
    assert.throws(() => parseHostdirFlags(["--capacity=lots"]), /Invalid --capacity/);
    assert.throws(() => parseHostdirFlags(["--endpoint=tcp://1.2.3.4:5"]), /Invalid --endpoint/);
    assert.throws(() => parseHostdirFlags(["--topology=maybe"]), /want true or false/);
    assert.throws(() => parseHostdirFlags(["--node-id"]), /needs a value/);
  });
});

describe("chooseVolumeSize()", () => {
  const cases: [string, bigint, bigint, bigint, bigint | RegExp][] = [
    ["the default without a range", 0n, 0n, 0n, GiB],
    ["the required size", 5n, 0n, 0n, 5n],
    ["the default capped by the limit", 0n, 100n, 0n, 100n],
    ["the source size when larger than required", 5n, 0n, 8n, 8n],
    ["an error when the limit is below required", 10n, 5n, 0n, /below required_bytes/],
    ["an error when the source exceeds the limit", 0n, 5n, 8n, /holds 8 bytes/],
  ];
  for (const [what, required, limit, source, want] of cases) {
    it(`returns ${what}`, () => {
      if (want instanceof RegExp) {
        assert.throws(() => chooseVolumeSize(required, limit, source, GiB), want);
      } else {
        assert.equal(chooseVolumeSize(required, limit, source, GiB), want);
      }
    });
  }
});

describe("page()", () => {
  const items = [{ seq: 1 }, { seq: 4 }, { seq: 7 }];
  it("returns entries after the token and the next token", () => {
    assert.deepEqual(page(items, "", 2), { entries: [{ seq: 1 }, { seq: 4 }], nextToken: "4" });
    assert.deepEqual(page(items, "4", 2), { entries: [{ seq: 7 }], nextToken: "" });
    assert.deepEqual(page(items, "2", 0), { entries: [{ seq: 4 }, { seq: 7 }], nextToken: "" });
  });

  it("rejects a token it did not issue with ABORTED", () => {
    assert.throws(
      () => page(items, "x", 1),
      (err: unknown) => err instanceof ConnectError && err.code === Code.Aborted,
    );
  });
});
