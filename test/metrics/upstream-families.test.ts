/**
 * /metrics as upstream serves it: the families, their types and help, label names and label
 * values that upstream's own binary served after provisioning (test/fixtures/
 * upstream-behaviour.json, captured by scripts/capture-upstream.ts from
 * `csi-provisioner-upstream` against a real control plane) are compared with what this sidecar
 * serves after the same scenario: a claim provisioned and deleted, a class with an unknown
 * reserved parameter, a claim the driver refuses with OutOfRange, leader election on. The
 * differences on purpose, each with its reason, are listed in test/support/metric-families.ts;
 * test/e2e/upstream-parity.test.ts runs the same comparison on the compiled binary.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import type { PersistentVolume } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { processStats } from "../../src/runtime/process.ts";
import { fail } from "../support/fake-driver.ts";
import { type FamilyShape, familyDifferences, metricFamilies } from "../support/metric-families.ts";
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

  it("serves upstream's families with upstream's types, help, label names and values", () => {
    assert.deepEqual(
      familyDifferences(ours, fixture.metrics, { upstream: fixture.driverName, ours: DRIVER }),
      [],
    );
  });

  it("finds a difference when there is one", () => {
    const broken = structuredClone(ours);
    delete broken.workqueue_depth;
    broken.csi_sidecar_operations_seconds!.labels.driver_name = ["unknown", DRIVER];
    broken.leader_election_master_status!.labels.name = ["fake-csi-k8s-io"];
    assert.deepEqual(
      familyDifferences(broken, fixture.metrics, { upstream: fixture.driverName, ours: DRIVER }),
      [
        "missing family workqueue_depth",
        `csi_sidecar_operations_seconds{driver_name}: ["unknown","${DRIVER}"], upstream ["${DRIVER}","unknown-driver"]`,
        'leader_election_master_status{name}: ["fake-csi-k8s-io"], upstream [""]',
      ],
    );
  });
});
