/**
 * The Containerfile's structure: a build stage from the official Bun image at the project's Bun
 * version that runs scripts/build.sh for the image's architecture, a distroless final stage
 * without a shell step, both starting images as build arguments (CI builds it from local bases:
 * test/e2e/image.test.ts), root by default as upstream's image with a non-root variant by build
 * argument, the binary as the exec-form ENTRYPOINT, the OCI labels, and — read from the script
 * itself (`scripts/build.sh --list`) — the artifact paths the image copies.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  readonly keyword: string;
  /** The rest of the instruction, continuation lines joined with a space. */
  readonly args: string;
  /** 1-based line of the keyword. */
  readonly line: number;
}

interface Stage {
  readonly image: string;
  readonly name: string | undefined;
  readonly platform: string | undefined;
  readonly instructions: Instruction[];
}

/** Instructions in order: comments dropped, `\` continuations joined (comment lines inside too). */
function parseInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending: { parts: string[]; line: number } | undefined;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trimEnd();
    const trimmed = line.trim();
    if (trimmed.startsWith("#") || (pending === undefined && trimmed === "")) return;
    const continues = line.endsWith("\\");
    const body = continues ? line.slice(0, -1).trim() : trimmed;
    if (pending === undefined) pending = { parts: [], line: i + 1 };
    pending.parts.push(body);
    if (continues) return;
    const joined = pending.parts.filter((p) => p !== "").join(" ");
    const m = /^(\S+)\s*(.*)$/.exec(joined);
    assert.ok(m, `line ${pending.line}: cannot parse ${joined}`);
    out.push({ keyword: (m[1] ?? "").toUpperCase(), args: m[2] ?? "", line: pending.line });
    pending = undefined;
  });
  assert.equal(pending, undefined, "the file ends inside a continued line");
  return out;
}

/**
 * `${NAME}` and `$NAME` replaced from `args`, repeatedly (an ARG's default may name another
 * ARG); unknown names are left as written.
 */
function expand(value: string, args: Record<string, string>): string {
  for (let i = 0; i < 10; i++) {
    const next = value.replace(
      /\$\{(\w+)\}|\$(\w+)/g,
      (whole, a?: string, b?: string) => args[a ?? b ?? ""] ?? whole,
    );
    if (next === value) return value;
    value = next;
  }
  return value;
}

/** `NAME=default` or `NAME` of an ARG instruction. */
function argOf(i: Instruction): [string, string] {
  const m = /^(\w+)(?:=(.*))?$/.exec(i.args);
  assert.ok(m, `line ${i.line}: ARG ${i.args}`);
  return [m[1] ?? "", unquote(m[2] ?? "")];
}

function unquote(s: string): string {
  return /^"(.*)"$/.test(s) ? s.slice(1, -1) : s;
}

function parse(text: string): { globalArgs: Record<string, string>; stages: Stage[] } {
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const i of parseInstructions(text)) {
    if (i.keyword === "FROM") {
      const m = /^(?:--platform=(\S+)\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(i.args);
      assert.ok(m, `line ${i.line}: FROM ${i.args}`);
      stages.push({ platform: m[1], image: m[2] ?? "", name: m[3], instructions: [] });
    } else if (stages.length === 0) {
      assert.equal(i.keyword, "ARG", `line ${i.line}: only ARG may come before the first FROM`);
      const [k, v] = argOf(i);
      globalArgs[k] = v;
    } else {
      stages[stages.length - 1]?.instructions.push(i);
    }
  }
  return { globalArgs, stages };
}

/** KEY="value" pairs of a LABEL instruction. */
function labels(i: Instruction): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of i.args.matchAll(/([\w.-]+)=("(?:[^"\\]|\\.)*"|\S+)/g))
    out[m[1] ?? ""] = unquote(m[2] ?? "");
  return out;
}

/** The artifacts as scripts/build.sh names them: target -> path relative to the repository. */
function scriptArtifacts(): Map<string, string> {
  const out = execFileSync("bash", [join(ROOT, "scripts/build.sh"), "--list"], {
    encoding: "utf8",
  });
  const map = new Map<string, string>();
  for (const line of out.trim().split("\n")) {
    const [target, path] = line.split("\t");
    map.set(target ?? "", path ?? "");
  }
  return map;
}

/**
 * Whether a path of the build context survives `.containerignore` (Docker's semantics: patterns
 * match the path or one of its parents, the last matching pattern wins, `!` re-includes).
 */
function sentToBuild(path: string, ignore: string): boolean {
  let included = true;
  const parts = path.split("/");
  for (const raw of ignore.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const negate = line.startsWith("!");
    const pattern = (negate ? line.slice(1) : line).replace(/^\/+|\/+$/g, "");
    const re = new RegExp(
      `^${pattern
        .split("")
        .map((c) =>
          c === "*" ? "[^/]*" : c === "?" ? "[^/]" : c.replace(/[.+^${}()|[\]\\]/g, "\\$&"),
        )
        .join("")}$`,
    );
    const matches = parts.some((_, n) => re.test(parts.slice(0, n + 1).join("/")));
    if (matches) included = negate;
  }
  return included;
}

