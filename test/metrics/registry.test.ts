import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createProvisionerMetrics } from "../../src/metrics/provisioner-metrics.ts";
import { Registry } from "../../src/metrics/registry.ts";

describe("Registry", () => {
  it("renders counters, gauges and histograms in the Prometheus text format", () => {
    const r = new Registry();
    const c = r.counter("a_total", "A counter.", ["x"]);
    const g = r.gauge("b", "A gauge.");
    const h = r.histogram("c_seconds", "A histogram.", ["m"], [0.5, 1]);
    c.inc({ x: 'q"uote' });
    c.inc({ x: 'q"uote' }, 2);
    g.set(undefined, 7);
    h.observe({ m: "m1" }, 0.2);
    h.observe({ m: "m1" }, 0.7);
    h.observe({ m: "m1" }, 3);
    assert.equal(
      r.render(),
      [
        "# HELP a_total A counter.",
        "# TYPE a_total counter",
        'a_total{x="q\\"uote"} 3',
        "# HELP b A gauge.",
        "# TYPE b gauge",
        "b 7",
        "# HELP c_seconds A histogram.",
        "# TYPE c_seconds histogram",
        'c_seconds_bucket{m="m1",le="0.5"} 1',
        'c_seconds_bucket{m="m1",le="1"} 2',
        'c_seconds_bucket{m="m1",le="+Inf"} 3',
        'c_seconds_sum{m="m1"} 3.9',
        'c_seconds_count{m="m1"} 3',
        "",
      ].join("\n"),
    );
  });

  it("refuses to register one name twice", () => {
    const r = new Registry();
    r.counter("x_total", "x");
    assert.throws(() => r.counter("x_total", "x"), /registered twice/);
  });
});

describe("createProvisionerMetrics()", () => {
  it("uses upstream's metric names, labels and CSI buckets", () => {
    const m = createProvisionerMetrics();
    m.observeCsiCall("hostpath.csi.k8s.io", "/csi.v1.Controller/CreateVolume", "OK", 0.3);
    m.provisionTotal.inc({ class: "fast", source: "" });
    m.deleteFailed.inc({ class: "fast" });
    m.workQueue.added("claims");
    const text = m.registry.render();
    assert.match(
      text,
      /csi_sidecar_operations_seconds_bucket\{driver_name="hostpath.csi.k8s.io",grpc_status_code="OK",method_name="\/csi.v1.Controller\/CreateVolume",le="0.5"\} 1/,
    );
    assert.match(text, /le="600"/);
    assert.match(
      text,
      /controller_persistentvolumeclaim_provision_total\{class="fast",source=""\} 1/,
    );
    assert.match(text, /controller_persistentvolume_delete_failed_total\{class="fast"\} 1/);
    assert.match(text, /workqueue_adds_total\{name="claims"\} 1/);
    for (const name of [
      "controller_persistentvolumeclaim_provision_failed_total",
      "controller_persistentvolumeclaim_provision_duration_seconds",
      "controller_persistentvolume_delete_total",
      "controller_persistentvolume_delete_duration_seconds",
      "leader_election_master_status",
    ]) {
      assert.match(text, new RegExp(`# TYPE ${name} `));
    }
  });
});

describe("CSI migration's migrated label", () => {
  it("is absent until turned on; then earlier calls are migrated=false and later ones labelled", () => {
    const m = createProvisionerMetrics();
    const probe = "/csi.v1.Identity/Probe";
    const create = "/csi.v1.Controller/CreateVolume";
    m.observeCsiCall("ebs.csi.aws.com", probe, "OK", 0.01);
    assert.match(
      m.registry.render(),
      /csi_sidecar_operations_seconds_count\{driver_name="ebs.csi.aws.com",grpc_status_code="OK",method_name="\/csi.v1.Identity\/Probe"\} 1/,
    );
    m.labelMigratedCalls();
    m.observeCsiCall("ebs.csi.aws.com", create, "OK", 0.2, true);
    m.observeCsiCall("ebs.csi.aws.com", create, "OK", 0.2, false);
    const text = m.registry.render();
    assert.match(
      text,
      /csi_sidecar_operations_seconds_count\{driver_name="ebs.csi.aws.com",grpc_status_code="OK",method_name="\/csi.v1.Identity\/Probe",migrated="false"\} 1/,
    );
    for (const migrated of ["true", "false"]) {
      assert.match(
        text,
        new RegExp(
          `csi_sidecar_operations_seconds_bucket\\{driver_name="ebs.csi.aws.com",grpc_status_code="OK",method_name="/csi.v1.Controller/CreateVolume",migrated="${migrated}",le="0.25"\\} 1`,
        ),
      );
    }
    assert.doesNotMatch(text, /method_name="[^"]*"\}/, "every series has the migrated label");
  });
});
