/**
 * The manifests in deploy/ against the structure of the Kubernetes API: kinds that exist, the
 * fields each kind has and requires, references that resolve (selector and labels, volume
 * mounts and volumes, bindings and roles, the service account), RBAC rules that name real
 * groups, resources and verbs, and RBAC that grants what the provisioner uses — the upstream set
 * of reference §2.16, plus exactly the differences listed in deploy/rbac.yaml's header.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { loadAll } from "js-yaml";
import { resolveCommand } from "../../src/cli/main-args.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DEPLOY = join(ROOT, "deploy");

type Json = Record<string, unknown>;

interface Manifest {
  readonly file: string;
  /** 0-based position in its file. */
  readonly index: number;
  readonly doc: Json;
}

function isRecord(x: unknown): x is Json {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Every document of every YAML file in deploy/, empty documents dropped. */
function loadManifests(): Manifest[] {
  const out: Manifest[] = [];
  const files = readdirSync(DEPLOY)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();
  for (const file of files) {
    const docs = loadAll(readFileSync(join(DEPLOY, file), "utf8"));
    docs.forEach((doc, index) => {
      if (doc === null || doc === undefined) return;
      assert.ok(isRecord(doc), `${file} document ${index} is not a mapping`);
      out.push({ file, index, doc });
    });
  }
  return out;
}

const manifests = loadManifests();

function where(m: Manifest): string {
  const meta = isRecord(m.doc.metadata) ? m.doc.metadata : {};
  return `${m.file}#${m.index} ${String(m.doc.kind)} ${String(meta.name)}`;
}

function record(x: unknown, at: string): Json {
  assert.ok(isRecord(x), `${at}: expected a mapping, got ${JSON.stringify(x)}`);
  return x;
}

function list(x: unknown, at: string): unknown[] {
  assert.ok(Array.isArray(x), `${at}: expected a list, got ${JSON.stringify(x)}`);
  return x;
}

function str(x: unknown, at: string): string {
  assert.ok(typeof x === "string" && x !== "", `${at}: expected a non-empty string`);
  return x;
}

function strings(x: unknown, at: string): string[] {
  return list(x, at).map((s, i) => {
    assert.equal(typeof s, "string", `${at}[${i}]: expected a string`);
    return s as string;
  });
}

/** Fails on a field the API type does not have (kubectl --validate=strict would reject it). */
function onlyFields(x: Json, allowed: readonly string[], at: string): void {
  const unknown = Object.keys(x).filter((k) => !allowed.includes(k));
  assert.deepEqual(
    unknown,
    [],
    `${at}: fields that do not exist in the API: ${unknown.join(", ")}`,
  );
}

function byKind(kind: string): Manifest[] {
  return manifests.filter((m) => m.doc.kind === kind);
}

function meta(m: Manifest): { name: string; namespace: string | undefined; labels: Json } {
  const md = record(m.doc.metadata, `${where(m)} metadata`);
  return {
    name: str(md.name, `${where(m)} metadata.name`),
    namespace: typeof md.namespace === "string" ? md.namespace : undefined,
    labels: isRecord(md.labels) ? md.labels : {},
  };
}

// --- The API's structure ----------------------------------------------------------------------

/** Kinds these manifests may use: apiVersion, scope and the top-level fields of the type. */
const KINDS: Record<string, { apiVersion: string; namespaced: boolean; fields: string[] }> = {
  ServiceAccount: {
    apiVersion: "v1",
    namespaced: true,
    fields: ["secrets", "imagePullSecrets", "automountServiceAccountToken"],
  },
  ConfigMap: { apiVersion: "v1", namespaced: true, fields: ["data", "binaryData", "immutable"] },
  Service: { apiVersion: "v1", namespaced: true, fields: ["spec"] },
  Deployment: { apiVersion: "apps/v1", namespaced: true, fields: ["spec"] },
  StatefulSet: { apiVersion: "apps/v1", namespaced: true, fields: ["spec"] },
  DaemonSet: { apiVersion: "apps/v1", namespaced: true, fields: ["spec"] },
  ClusterRole: {
    apiVersion: "rbac.authorization.k8s.io/v1",
    namespaced: false,
    fields: ["rules", "aggregationRule"],
  },
  ClusterRoleBinding: {
    apiVersion: "rbac.authorization.k8s.io/v1",
    namespaced: false,
    fields: ["subjects", "roleRef"],
  },
  Role: { apiVersion: "rbac.authorization.k8s.io/v1", namespaced: true, fields: ["rules"] },
  RoleBinding: {
    apiVersion: "rbac.authorization.k8s.io/v1",
    namespaced: true,
    fields: ["subjects", "roleRef"],
  },
  StorageClass: {
    apiVersion: "storage.k8s.io/v1",
    namespaced: false,
    fields: [
      "provisioner",
      "parameters",
      "reclaimPolicy",
      "mountOptions",
      "allowVolumeExpansion",
      "volumeBindingMode",
      "allowedTopologies",
    ],
  },
  CSIDriver: { apiVersion: "storage.k8s.io/v1", namespaced: false, fields: ["spec"] },
};

const OBJECT_META_FIELDS = ["name", "namespace", "labels", "annotations"];

/** RFC 1123 subdomain (object names) and label (container, volume, port names). */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** A label value: at most 63 characters, alphanumerics at both ends, `-_.` inside. */
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/**
 * The resources of each API group as the API server's discovery lists them (Kubernetes 1.36;
 * the snapshot group is the external-snapshotter CRDs), with their verbs. Subresources are
 * `resource/sub`.
 */
const STANDARD_VERBS = [
  "get",
  "list",
  "watch",
  "create",
  "update",
  "patch",
  "delete",
  "deletecollection",
];
const API_RESOURCES: Record<string, Record<string, readonly string[]>> = {
  "": {
    persistentvolumes: STANDARD_VERBS,
    "persistentvolumes/status": ["get", "update", "patch"],
    persistentvolumeclaims: STANDARD_VERBS,
    "persistentvolumeclaims/status": ["get", "update", "patch"],
    events: STANDARD_VERBS,
    nodes: STANDARD_VERBS,
    pods: STANDARD_VERBS,
    secrets: STANDARD_VERBS,
    configmaps: STANDARD_VERBS,
    services: STANDARD_VERBS,
    endpoints: STANDARD_VERBS,
    namespaces: ["get", "list", "watch", "create", "update", "patch", "delete"],
    serviceaccounts: STANDARD_VERBS,
    "serviceaccounts/token": ["create"],
  },
  "events.k8s.io": { events: STANDARD_VERBS },
  "storage.k8s.io": {
    storageclasses: STANDARD_VERBS,
    csinodes: STANDARD_VERBS,
    csidrivers: STANDARD_VERBS,
    volumeattachments: STANDARD_VERBS,
    "volumeattachments/status": ["get", "update", "patch"],
    csistoragecapacities: STANDARD_VERBS,
    volumeattributesclasses: STANDARD_VERBS,
  },
  "snapshot.storage.k8s.io": {
    volumesnapshots: STANDARD_VERBS,
    "volumesnapshots/status": ["get", "update", "patch"],
    volumesnapshotcontents: STANDARD_VERBS,
    "volumesnapshotcontents/status": ["get", "update", "patch"],
    volumesnapshotclasses: STANDARD_VERBS,
  },
  "coordination.k8s.io": { leases: STANDARD_VERBS },
  "gateway.networking.k8s.io": { referencegrants: STANDARD_VERBS },
  apps: {
    replicasets: STANDARD_VERBS,
    deployments: STANDARD_VERBS,
    statefulsets: STANDARD_VERBS,
    daemonsets: STANDARD_VERBS,
  },
};

const CONTAINER_FIELDS = [
  "name",
  "image",
  "command",
  "args",
  "workingDir",
  "ports",
  "envFrom",
  "env",
  "resources",
  "resizePolicy",
  "restartPolicy",
  "volumeMounts",
  "volumeDevices",
  "livenessProbe",
  "readinessProbe",
  "startupProbe",
  "lifecycle",
  "terminationMessagePath",
  "terminationMessagePolicy",
  "imagePullPolicy",
  "securityContext",
  "stdin",
  "stdinOnce",
  "tty",
];
const POD_SPEC_FIELDS = [
  "volumes",
  "initContainers",
  "containers",
  "restartPolicy",
  "terminationGracePeriodSeconds",
  "activeDeadlineSeconds",
  "dnsPolicy",
  "nodeSelector",
  "serviceAccountName",
  "automountServiceAccountToken",
  "nodeName",
  "hostNetwork",
  "hostPID",
  "hostIPC",
  "shareProcessNamespace",
  "securityContext",
  "imagePullSecrets",
  "hostname",
  "subdomain",
  "affinity",
  "schedulerName",
  "tolerations",
  "hostAliases",
  "priorityClassName",
  "priority",
  "dnsConfig",
  "readinessGates",
  "runtimeClassName",
  "enableServiceLinks",
  "preemptionPolicy",
  "overhead",
  "topologySpreadConstraints",
  "setHostnameAsFQDN",
  "os",
  "hostUsers",
  "schedulingGates",
  "resourceClaims",
  "resources",
];
const DEPLOYMENT_SPEC_FIELDS = [
  "replicas",
  "selector",
  "template",
  "strategy",
  "minReadySeconds",
  "revisionHistoryLimit",
  "paused",
  "progressDeadlineSeconds",
];
const VOLUME_SOURCES = [
  "emptyDir",
  "hostPath",
  "configMap",
  "secret",
  "projected",
  "persistentVolumeClaim",
  "csi",
  "downwardAPI",
  "ephemeral",
  "image",
];
const PROBE_FIELDS = [
  "exec",
  "httpGet",
  "tcpSocket",
  "grpc",
  "initialDelaySeconds",
  "timeoutSeconds",
  "periodSeconds",
  "successThreshold",
  "failureThreshold",
  "terminationGracePeriodSeconds",
];
/** Pod fields a container's env can take with `fieldRef` (the downward API). */
const FIELD_REF_PATHS = [
  "metadata.name",
  "metadata.namespace",
  "metadata.uid",
  "spec.nodeName",
  "spec.serviceAccountName",
  "status.hostIP",
  "status.hostIPs",
  "status.podIP",
  "status.podIPs",
];

// --- What the provisioner needs ---------------------------------------------------------------

type Scope = "cluster" | "namespace";
interface Grant {
  readonly scope: Scope;
  readonly group: string;
  readonly resource: string;
  readonly verbs: readonly string[];
}

/**
 * Upstream external-provisioner's RBAC (reference §2.16), which the provisioner needs at least:
 * the ClusterRole's rules cluster-wide and the Role's in the provisioner's namespace. "full" on
 * leases is upstream's get/watch/list/delete/update/create, on csistoragecapacities the seven
 * verbs of its rule.
 */
const REQUIRED_RBAC: readonly Grant[] = [
  {
    scope: "cluster",
    group: "",
    resource: "persistentvolumes",
    verbs: ["get", "list", "watch", "create", "patch", "delete"],
  },
  {
    scope: "cluster",
    group: "",
    resource: "persistentvolumeclaims",
    verbs: ["get", "list", "watch", "update"],
  },
  {
    scope: "cluster",
    group: "storage.k8s.io",
    resource: "storageclasses",
    verbs: ["get", "list", "watch"],
  },
  {
    scope: "cluster",
    group: "",
    resource: "events",
    verbs: ["list", "watch", "create", "update", "patch"],
  },
  {
    scope: "cluster",
    group: "snapshot.storage.k8s.io",
    resource: "volumesnapshots",
    verbs: ["get", "list", "watch", "update"],
  },
  {
    scope: "cluster",
    group: "snapshot.storage.k8s.io",
    resource: "volumesnapshotcontents",
    verbs: ["get", "list"],
  },
  {
    scope: "cluster",
    group: "storage.k8s.io",
    resource: "csinodes",
    verbs: ["get", "list", "watch"],
  },
  { scope: "cluster", group: "", resource: "nodes", verbs: ["get", "list", "watch"] },
  {
    scope: "cluster",
    group: "storage.k8s.io",
    resource: "volumeattachments",
    verbs: ["get", "list", "watch"],
  },
  {
    scope: "namespace",
    group: "coordination.k8s.io",
    resource: "leases",
    verbs: ["get", "watch", "list", "delete", "update", "create"],
  },
  {
    scope: "namespace",
    group: "storage.k8s.io",
    resource: "csistoragecapacities",
    verbs: ["get", "list", "watch", "create", "update", "patch", "delete"],
  },
  { scope: "namespace", group: "", resource: "pods", verbs: ["get"] },
  { scope: "namespace", group: "apps", resource: "replicasets", verbs: ["get"] },
];

/** One (scope, group, resource, verb) a rule grants, as a comparable key. */
function key(scope: Scope, group: string, resource: string, verb: string): string {
  return `${scope} ${group === "" ? "core" : group}/${resource} ${verb}`;
}

/** What the RBAC in deploy/ grants to the provisioner's ServiceAccount, as keys. */
function granted(): Set<string> {
  const out = new Set<string>();
  const sa = provisionerServiceAccount();
  for (const binding of [...byKind("ClusterRoleBinding"), ...byKind("RoleBinding")]) {
    const subjects = list(binding.doc.subjects, `${where(binding)} subjects`).map((s) =>
      record(s, `${where(binding)} subject`),
    );
    if (
      !subjects.some(
        (s) => s.kind === "ServiceAccount" && s.name === sa.name && s.namespace === sa.namespace,
      )
    ) {
      continue;
    }
    const ref = record(binding.doc.roleRef, `${where(binding)} roleRef`);
    const role = [...byKind("ClusterRole"), ...byKind("Role")].find(
      (r) => r.doc.kind === ref.kind && meta(r).name === ref.name,
    );
    assert.ok(
      role,
      `${where(binding)}: roleRef ${String(ref.kind)} ${String(ref.name)} is not defined`,
    );
    const scope: Scope = binding.doc.kind === "ClusterRoleBinding" ? "cluster" : "namespace";
    for (const rule of list(role.doc.rules, `${where(role)} rules`)) {
      const r = record(rule, `${where(role)} rule`);
      for (const group of strings(r.apiGroups, `${where(role)} apiGroups`)) {
        for (const resource of strings(r.resources, `${where(role)} resources`)) {
          for (const verb of strings(r.verbs, `${where(role)} verbs`)) {
            out.add(key(scope, group, resource, verb));
            // A ClusterRole's grant cluster-wide covers every namespace too.
            if (scope === "cluster") out.add(key("namespace", group, resource, verb));
          }
        }
      }
    }
  }
  return out;
}

/**
 * The documented differences from upstream: the bullets of deploy/rbac.yaml's header comment,
 * `#   - <resource> [(note)]: <verbs> — <reason>`. A bullet that starts with prose instead of
 * verbs (leases: "also used for ...") documents a new use without new verbs.
 */
function documentedExtras(): Map<string, string[]> {
  const text = readFileSync(join(DEPLOY, "rbac.yaml"), "utf8");
  const header: string[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("#")) break;
    header.push(line);
  }
  const extras = new Map<string, string[]>();
  const verbList = new RegExp(
    `^((?:${STANDARD_VERBS.join("|")})(?:,\\s*(?:${STANDARD_VERBS.join("|")}))*)\\b`,
  );
  for (const line of header) {
    const m = /^#\s+-\s+([a-z]+)(?:\s+\([^)]*\))?:\s+(.*)$/.exec(line);
    if (!m) continue;
    const verbs = verbList.exec(m[2] ?? "")?.[1]?.split(/,\s*/) ?? [];
    extras.set(m[1] ?? "", verbs);
  }
  return extras;
}

