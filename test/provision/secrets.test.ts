// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are StorageClass secret templates, not JS templates.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { PersistentVolume, StorageClass } from "../../src/kube/objects.ts";
import {
  deletionSecret,
  expandTemplate,
  isDns1123Label,
  isDns1123Subdomain,
  resolveSecretReference,
  resolveSecretReferences,
  SECRET_KINDS,
  type SecretKind,
  secretAnnotations,
  secretCredentials,
  secretParameterKeys,
} from "../../src/provision/secrets.ts";

const PV = "pvc-1234";
const CLAIM = {
  name: "data-0",
  namespace: "apps",
  annotations: { "example.com/secret": "team-secret", "example.com/bad": "Not_Valid" },
};
const P = "csi.storage.k8s.io/";

const PREFIX: Record<SecretKind, string> = {
  provisioner: "provisioner-",
  controllerPublish: "controller-publish-",
  nodeStage: "node-stage-",
  nodePublish: "node-publish-",
  controllerExpand: "controller-expand-",
  nodeExpand: "node-expand-",
  controllerModify: "controller-modify-",
};
const DEPRECATED: Partial<Record<SecretKind, string>> = {
  provisioner: "csiProvisionerSecret",
  controllerPublish: "csiControllerPublishSecret",
  nodeStage: "csiNodeStageSecret",
  nodePublish: "csiNodePublishSecret",
};

