import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { awsEbs, awsRegionFromZones, ebsVolumeId } from "../../src/migration/aws-ebs.ts";
import {
  csiVolume,
  error,
  inTreeVolume,
  nodeTerm,
  storageClass,
  value,
  zoneTerm,
} from "./support.ts";

const KEY = "topology.ebs.csi.aws.com/zone";
const ZONE = "topology.kubernetes.io/zone";
const REGION = "topology.kubernetes.io/region";
const BETA_ZONE = "failure-domain.beta.kubernetes.io/zone";
const BETA_REGION = "failure-domain.beta.kubernetes.io/region";
const csi = (handle: string, extra: object = {}) => ({
  driver: "ebs.csi.aws.com",
  volumeHandle: handle,
  volumeAttributes: { "storage.kubernetes.io/csiProvisionerIdentity": "id" },
  ...extra,
});

describe("aws-ebs StorageClass translation", () => {
  const translate = (params?: Record<string, string>, allowed?: ReturnType<typeof zoneTerm>[]) =>
    value(awsEbs.translateClass(storageClass("kubernetes.io/aws-ebs", params, allowed)));

  it("fstype (any case) becomes csi.storage.k8s.io/fstype, other parameters stay", () => {
    const sc = translate({ type: "gp2", FsType: "xfs", encrypted: "true" });
    assert.deepEqual(sc.parameters, {
      type: "gp2",
      "csi.storage.k8s.io/fstype": "xfs",
      encrypted: "true",
    });
    assert.equal(sc.allowedTopologies, undefined);
  });

  it("zone becomes an allowed topology of the driver's zone key", () => {
    const sc = translate({ zone: "us-east-1a", type: "gp3" });
    assert.deepEqual(sc.parameters, { type: "gp3" });
    assert.deepEqual(sc.allowedTopologies, [zoneTerm(KEY, "us-east-1a")]);
  });

  it("zones is split at commas, values as written", () => {
    const sc = translate({ Zones: "us-east-1a,us-east-1b, us-east-1c" });
    assert.deepEqual(sc.allowedTopologies, [
      zoneTerm(KEY, "us-east-1a", "us-east-1b", " us-east-1c"),
    ]);
  });

  it("iopsPerGB stays and allows the driver to raise IOPS", () => {
    const sc = translate({ iopsPerGB: "10", type: "io1" });
    assert.deepEqual(sc.parameters, {
      iopsPerGB: "10",
      allowautoiopspergbincrease: "true",
      type: "io1",
    });
  });

  it("GA and beta zone allowed topologies become the driver's key, others stay", () => {
    const sc = translate({}, [
      zoneTerm(ZONE, "us-east-1a"),
      {
        matchLabelExpressions: [
          { key: BETA_ZONE, values: ["us-east-1b"] },
          { key: "rack", values: ["r1"] },
        ],
      },
    ]);
    assert.deepEqual(sc.allowedTopologies, [
      zoneTerm(KEY, "us-east-1a"),
      {
        matchLabelExpressions: [
          { key: KEY, values: ["us-east-1b"] },
          { key: "rack", values: ["r1"] },
        ],
      },
    ]);
    assert.deepEqual(sc.parameters, {});
  });

  it("zone next to allowed topologies is upstream's error", () => {
    const result = awsEbs.translateClass(
      storageClass("kubernetes.io/aws-ebs", { zone: "a" }, [zoneTerm(ZONE, "b")]),
    );
    assert.equal(
      error(result),
      "cannot simultaneously set allowed topologies and zone/zones parameters",
    );
  });

  it("zone and zones together are an error (the in-tree plugin's)", () => {
    const result = awsEbs.translateClass(
      storageClass("kubernetes.io/aws-ebs", { zone: "a", zones: "b" }),
    );
    assert.equal(
      error(result),
      "both zone and zones StorageClass parameters must not be used at the same time",
    );
  });

  it("leaves its input alone", () => {
    const input = storageClass("kubernetes.io/aws-ebs", { fstype: "ext4", zone: "us-east-1a" });
    const copy = structuredClone(input);
    translate(input.parameters);
    awsEbs.translateClass(input);
    assert.deepEqual(input, copy);
  });
});