function provisionerServiceAccount(): { name: string; namespace: string } {
  const deployment = provisionerDeployment();
  const spec = podSpec(deployment);
  const name = str(spec.serviceAccountName, `${where(deployment)} serviceAccountName`);
  return { name, namespace: meta(deployment).namespace ?? "default" };
}

function provisionerDeployment(): Manifest {
  const found = byKind("Deployment").filter((m) =>
    containers(m).some((c) => String(c.image).includes("csi-provisioner")),
  );
  assert.equal(found.length, 1, "exactly one Deployment runs the csi-provisioner image");
  return found[0] as Manifest;
}

function podSpec(m: Manifest): Json {
  const spec = record(m.doc.spec, `${where(m)} spec`);
  const template = record(spec.template, `${where(m)} spec.template`);
  return record(template.spec, `${where(m)} spec.template.spec`);
}

function containers(m: Manifest): Json[] {
  return list(podSpec(m).containers, `${where(m)} containers`).map((c, i) =>
    record(c, `${where(m)} containers[${i}]`),
  );
}

function provisionerContainer(): Json {
  const c = containers(provisionerDeployment()).find((x) =>
    String(x.image).includes("csi-provisioner"),
  );
  assert.ok(c);
  return c;
}

// --- Tests ------------------------------------------------------------------------------------