describe("resolveSecretReference()", () => {
  for (const kind of SECRET_KINDS) {
    describe(`for the ${kind} secret`, () => {
      const name = `${P}${PREFIX[kind]}secret-name`;
      const namespace = `${P}${PREFIX[kind]}secret-namespace`;

      it("reads its prefixed name and namespace", () => {
        assert.deepEqual(
          resolveSecretReference(kind, { [name]: "s1", [namespace]: "ns1" }, PV, CLAIM),
          { name: "s1", namespace: "ns1" },
        );
        assert.deepEqual(secretParameterKeys(kind).nameKey, name);
      });

      it("is undefined when the class names no secret", () => {
        assert.equal(resolveSecretReference(kind, { other: "x" }, PV, CLAIM), undefined);
        assert.equal(resolveSecretReference(kind, undefined, PV, CLAIM), undefined);
      });

      it("falls back to the default csi.storage.k8s.io/secret-name/-namespace", () => {
        assert.deepEqual(
          resolveSecretReference(
            kind,
            { [`${P}secret-name`]: "default", [`${P}secret-namespace`]: "kube-system" },
            PV,
            CLAIM,
          ),
          { name: "default", namespace: "kube-system" },
        );
      });

      it("prefers its own pair over the default", () => {
        assert.deepEqual(
          resolveSecretReference(
            kind,
            {
              [`${P}secret-name`]: "default",
              [`${P}secret-namespace`]: "kube-system",
              [name]: "own",
              [namespace]: "own-ns",
            },
            PV,
            CLAIM,
          ),
          { name: "own", namespace: "own-ns" },
        );
      });

      it("rejects a name without a namespace, and the reverse", () => {
        assert.throws(
          () => resolveSecretReference(kind, { [name]: "s1" }, PV, CLAIM),
          /^Error: failed to get name and namespace template from params: either name and namespace for \w+ secrets specified, Both must be specified$/,
        );
        assert.throws(
          () => resolveSecretReference(kind, { [namespace]: "ns1" }, PV, CLAIM),
          /either name and namespace for \w+ secrets specified, Both must be specified$/,
        );
      });

      it("rejects an empty name or namespace", () => {
        assert.throws(
          () => resolveSecretReference(kind, { [name]: "", [namespace]: "ns" }, PV, CLAIM),
          /^Error: failed to get name and namespace template from params: \w+ secrets specified in parameters but value of either namespace or name is empty$/,
        );
        assert.throws(
          () => resolveSecretReference(kind, { [name]: "s", [namespace]: "" }, PV, CLAIM),
          /secrets specified in parameters but value of either namespace or name is empty$/,
        );
      });

      it("rejects an incomplete default pair", () => {
        assert.throws(
          () => resolveSecretReference(kind, { [`${P}secret-name`]: "default" }, PV, CLAIM),
          /^Error: failed to get default name and namespace template from params: either name and namespace for Default secrets specified, Both must be specified$/,
        );
      });

      const deprecated = DEPRECATED[kind];
      if (deprecated) {
        it(`reads the deprecated ${deprecated}Name/Namespace keys`, () => {
          assert.deepEqual(
            resolveSecretReference(
              kind,
              { [`${deprecated}Name`]: "old", [`${deprecated}Namespace`]: "old-ns" },
              PV,
              CLAIM,
            ),
            { name: "old", namespace: "old-ns" },
          );
        });

        it("rejects the deprecated and the prefixed key together", () => {
          assert.throws(
            () =>
              resolveSecretReference(
                kind,
                { [`${deprecated}Name`]: "old", [name]: "new", [namespace]: "ns" },
                PV,
                CLAIM,
              ),
            /secrets specified in parameters with both "csi" and "csi.storage.k8s.io\/" keys$/,
          );
        });

        it("accepts a deprecated name with a prefixed namespace", () => {
          assert.deepEqual(
            resolveSecretReference(
              kind,
              { [`${deprecated}Name`]: "old", [namespace]: "ns" },
              PV,
              CLAIM,
            ),
            { name: "old", namespace: "ns" },
          );
        });
      } else {
        it("has no deprecated keys", () => {
          const keys = secretParameterKeys(kind);
          assert.equal(keys.deprecatedNameKey, undefined);
          assert.equal(keys.deprecatedNamespaceKey, undefined);
        });
      }
    });
  }

  describe("templates", () => {
    const params = (name: string, namespace: string) => ({
      [`${P}node-publish-secret-name`]: name,
      [`${P}node-publish-secret-namespace`]: namespace,
    });
    const resolve = (name: string, namespace: string) =>
      resolveSecretReference("nodePublish", params(name, namespace), PV, CLAIM);

    it("expands ${pv.name} and ${pvc.namespace} in the namespace", () => {
      assert.deepEqual(resolve("s", "${pv.name}"), { name: "s", namespace: PV });
      assert.deepEqual(resolve("s", "${pvc.namespace}-secrets"), {
        name: "s",
        namespace: "apps-secrets",
      });
    });

    it("expands ${pv.name}, ${pvc.name}, ${pvc.namespace} and a PVC annotation in the name", () => {
      assert.deepEqual(resolve("${pvc.namespace}.${pvc.name}.${pv.name}", "ns"), {
        name: `apps.data-0.${PV}`,
        namespace: "ns",
      });
      assert.deepEqual(resolve("${pvc.annotations['example.com/secret']}", "ns"), {
        name: "team-secret",
        namespace: "ns",
      });
    });

    it("expands the bare $name form like os.Expand", () => {
      assert.throws(() => resolve("$pvc.name", "ns"), /invalid tokens: \["pvc"\]/);
    });

    it("rejects the claim's name and annotations in the namespace", () => {
      assert.throws(
        () => resolve("s", "${pvc.name}"),
        /^Error: error resolving value "\$\{pvc.name\}": invalid tokens: \["pvc.name"\]$/,
      );
      assert.throws(
        () => resolve("s", "${pvc.annotations['example.com/secret']}"),
        /invalid tokens: \["pvc.annotations\['example.com\/secret'\]"\]/,
      );
    });

    it("lists every unknown token, sorted", () => {
      assert.throws(
        () => resolve("${zeta}-${alpha}-${zeta}", "ns"),
        /^Error: error resolving value "\$\{zeta\}-\$\{alpha\}-\$\{zeta\}": invalid tokens: \["alpha" "zeta"\]$/,
      );
    });

    it("rejects an annotation the claim does not have", () => {
      assert.throws(() => resolve("${pvc.annotations['missing']}", "ns"), /invalid tokens/);
    });

    it("knows only ${pv.name} without a claim", () => {
      const noClaim = (name: string, namespace: string) =>
        resolveSecretReference("nodePublish", params(name, namespace), PV);
      assert.deepEqual(noClaim("${pv.name}", "${pv.name}"), { name: PV, namespace: PV });
      assert.throws(() => noClaim("s", "${pvc.namespace}"), /invalid tokens: \["pvc.namespace"\]/);
      assert.throws(() => noClaim("${pvc.name}", "ns"), /invalid tokens: \["pvc.name"\]/);
    });

    it("requires a DNS-1123 label for the namespace", () => {
      assert.throws(() => resolve("s", "Bad_NS"), /"Bad_NS" is not a valid namespace name/);
      assert.throws(
        () => resolve("s", "${pv.name}.x"),
        /^Error: "\$\{pv.name\}.x" resolved to "pvc-1234.x" which is not a valid namespace name$/,
      );
    });

    it("requires a DNS-1123 subdomain for the name", () => {
      assert.throws(() => resolve("-bad", "ns"), /"-bad" is not a valid secret name/);
      assert.throws(
        () => resolve("${pvc.annotations['example.com/bad']}", "ns"),
        /resolved to "Not_Valid" which is not a valid secret name$/,
      );
    });
  });
});

