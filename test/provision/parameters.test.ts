import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  buildCreateParameters,
  resolveFsType,
  stripReservedParameters,
} from "../../src/provision/parameters.ts";

describe("resolveFsType()", () => {
  it("reads csi.storage.k8s.io/fstype", () => {
    assert.deepEqual(resolveFsType({ "csi.storage.k8s.io/fstype": "xfs" }), { fsType: "xfs" });
  });

  it("reads the deprecated fstype key in any case and reports it", () => {
    assert.deepEqual(resolveFsType({ FsType: "ext3" }), {
      fsType: "ext3",
      deprecatedKey: "FsType",
    });
    assert.deepEqual(resolveFsType({ fstype: "ext4" }), {
      fsType: "ext4",
      deprecatedKey: "fstype",
    });
  });

  it("rejects both keys at once", () => {
    assert.throws(
      () => resolveFsType({ fstype: "ext4", "csi.storage.k8s.io/fstype": "xfs" }),
      /^Error: fstype specified in parameters with both "fstype" and "csi.storage.k8s.io\/fstype" keys$/,
    );
    assert.throws(() => resolveFsType({ fstype: "ext4", FSTYPE: "xfs" }), /both/);
  });

  it("falls back to --default-fstype", () => {
    assert.deepEqual(resolveFsType({}, "ext4"), { fsType: "ext4" });
    assert.deepEqual(resolveFsType(undefined, "ext4"), { fsType: "ext4" });
    assert.deepEqual(resolveFsType({ "csi.storage.k8s.io/fstype": "" }, "ext4"), {
      fsType: "ext4",
    });
  });

  it("is empty with neither", () => {
    assert.deepEqual(resolveFsType(undefined), { fsType: "" });
  });
});

describe("stripReservedParameters()", () => {
  it("strips every known csi.storage.k8s.io/ key and keeps the rest, deprecated secret keys included", () => {
    const known = [
      "fstype",
      "secret-name",
      "secret-namespace",
      "provisioner-secret-name",
      "provisioner-secret-namespace",
      "controller-publish-secret-name",
      "controller-publish-secret-namespace",
      "node-stage-secret-name",
      "node-stage-secret-namespace",
      "node-publish-secret-name",
      "node-publish-secret-namespace",
      "controller-expand-secret-name",
      "controller-expand-secret-namespace",
      "node-expand-secret-name",
      "node-expand-secret-namespace",
      "controller-modify-secret-name",
      "controller-modify-secret-namespace",
    ];
    const parameters: Record<string, string> = {
      pool: "fast",
      csiProvisionerSecretName: "s",
      csiProvisionerSecretNamespace: "ns",
      fstype: "ext4",
    };
    for (const key of known) parameters[`csi.storage.k8s.io/${key}`] = "x";
    assert.deepEqual(stripReservedParameters(parameters), {
      pool: "fast",
      csiProvisionerSecretName: "s",
      csiProvisionerSecretNamespace: "ns",
      fstype: "ext4",
    });
  });

  it("rejects an unknown key under the reserved prefix", () => {
    assert.throws(
      () => stripReservedParameters({ "csi.storage.k8s.io/foo": "bar" }),
      /^Error: found unknown parameter key "csi.storage.k8s.io\/foo" with reserved namespace csi.storage.k8s.io\/$/,
    );
    assert.throws(() => stripReservedParameters({ "csi.storage.k8s.io/pvc/name": "x" }));
  });

  it("returns an empty map for no parameters", () => {
    assert.deepEqual(stripReservedParameters(undefined), {});
  });
});

describe("buildCreateParameters()", () => {
  const base = { pvcName: "data", pvcNamespace: "apps", pvName: "pvc-1" };

  it("adds the pvc/pv metadata keys with --extra-create-metadata", () => {
    assert.deepEqual(
      buildCreateParameters({ ...base, parameters: { a: "b" }, extraCreateMetadata: true }),
      {
        a: "b",
        "csi.storage.k8s.io/pvc/name": "data",
        "csi.storage.k8s.io/pvc/namespace": "apps",
        "csi.storage.k8s.io/pv/name": "pvc-1",
      },
    );
  });

  it("adds nothing without it", () => {
    assert.deepEqual(
      buildCreateParameters({
        ...base,
        parameters: { a: "b", "csi.storage.k8s.io/fstype": "xfs" },
        extraCreateMetadata: false,
      }),
      { a: "b" },
    );
  });
});
