import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { setImmediate } from "node:timers";
import { registerOrphanMetrics } from "../../src/audit/auditor.ts";
import type { PersistentVolume, PersistentVolumeClaim } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import {
  API_WAIT,
  DELETE_LATENCY,
  PROVISION_LATENCY,
  registerLatencyMetrics,
} from "../../src/metrics/latency-metrics.ts";
import { createProvisionerMetrics } from "../../src/metrics/provisioner-metrics.ts";
import { Registry } from "../../src/metrics/registry.ts";
import { FakeClock } from "../support/fake-clock.ts";
import { hangForever } from "../support/fake-driver.ts";
import { claim, startHarness, storageClass } from "../support/sidecar-harness.ts";

/** Resolves once `check()` holds, checking after each turn of the event loop; rejects after 10 s. */
async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise<void>((r) => setImmediate(r));
  }
}

/** The value of one series in an exposition text, or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

const created = (at: number): PersistentVolumeClaim => ({
  metadata: { name: "c", namespace: "ns", uid: "u", creationTimestamp: new Date(at).toISOString() },
  spec: { storageClassName: "fast" },
});

const pv = (status?: PersistentVolume["status"]): PersistentVolume => ({
  metadata: { name: "pvc-u" },
  spec: { storageClassName: "fast" },
  status,
});

describe("end-to-end latency metrics", () => {
  it("observes claim created → PV saved, by class and outcome", () => {
    const clock = new FakeClock();
    const registry = new Registry();
    const m = registerLatencyMetrics(registry, clock);
    m.provisioned(created(clock.now() - 3_000), pv());
    m.abandoned(created(clock.now() - 40_000));
    const text = registry.render();
    const s = `${PROVISION_LATENCY}_sum{class="fast",outcome="success"}`;
    assert.equal(sample(text, s), 3);
    assert.equal(
      sample(text, `${PROVISION_LATENCY}_bucket{class="fast",outcome="success",le="2.5"}`),
      0,
    );
    assert.equal(
      sample(text, `${PROVISION_LATENCY}_bucket{class="fast",outcome="success",le="5"}`),
      1,
    );
    assert.equal(sample(text, `${PROVISION_LATENCY}_sum{class="fast",outcome="abandoned"}`), 40);
  });

  it("observes PV released → volume deleted from status.lastPhaseTransitionTime", () => {
    const clock = new FakeClock();
    const registry = new Registry();
    const m = registerLatencyMetrics(registry, clock);
    m.deleted(
      pv({
        phase: "Released",
        lastPhaseTransitionTime: new Date(clock.now() - 1_500).toISOString(),
      }),
    );
    m.deleted(pv({ phase: "Released" })); // no transition time: nothing to measure from
    const text = registry.render();
    assert.equal(sample(text, `${DELETE_LATENCY}_count{class="fast",outcome="success"}`), 1);
    assert.equal(sample(text, `${DELETE_LATENCY}_sum{class="fast",outcome="success"}`), 1.5);
  });

  it("observes the API budget wait of a PV save", () => {
    const registry = new Registry();
    const m = registerLatencyMetrics(registry, new FakeClock());
    m.apiWait("fast", 250);
    assert.equal(sample(registry.render(), `${API_WAIT}_sum{class="fast"}`), 0.25);
  });

  it("are exported by the running sidecar for a claim's whole life", async () => {
    const h = await startHarness();
    try {
      const sidecar = await h.start(["--kube-api-qps=1000", "--kube-api-burst=1000"]);
      h.apiserver.put(storageClass("fast"));
      const c = h.apiserver.put(claim("data", "fast"));
      const uid = c.metadata.uid!;
      const saved = await h.apiserver.waitFor(() =>
        h.apiserver.get(resources.persistentVolumes, `pvc-${uid}`),
      );
      const text = () => sidecar.metrics.registry.render();
      await until(
        () => sample(text(), `${PROVISION_LATENCY}_count{class="fast",outcome="success"}`) === 1,
      );
      assert.equal(sample(text(), `${API_WAIT}_count{class="fast"}`), 1);

      // The PV binder marks the PV Released once the claim is gone.
      h.apiserver.put({
        ...saved,
        status: { phase: "Released", lastPhaseTransitionTime: new Date().toISOString() },
      });
      await h.apiserver.waitFor(() => !h.apiserver.get(resources.persistentVolumes, `pvc-${uid}`));
      await until(
        () => sample(text(), `${DELETE_LATENCY}_count{class="fast",outcome="success"}`) === 1,
      );

      // A claim deleted while its CreateVolume still runs never gets a PV: abandoned.
      h.driver.on("createVolume", hangForever());
      const doomed = h.apiserver.put(claim("doomed", "fast"));
      await h.driver.waitForCalls("createVolume", 2);
      h.apiserver.remove(resources.persistentVolumeClaims, "doomed", "default");
      await until(
        () => sample(text(), `${PROVISION_LATENCY}_count{class="fast",outcome="abandoned"}`) === 1,
      );
      assert.ok(doomed.metadata.uid);
    } finally {
      await h.close();
    }
  });
});

describe("README metrics table", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const table = readme.slice(
    readme.indexOf("<!-- metrics:start -->"),
    readme.indexOf("<!-- metrics:end -->"),
  );
  const rows = table
    .split("\n")
    .filter((l) => l.startsWith("| `"))
    .map((l) => l.split(" | ").map((c) => c.replace(/^\| /, "")));
  const registry = createProvisionerMetrics().registry;
  registerLatencyMetrics(registry, new FakeClock());
  registerOrphanMetrics(registry); // with --orphan-audit-interval
  const rendered = registry.render();

  it("lists every end-to-end family with its type and labels", () => {
    for (const [name, labels] of [
      [PROVISION_LATENCY, "`class`, `outcome`"],
      [DELETE_LATENCY, "`class`, `outcome`"],
      [API_WAIT, "`class`"],
    ] as const) {
      const row = rows.find((r) => r[0] === `\`${name}\``);
      assert.ok(row, `${name} is in the README`);
      assert.equal(row[1], "histogram");
      assert.equal(row[2], labels);
      assert.equal(row[4]?.replace(/ \|$/, ""), "this sidecar");
    }
  });

  it("lists only families the sidecar serves, with the type it serves", () => {
    assert.ok(rows.length >= 10);
    for (const [cell, type] of rows) {
      const name = cell!.replace(/`/g, "");
      if (name.endsWith("_*")) {
        assert.match(rendered, new RegExp(`^# TYPE ${name.slice(0, -1)}`, "m"));
        continue;
      }
      assert.match(rendered, new RegExp(`^# TYPE ${name} ${type}$`, "m"), name);
    }
  });
});