describe("aws-ebs PV to in-tree", () => {
  it("the handle is the volumeID, fsType kept, CSI source and its attributes gone", () => {
    const pv = value(awsEbs.toInTree(csiVolume(csi("vol-0abc", { fsType: "ext4" }))));
    assert.deepEqual(pv.spec.awsElasticBlockStore, { volumeID: "vol-0abc", fsType: "ext4" });
    assert.equal(pv.spec.csi, undefined);
    assert.equal(pv.metadata.labels, undefined);
    assert.equal(pv.spec.nodeAffinity, undefined);
    assert.equal(pv.metadata.annotations?.["pv.kubernetes.io/provisioned-by"], "in-tree");
  });

  it("partition and readOnly carry over", () => {
    const pv = value(
      awsEbs.toInTree(
        csiVolume(csi("vol-1", { readOnly: true, volumeAttributes: { partition: "3" } })),
      ),
    );
    assert.deepEqual(pv.spec.awsElasticBlockStore, {
      volumeID: "vol-1",
      partition: 3,
      readOnly: true,
    });
  });

  it("a partition that is no number is upstream's error", () => {
    const result = awsEbs.toInTree(
      csiVolume(csi("vol-1", { volumeAttributes: { partition: "x" } })),
    );
    assert.equal(
      error(result),
      'failed to convert partition x to integer: strconv.Atoi: parsing "x": invalid syntax',
    );
  });

  it("the driver's zone becomes the zone label, with the region derived from it", () => {
    const pv = value(
      awsEbs.toInTree(csiVolume(csi("vol-1"), { terms: [nodeTerm([KEY, ["us-west-2a"]])] })),
    );
    assert.deepEqual(pv.spec.nodeAffinity?.required?.nodeSelectorTerms, [
      nodeTerm([ZONE, ["us-west-2a"]], [REGION, ["us-west-2"]]),
    ]);
    assert.deepEqual(pv.metadata.labels, { [REGION]: "us-west-2", [ZONE]: "us-west-2a" });
  });

  it("several zones of one region: zone label joined with __", () => {
    const pv = value(
      awsEbs.toInTree(
        csiVolume(csi("vol-1"), {
          terms: [nodeTerm([KEY, ["us-east-1b"]]), nodeTerm([KEY, ["us-east-1a"]])],
        }),
      ),
    );
    assert.deepEqual(pv.metadata.labels, {
      [REGION]: "us-east-1",
      [ZONE]: "us-east-1a__us-east-1b",
    });
  });

  it("beta labels already on the PV are kept and their keys used", () => {
    const pv = value(
      awsEbs.toInTree(
        csiVolume(csi("vol-1"), {
          terms: [nodeTerm([KEY, ["eu-west-1a"]])],
          labels: { [BETA_ZONE]: "eu-west-1a" },
        }),
      ),
    );
    assert.deepEqual(pv.spec.nodeAffinity?.required?.nodeSelectorTerms, [
      nodeTerm([BETA_ZONE, ["eu-west-1a"]], [BETA_REGION, ["eu-west-1"]]),
    ]);
    assert.deepEqual(pv.metadata.labels, { [BETA_ZONE]: "eu-west-1a", [BETA_REGION]: "eu-west-1" });
  });

  it("topology without zones (another driver's keys) cannot be translated", () => {
    const result = awsEbs.toInTree(
      csiVolume(csi("vol-1"), { terms: [nodeTerm(["topology.hostpath.csi/node", ["n1"]])] }),
    );
    assert.equal(
      error(result),
      "failed to translate topology of PersistentVolume pvc-1: Failed to handle region topology. error: no zones specified",
    );
  });

  it("zones of two regions cannot be translated", () => {
    const result = awsEbs.toInTree(
      csiVolume(csi("vol-1"), { terms: [nodeTerm([KEY, ["us-east-1a", "us-west-2a"]])] }),
    );
    assert.match(
      error(result),
      /multiple or no regions gotten from zones, got: map\[us-east-1:\{\} us-west-2:\{\}\]$/,
    );
  });
});

