import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseArgs } from "../../src/config/parse.ts";
import {
  csiAddressToPath,
  FEATURE_GATES,
  FLAG_DEFAULTS,
  FLAGS,
  flagByName,
  parseGoBool,
  parseGoFloat,
  parseGoInt,
  parseGoUint,
} from "../../src/config/schema.ts";

/**
 * Every flag's default, transcribed by hand from the reference (upstream-behaviour.md 1.1-1.4,
 * component-base logs) and the brief for probe/dev. Not generated from the schema, so a wrong
 * default in the schema fails here. Columns: flag name, config property, typed default.
 */
const EXPECTED_DEFAULTS: [string, string, unknown][] = [
  // 1.1 common sidecar flags
  ["kubeconfig", "kubeconfig", ""],
  ["csi-address", "csiAddress", "/run/csi/socket"],
  ["leader-election", "leaderElection", false],
  ["leader-election-namespace", "leaderElectionNamespace", ""],
  ["leader-election-lease-duration", "leaderElectionLeaseDurationMs", 15_000],
  ["leader-election-renew-deadline", "leaderElectionRenewDeadlineMs", 10_000],
  ["leader-election-retry-period", "leaderElectionRetryPeriodMs", 5_000],
  ["leader-election-labels", "leaderElectionLabels", {}],
  ["kube-api-qps", "kubeApiQps", 5],
  ["kube-api-burst", "kubeApiBurst", 10],
  ["http-endpoint", "httpEndpoint", ""],
  ["metrics-address", "metricsAddress", ""],
  ["metrics-path", "metricsPath", "/metrics"],
  ["automaxprocs", "automaxprocs", false],
  // 1.2 provisioner flags
  ["master", "master", ""],
  ["volume-name-prefix", "volumeNamePrefix", "pvc"],
  ["volume-name-uuid-length", "volumeNameUuidLength", -1],
  ["retry-interval-start", "retryIntervalStartMs", 1_000],
  ["retry-interval-max", "retryIntervalMaxMs", 300_000],
  ["worker-threads", "workerThreads", 100],
  ["cloning-protection-threads", "cloningProtectionThreads", 1],
  ["snapshot-orphan-sweep-interval", "snapshotOrphanSweepIntervalMs", 300_000],
  ["capacity-threads", "capacityThreads", 1],
  ["timeout", "timeoutMs", 10_000],
  ["strict-topology", "strictTopology", false],
  ["immediate-topology", "immediateTopology", true],
  ["extra-create-metadata", "extraCreateMetadata", false],
  ["enable-pprof", "enablePprof", false],
  ["default-fstype", "defaultFstype", ""],
  ["demo", "demo", false],
  ["kube-api-capacity-qps", "kubeApiCapacityQps", 1],
  ["kube-api-capacity-burst", "kubeApiCapacityBurst", 5],
  ["enable-capacity", "enableCapacity", false],
  ["capacity-for-immediate-binding", "capacityForImmediateBinding", false],
  ["capacity-poll-interval", "capacityPollIntervalMs", 60_000],
  ["capacity-ownerref-level", "capacityOwnerrefLevel", 1],
  ["node-deployment", "nodeDeployment", false],
  ["node-deployment-immediate-binding", "nodeDeploymentImmediateBinding", true],
  ["node-deployment-base-delay", "nodeDeploymentBaseDelayMs", 20_000],
  ["node-deployment-max-delay", "nodeDeploymentMaxDelayMs", 60_000],
  ["controller-publish-readonly", "controllerPublishReadonly", false],
  ["prevent-volume-mode-conversion", "preventVolumeModeConversion", true],
  // beyond upstream
  ["claim-metadata-prefixes", "claimMetadataPrefixes", []],
  ["orphan-audit-interval", "orphanAuditIntervalMs", 0],
  ["orphan-delete", "orphanDelete", false],
  ["orphan-grace-period", "orphanGracePeriodMs", 3_600_000],
  // 1.3 feature gates
  [
    "feature-gates",
    "featureGates",
    {
      Topology: true,
      CrossNamespaceVolumeDataSource: false,
      VolumeAttributesClass: true,
      ReleaseLeaderElectionOnExit: true,
    },
  ],
  // 1.4 logging (component-base logs)
  ["logging-format", "loggingFormat", "text"],
  ["log-flush-frequency", "logFlushFrequencyMs", 5_000],
  ["v", "verbosity", 0],
  ["vmodule", "vmodule", []],
  ["log-json-split-stream", "logJsonSplitStream", false],
  ["log-json-info-buffer-size", "logJsonInfoBufferSize", "0"],
  ["log-text-split-stream", "logTextSplitStream", false],
  ["log-text-info-buffer-size", "logTextInfoBufferSize", "0"],
  // probe and dev
  ["output", "output", "text"],
  ["connect-timeout", "connectTimeoutMs", 30_000],
  ["data-dir", "dataDir", "./.csi-provisioner-dev"],
  ["port", "port", 0],
  ["kubeconfig-out", "kubeconfigOut", "./.csi-provisioner-dev/kubeconfig"],
];

