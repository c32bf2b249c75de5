import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type ParseResult, parseArgs } from "../../src/config/parse.ts";
import type { CommandName, Config } from "../../src/config/schema.ts";

type Env = Record<string, string | undefined>;

function ok(argv: string[], env: Env = {}, command: CommandName = "run"): Config {
  const r = parseArgs(argv, env);
  if (!r.ok) assert.fail(`${JSON.stringify(argv)} failed: ${r.error}`);
  assert.equal(r.command, command);
  assert.ok(r.command === command && "config" in r);
  return r.config;
}

function warnings(argv: string[], env: Env = {}): readonly string[] {
  const r = parseArgs(argv, env);
  assert.ok(r.ok, JSON.stringify(r));
  return r.warnings;
}

function error(argv: string[], env: Env = {}): string {
  const r: ParseResult = parseArgs(argv, env);
  assert.equal(r.ok, false, `${JSON.stringify(argv)} should fail`);
  if (r.ok) throw new Error("unreachable");
  assert.ok(!r.error.includes("\n"), "the error is one line");
  return r.error;
}

describe("parseArgs() syntax", () => {
  for (const argv of [
    ["--timeout=150s"],
    ["--timeout", "150s"],
    ["-timeout=150s"],
    ["-timeout", "150s"],
  ]) {
    it(`reads ${argv.join(" ")}`, () => {
      assert.equal(ok(argv).timeoutMs, 150_000);
    });
  }

  for (const argv of [["-v=5"], ["--v=5"], ["-v", "5"], ["--v", "5"], ["-v5"]]) {
    it(`reads the verbosity from ${argv.join(" ")}`, () => {
      assert.equal(ok(argv).verbosity, 5);
    });
  }

  it("reads a boolean flag without a value as true", () => {
    assert.equal(ok(["--leader-election"]).leaderElection, true);
    assert.equal(ok(["-leader-election"]).leaderElection, true);
  });

  it("reads --flag=true|false with Go's boolean words", () => {
    assert.equal(ok(["--leader-election=true"]).leaderElection, true);
    assert.equal(ok(["--leader-election=1"]).leaderElection, true);
    assert.equal(ok(["--immediate-topology=false"]).immediateTopology, false);
    assert.equal(ok(["--immediate-topology=F"]).immediateTopology, false);
  });

  it("never lets a boolean take the next argument", () => {
    const c = ok(["--leader-election", "--timeout=5s"]);
    assert.equal(c.leaderElection, true);
    assert.equal(c.timeoutMs, 5_000);
    assert.equal(ok(["--leader-election", "dev"], {}, "dev").leaderElection, true);
  });

  it("refuses '--flag false', which upstream would read as true", () => {
    assert.match(
      error(["--leader-election", "false"]),
      /--leader-election is a boolean.*--leader-election=false/,
    );
  });

  it("accepts '--flag true' with a warning", () => {
    const w = warnings(["--leader-election", "true"]);
    assert.ok(w.some((line) => line.includes("--leader-election=true")));
    assert.equal(ok(["--leader-election", "true"]).leaderElection, true);
  });

  it("lets the last of repeated scalar flags win", () => {
    assert.equal(ok(["--timeout=1s", "--timeout=2s"]).timeoutMs, 2_000);
    assert.equal(ok(["-v=1", "--v=3"]).verbosity, 3);
  });

  it("merges repeated --leader-election-labels, later keys winning", () => {
    const c = ok(["--leader-election-labels=a:1,b:2", "--leader-election-labels=b:3,c:4"]);
    assert.deepEqual(c.leaderElectionLabels, { a: "1", b: "3", c: "4" });
  });

  it("merges repeated --feature-gates, later values winning", () => {
    const c = ok([
      "--feature-gates=Topology=false",
      "--feature-gates=Topology=true,ReleaseLeaderElectionOnExit=true",
    ]);
    assert.equal(c.featureGates.Topology, true);
    assert.equal(c.featureGates.ReleaseLeaderElectionOnExit, true);
    assert.deepEqual(c.explicitFeatureGates, ["Topology", "ReleaseLeaderElectionOnExit"]);
  });

  it("merges repeated --vmodule", () => {
    const c = ok(["--vmodule=controller*=4", "--vmodule=csi=5,"]);
    assert.deepEqual(c.vmodule, [
      { pattern: "controller*", verbosity: 4 },
      { pattern: "csi", verbosity: 5 },
    ]);
  });

  it("takes a value that starts with a single dash", () => {
    assert.equal(ok(["--volume-name-uuid-length", "-1"]).volumeNameUuidLength, -1);
    assert.equal(ok(["--capacity-ownerref-level", "-1"]).capacityOwnerrefLevel, -1);
  });

  it("takes an empty value after =", () => {
    assert.equal(ok(["--kubeconfig="]).kubeconfig, "");
  });

  it("ends flags at --", () => {
    assert.equal(ok(["--timeout=1s", "--", "probe"], {}, "probe").timeoutMs, 1_000);
    assert.match(error(["--", "--timeout=1s"]), /Unknown command "--timeout=1s"/);
  });

  it("records the flags given, in first-seen order", () => {
    const c = ok(["--timeout=1s", "-v=2", "--timeout=2s", "--leader-election"]);
    assert.deepEqual(c.explicitFlags, ["timeout", "v", "leader-election"]);
  });
});

