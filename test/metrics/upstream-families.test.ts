/**
 * /metrics as upstream serves it: the families, their types and help, label names and label
 * values that upstream's own binary served after provisioning (test/fixtures/
 * upstream-behaviour.json, captured by scripts/capture-upstream.ts from
 * `csi-provisioner-upstream` against a real control plane) are compared with what this sidecar
 * serves after the same scenario: a claim provisioned and deleted, a class with an unknown
 * reserved parameter, a claim the driver refuses with OutOfRange, leader election on.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import type { PersistentVolume } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { API_WAIT, DELETE_LATENCY, PROVISION_LATENCY } from "../../src/metrics/latency-metrics.ts";
import { processStats } from "../../src/runtime/process.ts";
import { fail } from "../support/fake-driver.ts";
import { type FamilyShape, metricFamilies } from "../support/metric-families.ts";
import {
  claim,
  DRIVER,
  type Harness,
  type RunningSidecar,
  releaseVolumesOf,
  startHarness,
  storageClass,
} from "../support/sidecar-harness.ts";

const fixture = JSON.parse(
  readFileSync(new URL("../fixtures/upstream-behaviour.json", import.meta.url), "utf8"),
) as { driverName: string; metrics: Record<string, FamilyShape> };

/** Families upstream serves that this sidecar leaves out on purpose, with the reason. */
const ABSENT_ON_PURPOSE: [RegExp, string][] = [
  [/^go_/, "Go runtime statistics: there is no Go runtime here"],
  [
    /^(aggregator_discovery_|apiserver_|cardinality_enforcement_|disabled_metrics_total$|hidden_metrics_total$|registered_metrics_total$)/,
    "registered by the k8s.io/apiserver and component-base packages upstream links in; they describe those Go libraries (audit, envelope encryption, the metric registry itself), not provisioning",
  ],
];

/** Label values upstream has that this sidecar never produces, with the reason. */
const VALUES_ABSENT_ON_PURPOSE: Record<string, string> = {
  "name=unsavedpvs":
    "upstream's library retries unsaved PVs on a queue of their own; here the claim's own queue retries them (src/controller/claims.ts keeps the built PV), so there is no such queue",
};

/** Families this sidecar adds, with the reason. */
const OURS_ONLY: Record<string, string> = {
  process_heap_bytes: "the JavaScript heap; Go reports its heap under go_memstats_*",
  [PROVISION_LATENCY]: "end-to-end latency, not in upstream (src/metrics/latency-metrics.ts)",
  [DELETE_LATENCY]: "end-to-end latency, not in upstream (src/metrics/latency-metrics.ts)",
  [API_WAIT]: "the PV save's wait for the API budget, not in upstream",
};

/** Families with samples only when something specific happens (a failed delete). */
const ONLY_SOMETIMES = new Set(["controller_persistentvolume_delete_failed_total"]);

const absentOnPurpose = (name: string) => ABSENT_ON_PURPOSE.some(([re]) => re.test(name));

/** Upstream's label values, with its driver name replaced by the fake driver's. */
function expectedValues(label: string, values: string[]): string[] {
  return values
    .map((v) => (label === "driver_name" && v === fixture.driverName ? DRIVER : v))
    .filter((v) => VALUES_ABSENT_ON_PURPOSE[`${label}=${v}`] === undefined)
    .sort();
}

describe("metric families against upstream's", () => {
  let h: Harness;
  let sidecar: RunningSidecar;
  let ours: Record<string, FamilyShape>;

  before(async () => {
    h = await startHarness();
    sidecar = await h.start(
      ["--kube-api-qps=1000", "--kube-api-burst=1000", "--leader-election"],
      {},
      { processStats: processStats() },
    );
    h.apiserver.put(storageClass("capture-sc"));
    h.apiserver.put(
      storageClass("bad-parameter", { parameters: { "csi.storage.k8s.io/unknown": "x" } }),
    );
    const ok = h.apiserver.put(claim("ok", "capture-sc"));
    const uid = ok.metadata.uid!;
    const pvOf = (): PersistentVolume | undefined =>
      h.apiserver.get(resources.persistentVolumes, `pvc-${uid}`);
    await h.apiserver.waitFor(pvOf);
    h.apiserver.remove(resources.persistentVolumeClaims, "ok", "default");
    releaseVolumesOf(h.apiserver, uid);
    await h.apiserver.waitFor(() => !pvOf());

    h.apiserver.put(claim("bad-parameter", "bad-parameter"));
    // Every later CreateVolume (the too-big claim and its retries) fails as the mock driver does.
    h.driver.on("createVolume", fail(Code.OutOfRange, "Requested capacity exceeds maximum"));
    h.apiserver.put(claim("too-big", "capture-sc", { size: "2Ti" }));
    await h.apiserver.waitFor(
      () =>
        h.apiserver.objects(resources.coreEvents).filter((e) => e.reason === "ProvisioningFailed")
          .length >= 2,
    );
    await h.apiserver.waitFor(() => sidecar.metrics.leaderStatus.value({ name: "" }) === 1);
    ours = metricFamilies(sidecar.metrics.registry.render());
  });
  after(async () => {
    await h?.close();
  });

  it("serves every family upstream serves, bar the Go runtime's and Go libraries' own", () => {
    const missing = Object.keys(fixture.metrics).filter(
      (name) => !absentOnPurpose(name) && !ONLY_SOMETIMES.has(name) && !(name in ours),
    );
    assert.deepEqual(missing, []);
  });

  it("serves no family upstream does not, bar those named with a reason", () => {
    const extra = Object.keys(ours).filter(
      (name) => !(name in fixture.metrics) && !(name in OURS_ONLY) && !ONLY_SOMETIMES.has(name),
    );
    assert.deepEqual(extra, []);
  });

  it("gives each family upstream's type, help, label names and label values", () => {
    for (const [name, theirs] of Object.entries(fixture.metrics)) {
      const mine = ours[name];
      if (absentOnPurpose(name) || mine === undefined) continue;
      assert.equal(mine.type, theirs.type, `type of ${name}`);
      assert.equal(mine.help, theirs.help, `help of ${name}`);
      assert.deepEqual(
        Object.keys(mine.labels).sort(),
        Object.keys(theirs.labels).sort(),
        `label names of ${name}`,
      );
      for (const [label, values] of Object.entries(theirs.labels)) {
        assert.deepEqual(
          mine.labels[label],
          expectedValues(label, values),
          `values of ${name}{${label}}`,
        );
      }
    }
  });
});
