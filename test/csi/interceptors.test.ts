import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  Code,
  ConnectError,
  createContextValues,
  createRouterTransport,
  type Interceptor,
} from "@connectrpc/connect";
import {
  type CsiCallRecord,
  callGuardInterceptor,
  callLogInterceptor,
  callRecordInterceptor,
  MIGRATED_CALL,
} from "../../src/csi/interceptors.ts";
import { Controller, Identity } from "../../src/gen/csi/v1/csi_pb.js";
import { memoryLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";

/** An in-memory driver: Probe answers after `clock` moves 250 ms; CreateVolume fails. */
function transport(clock: FakeClock, interceptors: Interceptor[]) {
  return createRouterTransport(
    (router) => {
      router.service(Identity, {
        async probe() {
          await clock.advance(250);
          return {};
        },
      });
      router.service(Controller, {
        createVolume() {
          throw new ConnectError("no space", Code.ResourceExhausted);
        },
      });
    },
    { transport: { interceptors } },
  );
}

describe("CSI call interceptors", () => {
  it("records method, gRPC code, duration and the migrated flag of every call", async () => {
    const clock = new FakeClock();
    const records: CsiCallRecord[] = [];
    const t = transport(clock, [
      callRecordInterceptor({ clock, logger: memoryLogger(clock), onCall: (r) => records.push(r) }),
    ]);
    await t.unary(Identity.method.probe, undefined, undefined, undefined, {});
    await assert.rejects(
      t.unary(
        Controller.method.createVolume,
        undefined,
        undefined,
        undefined,
        { name: "v" },
        createContextValues().set(MIGRATED_CALL, true),
      ),
    );
    assert.deepEqual(records, [
      { method: "/csi.v1.Identity/Probe", code: "OK", durationMs: 250, migrated: false },
      {
        method: "/csi.v1.Controller/CreateVolume",
        code: "ResourceExhausted",
        durationMs: 0,
        migrated: true,
      },
    ]);
  });

  it("logs requests, responses and errors at -v=5 with secrets redacted, and nothing below", async () => {
    const clock = new FakeClock();
    const verbose = memoryLogger(clock, 5);
    const quiet = memoryLogger(clock, 4);
    for (const logger of [verbose, quiet]) {
      const t = transport(clock, [callLogInterceptor(logger)]);
      await assert.rejects(
        t.unary(Controller.method.createVolume, undefined, undefined, undefined, {
          name: "v",
          secrets: { password: "hunter2" },
        }),
      );
    }
    assert.deepEqual(quiet.lines, []);
    const text = verbose.lines.join("\n");
    assert.match(text, /"GRPC call" method="\/csi\.v1\.Controller\/CreateVolume"/);
    assert.match(
      text,
      /"GRPC error" err="ResourceExhausted: no space" method="\/csi\.v1\.Controller\/CreateVolume"/,
    );
    assert.match(text, /"secrets":"\*\*\*stripped\*\*\*"/);
    assert.doesNotMatch(text, /hunter2/);
  });

  it("refuses calls on a lost connection with Unavailable, before they reach the driver", async () => {
    const clock = new FakeClock();
    const records: CsiCallRecord[] = [];
    let lost = false;
    const t = transport(clock, [
      callRecordInterceptor({ clock, logger: memoryLogger(clock), onCall: (r) => records.push(r) }),
      callGuardInterceptor({ socketPath: "/run/csi/socket", lost: () => lost }),
    ]);
    await t.unary(Identity.method.probe, undefined, undefined, undefined, {});
    lost = true;
    await assert.rejects(t.unary(Identity.method.probe, undefined, undefined, undefined, {}), {
      code: Code.Unavailable,
      rawMessage: "the connection to the CSI driver at /run/csi/socket was lost",
    });
    assert.deepEqual(
      records.map((r) => r.code),
      ["OK", "Unavailable"],
    );
  });
});
