import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { PersistentVolumeClaim } from "../../src/kube/objects.ts";
import {
  makeVolumeName,
  provisionerIdentity,
  volumeNameForClaim,
} from "../../src/provision/names.ts";
import { FakeClock } from "../support/fake-clock.ts";

const UID = "9a1b2c3d-4e5f-6789-abcd-ef0123456789";

describe("makeVolumeName()", () => {
  it("uses the UID verbatim, dashes included, with length -1", () => {
    assert.equal(makeVolumeName("pvc", UID, -1), `pvc-${UID}`);
  });

  it("removes dashes and truncates with a non-negative length", () => {
    assert.equal(makeVolumeName("pvc", UID, 16), "pvc-9a1b2c3d4e5f6789");
    assert.equal(makeVolumeName("vol", UID, 0), "vol-");
  });

  it("keeps the whole dash-free UID when the length exceeds it", () => {
    assert.equal(makeVolumeName("pvc", UID, 100), "pvc-9a1b2c3d4e5f6789abcdef0123456789");
  });

  it("rejects an empty prefix", () => {
    assert.throws(() => makeVolumeName("", UID, -1), /the volume name prefix is empty/);
  });

  it("rejects an empty UID", () => {
    assert.throws(() => makeVolumeName("pvc", "", -1), /the claim has no UID/);
  });

  it("rejects a length below -1", () => {
    assert.throws(() => makeVolumeName("pvc", UID, -2), /UUID length -2/);
  });
});

describe("volumeNameForClaim()", () => {
  it("names the PV and the CSI volume alike from the claim UID", () => {
    const claim: PersistentVolumeClaim = { metadata: { name: "data", uid: UID }, spec: {} };
    assert.equal(
      volumeNameForClaim(claim, { volumeNamePrefix: "csi", volumeNameUuidLength: 8 }),
      "csi-9a1b2c3d",
    );
  });

  it("rejects a claim without UID", () => {
    const claim: PersistentVolumeClaim = { metadata: { name: "data" }, spec: {} };
    assert.throws(() =>
      volumeNameForClaim(claim, { volumeNamePrefix: "pvc", volumeNameUuidLength: -1 }),
    );
  });
});

describe("provisionerIdentity()", () => {
  const clock = new FakeClock(1_700_000_000_123);

  it("is <unixMillis>-<rand 0..9999>-<driverName>", () => {
    assert.equal(
      provisionerIdentity({ clock, random: () => 0.42, driverName: "hostpath.csi.k8s.io" }),
      "1700000000123-4200-hostpath.csi.k8s.io",
    );
  });

  it("appends the node name in node mode", () => {
    assert.equal(
      provisionerIdentity({ clock, random: () => 0.99999, driverName: "d", nodeName: "node-1" }),
      "1700000000123-9999-d-node-1",
    );
  });

  it("draws 0 for the lowest random value", () => {
    assert.equal(
      provisionerIdentity({ clock, random: () => 0, driverName: "d" }),
      "1700000000123-0-d",
    );
  });
});
