import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WorkQueue } from "../../src/controller/workqueue.ts";
import {
  createProvisionerMetrics,
  UNKNOWN_DRIVER_NAME,
  WORKQUEUE_BUCKETS,
} from "../../src/metrics/provisioner-metrics.ts";
import { formatValue } from "../../src/metrics/registry.ts";
import { FakeClock } from "../support/fake-clock.ts";

/** `name{labels} value` lines of `family` (histogram lines included) from the exposition text. */
function samples(text: string, family: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (!line.startsWith(family)) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), line.slice(at + 1));
  }
  return out;
}

describe("work queue metrics", () => {
  const setup = () => {
    const clock = new FakeClock();
    const m = createProvisionerMetrics(undefined, { clock });
    const queue = new WorkQueue<string>({
      clock,
      retryStartMs: 1000,
      retryMaxMs: 60_000,
      name: "claims",
      metrics: m.workQueue,
    });
    return { clock, m, queue };
  };

  it("serves every work queue family at zero as soon as the queue exists, as client-go does", () => {
    const { m } = setup();
    const text = m.registry.render();
    assert.equal(samples(text, "workqueue_depth").get('workqueue_depth{name="claims"}'), "0");
    assert.equal(
      samples(text, "workqueue_retries_total").get('workqueue_retries_total{name="claims"}'),
      "0",
    );
    assert.equal(
      samples(text, "workqueue_adds_total").get('workqueue_adds_total{name="claims"}'),
      "0",
    );
    for (const gauge of [
      "workqueue_unfinished_work_seconds",
      "workqueue_longest_running_processor_seconds",
    ]) {
      assert.equal(samples(text, gauge).get(`${gauge}{name="claims"}`), "0");
    }
    for (const histogram of [
      "workqueue_queue_duration_seconds",
      "workqueue_work_duration_seconds",
    ]) {
      const s = samples(text, histogram);
      assert.equal(s.get(`${histogram}_count{name="claims"}`), "0");
      assert.equal(s.get(`${histogram}_bucket{name="claims",le="1e-08"}`), "0");
      assert.equal(s.get(`${histogram}_bucket{name="claims",le="+Inf"}`), "0");
    }
  });

  it("observes how long a key waited, how long it was worked on, and the work in progress", async () => {
    const { clock, m, queue } = setup();
    queue.add("a");
    queue.add("b");
    await clock.advance(2000);
    assert.equal(await queue.get(), "a");
    await clock.advance(3000);
    assert.equal(await queue.get(), "b");
    await clock.advance(1000);

    let text = m.registry.render();
    const waited = samples(text, "workqueue_queue_duration_seconds");
    assert.equal(waited.get('workqueue_queue_duration_seconds_count{name="claims"}'), "2");
    assert.equal(waited.get('workqueue_queue_duration_seconds_sum{name="claims"}'), "7");
    assert.equal(waited.get('workqueue_queue_duration_seconds_bucket{name="claims",le="1"}'), "0");
    assert.equal(waited.get('workqueue_queue_duration_seconds_bucket{name="claims",le="10"}'), "2");
    // a has run 4 s, b 1 s.
    assert.equal(
      samples(text, "workqueue_unfinished_work_seconds").get(
        'workqueue_unfinished_work_seconds{name="claims"}',
      ),
      "5",
    );
    assert.equal(
      samples(text, "workqueue_longest_running_processor_seconds").get(
        'workqueue_longest_running_processor_seconds{name="claims"}',
      ),
      "4",
    );

    queue.done("a");
    queue.done("b");
    text = m.registry.render();
    const worked = samples(text, "workqueue_work_duration_seconds");
    assert.equal(worked.get('workqueue_work_duration_seconds_count{name="claims"}'), "2");
    assert.equal(worked.get('workqueue_work_duration_seconds_sum{name="claims"}'), "5");
    assert.equal(
      samples(text, "workqueue_unfinished_work_seconds").get(
        'workqueue_unfinished_work_seconds{name="claims"}',
      ),
      "0",
    );
  });

  it("times a key handed straight to a waiting worker as zero wait", async () => {
    const { m, queue } = setup();
    const got = queue.get();
    queue.add("x");
    assert.equal(await got, "x");
    const text = m.registry.render();
    assert.equal(
      samples(text, "workqueue_queue_duration_seconds").get(
        'workqueue_queue_duration_seconds_bucket{name="claims",le="1e-08"}',
      ),
      "1",
    );
  });

  it("counts retries and stops counting a shut-down queue's work in progress", async () => {
    const { clock, m, queue } = setup();
    queue.addRateLimited("r");
    queue.add("w");
    await queue.get();
    await clock.advance(10_000);
    queue.shutDown();
    const text = m.registry.render();
    assert.equal(
      samples(text, "workqueue_retries_total").get('workqueue_retries_total{name="claims"}'),
      "1",
    );
    assert.equal(
      samples(text, "workqueue_unfinished_work_seconds").get(
        'workqueue_unfinished_work_seconds{name="claims"}',
      ),
      "0",
    );
  });

  it("uses component-base's buckets: 10 ns to 10 s by tens", () => {
    assert.deepEqual(WORKQUEUE_BUCKETS.map(formatValue), [
      "1e-08",
      "1e-07",
      "1e-06",
      "9.999999999999999e-06",
      "9.999999999999999e-05",
      "0.001",
      "0.01",
      "0.1",
      "1",
      "10",
    ]);
  });
});