/** Flags that select a command rather than configure one. */
const COMMAND_FLAGS = ["help", "version"];

function defaultConfig() {
  const r = parseArgs([], {});
  assert.ok(r.ok && r.command === "run", "an empty command line must parse");
  return r.config;
}

describe("flag defaults", () => {
  const config = defaultConfig() as unknown as Record<string, unknown>;
  for (const [name, key, value] of EXPECTED_DEFAULTS) {
    it(`--${name} defaults to ${JSON.stringify(value)} as ${key}`, () => {
      assert.equal(flagByName(name)?.key, key, `--${name} fills ${key}`);
      assert.deepEqual(config[key], value);
    });
  }

  it("covers every flag of the table, and the table has every expected flag", () => {
    const expected = new Set(EXPECTED_DEFAULTS.map(([name]) => name));
    const table = FLAGS.map((f) => f.name).filter((n) => !COMMAND_FLAGS.includes(n));
    assert.deepEqual([...table].sort(), [...expected].sort());
  });

  it("FLAG_DEFAULTS agrees with the parsed defaults", () => {
    const defaults = FLAG_DEFAULTS as unknown as Record<string, unknown>;
    for (const [name, key, value] of EXPECTED_DEFAULTS) {
      if (name === "feature-gates" || name === "kubeconfig-out") continue; // shaped by derive()
      assert.deepEqual(defaults[key], value, key);
    }
  });

  it("has no environment values when the environment is empty", () => {
    const c = defaultConfig();
    assert.equal(c.nodeName, undefined);
    assert.equal(c.namespace, undefined);
    assert.equal(c.podName, undefined);
    assert.equal(c.podNamespace, undefined);
    assert.deepEqual(c.explicitFlags, []);
    assert.deepEqual(c.explicitFeatureGates, []);
    assert.equal(c.csiSocketPath, "/run/csi/socket");
  });
});

describe("the flag table", () => {
  it("gives every flag a help line, a group and at least one command", () => {
    for (const f of FLAGS) {
      assert.ok(f.help.length > 10, `--${f.name} has help`);
      assert.ok(f.commands.length > 0, `--${f.name} has commands`);
      assert.ok(!f.help.includes("\n"), `--${f.name} help is one line`);
    }
  });

  it("has unique names and config keys", () => {
    assert.equal(new Set(FLAGS.map((f) => f.name)).size, FLAGS.length);
    assert.equal(new Set(FLAGS.map((f) => f.key)).size, FLAGS.length);
  });

  it("names durations' properties with an Ms suffix", () => {
    for (const f of FLAGS.filter((f) => f.kind === "duration")) {
      assert.match(f.key, /Ms$/, `--${f.name}`);
    }
  });

  it("explains every no-op flag", () => {
    for (const f of FLAGS.filter((f) => f.status === "no-op")) {
      assert.ok(f.noEffect, `--${f.name}`);
    }
  });

  it("tags probe's flags for probe and dev's for dev", () => {
    const probe = FLAGS.filter((f) => f.commands.includes("probe")).map((f) => f.name);
    assert.deepEqual(probe.sort(), [
      "connect-timeout",
      "csi-address",
      "help",
      "output",
      "timeout",
      "v",
      "version",
    ]);
    for (const name of ["data-dir", "port", "kubeconfig-out"]) {
      assert.deepEqual(flagByName(name)?.commands, ["dev"]);
    }
    for (const f of FLAGS.filter((f) => f.commands.includes("run"))) {
      assert.ok(f.commands.includes("dev"), `dev accepts every run flag (--${f.name})`);
    }
  });

  it("lists the feature gates of reference 1.3 with their defaults", () => {
    assert.deepEqual(
      Object.fromEntries(Object.entries(FEATURE_GATES).map(([k, g]) => [k, [g.stage, g.default]])),
      {
        Topology: ["GA", true],
        CrossNamespaceVolumeDataSource: ["ALPHA", false],
        VolumeAttributesClass: ["GA", true],
        ReleaseLeaderElectionOnExit: ["ALPHA", true],
      },
    );
  });
});