describe("parseArgs() commands", () => {
  it("runs by default and with 'run'", () => {
    ok([]);
    ok(["run", "--timeout=1s"]);
    ok(["--timeout=1s", "run"]);
  });

  it("selects probe and dev", () => {
    const p = ok(["probe", "--csi-address=./csi.sock", "--output=json"], {}, "probe");
    assert.equal(p.output, "json");
    assert.equal(p.csiSocketPath, "./csi.sock");
    const d = ok(["dev", "--data-dir=/tmp/x/", "--port=8443"], {}, "dev");
    assert.equal(d.dataDir, "/tmp/x/");
    assert.equal(d.port, 8443);
    assert.equal(d.kubeconfigOut, "/tmp/x/kubeconfig");
    assert.equal(ok(["dev", "--kubeconfig-out=/tmp/kc"], {}, "dev").kubeconfigOut, "/tmp/kc");
  });

  it("accepts every run flag in dev", () => {
    const c = ok(
      ["dev", "--leader-election", "--worker-threads=3", "--csi-address=/x.sock"],
      {},
      "dev",
    );
    assert.equal(c.workerThreads, 3);
    assert.ok(c.explicitFlags.includes("csi-address"));
  });

  it("treats --version and 'version' as the version command", () => {
    for (const argv of [
      ["--version"],
      ["version"],
      ["-version"],
      ["--csi-address=/x", "--version"],
    ]) {
      const r = parseArgs(argv, {});
      assert.ok(r.ok && r.command === "version", argv.join(" "));
    }
    ok(["--version=false"]);
  });

  it("reports flag errors before --version, as upstream does", () => {
    assert.match(error(["--version", "--bogus"]), /Unknown flag --bogus/);
  });

  it("treats --help, -h, -help and 'help' as help", () => {
    for (const argv of [["--help"], ["-h"], ["-help"], ["help"], ["--bogus", "--help"]]) {
      const r = parseArgs(argv, {});
      assert.ok(r.ok && r.command === "help", argv.join(" "));
      assert.equal(r.ok && r.command === "help" ? r.topic : "x", undefined);
    }
  });

  it("gives help for a command", () => {
    for (const argv of [
      ["help", "probe"],
      ["probe", "--help"],
      ["probe", "-h"],
    ]) {
      const r = parseArgs(argv, {});
      assert.ok(r.ok && r.command === "help" && r.topic === "probe", argv.join(" "));
    }
  });

  it("rejects unknown commands and extra words", () => {
    assert.match(
      error(["frobnicate"]),
      /Unknown command "frobnicate": expected run, probe, dev, orphans, version or help/,
    );
    assert.match(error(["probe", "extra"]), /Unexpected argument "extra"/);
    assert.match(error(["help", "frobnicate"]), /No help for "frobnicate"/);
  });

  it("rejects flags of another command", () => {
    assert.match(
      error(["probe", "--leader-election"]),
      /Flag --leader-election is not accepted by the probe command/,
    );
    assert.match(
      error(["--output=json"]),
      /Flag --output is not accepted by the run command \(it belongs to the probe and orphans commands\)/,
    );
    assert.match(error(["--data-dir=/x"]), /belongs to the dev command/);
  });
});