describe("deploy/ manifests", () => {
  it("are parsed from every YAML file in deploy/", () => {
    const files = new Set(manifests.map((m) => m.file));
    assert.ok(files.has("rbac.yaml") && files.has("deployment.yaml"), [...files].join(", "));
    assert.ok(manifests.length >= 6, `only ${manifests.length} documents`);
  });

  it("use only kinds the API has, with their apiVersion and top-level fields", () => {
    for (const m of manifests) {
      const kind = str(m.doc.kind, `${m.file}#${m.index} kind`);
      const known = KINDS[kind];
      assert.ok(known, `${where(m)}: unknown kind ${kind}`);
      assert.equal(m.doc.apiVersion, known.apiVersion, `${where(m)}: apiVersion`);
      onlyFields(m.doc, ["apiVersion", "kind", "metadata", ...known.fields], where(m));
    }
  });

  it("name every object validly, with a namespace exactly when the kind is namespaced", () => {
    for (const m of manifests) {
      const md = record(m.doc.metadata, `${where(m)} metadata`);
      onlyFields(md, OBJECT_META_FIELDS, `${where(m)} metadata`);
      const { name, namespace, labels } = meta(m);
      assert.match(name, DNS_SUBDOMAIN, `${where(m)} metadata.name`);
      assert.ok(name.length <= 253, `${where(m)} metadata.name is too long`);
      const namespaced = KINDS[String(m.doc.kind)]?.namespaced;
      if (namespaced) assert.ok(namespace && DNS_LABEL.test(namespace), `${where(m)}: namespace`);
      else
        assert.equal(namespace, undefined, `${where(m)}: a cluster-scoped object has no namespace`);
      for (const [k, v] of Object.entries(labels)) {
        assert.ok(
          typeof v === "string" && v.length <= 63 && LABEL_VALUE.test(v),
          `${where(m)} label ${k}`,
        );
      }
    }
  });

  it("define each object once", () => {
    const seen = new Set<string>();
    for (const m of manifests) {
      const { name, namespace } = meta(m);
      const id = `${String(m.doc.kind)} ${namespace ?? ""}/${name}`;
      assert.ok(!seen.has(id), `${id} is defined twice`);
      seen.add(id);
    }
  });
});

