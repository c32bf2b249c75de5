import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { relative } from "node:path";
import process from "node:process";
import { afterEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Code } from "@connectrpc/connect";
import { type ProbeReport, runProbe } from "../../src/cli/probe.ts";
import { ControllerServiceCapability_RPC_Type as Cap } from "../../src/gen/csi/v1/csi_pb.js";
import { nullLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";
import {
  type FakeDriver,
  type FakeDriverOptions,
  fail,
  respond,
  startFakeDriver,
  tempSocketPath,
} from "../support/fake-driver.ts";

interface Captured {
  code: number;
  out: string;
  err: string;
}

async function probe(
  csiAddress: string,
  output: "text" | "json" = "text",
  extra: { connectTimeoutMs?: number } = {},
): Promise<Captured> {
  let out = "";
  let err = "";
  const code = await runProbe({
    config: { csiAddress, output, timeoutMs: 10_000, ...extra },
    deps: {
      clock: new FakeClock(),
      logger: nullLogger,
      write: (t) => {
        out += t;
      },
      writeError: (t) => {
        err += t;
      },
    },
  });
  return { code, out, err };
}

const SERVABLE: FakeDriverOptions = {
  name: "hostpath.csi.k8s.io",
  vendorVersion: "v1.17.0",
  manifest: { z: "last", commit: "abc123" },
  topology: { "topology.hostpath.csi/node": "node-1" },
  controllerCapabilities: [
    Cap.CREATE_DELETE_VOLUME,
    Cap.CLONE_VOLUME,
    Cap.GET_CAPACITY,
    Cap.SINGLE_NODE_MULTI_WRITER,
  ],
};

describe("runProbe()", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function fake(options?: FakeDriverOptions): Promise<FakeDriver> {
    const driver = await startFakeDriver(options);
    cleanups.push(() => driver.close());
    return driver;
  }

  describe("--csi-address forms", () => {
    const forms: [string, (path: string) => string][] = [
      ["/path", (p) => p],
      ["unix:///path", (p) => `unix://${p}`],
      ["unix:/path", (p) => `unix:${p}`],
      ["a relative path", (p) => relative(process.cwd(), p)],
      ["unix:relative/path", (p) => `unix:${relative(process.cwd(), p)}`],
    ];
    for (const [form, make] of forms) {
      it(`reaches the driver through ${form}`, async () => {
        const f = await fake();
        const address = make(f.socketPath);
        const { code, out } = await probe(address, "json");
        assert.equal(code, 0);
        const report = JSON.parse(out) as ProbeReport;
        assert.equal(report.address, address);
        assert.equal(report.driver?.name, "fake.csi.k8s.io");
        assert.equal(f.callsTo("probe").length, 1);
      });
    }

    it("exits 2 on an address that is not a unix socket", async () => {
      const { code, out, err } = await probe("tcp://10.0.0.1:9000");
      assert.equal(code, 2);
      assert.equal(out, "");
      assert.match(err, /^Invalid --csi-address "tcp:\/\/10\.0\.0\.1:9000": not a unix socket/);
    });
  });

  describe("text output", () => {
    it("prints the driver, its capabilities and a positive verdict, and exits 0", async () => {
      const f = await fake(SERVABLE);
      const { code, out, err } = await probe(f.socketPath);
      assert.equal(code, 0);
      assert.equal(err, "");
      assert.equal(
        out,
        [
          `CSI driver at ${f.socketPath}`,
          "",
          "  Name:            hostpath.csi.k8s.io",
          "  Vendor version:  v1.17.0",
          "  Manifest:        commit=abc123",
          "                   z=last",
          "",
          "Plugin capabilities:",
          "  CONTROLLER_SERVICE",
          "  VOLUME_ACCESSIBILITY_CONSTRAINTS",
          "",
          "Controller capabilities:",
          "  CREATE_DELETE_VOLUME",
          "  GET_CAPACITY",
          "  CLONE_VOLUME",
          "  SINGLE_NODE_MULTI_WRITER",
          "",
          "Verdict: this sidecar can serve hostpath.csi.k8s.io",
          "",
          "Features:",
          "  Topology                    yes  VOLUME_ACCESSIBILITY_CONSTRAINTS  CreateVolume gets accessibility requirements from node topology and allowedTopologies; PVs get node affinity",
          "  Cloning                     yes  CLONE_VOLUME                      claims with a PersistentVolumeClaim data source are provisioned as clones",
          "  Snapshot restore            no   CREATE_DELETE_SNAPSHOT            claims with a VolumeSnapshot data source are rejected",
          "  Capacity tracking           yes  GET_CAPACITY                      --enable-capacity publishes CSIStorageCapacity objects from GetCapacity",
          "  Single-node multi-writer    yes  SINGLE_NODE_MULTI_WRITER          ReadWriteOnce maps to SINGLE_NODE_MULTI_WRITER and ReadWriteOncePod to SINGLE_NODE_SINGLE_WRITER",
          "  Attachment check on delete  no   PUBLISH_UNPUBLISH_VOLUME          DeleteVolume does not check VolumeAttachments (the driver does not attach volumes)",
          "  VolumeAttributesClass       no   MODIFY_VOLUME                     claims with a VolumeAttributesClass are rejected",
          "",
        ].join("\n"),
      );
    });

    it("names what is missing and exits 1 for a driver it cannot serve", async () => {
      const f = await fake({ controllerCapabilities: [Cap.LIST_VOLUMES] });
      const { code, out } = await probe(f.socketPath);
      assert.equal(code, 1);
      assert.match(out, /\nVerdict: this sidecar cannot serve fake\.csi\.k8s\.io\n/);
      assert.match(
        out,
        /\n {2}- the driver does not advertise the CREATE_DELETE_VOLUME controller capability: it cannot create or delete volumes\n/,
      );
      assert.doesNotMatch(out, /CONTROLLER_SERVICE plugin capability/);
      assert.match(out, /Controller capabilities:\n {2}LIST_VOLUMES\n/);
    });

    it("prints the failed handshake step to standard error and exits 1", async () => {
      const f = await fake();
      f.on("probe", fail(Code.Unimplemented, "no probe here"));
      const { code, out, err } = await probe(f.socketPath);
      assert.equal(code, 1);
      assert.equal(out, "");
      assert.equal(
        err,
        [
          `CSI driver at ${f.socketPath}`,
          "",
          "Verdict: cannot serve this driver",
          `  Probe of CSI driver at ${f.socketPath} failed: Unimplemented: no probe here`,
          "",
        ].join("\n"),
      );
    });

    it("reports a socket that never appears", async () => {
      const socket = tempSocketPath();
      cleanups.push(() => socket.cleanup());
      const { code, err } = await probe(socket.path, "text", { connectTimeoutMs: 0 });
      assert.equal(code, 1);
      assert.ok(
        err.includes(
          `Failed to connect to CSI driver at ${socket.path} within 0ms: nothing exists at that path (is the driver running and listening there?)`,
        ),
        err,
      );
    });

    for (const [kind, make] of [
      ["a regular file", (path: string) => writeFileSync(path, "")],
      ["a directory", (path: string) => mkdirSync(path)],
    ] as const) {
      it(`says the path is ${kind}, not a unix socket`, async () => {
        const socket = tempSocketPath();
        cleanups.push(() => socket.cleanup());
        make(socket.path);
        const { code, err } = await probe(socket.path, "text", { connectTimeoutMs: 0 });
        assert.equal(code, 1);
        assert.ok(err.includes(`within 0ms: the path is ${kind}, not a unix socket`), err);
      });
    }

    it("shows what the driver told before it turned out to serve no Controller service", async () => {
      const f = await fake(SERVABLE);
      f.on("controllerGetCapabilities", fail(Code.Unimplemented, "HTTP 404"));
      const { code, out, err } = await probe(f.socketPath);
      assert.equal(code, 1);
      assert.equal(err, "");
      assert.equal(
        out,
        [
          `CSI driver at ${f.socketPath}`,
          "",
          "  Name:            hostpath.csi.k8s.io",
          "  Vendor version:  v1.17.0",
          "  Manifest:        commit=abc123",
          "                   z=last",
          "",
          "Plugin capabilities:",
          "  CONTROLLER_SERVICE",
          "  VOLUME_ACCESSIBILITY_CONSTRAINTS",
          "",
          "Controller capabilities:",
          "  (unknown: ControllerGetCapabilities failed)",
          "",
          "Verdict: this sidecar cannot serve hostpath.csi.k8s.io",
          `  ControllerGetCapabilities of CSI driver at ${f.socketPath} failed: the driver serves no Controller service (Unimplemented: HTTP 404); provisioning needs its CreateVolume and DeleteVolume`,
          "",
        ].join("\n"),
      );
    });
  });

  describe("JSON output", () => {
    it("reports a servable driver with stable keys", async () => {
      const f = await fake(SERVABLE);
      const { code, out } = await probe(f.socketPath, "json");
      assert.equal(code, 0);
      const report = JSON.parse(out) as ProbeReport;
      assert.deepEqual(Object.keys(report), [
        "address",
        "socketPath",
        "driver",
        "pluginCapabilities",
        "controllerCapabilities",
        "servable",
        "problems",
        "features",
        "error",
      ]);
      assert.deepEqual(report.driver, {
        name: "hostpath.csi.k8s.io",
        vendorVersion: "v1.17.0",
        manifest: { commit: "abc123", z: "last" },
      });
      assert.deepEqual(report.pluginCapabilities, [
        "CONTROLLER_SERVICE",
        "VOLUME_ACCESSIBILITY_CONSTRAINTS",
      ]);
      assert.deepEqual(report.controllerCapabilities, [
        "CREATE_DELETE_VOLUME",
        "GET_CAPACITY",
        "CLONE_VOLUME",
        "SINGLE_NODE_MULTI_WRITER",
      ]);
      assert.equal(report.servable, true);
      assert.deepEqual(report.problems, []);
      assert.equal(report.error, null);
      assert.deepEqual(
        report.features.map((x) => [x.key, x.capability, x.enabled]),
        [
          ["topology", "VOLUME_ACCESSIBILITY_CONSTRAINTS", true],
          ["cloning", "CLONE_VOLUME", true],
          ["snapshots", "CREATE_DELETE_SNAPSHOT", false],
          ["capacity", "GET_CAPACITY", true],
          ["singleNodeMultiWriter", "SINGLE_NODE_MULTI_WRITER", true],
          ["attachmentCheck", "PUBLISH_UNPUBLISH_VOLUME", false],
          ["modifyVolume", "MODIFY_VOLUME", false],
        ],
      );
      for (const feature of report.features) assert.ok(feature.explanation.length > 0);
    });

    it("reports a driver without CONTROLLER_SERVICE as not servable and exits 1", async () => {
      const f = await fake({ pluginCapabilities: [] });
      const { code, out } = await probe(f.socketPath, "json");
      assert.equal(code, 1);
      const report = JSON.parse(out) as ProbeReport;
      assert.equal(report.servable, false);
      assert.deepEqual(report.pluginCapabilities, []);
      assert.deepEqual(report.problems, [
        "the driver does not advertise the CONTROLLER_SERVICE plugin capability: it has no Controller service to create volumes with",
      ]);
      assert.equal(report.error, null);
    });

    it("reports a failed handshake in the error field on standard output", async () => {
      const f = await fake();
      f.on("getPluginInfo", respond({ name: "" }));
      const { code, out, err } = await probe(f.socketPath, "json");
      assert.equal(code, 1);
      assert.equal(err, "");
      const report = JSON.parse(out) as ProbeReport;
      assert.equal(report.driver, null);
      assert.equal(report.servable, false);
      assert.equal(
        report.error,
        `GetPluginInfo of CSI driver at ${f.socketPath} failed: the driver name is empty`,
      );
    });

    it("keeps the name and plugin capabilities of a driver without a Controller service", async () => {
      const f = await fake(SERVABLE);
      f.on("controllerGetCapabilities", fail(Code.Unimplemented, "HTTP 404"));
      const { code, out } = await probe(f.socketPath, "json");
      assert.equal(code, 1);
      const report = JSON.parse(out) as ProbeReport;
      assert.equal(report.driver?.name, "hostpath.csi.k8s.io");
      assert.deepEqual(report.pluginCapabilities, [
        "CONTROLLER_SERVICE",
        "VOLUME_ACCESSIBILITY_CONSTRAINTS",
      ]);
      assert.deepEqual(report.controllerCapabilities, []);
      assert.equal(report.servable, false);
      assert.match(report.error ?? "", /the driver serves no Controller service/);
    });
  });
});

describe("csi-provisioner probe --connect-timeout", () => {
  it("bounds the wait for a socket that does not exist", async () => {
    const socket = tempSocketPath();
    try {
      const bun = fileURLToPath(new URL("../../node_modules/.bin/bun", import.meta.url));
      const main = fileURLToPath(new URL("../../src/main.ts", import.meta.url));
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = execFile(
          bun,
          [main, "probe", `--csi-address=${socket.path}`, "--connect-timeout=1s", "--timeout=2s"],
          { timeout: 60_000 },
          (_err, _stdout, stderr) => resolve({ code: child.exitCode, stderr }),
        );
      });
      assert.equal(result.code, 1);
      assert.ok(
        result.stderr.includes(
          `Failed to connect to CSI driver at ${socket.path} within 1s: nothing exists at that path`,
        ),
        result.stderr,
      );
    } finally {
      socket.cleanup();
    }
  });
});
