/**
 * The csi-provisioner args of published CSI driver deployments (test/fixtures/driver-args.json)
 * must parse unchanged: a drop-in replacement accepts what those manifests pass.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { resolveCommand } from "../../src/cli/main-args.ts";

type Fixture = {
  drivers: {
    name: string;
    repo: string;
    path: string;
    commit: string;
    args: string[];
    env: Record<string, string>;
    expect?: Record<string, unknown>;
  }[];
};

const fixture = JSON.parse(
  readFileSync(new URL("../fixtures/driver-args.json", import.meta.url), "utf8"),
) as Fixture;

/** The kubelet's $(VAR) expansion of container args: `$$` escapes, unknown names stay as written. */
function expand(arg: string, env: Record<string, string>): string {
  return arg.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (match, name: string | undefined) => {
    if (match === "$$") return "$";
    return name !== undefined && name in env ? env[name]! : match;
  });
}

describe("published driver manifests", () => {
  it("cover at least ten drivers, each with its source", () => {
    assert.ok(new Set(fixture.drivers.map((d) => d.repo)).size >= 10);
    for (const d of fixture.drivers) {
      assert.match(d.repo, /^[\w.-]+\/[\w.-]+$/, d.name);
      assert.ok(d.path.length > 0 && /^[0-9a-f]{40}$/.test(d.commit), d.name);
    }
  });

  for (const driver of fixture.drivers) {
    it(`parses the args of ${driver.name} (${driver.repo})`, () => {
      const argv = driver.args.map((a) => expand(a, driver.env));
      for (const a of argv) assert.ok(!a.includes("$("), `unexpanded ${a}`);
      const r = resolveCommand(argv, driver.env);
      if (r.kind === "error") assert.fail(`${driver.name}: ${r.message}`);
      assert.equal(r.kind, "run");
      if (r.kind !== "run") return;
      const config = r.config as unknown as Record<string, unknown>;
      for (const [key, value] of Object.entries(driver.expect ?? {})) {
        assert.deepEqual(config[key], value, `${driver.name}: ${key}`);
      }
    });
  }
});

describe("expand()", () => {
  it("expands like the kubelet", () => {
    assert.equal(
      expand("--csi-address=$(ADDRESS)", { ADDRESS: "/csi/csi.sock" }),
      "--csi-address=/csi/csi.sock",
    );
    assert.equal(expand("$(MISSING)", {}), "$(MISSING)");
    assert.equal(expand("$$(ADDRESS)", { ADDRESS: "x" }), "$(ADDRESS)");
  });
});