describe("parseArgs() bad flags", () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /^Unknown flag --bogus: see --help/],
    [["--bogus=1"], /^Unknown flag --bogus: see --help/],
    [["--csi-adress=/x"], /^Unknown flag --csi-adress: did you mean --csi-address\?/],
    [["--leader-elction"], /did you mean --leader-election\?/],
    [["-x"], /^Unknown flag -x/],
    [["---timeout=1s"], /^Bad flag syntax/],
    [["--=1"], /^Bad flag syntax/],
    [["--timeout"], /^Flag --timeout needs a value: write --timeout=<duration>/],
    [["--kubeconfig", "--v=5"], /^Flag --kubeconfig needs a value/],
    [["-v"], /^Flag -v needs a value/],
    [["-hv"], /^Bad flag syntax/],
    [["--timeout=abc"], /^Invalid value "abc" for --timeout: not a duration/],
    [["--timeout=10"], /^Invalid value "10" for --timeout: missing unit/],
    [["--timeout=0s"], /^Invalid value "0s" for --timeout: the timeout must be greater than zero/],
    [["--retry-interval-start=0"], /retry interval must be greater than zero/],
    [["--snapshot-orphan-sweep-interval=-1s"], /must not be negative \(0 disables the sweep\)/],
    [["--leader-election=yes"], /^Invalid value "yes" for --leader-election: not a boolean/],
    [["--kube-api-burst=ten"], /^Invalid value "ten" for --kube-api-burst: not an integer/],
    [["--kube-api-qps=fast"], /^Invalid value "fast" for --kube-api-qps: not a number/],
    [
      ["--worker-threads=-1"],
      /^Invalid value "-1" for --worker-threads: not a non-negative integer/,
    ],
    [["--worker-threads=0"], /^Invalid value "0" for --worker-threads: must be at least 1/],
    [["--capacity-threads=-2"], /for --capacity-threads: not a non-negative integer/],
    [
      ["--volume-name-uuid-length=-2"],
      /for --volume-name-uuid-length: must be -1 \(whole UID\) or between 1 and 32/,
    ],
    [["--volume-name-uuid-length=0"], /0 would give every volume the same name/],
    [["--volume-name-uuid-length=33"], /between 1 and 32/],
    [["--volume-name-prefix="], /for --volume-name-prefix: must not be empty/],
    [
      ["--capacity-ownerref-level=-2"],
      /for --capacity-ownerref-level: must be -1 \(no owner\) or more/,
    ],
    [
      ["--logging-format=yaml"],
      /^Invalid value "yaml" for --logging-format: must be one of "text", "json"/,
    ],
    [["-v=-1"], /^Invalid value "-1" for -v: not a verbosity level/],
    [["--vmodule=x"], /for --vmodule: "x" does not have the pattern=N format/],
    [["--vmodule=x=high"], /for --vmodule: "x=high" has an invalid verbosity/],
    [["--log-json-info-buffer-size=lots"], /for --log-json-info-buffer-size: not a size/],
    [
      ["--leader-election-labels=a"],
      /for --leader-election-labels: malformed item "a" \(expected key:value\)/,
    ],
    [["--leader-election-labels="], /malformed item ""/],
    [["--leader-election-labels=a:b:c"], /malformed item "a:b:c"/],
    [["--leader-election-labels=-bad:v"], /label key "-bad" is not a valid label name/],
    [["--leader-election-labels=k:bad value"], /label value "bad value" is not valid/],
    [
      ["--feature-gates=Foo=true"],
      /for --feature-gates: unrecognized feature gate "Foo" \(known: AllAlpha, AllBeta, Topology/,
    ],
    [["--feature-gates=topology=true"], /unrecognized feature gate "topology"/],
    [["--feature-gates=Topology"], /malformed pair "Topology" \(expected Name=true\|false\)/],
    [["--feature-gates=Topology=maybe"], /invalid value "maybe" for gate Topology/],
    [["--feature-gates=HonorPVReclaimPolicy=false"], /HonorPVReclaimPolicy cannot be turned off/],
    [
      ["--csi-address=tcp://10.0.0.1:10000"],
      /^Invalid value "tcp:\/\/10.0.0.1:10000" for --csi-address: not a unix socket/,
    ],
    [["--csi-address="], /^Invalid value "" for --csi-address: must not be empty/],
    [
      ["--http-endpoint=8080"],
      /^Invalid value "8080" for --http-endpoint: expected host:port, e.g. :8080/,
    ],
    [["--metrics-address=:99999"], /for --metrics-address: expected host:port/],
    [["--metrics-path=metrics"], /for --metrics-path: must start with \//],
    [["dev", "--port=70000"], /for --port: must be a port number/],
    [["dev", "--data-dir="], /for --data-dir: must not be empty/],
    [["probe", "--output=yaml"], /for --output: must be one of "text", "json"/],
  ];
  for (const [argv, expected] of cases) {
    it(`rejects ${argv.join(" ")}`, () => {
      assert.match(error(argv), expected);
    });
  }
});

