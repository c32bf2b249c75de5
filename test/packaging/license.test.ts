/**
 * The licence the package and the image declare is the one the repository ships, and README.md
 * points only at files inside the repository (or at absolute URLs).
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const read = (file: string): string => readFileSync(join(ROOT, file), "utf8");

describe("licence", () => {
  it("ships the Apache License 2.0 text in LICENSE", () => {
    assert.ok(existsSync(join(ROOT, "LICENSE")), "no LICENSE file at the repository root");
    const text = read("LICENSE");
    for (const line of [
      "Apache License",
      "Version 2.0, January 2004",
      "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
      "9. Accepting Warranty or Additional Liability.",
      "END OF TERMS AND CONDITIONS",
    ]) {
      assert.ok(text.includes(line), `LICENSE lacks "${line}"`);
    }
  });

  it("is the licence package.json and the image label declare, and the image carries it", () => {
    const pkg = JSON.parse(read("package.json")) as { license: string };
    assert.equal(pkg.license, "Apache-2.0");
    const containerfile = read("Containerfile");
    assert.match(containerfile, /org\.opencontainers\.image\.licenses="Apache-2\.0"/);
    assert.match(containerfile, /^COPY LICENSE \/LICENSE$/m, "the image carries LICENSE");
    assert.match(read(".containerignore"), /^!LICENSE$/m, ".containerignore sends LICENSE");
  });
});

describe("README.md references", () => {
  const readme = read("README.md");

  it("links to LICENSE", () => {
    assert.match(readme, /\]\(LICENSE\)/);
  });

  it("links only to files that exist inside the repository, or to absolute URLs", () => {
    const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] ?? "");
    assert.ok(targets.length > 0);
    const bad: string[] = [];
    for (const target of targets) {
      if (/^[a-z]+:/i.test(target) || target.startsWith("#")) continue;
      const file = resolve(ROOT, target.split("#")[0] ?? "");
      const inside = !relative(ROOT, file).startsWith("..");
      if (!inside || !existsSync(file)) bad.push(target);
    }
    assert.deepEqual(bad, [], "README.md links outside the repository or to missing files");
  });

  it("names no path outside the repository", () => {
    const outside = [...readme.matchAll(/`(\.\.\/[^`\s]*)`/g)].map((m) => m[1]);
    assert.deepEqual(outside, [], "README.md names paths outside the repository");
  });
});
