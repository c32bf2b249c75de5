import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { create, createFileRegistry, type DescMessage, setExtension } from "@bufbuild/protobuf";
import {
  FieldOptionsSchema,
  FileDescriptorProtoSchema,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
} from "@bufbuild/protobuf/wkt";
import { connectDriver } from "../../src/csi/client.ts";
import { formatRedacted, isSecretField, redactMessage, STRIPPED } from "../../src/csi/redact.ts";
import {
  CreateVolumeRequestSchema,
  csi_secret,
  file_csi_v1_csi,
  Node,
  NodeStageVolumeRequestSchema,
  VolumeCapability_AccessMode_Mode,
} from "../../src/gen/csi/v1/csi_pb.js";
import { createLogger, memoryLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { startFakeDriver } from "../support/fake-driver.ts";

const mountRw = {
  accessType: { case: "mount" as const, value: { fsType: "ext4" } },
  accessMode: { mode: VolumeCapability_AccessMode_Mode.SINGLE_NODE_WRITER },
};

/** Every message type of the CSI file, nested ones included. */
function allMessages(): DescMessage[] {
  const out: DescMessage[] = [];
  const visit = (m: DescMessage) => {
    out.push(m);
    m.nestedMessages.forEach(visit);
  };
  file_csi_v1_csi.messages.forEach(visit);
  return out;
}

/**
 * A test-only schema with secrets where CSI has none yet: in a nested message, a repeated
 * message, a map of messages and a oneof member.
 */
function nestedSecretsSchema(): DescMessage {
  const secret = () => {
    const options = create(FieldOptionsSchema);
    setExtension(options, csi_secret, true);
    return options;
  };
  const str = (name: string, number: number, extra: object = {}) => ({
    name,
    number,
    type: Type.STRING,
    label: Label.OPTIONAL,
    jsonName: name,
    ...extra,
  });
  const msg = (name: string, number: number, typeName: string, extra: object = {}) => ({
    name,
    number,
    type: Type.MESSAGE,
    label: Label.OPTIONAL,
    typeName,
    jsonName: name,
    ...extra,
  });
  const file = create(FileDescriptorProtoSchema, {
    name: "redacttest.proto",
    package: "redacttest",
    syntax: "proto3",
    messageType: [
      { name: "Inner", field: [str("token", 1, { options: secret() }), str("note", 2)] },
      {
        name: "Outer",
        field: [
          str("name", 1),
          msg("creds", 2, ".redacttest.Outer.CredsEntry", {
            label: Label.REPEATED,
            options: secret(),
          }),
          msg("inner", 3, ".redacttest.Inner"),
          msg("list", 4, ".redacttest.Inner", { label: Label.REPEATED }),
          msg("by_key", 5, ".redacttest.Outer.ByKeyEntry", { label: Label.REPEATED }),
          msg("chosen", 6, ".redacttest.Inner", { oneofIndex: 0 }),
          str("plain", 7, { oneofIndex: 0 }),
          str("unset_secret", 8, { options: secret() }),
        ],
        oneofDecl: [{ name: "choice" }],
        nestedType: [
          {
            name: "CredsEntry",
            field: [str("key", 1), str("value", 2)],
            options: { mapEntry: true },
          },
          {
            name: "ByKeyEntry",
            field: [str("key", 1), msg("value", 2, ".redacttest.Inner")],
            options: { mapEntry: true },
          },
        ],
      },
    ],
  });
  const registry = createFileRegistry(file, () => undefined);
  return registry.getMessage("redacttest.Outer")!;
}

describe("isSecretField()", () => {
  it("finds the secrets maps of the CSI requests from the csi_secret option", () => {
    const secret = allMessages().flatMap((m) =>
      m.fields.filter(isSecretField).map((f) => `${m.name}.${f.name}`),
    );
    for (const expected of [
      "CreateVolumeRequest.secrets",
      "DeleteVolumeRequest.secrets",
      "ControllerPublishVolumeRequest.secrets",
      "NodeStageVolumeRequest.secrets",
      "NodePublishVolumeRequest.secrets",
      "ControllerExpandVolumeRequest.secrets",
      "ControllerModifyVolumeRequest.secrets",
    ]) {
      assert.ok(secret.includes(expected), `${expected} is secret`);
    }
    assert.ok(!secret.includes("CreateVolumeRequest.parameters"));
    assert.ok(
      secret.every((s) => s.endsWith(".secrets")),
      secret.join(", "),
    );
  });
});

describe("redactMessage()", () => {
  it("strips CreateVolumeRequest.secrets and keeps every other field", () => {
    const req = create(CreateVolumeRequestSchema, {
      name: "pvc-1",
      parameters: { type: "fast" },
      secrets: { password: "hunter2", user: "admin" },
      capacityRange: { requiredBytes: 1024n },
      volumeCapabilities: [mountRw],
    });
    assert.deepEqual(redactMessage(CreateVolumeRequestSchema, req), {
      name: "pvc-1",
      capacity_range: { required_bytes: "1024" },
      volume_capabilities: [
        { mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" } },
      ],
      parameters: { type: "fast" },
      secrets: STRIPPED,
    });
  });

  it("uses upstream protosanitizer's marker", () => {
    assert.equal(STRIPPED, "***stripped***");
  });

  it("leaves an absent secret absent", () => {
    const req = create(NodeStageVolumeRequestSchema, { volumeId: "v1", stagingTargetPath: "/s" });
    assert.equal(
      formatRedacted(NodeStageVolumeRequestSchema, req),
      '{"volume_id":"v1","staging_target_path":"/s"}',
    );
  });

  it("strips secrets in nested messages, lists, map values and oneof members", () => {
    const schema = nestedSecretsSchema();
    const message = create(schema, {
      name: "n",
      creds: { a: "s1" },
      inner: { token: "s2", note: "keep-1" },
      list: [{ token: "s3", note: "keep-2" }, { note: "keep-3" }],
      byKey: { k: { token: "s4", note: "keep-4" } },
      choice: { case: "chosen", value: { token: "s5", note: "keep-5" } },
    } as never);
    const json = redactMessage(schema, message);
    assert.deepEqual(json, {
      name: "n",
      creds: STRIPPED,
      inner: { token: STRIPPED, note: "keep-1" },
      list: [{ token: STRIPPED, note: "keep-2" }, { note: "keep-3" }],
      by_key: { k: { token: STRIPPED, note: "keep-4" } },
      chosen: { token: STRIPPED, note: "keep-5" },
    });
    const text = JSON.stringify(json);
    for (const s of ["s1", "s2", "s3", "s4", "s5"]) assert.ok(!text.includes(`"${s}"`), s);
  });
});

describe("-v=5 call logging", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it("logs method, request and response of each call with secrets stripped", async () => {
    const fake = await startFakeDriver();
    cleanups.push(() => fake.close());
    const clock = new FakeClock();
    const logger = memoryLogger(clock, 5);
    const driver = await connectDriver({ socketPath: fake.socketPath, clock, logger });
    cleanups.push(() => driver.close());

    await driver.createVolume({
      name: "pvc-7",
      secrets: { password: "hunter2" },
      volumeCapabilities: [mountRw],
    });
    await assert.rejects(
      driver.call(Node.method.nodeStageVolume, {
        volumeId: "id-pvc-7",
        stagingTargetPath: "/staging",
        secrets: { chapSecret: "s3cr3t" },
        volumeCapability: mountRw,
      }),
    );

    // The driver did receive the secrets: only the logs are redacted.
    assert.equal(fake.callsTo("createVolume")[0]?.request.secrets.password, "hunter2");
    const grpcLines = logger.lines.filter((l) => l.includes('"GRPC '));
    assert.equal(grpcLines.length, 4);
    const [call, response, stageCall, stageError] = grpcLines as [string, string, string, string];
    assert.match(call, /"GRPC call" method="\/csi\.v1\.Controller\/CreateVolume"/);
    assert.match(call, /"secrets":"\*\*\*stripped\*\*\*"/);
    assert.match(call, /"name":"pvc-7"/);
    assert.match(response, /"GRPC response" method="\/csi\.v1\.Controller\/CreateVolume"/);
    assert.match(response, /"volume_id":"id-pvc-7"/);
    assert.match(stageCall, /"GRPC call" method="\/csi\.v1\.Node\/NodeStageVolume"/);
    assert.match(stageCall, /"secrets":"\*\*\*stripped\*\*\*"/);
    assert.match(stageError, /"GRPC error" .*Unimplemented/);
    const all = logger.lines.join("\n");
    assert.ok(!all.includes("hunter2"), "no CreateVolume secret in the logs");
    assert.ok(!all.includes("s3cr3t"), "no NodeStageVolume secret in the logs");
  });

  it("logs no call below -v=5", async () => {
    const fake = await startFakeDriver();
    cleanups.push(() => fake.close());
    const clock = new FakeClock();
    const lines: string[] = [];
    const logger = createLogger({ write: (l) => lines.push(l), clock, verbosity: 4 });
    const driver = await connectDriver({ socketPath: fake.socketPath, clock, logger });
    cleanups.push(() => driver.close());
    await driver.probe();
    assert.deepEqual(
      lines.filter((l) => l.includes("GRPC")),
      [],
    );
  });
});