describe("resolveSecretReferences()", () => {
  it("resolves every kind the class names", () => {
    assert.deepEqual(
      resolveSecretReferences(
        {
          [`${P}provisioner-secret-name`]: "prov",
          [`${P}provisioner-secret-namespace`]: "ns",
          [`${P}controller-modify-secret-name`]: "mod",
          [`${P}controller-modify-secret-namespace`]: "ns",
        },
        PV,
        CLAIM,
      ),
      {
        provisioner: { name: "prov", namespace: "ns" },
        controllerModify: { name: "mod", namespace: "ns" },
      },
    );
  });

  it("gives every kind the default secret", () => {
    const refs = resolveSecretReferences(
      { [`${P}secret-name`]: "${pvc.name}", [`${P}secret-namespace`]: "${pvc.namespace}" },
      PV,
      CLAIM,
    );
    assert.deepEqual(Object.keys(refs), [...SECRET_KINDS]);
    for (const kind of SECRET_KINDS)
      assert.deepEqual(refs[kind], { name: "data-0", namespace: "apps" });
  });
});

describe("expandTemplate()", () => {
  const params = new Map([
    ["a", "A"],
    ["x.y", "XY"],
  ]);

  it("follows os.Expand for the odd cases", () => {
    assert.equal(expandTemplate("plain", params), "plain");
    assert.equal(expandTemplate("${a}$a", params), "AA");
    assert.equal(expandTemplate("${x.y}", params), "XY");
    assert.equal(expandTemplate("cost$", params), "cost$");
    assert.equal(expandTemplate("a$/b", params), "a$/b");
    assert.equal(expandTemplate("a${}b", params), "ab");
    assert.equal(expandTemplate("a${b", params), "ab");
  });

  it("reports special and unknown names", () => {
    assert.throws(() => expandTemplate("$1", params), /invalid tokens: \["1"\]/);
    assert.throws(() => expandTemplate("${b}$c", params), /invalid tokens: \["b" "c"\]/);
  });
});

describe("isDns1123Label() and isDns1123Subdomain()", () => {
  it("check the Kubernetes name rules", () => {
    assert.equal(isDns1123Label("a".repeat(63)), true);
    assert.equal(isDns1123Label("a".repeat(64)), false);
    assert.equal(isDns1123Label("a.b"), false);
    assert.equal(isDns1123Label("kube-system"), true);
    assert.equal(isDns1123Subdomain("a.b-c.d"), true);
    assert.equal(isDns1123Subdomain("a..b"), false);
    assert.equal(isDns1123Subdomain("A"), false);
    assert.equal(isDns1123Subdomain("a".repeat(253)), true);
    assert.equal(isDns1123Subdomain("a".repeat(254)), false);
    assert.equal(isDns1123Subdomain(""), false);
  });
});

