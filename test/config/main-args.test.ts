import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  resolveCommand,
  unimplementedFlags,
  unimplementedWarnings,
} from "../../src/cli/main-args.ts";
import { parseArgs } from "../../src/config/parse.ts";
import type { Config } from "../../src/config/schema.ts";

function config(argv: string[], env: Record<string, string> = {}): Config {
  const r = parseArgs(argv, env);
  assert.ok(r.ok && "config" in r, JSON.stringify(r));
  return r.config;
}

describe("resolveCommand()", () => {
  it("returns run with its config and warnings", () => {
    const r = resolveCommand(
      ["--csi-address=/csi/csi.sock", "--metrics-address=:8080", "--automaxprocs"],
      {},
    );
    assert.equal(r.kind, "run");
    if (r.kind !== "run") return;
    assert.equal(r.config.csiSocketPath, "/csi/csi.sock");
    assert.equal(r.warnings[0], "--metrics-address is deprecated: use --http-endpoint");
    assert.equal(
      r.warnings[1],
      "Flags accepted without effect: --automaxprocs (JavaScript runtimes have no GOMAXPROCS)",
    );
  });

  it("returns probe and dev", () => {
    assert.equal(resolveCommand(["probe"], {}).kind, "probe");
    assert.equal(resolveCommand(["dev"], {}).kind, "dev");
  });

  it("returns help text", () => {
    const r = resolveCommand(["--help"], {});
    assert.equal(r.kind, "help");
    if (r.kind === "help") assert.match(r.text, /^csi-provisioner: /);
    const p = resolveCommand(["help", "dev"], {});
    assert.ok(p.kind === "help" && p.text.startsWith("Usage: csi-provisioner dev [flags]"));
  });

  it("returns version", () => {
    assert.deepEqual(resolveCommand(["--version"], {}), { kind: "version" });
  });

  it("returns a one-line error with exit code 2", () => {
    for (const argv of [
      ["--bogus"],
      ["--timeout=x"],
      ["--metrics-address=:1", "--http-endpoint=:2"],
      ["nope"],
    ]) {
      const r = resolveCommand(argv, {});
      assert.equal(r.kind, "error", argv.join(" "));
      if (r.kind !== "error") continue;
      assert.equal(r.exitCode, 2);
      assert.ok(r.message.length > 0 && !r.message.includes("\n"));
    }
  });

  it("names the flag in bad-value errors", () => {
    const r = resolveCommand(["--worker-threads=many"], {});
    assert.ok(r.kind === "error" && r.message.includes("--worker-threads"));
  });
});

describe("unimplementedWarnings()", () => {
  it("says nothing for an empty command line or implemented flags", () => {
    assert.deepEqual(unimplementedWarnings(config([])), []);
    assert.deepEqual(
      unimplementedWarnings(
        config(["--csi-address=/x.sock", "--timeout=1m", "-v=5", "--logging-format=json"]),
      ),
      [],
    );
  });

  it("says nothing for a planned flag set to its default", () => {
    assert.deepEqual(
      unimplementedWarnings(config(["--immediate-topology=true", "--worker-threads=100"])),
      [],
    );
  });

  it("names every no-op flag set to a non-default value, in one line", () => {
    const lines = unimplementedWarnings(
      config(["--automaxprocs", "--enable-pprof", "--worker-threads=10", "--timeout=1m"]),
    );
    assert.equal(lines.length, 1);
    assert.match(
      lines[0]!,
      /^Flags accepted without effect: --automaxprocs \(JavaScript runtimes have no GOMAXPROCS\), --enable-pprof \(there is no Go pprof profiler/,
    );
  });

  it("names no-op flags with their reason", () => {
    assert.deepEqual(unimplementedFlags(config(["--automaxprocs"])), [
      "--automaxprocs (JavaScript runtimes have no GOMAXPROCS)",
    ]);
  });

  it("names no feature gate: every gate's feature is built", () => {
    assert.deepEqual(
      unimplementedFlags(config(["--feature-gates=CrossNamespaceVolumeDataSource=true"])),
      [],
    );
    assert.deepEqual(unimplementedFlags(config(["--feature-gates=AllAlpha=true"])), []);
  });
});
