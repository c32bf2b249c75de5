import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  isAlreadyExists,
  isConflict,
  isForbidden,
  isGone,
  isInternalError,
  isInvalid,
  isKubeApiError,
  isNotFound,
  isServerTimeout,
  isTimeout,
  isTooManyRequests,
  isTransport,
  isUnauthorized,
  KubeApiError,
  parseRetryAfter,
} from "../../src/kube/errors.ts";

const predicates = {
  isNotFound,
  isAlreadyExists,
  isConflict,
  isGone,
  isForbidden,
  isUnauthorized,
  isInvalid,
  isTooManyRequests,
  isServerTimeout,
  isTimeout,
  isInternalError,
  isTransport,
} as const;

type Pred = keyof typeof predicates;

function status(code: number, reason: string, message = "m", details?: object) {
  return { kind: "Status", apiVersion: "v1", status: "Failure", code, reason, message, details };
}

function truthy(err: unknown): Pred[] {
  return (Object.keys(predicates) as Pred[]).filter((k) => predicates[k](err));
}

describe("KubeApiError.fromResponse()", () => {
  const table: { name: string; code: number; body: unknown; expect: Pred[] }[] = [
    { name: "404 NotFound", code: 404, body: status(404, "NotFound"), expect: ["isNotFound"] },
    {
      name: "409 AlreadyExists",
      code: 409,
      body: status(409, "AlreadyExists"),
      expect: ["isAlreadyExists"],
    },
    { name: "409 Conflict", code: 409, body: status(409, "Conflict"), expect: ["isConflict"] },
    { name: "410 Expired", code: 410, body: status(410, "Expired"), expect: ["isGone"] },
    { name: "410 Gone", code: 410, body: status(410, "Gone"), expect: ["isGone"] },
    { name: "410 without a body", code: 410, body: "", expect: ["isGone"] },
    { name: "403 Forbidden", code: 403, body: status(403, "Forbidden"), expect: ["isForbidden"] },
    { name: "401 as plain text", code: 401, body: "Unauthorized", expect: ["isUnauthorized"] },
    { name: "422 Invalid", code: 422, body: status(422, "Invalid"), expect: ["isInvalid"] },
    {
      name: "429 TooManyRequests",
      code: 429,
      body: status(429, "TooManyRequests"),
      expect: ["isTooManyRequests"],
    },
    {
      name: "500 ServerTimeout",
      code: 500,
      body: status(500, "ServerTimeout"),
      expect: ["isServerTimeout"],
    },
    { name: "504 Timeout", code: 504, body: status(504, "Timeout"), expect: ["isTimeout"] },
    { name: "504 as HTML", code: 504, body: "<html>gateway</html>", expect: ["isTimeout"] },
    { name: "500 as plain text", code: 500, body: "boom", expect: ["isInternalError"] },
    {
      name: "404 with an unknown reason",
      code: 404,
      body: status(404, "SomethingNew"),
      expect: ["isNotFound"],
    },
    {
      name: "404 with another known reason",
      code: 404,
      body: status(404, "Forbidden"),
      expect: ["isForbidden"],
    },
    { name: "502 without a body", code: 502, body: "", expect: [] },
  ];
  for (const row of table) {
    it(`classifies ${row.name}`, () => {
      const err = KubeApiError.fromResponse({
        verb: "get",
        target: "persistentvolumeclaims ns/a",
        status: row.code,
        body: row.body,
      });
      assert.equal(err.kind, "api");
      assert.equal(err.status, row.code);
      assert.deepEqual(truthy(err), row.expect);
    });
  }

  it("names the verb and object and carries the server's message", () => {
    const err = KubeApiError.fromResponse({
      verb: "get",
      target: "persistentvolumeclaims ns/a",
      status: 404,
      body: status(404, "NotFound", 'persistentvolumeclaims "a" not found'),
    });
    assert.equal(
      err.message,
      'Get persistentvolumeclaims ns/a: 404 NotFound: persistentvolumeclaims "a" not found',
    );
    assert.equal(err.verb, "get");
    assert.equal(err.reason, "NotFound");
    assert.ok(err instanceof Error);
    assert.ok(isKubeApiError(err));
  });

  it("keeps a non-Status body as the message, truncated", () => {
    const err = KubeApiError.fromResponse({
      verb: "list",
      target: "x",
      status: 500,
      body: "a".repeat(1000),
    });
    assert.equal(err.reason, "InternalError");
    assert.ok(err.message.startsWith("List x: 500 InternalError: aaa"));
    assert.ok(err.message.length < 400);
  });

  it("takes retryAfterSeconds from the Status details, else from the Retry-After header", () => {
    const fromDetails = KubeApiError.fromResponse({
      verb: "create",
      target: "x",
      status: 429,
      body: status(429, "TooManyRequests", "slow down", { retryAfterSeconds: 7 }),
      retryAfter: "3",
    });
    assert.equal(fromDetails.retryAfterSeconds, 7);
    const fromHeader = KubeApiError.fromResponse({
      verb: "create",
      target: "x",
      status: 429,
      body: "slow down",
      retryAfter: "3",
    });
    assert.equal(fromHeader.retryAfterSeconds, 3);
    assert.ok(isTooManyRequests(fromHeader));
  });

  it("keeps the Status details (causes of an Invalid answer)", () => {
    const details = {
      name: "a",
      kind: "PersistentVolume",
      causes: [{ field: "spec.capacity", message: "required" }],
    };
    const err = KubeApiError.fromResponse({
      verb: "create",
      target: "x",
      status: 422,
      body: status(422, "Invalid", "bad", details),
    });
    assert.deepEqual(err.details, details);
  });
});

describe("KubeApiError.transport()", () => {
  it("has kind transport, status 0 and the cause's message", () => {
    const cause = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), {
      code: "ECONNREFUSED",
    });
    const err = KubeApiError.transport({ verb: "watch", target: "persistentvolumes", cause });
    assert.equal(err.kind, "transport");
    assert.equal(err.status, 0);
    assert.equal(err.cause, cause);
    assert.equal(err.message, "Watch persistentvolumes: connect ECONNREFUSED 127.0.0.1:1");
    assert.deepEqual(truthy(err), ["isTransport"]);
  });
});

describe("KubeApiError.fromStatus()", () => {
  it("classifies an in-band watch ERROR Status", () => {
    const err = KubeApiError.fromStatus("watch", "persistentvolumes", {
      kind: "Status",
      code: 410,
      reason: "Expired",
      message: "too old resource version: 1 (5)",
    });
    assert.ok(isGone(err));
    assert.equal(err.status, 410);
  });
});

describe("parseRetryAfter()", () => {
  it("reads delta seconds and ignores other forms", () => {
    assert.equal(parseRetryAfter("5"), 5);
    assert.equal(parseRetryAfter(" 0 "), 0);
    assert.equal(parseRetryAfter("Wed, 21 Oct 2026 07:28:00 GMT"), undefined);
    assert.equal(parseRetryAfter("-1"), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
  });
});

describe("predicates", () => {
  it("are false for errors that are not KubeApiErrors", () => {
    const plain = Object.assign(new Error("x"), { status: 404, reason: "NotFound" });
    assert.deepEqual(truthy(plain), []);
    assert.deepEqual(truthy(undefined), []);
  });
});
