/**
 * The release artifacts as their users run them: scripts/build.sh builds this machine's
 * executable and the Node bundle into a temporary directory with a known version and commit,
 * and each artifact answers `--version`, `--help`, a flag error and `probe` against the fake CSI
 * driver. Building here (a few seconds) rather than reusing dist/ means a stale dist/ can never
 * pass or fail this test, and the stamped version can be asserted exactly. The temporary
 * directory has no node_modules above it, so the bundle also proves it is self-contained.
 *
 * The Deno executable is built and run too when DENORT_BIN names a local denort.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { resolveCommand } from "../../src/cli/main-args.ts";
import { type FakeDriver, startFakeDriver } from "../support/fake-driver.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SCRIPT = join(ROOT, "scripts/build.sh");
const NODE = join(ROOT, "node_modules/.bin/node");
const HOST_TARGET = process.arch === "arm64" ? "linux-arm64" : "linux-x64";
const FOREIGN_TARGET = HOST_TARGET === "linux-x64" ? "linux-arm64" : "linux-x64";
/** qemu-user and the other architecture's glibc (Debian: qemu-user, libc6-arm64-cross). */
const QEMU =
  FOREIGN_TARGET === "linux-arm64"
    ? { file: "qemu-aarch64", sysroot: "/usr/aarch64-linux-gnu" }
    : { file: "qemu-x86_64", sysroot: "/usr/x86_64-linux-gnu" };
const HAS_QEMU = existsSync(QEMU.sysroot) && commandExists(QEMU.file);
const STAMP = { VERSION: "9.8.7-packaging.1", GIT_COMMIT: "abc1234" };
const DRIVER_NAME = "artifacts.csi.example.com";
const DENORT_BIN = process.env.DENORT_BIN;
const BUILD_TIMEOUT_MS = 300_000;

interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion (at most `timeoutMs`) without a shell. */
function run(
  file: string,
  args: readonly string[],
  env?: Record<string, string>,
  timeoutMs = 60_000,
): Promise<Ran> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      [...args],
      {
        env: env ? { ...process.env, ...env } : process.env,
        timeout: timeoutMs,
        maxBuffer: 16 << 20,
      },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; killed?: boolean }) | null;
        if (e && typeof e.code !== "number")
          reject(new Error(`${file} ${args.join(" ")}: ${e.message}\n${stderr}`));
        else
          resolve({
            code: e ? (e.code as number) : 0,
            stdout: String(stdout),
            stderr: String(stderr),
          });
      },
    );
  });
}

function artifactName(target: string): string {
  const list = execFileSync("bash", [SCRIPT, "--list"], { encoding: "utf8" });
  const line = list.split("\n").find((l) => l.startsWith(`${target}\t`));
  assert.ok(line, `scripts/build.sh --list has no ${target}`);
  return (line.split("\t")[1] ?? "").replace(/^dist\//, "");
}

function devDependency(name: string): string {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    devDependencies: Record<string, string>;
  };
  return pkg.devDependencies[name] ?? "";
}

const expectedHelp = (() => {
  const r = resolveCommand(["--help"], {});
  assert.ok(r.kind === "help");
  return r.text.endsWith("\n") ? r.text : `${r.text}\n`;
})();

/** A run that could not complete (spawn failure, timeout) as a failed one. */
function failed(err: unknown): Ran {
  return { code: -1, stdout: "", stderr: err instanceof Error ? err.message : String(err) };
}

// Built once, at module load: Bun's test hooks cannot be given a longer timeout than a test's.
const dir = mkdtempSync(join(tmpdir(), "csi-provisioner-artifacts-"));
const mainTargets = [HOST_TARGET, "node", ...(DENORT_BIN ? ["deno"] : [])];
const mainBuild = await run(
  "bash",
  [SCRIPT, ...mainTargets],
  { ...STAMP, DIST_DIR: dir },
  BUILD_TIMEOUT_MS,
).catch(failed);
// Separately, so that a missing cross-compile runtime fails only the tests that need it.
const foreignBuild = HAS_QEMU
  ? await run(
      "bash",
      [SCRIPT, FOREIGN_TARGET],
      { ...STAMP, DIST_DIR: dir },
      BUILD_TIMEOUT_MS,
    ).catch(failed)
  : undefined;

function assertBuilt(build: Ran | undefined, targets: readonly string[]): void {
  assert.equal(build?.code, 0, `scripts/build.sh ${targets.join(" ")} failed:\n${build?.stderr}`);
}