/**
 * Every repository file src/main.ts reaches through relative imports (static, dynamic and
 * re-exports; `.js` specifiers of generated code resolve to `.ts`), relative to the root.
 */
function entryPointFiles(): string[] {
  const seen = new Set<string>();
  const queue = [join(ROOT, "src/main.ts")];
  const specifiers = [
    /(?:import|export)\s[^"';]*?from\s*["'](\.{1,2}\/[^"']+)["']/g,
    /import\s*\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g,
    /import\s*["'](\.{1,2}\/[^"']+)["']/g,
  ];
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    for (const re of specifiers) {
      for (const m of text.matchAll(re)) {
        let target = resolve(dirname(file), m[1] ?? "");
        if (!existsSync(target) && target.endsWith(".js")) target = `${target.slice(0, -3)}.ts`;
        // Examples in doc comments name files that do not exist; the bundler checks real imports.
        if (existsSync(target)) queue.push(target);
      }
    }
  }
  return [...seen].map((f) => relative(ROOT, f)).sort();
}

const containerfile = readFileSync(join(ROOT, "Containerfile"), "utf8");
const { globalArgs, stages } = parse(containerfile);
const finalStage = stages[stages.length - 1] as Stage;
const buildStage = stages.find((s) => s.name === "build");

/** A build-argument reference as written in the Containerfile: `${NAME}`. */
const argRef = (name: string): string => `\${${name}}`;

function stageArgs(stage: Stage): Record<string, string> {
  const out: Record<string, string> = { ...globalArgs };
  for (const i of stage.instructions) {
    if (i.keyword === "ARG") {
      const [k, v] = argOf(i);
      out[k] = v;
    }
  }
  return out;
}

