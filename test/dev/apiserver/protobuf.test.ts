import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeProtobufObject } from "../../../src/dev/apiserver/protobuf.ts";

/** A minimal protobuf writer: length-delimited fields and varints, enough for these messages. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
const bytes = (field: number, value: Uint8Array | number[]) => [
  ...varint((field << 3) | 2),
  ...varint(value.length),
  ...value,
];
const str = (field: number, s: string) => bytes(field, [...new TextEncoder().encode(s)]);
const entry = (field: number, k: string, v: number[]) =>
  bytes(field, [...str(1, k), ...bytes(2, v)]);
const utf8 = (s: string) => [...new TextEncoder().encode(s)];

function envelope(apiVersion: string, kind: string, raw: number[]): Uint8Array {
  return new Uint8Array([
    0x6b,
    0x38,
    0x73,
    0x00,
    ...bytes(1, [...str(1, apiVersion), ...str(2, kind)]),
    ...bytes(2, raw),
  ]);
}

describe("decodeProtobufObject()", () => {
  it("reads a Namespace as kubectl create namespace sends it", () => {
    const meta = [...str(1, "foo"), ...entry(11, "team", utf8("storage"))];
    const obj = decodeProtobufObject(envelope("v1", "Namespace", bytes(1, meta)));
    assert.deepEqual(obj, {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: "foo", labels: { team: "storage" } },
    });
  });

  it("reads a Secret's data (bytes, as base64), stringData and type", () => {
    const raw = [
      ...bytes(1, [...str(1, "creds"), ...str(3, "foo")]),
      ...entry(2, "user", [0x61, 0x64, 0x6d, 0x69, 0x6e]),
      ...str(3, "Opaque"),
      ...entry(4, "plain", utf8("text")),
    ];
    const obj = decodeProtobufObject(envelope("v1", "Secret", raw)) as unknown as Record<
      string,
      unknown
    >;
    assert.deepEqual(obj.metadata, { name: "creds", namespace: "foo" });
    assert.deepEqual(obj.data, { user: "YWRtaW4=" });
    assert.deepEqual(obj.stringData, { plain: "text" });
    assert.equal(obj.type, "Opaque");
  });

  it("refuses a body without the Kubernetes prefix, and kinds it does not read", () => {
    assert.throws(() => decodeProtobufObject(new Uint8Array([1, 2, 3, 4, 5])), {
      message: "the body does not start with the Kubernetes protobuf prefix",
    });
    assert.throws(() => decodeProtobufObject(envelope("v1", "ConfigMap", [])), {
      message:
        /^a protobuf ConfigMap \(v1\) is not understood here: only .*v1\/Namespace.*; send JSON$/,
    });
  });
});
