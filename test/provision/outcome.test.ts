import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  classifyCreateVolumeError,
  createVolumeOutcome,
  isInfeasible,
  mayReschedule,
} from "../../src/provision/outcome.ts";

// Every gRPC status code (OK is not an error) and its outcome, without and with mayReschedule.
const TABLE: [Code, string, string][] = [
  [Code.Canceled, "inBackground", "inBackground"],
  [Code.Unknown, "finished", "finished"],
  [Code.InvalidArgument, "finished", "finished"],
  [Code.DeadlineExceeded, "inBackground", "inBackground"],
  [Code.NotFound, "finished", "finished"],
  [Code.AlreadyExists, "finished", "finished"],
  [Code.PermissionDenied, "finished", "finished"],
  [Code.ResourceExhausted, "finished", "reschedule"],
  [Code.FailedPrecondition, "finished", "finished"],
  [Code.Aborted, "inBackground", "inBackground"],
  [Code.OutOfRange, "finished", "finished"],
  [Code.Unimplemented, "finished", "finished"],
  [Code.Internal, "finished", "finished"],
  [Code.Unavailable, "inBackground", "inBackground"],
  [Code.DataLoss, "finished", "finished"],
  [Code.Unauthenticated, "finished", "finished"],
];

describe("createVolumeOutcome()", () => {
  it("covers every gRPC error code", () => {
    const codes = Object.values(Code).filter((v): v is Code => typeof v === "number");
    assert.deepEqual(
      TABLE.map(([code]) => code).sort((a, b) => a - b),
      codes.sort((a, b) => a - b),
    );
  });

  for (const [code, plain, reschedulable] of TABLE) {
    it(`maps ${Code[code]} to ${plain} (${reschedulable} when it may reschedule)`, () => {
      assert.equal(createVolumeOutcome(code, false), plain);
      assert.equal(createVolumeOutcome(code, true), reschedulable);
    });
  }
});

describe("classifyCreateVolumeError()", () => {
  for (const [code, plain, reschedulable] of TABLE) {
    it(`classifies a ConnectError with ${Code[code]}`, () => {
      const error = new ConnectError("driver says no", code);
      assert.deepEqual(classifyCreateVolumeError(error, false), {
        outcome: plain,
        code,
        infeasible: code === Code.InvalidArgument,
      });
      assert.equal(classifyCreateVolumeError(error, true).outcome, reschedulable);
    });
  }

  it("treats an error that is not a gRPC status as in background", () => {
    for (const error of [new Error("socket closed"), new TypeError("x"), "boom", undefined]) {
      assert.deepEqual(classifyCreateVolumeError(error, true), {
        outcome: "inBackground",
        code: undefined,
        infeasible: false,
      });
    }
  });
});

describe("isInfeasible()", () => {
  it("is true only for InvalidArgument", () => {
    for (const [code] of TABLE) assert.equal(isInfeasible(code), code === Code.InvalidArgument);
  });
});

describe("mayReschedule()", () => {
  it("needs topology and a selected node", () => {
    assert.equal(mayReschedule(true, "node-1"), true);
    assert.equal(mayReschedule(false, "node-1"), false);
    assert.equal(mayReschedule(true, undefined), false);
    assert.equal(mayReschedule(true, ""), false);
  });
});
