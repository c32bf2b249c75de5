import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { GIT_COMMIT, VERSION, versionLine } from "../../src/version.ts";

describe("versionLine()", () => {
  it("names the version, commit and runtime", () => {
    assert.equal(
      versionLine("bun 1.4.5"),
      `csi-provisioner v${VERSION} (commit ${GIT_COMMIT}, bun 1.4.5)`,
    );
  });

  it("has development defaults", () => {
    assert.equal(VERSION, "0.1.0-dev");
    assert.equal(GIT_COMMIT, "unknown");
  });

  it("keeps the constants on lines a build script can replace", () => {
    const source = readFileSync(new URL("../../src/version.ts", import.meta.url), "utf8");
    assert.match(source, /^export const VERSION: string = "[^"]*";$/m);
    assert.match(source, /^export const GIT_COMMIT: string = "[^"]*";$/m);
  });
});