describe("deploy/deployment.yaml", () => {
  it("has a selector that matches its pod template's labels", () => {
    for (const m of byKind("Deployment")) {
      const spec = record(m.doc.spec, `${where(m)} spec`);
      onlyFields(spec, DEPLOYMENT_SPEC_FIELDS, `${where(m)} spec`);
      const selector = record(spec.selector, `${where(m)} spec.selector`);
      const matchLabels = record(selector.matchLabels, `${where(m)} spec.selector.matchLabels`);
      assert.ok(Object.keys(matchLabels).length > 0, `${where(m)}: empty selector`);
      const template = record(spec.template, `${where(m)} spec.template`);
      const labels = record(
        record(template.metadata, "template.metadata").labels,
        "template labels",
      );
      for (const [k, v] of Object.entries(matchLabels)) {
        assert.equal(
          labels[k],
          v,
          `${where(m)}: the template lacks the selector's label ${k}=${String(v)}`,
        );
      }
    }
  });

  it("has containers with a unique name and an image, and only fields a container has", () => {
    for (const m of byKind("Deployment")) {
      onlyFields(podSpec(m), POD_SPEC_FIELDS, `${where(m)} pod spec`);
      const cs = containers(m);
      assert.ok(cs.length > 0, `${where(m)}: no containers`);
      const names = cs.map((c, i) => str(c.name, `${where(m)} containers[${i}].name`));
      assert.equal(new Set(names).size, names.length, `${where(m)}: duplicate container names`);
      for (const c of cs) {
        const at = `${where(m)} container ${String(c.name)}`;
        onlyFields(c, CONTAINER_FIELDS, at);
        assert.match(String(c.name), DNS_LABEL, `${at}: name`);
        str(c.image, `${at}: image`);
        if (c.args !== undefined) strings(c.args, `${at}: args`);
      }
    }
  });

  it("mounts only declared volumes, each with one source, and declares none it does not mount", () => {
    for (const m of byKind("Deployment")) {
      const volumes = list(podSpec(m).volumes ?? [], `${where(m)} volumes`).map((v) =>
        record(v, "volume"),
      );
      const declared = new Set<string>();
      for (const v of volumes) {
        const name = str(v.name, `${where(m)} volume name`);
        assert.match(name, DNS_LABEL, `${where(m)} volume ${name}`);
        const sources = Object.keys(v).filter((k) => k !== "name");
        assert.equal(
          sources.length,
          1,
          `${where(m)} volume ${name}: exactly one source, got ${sources.join(", ")}`,
        );
        assert.ok(
          VOLUME_SOURCES.includes(sources[0] ?? ""),
          `${where(m)} volume ${name}: source ${sources[0]}`,
        );
        declared.add(name);
      }
      const used = new Set<string>();
      for (const c of containers(m)) {
        for (const vm of list(c.volumeMounts ?? [], `${where(m)} volumeMounts`)) {
          const mount = record(vm, "volumeMount");
          const name = str(mount.name, `${where(m)} ${String(c.name)} volumeMount name`);
          assert.ok(
            declared.has(name),
            `${where(m)} container ${String(c.name)} mounts undeclared volume ${name}`,
          );
          assert.ok(
            String(mount.mountPath).startsWith("/"),
            `${where(m)} ${name}: mountPath must be absolute`,
          );
          used.add(name);
        }
      }
      assert.deepEqual(
        [...declared].filter((d) => !used.has(d)),
        [],
        `${where(m)}: volumes never mounted`,
      );
    }
  });

  it("uses valid ports, probes that name a declared port, and downward-API env", () => {
    for (const m of byKind("Deployment")) {
      for (const c of containers(m)) {
        const at = `${where(m)} container ${String(c.name)}`;
        const portNames = new Set<string>();
        for (const p of list(c.ports ?? [], `${at} ports`)) {
          const port = record(p, `${at} port`);
          const n = port.containerPort;
          assert.ok(
            Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535,
            `${at}: containerPort`,
          );
          if (port.name !== undefined) {
            // IANA_SVC_NAME: at most 15 characters, a letter somewhere, no double hyphen.
            const name = String(port.name);
            assert.ok(
              name.length <= 15 &&
                /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) &&
                /[a-z]/.test(name) &&
                !name.includes("--"),
              `${at}: port name ${name}`,
            );
            portNames.add(name);
          }
          if (port.protocol !== undefined)
            assert.ok(["TCP", "UDP", "SCTP"].includes(String(port.protocol)), `${at}: protocol`);
        }
        for (const probeName of ["livenessProbe", "readinessProbe", "startupProbe"]) {
          if (c[probeName] === undefined) continue;
          const probe = record(c[probeName], `${at} ${probeName}`);
          onlyFields(probe, PROBE_FIELDS, `${at} ${probeName}`);
          const handlers = ["exec", "httpGet", "tcpSocket", "grpc"].filter(
            (h) => probe[h] !== undefined,
          );
          assert.equal(handlers.length, 1, `${at} ${probeName}: exactly one handler`);
          const target = record(probe[handlers[0] ?? ""], `${at} ${probeName} handler`);
          if (typeof target.port === "string") {
            assert.ok(
              portNames.has(target.port),
              `${at} ${probeName}: port ${target.port} is not a declared port name`,
            );
          }
          if (handlers[0] === "httpGet")
            assert.ok(String(target.path).startsWith("/"), `${at} ${probeName}: path`);
        }
        for (const e of list(c.env ?? [], `${at} env`)) {
          const env = record(e, `${at} env`);
          str(env.name, `${at} env name`);
          if (env.valueFrom !== undefined) {
            const from = record(env.valueFrom, `${at} env ${String(env.name)} valueFrom`);
            if (from.fieldRef !== undefined) {
              const path = record(from.fieldRef, "fieldRef").fieldPath;
              assert.ok(
                FIELD_REF_PATHS.includes(String(path)),
                `${at} env ${String(env.name)}: fieldPath ${String(path)}`,
              );
            }
          }
        }
      }
    }
  });

  it("runs as the ServiceAccount that the RBAC binds, in the same namespace", () => {
    const sa = provisionerServiceAccount();
    const defined = byKind("ServiceAccount").some(
      (m) => meta(m).name === sa.name && (meta(m).namespace ?? "default") === sa.namespace,
    );
    assert.ok(defined, `ServiceAccount ${sa.namespace}/${sa.name} is not defined in deploy/`);
  });

  it("gives the provisioner arguments that the project's parser accepts, for the run command", () => {
    const c = provisionerContainer();
    const args = strings(c.args ?? [], "provisioner args");
    const env: Record<string, string> = {};
    for (const e of list(c.env ?? [], "provisioner env")) {
      const x = record(e, "env");
      // Values from the downward API, as the kubelet would fill them in.
      env[String(x.name)] =
        typeof x.value === "string" ? x.value : `from-${String(x.name).toLowerCase()}`;
    }
    const resolved = resolveCommand(args, env);
    assert.ok(resolved.kind !== "error", resolved.kind === "error" ? resolved.message : "");
    assert.equal(resolved.kind, "run");
  });

  it("shares the CSI socket's directory with the driver container, as in the design's example", () => {
    // DESIGN.md §1: --csi-address=/csi/sunnyfs-provisioner-share.sock, --timeout=150s, and the
    // socket-dir volume at /csi in both containers.
    const c = provisionerContainer();
    const resolved = resolveCommand(strings(c.args ?? [], "args"), {
      POD_NAMESPACE: "default",
      POD_NAME: "p",
    });
    assert.ok(resolved.kind === "run");
    assert.equal(resolved.config.csiAddress, "/csi/sunnyfs-provisioner-share.sock");
    assert.equal(resolved.config.timeoutMs, 150_000);
    const socketDir = posix.dirname(resolved.config.csiAddress.replace(/^unix:\/\//, ""));
    const mounts = list(c.volumeMounts, "volumeMounts").map((v) => record(v, "volumeMount"));
    const mount = mounts.find((v) => v.mountPath === socketDir);
    assert.ok(mount, `the provisioner mounts nothing at ${socketDir}`);
    const others = containers(provisionerDeployment()).filter((x) => x !== c);
    const driverMounts = others.flatMap((x) =>
      list(x.volumeMounts ?? [], "volumeMounts").map((v) => record(v, "volumeMount").name),
    );
    assert.ok(
      driverMounts.includes(mount.name),
      `no other container mounts volume ${String(mount.name)}`,
    );
    const volume = list(podSpec(provisionerDeployment()).volumes, "volumes")
      .map((v) => record(v, "volume"))
      .find((v) => v.name === mount.name);
    assert.ok(volume && volume.emptyDir !== undefined, "the socket directory is an emptyDir");
  });

  it("serves the health port the liveness probe checks, and enables leader election for it", () => {
    const c = provisionerContainer();
    const resolved = resolveCommand(strings(c.args ?? [], "args"), {
      POD_NAMESPACE: "default",
      POD_NAME: "p",
    });
    assert.ok(resolved.kind === "run");
    const port = Number(/:(\d+)$/.exec(resolved.config.httpEndpoint)?.[1]);
    const ports = list(c.ports ?? [], "ports").map((p) => record(p, "port"));
    const named = ports.find((p) => p.containerPort === port);
    assert.ok(named, `--http-endpoint ${resolved.config.httpEndpoint} has no containerPort`);
    const probe = record(record(c.livenessProbe, "livenessProbe").httpGet, "httpGet");
    assert.ok(
      probe.port === named.name || probe.port === port,
      "the liveness probe checks another port",
    );
    if (probe.path === "/healthz/leader-election")
      assert.equal(resolved.config.leaderElection, true);
  });
});

describe("deploy/rbac.yaml", () => {
  it("names real API groups, resources and verbs in every rule", () => {
    for (const m of [...byKind("ClusterRole"), ...byKind("Role")]) {
      for (const [i, rule] of list(m.doc.rules, `${where(m)} rules`).entries()) {
        const at = `${where(m)} rules[${i}]`;
        const r = record(rule, at);
        onlyFields(r, ["apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"], at);
        const verbs = strings(r.verbs, `${at} verbs`);
        assert.ok(verbs.length > 0, `${at}: no verbs`);
        for (const group of strings(r.apiGroups, `${at} apiGroups`)) {
          const groupResources = API_RESOURCES[group];
          assert.ok(groupResources, `${at}: API group "${group}" does not exist`);
          for (const resource of strings(r.resources, `${at} resources`)) {
            const resourceVerbs = groupResources[resource];
            assert.ok(resourceVerbs, `${at}: no resource ${resource} in group "${group}"`);
            for (const verb of verbs) {
              assert.ok(
                resourceVerbs.includes(verb),
                `${at}: ${group}/${resource} has no verb ${verb}`,
              );
            }
          }
        }
      }
    }
  });

  it("binds each role to the ServiceAccount defined here, by a roleRef that resolves", () => {
    const bindings = [...byKind("ClusterRoleBinding"), ...byKind("RoleBinding")];
    assert.ok(bindings.length >= 2, "a ClusterRoleBinding and a RoleBinding");
    for (const b of bindings) {
      const ref = record(b.doc.roleRef, `${where(b)} roleRef`);
      onlyFields(ref, ["apiGroup", "kind", "name"], `${where(b)} roleRef`);
      assert.equal(ref.apiGroup, "rbac.authorization.k8s.io", `${where(b)} roleRef.apiGroup`);
      if (b.doc.kind === "ClusterRoleBinding")
        assert.equal(ref.kind, "ClusterRole", `${where(b)} roleRef.kind`);
      else assert.ok(ref.kind === "Role" || ref.kind === "ClusterRole", `${where(b)} roleRef.kind`);
      const role = byKind(String(ref.kind)).find((r) => meta(r).name === ref.name);
      assert.ok(role, `${where(b)}: ${String(ref.kind)} ${String(ref.name)} is not defined`);
      if (ref.kind === "Role")
        assert.equal(
          meta(role).namespace,
          meta(b).namespace,
          `${where(b)}: the Role is in another namespace`,
        );
      for (const s of list(b.doc.subjects, `${where(b)} subjects`)) {
        const subject = record(s, `${where(b)} subject`);
        assert.equal(subject.kind, "ServiceAccount", `${where(b)} subject kind`);
        const ns = str(
          subject.namespace,
          `${where(b)}: a ServiceAccount subject needs a namespace`,
        );
        const sa = byKind("ServiceAccount").find(
          (x) => meta(x).name === subject.name && meta(x).namespace === ns,
        );
        assert.ok(sa, `${where(b)}: ServiceAccount ${ns}/${String(subject.name)} is not defined`);
      }
    }
  });

  it("grants every permission of upstream's RBAC (reference §2.16) in its scope", () => {
    const have = granted();
    const missing: string[] = [];
    for (const g of REQUIRED_RBAC) {
      for (const verb of g.verbs) {
        const k = key(g.scope, g.group, g.resource, verb);
        if (!have.has(k)) missing.push(k);
      }
    }
    assert.deepEqual(missing, []);
  });

  it("grants nothing beyond upstream's RBAC that its header does not list as a difference", () => {
    const required = new Set<string>();
    for (const g of REQUIRED_RBAC) {
      for (const verb of g.verbs) {
        required.add(key(g.scope, g.group, g.resource, verb));
        if (g.scope === "cluster") required.add(key("namespace", g.group, g.resource, verb));
      }
    }
    const extras = documentedExtras();
    const undocumented = [...granted()]
      .filter((k) => !required.has(k))
      .filter((k) => {
        const [, groupResource = "", verb = ""] = k.split(" ");
        const resource = groupResource.split("/")[1] ?? "";
        return !(extras.get(resource) ?? []).includes(verb);
      });
    assert.deepEqual(undocumented, []);
  });

  it("grants each difference its header lists", () => {
    const have = [...granted()];
    const extras = documentedExtras();
    assert.ok(extras.size > 0, "the header lists the differences from upstream");
    for (const [resource, verbs] of extras) {
      for (const verb of verbs) {
        assert.ok(
          have.some((k) => k.endsWith(`/${resource} ${verb}`)),
          `the header lists ${resource}: ${verb}, which no rule grants`,
        );
      }
      if (verbs.length === 0) {
        assert.ok(
          have.some((k) => k.includes(`/${resource} `)),
          `the header names ${resource}, which no rule grants`,
        );
      }
    }
  });

  it("grants some access to every API resource the provisioner's code uses", async () => {
    const { resources } = await import("../../src/kube/resources.ts");
    const used = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        // The dev kit (embedded API server, sample driver) and the generated code are not the provisioner.
        if (entry.isDirectory()) {
          if (!["dev", "gen"].includes(entry.name)) walk(path);
        } else if (entry.name.endsWith(".ts")) {
          for (const m of readFileSync(path, "utf8").matchAll(/\bresources\.([a-zA-Z]+)\b/g))
            used.add(m[1] ?? "");
        }
      }
    };
    walk(join(ROOT, "src"));
    const table = resources as unknown as Record<string, { group: string; plural: string }>;
    const have = [...granted()];
    const uncovered = [...used]
      .filter((name) => table[name] !== undefined)
      .map((name) => table[name] as { group: string; plural: string })
      .filter(
        (r) =>
          !have.some((k) => k.split(" ")[1] === `${r.group === "" ? "core" : r.group}/${r.plural}`),
      )
      .map((r) => `${r.group === "" ? "core" : r.group}/${r.plural}`);
    assert.ok(used.size > 0, "found no resources.* in src/");
    assert.deepEqual(uncovered, []);
  });
});
