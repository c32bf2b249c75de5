import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { afterEach, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { type CsiDriver, connectDriver } from "../../src/csi/client.ts";
import { Controller, VolumeCapability_AccessMode_Mode } from "../../src/gen/csi/v1/csi_pb.js";
import { nullLogger } from "../../src/util/log.ts";
import { FakeClock } from "./fake-clock.ts";
import {
  delayUntil,
  type FakeDriver,
  type FakeDriverOptions,
  fail,
  respond,
  startFakeDriver,
} from "./fake-driver.ts";

const cap = {
  accessType: { case: "mount" as const, value: {} },
  accessMode: { mode: VolumeCapability_AccessMode_Mode.SINGLE_NODE_WRITER },
};
const GiB = 1024n ** 3n;

describe("startFakeDriver()", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(
    options?: FakeDriverOptions,
  ): Promise<{ fake: FakeDriver; driver: CsiDriver }> {
    const fake = await startFakeDriver(options);
    cleanups.push(() => fake.close());
    const driver = await connectDriver({
      socketPath: fake.socketPath,
      clock: new FakeClock(),
      logger: nullLogger,
    });
    cleanups.push(() => driver.close());
    return { fake, driver };
  }

  describe("in-memory backend", () => {
    it("creates one volume per name, however often CreateVolume is repeated", async () => {
      const { fake, driver } = await setup();
      const request = {
        name: "pvc-a",
        capacityRange: { requiredBytes: 2n * GiB },
        volumeCapabilities: [cap],
      };
      const first = await driver.createVolume(request);
      const again = await driver.createVolume(request);
      assert.equal(first.volume?.volumeId, again.volume?.volumeId);
      assert.equal(fake.volumes().size, 1);
      assert.equal(fake.volumes().get("id-pvc-a")?.capacityBytes, 2n * GiB);
    });

    it("answers AlreadyExists when the name exists with an incompatible size", async () => {
      const { driver } = await setup();
      await driver.createVolume({
        name: "pvc-a",
        capacityRange: { requiredBytes: GiB },
        volumeCapabilities: [cap],
      });
      await assert.rejects(
        driver.createVolume({
          name: "pvc-a",
          capacityRange: { requiredBytes: 2n * GiB },
          volumeCapabilities: [cap],
        }),
        (e: unknown) => e instanceof ConnectError && e.code === Code.AlreadyExists,
      );
    });

    it("validates the name and the capabilities", async () => {
      const { driver } = await setup();
      for (const request of [{ name: "", volumeCapabilities: [cap] }, { name: "x" }]) {
        await assert.rejects(
          driver.createVolume(request),
          (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument,
        );
      }
    });

    it("deletes idempotently and reports the capacity left", async () => {
      const { fake, driver } = await setup({ capacityBytes: 10n * GiB });
      await driver.createVolume({
        name: "a",
        capacityRange: { requiredBytes: 4n * GiB },
        volumeCapabilities: [cap],
      });
      assert.equal((await driver.getCapacity({})).availableCapacity, 6n * GiB);
      await assert.rejects(
        driver.createVolume({
          name: "b",
          capacityRange: { requiredBytes: 7n * GiB },
          volumeCapabilities: [cap],
        }),
        (e: unknown) => e instanceof ConnectError && e.code === Code.ResourceExhausted,
      );
      await driver.deleteVolume({ volumeId: "id-a" });
      await driver.deleteVolume({ volumeId: "id-a" });
      assert.equal(fake.volumes().size, 0);
      assert.equal((await driver.getCapacity({})).availableCapacity, 10n * GiB);
    });

    it("places volumes by the preferred topology and reports the node's", async () => {
      const { driver } = await setup({ topology: { zone: "a" }, nodeId: "n-1" });
      const placed = await driver.createVolume({
        name: "t",
        volumeCapabilities: [cap],
        accessibilityRequirements: {
          requisite: [{ segments: { zone: "b" } }, { segments: { zone: "c" } }],
          preferred: [{ segments: { zone: "c" } }],
        },
      });
      assert.deepEqual(
        placed.volume?.accessibleTopology.map((t) => t.segments),
        [{ zone: "c" }],
      );
      const info = await driver.nodeGetInfo();
      assert.equal(info.nodeId, "n-1");
      assert.deepEqual(info.accessibleTopology?.segments, { zone: "a" });
    });

    it("refuses to clone a volume it does not have", async () => {
      const { driver } = await setup();
      await assert.rejects(
        driver.createVolume({
          name: "clone",
          volumeCapabilities: [cap],
          volumeContentSource: { type: { case: "volume", value: { volumeId: "missing" } } },
        }),
        (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound,
      );
    });

    it("pages ListVolumes", async () => {
      const { fake, driver } = await setup();
      for (const name of ["a", "b", "c"]) fake.addVolume({ name });
      const page1 = await driver.listVolumes({ maxEntries: 2 });
      assert.deepEqual(
        page1.entries.map((e) => e.volume?.volumeId),
        ["id-a", "id-b"],
      );
      const page2 = await driver.listVolumes({ maxEntries: 2, startingToken: page1.nextToken });
      assert.deepEqual(
        page2.entries.map((e) => e.volume?.volumeId),
        ["id-c"],
      );
      assert.equal(page2.nextToken, "");
    });
  });

  describe("scripting", () => {
    it("runs once handlers in order, then the on handler, then the default", async () => {
      const { fake, driver } = await setup();
      fake.on("getPluginInfo", respond({ name: "from-on" }));
      fake.once("getPluginInfo", respond({ name: "first" }));
      fake.once("getPluginInfo", fail(Code.Unavailable));
      assert.equal((await driver.getPluginInfo()).name, "first");
      await assert.rejects(
        driver.getPluginInfo(),
        (e: unknown) => e instanceof ConnectError && e.code === Code.Unavailable,
      );
      assert.equal((await driver.getPluginInfo()).name, "from-on");
      fake.reset("getPluginInfo");
      assert.equal((await driver.getPluginInfo()).name, "fake.csi.k8s.io");
    });

    it("passes the call index and lets a handler delegate to the default", async () => {
      const { fake, driver } = await setup();
      fake.on("createVolume", (_request, call) => {
        if (call.index === 0) throw new ConnectError("first try fails", Code.Unavailable);
        return call.next();
      });
      const request = { name: "x", volumeCapabilities: [cap] };
      await assert.rejects(driver.createVolume(request));
      assert.equal((await driver.createVolume(request)).volume?.volumeId, "id-x");
      assert.deepEqual(
        fake.callsTo("createVolume").map((c) => c.index),
        [0, 1],
      );
    });

    it("holds a call until the test releases it", async () => {
      const { fake, driver } = await setup();
      const held = fake.hold("createVolume");
      const pending = driver.createVolume({ name: "h", volumeCapabilities: [cap] });
      const call = await held.arrived;
      assert.equal(call.request.name, "h");
      assert.equal(fake.volumes().size, 0, "nothing is created while held");
      held.release();
      assert.equal((await pending).volume?.volumeId, "id-h");
      assert.equal(fake.volumes().size, 1);
    });

    it("delays a call until a promise settles", async () => {
      const { fake, driver } = await setup();
      let open!: () => void;
      fake.once(
        "deleteVolume",
        delayUntil(
          new Promise<void>((r) => {
            open = r;
          }),
        ),
      );
      fake.addVolume({ name: "d" });
      const pending = driver.deleteVolume({ volumeId: "id-d" });
      await fake.waitForCalls("deleteVolume");
      assert.equal(fake.volumes().size, 1);
      open();
      await pending;
      assert.equal(fake.volumes().size, 0);
    });

    it("answers Unimplemented for methods without a default", async () => {
      const { driver } = await setup();
      await assert.rejects(
        driver.call(Controller.method.controllerExpandVolume, { volumeId: "v" }),
        (e: unknown) => e instanceof ConnectError && e.code === Code.Unimplemented,
      );
    });
  });

  it("removes its socket when it disappears and when it closes", async () => {
    const fake = await startFakeDriver();
    assert.ok(existsSync(fake.socketPath));
    await fake.disappear();
    assert.ok(!existsSync(fake.socketPath));
    await fake.close();
    await fake.close();
  });
});