describe("awsRegionFromZones()", () => {
  const rows: [string[], string][] = [
    [["us-west-2a"], "us-west-2"],
    [["us-gov-east-1a"], "us-gov-east-1"],
    [["us-west-2-lax-1a"], "us-west-2"],
    [["us-east-1-wl1-bos-wlz-1"], "us-east-1"],
  ];
  for (const [zones, region] of rows) {
    it(`${zones.join(",")} → ${region}`, () =>
      assert.equal(value(awsRegionFromZones(zones)), region));
  }
  it("rejects a zone of another shape", () => {
    assert.equal(
      error(awsRegionFromZones(["zone1"])),
      "Unexpected zone format: zone1 is not a valid AWS zone",
    );
  });
});

describe("aws-ebs PV to CSI (deletion)", () => {
  const rows: [string, string][] = [
    ["vol-0abc", "vol-0abc"],
    ["aws://us-east-1a/vol-0abc", "vol-0abc"],
    ["aws:///vol-0abc", "vol-0abc"],
  ];
  for (const [volumeID, handle] of rows) {
    it(`volumeID ${volumeID} → handle ${handle}`, () => {
      const source = value(
        awsEbs.toCsi(inTreeVolume("awsElasticBlockStore", { volumeID, fsType: "ext4" })),
      );
      assert.deepEqual(source, {
        driver: "ebs.csi.aws.com",
        volumeHandle: handle,
        volumeAttributes: { partition: "0" },
        fsType: "ext4",
      });
    });
  }

  it("an aws:// id without a vol- id is upstream's error", () => {
    const result = awsEbs.toCsi(
      inTreeVolume("awsElasticBlockStore", { volumeID: "aws://us-east-1a/disk" }),
    );
    assert.equal(
      error(result),
      "failed to translate Kubernetes ID to EBS Volume ID Invalid format for AWS volume (aws://us-east-1a/disk)",
    );
  });

  it("ebsVolumeId() keeps a bare id", () => assert.equal(value(ebsVolumeId("vol-1")), "vol-1"));
});

describe("aws-ebs PV node affinity in the driver's keys (node deployment)", () => {
  it("renames the zone key of the affinity and the beta region to GA", () => {
    const pv = inTreeVolume("awsElasticBlockStore", { volumeID: "vol-1" });
    pv.spec.nodeAffinity = {
      required: {
        nodeSelectorTerms: [nodeTerm([BETA_ZONE, ["us-east-1a"]], [BETA_REGION, ["us-east-1"]])],
      },
    };
    assert.deepEqual(awsEbs.nodeAffinityToCsi!(pv)?.required?.nodeSelectorTerms, [
      nodeTerm([KEY, ["us-east-1a"]], [REGION, ["us-east-1"]]),
    ]);
    // The input is left alone.
    assert.equal(
      pv.spec.nodeAffinity.required?.nodeSelectorTerms[0]?.matchExpressions?.[0]?.key,
      BETA_ZONE,
    );
  });

  it("without zones in the affinity, adds the zone label's zones (trimmed, unique, sorted)", () => {
    const pv = inTreeVolume(
      "awsElasticBlockStore",
      { volumeID: "vol-1" },
      { labels: { [ZONE]: "us-east-1b__ us-east-1a__us-east-1b__" } },
    );
    assert.deepEqual(awsEbs.nodeAffinityToCsi!(pv), {
      required: { nodeSelectorTerms: [nodeTerm([KEY, ["us-east-1a", "us-east-1b"]])] },
    });
  });

  it("without zones anywhere, the affinity stays as it is", () => {
    const pv = inTreeVolume("awsElasticBlockStore", { volumeID: "vol-1" });
    assert.equal(awsEbs.nodeAffinityToCsi!(pv), undefined);
  });
});