describe("Containerfile", () => {
  it("has a build stage from the official Bun image at the project's Bun version", () => {
    assert.ok(stages.length >= 2, "a multi-stage build");
    assert.ok(buildStage, "a stage named build");
    const image = expand(buildStage.image, globalArgs);
    const m = /^(?:docker\.io\/)?oven\/bun:(.+)$/.exec(image);
    assert.ok(m, `the build stage starts from ${image}`);
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
      devDependencies: Record<string, string>;
    };
    assert.equal(m[1], pkg.devDependencies.bun, "the image's Bun is the one package.json pins");
    // The executables are cross-compiled, so the build stage runs on the build machine's platform.
    assert.equal(buildStage.platform, "$BUILDPLATFORM");
  });

  it("installs the locked dependencies and builds with scripts/build.sh", () => {
    assert.ok(buildStage);
    const runs = buildStage.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    assert.ok(
      runs.some((r) => /\bbun install\b.*--frozen-lockfile/.test(r)),
      "bun install --frozen-lockfile",
    );
    assert.ok(
      runs.some((r) => /\bscripts\/build\.sh\b/.test(r)),
      "a RUN of scripts/build.sh",
    );
  });

  it("copies into the image the executable scripts/build.sh produces for its architecture", () => {
    assert.ok(buildStage);
    assert.ok("TARGETARCH" in stageArgs(buildStage), "the build stage declares ARG TARGETARCH");
    const artifacts = scriptArtifacts();
    const run = buildStage.instructions.find(
      (i) => i.keyword === "RUN" && /scripts\/build\.sh/.test(i.args),
    );
    assert.ok(run);
    // case "${TARGETARCH}" in amd64) target=linux-x64 ;; arm64) target=linux-arm64 ;; ... esac
    const arms = new Map<string, string>();
    for (const m of run.args.matchAll(/\b(\w+)\)\s*target=([a-z0-9-]+)\s*;;/g)) {
      arms.set(m[1] ?? "", m[2] ?? "");
    }
    assert.match(run.args, /case "\$\{TARGETARCH\}" in/);
    assert.match(run.args, /\bscripts\/build\.sh "\$target"/);
    const staged = /\binstall\b[^&]*?\s"?(dist\/[^"\s]+)"?\s+\/out\/csi-provisioner\b/.exec(
      run.args,
    );
    assert.ok(staged, `the RUN installs the executable as /out/csi-provisioner: ${run.args}`);
    const expected: Record<string, string> = { amd64: "linux-x64", arm64: "linux-arm64" };
    for (const [arch, target] of Object.entries(expected)) {
      assert.equal(arms.get(arch), target, `TARGETARCH=${arch} builds ${target}`);
      assert.equal(
        (staged[1] ?? "").replace("$target", target),
        artifacts.get(target),
        `the ${arch} image's executable is the script's ${target} artifact`,
      );
    }
    const copy = finalStage.instructions.find(
      (i) => i.keyword === "COPY" && i.args.startsWith("--from="),
    );
    assert.ok(copy, "the final stage copies from the build stage");
    assert.equal(copy.args, "--from=build /out/csi-provisioner /csi-provisioner");
  });

  it("starts from images named by build arguments, distroless by default", () => {
    // CI replaces both with images assembled from Debian packages (scripts/image/build.sh).
    assert.ok(buildStage);
    assert.equal(buildStage.image, argRef("BUILDER"));
    assert.equal(finalStage.image, argRef("BASE"));
    assert.match(
      expand(finalStage.image, globalArgs),
      /^gcr\.io\/distroless\/(static|base|base-nossl|cc)-debian\d+:(latest|nonroot)$/,
    );
  });

  it("has no step in the final stage that needs a shell", () => {
    const shellSteps = finalStage.instructions.filter((i) => ["RUN", "SHELL"].includes(i.keyword));
    assert.deepEqual(shellSteps, []);
  });

  it("runs as root by default, as upstream's image, and as 65532 with IMAGE_USER", () => {
    // CSI drivers create their socket as root with mode 0755: only root can connect to it.
    const users = finalStage.instructions.filter((i) => i.keyword === "USER");
    assert.equal(users.length, 1);
    assert.equal(users[0]?.args, argRef("IMAGE_USER"));
    const args = stageArgs(finalStage);
    // Numeric, so the kubelet can enforce runAsNonRoot without reading /etc/passwd.
    assert.equal(args.IMAGE_USER, "0:0");
    assert.match(containerfile, /--build-arg IMAGE_USER=65532:65532/, "the variant is documented");
    assert.match(
      readFileSync(join(ROOT, "README.md"), "utf8"),
      /IMAGE_USER=65532:65532/,
      "README.md documents the non-root variant",
    );
    // The example Deployment must not refuse the default image.
    const deployment = readFileSync(join(ROOT, "deploy/deployment.yaml"), "utf8");
    assert.doesNotMatch(deployment, /^\s*runAsNonRoot:\s*true\s*$/m);
  });

  it("has the binary as its exec-form ENTRYPOINT and no CMD, so a manifest's args pass through", () => {
    const entry = finalStage.instructions.filter((i) => i.keyword === "ENTRYPOINT");
    assert.equal(entry.length, 1);
    assert.deepEqual(JSON.parse(entry[0]?.args ?? ""), ["/csi-provisioner"]);
    assert.deepEqual(
      finalStage.instructions.filter((i) => i.keyword === "CMD"),
      [],
    );
  });

  it("labels the image with its source, version and revision from build arguments", () => {
    const all: Record<string, string> = {};
    for (const i of finalStage.instructions.filter((x) => x.keyword === "LABEL"))
      Object.assign(all, labels(i));
    const args = stageArgs(finalStage);
    const source = expand(all["org.opencontainers.image.source"] ?? "", args);
    assert.match(source, /^https:\/\/\S+$/);
    // Build-argument references, as written in the Containerfile.
    const ref = (name: string): string => `\${${name}}`;
    assert.equal(all["org.opencontainers.image.version"], ref("VERSION"));
    assert.equal(all["org.opencontainers.image.revision"], ref("REVISION"));
    assert.ok(
      "VERSION" in args && "REVISION" in args,
      "the final stage declares ARG VERSION and REVISION",
    );
    // The executable embeds the same version and commit.
    assert.ok(buildStage);
    const run = buildStage.instructions.find(
      (i) => i.keyword === "RUN" && /scripts\/build\.sh/.test(i.args),
    );
    assert.match(run?.args ?? "", /VERSION="\$\{VERSION\}"/);
    assert.match(run?.args ?? "", /GIT_COMMIT="\$\{REVISION\}"/);
  });

  it("copies into the build stage, through .containerignore, every file the entry point imports", () => {
    assert.ok(buildStage);
    const ignore = readFileSync(join(ROOT, ".containerignore"), "utf8");
    const sources: string[] = [];
    for (const i of buildStage.instructions.filter((x) => x.keyword === "COPY")) {
      assert.ok(!i.args.startsWith("--from"), `line ${i.line}`);
      const words = i.args.split(/\s+/);
      sources.push(...words.slice(0, -1));
    }
    assert.ok(sources.includes("src") && sources.includes("scripts/build.sh"), sources.join(" "));
    for (const s of sources) {
      assert.ok(existsSync(join(ROOT, s)), `COPY ${s}: no such file`);
      assert.ok(sentToBuild(s, ignore), `.containerignore leaves out ${s}`);
    }
    assert.ok(sentToBuild("src/main.ts", ignore), "src/main.ts");
    // What the entry point imports must be in the build stage, or bun build cannot resolve it.
    const files = entryPointFiles();
    assert.ok(files.includes("src/version.ts") && files.length > 20, files.join(" "));
    const outside = files.filter(
      (f) => !sources.some((s) => f === s || f.startsWith(`${s}/`)) || !sentToBuild(f, ignore),
    );
    assert.deepEqual(outside, [], "imported by src/main.ts but not copied into the build stage");
    for (const heavy of ["node_modules", "dist", ".git"]) {
      assert.ok(!sentToBuild(heavy, ignore), `.containerignore sends ${heavy}`);
    }
  });
});
