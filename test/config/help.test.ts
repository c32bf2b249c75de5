import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  featureGatesMarkdownTable,
  flagsMarkdownTable,
  flagsOf,
  helpDefault,
  helpText,
} from "../../src/config/help.ts";
import { FEATURE_GATE_NAMES, FLAGS, flagByName } from "../../src/config/schema.ts";

function spelled(name: string): string {
  return name.length === 1 ? `-${name}, --${name}` : `--${name}`;
}

describe("helpText()", () => {
  const overview = helpText();
  /** The help with line wrapping undone, for matching sentences. */
  const flat = overview.replace(/\s+/g, " ");

  it("lists the commands", () => {
    for (const usage of [
      "[run] [flags]",
      "probe [flags]",
      "dev [flags]",
      "version",
      "help [command]",
    ]) {
      assert.ok(overview.includes(`csi-provisioner ${usage}`), usage);
    }
  });

  it("mentions every flag run accepts, with its help line's start", () => {
    for (const f of FLAGS.filter((f) => f.commands.includes("run"))) {
      assert.ok(overview.includes(spelled(f.name)), `--${f.name} is listed`);
      assert.ok(flat.includes(f.help), `--${f.name} help`);
    }
  });

  it("mentions every flag in the help of the commands that accept it", () => {
    for (const command of ["run", "probe", "dev"] as const) {
      const text = helpText(command);
      for (const f of FLAGS) {
        const listed = new RegExp(`--${f.name}( |$)`, "m").test(text);
        assert.equal(listed, f.commands.includes(command), `--${f.name} in ${command} help`);
      }
    }
  });

  it("shows defaults the way pflag does", () => {
    assert.match(flat, /--timeout duration Timeout of every call [^[]*\(default 10s\)/);
    assert.match(flat, /--csi-address string [^[]*\(default "\/run\/csi\/socket"\)/);
    assert.match(flat, /--retry-interval-max duration [^[]*\(default 5m0s\)/);
    assert.match(flat, /--volume-name-uuid-length int [^[]*\(default -1\)/);
    assert.match(flat, /-v, --v Level Log verbosity/);
  });

  it("omits zero defaults, as pflag does", () => {
    assert.equal(helpDefault(flagByName("leader-election")!), undefined);
    assert.equal(helpDefault(flagByName("kubeconfig")!), undefined);
    assert.equal(helpDefault(flagByName("v")!), undefined);
    assert.equal(helpDefault(flagByName("log-json-info-buffer-size")!), undefined);
    assert.equal(helpDefault(flagByName("immediate-topology")!), "true");
    assert.equal(helpDefault(flagByName("kube-api-qps")!), "5");
    assert.equal(helpDefault(flagByName("capacity-poll-interval")!), "1m0s");
    assert.equal(helpDefault(flagByName("kubeconfig-out")!), "<data-dir>/kubeconfig");
  });

  it("lists the feature gates with stage and default", () => {
    assert.match(overview, /AllAlpha=true\|false \(ALPHA - default=false\)/);
    assert.match(overview, /Topology=true\|false \(GA - default=true\)/);
    assert.match(overview, /CrossNamespaceVolumeDataSource=true\|false \(ALPHA - default=false\)/);
    assert.match(overview, /HonorPVReclaimPolicy=true \(removed upstream/);
  });

  it("marks flags that are not implemented yet or have no effect", () => {
    assert.ok(!flat.includes("[not implemented yet]"), "every flag is implemented or a no-op");
    assert.match(flat, /--enable-pprof [^[]*\[no effect: there is no Go pprof profiler/);
    assert.match(flat, /--automaxprocs [^[]*\[no effect: JavaScript runtimes have no GOMAXPROCS\]/);
    assert.match(flat, /--timeout duration [^[]*\(default 10s\) --retry-interval-start/);
  });

  it("keeps lines within 100 columns except gate lists", () => {
    for (const line of overview.split("\n")) {
      if (line.includes("=true|false") || line.includes("HonorPVReclaimPolicy")) continue;
      assert.ok(line.length <= 100, `too long: ${line}`);
    }
  });

  it("gives probe only probe's flags", () => {
    const text = helpText("probe");
    assert.match(text, /^Usage: csi-provisioner probe \[flags\]/);
    assert.deepEqual(
      flagsOf("probe").map((f) => f.name),
      ["help", "version", "csi-address", "timeout", "v", "output", "connect-timeout"],
    );
    assert.ok(!text.includes("--leader-election"));
  });
});

describe("flagsMarkdownTable()", () => {
  const table = flagsMarkdownTable();
  const rows = table.trimEnd().split("\n");

  it("has a header and one row per flag", () => {
    assert.equal(rows[0], "| Flag | Default | Meaning | Status |");
    assert.equal(rows[1], "|---|---|---|---|");
    assert.equal(rows.length - 2, FLAGS.length);
  });

  it("gives every row four cells", () => {
    for (const row of rows.slice(2)) {
      const cells = row.split(/(?<!\\)\|/).slice(1, -1);
      assert.equal(cells.length, 4, row);
    }
  });

  it("shows names, defaults and status", () => {
    assert.ok(table.includes("| `--timeout` | `10s` | Timeout of every call"));
    assert.ok(table.includes('| `--csi-address` | `"/run/csi/socket"` |'));
    assert.ok(table.includes("| `-v`, `--v` | `0` |"));
    assert.match(table, /\| `--enable-capacity` \| `false` \| .* \| implemented \|/);
    assert.match(
      table,
      /\| `--automaxprocs` \| `false` \| .* \| no effect: JavaScript runtimes have no GOMAXPROCS \|/,
    );
    assert.match(table, /\| `--output` \| `"text"` \| Report format/);
  });

  it("is stable", () => {
    assert.equal(flagsMarkdownTable(), table);
  });
});

describe("featureGatesMarkdownTable()", () => {
  it("lists every gate", () => {
    const table = featureGatesMarkdownTable();
    for (const name of [...FEATURE_GATE_NAMES, "AllAlpha", "AllBeta", "HonorPVReclaimPolicy"]) {
      assert.ok(table.includes(`| \`${name}\` |`), name);
    }
  });
});
