// Wire-level checks of the generated CSI v1.12.0 descriptors (src/gen/csi/v1/csi_pb.js).
//
// These tests pin the facts that must never drift from the upstream CSI spec: the
// package, service and method names (they form the gRPC paths), field numbers and
// types, enum numbers, the custom options (csi_secret etc.), and the binary encoding
// of a few hand-computed messages.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import {
  clone,
  create,
  type DescEnum,
  type DescExtension,
  type DescField,
  type DescMessage,
  type DescService,
  fromBinary,
  getOption,
  hasOption,
  ScalarType,
  toBinary,
} from "@bufbuild/protobuf";
import { type DescriptorProto, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  alpha_enum,
  alpha_enum_value,
  alpha_field,
  alpha_message,
  alpha_method,
  alpha_service,
  CapacityRangeSchema,
  Controller,
  ControllerServiceCapability_RPC_Type,
  ControllerServiceCapability_RPC_TypeSchema,
  CreateVolumeRequestSchema,
  CreateVolumeResponseSchema,
  csi_secret,
  DeleteVolumeRequestSchema,
  file_csi_v1_csi,
  GetCapacityRequestSchema,
  GetCapacityResponseSchema,
  GetPluginInfoResponseSchema,
  GroupController,
  Identity,
  Node,
  PluginCapability_Service_TypeSchema,
  PluginCapability_VolumeExpansion_TypeSchema,
  PluginCapabilitySchema,
  ProbeResponseSchema,
  SnapshotMetadata,
  TopologyRequirementSchema,
  VolumeCapability_AccessMode_Mode,
  VolumeCapability_AccessMode_ModeSchema,
  VolumeCapability_AccessModeSchema,
  VolumeCapability_MountVolumeSchema,
  VolumeCapabilitySchema,
  VolumeContentSourceSchema,
  VolumeSchema,
} from "../src/gen/csi/v1/csi_pb.js";

/** A compact, human-readable type description of a field, e.g. "map<string,string>". */
function typeOf(f: DescField): string {
  const scalar = (s: ScalarType) => ScalarType[s].toLowerCase();
  switch (f.fieldKind) {
    case "scalar":
      return scalar(f.scalar);
    case "enum":
      return `enum ${f.enum.typeName}`;
    case "message":
      return `message ${f.message.typeName}`;
    case "list":
      if (f.listKind === "scalar") return `repeated ${scalar(f.scalar)}`;
      if (f.listKind === "enum") return `repeated enum ${f.enum.typeName}`;
      return `repeated message ${f.message.typeName}`;
    case "map": {
      const value =
        f.mapKind === "scalar"
          ? scalar(f.scalar)
          : f.mapKind === "enum"
            ? f.enum.typeName
            : f.message.typeName;
      return `map<${scalar(f.mapKey)},${value}>`;
    }
  }
}

/** [number, name, type, oneof?] rows for every field of a message, in declaration order. */
function fieldTable(m: DescMessage): Array<[number, string, string, string?]> {
  return m.fields.map((f) => {
    const row: [number, string, string, string?] = [f.number, f.name, typeOf(f)];
    if (f.oneof) row.push(f.oneof.name);
    return row;
  });
}

function enumTable(e: DescEnum): Array<[string, number]> {
  return e.values.map((v) => [v.name, v.number]);
}

function methods(s: DescService): Array<[string, string, string, string]> {
  return s.methods.map((m) => [m.name, m.methodKind, m.input.typeName, m.output.typeName]);
}

/** Every message of the file, nested ones included (map entries are not messages here). */
function allMessages(): DescMessage[] {
  const out: DescMessage[] = [];
  const walk = (m: DescMessage) => {
    out.push(m);
    m.nestedMessages.forEach(walk);
  };
  file_csi_v1_csi.messages.forEach(walk);
  return out;
}

