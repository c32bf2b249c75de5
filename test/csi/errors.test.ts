import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ALL_ERROR_CODES,
  describeCsiError,
  grpcCodeName,
  toConnectError,
} from "../../src/csi/errors.ts";

describe("grpcCodeName()", () => {
  it("names every code as gRPC-Go's codes.Code.String() does", () => {
    assert.equal(grpcCodeName(undefined), "OK");
    assert.deepEqual(ALL_ERROR_CODES.map(grpcCodeName), [
      "Canceled",
      "Unknown",
      "InvalidArgument",
      "DeadlineExceeded",
      "NotFound",
      "AlreadyExists",
      "PermissionDenied",
      "ResourceExhausted",
      "FailedPrecondition",
      "Aborted",
      "OutOfRange",
      "Unimplemented",
      "Internal",
      "Unavailable",
      "DataLoss",
      "Unauthenticated",
    ]);
  });
});

describe("toConnectError()", () => {
  it("keeps a ConnectError as it is", () => {
    const e = new ConnectError("no", Code.NotFound);
    assert.equal(toConnectError(e), e);
  });

  it("turns an unreachable socket into Unavailable", () => {
    for (const code of ["ENOENT", "ECONNREFUSED", "ECONNRESET", "EPIPE"]) {
      const cause = Object.assign(new Error(`connect ${code} /csi/csi.sock`), { code });
      const wrapped = new ConnectError(cause.message, Code.Internal, undefined, undefined, cause);
      const e = toConnectError(wrapped);
      assert.equal(e.code, Code.Unavailable, code);
      assert.equal(e.rawMessage, `connect ${code} /csi/csi.sock`);
    }
  });

  it("turns anything else into a ConnectError", () => {
    const e = toConnectError(new Error("boom"));
    assert.ok(e instanceof ConnectError);
    assert.equal(e.code, Code.Unknown);
  });
});

describe("describeCsiError()", () => {
  it("puts the code name before the driver's message", () => {
    assert.equal(
      describeCsiError(new ConnectError("pool is full", Code.ResourceExhausted)),
      "ResourceExhausted: pool is full",
    );
    assert.equal(describeCsiError(new ConnectError("", Code.Aborted)), "Aborted");
  });
});