describe("parseGoBool()", () => {
  it("accepts strconv.ParseBool's words", () => {
    for (const t of ["1", "t", "T", "TRUE", "true", "True"])
      assert.deepEqual(parseGoBool(t), { ok: true, value: true });
    for (const f of ["0", "f", "F", "FALSE", "false", "False"])
      assert.deepEqual(parseGoBool(f), { ok: true, value: false });
  });

  it("rejects anything else", () => {
    for (const bad of ["yes", "no", "on", "tRUE", "", " true"])
      assert.equal(parseGoBool(bad).ok, false, bad);
  });
});

describe("parseGoInt() and parseGoUint()", () => {
  const ints: [string, number][] = [
    ["0", 0],
    ["10", 10],
    ["-1", -1],
    ["+5", 5],
    ["0x10", 16],
    ["0X1f", 31],
    ["010", 8],
    ["0o17", 15],
    ["0b101", 5],
    ["1_000", 1000],
    ["0x_ff", 255],
  ];
  for (const [text, value] of ints) {
    it(`parses ${text} as ${value}`, () => {
      assert.deepEqual(parseGoInt(text), { ok: true, value });
    });
  }

  for (const bad of [
    "",
    "abc",
    "1.5",
    "1e3",
    "08",
    "0x",
    "1__0",
    "_1",
    "1_",
    "- 1",
    "9007199254740993",
  ]) {
    it(`rejects ${JSON.stringify(bad)}`, () => {
      assert.equal(parseGoInt(bad).ok, false);
    });
  }

  it("rejects signs for unsigned values", () => {
    assert.equal(parseGoUint("-1").ok, false);
    assert.equal(parseGoUint("+1").ok, false);
    assert.deepEqual(parseGoUint("100"), { ok: true, value: 100 });
  });
});

describe("parseGoFloat()", () => {
  it("parses decimal numbers", () => {
    assert.deepEqual(parseGoFloat("5"), { ok: true, value: 5 });
    assert.deepEqual(parseGoFloat("0.5"), { ok: true, value: 0.5 });
    assert.deepEqual(parseGoFloat("-1"), { ok: true, value: -1 });
    assert.deepEqual(parseGoFloat("1e3"), { ok: true, value: 1000 });
    assert.deepEqual(parseGoFloat(".5"), { ok: true, value: 0.5 });
  });

  it("rejects non-numbers and infinities", () => {
    for (const bad of ["", "abc", "5qps", "1e999", "NaN", "Inf"])
      assert.equal(parseGoFloat(bad).ok, false, bad);
  });
});

describe("csiAddressToPath()", () => {
  const good: [string, string][] = [
    ["/csi/csi.sock", "/csi/csi.sock"],
    ["unix:///csi/csi.sock", "/csi/csi.sock"],
    ["unix:/csi/csi.sock", "/csi/csi.sock"],
    ["unix:csi.sock", "csi.sock"],
    ["./csi.sock", "./csi.sock"],
    ["../run/driver.sock", "../run/driver.sock"],
    ["csi.sock", "csi.sock"],
  ];
  for (const [address, path] of good) {
    it(`maps ${address} to ${path}`, () => {
      assert.deepEqual(csiAddressToPath(address), { ok: true, path });
    });
  }

  const bad: [string, RegExp][] = [
    ["", /empty/],
    ["tcp://10.0.0.1:10000", /not a unix socket/],
    ["dns:///driver:10000", /not a unix socket/],
    ["localhost:10000", /not a unix socket/],
    ["unix-abstract:csi", /not a unix socket/],
    ["unix://csi.sock", /absolute path/],
    ["unix://", /absolute path/],
    ["unix:", /empty/],
  ];
  for (const [address, error] of bad) {
    it(`rejects ${JSON.stringify(address)}`, () => {
      const r = csiAddressToPath(address);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.error, error);
    });
  }
});