function allEnums(): DescEnum[] {
  return [...file_csi_v1_csi.enums, ...allMessages().flatMap((m) => m.nestedEnums)];
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const bytes = (...b: number[]) => new Uint8Array(b);

describe("csi.v1 file", () => {
  it("is proto3 package csi.v1 with the upstream go_package and imports", () => {
    assert.equal(file_csi_v1_csi.proto.package, "csi.v1");
    assert.equal(file_csi_v1_csi.proto.syntax, "proto3");
    assert.equal(
      file_csi_v1_csi.proto.options?.goPackage,
      "github.com/container-storage-interface/spec/lib/go/csi",
    );
    assert.deepEqual(file_csi_v1_csi.proto.dependency, [
      "google/protobuf/descriptor.proto",
      "google/protobuf/timestamp.proto",
      "google/protobuf/wrappers.proto",
    ]);
  });

  it("is byte-identical to the descriptor protoc builds from upstream csi.proto v1.12.0", () => {
    // Normalise the embedded descriptor the way protoc's own output looks: upstream
    // compiles the file as "csi.proto" (we keep it under csi/v1/), protoc leaves
    // json_name unset, and `rpc X(...) returns (...) {}` yields empty MethodOptions
    // on one side only. None of these affect the wire. Comments are not embedded.
    const fd = clone(FileDescriptorProtoSchema, file_csi_v1_csi.proto);
    fd.name = "csi.proto";
    const clearJsonNames = (m: DescriptorProto): void => {
      for (const f of m.field) f.jsonName = "";
      m.nestedType.forEach(clearJsonNames);
    };
    fd.messageType.forEach(clearJsonNames);
    for (const x of fd.extension) x.jsonName = "";
    for (const s of fd.service) {
      for (const m of s.method) {
        if (m.options && !m.options.$unknown?.length) m.options = undefined;
      }
    }
    const digest = createHash("sha256")
      .update(toBinary(FileDescriptorProtoSchema, fd))
      .digest("hex");
    // SHA-256 of the serialized FileDescriptorProto of upstream CSI v1.12.0 csi.proto
    // (as emitted by protoc), normalised as above. Any change to a name, number,
    // type, label, oneof, option or declaration order changes it.
    assert.equal(digest, "0b5c00a70d095894760fd762d6bb6cc5f31d46bfc4d1a557130d77cce80f3c4d");
  });

  it("declares exactly the five CSI v1.12 services", () => {
    assert.deepEqual(
      file_csi_v1_csi.services.map((s) => s.typeName),
      [
        "csi.v1.Identity",
        "csi.v1.Controller",
        "csi.v1.GroupController",
        "csi.v1.SnapshotMetadata",
        "csi.v1.Node",
      ],
    );
  });

  it("defines the custom options with the upstream extension numbers", () => {
    const ext = (e: DescExtension) => [e.typeName, e.number, e.extendee.typeName];
    assert.deepEqual(ext(csi_secret), ["csi.v1.csi_secret", 1059, "google.protobuf.FieldOptions"]);
    assert.deepEqual(ext(alpha_field), [
      "csi.v1.alpha_field",
      1060,
      "google.protobuf.FieldOptions",
    ]);
    assert.deepEqual(ext(alpha_enum), ["csi.v1.alpha_enum", 1060, "google.protobuf.EnumOptions"]);
    assert.deepEqual(ext(alpha_enum_value), [
      "csi.v1.alpha_enum_value",
      1060,
      "google.protobuf.EnumValueOptions",
    ]);
    assert.deepEqual(ext(alpha_message), [
      "csi.v1.alpha_message",
      1060,
      "google.protobuf.MessageOptions",
    ]);
    assert.deepEqual(ext(alpha_method), [
      "csi.v1.alpha_method",
      1060,
      "google.protobuf.MethodOptions",
    ]);
    assert.deepEqual(ext(alpha_service), [
      "csi.v1.alpha_service",
      1060,
      "google.protobuf.ServiceOptions",
    ]);
    assert.equal(file_csi_v1_csi.extensions.length, 7);
  });
});

describe("services and methods (gRPC paths)", () => {
  const u = "unary";
  it("Identity", () => {
    assert.equal(Identity.typeName, "csi.v1.Identity");
    assert.deepEqual(methods(Identity), [
      ["GetPluginInfo", u, "csi.v1.GetPluginInfoRequest", "csi.v1.GetPluginInfoResponse"],
      [
        "GetPluginCapabilities",
        u,
        "csi.v1.GetPluginCapabilitiesRequest",
        "csi.v1.GetPluginCapabilitiesResponse",
      ],
      ["Probe", u, "csi.v1.ProbeRequest", "csi.v1.ProbeResponse"],
    ]);
  });

  it("Controller", () => {
    assert.equal(Controller.typeName, "csi.v1.Controller");
    const names = [
      "CreateVolume",
      "DeleteVolume",
      "ControllerPublishVolume",
      "ControllerUnpublishVolume",
      "ValidateVolumeCapabilities",
      "ListVolumes",
      "GetCapacity",
      "ControllerGetCapabilities",
      "CreateSnapshot",
      "DeleteSnapshot",
      "ListSnapshots",
      "GetSnapshot",
      "ControllerExpandVolume",
      "ControllerGetVolume",
      "ControllerModifyVolume",
    ];
    assert.deepEqual(
      methods(Controller),
      names.map((n) => [n, u, `csi.v1.${n}Request`, `csi.v1.${n}Response`]),
    );
    // The generated client uses lowerCamelCase local names.
    assert.equal(Controller.method.createVolume.name, "CreateVolume");
    assert.equal(Controller.method.deleteVolume.input.typeName, "csi.v1.DeleteVolumeRequest");
  });

  it("Node", () => {
    assert.equal(Node.typeName, "csi.v1.Node");
    const names = [
      "NodeStageVolume",
      "NodeUnstageVolume",
      "NodePublishVolume",
      "NodeUnpublishVolume",
      "NodeGetVolumeStats",
      "NodeExpandVolume",
      "NodeGetCapabilities",
      "NodeGetInfo",
    ];
    assert.deepEqual(
      methods(Node),
      names.map((n) => [n, u, `csi.v1.${n}Request`, `csi.v1.${n}Response`]),
    );
  });

  it("GroupController", () => {
    assert.equal(GroupController.typeName, "csi.v1.GroupController");
    const names = [
      "GroupControllerGetCapabilities",
      "CreateVolumeGroupSnapshot",
      "DeleteVolumeGroupSnapshot",
      "GetVolumeGroupSnapshot",
    ];
    assert.deepEqual(
      methods(GroupController),
      names.map((n) => [n, u, `csi.v1.${n}Request`, `csi.v1.${n}Response`]),
    );
  });

  it("SnapshotMetadata (server streaming, alpha)", () => {
    assert.equal(SnapshotMetadata.typeName, "csi.v1.SnapshotMetadata");
    assert.deepEqual(methods(SnapshotMetadata), [
      [
        "GetMetadataAllocated",
        "server_streaming",
        "csi.v1.GetMetadataAllocatedRequest",
        "csi.v1.GetMetadataAllocatedResponse",
      ],
      [
        "GetMetadataDelta",
        "server_streaming",
        "csi.v1.GetMetadataDeltaRequest",
        "csi.v1.GetMetadataDeltaResponse",
      ],
    ]);
    assert.equal(getOption(SnapshotMetadata, alpha_service), true);
  });

  it("marks exactly GetSnapshot and ControllerGetVolume as alpha methods", () => {
    const alpha = file_csi_v1_csi.services
      .flatMap((s) => s.methods)
      .filter((m) => getOption(m, alpha_method))
      .map((m) => `${m.parent.name}.${m.name}`);
    assert.deepEqual(alpha, ["Controller.GetSnapshot", "Controller.ControllerGetVolume"]);
    assert.deepEqual(
      file_csi_v1_csi.services.filter((s) => getOption(s, alpha_service)).map((s) => s.name),
      ["SnapshotMetadata"],
    );
  });
});

describe("message field numbers and types", () => {
  const m = (s: string) => `message csi.v1.${s}`;
  const ss = "map<string,string>";

  it("CreateVolumeRequest", () => {
    assert.deepEqual(fieldTable(CreateVolumeRequestSchema), [
      [1, "name", "string"],
      [2, "capacity_range", m("CapacityRange")],
      [3, "volume_capabilities", `repeated ${m("VolumeCapability")}`],
      [4, "parameters", ss],
      [5, "secrets", ss],
      [6, "volume_content_source", m("VolumeContentSource")],
      [7, "accessibility_requirements", m("TopologyRequirement")],
      [8, "mutable_parameters", ss],
    ]);
  });

  it("CreateVolumeResponse and Volume", () => {
    assert.deepEqual(fieldTable(CreateVolumeResponseSchema), [[1, "volume", m("Volume")]]);
    assert.deepEqual(fieldTable(VolumeSchema), [
      [1, "capacity_bytes", "int64"],
      [2, "volume_id", "string"],
      [3, "volume_context", ss],
      [4, "content_source", m("VolumeContentSource")],
      [5, "accessible_topology", `repeated ${m("Topology")}`],
    ]);
  });

  it("CapacityRange and VolumeContentSource", () => {
    assert.deepEqual(fieldTable(CapacityRangeSchema), [
      [1, "required_bytes", "int64"],
      [2, "limit_bytes", "int64"],
    ]);
    assert.deepEqual(fieldTable(VolumeContentSourceSchema), [
      [1, "snapshot", m("VolumeContentSource.SnapshotSource"), "type"],
      [2, "volume", m("VolumeContentSource.VolumeSource"), "type"],
    ]);
  });

  it("VolumeCapability and its nested messages", () => {
    assert.deepEqual(fieldTable(VolumeCapabilitySchema), [
      [1, "block", m("VolumeCapability.BlockVolume"), "access_type"],
      [2, "mount", m("VolumeCapability.MountVolume"), "access_type"],
      [3, "access_mode", m("VolumeCapability.AccessMode")],
    ]);
    assert.deepEqual(fieldTable(VolumeCapability_MountVolumeSchema), [
      [1, "fs_type", "string"],
      [2, "mount_flags", "repeated string"],
      [3, "volume_mount_group", "string"],
    ]);
    assert.deepEqual(fieldTable(VolumeCapability_AccessModeSchema), [
      [1, "mode", "enum csi.v1.VolumeCapability.AccessMode.Mode"],
    ]);
  });

  it("VolumeCapability.AccessMode.Mode values", () => {
    assert.deepEqual(enumTable(VolumeCapability_AccessMode_ModeSchema), [
      ["UNKNOWN", 0],
      ["SINGLE_NODE_WRITER", 1],
      ["SINGLE_NODE_READER_ONLY", 2],
      ["MULTI_NODE_READER_ONLY", 3],
      ["MULTI_NODE_SINGLE_WRITER", 4],
      ["MULTI_NODE_MULTI_WRITER", 5],
      ["SINGLE_NODE_SINGLE_WRITER", 6],
      ["SINGLE_NODE_MULTI_WRITER", 7],
    ]);
    // The generated runtime enum object agrees.
    assert.equal(VolumeCapability_AccessMode_Mode.SINGLE_NODE_SINGLE_WRITER, 6);
    assert.equal(VolumeCapability_AccessMode_Mode.SINGLE_NODE_MULTI_WRITER, 7);
  });

  it("TopologyRequirement", () => {
    assert.deepEqual(fieldTable(TopologyRequirementSchema), [
      [1, "requisite", `repeated ${m("Topology")}`],
      [2, "preferred", `repeated ${m("Topology")}`],
    ]);
  });

  it("DeleteVolumeRequest", () => {
    assert.deepEqual(fieldTable(DeleteVolumeRequestSchema), [
      [1, "volume_id", "string"],
      [2, "secrets", ss],
    ]);
  });

  it("ProbeResponse and GetPluginInfoResponse", () => {
    assert.deepEqual(fieldTable(ProbeResponseSchema), [
      [1, "ready", "message google.protobuf.BoolValue"],
    ]);
    assert.deepEqual(fieldTable(GetPluginInfoResponseSchema), [
      [1, "name", "string"],
      [2, "vendor_version", "string"],
      [3, "manifest", ss],
    ]);
  });

  it("GetCapacityRequest and GetCapacityResponse", () => {
    assert.deepEqual(fieldTable(GetCapacityRequestSchema), [
      [1, "volume_capabilities", `repeated ${m("VolumeCapability")}`],
      [2, "parameters", ss],
      [3, "accessible_topology", m("Topology")],
    ]);
    assert.deepEqual(fieldTable(GetCapacityResponseSchema), [
      [1, "available_capacity", "int64"],
      [2, "maximum_volume_size", "message google.protobuf.Int64Value"],
      [3, "minimum_volume_size", "message google.protobuf.Int64Value"],
    ]);
  });

  it("PluginCapability", () => {
    assert.deepEqual(fieldTable(PluginCapabilitySchema), [
      [1, "service", m("PluginCapability.Service"), "type"],
      [2, "volume_expansion", m("PluginCapability.VolumeExpansion"), "type"],
    ]);
    assert.deepEqual(enumTable(PluginCapability_Service_TypeSchema), [
      ["UNKNOWN", 0],
      ["CONTROLLER_SERVICE", 1],
      ["VOLUME_ACCESSIBILITY_CONSTRAINTS", 2],
      ["GROUP_CONTROLLER_SERVICE", 3],
      ["SNAPSHOT_METADATA_SERVICE", 4],
    ]);
    assert.deepEqual(enumTable(PluginCapability_VolumeExpansion_TypeSchema), [
      ["UNKNOWN", 0],
      ["ONLINE", 1],
      ["OFFLINE", 2],
    ]);
  });

  it("ControllerServiceCapability.RPC.Type values", () => {
    assert.deepEqual(enumTable(ControllerServiceCapability_RPC_TypeSchema), [
      ["UNKNOWN", 0],
      ["CREATE_DELETE_VOLUME", 1],
      ["PUBLISH_UNPUBLISH_VOLUME", 2],
      ["LIST_VOLUMES", 3],
      ["GET_CAPACITY", 4],
      ["CREATE_DELETE_SNAPSHOT", 5],
      ["LIST_SNAPSHOTS", 6],
      ["CLONE_VOLUME", 7],
      ["PUBLISH_READONLY", 8],
      ["EXPAND_VOLUME", 9],
      ["LIST_VOLUMES_PUBLISHED_NODES", 10],
      ["VOLUME_CONDITION", 11],
      ["GET_VOLUME", 12],
      ["SINGLE_NODE_MULTI_WRITER", 13],
      ["MODIFY_VOLUME", 14],
      ["GET_SNAPSHOT", 15],
    ]);
    assert.equal(ControllerServiceCapability_RPC_Type.CREATE_DELETE_VOLUME, 1);
    assert.equal(ControllerServiceCapability_RPC_Type.MODIFY_VOLUME, 14);
  });
});

describe("custom options on the schema", () => {
  it("csi_secret is set exactly on the spec's secrets fields", () => {
    const secretFields = allMessages()
      .flatMap((msg) => msg.fields)
      .filter((f) => hasOption(f, csi_secret))
      .map((f) => {
        assert.equal(getOption(f, csi_secret), true);
        return `${f.parent.typeName}.${f.name}`;
      });
    assert.deepEqual(secretFields.sort(), [
      "csi.v1.ControllerExpandVolumeRequest.secrets",
      "csi.v1.ControllerModifyVolumeRequest.secrets",
      "csi.v1.ControllerPublishVolumeRequest.secrets",
      "csi.v1.ControllerUnpublishVolumeRequest.secrets",
      "csi.v1.CreateSnapshotRequest.secrets",
      "csi.v1.CreateVolumeGroupSnapshotRequest.secrets",
      "csi.v1.CreateVolumeRequest.secrets",
      "csi.v1.DeleteSnapshotRequest.secrets",
      "csi.v1.DeleteVolumeGroupSnapshotRequest.secrets",
      "csi.v1.DeleteVolumeRequest.secrets",
      "csi.v1.GetMetadataAllocatedRequest.secrets",
      "csi.v1.GetMetadataDeltaRequest.secrets",
      "csi.v1.GetSnapshotRequest.secrets",
      "csi.v1.GetVolumeGroupSnapshotRequest.secrets",
      "csi.v1.ListSnapshotsRequest.secrets",
      "csi.v1.NodeExpandVolumeRequest.secrets",
      "csi.v1.NodePublishVolumeRequest.secrets",
      "csi.v1.NodeStageVolumeRequest.secrets",
      "csi.v1.ValidateVolumeCapabilitiesRequest.secrets",
    ]);
    // ...and every field named "secrets" carries it.
    const named = allMessages()
      .flatMap((msg) => msg.fields)
      .filter((f) => f.name === "secrets");
    assert.equal(named.length, secretFields.length);
    assert.equal(getOption(CreateVolumeRequestSchema.field.parameters, csi_secret), false);
  });

  it("alpha_field, alpha_message and alpha_enum_value match the spec", () => {
    const fields = allMessages()
      .flatMap((msg) => msg.fields)
      .filter((f) => getOption(f, alpha_field))
      .map((f) => `${f.parent.typeName}.${f.name}`);
    assert.deepEqual(fields.sort(), [
      "csi.v1.GetCapacityResponse.minimum_volume_size",
      "csi.v1.ListVolumesResponse.VolumeStatus.volume_condition",
      "csi.v1.NodeExpandVolumeRequest.secrets",
      "csi.v1.NodeGetVolumeStatsResponse.volume_condition",
    ]);
    const messages = allMessages()
      .filter((msg) => getOption(msg, alpha_message))
      .map((msg) => msg.typeName);
    assert.deepEqual(messages.sort(), [
      "csi.v1.ControllerGetVolumeRequest",
      "csi.v1.ControllerGetVolumeResponse",
      "csi.v1.GetSnapshotRequest",
      "csi.v1.GetSnapshotResponse",
      "csi.v1.VolumeCondition",
    ]);
    const values = allEnums()
      .flatMap((e) => e.values)
      .filter((v) => getOption(v, alpha_enum_value))
      .map((v) => `${v.parent.typeName}.${v.name}`);
    assert.deepEqual(values.sort(), [
      "csi.v1.ControllerServiceCapability.RPC.Type.GET_SNAPSHOT",
      "csi.v1.ControllerServiceCapability.RPC.Type.GET_VOLUME",
      "csi.v1.ControllerServiceCapability.RPC.Type.SINGLE_NODE_MULTI_WRITER",
      "csi.v1.ControllerServiceCapability.RPC.Type.VOLUME_CONDITION",
      "csi.v1.NodeServiceCapability.RPC.Type.SINGLE_NODE_MULTI_WRITER",
      "csi.v1.NodeServiceCapability.RPC.Type.VOLUME_CONDITION",
      "csi.v1.PluginCapability.Service.Type.SNAPSHOT_METADATA_SERVICE",
      "csi.v1.VolumeCapability.AccessMode.Mode.SINGLE_NODE_MULTI_WRITER",
      "csi.v1.VolumeCapability.AccessMode.Mode.SINGLE_NODE_SINGLE_WRITER",
    ]);
    assert.deepEqual(
      allEnums().filter((e) => getOption(e, alpha_enum)),
      [],
    );
  });
});

describe("binary encoding (hand-computed bytes)", () => {
  it("CreateVolumeRequest{name:'a'} is 0a 01 61 and decodes back", () => {
    const msg = create(CreateVolumeRequestSchema, { name: "a" });
    const wire = toBinary(CreateVolumeRequestSchema, msg);
    assert.equal(hex(wire), "0a0161");
    const back = fromBinary(CreateVolumeRequestSchema, bytes(0x0a, 0x01, 0x61));
    assert.equal(back.name, "a");
    assert.equal(back.capacityRange, undefined);
    assert.deepEqual(back.secrets, {});
  });

  it("int64 fields are varints (CapacityRange.required_bytes = 10 GiB)", () => {
    const wire = toBinary(
      CapacityRangeSchema,
      create(CapacityRangeSchema, { requiredBytes: 10n * 1024n ** 3n }),
    );
    // tag 1/varint, then 10737418240 = 0x2_8000_0000 as base-128 groups.
    assert.equal(hex(wire), "088080808028");
    assert.equal(fromBinary(CapacityRangeSchema, wire).requiredBytes, 10737418240n);
  });

  it("a realistic CreateVolumeRequest encodes field by field", () => {
    const msg = create(CreateVolumeRequestSchema, {
      name: "pvc-1",
      capacityRange: { requiredBytes: 1n },
      volumeCapabilities: [
        {
          accessType: { case: "mount", value: { fsType: "ext4" } },
          accessMode: { mode: VolumeCapability_AccessMode_Mode.SINGLE_NODE_WRITER },
        },
      ],
      secrets: { k: "v" },
    });
    const expected = [
      // 1: name = "pvc-1"
      "0a05" + Buffer.from("pvc-1").toString("hex"),
      // 2: capacity_range { 1: required_bytes = 1 }
      "12020801",
      // 3: volume_capabilities { 2: mount { 1: fs_type = "ext4" }, 3: access_mode { 1: mode = 1 } }
      "1a0c" + "1206" + "0a04" + Buffer.from("ext4").toString("hex") + "1a020801",
      // 5: secrets map entry { 1: key = "k", 2: value = "v" }
      "2a06" + "0a016b" + "120176",
    ].join("");
    assert.equal(hex(toBinary(CreateVolumeRequestSchema, msg)), expected);

    const back = fromBinary(CreateVolumeRequestSchema, Buffer.from(expected, "hex"));
    assert.equal(back.name, "pvc-1");
    assert.equal(back.capacityRange?.requiredBytes, 1n);
    assert.equal(back.volumeCapabilities[0]?.accessType.case, "mount");
    assert.equal(
      back.volumeCapabilities[0]?.accessMode?.mode,
      VolumeCapability_AccessMode_Mode.SINGLE_NODE_WRITER,
    );
    assert.deepEqual(back.secrets, { k: "v" });
  });

  it("ProbeResponse.ready is a BoolValue wrapper: unset, false and true differ on the wire", () => {
    assert.equal(hex(toBinary(ProbeResponseSchema, create(ProbeResponseSchema, {}))), "");
    assert.equal(
      hex(toBinary(ProbeResponseSchema, create(ProbeResponseSchema, { ready: false }))),
      "0a00",
    );
    assert.equal(
      hex(toBinary(ProbeResponseSchema, create(ProbeResponseSchema, { ready: true }))),
      "0a020801",
    );
    assert.equal(fromBinary(ProbeResponseSchema, bytes()).ready, undefined);
    assert.equal(fromBinary(ProbeResponseSchema, bytes(0x0a, 0x00)).ready, false);
    assert.equal(fromBinary(ProbeResponseSchema, bytes(0x0a, 0x02, 0x08, 0x01)).ready, true);
  });
});
