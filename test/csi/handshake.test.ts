import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import { type CsiDriver, connectDriver, DriverStartupError } from "../../src/csi/client.ts";
import { ALL_ERROR_CODES, grpcCodeName } from "../../src/csi/errors.ts";
import { HandshakeError, handshake } from "../../src/csi/handshake.ts";
import {
  ControllerServiceCapability_RPC_Type as Cap,
  PluginCapability_VolumeExpansion_Type as Expansion,
  PluginCapability_Service_Type as PluginCap,
} from "../../src/gen/csi/v1/csi_pb.js";
import { memoryLogger, nullLogger } from "../../src/util/log.ts";
import {
  type FakeDriver,
  type FakeDriverOptions,
  fail,
  hangForever,
  respond,
  startFakeDriver,
} from "../support/fake-driver.ts";
import { StepClock } from "./step-clock.ts";

/** Per-call deadline used in these tests; distinct from the 1 s probe interval. */
const TIMEOUT_MS = 10_000;

describe("handshake()", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(options?: FakeDriverOptions): Promise<{
    fake: FakeDriver;
    driver: CsiDriver;
    clock: StepClock;
  }> {
    const fake = await startFakeDriver(options);
    cleanups.push(() => fake.close());
    const clock = new StepClock();
    const driver = await connectDriver({
      socketPath: fake.socketPath,
      clock,
      logger: nullLogger,
      timeoutMs: TIMEOUT_MS,
    });
    cleanups.push(() => driver.close());
    return { fake, driver, clock };
  }

  function settle<T>(
    p: Promise<T>,
  ): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
    return p.then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
  }

  it("returns the driver's name, version, manifest and capabilities", async () => {
    const { driver, clock, fake } = await setup({
      name: "hostpath.csi.k8s.io",
      vendorVersion: "v1.17.0",
      manifest: { commit: "abc" },
      topology: { "topology.hostpath.csi/node": "n1" },
      volumeExpansion: [Expansion.ONLINE],
      controllerCapabilities: [Cap.CREATE_DELETE_VOLUME, Cap.CLONE_VOLUME, Cap.GET_CAPACITY],
    });
    const info = await handshake(driver, { clock, logger: nullLogger });
    assert.equal(info.name, "hostpath.csi.k8s.io");
    assert.equal(info.vendorVersion, "v1.17.0");
    assert.deepEqual(info.manifest, { commit: "abc" });
    assert.equal(info.pluginCapabilities.controllerService, true);
    assert.equal(info.pluginCapabilities.volumeAccessibilityConstraints, true);
    assert.equal(info.pluginCapabilities.groupControllerService, false);
    assert.equal(info.pluginCapabilities.onlineExpansion, true);
    assert.equal(info.pluginCapabilities.offlineExpansion, false);
    assert.deepEqual(
      [...info.controllerCapabilities].sort(),
      [Cap.CREATE_DELETE_VOLUME, Cap.CLONE_VOLUME, Cap.GET_CAPACITY].sort(),
    );
    assert.deepEqual(
      fake.calls.map((c) => c.fullName),
      [
        "/csi.v1.Identity/Probe",
        "/csi.v1.Identity/GetPluginInfo",
        "/csi.v1.Identity/GetPluginCapabilities",
        "/csi.v1.Controller/ControllerGetCapabilities",
      ],
    );
  });

  it("calls ControllerGetCapabilities even without CONTROLLER_SERVICE, as upstream", async () => {
    const { driver, clock, fake } = await setup({ pluginCapabilities: [] });
    const info = await handshake(driver, { clock, logger: nullLogger });
    assert.equal(info.pluginCapabilities.controllerService, false);
    assert.equal(fake.callsTo("controllerGetCapabilities").length, 1);
  });

  describe("Probe", () => {
    for (const code of ALL_ERROR_CODES) {
      const name = grpcCodeName(code);
      if (code === Code.DeadlineExceeded) {
        it(`retries after a second when Probe fails with ${name}`, async () => {
          const { driver, clock, fake } = await setup();
          fake.once("probe", fail(code, "still starting"));
          const result = settle(handshake(driver, { clock, logger: nullLogger }));
          await clock.waitForSleeps(1_000, 1);
          assert.equal(fake.callsTo("probe").length, 1);
          await clock.advance(1_000);
          const outcome = await result;
          assert.equal(outcome.ok, true);
          assert.equal(fake.callsTo("probe").length, 2);
        });
      } else {
        it(`fails at once, naming the driver and the code, when Probe fails with ${name}`, async () => {
          const { driver, clock, fake } = await setup();
          fake.once("probe", fail(code, "probe broke"));
          const outcome = await settle(handshake(driver, { clock, logger: nullLogger }));
          assert.equal(outcome.ok, false);
          const error = (outcome as { error: unknown }).error;
          assert.ok(error instanceof DriverStartupError, "a DriverStartupError");
          assert.equal(
            error.message,
            `Probe of CSI driver at ${fake.socketPath} failed: ${name}: probe broke`,
          );
          assert.equal(fake.callsTo("probe").length, 1);
          assert.equal(fake.callsTo("getPluginInfo").length, 0);
          assert.equal(clock.sleeps.filter((s) => s === 1_000).length, 0, "no retry was scheduled");
        });
      }
    }

    it("retries a Probe that does not answer within --timeout", async () => {
      const { driver, clock, fake } = await setup();
      fake.once("probe", hangForever());
      const result = settle(handshake(driver, { clock, logger: nullLogger }));
      await fake.waitForCalls("probe", 1);
      await clock.waitForSleeps(TIMEOUT_MS, 1);
      await clock.advance(TIMEOUT_MS);
      await clock.waitForSleeps(1_000, 1);
      await clock.advance(1_000);
      assert.equal((await result).ok, true);
      assert.equal(fake.callsTo("probe").length, 2);
    });

    it("keeps probing every second while the driver answers ready=false", async () => {
      const { driver, clock, fake } = await setup();
      const logger = memoryLogger(clock);
      fake.once("probe", respond({ ready: false }));
      fake.once("probe", respond({ ready: false }));
      fake.once("probe", respond({ ready: false }));
      const result = settle(handshake(driver, { clock, logger }));
      for (let i = 1; i <= 3; i++) {
        await clock.waitForSleeps(1_000, i);
        assert.equal(fake.callsTo("probe").length, i);
        await clock.advance(1_000);
      }
      assert.equal((await result).ok, true);
      assert.equal(fake.callsTo("probe").length, 4);
      assert.equal(logger.lines.filter((l) => l.includes("CSI driver is not ready")).length, 3);
    });

    it("takes an unset ready field as ready", async () => {
      const { driver, clock, fake } = await setup();
      fake.on("probe", respond({}));
      const info = await handshake(driver, { clock, logger: nullLogger });
      assert.equal(info.name, "fake.csi.k8s.io");
      assert.equal(fake.callsTo("probe").length, 1);
    });

    it("stops probing when the signal aborts", async () => {
      const { driver, clock, fake } = await setup();
      fake.on("probe", respond({ ready: false }));
      const ac = new AbortController();
      const result = settle(handshake(driver, { clock, logger: nullLogger, signal: ac.signal }));
      await clock.waitForSleeps(1_000, 1);
      ac.abort(new Error("terminating"));
      const outcome = await result;
      assert.equal(outcome.ok, false);
      assert.match(String((outcome as { error: unknown }).error), /terminating/);
    });
  });

  describe("GetPluginInfo", () => {
    it("fails when the driver name is empty", async () => {
      const { driver, clock, fake } = await setup();
      fake.on("getPluginInfo", respond({ name: "", vendorVersion: "1" }));
      await assert.rejects(handshake(driver, { clock, logger: nullLogger }), {
        name: "DriverStartupError",
        message: `GetPluginInfo of CSI driver at ${fake.socketPath} failed: the driver name is empty`,
      });
      assert.equal(fake.callsTo("getPluginCapabilities").length, 0);
    });

    it("fails without retrying when GetPluginInfo fails", async () => {
      const { driver, clock, fake } = await setup();
      fake.on("getPluginInfo", fail(Code.Unavailable, "busy"));
      await assert.rejects(handshake(driver, { clock, logger: nullLogger }), {
        message: `GetPluginInfo of CSI driver at ${fake.socketPath} failed: Unavailable: busy`,
      });
      assert.equal(fake.callsTo("getPluginInfo").length, 1);
    });
  });

  describe("capabilities", () => {
    it("fails when GetPluginCapabilities fails", async () => {
      const { driver, clock, fake } = await setup();
      fake.on("getPluginCapabilities", fail(Code.Internal, "oops"));
      await assert.rejects(handshake(driver, { clock, logger: nullLogger }), {
        message: `GetPluginCapabilities of CSI driver at ${fake.socketPath} failed: Internal: oops`,
      });
    });

    it("fails when ControllerGetCapabilities is not implemented", async () => {
      const { driver, clock, fake } = await setup();
      fake.on("controllerGetCapabilities", fail(Code.Unimplemented, "no controller"));
      const error = await handshake(driver, { clock, logger: nullLogger }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(error instanceof HandshakeError, "a HandshakeError");
      assert.equal(
        error.message,
        `ControllerGetCapabilities of CSI driver at ${fake.socketPath} failed: the driver serves no Controller service (Unimplemented: no controller); provisioning needs its CreateVolume and DeleteVolume`,
      );
      // What the driver told before: for probe's report.
      assert.equal(error.partial.name, "fake.csi.k8s.io");
      assert.equal(error.partial.pluginCapabilities.controllerService, true);
    });

    it("ignores UNKNOWN and empty capability entries", async () => {
      const { driver, clock, fake } = await setup();
      fake.on(
        "getPluginCapabilities",
        respond({
          capabilities: [
            {},
            { type: { case: "service", value: { type: PluginCap.UNKNOWN } } },
            { type: { case: "service", value: { type: PluginCap.CONTROLLER_SERVICE } } },
          ],
        }),
      );
      fake.on(
        "controllerGetCapabilities",
        respond({
          capabilities: [
            {},
            { type: { case: "rpc", value: { type: Cap.UNKNOWN } } },
            { type: { case: "rpc", value: { type: Cap.CREATE_DELETE_VOLUME } } },
          ],
        }),
      );
      const info = await handshake(driver, { clock, logger: nullLogger });
      assert.deepEqual([...info.pluginCapabilities.services], [PluginCap.CONTROLLER_SERVICE]);
      assert.deepEqual([...info.controllerCapabilities], [Cap.CREATE_DELETE_VOLUME]);
    });
  });
});
