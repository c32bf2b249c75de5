import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../src/util/clock.ts";
import { createLogger } from "../../src/util/log.ts";

const clock = new FakeClock(Date.UTC(2026, 10, 26, 7, 54, 22, 123));

describe("createLogger()", () => {
  it("writes klog-style text with quoted message and key=value fields", () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l), clock });
    log.info("Provisioned volume", { claim: "ns/a", seconds: 0.5, big: 10n });
    log.warn("Careful");
    log.error("Broken", { err: new Error("boom") });
    assert.deepEqual(lines, [
      'I1126 07:54:22.123000] "Provisioned volume" claim="ns/a" seconds=0.5 big="10"',
      'W1126 07:54:22.123000] "Careful"',
      'E1126 07:54:22.123000] "Broken" err="boom"',
    ]);
  });

  it("prints v(n) lines only at verbosity n or more", () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l), clock, verbosity: 4 });
    log.v(4).info("shown");
    log.v(5).info("hidden");
    assert.equal(log.v(5).enabled, false);
    assert.deepEqual(lines, ['I1126 07:54:22.123000] "shown"']);
  });

  it("writes JSON records with ts, v and msg", () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l), clock, format: "json" }).with({
      driver: "d",
    });
    log.info("hello", { n: 1 });
    assert.deepEqual(JSON.parse(lines[0]!), {
      ts: clock.now() / 1000,
      v: 0,
      msg: "hello",
      driver: "d",
      n: 1,
    });
  });

  it("sends warnings and errors to writeError when streams are split", () => {
    const out: string[] = [];
    const err: string[] = [];
    const log = createLogger({ write: (l) => out.push(l), writeError: (l) => err.push(l), clock });
    log.info("a");
    log.warn("b");
    log.error("c");
    assert.equal(out.length, 1);
    assert.equal(err.length, 2);
  });
});