describe("parseArgs() values", () => {
  it("reads Go integer syntax", () => {
    assert.equal(ok(["--kube-api-burst=0x20"]).kubeApiBurst, 32);
    assert.equal(ok(["--worker-threads=1_000"]).workerThreads, 1000);
  });

  it("reads fractional QPS", () => {
    assert.equal(ok(["--kube-api-qps=0.5"]).kubeApiQps, 0.5);
    assert.equal(ok(["--kube-api-capacity-qps=2.5"]).kubeApiCapacityQps, 2.5);
  });

  it("reads label keys with prefixes and empty values", () => {
    const c = ok(["--leader-election-labels=example.com/owner:team-a,plain:"]);
    assert.deepEqual(c.leaderElectionLabels, { "example.com/owner": "team-a", plain: "" });
  });

  it("reads quantities for the info buffer sizes", () => {
    assert.equal(ok(["--log-json-info-buffer-size=2Ki"]).logJsonInfoBufferSize, "2Ki");
    assert.equal(ok(["--log-text-info-buffer-size=1M"]).logTextInfoBufferSize, "1M");
  });

  it("accepts addresses in host:port forms", () => {
    for (const addr of [":8080", "0.0.0.0:8080", "localhost:9808", "[::]:8080", "[::1]:22011"]) {
      assert.equal(ok([`--http-endpoint=${addr}`]).httpEndpoint, addr);
    }
  });
});

describe("parseArgs() feature gates", () => {
  it("keeps the defaults when the flag is absent", () => {
    const c = ok([]);
    assert.deepEqual(c.featureGates, {
      Topology: true,
      CrossNamespaceVolumeDataSource: false,
      VolumeAttributesClass: true,
      ReleaseLeaderElectionOnExit: true,
    });
  });

  it("remembers which gates were set explicitly", () => {
    assert.deepEqual(ok(["--feature-gates=VolumeAttributesClass=true"]).explicitFeatureGates, [
      "VolumeAttributesClass",
    ]);
    assert.deepEqual(ok(["--feature-gates=Topology=true"]).explicitFeatureGates, ["Topology"]);
    assert.deepEqual(ok([]).explicitFeatureGates, []);
  });

  it("turns off a GA gate", () => {
    const c = ok(["--feature-gates=Topology=false,VolumeAttributesClass=false"]);
    assert.equal(c.featureGates.Topology, false);
    assert.equal(c.featureGates.VolumeAttributesClass, false);
  });

  it("trims spaces and skips empty pairs, as component-base does", () => {
    const c = ok(["--feature-gates= Topology = False ,,CrossNamespaceVolumeDataSource=True"]);
    assert.equal(c.featureGates.Topology, false);
    assert.equal(c.featureGates.CrossNamespaceVolumeDataSource, true);
  });

  it("switches every alpha gate with AllAlpha, except gates named themselves", () => {
    const c = ok(["--feature-gates=AllAlpha=true,ReleaseLeaderElectionOnExit=false"]);
    assert.equal(c.featureGates.CrossNamespaceVolumeDataSource, true);
    assert.equal(c.featureGates.ReleaseLeaderElectionOnExit, false);
    assert.equal(c.featureGates.Topology, true);
    assert.deepEqual(c.explicitFeatureGates, ["ReleaseLeaderElectionOnExit"]);
  });

  it("warns when a GA gate is set, as upstream does", () => {
    assert.ok(
      warnings(["--feature-gates=Topology=true"]).includes(
        "Setting GA feature gate Topology=true. It will be removed in a future release.",
      ),
    );
    assert.ok(
      !warnings(["--feature-gates=CrossNamespaceVolumeDataSource=true"]).some((w) =>
        w.includes("GA"),
      ),
    );
  });

  it("accepts the removed HonorPVReclaimPolicy=true with a warning", () => {
    const w = warnings(["--feature-gates=Topology=true,HonorPVReclaimPolicy=true"]);
    assert.ok(
      w.some((line) =>
        /^Feature gate HonorPVReclaimPolicy=true is accepted and ignored/.test(line),
      ),
    );
    assert.deepEqual(ok(["--feature-gates=HonorPVReclaimPolicy=true"]).explicitFeatureGates, []);
  });
});

