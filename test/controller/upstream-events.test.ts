/**
 * ProvisioningFailed events read as upstream's for the same cause: the texts upstream's own
 * binary wrote (test/fixtures/upstream-behaviour.json, captured by scripts/capture-upstream.ts
 * from `csi-provisioner-upstream` against a real control plane and the CSI mock driver) are
 * compared with this sidecar's for the same claims: an unknown reserved StorageClass parameter,
 * a driver refusing with OutOfRange, and topology that cannot be met for a late-binding and an
 * immediate claim.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import type { CoreEvent } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { fail } from "../support/fake-driver.ts";
import {
  claim,
  DRIVER,
  type Harness,
  startHarness,
  storageClass,
} from "../support/sidecar-harness.ts";

const fixture = JSON.parse(
  readFileSync(new URL("../fixtures/upstream-behaviour.json", import.meta.url), "utf8"),
) as { events: Record<string, string> };

/** The CSI mock driver's topology key and the node of the capture. */
const TOPOLOGY_KEY = "io.kubernetes.storage.mock/node";
const NODE = "capture-node";

function eventWaiter(h: () => Harness) {
  return (name: string): Promise<CoreEvent> =>
    h().apiserver.waitFor(() =>
      h()
        .apiserver.objects(resources.coreEvents, "default")
        .find((e) => e.involvedObject.name === name && e.reason === "ProvisioningFailed"),
    );
}

const FAST = ["--kube-api-qps=1000", "--kube-api-burst=1000"];

// The StorageClasses are in the API server before the sidecar starts: it handles claims only
// after its informers listed them. A class put at runtime reaches the sidecar's StorageClass
// informer and the claim's informer on separate watches, so a claim put right after it may be
// handled before the class is known, and its first ProvisioningFailed event says so.

describe("ProvisioningFailed events against upstream's, driver without topology", () => {
  let h: Harness;
  const failed = eventWaiter(() => h);
  before(async () => {
    h = await startHarness();
    h.apiserver.put(
      storageClass("bad-parameter", { parameters: { "csi.storage.k8s.io/unknown": "x" } }),
    );
    h.apiserver.put(storageClass("capture-sc"));
    await h.start(FAST);
  });
  after(async () => {
    await h?.close();
  });

  it("an unknown reserved StorageClass parameter", async () => {
    h.apiserver.put(claim("bad-parameter", "bad-parameter"));
    assert.equal((await failed("bad-parameter")).message, fixture.events["bad-parameter"]);
  });

  it("a driver error: the gRPC error as it is", async () => {
    h.driver.once(
      "createVolume",
      fail(
        Code.OutOfRange,
        "Requested capacity 2199023255552 exceeds maximum allowed 1099511627776",
      ),
    );
    h.apiserver.put(claim("too-big", "capture-sc", { size: "2Ti" }));
    assert.equal((await failed("too-big")).message, fixture.events["too-big"]);
  });
});

describe("ProvisioningFailed events against upstream's, driver with topology", () => {
  let h: Harness;
  const failed = eventWaiter(() => h);
  before(async () => {
    h = await startHarness({ driver: { topology: { [TOPOLOGY_KEY]: "some-mock-node" } } });
    // The Node lacks the driver's topology label; its CSINode names the key.
    h.apiserver.put({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: NODE, labels: { "kubernetes.io/hostname": NODE } },
    });
    h.apiserver.put({
      apiVersion: "storage.k8s.io/v1",
      kind: "CSINode",
      metadata: { name: NODE },
      spec: { drivers: [{ name: DRIVER, nodeID: NODE, topologyKeys: [TOPOLOGY_KEY] }] },
    });
    h.apiserver.put(storageClass("topology-late", { volumeBindingMode: "WaitForFirstConsumer" }));
    h.apiserver.put(storageClass("topology-immediate"));
    await h.start(FAST);
  });
  after(async () => {
    await h?.close();
  });

  it("a selected node without the topology label", async () => {
    h.apiserver.put(
      claim("topology-late", "topology-late", {
        annotations: { "volume.kubernetes.io/selected-node": NODE },
      }),
    );
    assert.equal((await failed("topology-late")).message, fixture.events["topology-late"]);
  });

  it("no node carrying the driver's topology key", async () => {
    h.apiserver.put(claim("topology-immediate", "topology-immediate"));
    assert.equal(
      (await failed("topology-immediate")).message,
      fixture.events["topology-immediate"],
    );
  });
});
