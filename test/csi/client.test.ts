import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type CsiCallRecord,
  type CsiDriver,
  connectDriver,
  connectFailureCause,
  DriverStartupError,
  encodeGrpcTimeout,
} from "../../src/csi/client.ts";
import { exitOnConnectionLoss } from "../../src/csi/connection-loss.ts";
import { createUnixGrpcTransport, type UnixGrpcTransport } from "../../src/csi/grpc-transport.ts";
import { Controller, VolumeCapability_AccessMode_Mode } from "../../src/gen/csi/v1/csi_pb.js";
import { memoryLogger, nullLogger } from "../../src/util/log.ts";
import {
  type FakeDriver,
  fail,
  hangForever,
  respond,
  startFakeDriver,
  tempSocketPath,
} from "../support/fake-driver.ts";
import { StepClock } from "./step-clock.ts";

const mountRw = {
  accessType: { case: "mount" as const, value: {} },
  accessMode: { mode: VolumeCapability_AccessMode_Mode.SINGLE_NODE_WRITER },
};

describe("connectDriver()", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function fake(options?: Parameters<typeof startFakeDriver>[0]): Promise<FakeDriver> {
    const driver = await startFakeDriver(options);
    cleanups.push(() => driver.close());
    return driver;
  }

  async function connect(
    socketPath: string,
    extra: Partial<Parameters<typeof connectDriver>[0]> = {},
  ): Promise<CsiDriver> {
    const driver = await connectDriver({
      socketPath,
      clock: new StepClock(),
      logger: nullLogger,
      ...extra,
    });
    cleanups.push(() => driver.close());
    return driver;
  }

  it("calls the driver and returns its typed responses", async () => {
    const f = await fake({ name: "example.csi.k8s.io", vendorVersion: "2.0.0" });
    const driver = await connect(f.socketPath);
    const info = await driver.getPluginInfo();
    assert.equal(info.name, "example.csi.k8s.io");
    assert.equal(info.vendorVersion, "2.0.0");
    const created = await driver.createVolume({
      name: "pvc-1",
      capacityRange: { requiredBytes: 5n * 1024n ** 3n },
      volumeCapabilities: [mountRw],
    });
    assert.equal(created.volume?.volumeId, "id-pvc-1");
    assert.equal(created.volume?.capacityBytes, 5n * 1024n ** 3n);
    assert.deepEqual([...f.volumes().keys()], ["id-pvc-1"]);
  });

  it("reaches any unary method through call()", async () => {
    const f = await fake();
    f.on("controllerGetVolume", respond({ volume: { volumeId: "v-9" } }));
    const driver = await connect(f.socketPath);
    const res = await driver.call(Controller.method.controllerGetVolume, { volumeId: "v-9" });
    assert.equal(res.volume?.volumeId, "v-9");
    assert.equal(f.callsTo("controllerGetVolume")[0]?.request.volumeId, "v-9");
  });

  it("surfaces each driver error as a ConnectError with its gRPC code and message", async () => {
    const f = await fake();
    const driver = await connect(f.socketPath);
    for (const code of [Code.ResourceExhausted, Code.InvalidArgument, Code.Unimplemented]) {
      f.once("createVolume", fail(code, "pool is full"));
      const error = await driver.createVolume({ name: "x", volumeCapabilities: [mountRw] }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(error instanceof ConnectError, "a ConnectError");
      assert.equal(error.code, code);
      assert.equal(error.rawMessage, "pool is full");
    }
  });

  it("reports Unimplemented for a method the driver does not serve", async () => {
    const f = await fake();
    const driver = await connect(f.socketPath);
    await assert.rejects(
      driver.call(Controller.method.createSnapshot, { name: "s", sourceVolumeId: "v" }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.Unimplemented,
    );
  });

  describe("per-call deadline (--timeout)", () => {
    it("fails a call the driver never answers with DeadlineExceeded once the timeout passes", async () => {
      const f = await fake();
      f.on("createVolume", hangForever());
      const clock = new StepClock();
      const records: CsiCallRecord[] = [];
      const driver = await connect(f.socketPath, {
        clock,
        timeoutMs: 7_000,
        onCall: (r) => records.push(r),
      });
      const call = driver.createVolume({ name: "slow", volumeCapabilities: [mountRw] });
      const settled = call.then(
        () => "resolved",
        (e: unknown) => e,
      );
      await f.waitForCalls("createVolume");
      await clock.waitForSleeps(7_000, 1);
      await clock.advance(6_999);
      await clock.advance(1);
      const error = await settled;
      assert.ok(error instanceof ConnectError, "a ConnectError");
      assert.equal(error.code, Code.DeadlineExceeded);
      assert.match(error.rawMessage, /CreateVolume did not finish within 7s/);
      assert.deepEqual(
        records.map((r) => [r.method, r.code]),
        [["/csi.v1.Controller/CreateVolume", "DeadlineExceeded"]],
      );
    });

    it("sends the deadline to the driver as grpc-timeout", async () => {
      const f = await fake();
      const driver = await connect(f.socketPath, { timeoutMs: 150_000 });
      await driver.probe();
      await driver.probe({ timeoutMs: 250 });
      const [first, second] = f.callsTo("probe");
      assert.equal(first?.requestHeader.get("grpc-timeout"), "150000m");
      assert.equal(second?.requestHeader.get("grpc-timeout"), "250m");
    });

    it("encodes grpc-timeout with at most eight digits", () => {
      assert.equal(encodeGrpcTimeout(10_000), "10000m");
      assert.equal(encodeGrpcTimeout(99_999_999), "99999999m");
      assert.equal(encodeGrpcTimeout(100_000_000), "100000S");
      assert.equal(encodeGrpcTimeout(1.5), "2m");
    });

    it("cancels a call when its signal aborts", async () => {
      const f = await fake();
      f.on("deleteVolume", hangForever());
      const driver = await connect(f.socketPath);
      const ac = new AbortController();
      const call = driver.deleteVolume({ volumeId: "v" }, { signal: ac.signal });
      await f.waitForCalls("deleteVolume");
      ac.abort();
      await assert.rejects(
        call,
        (e: unknown) => e instanceof ConnectError && e.code === Code.Canceled,
      );
    });
  });

  describe("metrics hook", () => {
    it("reports each call's full method name, gRPC-Go code name and duration", async () => {
      const f = await fake();
      f.once("deleteVolume", fail(Code.FailedPrecondition, "attached"));
      const records: CsiCallRecord[] = [];
      const driver = await connect(f.socketPath, { onCall: (r) => records.push(r) });
      await driver.probe();
      await assert.rejects(driver.deleteVolume({ volumeId: "v" }));
      await driver.getCapacity({});
      assert.deepEqual(
        records.map((r) => [r.method, r.code, typeof r.durationMs]),
        [
          ["/csi.v1.Identity/Probe", "OK", "number"],
          ["/csi.v1.Controller/DeleteVolume", "FailedPrecondition", "number"],
          ["/csi.v1.Controller/GetCapacity", "OK", "number"],
        ],
      );
    });
  });

  describe("waiting for the socket", () => {
    it("retries every second until the socket appears, warning every 10 s", async () => {
      const socket = tempSocketPath();
      cleanups.push(() => socket.cleanup());
      const clock = new StepClock();
      const logger = memoryLogger(clock);
      const connecting = connectDriver({ socketPath: socket.path, clock, logger });
      for (let i = 1; i <= 12; i++) {
        await clock.waitForSleeps(1_000, i);
        await clock.advance(1_000);
      }
      // The try at 12 s has failed once the loop sleeps a 13th time; now the driver starts.
      await clock.waitForSleeps(1_000, 13);
      const f = await fake({ socketPath: socket.path });
      await clock.advance(1_000);
      const driver = await connecting;
      cleanups.push(() => driver.close());
      assert.equal((await driver.getPluginInfo()).name, "fake.csi.k8s.io");
      assert.equal(f.callsTo("getPluginInfo").length, 1);
      const warnings = logger.lines.filter((l) => l.includes("Still connecting"));
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /^W.*Still connecting to CSI driver at .*csi\.sock/);
    });

    it("gives up after 30 s with a message naming the socket", async () => {
      const socket = tempSocketPath();
      cleanups.push(() => socket.cleanup());
      const clock = new StepClock();
      const logger = memoryLogger(clock);
      const connecting = connectDriver({ socketPath: socket.path, clock, logger });
      const settled = connecting.then(
        () => "connected",
        (e: unknown) => e,
      );
      for (let i = 1; i <= 30; i++) {
        await clock.waitForSleeps(1_000, i);
        await clock.advance(1_000);
      }
      const error = await settled;
      assert.ok(error instanceof DriverStartupError, "a DriverStartupError");
      assert.equal(
        error.message,
        `Failed to connect to CSI driver at ${socket.path} within 30s: nothing exists at that path (is the driver running and listening there?)`,
      );
      assert.equal(logger.lines.filter((l) => l.includes("Still connecting")).length, 2);
    });

    /** A transport whose first `denials` connects fail as connect(2) does with EACCES. */
    function deniedTransport(denials: number) {
      return (socketPath: string): UnixGrpcTransport => {
        const real = createUnixGrpcTransport({ socketPath });
        let left = denials;
        return {
          transport: real.transport,
          onConnectionLost: (l) => real.onConnectionLost(l),
          get lost() {
            return real.lost;
          },
          close: () => real.close(),
          async connect() {
            if (left-- > 0) {
              const errno = Object.assign(new Error(`connect EACCES ${socketPath}`), {
                code: "EACCES",
                errno: -13,
                syscall: "connect",
              });
              throw new Error(errno.message, { cause: errno });
            }
            return real.connect();
          },
        };
      };
    }

    it("says at once, naming the socket, its mode and the fix, when connecting is denied (EACCES)", async () => {
      const f = await fake();
      chmodSync(f.socketPath, 0o755);
      const st = statSync(f.socketPath);
      const clock = new StepClock();
      const logger = memoryLogger(clock);
      const connecting = connectDriver({
        socketPath: f.socketPath,
        clock,
        logger,
        createTransport: deniedTransport(3),
      });
      const first = await Promise.race([
        clock.waitForSleeps(1_000, 1).then(() => "retrying"),
        connecting.then(() => "connected"),
      ]);
      assert.equal(first, "retrying", "a denied connect is retried");
      const denied = logger.lines.filter((l) => l.includes("permission denied"));
      assert.equal(denied.length, 1, logger.lines.join("\n"));
      assert.match(denied[0]!, /^E/);
      assert.ok(denied[0]!.includes(`Cannot connect to CSI driver at ${f.socketPath}`), denied[0]);
      assert.ok(denied[0]!.includes(`srwxr-xr-x, owner ${st.uid}:${st.gid}`), denied[0]);
      assert.match(denied[0]!, /this process \(uid \d+, gid \d+/);
      assert.match(denied[0]!, /group-writable/);
      assert.match(denied[0]!, /fsGroup/);
      // Still retried (the driver may recreate its socket), but said only once.
      for (let i = 1; i <= 3; i++) {
        await clock.waitForSleeps(1_000, i);
        await clock.advance(1_000);
      }
      const driver = await connecting;
      cleanups.push(() => driver.close());
      assert.equal((await driver.getPluginInfo()).name, "fake.csi.k8s.io");
      assert.equal(logger.lines.filter((l) => l.includes("permission denied")).length, 1);
    });

    it("gives up after 30 s with the permission problem as the cause", async () => {
      const f = await fake();
      const clock = new StepClock();
      const logger = memoryLogger(clock);
      const settled = connectDriver({
        socketPath: f.socketPath,
        clock,
        logger,
        createTransport: deniedTransport(Number.POSITIVE_INFINITY),
      }).then(
        () => "connected",
        (e: unknown) => e,
      );
      for (let i = 1; i <= 30; i++) {
        const next = await Promise.race([clock.waitForSleeps(1_000, i), settled]);
        if (next !== undefined) break;
        await clock.advance(1_000);
      }
      const error = await settled;
      assert.ok(error instanceof DriverStartupError, "a DriverStartupError");
      assert.ok(
        error.message.startsWith(
          `Failed to connect to CSI driver at ${f.socketPath} within 30s: permission denied: `,
        ),
        error.message,
      );
      const warnings = logger.lines.filter((l) => l.includes("Still connecting"));
      assert.equal(warnings.length, 2);
      assert.match(warnings[0]!, /permission denied/);
    });

    it("stops waiting when its signal aborts", async () => {
      const socket = tempSocketPath();
      cleanups.push(() => socket.cleanup());
      const clock = new StepClock();
      const ac = new AbortController();
      const connecting = connectDriver({
        socketPath: socket.path,
        clock,
        logger: nullLogger,
        signal: ac.signal,
      });
      await clock.waitForSleeps(1_000, 1);
      ac.abort(new Error("shutting down"));
      await assert.rejects(connecting, /shutting down/);
    });
  });

  describe("connection loss", () => {
    it("calls onConnectionLost once with a reason naming the socket when the driver goes away", async () => {
      const f = await fake();
      const reasons: string[] = [];
      let lost!: () => void;
      const lostOnce = new Promise<void>((resolve) => {
        lost = resolve;
      });
      const driver = await connect(f.socketPath, {
        onConnectionLost: (reason) => {
          reasons.push(reason);
          lost();
        },
      });
      await driver.probe();
      await f.disappear();
      await lostOnce;
      assert.equal(reasons.length, 1);
      assert.match(reasons[0]!, new RegExp(`^Lost connection to CSI driver at ${f.socketPath}: `));
      assert.equal(driver.connectionLost, true);
      await assert.rejects(
        driver.probe(),
        (e: unknown) => e instanceof ConnectError && e.code === Code.Unavailable,
      );
    });

    it("does not report a loss when the client closes the connection itself", async () => {
      const f = await fake();
      const reasons: string[] = [];
      const driver = await connect(f.socketPath, { onConnectionLost: (r) => reasons.push(r) });
      await driver.probe();
      driver.close();
      // A round trip on a second connection gives any late close event time to arrive.
      const other = await connect(f.socketPath);
      await other.probe();
      assert.deepEqual(reasons, []);
      assert.equal(driver.connectionLost, false);
    });

    it("with exitOnConnectionLoss, writes the termination message and exits 1", async () => {
      const f = await fake();
      const written: string[] = [];
      let exited!: (code: number) => void;
      const exitCode = new Promise<number>((resolve) => {
        exited = resolve;
      });
      const driver = await connect(f.socketPath, {
        onConnectionLost: exitOnConnectionLoss({
          writeTerminationMessage: (m) => {
            written.push(m);
            return true;
          },
          exit: (code) => exited(code),
          logger: nullLogger,
        }),
      });
      await driver.probe();
      await f.disappear();
      assert.equal(await exitCode, 1);
      assert.equal(written.length, 1);
      assert.match(written[0]!, new RegExp(`^Lost connection to CSI driver at ${f.socketPath}`));
    });
  });
});

describe("connectFailureCause()", () => {
  it("tells a socket nobody listens on from one this user may not open", async () => {
    const dir = mkdtempSync(join(tmpdir(), "csi-cause-"));
    const path = join(dir, "csi.sock");
    const server = createServer();
    await new Promise<void>((r) => server.listen(path, () => r()));
    try {
      assert.match(
        connectFailureCause(path, new Error("connect EACCES " + path)),
        /^permission denied: the socket exists but this user may not connect to it: this process \(uid \d+, gid \d+.*\) may not write to the socket \(s[rwx-]{9}, owner \d+:\d+\)/,
      );
      assert.equal(
        connectFailureCause(path, new Error("connect ECONNREFUSED " + path)),
        "connection refused: the socket exists but nothing listens on it (did the driver exit?)",
      );
      assert.equal(connectFailureCause(path, new Error("something else")), "something else");
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names a missing path, a regular file and a directory", () => {
    const dir = mkdtempSync(join(tmpdir(), "csi-cause-"));
    try {
      const file = join(dir, "file");
      writeFileSync(file, "");
      assert.match(connectFailureCause(join(dir, "none"), new Error("ENOENT")), /^nothing exists/);
      assert.equal(
        connectFailureCause(file, new Error("ENOTSOCK")),
        "the path is a regular file, not a unix socket",
      );
      assert.equal(
        connectFailureCause(dir, new Error("ENOTSOCK")),
        "the path is a directory, not a unix socket",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