describe("parseArgs() contradictions", () => {
  const cases: [string[], Env, RegExp][] = [
    [
      ["--metrics-address=:8080", "--http-endpoint=:8081"],
      {},
      /^Only one of --metrics-address and --http-endpoint can be set/,
    ],
    [["--node-deployment"], {}, /^--node-deployment needs the NODE_NAME environment variable/],
    [["--node-deployment"], { NODE_NAME: "" }, /NODE_NAME/],
    [
      ["--enable-capacity"],
      { POD_NAME: "p" },
      /^--enable-capacity needs the NAMESPACE environment variable/,
    ],
    [
      ["--enable-capacity"],
      { NAMESPACE: "ns" },
      /^--enable-capacity with --capacity-ownerref-level=1 needs the POD_NAME environment variable/,
    ],
    [["--enable-capacity", "--capacity-ownerref-level=0"], { NAMESPACE: "ns" }, /POD_NAME/],
    [
      ["--enable-capacity", "--capacity-poll-interval=0"],
      { NAMESPACE: "ns", POD_NAME: "p" },
      /--capacity-poll-interval must be greater than zero/,
    ],
    [
      ["--retry-interval-start=10m", "--retry-interval-max=5m"],
      {},
      /^--retry-interval-start must not be greater than --retry-interval-max/,
    ],
    [
      ["--node-deployment", "--node-deployment-base-delay=2m"],
      { NODE_NAME: "n" },
      /--node-deployment-base-delay must not be greater than --node-deployment-max-delay/,
    ],
    [
      ["--leader-election", "--leader-election-renew-deadline=15s"],
      {},
      /lease-duration must be greater than --leader-election-renew-deadline/,
    ],
    [
      ["--leader-election", "--leader-election-retry-period=9s"],
      {},
      /renew-deadline must be greater than 1.2 x --leader-election-retry-period/,
    ],
    [["--leader-election", "--leader-election-retry-period=0"], {}, /must be greater than zero/],
  ];
  for (const [argv, env, expected] of cases) {
    it(`rejects ${argv.join(" ")} with env ${JSON.stringify(env)}`, () => {
      assert.match(error(argv, env), expected);
    });
  }

  it("accepts the same flags when the combination works", () => {
    ok(["--metrics-address=:8080"]);
    ok(["--node-deployment"], { NODE_NAME: "node-1" });
    ok(["--enable-capacity"], { NAMESPACE: "ns", POD_NAME: "pod" });
    ok(["--enable-capacity", "--capacity-ownerref-level=-1"], { NAMESPACE: "ns" });
    ok(["--retry-interval-start=5m", "--retry-interval-max=5m"]);
    ok(["--node-deployment-base-delay=2m"]);
    ok(["--leader-election-renew-deadline=15s"]);
    ok([
      "--leader-election",
      "--leader-election-lease-duration=60s",
      "--leader-election-renew-deadline=30s",
    ]);
  });

  it("warns that --metrics-address is deprecated", () => {
    assert.ok(
      warnings(["--metrics-address=:8080"]).includes(
        "--metrics-address is deprecated: use --http-endpoint",
      ),
    );
  });
});

describe("parseArgs() environment", () => {
  it("lets KUBECONFIG override --kubeconfig, with a warning when they differ", () => {
    const env = { KUBECONFIG: "/env/kubeconfig" };
    assert.equal(ok(["--kubeconfig=/flag/kubeconfig"], env).kubeconfig, "/env/kubeconfig");
    assert.equal(ok([], env).kubeconfig, "/env/kubeconfig");
    assert.ok(
      warnings(["--kubeconfig=/flag/kubeconfig"], env).some((w) => w.includes("KUBECONFIG")),
    );
    assert.deepEqual(warnings([], env), []);
  });

  it("ignores an empty KUBECONFIG", () => {
    assert.equal(
      ok(["--kubeconfig=/flag/kubeconfig"], { KUBECONFIG: "" }).kubeconfig,
      "/flag/kubeconfig",
    );
  });

  it("carries NODE_NAME, NAMESPACE, POD_NAME and POD_NAMESPACE", () => {
    const c = ok(["--node-deployment"], {
      NODE_NAME: "n1",
      NAMESPACE: "kube-system",
      POD_NAME: "p1",
      POD_NAMESPACE: "pns",
      HOME: "/root",
    });
    assert.equal(c.nodeName, "n1");
    assert.equal(c.namespace, "kube-system");
    assert.equal(c.podName, "p1");
    assert.equal(c.podNamespace, "pns");
    assert.ok(!("HOME" in c) && !("env" in c));
  });

  it("ignores NODE_NAME without --node-deployment, as upstream (it would end the provisioner identity)", () => {
    // democratic-csi's default values set NODE_NAME on the controller sidecar.
    assert.equal(ok([], { NODE_NAME: "n1" }).nodeName, undefined);
    assert.equal(ok(["--node-deployment=false"], { NODE_NAME: "n1" }).nodeName, undefined);
  });
});

