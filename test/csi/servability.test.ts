import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import {
  controllerCapabilityNames,
  pluginCapabilityNames,
  summarizeControllerCapabilities,
  summarizePluginCapabilities,
} from "../../src/csi/capabilities.ts";
import { assessServability, type FeatureKey } from "../../src/csi/servability.ts";
import {
  ControllerServiceCapability_RPC_Type as Cap,
  ControllerGetCapabilitiesResponseSchema,
  PluginCapability_VolumeExpansion_Type as Expansion,
  GetPluginCapabilitiesResponseSchema,
  PluginCapability_Service_Type as PluginCap,
} from "../../src/gen/csi/v1/csi_pb.js";

function plugin(services: PluginCap[], expansion: Expansion[] = []) {
  return summarizePluginCapabilities(
    create(GetPluginCapabilitiesResponseSchema, {
      capabilities: [
        ...services.map((type) => ({ type: { case: "service" as const, value: { type } } })),
        ...expansion.map((type) => ({
          type: { case: "volumeExpansion" as const, value: { type } },
        })),
      ],
    }),
  );
}

function controller(caps: Cap[]) {
  return summarizeControllerCapabilities(
    create(ControllerGetCapabilitiesResponseSchema, {
      capabilities: caps.map((type) => ({ type: { case: "rpc" as const, value: { type } } })),
    }),
  );
}

describe("summarizePluginCapabilities()", () => {
  it("turns the response into flags and names", () => {
    const caps = plugin(
      [PluginCap.GROUP_CONTROLLER_SERVICE, PluginCap.CONTROLLER_SERVICE],
      [Expansion.OFFLINE],
    );
    assert.equal(caps.controllerService, true);
    assert.equal(caps.groupControllerService, true);
    assert.equal(caps.volumeAccessibilityConstraints, false);
    assert.equal(caps.snapshotMetadataService, false);
    assert.equal(caps.offlineExpansion, true);
    assert.equal(caps.onlineExpansion, false);
    assert.deepEqual(pluginCapabilityNames(caps), [
      "CONTROLLER_SERVICE",
      "GROUP_CONTROLLER_SERVICE",
      "VolumeExpansion.OFFLINE",
    ]);
  });

  it("names a capability newer than this build by its number", () => {
    const caps = controller([Cap.CREATE_DELETE_VOLUME, 99 as Cap]);
    assert.deepEqual(controllerCapabilityNames(caps), ["CREATE_DELETE_VOLUME", "UNKNOWN_99"]);
  });
});

describe("assessServability()", () => {
  it("requires CONTROLLER_SERVICE and CREATE_DELETE_VOLUME", () => {
    const table: [PluginCap[], Cap[], boolean, number][] = [
      [[PluginCap.CONTROLLER_SERVICE], [Cap.CREATE_DELETE_VOLUME], true, 0],
      [[], [Cap.CREATE_DELETE_VOLUME], false, 1],
      [[PluginCap.CONTROLLER_SERVICE], [Cap.LIST_VOLUMES], false, 1],
      [[], [], false, 2],
    ];
    for (const [p, c, servable, problems] of table) {
      const verdict = assessServability(plugin(p), controller(c));
      assert.equal(verdict.servable, servable, `${p} / ${c}`);
      assert.equal(verdict.problems.length, problems, `${p} / ${c}`);
    }
  });

  it("switches each feature on with its capability", () => {
    const table: [FeatureKey, PluginCap[], Cap[]][] = [
      ["topology", [PluginCap.VOLUME_ACCESSIBILITY_CONSTRAINTS], []],
      ["cloning", [], [Cap.CLONE_VOLUME]],
      ["snapshots", [], [Cap.CREATE_DELETE_SNAPSHOT]],
      ["capacity", [], [Cap.GET_CAPACITY]],
      ["singleNodeMultiWriter", [], [Cap.SINGLE_NODE_MULTI_WRITER]],
      ["attachmentCheck", [], [Cap.PUBLISH_UNPUBLISH_VOLUME]],
      ["modifyVolume", [], [Cap.MODIFY_VOLUME]],
    ];
    const base = [PluginCap.CONTROLLER_SERVICE];
    const none = assessServability(plugin(base), controller([Cap.CREATE_DELETE_VOLUME]));
    assert.deepEqual(
      none.features.filter((f) => f.enabled).map((f) => f.key),
      [],
    );
    for (const [key, p, c] of table) {
      const verdict = assessServability(
        plugin([...base, ...p]),
        controller([Cap.CREATE_DELETE_VOLUME, ...c]),
      );
      assert.deepEqual(
        verdict.features.filter((f) => f.enabled).map((f) => f.key),
        [key],
      );
      const on = verdict.features.find((f) => f.key === key)!;
      const off = none.features.find((f) => f.key === key)!;
      assert.notEqual(on.explanation, off.explanation, `${key} explains both states`);
    }
  });
});
