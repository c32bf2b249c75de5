/**
 * Kubernetes' protobuf encoding, read side, for the request bodies kubectl sends as protobuf:
 * its typed `create` subcommands (`kubectl create namespace`, `kubectl create secret generic`)
 * and `kubectl auth can-i` post `application/vnd.kubernetes.protobuf`. A body is the magic `k8s\0` and a
 * `runtime.Unknown` whose `raw` is the object's message (field numbers from k8s.io/api's
 * generated.proto). Only the kinds kubectl creates that way and this server serves are decoded;
 * anything else is refused with a message that says to send JSON.
 */
import type { KubeObject } from "../../kube/objects.ts";

const MAGIC = [0x6b, 0x38, 0x73, 0x00];

/** One protobuf message's fields: number → the raw values (varints as bigint, the rest bytes). */
type Fields = Map<number, (bigint | Uint8Array)[]>;

class Reader {
  #pos = 0;
  readonly buf: Uint8Array;
  constructor(buf: Uint8Array) {
    this.buf = buf;
  }
  get done(): boolean {
    return this.#pos >= this.buf.length;
  }
  varint(): bigint {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (this.#pos >= this.buf.length) throw new Error("truncated varint");
      const b = this.buf[this.#pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      if (shift > 63n) throw new Error("varint too long");
    }
  }
  bytes(n: number): Uint8Array {
    if (this.#pos + n > this.buf.length) throw new Error("truncated field");
    const out = this.buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }
}

function fields(buf: Uint8Array): Fields {
  const r = new Reader(buf);
  const out: Fields = new Map();
  while (!r.done) {
    const key = r.varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    let value: bigint | Uint8Array;
    if (wire === 0) value = r.varint();
    else if (wire === 2) value = r.bytes(Number(r.varint()));
    else if (wire === 1) value = r.bytes(8);
    else if (wire === 5) value = r.bytes(4);
    else throw new Error(`unsupported wire type ${wire}`);
    out.set(field, [...(out.get(field) ?? []), value]);
  }
  return out;
}

const text = new TextDecoder("utf-8", { fatal: true });

function bytesOf(f: Fields, n: number): Uint8Array[] {
  return (f.get(n) ?? []).filter((v): v is Uint8Array => v instanceof Uint8Array);
}
function str(f: Fields, n: number): string | undefined {
  const v = bytesOf(f, n).at(-1);
  return v === undefined ? undefined : text.decode(v);
}
function strings(f: Fields, n: number): string[] {
  return bytesOf(f, n).map((v) => text.decode(v));
}
function bool(f: Fields, n: number): boolean | undefined {
  const v = f.get(n)?.at(-1);
  return typeof v === "bigint" ? v !== 0n : undefined;
}
/** A `map<string, V>` field: entries with key 1 and value 2. */
function map<V>(f: Fields, n: number, value: (b: Uint8Array) => V): Record<string, V> | undefined {
  const entries = bytesOf(f, n);
  if (entries.length === 0) return undefined;
  const out: Record<string, V> = {};
  for (const e of entries) {
    const ef = fields(e);
    out[str(ef, 1) ?? ""] = value(bytesOf(ef, 2).at(-1) ?? new Uint8Array());
  }
  return out;
}
function base64(b: Uint8Array): string {
  let s = "";
  for (const byte of b) s += String.fromCharCode(byte);
  return btoa(s);
}

/** ObjectMeta: what a client may set on create. */
function objectMeta(b: Uint8Array | undefined): KubeObject["metadata"] {
  if (b === undefined) return {};
  const f = fields(b);
  const meta: KubeObject["metadata"] = {};
  const name = str(f, 1);
  const generateName = str(f, 2);
  const namespace = str(f, 3);
  if (name) meta.name = name;
  if (generateName) meta.generateName = generateName;
  if (namespace) meta.namespace = namespace;
  const labels = map(f, 11, (v) => text.decode(v));
  const annotations = map(f, 12, (v) => text.decode(v));
  if (labels) meta.labels = labels;
  if (annotations) meta.annotations = annotations;
  const finalizers = strings(f, 14);
  if (finalizers.length > 0) meta.finalizers = finalizers;
  return meta;
}

const decoders: Record<string, (f: Fields) => Record<string, unknown>> = {
  // `kubectl auth can-i`: the answer does not depend on what is asked (everything is allowed).
  "authorization.k8s.io/v1/SelfSubjectAccessReview": () => ({}),
  "authorization.k8s.io/v1/SelfSubjectRulesReview": () => ({}),
  "v1/Namespace": (f) => {
    const spec = bytesOf(f, 2).at(-1);
    const finalizers = spec ? strings(fields(spec), 1) : [];
    return finalizers.length > 0 ? { spec: { finalizers } } : {};
  },
  "v1/Secret": (f) => {
    const out: Record<string, unknown> = {};
    const data = map(f, 2, base64);
    const stringData = map(f, 4, (v) => text.decode(v));
    const type = str(f, 3);
    const immutable = bool(f, 5);
    if (data) out.data = data;
    if (stringData) out.stringData = stringData;
    if (type) out.type = type;
    if (immutable !== undefined) out.immutable = immutable;
    return out;
  },
};

/** The kinds whose protobuf bodies are understood, as `apiVersion/Kind`. */
export const protobufKinds: readonly string[] = Object.keys(decoders);

/**
 * Decodes a protobuf request body into the JSON object it stands for. Throws an `Error` naming
 * the problem: not Kubernetes protobuf, or a kind this server reads only as JSON.
 */
export function decodeProtobufObject(body: Uint8Array): KubeObject {
  if (body.length < MAGIC.length || MAGIC.some((b, i) => body[i] !== b)) {
    throw new Error("the body does not start with the Kubernetes protobuf prefix");
  }
  const unknown = fields(body.subarray(MAGIC.length));
  const typeMeta = fields(bytesOf(unknown, 1).at(-1) ?? new Uint8Array());
  const apiVersion = str(typeMeta, 1) ?? "";
  const kind = str(typeMeta, 2) ?? "";
  const decode = decoders[`${apiVersion}/${kind}`];
  if (!decode) {
    throw new Error(
      `a protobuf ${kind || "object"} (${apiVersion || "no apiVersion"}) is not understood here: only ${protobufKinds.join(", ")} are; send JSON`,
    );
  }
  const raw = fields(bytesOf(unknown, 2).at(-1) ?? new Uint8Array());
  return {
    apiVersion,
    kind,
    metadata: objectMeta(bytesOf(raw, 1).at(-1)),
    ...decode(raw),
  } as KubeObject;
}