describe("formatValue()", () => {
  it("writes numbers as Go's strconv.FormatFloat(v, 'g', -1, 64)", () => {
    const cases: [number, string][] = [
      [0, "0"],
      [1, "1"],
      [0.5, "0.5"],
      [123456, "123456"],
      [1e6, "1e+06"],
      [44421888, "4.4421888e+07"],
      [0.0001, "0.0001"],
      [0.00001, "1e-05"],
      [1.8446744073709552e19, "1.8446744073709552e+19"],
      [-2.5e-7, "-2.5e-07"],
      [Number.POSITIVE_INFINITY, "+Inf"],
      [Number.NaN, "NaN"],
    ];
    for (const [v, text] of cases) assert.equal(formatValue(v), text, String(v));
  });
});

describe("CSI call metrics", () => {
  it("names calls made before the driver answered GetPluginInfo unknown-driver, as csi-lib-utils", () => {
    assert.equal(UNKNOWN_DRIVER_NAME, "unknown-driver");
  });
});

describe("process metrics", () => {
  const base = {
    residentBytes: () => 50_000_000,
    heapBytes: () => 10_000_000,
    cpuSeconds: () => 1.5,
    startTimeSeconds: 1_700_000_000,
  };

  it("adds open and maximum file descriptors and virtual memory where the platform reports them", () => {
    const m = createProvisionerMetrics({
      ...base,
      openFds: () => 12,
      maxFds: () => 1_048_576,
      virtualMemoryBytes: () => 2_000_000_000,
      virtualMemoryMaxBytes: () => 1.8446744073709552e19,
    });
    const text = m.registry.render();
    assert.match(text, /^process_open_fds 12$/m);
    assert.match(text, /^process_max_fds 1\.048576e\+06$/m);
    assert.match(text, /^process_virtual_memory_bytes 2e\+09$/m);
    assert.match(text, /^process_virtual_memory_max_bytes 1\.8446744073709552e\+19$/m);
    assert.match(text, /^process_resident_memory_bytes 5e\+07$/m);
  });

  it("leaves out what the platform cannot tell", () => {
    const m = createProvisionerMetrics({ ...base, openFds: () => undefined });
    const text = m.registry.render();
    assert.doesNotMatch(text, /process_open_fds/);
    assert.doesNotMatch(text, /process_max_fds/);
    assert.match(text, /^process_cpu_seconds_total 1\.5$/m);
  });
});