describe("release artifacts", () => {
  let driver: FakeDriver | undefined;

  before(async () => {
    driver = await startFakeDriver({ name: DRIVER_NAME, vendorVersion: "3.2.1" });
  });

  after(async () => {
    await driver?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const nodeVersion = (): string =>
    execFileSync(NODE, ["-p", "process.versions.node"], { encoding: "utf8" }).trim();

  const variants: {
    readonly label: string;
    readonly command: () => [string, string[]];
    readonly runtime: () => string;
    readonly skip?: string | false;
    /** Only `--version` and `probe` (each run under emulation takes seconds). */
    readonly short?: boolean;
  }[] = [
    {
      label: `the compiled executable (${HOST_TARGET})`,
      command: () => {
        assertBuilt(mainBuild, mainTargets);
        return [join(dir, artifactName(HOST_TARGET)), []];
      },
      runtime: () => `bun ${devDependency("bun")}`,
    },
    {
      label: "the Node bundle on Node 24",
      command: () => {
        assertBuilt(mainBuild, mainTargets);
        return [NODE, [join(dir, artifactName("node"))]];
      },
      runtime: () => `node ${nodeVersion()}`,
    },
    {
      label: "the Deno executable",
      command: () => {
        assertBuilt(mainBuild, mainTargets);
        return [join(dir, artifactName(`deno-${HOST_TARGET}`)), []];
      },
      runtime: () => `deno ${devDependency("deno")}`,
      skip: DENORT_BIN ? false : "DENORT_BIN is not set, so deno compile cannot run here",
    },
    {
      label: `the compiled executable for ${FOREIGN_TARGET}, under ${QEMU.file}`,
      command: () => {
        assertBuilt(foreignBuild, [FOREIGN_TARGET]);
        return [QEMU.file, ["-L", QEMU.sysroot, join(dir, artifactName(FOREIGN_TARGET))]];
      },
      runtime: () => `bun ${devDependency("bun")}`,
      skip: HAS_QEMU ? false : `${QEMU.file} and ${QEMU.sysroot} are not installed`,
      short: true,
    },
  ];

  for (const v of variants) {
    describe(v.label, () => {
      const options = { skip: v.skip ?? false, timeout: 60_000 };
      // Under emulation each run takes seconds, and these two add nothing to the native runs.
      const slowOptions = {
        ...options,
        skip: v.skip || (v.short === true && "slow under emulation"),
      };
      const exec = (args: string[]): Promise<Ran> => {
        const [file, pre] = v.command();
        return run(file, [...pre, ...args]);
      };

      it("prints the version and commit embedded at build time", options, async () => {
        const r = await exec(["--version"]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(
          r.stdout,
          `csi-provisioner v${STAMP.VERSION} (commit ${STAMP.GIT_COMMIT}, ${v.runtime()})\n`,
        );
      });

      it("prints the same --help as the sources", slowOptions, async () => {
        const r = await exec(["--help"]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, expectedHelp);
      });

      it("exits 2 with one line for an unknown flag", slowOptions, async () => {
        const r = await exec(["--no-such-flag"]);
        assert.equal(r.code, 2);
        assert.match(r.stderr, /^Unknown flag --no-such-flag\b.*\n$/);
      });

      it("probes the fake CSI driver and reports that it can serve it", options, async () => {
        assert.ok(driver);
        const before = driver.callsTo("probe").length;
        const r = await exec(["probe", `--csi-address=${driver.socketPath}`, "--timeout=20s"]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`can serve ${DRIVER_NAME.replaceAll(".", "\\.")}`));
        assert.ok(driver.callsTo("probe").length > before, "the driver received a Probe");
        assert.ok(driver.callsTo("getPluginInfo").length > 0, "the driver received GetPluginInfo");
      });
    });
  }

  it("builds a Node bundle that imports only Node's built-in modules, behind a node shebang", () => {
    assertBuilt(mainBuild, mainTargets);
    const text = readFileSync(join(dir, artifactName("node")), "utf8");
    assert.equal(text.split("\n", 1)[0], "#!/usr/bin/env node");
    const specifiers = new Set<string>();
    // `import{a as b}from"node:fs"`, `import"x"`, `import("x")`, `require("x")` (minified).
    const patterns = [
      /(?:^|[;}\n])\s*import\s*(?:[\w$*{}\s,]+?\s*from\s*)?["']([^"']+)["']/g,
      /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
      /\brequire\(\s*["']([^"']+)["']\s*\)/g,
    ];
    for (const re of patterns) for (const m of text.matchAll(re)) specifiers.add(m[1] ?? "");
    assert.ok(specifiers.size > 0, "the bundle imports Node's modules");
    const external = [...specifiers].filter(
      (s) => !s.startsWith("node:") && !builtinModules.includes(s),
    );
    assert.deepEqual(external, []);
  });

  it("builds an executable that links nothing beyond glibc, as its distroless base provides", {
    skip: hasReadelf() ? false : "readelf is not installed",
  }, () => {
    assertBuilt(mainBuild, mainTargets);
    const out = execFileSync("readelf", ["-d", join(dir, artifactName(HOST_TARGET))], {
      encoding: "utf8",
    });
    const needed = [...out.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map(
      (m) => m[1] ?? "",
    );
    assert.ok(needed.length > 0, "dynamically linked");
    const glibc =
      /^(libc|libm|libdl|libpthread|librt)\.so\.\d+$|^ld-linux-(x86-64|aarch64)\.so\.\d+$/;
    assert.deepEqual(
      needed.filter((n) => !glibc.test(n)),
      [],
    );
  });
});

function hasReadelf(): boolean {
  return commandExists("readelf");
}

function commandExists(name: string): boolean {
  try {
    execFileSync(name, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
