import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { renderReadme } from "../scripts/update-readme.ts";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

describe("README.md", () => {
  it("carries the flag and feature-gate tables generated from the schema", () => {
    assert.equal(
      readme,
      renderReadme(readme),
      "README.md is stale: run `node_modules/.bin/bun scripts/update-readme.ts`",
    );
  });

  it("gives a newcomer the two commands: the main job and the tests", () => {
    assert.match(readme, /npm ci && npm start/);
    assert.match(readme, /npm ci && npm test/);
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    assert.match(pkg.scripts.start, /dev --demo/);
    assert.match(pkg.scripts.test, /scripts\/test\.sh/);
  });
});
