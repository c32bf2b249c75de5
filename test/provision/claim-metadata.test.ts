import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveCommand } from "../../src/cli/main-args.ts";
import {
  CLAIM_ANNOTATION_PARAMETER_PREFIX,
  CLAIM_LABEL_PARAMETER_PREFIX,
  claimMetadataParameters,
  NAMESPACE_LABEL_PARAMETER_PREFIX,
  selectedKey,
} from "../../src/provision/claim-metadata.ts";
import { buildCreateVolumeRequest } from "../../src/provision/request.ts";
import {
  claim as harnessClaim,
  storageClass as harnessClass,
  startHarness,
} from "../support/sidecar-harness.ts";
import { claim, config, DRIVER, lookups, storageClass } from "./fixtures.ts";

const labelled = claim(
  {},
  {
    labels: { "billing.example.com/team": "storage", app: "db", "billing.example.com/": "x" },
    annotations: {
      "volume.kubernetes.io/storage-provisioner": DRIVER,
      "billing.example.com/cost-center": "cc-42",
      "csi.storage.k8s.io/provisioner-secret-name": "creds",
      "kubectl.kubernetes.io/last-applied-configuration": "{}",
    },
  },
);

describe("claim metadata selection", () => {
  it("uses collision-free keys, one family per source", () => {
    assert.equal(CLAIM_LABEL_PARAMETER_PREFIX, "csi.storage.k8s.io/pvc/label/");
    assert.equal(CLAIM_ANNOTATION_PARAMETER_PREFIX, "csi.storage.k8s.io/pvc/annotation/");
    assert.equal(NAMESPACE_LABEL_PARAMETER_PREFIX, "csi.storage.k8s.io/namespace/label/");
  });

  it("copies the claim's labels and annotations and the namespace's labels with a selected prefix", () => {
    assert.deepEqual(
      claimMetadataParameters({
        prefixes: ["billing.example.com/"],
        claim: labelled,
        namespaceLabels: {
          "billing.example.com/owner": "team-a",
          "kubernetes.io/metadata.name": "apps",
        },
      }),
      {
        "csi.storage.k8s.io/pvc/label/billing.example.com/": "x",
        "csi.storage.k8s.io/pvc/label/billing.example.com/team": "storage",
        "csi.storage.k8s.io/pvc/annotation/billing.example.com/cost-center": "cc-42",
        "csi.storage.k8s.io/namespace/label/billing.example.com/owner": "team-a",
      },
    );
  });

  it("never copies secret references or the last-applied copy, whatever the prefixes", () => {
    assert.equal(selectedKey("csi.storage.k8s.io/provisioner-secret-name", ["csi."]), false);
    assert.equal(
      selectedKey("kubectl.kubernetes.io/last-applied-configuration", ["kubectl."]),
      false,
    );
    const all = claimMetadataParameters({
      prefixes: ["c", "k", "v", "a", "b"],
      claim: labelled,
      namespaceLabels: undefined,
    });
    assert.deepEqual(Object.keys(all).sort(), [
      "csi.storage.k8s.io/pvc/annotation/billing.example.com/cost-center",
      "csi.storage.k8s.io/pvc/annotation/volume.kubernetes.io/storage-provisioner",
      "csi.storage.k8s.io/pvc/label/app",
      "csi.storage.k8s.io/pvc/label/billing.example.com/",
      "csi.storage.k8s.io/pvc/label/billing.example.com/team",
    ]);
  });

  it("copies nothing without prefixes", () => {
    assert.deepEqual(
      claimMetadataParameters({ prefixes: [], claim: labelled, namespaceLabels: { a: "b" } }),
      {},
    );
  });
});

