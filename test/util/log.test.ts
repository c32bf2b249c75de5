import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { createLogger, klogTime } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";

const clock = new FakeClock(Date.UTC(2026, 10, 26, 7, 54, 22, 123));
/** A clock with sub-millisecond precision, as the process' own (performance.timeOrigin + now()). */
const preciseClock = new FakeClock(Date.UTC(2026, 10, 26, 7, 54, 22, 123) + 0.456);

/** klog's header: severity, mmdd hh:mm:ss.uuuuuu, thread id padded to 7, file:line, "] ". */
const KLOG_HEADER = /^([IWEF])(\d{4}) (\d{2}):(\d{2}):(\d{2})\.(\d{6}) +(\d+) ([^ :\]]+):(\d+)\] /;

describe("createLogger()", () => {
  it("writes klog-style text with quoted message and key=value fields", () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l), clock, pid: 4711 });
    log.info("Provisioned volume", { claim: "ns/a", seconds: 0.5, big: 10n });
    log.warn("Careful");
    log.error("Broken", { claim: "ns/a", err: new Error("boom") });
    assert.deepEqual(lines, [
      'I1126 07:54:22.123000    4711 csi-provisioner.ts:1] "Provisioned volume" claim="ns/a" seconds=0.5 big="10"',
      'W1126 07:54:22.123000    4711 csi-provisioner.ts:1] "Careful"',
      'E1126 07:54:22.123000    4711 csi-provisioner.ts:1] "Broken" err="boom" claim="ns/a"',
    ]);
  });

  it("writes klog's header: real microseconds, the process id as thread id, the component as file:line", () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l), clock: preciseClock, pid: 12 });
    log.named("claims").info("hello");
    log.named("claims").with({ a: 1 }).warn("again");
    const m = KLOG_HEADER.exec(lines[0]!);
    assert.ok(m, lines[0]);
    assert.deepEqual(m.slice(1), ["I", "1126", "07", "54", "22", "123456", "12", "claims.ts", "1"]);
    assert.equal(lines[0], 'I1126 07:54:22.123456      12 claims.ts:1] "hello"');
    assert.equal(lines[1], 'W1126 07:54:22.123456      12 claims.ts:1] "again" a=1');
  });

  it("truncates to microseconds, as klog does, and never spills into the next second", () => {
    assert.equal(klogTime(Date.UTC(2026, 0, 2, 3, 4, 5, 999) + 0.75), "0102 03:04:05.999750");
    assert.equal(klogTime(Date.UTC(2026, 0, 2, 3, 4, 5, 0)), "0102 03:04:05.000000");
    assert.equal(klogTime(Date.UTC(2026, 11, 31, 23, 59, 59, 7) + 0.5), "1231 23:59:59.007500");
  });

  it("prints v(n) lines only at verbosity n or more", () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l), clock, verbosity: 4 });
    log.v(4).info("shown");
    log.v(5).info("hidden");
    assert.equal(log.v(5).enabled, false);
    assert.deepEqual(lines, ['I1126 07:54:22.123000       0 csi-provisioner.ts:1] "shown"']);
  });

  it("writes component-base's JSON: ts (float ms), caller, msg, v, then the key/values", () => {
    const lines: string[] = [];
    const log = createLogger({
      write: (l) => lines.push(l),
      clock: preciseClock,
      format: "json",
      verbosity: 4,
    })
      .named("claims")
      .with({ driver: "d" });
    log.info("hello", { n: 1 });
    log.v(4).info("detail");
    assert.equal(
      lines[0],
      `{"ts":${preciseClock.now()},"caller":"claims.ts:1","msg":"hello","v":0,"driver":"d","n":1}`,
    );
    assert.deepEqual(Object.keys(JSON.parse(lines[1]!)), ["ts", "caller", "msg", "v", "driver"]);
    assert.equal(JSON.parse(lines[1]!).v, 4);
  });

  it("writes JSON errors with err and without v", () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l), clock, format: "json" });
    log.error("Broken", { claim: "ns/a", err: new Error("boom") });
    log.error("No cause");
    assert.equal(
      lines[0],
      `{"ts":${clock.now()},"caller":"csi-provisioner.ts:1","msg":"Broken","err":"boom","claim":"ns/a"}`,
    );
    assert.deepEqual(JSON.parse(lines[1]!), {
      ts: clock.now(),
      caller: "csi-provisioner.ts:1",
      msg: "No cause",
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

/** Sample lines upstream's binary wrote (scripts/capture-upstream.ts). */
const upstream = (
  JSON.parse(
    readFileSync(new URL("../fixtures/upstream-behaviour.json", import.meta.url), "utf8"),
  ) as { logs: { text: string[]; json: string[] } }
).logs;

describe("log lines against upstream's", () => {
  it("text: upstream's lines and ours match klog's header the same way", () => {
    assert.ok(upstream.text.length >= 3);
    for (const line of upstream.text) assert.match(line, KLOG_HEADER, line);
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l), clock: preciseClock, pid: 24464 });
    log.info("Version", { version: "v6.3.0" });
    log.error("Unhandled Error", { err: "boom", logger: "UnhandledError" });
    for (const line of lines) assert.match(line, KLOG_HEADER, line);
    // The same field widths: everything up to the file name lines up with upstream's.
    const prefix = (l: string) => /^\S+ \S+ +\d+ /.exec(l)![0];
    assert.equal(prefix(lines[0]!).length, prefix(upstream.text[0]!).length);
  });

  it("JSON: upstream's key order (ts, caller, msg, then v for info or err for errors)", () => {
    const order = (line: string) =>
      Object.keys(JSON.parse(line)).filter((k) => ["ts", "caller", "msg", "v", "err"].includes(k));
    const theirs = upstream.json.map(order);
    assert.ok(theirs.some((k) => k.includes("v")) && theirs.some((k) => !k.includes("v")));
    const lines: string[] = [];
    const log = createLogger({
      write: (l) => lines.push(l),
      clock: preciseClock,
      format: "json",
      verbosity: 5,
    });
    log.info("Version", { version: "v6.3.0" });
    log.v(5).info("GRPC response", { response: "{}" });
    log.error("Unhandled Error", { err: "boom" });
    assert.deepEqual(
      order(lines[0]!),
      theirs.find((k) => !k.includes("err")),
    );
    assert.deepEqual(
      order(lines[2]!),
      theirs.find((k) => !k.includes("v")),
    );
    for (const line of [...upstream.json, ...lines]) {
      assert.equal(typeof JSON.parse(line).ts, "number");
      // Milliseconds since the epoch, as component-base writes them.
      assert.ok(JSON.parse(line).ts > 1e12, line);
    }
  });
});
