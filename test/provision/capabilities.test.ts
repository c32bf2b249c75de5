import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { toJson } from "@bufbuild/protobuf";
import {
  VolumeCapability_AccessMode_Mode as Mode,
  PluginCapability_Service_Type as Plugin,
  ControllerServiceCapability_RPC_Type as Rpc,
  VolumeCapabilitySchema,
} from "../../src/gen/csi/v1/csi_pb.js";
import type { PersistentVolumeAccessMode } from "../../src/kube/objects.ts";
import {
  buildVolumeCapabilities,
  missingCapability,
  supportsTopology,
  toCsiAccessMode,
} from "../../src/provision/capabilities.ts";

describe("toCsiAccessMode()", () => {
  const table: [PersistentVolumeAccessMode, boolean, Mode][] = [
    ["ReadWriteOnce", false, Mode.SINGLE_NODE_WRITER],
    ["ReadWriteOnce", true, Mode.SINGLE_NODE_MULTI_WRITER],
    ["ReadWriteOncePod", false, Mode.SINGLE_NODE_WRITER],
    ["ReadWriteOncePod", true, Mode.SINGLE_NODE_SINGLE_WRITER],
    ["ReadOnlyMany", false, Mode.MULTI_NODE_READER_ONLY],
    ["ReadOnlyMany", true, Mode.MULTI_NODE_READER_ONLY],
    ["ReadWriteMany", false, Mode.MULTI_NODE_MULTI_WRITER],
    ["ReadWriteMany", true, Mode.MULTI_NODE_MULTI_WRITER],
  ];
  for (const [mode, snmw, want] of table) {
    it(`maps ${mode} ${snmw ? "with" : "without"} SINGLE_NODE_MULTI_WRITER to ${Mode[want]}`, () => {
      assert.equal(toCsiAccessMode(mode, snmw), want);
    });
  }

  it("rejects an unknown access mode", () => {
    assert.throws(
      () => toCsiAccessMode("ReadWriteSometimes" as PersistentVolumeAccessMode, false),
      /Unsupported access mode "ReadWriteSometimes"/,
    );
  });
});

describe("buildVolumeCapabilities()", () => {
  const json = (caps: ReturnType<typeof buildVolumeCapabilities>) =>
    caps.map((c) => toJson(VolumeCapabilitySchema, c));

  it("builds one Mount capability per access mode with fsType and the class's mount options", () => {
    const caps = buildVolumeCapabilities({
      accessModes: ["ReadWriteOnce", "ReadOnlyMany"],
      fsType: "ext4",
      mountOptions: ["noatime", "discard"],
      supportsSingleNodeMultiWriter: false,
    });
    assert.deepEqual(json(caps), [
      {
        mount: { fsType: "ext4", mountFlags: ["noatime", "discard"] },
        accessMode: { mode: "SINGLE_NODE_WRITER" },
      },
      {
        mount: { fsType: "ext4", mountFlags: ["noatime", "discard"] },
        accessMode: { mode: "MULTI_NODE_READER_ONLY" },
      },
    ]);
  });

  it("builds Block capabilities without fsType or mount flags", () => {
    const caps = buildVolumeCapabilities({
      accessModes: ["ReadWriteOncePod"],
      volumeMode: "Block",
      fsType: "ext4",
      mountOptions: ["noatime"],
      supportsSingleNodeMultiWriter: true,
    });
    assert.deepEqual(json(caps), [
      { block: {}, accessMode: { mode: "SINGLE_NODE_SINGLE_WRITER" } },
    ]);
  });

  it("treats Filesystem like an unset volume mode", () => {
    const caps = buildVolumeCapabilities({
      accessModes: ["ReadWriteMany"],
      volumeMode: "Filesystem",
      fsType: "",
      supportsSingleNodeMultiWriter: false,
    });
    assert.deepEqual(json(caps), [{ mount: {}, accessMode: { mode: "MULTI_NODE_MULTI_WRITER" } }]);
  });
});

describe("missingCapability()", () => {
  const all = {
    plugin: new Set([Plugin.CONTROLLER_SERVICE]),
    controller: new Set([
      Rpc.CREATE_DELETE_VOLUME,
      Rpc.CREATE_DELETE_SNAPSHOT,
      Rpc.CLONE_VOLUME,
      Rpc.MODIFY_VOLUME,
    ]),
  };

  it("accepts a driver with every capability needed", () => {
    assert.equal(
      missingCapability(all, { snapshot: true, clone: true, modifyVolume: true }),
      undefined,
    );
  });

  it("needs the CONTROLLER_SERVICE plugin capability", () => {
    assert.match(
      missingCapability({ ...all, plugin: new Set() })!,
      /plugin CONTROLLER_SERVICE capability is not reported/,
    );
  });

  it("needs CREATE_DELETE_VOLUME", () => {
    assert.match(
      missingCapability({ ...all, controller: new Set() })!,
      /controller CREATE_DELETE_VOLUME capability is not reported/,
    );
  });

  const extra: [string, Rpc, RegExp][] = [
    ["snapshot", Rpc.CREATE_DELETE_SNAPSHOT, /snapshot restore: controller CREATE_DELETE_SNAPSHOT/],
    ["clone", Rpc.CLONE_VOLUME, /clone operations: controller CLONE_VOLUME/],
    ["modifyVolume", Rpc.MODIFY_VOLUME, /VolumeAttributesClass: controller MODIFY_VOLUME/],
  ];
  for (const [need, capability, message] of extra) {
    it(`needs ${Rpc[capability]} for ${need}`, () => {
      const controller = new Set([...all.controller].filter((c) => c !== capability));
      assert.match(missingCapability({ ...all, controller }, { [need]: true })!, message);
      assert.equal(missingCapability({ ...all, controller }), undefined);
    });
  }
});

describe("supportsTopology()", () => {
  const caps = {
    plugin: new Set([Plugin.VOLUME_ACCESSIBILITY_CONSTRAINTS]),
    controller: new Set<Rpc>(),
  };

  it("needs the VOLUME_ACCESSIBILITY_CONSTRAINTS capability and the gate", () => {
    assert.equal(supportsTopology(caps), true);
    assert.equal(supportsTopology(caps, false), false);
    assert.equal(supportsTopology({ ...caps, plugin: new Set() }), false);
  });
});