describe("--claim-metadata-prefixes", () => {
  const parse = (args: string[]) => resolveCommand(args, {});

  it("is off by default", () => {
    const r = parse([]);
    assert.ok(r.kind === "run");
    assert.deepEqual(r.config.claimMetadataPrefixes, []);
  });

  it("takes a comma-separated list; repeated flags append", () => {
    const r = parse([
      "--claim-metadata-prefixes=a.example.com/, b",
      "--claim-metadata-prefixes=c,a.example.com/",
    ]);
    assert.ok(r.kind === "run");
    assert.deepEqual(r.config.claimMetadataPrefixes, ["a.example.com/", "b", "c"]);
  });

  it("refuses a prefix under csi.storage.k8s.io/, naming it", () => {
    const r = parse(["--claim-metadata-prefixes=csi.storage.k8s.io/"]);
    assert.notEqual(r.kind, "run");
    assert.match(JSON.stringify(r), /csi\.storage\.k8s\.io\/\\" is reserved/);
  });
});

describe("CreateVolume with claim metadata", () => {
  const withNamespaces = (labels: Record<string, Record<string, string>>, failing = false) => {
    const l = lookups();
    const calls: string[] = [];
    return {
      calls,
      lookups: {
        ...l,
        getNamespaceLabels: async (name: string) => {
          calls.push(name);
          if (failing) throw new Error('namespaces "apps" is forbidden');
          return labels[name];
        },
      },
    };
  };

  it("adds the selected metadata next to the class's parameters", async () => {
    const { lookups: l, calls } = withNamespaces({ apps: { "billing.example.com/owner": "a" } });
    const r = await buildCreateVolumeRequest({
      config: config({
        claimMetadataPrefixes: ["billing.example.com/"],
        extraCreateMetadata: true,
      }),
      claim: labelled,
      storageClass: storageClass({ parameters: { tier: "gold" } }),
      lookups: l,
      random: () => 0,
    });
    assert.ok(r.kind === "ok");
    assert.deepEqual(calls, ["apps"]);
    assert.deepEqual(r.request.parameters, {
      tier: "gold",
      "csi.storage.k8s.io/pvc/name": "data",
      "csi.storage.k8s.io/pvc/namespace": "apps",
      "csi.storage.k8s.io/pv/name": r.pvName,
      "csi.storage.k8s.io/pvc/label/billing.example.com/": "x",
      "csi.storage.k8s.io/pvc/label/billing.example.com/team": "storage",
      "csi.storage.k8s.io/pvc/annotation/billing.example.com/cost-center": "cc-42",
      "csi.storage.k8s.io/namespace/label/billing.example.com/owner": "a",
    });
  });

  it("without the flag, reads no namespace and adds nothing", async () => {
    const { lookups: l, calls } = withNamespaces({ apps: { "billing.example.com/owner": "a" } });
    const r = await buildCreateVolumeRequest({
      config: config(),
      claim: labelled,
      storageClass: storageClass({ parameters: { tier: "gold" } }),
      lookups: l,
      random: () => 0,
    });
    assert.ok(r.kind === "ok");
    assert.deepEqual(calls, []);
    assert.deepEqual(r.request.parameters, { tier: "gold" });
  });

  it("retries when the namespace cannot be read, naming it and the permission", async () => {
    const { lookups: l } = withNamespaces({}, true);
    const r = await buildCreateVolumeRequest({
      config: config({ claimMetadataPrefixes: ["billing.example.com/"] }),
      claim: labelled,
      storageClass: storageClass(),
      lookups: l,
      random: () => 0,
    });
    assert.equal(r.kind, "error");
    assert.ok(r.kind === "error");
    assert.equal(r.outcome, "noChange");
    assert.match(r.message, /namespace apps .*get on namespaces.*forbidden/);
  });
});

describe("the sidecar with --claim-metadata-prefixes", () => {
  it("passes the selected claim and namespace metadata to the driver", async () => {
    const h = await startHarness();
    try {
      h.apiserver.put({
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name: "default", labels: { "billing.example.com/owner": "team-a" } },
      });
      await h.start([
        "--kube-api-qps=1000",
        "--kube-api-burst=1000",
        "--claim-metadata-prefixes=billing.example.com/",
      ]);
      h.apiserver.put(harnessClass("fast"));
      const c = harnessClaim("data", "fast");
      c.metadata.labels = { "billing.example.com/team": "storage", app: "db" };
      h.apiserver.put(c);
      const [call] = await h.driver.waitForCalls("createVolume");
      assert.deepEqual(call!.request.parameters, {
        "csi.storage.k8s.io/pvc/label/billing.example.com/team": "storage",
        "csi.storage.k8s.io/namespace/label/billing.example.com/owner": "team-a",
      });
    } finally {
      await h.close();
    }
  });
});