describe("secretAnnotations()", () => {
  it("writes empty deletion-secret annotations when there is no provisioner secret", () => {
    assert.deepEqual(secretAnnotations({}), {
      "volume.kubernetes.io/provisioner-deletion-secret-name": "",
      "volume.kubernetes.io/provisioner-deletion-secret-namespace": "",
    });
  });

  it("names the provisioner secret, and the modify secret only when set", () => {
    assert.deepEqual(
      secretAnnotations({
        provisioner: { name: "p", namespace: "pn" },
        controllerModify: { name: "m", namespace: "mn" },
        nodeStage: { name: "n", namespace: "nn" },
      }),
      {
        "volume.kubernetes.io/provisioner-deletion-secret-name": "p",
        "volume.kubernetes.io/provisioner-deletion-secret-namespace": "pn",
        "volume.kubernetes.io/controller-modify-secret-name": "m",
        "volume.kubernetes.io/controller-modify-secret-namespace": "mn",
      },
    );
  });
});

describe("deletionSecret()", () => {
  const pv = (annotations?: Record<string, string>, claimRef = true): PersistentVolume => ({
    metadata: { name: PV, ...(annotations ? { annotations } : {}) },
    spec: claimRef ? { claimRef: { name: "data-0", namespace: "apps" } } : {},
  });
  const cls: StorageClass = {
    metadata: { name: "fast" },
    provisioner: "d",
    parameters: {
      [`${P}provisioner-secret-name`]: "${pvc.name}-${pv.name}",
      [`${P}provisioner-secret-namespace`]: "${pvc.namespace}",
    },
  };
  const ann = "volume.kubernetes.io/provisioner-deletion-secret-";

  it("uses the PV's deletion-secret annotations", () => {
    assert.deepEqual(deletionSecret(pv({ [`${ann}name`]: "s", [`${ann}namespace`]: "n" }), cls), {
      kind: "secret",
      ref: { name: "s", namespace: "n" },
      from: "annotations",
    });
  });

  it("uses no secret when the annotations are empty, even if the class names one", () => {
    assert.deepEqual(deletionSecret(pv({ [`${ann}name`]: "", [`${ann}namespace`]: "" }), cls), {
      kind: "none",
    });
  });

  it("resolves the class's provisioner secret again for a PV without the annotations", () => {
    assert.deepEqual(deletionSecret(pv(), cls), {
      kind: "secret",
      ref: { name: `data-0-${PV}`, namespace: "apps" },
      from: "storageClass",
    });
  });

  it("uses no secret without the annotations and without a class or claimRef", () => {
    assert.deepEqual(deletionSecret(pv()), { kind: "none" });
    assert.deepEqual(deletionSecret(pv(undefined, false), cls), { kind: "none" });
    assert.deepEqual(deletionSecret(pv(), { ...cls, parameters: {} }), { kind: "none" });
  });

  it("throws for invalid class parameters", () => {
    assert.throws(
      () => deletionSecret(pv(), { ...cls, parameters: { [`${P}provisioner-secret-name`]: "s" } }),
      /either name and namespace for Provisioner secrets specified, Both must be specified/,
    );
  });
});

describe("secretCredentials()", () => {
  it("decodes every data key from base64 as UTF-8", () => {
    assert.deepEqual(
      secretCredentials({
        metadata: { name: "s" },
        data: { user: btoa("admin"), pass: "w7xiZXI=" },
      }),
      { user: "admin", pass: "über" },
    );
    assert.deepEqual(secretCredentials({ metadata: { name: "s" } }), {});
  });
});