describe("parseArgs() legacy flags of older upstream releases", () => {
  it("reads --enable-leader-election as --leader-election, with one warning", () => {
    for (const argv of [
      ["--enable-leader-election"],
      ["--enable-leader-election=true"],
      ["-enable-leader-election"],
      ["--enable-leader-election", "--enable-leader-election"],
    ]) {
      const r = parseArgs(argv, {});
      assert.ok(r.ok && r.command === "run", JSON.stringify(r));
      assert.equal(r.config.leaderElection, true);
      assert.deepEqual(r.warnings, [
        "--enable-leader-election is the old name of --leader-election: read as such",
      ]);
    }
    assert.equal(ok(["--enable-leader-election=false"]).leaderElection, false);
    assert.equal(ok(["--leader-election", "--enable-leader-election=false"]).leaderElection, false);
  });

  it("accepts --leader-election-type=leases with one warning and refuses any other type", () => {
    for (const argv of [["--leader-election-type=leases"], ["--leader-election-type", "leases"]]) {
      const r = parseArgs([...argv, "--enable-leader-election"], {});
      assert.ok(r.ok && r.command === "run", JSON.stringify(r));
      assert.equal(r.config.leaderElection, true);
      assert.equal(r.warnings.length, 2);
      assert.match(r.warnings[0]!, /^--leader-election-type=leases is accepted and ignored/);
    }
    assert.match(
      error(["--enable-leader-election", "--leader-election-type=endpoints"]),
      /^--leader-election-type=endpoints is not supported: leader election uses coordination.k8s.io Leases only/,
    );
    assert.match(error(["--leader-election-type=configmaps"]), /configmaps is not supported/);
    assert.match(error(["--leader-election-type"]), /^Flag --leader-election-type needs a value/);
  });

  it("ignores --provisioner with one warning: the driver names itself", () => {
    const r = parseArgs(["--provisioner=csi.example.com", "--timeout=30s"], {});
    assert.ok(r.ok && r.command === "run", JSON.stringify(r));
    assert.equal(r.config.timeoutMs, 30_000);
    assert.deepEqual(r.warnings, [
      "--provisioner=csi.example.com is ignored: the provisioner name is the driver's own, from GetPluginInfo",
    ]);
    assert.equal(ok(["--provisioner", "x", "--timeout=30s"]).timeoutMs, 30_000);
  });

  it("takes the old csi-driver-smb controller arguments", () => {
    const r = parseArgs(
      [
        "-v=2",
        "--csi-address=$(ADDRESS)",
        "--leader-election",
        "--leader-election-namespace=kube-system",
        "--extra-create-metadata=true",
        "--provisioner=smb.csi.k8s.io",
        "--enable-leader-election",
        "--leader-election-type=leases",
      ],
      {},
    );
    assert.ok(r.ok && r.command === "run", JSON.stringify(r));
    assert.equal(r.warnings.length, 3);
  });
});

describe("parseArgs() --csi-address", () => {
  const cases: [string, string][] = [
    ["/csi/csi.sock", "/csi/csi.sock"],
    ["unix:///csi/csi.sock", "/csi/csi.sock"],
    ["unix:/csi/csi.sock", "/csi/csi.sock"],
    ["./csi.sock", "./csi.sock"],
  ];
  for (const [address, path] of cases) {
    it(`keeps ${address} and its path ${path}`, () => {
      const c = ok([`--csi-address=${address}`]);
      assert.equal(c.csiAddress, address);
      assert.equal(c.csiSocketPath, path);
    });
  }
});
