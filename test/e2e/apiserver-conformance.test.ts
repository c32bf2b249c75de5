/**
 * Conformance of the test API server (src/dev/apiserver) with a real kube-apiserver, where
 * Kubernetes semantics matter to the provisioner: defaults, Status errors, optimistic
 * concurrency, the three patch formats, finalizers and graceful deletion, preconditions, the
 * status subresource, watches, selectors, pagination, generateName and events.
 *
 * Each case is a short sequence of calls through the project's client (`createKubeApi` over a
 * `KubeTransport`), run once against each server. Every answer (object, list, watch event or
 * error Status) goes into a transcript, which is normalised (uids and object resourceVersions
 * become ordinal tokens, so "same" and "different" survive; server timestamps, list
 * resourceVersions, continue tokens and generated name suffixes are masked; managedFields are
 * dropped) and then compared for equality between the two servers. Each case also asserts its
 * key facts on each side, so the file tests the test API server even without a cluster.
 *
 * Where matching kube-apiserver is impractical (its admission plugins, Go's own error texts),
 * the case names an entry of {@link expectedDifferences}: its transform rewrites both
 * transcripts so that the difference no longer shows, and the case fails if kube-apiserver's
 * transcript does not need it any more.
 *
 *   export E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)
 *   node_modules/.bin/node --test test/e2e/apiserver-conformance.test.ts
 *   node_modules/.bin/bun test --timeout 180000 ./test/e2e/apiserver-conformance.test.ts
 *   node_modules/.bin/deno test -A test/e2e/apiserver-conformance.test.ts
 *
 * Without E2E_BIN_DIR the kube-apiserver side is skipped (with a message) and the test API
 * server side still runs. The cluster runs without kube-controller-manager (it is stopped once
 * the cluster is up): the PersistentVolume controller would otherwise bind, phase and release
 * the objects under test while the cases run. A minimal VolumeSnapshot CRD is installed for the
 * custom-resource case. The whole file takes about 10 s.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import type { KubeApi, ListOptions, ResourceClient, WatchOptions } from "../../src/kube/api.ts";
import { createKubeApi } from "../../src/kube/client.ts";
import { loadKubeConnection } from "../../src/kube/config.ts";
import { isKubeApiError } from "../../src/kube/errors.ts";
import type { KubeList, KubeObject, WatchEvent } from "../../src/kube/objects.ts";
import { type Resource, resourcePath, resources } from "../../src/kube/resources.ts";
import { type HttpMethod, KubeTransport } from "../../src/kube/transport.ts";
import { systemClock } from "../../src/util/clock.ts";
import { type ApiServer, namespacesResource, startApiServer } from "../support/apiserver.ts";
import { type Cluster, startCluster } from "./cluster.ts";

const binDir = process.env.E2E_BIN_DIR;
const skipReal = binDir
  ? false
  : "E2E_BIN_DIR is not set: only the test API server side runs; build the control plane with E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)";

/** Per test and hook; Bun's runner defaults to 5 s. */
const TIMEOUT_MS = 180_000;
/** How long a watch may take to deliver the events a case waits for. */
const WATCH_DEADLINE_MS = 15_000;
/** The namespace every namespaced case works in (created on both servers). */
const NS = "conformance";
/** A CSI driver name no controller acts on. */
const DRIVER = "conformance.example.com";

// ---------------------------------------------------------------- the two servers

type SideName = "test API server" | "kube-apiserver";

interface Side {
  readonly name: SideName;
  readonly api: KubeApi;
  readonly transport: KubeTransport;
}

async function connect(name: SideName, kubeconfig: string, path: string): Promise<Side> {
  const connection = await loadKubeConnection({
    kubeconfigPath: path,
    env: {},
    readFile: (p) => (p === path && kubeconfig !== "" ? kubeconfig : readFile(p, "utf8")),
    clock: systemClock,
  });
  const transport = new KubeTransport({
    connection,
    version: "conformance",
    clock: systemClock,
    random: Math.random,
    // An error answer is what a case looks at: never retry one.
    idempotentRetries: 0,
    maxRetries: 0,
  });
  return { name, api: createKubeApi(transport), transport };
}

/**
 * A minimal VolumeSnapshot CustomResourceDefinition (no schema beyond "keep everything", with a
 * status subresource): enough for the generic custom-resource semantics the cases compare. The
 * test API server serves VolumeSnapshots natively.
 */
const volumeSnapshotCrd = {
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: {
    name: "volumesnapshots.snapshot.storage.k8s.io",
    // Groups under k8s.io need this annotation (any URL) to be accepted.
    annotations: {
      "api-approved.kubernetes.io":
        "https://github.com/kubernetes-csi/external-snapshotter/pull/419",
    },
  },
  spec: {
    group: "snapshot.storage.k8s.io",
    scope: "Namespaced",
    names: {
      plural: "volumesnapshots",
      singular: "volumesnapshot",
      kind: "VolumeSnapshot",
      shortNames: ["vs"],
    },
    versions: [
      {
        name: "v1",
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
        },
        subresources: { status: {} },
      },
    ],
  },
};

/** Creates the VolumeSnapshot CRD and waits until its resource is served. */
async function installSnapshotCrd(cluster: Cluster): Promise<void> {
  const created = await cluster.request(
    "POST",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    volumeSnapshotCrd,
  );
  assert.equal(created.status, 201, created.body);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await cluster.request(
      "GET",
      `/apis/snapshot.storage.k8s.io/v1/namespaces/${NS}/volumesnapshots`,
    );
    if (r.status === 200) return;
    if (Date.now() > deadline) throw new Error(`VolumeSnapshots are not served: HTTP ${r.status}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Ends kube-controller-manager (a child this file's cluster started), found by its command line. */
async function stopControllerManager(cluster: Cluster): Promise<void> {
  const pid = cluster.pids().find((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8").includes("kube-controller-manager");
    } catch {
      return false;
    }
  });
  assert.ok(pid, "kube-controller-manager is not among the cluster's processes");
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + 30_000;
  while (cluster.pids().includes(pid)) {
    if (Date.now() > deadline) throw new Error(`kube-controller-manager (${pid}) did not exit`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------- transcripts

/** What a failed call records: the Status the server answered. */
interface Failure {
  error: { code: number; reason: string; message: string; details?: unknown };
}

/** The ordered answers of one case on one server, by step label. */
type Transcript = Map<string, unknown>;

class Recorder {
  readonly side: Side;
  readonly transcript: Transcript = new Map();

  constructor(side: Side) {
    this.side = side;
  }

  #put(label: string, value: unknown): void {
    assert.ok(!this.transcript.has(label), `step label used twice: ${label}`);
    this.transcript.set(label, value);
  }

  /** Records a value computed by the case. */
  note(label: string, value: unknown): void {
    this.#put(label, structuredClone(value));
  }

  /** Runs a call; records its answer (or the error Status) and returns the answer. */
  async call<T>(label: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      const v = await fn();
      this.#put(label, v === undefined ? "(no body)" : structuredClone(v));
      return v;
    } catch (err) {
      if (!isKubeApiError(err) || err.kind !== "api") throw err;
      // The message is "<Verb> <target>: <code> <reason>: <server message>".
      const m = /^\S+ [^:]*: \d+(?: \w+)?: ([\s\S]*)$/.exec(err.message);
      const f: Failure = {
        error: { code: err.status, reason: err.reason, message: m ? m[1]! : err.message },
      };
      if (err.details !== undefined) f.error.details = err.details;
      this.#put(label, f);
      return undefined;
    }
  }

  /** A loosely typed client of a resource (the cases send partial and invalid objects). */
  res(r: Resource): ResourceClient<KubeObject> {
    return this.side.api.resource(r as Resource<KubeObject>);
  }

  /**
   * A request through the transport, recording the HTTP status and the body: for what the
   * client does not show (the object a DELETE answers) or does not send (a mismatched name).
   */
  async raw(
    label: string,
    req: { method: HttpMethod; path: string; body?: unknown },
  ): Promise<{ code: number; body: KubeObject } | undefined> {
    return this.call(label, async () => {
      const answer = await this.side.transport.request<KubeObject>(req);
      return { code: answer.status, body: answer.json };
    });
  }

  /** DELETE with DeleteOptions through the transport (see {@link raw}). */
  async rawDelete(
    label: string,
    r: Resource,
    name: string,
    opts: { namespace?: string; preconditions?: { uid?: string; resourceVersion?: string } } = {},
  ): Promise<KubeObject | undefined> {
    const body: Record<string, unknown> = { apiVersion: "v1", kind: "DeleteOptions" };
    if (opts.preconditions) body.preconditions = opts.preconditions;
    const res = await this.raw(label, {
      method: "DELETE",
      path: resourcePath(r, opts.namespace, name),
      body,
    });
    return res?.body;
  }

  /** Lists through the client and records only the item names (in order) and list metadata. */
  async names(label: string, r: Resource, opts: ListOptions): Promise<void> {
    const list = await this.call(label, () => this.res(r).list(opts));
    if (list) {
      this.transcript.set(label, {
        metadata: list.metadata,
        names: list.items.map((o) => o.metadata.name),
      });
    }
  }

  /**
   * Opens a watch, lets `act` make changes, and records the events until `done` says the last
   * expected one arrived (or fails after a deadline).
   */
  async watch(
    label: string,
    r: Resource,
    opts: WatchOptions,
    act: () => Promise<void>,
    done: (events: WatchEvent[]) => boolean,
  ): Promise<void> {
    const aborter = new AbortController();
    const timer = setTimeout(() => aborter.abort(new Error("deadline")), WATCH_DEADLINE_MS);
    const events: WatchEvent[] = [];
    try {
      const stream = await this.res(r).watch({ ...opts, signal: aborter.signal });
      const reading = (async () => {
        for await (const ev of stream) {
          if (ev.type === "BOOKMARK") continue;
          events.push(ev);
          if (done(events)) return;
        }
      })();
      // Ends with the abort below if `act` fails first.
      reading.catch(() => {});
      await act();
      await reading;
    } catch (err) {
      if (aborter.signal.aborted) {
        throw new Error(
          `${label}: the watch did not deliver the expected events within ${WATCH_DEADLINE_MS} ms; got ${JSON.stringify(events.map((e) => e.type))}`,
        );
      }
      throw err;
    } finally {
      clearTimeout(timer);
      aborter.abort();
    }
    this.note(label, events);
  }
}

// ---------------------------------------------------------------- normalisation

const uuidRe = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const timeRe = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const suffixRe = /^[bcdfghjklmnpqrstvwxz2456789]{5}$/;
/** Fields holding a time the server sets (second precision, metav1.Time). */
const serverTimes = new Set(["creationTimestamp", "deletionTimestamp", "lastPhaseTransitionTime"]);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Makes a transcript comparable across servers: uids and object resourceVersions become tokens
 * numbered in order of first appearance (`uid#1`, `rv#3`), list resourceVersions and continue
 * tokens `<rv>` / `<continue>`, server-set timestamps `<time>` (when well-formed), generated
 * name suffixes `<suffix>`; managedFields are dropped. Strings (messages) get the same
 * replacements for the uids, resourceVersions and names they quote.
 */
function normalise(t: Transcript): Record<string, unknown> {
  const uids = new Map<string, string>();
  const rvs = new Map<string, string>();
  const names = new Map<string, string>();
  const collect = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) collect(x);
      return;
    }
    if (!isRecord(v)) return;
    const meta = v.metadata;
    if (isRecord(meta) && typeof meta.name === "string") {
      if (typeof meta.uid === "string" && !uids.has(meta.uid)) {
        uids.set(meta.uid, `uid#${uids.size + 1}`);
      }
      const rv = meta.resourceVersion;
      if (typeof rv === "string" && rv !== "" && !rvs.has(rv)) rvs.set(rv, `rv#${rvs.size + 1}`);
      const gen = meta.generateName;
      if (typeof gen === "string" && meta.name.startsWith(gen)) {
        const suffix = meta.name.slice(gen.length);
        if (suffixRe.test(suffix)) names.set(meta.name, `${gen}<suffix>`);
      }
    }
    for (const x of Object.values(v)) collect(x);
  };
  for (const v of t.values()) collect(v);

  const text = (s: string): string => {
    let out = s.replace(uuidRe, (u) => uids.get(u) ?? u);
    for (const [name, masked] of names) out = out.split(name).join(masked);
    // resourceVersions quoted in messages: "(123)".
    out = out.replace(/\((\d+)\)/g, (all, rv: string) => (rvs.has(rv) ? `(${rvs.get(rv)})` : all));
    return out;
  };
  /** `parent`: what kind of metadata record holds `v` (an object's, a list's), if any. */
  const walk = (v: unknown, key: string, parent?: "object" | "list"): unknown => {
    if (Array.isArray(v)) return v.map((x) => walk(x, key));
    if (typeof v === "string") {
      if (parent === "object" && key === "resourceVersion") return rvs.get(v) ?? v;
      if (parent === "list" && key === "resourceVersion") return v === "" ? v : "<rv>";
      if (parent === "list" && key === "continue") return v === "" ? v : "<continue>";
      if (serverTimes.has(key) && timeRe.test(v)) return "<time>";
      if (key === "uid") return uids.get(v) ?? v;
      return text(v);
    }
    if (!isRecord(v)) return v;
    const self = key === "metadata" ? (typeof v.name === "string" ? "object" : "list") : undefined;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (k !== "managedFields") out[k] = walk(x, k, self);
    }
    return out;
  };
  const result: Record<string, unknown> = {};
  for (const [label, v] of t) result[label] = walk(v, "");
  return result;
}

/**
 * The paths where two normalised transcripts differ, each with both values (test API server
 * first), in a form that reads better than a deep-equality diff of large objects.
 */
function differences(ours: unknown, theirs: unknown, path = ""): string[] {
  if (isRecord(ours) && isRecord(theirs)) {
    const keys = [...new Set([...Object.keys(ours), ...Object.keys(theirs)])];
    return keys.flatMap((k) => differences(ours[k], theirs[k], path ? `${path} › ${k}` : k));
  }
  if (Array.isArray(ours) && Array.isArray(theirs) && ours.length === theirs.length) {
    return ours.flatMap((x, i) => differences(x, theirs[i], `${path}[${i}]`));
  }
  if (JSON.stringify(ours) === JSON.stringify(theirs)) return [];
  const show = (v: unknown) => (v === undefined ? "(absent)" : JSON.stringify(v));
  return [`- ${path}\n    test API server: ${show(ours)}\n    kube-apiserver:  ${show(theirs)}`];
}

// ---------------------------------------------------------------- expected differences

interface ExpectedDifference {
  /** Why the test API server does not do what kube-apiserver does. */
  why: string;
  /**
   * Rewrites a normalised transcript so that the difference no longer shows. Applied to both
   * sides; it must change the kube-apiserver side (else the difference is gone: remove it).
   */
  apply(t: Record<string, unknown>): Record<string, unknown>;
}

/** A copy of `v` with `f` applied to every object in it, innermost first. */
function mapObjects(v: unknown, f: (o: Record<string, unknown>) => void): unknown {
  if (Array.isArray(v)) return v.map((x) => mapObjects(x, f));
  if (!isRecord(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = mapObjects(x, f);
  f(out);
  return out;
}

const protectionFinalizers = new Set([
  "kubernetes.io/pv-protection",
  "kubernetes.io/pvc-protection",
]);

/**
 * The behaviours of a real cluster the test API server leaves out on purpose. Each case names
 * the ones it runs into.
 */
const expectedDifferences = {
  /**
   * The StorageObjectInUseProtection admission plugin adds `kubernetes.io/pv-protection` and
   * `kubernetes.io/pvc-protection` to every new PersistentVolume and claim, and the protection
   * controllers of kube-controller-manager remove them once the object is unused. The test API
   * server runs neither admission plugins nor controllers: deleting an unused volume or claim
   * removes it at once, which is where the controllers would end up. Cases that delete volumes or
   * claims therefore give them a finalizer of their own and clear all finalizers at the end.
   */
  storageProtectionFinalizers: {
    why: "StorageObjectInUseProtection admission adds the pv/pvc-protection finalizers",
    apply: (t) =>
      mapObjects(t, (o) => {
        const meta = o.metadata;
        if (!isRecord(meta) || !Array.isArray(meta.finalizers)) return;
        const kept = meta.finalizers.filter((f) => !protectionFinalizers.has(f as string));
        if (kept.length === 0) delete meta.finalizers;
        else meta.finalizers = kept;
      }) as Record<string, unknown>,
  },
  /**
   * A continue token that is not base64-encoded JSON: kube-apiserver quotes Go's JSON decoder
   * ("invalid character '\u0081' looking for beginning of value"); the test API server quotes
   * its own decoder after the same prefix.
   */
  continueTokenDecoderMessage: {
    why: "the JSON decoder's words for a malformed continue token are Go's",
    apply: (t) =>
      mapObjects(t, (o) => {
        const prefix = "invalid continue token: continue key is not valid: ";
        if (typeof o.message === "string" && o.message.startsWith(prefix)) {
          o.message = `${prefix}<decoder error>`;
        }
      }) as Record<string, unknown>,
  },
  /**
   * A patch whose result does not decode (a malformed quantity or time): both answer 422 Invalid
   * for field `patch`, quoting the patched object; kube-apiserver quotes it as Go serialised it
   * (with managedFields and its own key order), the test API server as JSON.
   */
  patchedObjectQuote: {
    why: "the patched object quoted in the error is serialised by Go",
    apply: (t) =>
      mapObjects(t, (o) => {
        if (typeof o.message === "string") {
          o.message = o.message.replace(
            /Invalid value: "(?:[^"\\]|\\.)*": /,
            'Invalid value: "<patched object>": ',
          );
        }
      }) as Record<string, unknown>,
  },
  /**
   * Kubernetes follows "spec is immutable after creation" (PVC, PV source) with a diff of its
   * internal Go structs; the test API server lists the changed fields instead.
   */
  immutableSpecDiff: {
    why: "the diff after an immutable-spec error is of Kubernetes' internal Go structs",
    apply: (t) =>
      mapObjects(t, (o) => {
        if (typeof o.message === "string") {
          o.message = o.message.replace(
            /(is immutable after creation[^\n]*)\n[\s\S]*?(?=, \w[\w.]*: |\]$|$)/g,
            "$1\n<diff>",
          );
        }
      }) as Record<string, unknown>,
  },
} satisfies Record<string, ExpectedDifference>;

type DifferenceName = keyof typeof expectedDifferences;

// ---------------------------------------------------------------- object builders

type Meta = Partial<KubeObject["metadata"]>;

function pv(name: string, meta: Meta = {}): KubeObject {
  return {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: { name, ...meta },
    spec: {
      capacity: { storage: "1Gi" },
      accessModes: ["ReadWriteOnce"],
      storageClassName: "conformance-none",
      csi: { driver: DRIVER, volumeHandle: `handle-${name}` },
    },
  };
}

function pvc(name: string, meta: Meta = {}): KubeObject {
  const metadata: KubeObject["metadata"] = { namespace: NS, ...meta };
  if (name !== "") metadata.name = name;
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata,
    spec: {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: "1Gi" } },
      storageClassName: "conformance-none",
    },
  };
}

function sc(name: string, meta: Meta = {}): KubeObject {
  const metadata: KubeObject["metadata"] = { ...meta };
  if (name !== "") metadata.name = name;
  return { apiVersion: "storage.k8s.io/v1", kind: "StorageClass", metadata, provisioner: DRIVER };
}

function lease(name: string, namespace: string, meta: Meta = {}, spec = {}): KubeObject {
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name, namespace, ...meta },
    spec: { holderIdentity: "conformance", leaseDurationSeconds: 15, ...spec },
  };
}

function capacity(name: string, value: string): KubeObject {
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "CSIStorageCapacity",
    metadata: { name, namespace: NS },
    storageClassName: "conformance-none",
    capacity: value,
  };
}

const R = resources;

/** The error a step recorded (fails when the step succeeded). */
function errorOf(t: Record<string, unknown>, label: string): Failure["error"] {
  const v = t[label];
  assert.ok(
    isRecord(v) && isRecord(v.error),
    `${label}: expected an error, got ${JSON.stringify(v)}`,
  );
  return v.error as Failure["error"];
}

/** The object a step recorded (fails when the step failed). */
function objectOf(t: Record<string, unknown>, label: string): KubeObject {
  const v = t[label];
  assert.ok(
    isRecord(v) && !("error" in v),
    `${label}: expected an object, got ${JSON.stringify(v)}`,
  );
  return v as KubeObject;
}

/** A field (dotted path) of the object a step recorded; undefined when absent. */
function at(t: Record<string, unknown>, label: string, path: string): unknown {
  let cur: unknown = objectOf(t, label);
  for (const part of path.split(".")) cur = isRecord(cur) ? cur[part] : undefined;
  return cur;
}

/** The item names of a list a step recorded. */
function namesOf(t: Record<string, unknown>, label: string): string[] {
  const v = t[label] as { names?: string[]; items?: KubeObject[] } | undefined;
  assert.ok(v && (v.names || v.items), `${label}: expected a list, got ${JSON.stringify(v)}`);
  return v.names ?? v.items!.map((o) => o.metadata.name!);
}

// ---------------------------------------------------------------- the cases

interface Case {
  title: string;
  /** Expected differences this case runs into. */
  differences?: DifferenceName[];
  run(r: Recorder): Promise<void>;
  /** The key facts, asserted on each side's normalised transcript. */
  expect(t: Record<string, unknown>): void;
}

const cases: Case[] = [
  {
    title: "create and get fill in the server defaults of volumes, claims, classes and namespaces",
    differences: ["storageProtectionFinalizers"],
    async run(r) {
      await r.call("create pv", () => r.res(R.persistentVolumes).create(pv("defaults-pv")));
      await r.call("get pv", () => r.res(R.persistentVolumes).get("defaults-pv"));
      await r.call("create pvc", () => r.res(R.persistentVolumeClaims).create(pvc("defaults-pvc")));
      await r.call("get pvc", () => r.res(R.persistentVolumeClaims).get("defaults-pvc", NS));
      await r.call("create sc", () => r.res(R.storageClasses).create(sc("defaults-sc")));
      await r.call("get sc", () => r.res(R.storageClasses).get("defaults-sc"));
      await r.call("create namespace", () =>
        r.res(namespacesResource).create({ metadata: { name: "conformance-defaults" } }),
      );
    },
    expect(t) {
      assert.equal(at(t, "get pv", "status.phase"), "Pending");
      assert.equal(at(t, "get pv", "status.lastPhaseTransitionTime"), "<time>");
      assert.equal(at(t, "get pv", "spec.persistentVolumeReclaimPolicy"), "Retain");
      assert.equal(at(t, "get pv", "spec.volumeMode"), "Filesystem");
      assert.equal(at(t, "get pvc", "status.phase"), "Pending");
      assert.equal(at(t, "get pvc", "spec.volumeMode"), "Filesystem");
      assert.equal(at(t, "get sc", "reclaimPolicy"), "Delete");
      assert.equal(at(t, "get sc", "volumeBindingMode"), "Immediate");
      assert.deepEqual(at(t, "create namespace", "spec"), { finalizers: ["kubernetes"] });
      assert.equal(at(t, "create namespace", "status.phase"), "Active");
    },
  },
  {
    title: "create of an existing name answers 409 AlreadyExists",
    differences: ["storageProtectionFinalizers"],
    async run(r) {
      await r.call("create sc", () => r.res(R.storageClasses).create(sc("exists-sc")));
      await r.call("create sc again", () => r.res(R.storageClasses).create(sc("exists-sc")));
      await r.call("create pvc", () => r.res(R.persistentVolumeClaims).create(pvc("exists-pvc")));
      await r.call("create pvc again", () =>
        r.res(R.persistentVolumeClaims).create(pvc("exists-pvc")),
      );
    },
    expect(t) {
      const e = errorOf(t, "create sc again");
      assert.equal(e.code, 409);
      assert.equal(e.reason, "AlreadyExists");
      assert.equal(e.message, 'storageclasses.storage.k8s.io "exists-sc" already exists');
      assert.deepEqual(e.details, {
        name: "exists-sc",
        group: "storage.k8s.io",
        kind: "storageclasses",
      });
      assert.deepEqual(errorOf(t, "create pvc again").details, {
        name: "exists-pvc",
        kind: "persistentvolumeclaims",
      });
    },
  },
  {
    title: "update with a stale resourceVersion or another uid answers 409 Conflict",
    differences: ["storageProtectionFinalizers"],
    async run(r) {
      const client = r.res(R.storageClasses);
      const first = await r.call("create", () =>
        client.create(sc("stale-sc", { labels: { v: "1" } })),
      );
      assert.ok(first);
      await r.call("update", () =>
        client.update({ ...first, metadata: { ...first.metadata, labels: { v: "2" } } }),
      );
      await r.call("update from the stale copy", () =>
        client.update({ ...first, metadata: { ...first.metadata, labels: { v: "3" } } }),
      );
      await r.call("get", () => client.get("stale-sc"));
      const { resourceVersion: _rv, ...noRv } = first.metadata;
      await r.call("update without a resourceVersion", () =>
        client.update({ ...first, metadata: { ...noRv, labels: { v: "4" } } }),
      );
      const otherUid = "00000000-0000-4000-8000-000000000000";
      await r.call("update with another uid", () =>
        client.update({ ...first, metadata: { ...noRv, uid: otherUid } }),
      );
      const claims = r.res(R.persistentVolumeClaims);
      const c = await r.call("create pvc", () => claims.create(pvc("stale-pvc")));
      assert.ok(c);
      const { resourceVersion: _crv, ...claimMeta } = c.metadata;
      await r.call("update a claim with another uid", () =>
        claims.update({ ...c, metadata: { ...claimMeta, uid: otherUid } }),
      );
    },
    expect(t) {
      const e = errorOf(t, "update from the stale copy");
      assert.equal(e.code, 409);
      assert.equal(e.reason, "Conflict");
      assert.equal(
        e.message,
        'Operation cannot be fulfilled on storageclasses.storage.k8s.io "stale-sc": the object has been modified; please apply your changes to the latest version and try again',
      );
      assert.equal(objectOf(t, "get").metadata.labels?.v, "2");
      assert.equal(objectOf(t, "update without a resourceVersion").metadata.labels?.v, "4");
      assert.equal(errorOf(t, "update with another uid").code, 409);
      assert.match(
        errorOf(t, "update a claim with another uid").message,
        /Key: \/registry\/persistentvolumeclaims\/conformance\/stale-pvc,/,
      );
    },
  },
  {
    title: "reads and writes of a missing object answer 404 NotFound",
    async run(r) {
      await r.call("get pv", () => r.res(R.persistentVolumes).get("missing-pv"));
      await r.call("get pvc", () => r.res(R.persistentVolumeClaims).get("missing-pvc", NS));
      await r.call("get sc", () => r.res(R.storageClasses).get("missing-sc"));
      await r.call("update sc", () =>
        r.res(R.storageClasses).update(sc("missing-sc", { labels: { a: "b" } })),
      );
      await r.call("patch sc", () =>
        r.res(R.storageClasses).patch("missing-sc", "merge", { metadata: { labels: { a: "b" } } }),
      );
      await r.call("delete sc", () => r.res(R.storageClasses).delete("missing-sc"));
      await r.call("create pvc in a missing namespace", () =>
        r.res(R.persistentVolumeClaims).create(pvc("x", { namespace: "no-such-namespace" })),
      );
    },
    expect(t) {
      const e = errorOf(t, "get pvc");
      assert.equal(e.code, 404);
      assert.equal(e.reason, "NotFound");
      assert.equal(e.message, 'persistentvolumeclaims "missing-pvc" not found');
      assert.deepEqual(e.details, { name: "missing-pvc", kind: "persistentvolumeclaims" });
      assert.deepEqual(errorOf(t, "get sc").details, {
        name: "missing-sc",
        group: "storage.k8s.io",
        kind: "storageclasses",
      });
      assert.equal(errorOf(t, "update sc").code, 404);
      assert.equal(errorOf(t, "delete sc").code, 404);
      assert.equal(
        errorOf(t, "create pvc in a missing namespace").message,
        'namespaces "no-such-namespace" not found',
      );
    },
  },
  {
    title: "merge patch adds annotations and removes them with null",
    async run(r) {
      const client = r.res(R.storageClasses);
      const patch = (p: unknown) => client.patch("merge-sc", "merge", p);
      await r.call("create", () => client.create(sc("merge-sc", { annotations: { a: "1" } })));
      await r.call("add b", () => patch({ metadata: { annotations: { b: "2" } } }));
      await r.call("remove a", () => patch({ metadata: { annotations: { a: null } } }));
      await r.call("remove b", () => patch({ metadata: { annotations: { b: null } } }));
      await r.call("add labels", () => patch({ metadata: { labels: { l: "1" } } }));
      await r.call("empty the labels", () => patch({ metadata: { labels: { l: null } } }));
      await r.call("replace a list", () => patch({ mountOptions: ["ro"] }));
      await r.call("replace it again", () => patch({ mountOptions: ["rw", "sync"] }));
      await r.call("remove it", () => patch({ mountOptions: null }));
    },
    expect(t) {
      assert.deepEqual(objectOf(t, "add b").metadata.annotations, { a: "1", b: "2" });
      assert.deepEqual(objectOf(t, "remove a").metadata.annotations, { b: "2" });
      // An emptied map is left out, as Go serialises an empty map with omitempty.
      assert.equal(objectOf(t, "remove b").metadata.annotations, undefined);
      assert.equal(objectOf(t, "empty the labels").metadata.labels, undefined);
      assert.deepEqual(at(t, "replace it again", "mountOptions"), ["rw", "sync"]);
    },
  },
  {
    title: "strategic merge patch merges metadata.finalizers and honours its directives",
    differences: ["storageProtectionFinalizers"],
    async run(r) {
      const client = r.res(R.persistentVolumeClaims);
      const patch = (p: unknown) => client.patch("smp-pvc", "strategic", p, NS);
      await r.call("create", () =>
        client.create(pvc("smp-pvc", { finalizers: ["example.com/a"] })),
      );
      await r.call("add b", () => patch({ metadata: { finalizers: ["example.com/b"] } }));
      await r.call("add b again and c", () =>
        patch({ metadata: { finalizers: ["example.com/b", "example.com/c"] } }),
      );
      await r.call("merge known ones in a new order", () =>
        patch({ metadata: { finalizers: ["example.com/c", "example.com/n", "example.com/a"] } }),
      );
      await r.call("delete a", () =>
        patch({ metadata: { "$deleteFromPrimitiveList/finalizers": ["example.com/a"] } }),
      );
      await r.call("delete a missing one", () =>
        patch({ metadata: { "$deleteFromPrimitiveList/finalizers": ["example.com/zzz"] } }),
      );
      await r.call("empty list", () => patch({ metadata: { finalizers: [] } }));
      await r.call("set element order", () =>
        patch({
          metadata: {
            "$setElementOrder/finalizers": ["example.com/n", "example.com/b", "example.com/c"],
            finalizers: ["example.com/n"],
          },
        }),
      );
      await r.call("merge the labels map", () => patch({ metadata: { labels: { x: "1" } } }));
      await r.call("merge it again", () => patch({ metadata: { labels: { y: "2" } } }));
      await r.call("replace the labels map", () =>
        patch({ metadata: { labels: { $patch: "replace", z: "3" } } }),
      );
      await r.call("remove all finalizers", () => patch({ metadata: { finalizers: null } }));
      const volumes = r.res(R.persistentVolumes);
      await r.call("create pv", () => volumes.create(pv("smp-pv")));
      await r.call("replace a plain list", () =>
        volumes.patch("smp-pv", "strategic", {
          spec: { accessModes: ["ReadWriteMany", "ReadOnlyMany"], mountOptions: ["ro"] },
        }),
      );
      await r.call("replace it with a shorter one", () =>
        volumes.patch("smp-pv", "strategic", { spec: { accessModes: ["ReadOnlyMany"] } }),
      );
    },
    expect(t) {
      const fin = (l: string) => objectOf(t, l).metadata.finalizers;
      // Elements new to the list go first; the ones the server had keep their order.
      assert.deepEqual(fin("add b"), ["example.com/b", "example.com/a"]);
      assert.deepEqual(fin("add b again and c"), [
        "example.com/b",
        "example.com/c",
        "example.com/a",
      ]);
      assert.equal(fin("delete a")?.includes("example.com/a"), false);
      assert.deepEqual(objectOf(t, "replace the labels map").metadata.labels, { z: "3" });
      assert.equal(fin("remove all finalizers"), undefined);
      assert.deepEqual(at(t, "replace it with a shorter one", "spec.accessModes"), [
        "ReadOnlyMany",
      ]);
    },
  },
  {
    title: "JSON patch applies operations and rejects a failing test operation with 422",
    async run(r) {
      const client = r.res(R.storageClasses);
      await r.call("create", () => client.create(sc("json-sc", { labels: { a: "1" } })));
      await r.call("test and add", () =>
        client.patch("json-sc", "json", [
          { op: "test", path: "/metadata/labels/a", value: "1" },
          { op: "add", path: "/metadata/labels/b", value: "2" },
        ]),
      );
      await r.call("failing test", () =>
        client.patch("json-sc", "json", [
          { op: "test", path: "/metadata/labels/a", value: "wrong" },
          { op: "add", path: "/metadata/labels/c", value: "3" },
        ]),
      );
      await r.call("remove a missing path", () =>
        client.patch("json-sc", "json", [{ op: "remove", path: "/metadata/labels/zzz" }]),
      );
      await r.call("not a list", () => client.patch("json-sc", "json", { op: "add" }));
      await r.call("an operation that is not an object", () =>
        client.patch("json-sc", "json", ["add"]),
      );
      await r.call("move and copy", () =>
        client.patch("json-sc", "json", [
          { op: "copy", from: "/metadata/labels/a", path: "/metadata/labels/copied" },
          { op: "move", from: "/metadata/labels/b", path: "/metadata/labels/moved" },
        ]),
      );
      await r.call("get", () => client.get("json-sc"));
    },
    expect(t) {
      assert.deepEqual(objectOf(t, "test and add").metadata.labels, { a: "1", b: "2" });
      const e = errorOf(t, "failing test");
      assert.equal(e.code, 422);
      assert.equal(e.reason, "Invalid");
      assert.equal(e.message, "the server rejected our request due to an error in our request");
      assert.equal(errorOf(t, "not a list").code, 400);
      assert.deepEqual(objectOf(t, "get").metadata.labels, { a: "1", copied: "1", moved: "2" });
    },
  },
  {
    title: "a patch carrying a stale metadata.resourceVersion answers 409 Conflict",
    async run(r) {
      const client = r.res(R.storageClasses);
      const first = await r.call("create", () => client.create(sc("patchrv-sc")));
      assert.ok(first);
      await r.call("label", () =>
        client.patch("patchrv-sc", "merge", { metadata: { labels: { a: "1" } } }),
      );
      const stale = first.metadata.resourceVersion;
      await r.call("merge patch with the stale version", () =>
        client.patch("patchrv-sc", "merge", {
          metadata: { resourceVersion: stale, labels: { b: "2" } },
        }),
      );
      await r.call("strategic patch with the stale version", () =>
        client.patch("patchrv-sc", "strategic", {
          metadata: { resourceVersion: stale, labels: { b: "2" } },
        }),
      );
      await r.call("JSON patch with the stale version", () =>
        client.patch("patchrv-sc", "json", [
          { op: "replace", path: "/metadata/resourceVersion", value: stale },
          { op: "add", path: "/metadata/labels/b", value: "2" },
        ]),
      );
      const now = (await client.get("patchrv-sc")).metadata.resourceVersion;
      await r.call("merge patch with the current version", () =>
        client.patch("patchrv-sc", "merge", {
          metadata: { resourceVersion: now, labels: { c: "3" } },
        }),
      );
    },
    expect(t) {
      for (const step of [
        "merge patch with the stale version",
        "strategic patch with the stale version",
        "JSON patch with the stale version",
      ]) {
        const e = errorOf(t, step);
        assert.equal(e.code, 409, step);
        assert.equal(e.reason, "Conflict", step);
      }
      assert.deepEqual(objectOf(t, "merge patch with the current version").metadata.labels, {
        a: "1",
        c: "3",
      });
    },
  },
  {
    title:
      "DELETE of an object with finalizers marks it, and removing the last finalizer deletes it",
    async run(r) {
      const client = r.res(R.storageClasses);
      await r.call("create", () =>
        client.create(sc("final-sc", { finalizers: ["example.com/a", "example.com/b"] })),
      );
      await r.rawDelete("delete", R.storageClasses, "final-sc");
      await r.call("get", () => client.get("final-sc"));
      await r.rawDelete("delete again", R.storageClasses, "final-sc");
      await r.call("add a finalizer while terminating", () =>
        client.patch("final-sc", "merge", {
          metadata: { finalizers: ["example.com/a", "example.com/b", "example.com/c"] },
        }),
      );
      await r.call("change a label while terminating", () =>
        client.patch("final-sc", "merge", { metadata: { labels: { still: "here" } } }),
      );
      await r.call("remove one finalizer", () =>
        client.patch("final-sc", "json", [{ op: "remove", path: "/metadata/finalizers/0" }]),
      );
      await r.call("remove the last finalizer", () =>
        client.patch("final-sc", "json", [{ op: "remove", path: "/metadata/finalizers" }]),
      );
      await r.call("get after", () => client.get("final-sc"));
    },
    expect(t) {
      const del = t.delete as { code: number; body: KubeObject };
      assert.equal(del.code, 200);
      assert.equal(del.body.metadata.deletionTimestamp, "<time>");
      assert.equal(del.body.metadata.deletionGracePeriodSeconds, 0);
      assert.deepEqual(del.body.metadata.finalizers, ["example.com/a", "example.com/b"]);
      assert.equal(objectOf(t, "get").metadata.deletionTimestamp, "<time>");
      const e = errorOf(t, "add a finalizer while terminating");
      assert.equal(e.code, 422);
      assert.match(e.message, /no new finalizers can be added if the object is being deleted/);
      const last = objectOf(t, "remove the last finalizer");
      assert.equal(last.metadata.finalizers, undefined);
      // The answer carries the version it replaced (the deletion has one of its own).
      assert.equal(
        last.metadata.resourceVersion,
        objectOf(t, "remove one finalizer").metadata.resourceVersion,
      );
      assert.equal(errorOf(t, "get after").code, 404);
    },
  },
  {
    title: "a watch sees a graceful deletion: MODIFIED with deletionTimestamp, then DELETED",
    async run(r) {
      const client = r.res(R.storageClasses);
      const list = await client.list({ labelSelector: "case=graceful" });
      await r.watch(
        "events",
        R.storageClasses,
        { labelSelector: "case=graceful", resourceVersion: list.metadata.resourceVersion },
        async () => {
          await client.create(
            sc("graceful-sc", {
              labels: { case: "graceful" },
              finalizers: ["example.com/a", "example.com/b"],
            }),
          );
          await client.delete("graceful-sc");
          await client.patch("graceful-sc", "merge", {
            metadata: { finalizers: ["example.com/b"] },
          });
          await client.patch("graceful-sc", "merge", { metadata: { finalizers: null } });
        },
        (events) => events.some((e) => e.type === "DELETED"),
      );
    },
    expect(t) {
      const events = t.events as WatchEvent[];
      assert.deepEqual(
        events.map((e) => e.type),
        ["ADDED", "MODIFIED", "MODIFIED", "DELETED"],
      );
      assert.equal(events[1]!.object.metadata.deletionTimestamp, "<time>");
      // DELETED carries the last stored state, at the deletion's own resourceVersion.
      assert.deepEqual(events[3]!.object.metadata.finalizers, ["example.com/b"]);
      assert.notEqual(
        events[3]!.object.metadata.resourceVersion,
        events[2]!.object.metadata.resourceVersion,
      );
    },
  },
  {
    title:
      "a volume or claim with finalizers stays until they are cleared; no finalizer may be added",
    differences: ["storageProtectionFinalizers"],
    async run(r) {
      const volumes = r.res(R.persistentVolumes);
      await r.call("create pv", () =>
        volumes.create(pv("final-pv", { finalizers: ["example.com/a"] })),
      );
      await r.rawDelete("delete pv", R.persistentVolumes, "final-pv");
      await r.call("get pv", () => volumes.get("final-pv"));
      await r.call("add a finalizer to the pv", () =>
        volumes.patch("final-pv", "strategic", { metadata: { finalizers: ["example.com/b"] } }),
      );
      await r.call("clear the pv finalizers", () =>
        volumes.patch("final-pv", "merge", { metadata: { finalizers: null } }),
      );
      await r.call("get pv after", () => volumes.get("final-pv"));

      const claims = r.res(R.persistentVolumeClaims);
      await r.call("create pvc", () =>
        claims.create(pvc("final-pvc", { finalizers: ["example.com/a"] })),
      );
      await r.rawDelete("delete pvc", R.persistentVolumeClaims, "final-pvc", { namespace: NS });
      await r.call("add a finalizer to the pvc", () =>
        claims.patch("final-pvc", "strategic", { metadata: { finalizers: ["example.com/b"] } }, NS),
      );
      await r.call("clear the pvc finalizers", () =>
        claims.patch("final-pvc", "merge", { metadata: { finalizers: null } }, NS),
      );
      await r.call("get pvc after", () => claims.get("final-pvc", NS));
    },
    expect(t) {
      assert.equal(objectOf(t, "get pv").metadata.deletionTimestamp, "<time>");
      assert.equal(errorOf(t, "add a finalizer to the pv").code, 422);
      assert.equal(errorOf(t, "add a finalizer to the pvc").code, 422);
      assert.equal(errorOf(t, "get pv after").code, 404);
      assert.equal(errorOf(t, "get pvc after").code, 404);
    },
  },
  {
    title: "DELETE preconditions on uid and resourceVersion answer 409 Conflict on mismatch",
    differences: ["storageProtectionFinalizers"],
    async run(r) {
      const client = r.res(R.storageClasses);
      const obj = await r.call("create", () => client.create(sc("precond-sc")));
      assert.ok(obj);
      await r.rawDelete("delete with another uid", R.storageClasses, "precond-sc", {
        preconditions: { uid: "00000000-0000-4000-8000-000000000000" },
      });
      await r.call("label", () =>
        client.patch("precond-sc", "merge", { metadata: { labels: { a: "1" } } }),
      );
      await r.rawDelete("delete with a stale resourceVersion", R.storageClasses, "precond-sc", {
        preconditions: { resourceVersion: obj.metadata.resourceVersion },
      });
      await r.rawDelete("delete with the right uid", R.storageClasses, "precond-sc", {
        preconditions: { uid: obj.metadata.uid },
      });
      await r.call("get after", () => client.get("precond-sc"));
      await r.call("create pv", () =>
        r.res(R.persistentVolumes).create(pv("precond-pv", { finalizers: ["example.com/a"] })),
      );
      await r.rawDelete("delete a pv with another uid", R.persistentVolumes, "precond-pv", {
        preconditions: { uid: "00000000-0000-4000-8000-000000000000" },
      });
    },
    expect(t) {
      const e = errorOf(t, "delete with another uid");
      assert.equal(e.code, 409);
      assert.equal(e.reason, "Conflict");
      assert.match(
        e.message,
        /^Operation cannot be fulfilled on StorageClass.storage.k8s.io "precond-sc": the UID in the precondition/,
      );
      assert.equal(errorOf(t, "delete with a stale resourceVersion").code, 409);
      assert.equal((t["delete with the right uid"] as { code: number }).code, 200);
      assert.equal(errorOf(t, "get after").code, 404);
      assert.deepEqual(errorOf(t, "delete a pv with another uid").details, {
        name: "precond-pv",
        kind: "PersistentVolume",
      });
    },
  },
  {
    title:
      "a /status write changes status (and metadata, except where Kubernetes resets it), not spec",
    differences: ["storageProtectionFinalizers"],
    async run(r) {
      const volumes = r.res(R.persistentVolumes);
      const v = await r.call("create pv", () => volumes.create(pv("status-pv")));
      assert.ok(v);
      const v2 = await r.call("pv status update", () =>
        volumes.updateStatus({
          ...v,
          metadata: { ...v.metadata, labels: { sent: "with-status" } },
          spec: { ...(v.spec as object), persistentVolumeReclaimPolicy: "Delete" },
          status: { phase: "Available" },
        }),
      );
      assert.ok(v2);
      await r.call("pv main update", () =>
        volumes.update({
          ...v2,
          metadata: { ...v2.metadata, labels: { kept: "yes" } },
          status: { phase: "Failed", message: "ignored" },
        }),
      );
      await r.call("pv status patch", () =>
        volumes.patch(
          "status-pv",
          "merge",
          { status: { phase: "Released" }, metadata: { labels: { p: "1" } } },
          undefined,
          { subresource: "status" },
        ),
      );
      await r.call("pv main patch of status", () =>
        volumes.patch("status-pv", "merge", { status: { phase: "Bound" } }),
      );

      const claims = r.res(R.persistentVolumeClaims);
      const c = await r.call("create pvc", () => claims.create(pvc("status-pvc")));
      assert.ok(c);
      const c2 = await r.call("pvc status update", () =>
        claims.updateStatus({
          ...c,
          metadata: { ...c.metadata, labels: { sent: "with-status" } },
          status: {
            phase: "Bound",
            accessModes: ["ReadWriteOnce"],
            capacity: { storage: "1024Mi" },
            conditions: [{ type: "Resizing", status: "True" }],
          },
        }),
      );
      assert.ok(c2);
      await r.call("pvc main update", () =>
        claims.update({
          ...c2,
          metadata: { ...c2.metadata, labels: { kept: "yes" } },
          status: { phase: "Lost" },
        }),
      );

      const attachments = r.res(R.volumeAttachments);
      const a = await r.call("create volumeattachment", () =>
        attachments.create({
          metadata: { name: "status-va" },
          spec: {
            attacher: DRIVER,
            nodeName: "node-1",
            source: { persistentVolumeName: "status-pv" },
          },
          status: { attached: true },
        }),
      );
      assert.ok(a);
      await r.call("volumeattachment status update", () =>
        attachments.updateStatus({
          ...a,
          metadata: { ...a.metadata, labels: { sent: "with-status" } },
          status: { attached: true, attachmentMetadata: { k: "v" } },
        }),
      );
    },
    expect(t) {
      const s = objectOf(t, "pv status update");
      assert.equal(at(t, "pv status update", "status.phase"), "Available");
      assert.deepEqual(s.metadata.labels, { sent: "with-status" });
      assert.equal(at(t, "pv status update", "spec.persistentVolumeReclaimPolicy"), "Retain");
      const m = objectOf(t, "pv main update");
      assert.equal(at(t, "pv main update", "status.phase"), "Available");
      assert.deepEqual(m.metadata.labels, { kept: "yes" });
      assert.equal(at(t, "pvc main update", "status.phase"), "Bound");
      assert.deepEqual(at(t, "pvc main update", "status.capacity"), { storage: "1Gi" });
      const va = objectOf(t, "volumeattachment status update");
      assert.equal(va.metadata.labels, undefined);
      assert.deepEqual(at(t, "create volumeattachment", "status"), { attached: false });
    },
  },
  {
    title: "a watch from a list's resourceVersion sees ADDED, MODIFIED and DELETED in order",
    async run(r) {
      const client = r.res(R.leases);
      const list = await r.call("list", () =>
        client.list({ namespace: NS, labelSelector: "case=watch" }),
      );
      assert.ok(list);
      await r.watch(
        "events",
        R.leases,
        {
          namespace: NS,
          labelSelector: "case=watch",
          resourceVersion: list.metadata.resourceVersion,
        },
        async () => {
          const l = await client.create(lease("watch-lease", NS, { labels: { case: "watch" } }));
          await client.update({ ...l, spec: { ...(l.spec as object), holderIdentity: "other" } });
          await client.patch("watch-lease", "merge", { metadata: { labels: { extra: "1" } } }, NS);
          await client.delete("watch-lease", NS);
        },
        (events) => events.some((e) => e.type === "DELETED"),
      );
    },
    expect(t) {
      const events = t.events as WatchEvent[];
      assert.deepEqual(
        events.map((e) => e.type),
        ["ADDED", "MODIFIED", "MODIFIED", "DELETED"],
      );
      assert.equal(events[0]!.object.kind, "Lease");
    },
  },
  {
    title: "a watch with a label selector sees objects enter and leave it",
    async run(r) {
      const client = r.res(R.leases);
      const list = await r.call("list", () =>
        client.list({ namespace: NS, labelSelector: "sel=in" }),
      );
      assert.ok(list);
      await r.watch(
        "events",
        R.leases,
        { namespace: NS, labelSelector: "sel=in", resourceVersion: list.metadata.resourceVersion },
        async () => {
          await client.create(lease("sel-lease", NS, { labels: { sel: "out" } }));
          await client.patch("sel-lease", "merge", { metadata: { labels: { sel: "in" } } }, NS);
          await client.patch("sel-lease", "merge", { metadata: { labels: { sel: "out" } } }, NS);
          await client.delete("sel-lease", NS);
          await client.create(lease("sel-lease-2", NS, { labels: { sel: "in" } }));
        },
        (events) => events.some((e) => e.object.metadata.name === "sel-lease-2"),
      );
    },
    expect(t) {
      const events = t.events as WatchEvent[];
      assert.deepEqual(
        events.map((e) => `${e.type} ${e.object.metadata.name} ${e.object.metadata.labels?.sel}`),
        ["ADDED sel-lease in", "DELETED sel-lease in", "ADDED sel-lease-2 in"],
      );
    },
  },
  {
    title: "a list with a label selector returns the matching objects",
    async run(r) {
      const client = r.res(R.storageClasses);
      await client.create(sc("labels-a", { labels: { case: "labels", tier: "a" } }));
      await client.create(sc("labels-b", { labels: { case: "labels", tier: "b" } }));
      await client.create(sc("labels-none", { labels: { case: "labels" } }));
      for (const sel of [
        "case=labels",
        "case=labels,tier=a",
        "case=labels,tier==a",
        "case=labels,tier!=a",
        "case=labels,!tier",
        "case=labels,tier",
        "case=labels,tier in (a,b)",
        "case=labels,tier notin (a)",
        "case=labels,tier in (c)",
      ]) {
        await r.names(sel, R.storageClasses, { labelSelector: sel });
      }
      for (const bad of [
        "case=labels,tier in a",
        "tier in (a",
        "tier in (",
        "tier >",
        "tier > x",
        "tier>-1",
        "a,",
        ",a",
        "!",
        "x=(",
        "a=b=c",
        "!x=1",
        "x!",
        "x in (a b)",
        "Tier_=a",
        "a/b/c=1",
        "/a=1",
        "A.b/c=1",
        "tier=a_",
      ]) {
        await r.call(`syntax error ${bad}`, () =>
          client.list({ labelSelector: bad }).then(() => "listed"),
        );
      }
      for (const odd of [
        "case=labels,tier in ()",
        "case=labels,tier in (a,,b)",
        "case=labels,in!=notin",
      ]) {
        await r.names(odd, R.storageClasses, { labelSelector: odd });
      }
    },
    expect(t) {
      assert.deepEqual(namesOf(t, "case=labels"), ["labels-a", "labels-b", "labels-none"]);
      assert.deepEqual(namesOf(t, "case=labels,tier!=a"), ["labels-b", "labels-none"]);
      assert.deepEqual(namesOf(t, "case=labels,!tier"), ["labels-none"]);
      assert.deepEqual(namesOf(t, "case=labels,tier in (c)"), []);
      assert.equal(
        errorOf(t, "syntax error case=labels,tier in a").message,
        "unable to parse requirement: found 'a' expected: '('",
      );
      assert.deepEqual(namesOf(t, "case=labels,tier in ()"), []);
    },
  },
  {
    title: "a list with a field selector on metadata.name returns that object",
    differences: ["storageProtectionFinalizers"],
    async run(r) {
      const client = r.res(R.persistentVolumeClaims);
      await r.call("create 1", () => client.create(pvc("field-1")));
      await r.call("create 2", () => client.create(pvc("field-2")));
      await r.call("metadata.name=field-1", () =>
        client.list({ namespace: NS, fieldSelector: "metadata.name=field-1" }),
      );
      await r.names("metadata.name!=", R.persistentVolumeClaims, {
        namespace: NS,
        labelSelector: "",
        fieldSelector: "metadata.name!=field-1,metadata.name!=defaults-pvc",
      });
      await r.names("metadata.namespace across namespaces", R.persistentVolumeClaims, {
        fieldSelector: `metadata.namespace=${NS},metadata.name=field-2`,
      });
      await r.call("the legacy name label on claims", () =>
        client.list({ namespace: NS, fieldSelector: "name=field-1" }),
      );
      await r.call("an unsupported field on volumes", () =>
        r.res(R.persistentVolumes).list({ fieldSelector: "spec.storageClassName=x" }),
      );
      await r.call("an unsupported field on events", () =>
        r.res(R.coreEvents).list({ namespace: NS, fieldSelector: "spec.x=y" }),
      );
      await r.call("a malformed selector", () =>
        r.res(R.persistentVolumes).list({ fieldSelector: "metadata.name" }),
      );
    },
    expect(t) {
      assert.deepEqual(namesOf(t, "metadata.name=field-1"), ["field-1"]);
      const l = t["metadata.name=field-1"] as KubeList<KubeObject>;
      // Items of a built-in list carry no apiVersion and kind.
      assert.equal(l.items[0]!.kind, undefined);
      assert.deepEqual(namesOf(t, "metadata.namespace across namespaces"), ["field-2"]);
      assert.equal(errorOf(t, "the legacy name label on claims").code, 400);
      assert.equal(
        errorOf(t, "an unsupported field on volumes").message,
        '"spec.storageClassName" is not a known field selector: only "metadata.name", "metadata.namespace"',
      );
      assert.equal(
        errorOf(t, "an unsupported field on events").message,
        "field label not supported: spec.x",
      );
    },
  },
  {
    title: "generateName gives a name with a random suffix; a missing or invalid name answers 422",
    differences: ["storageProtectionFinalizers"],
    async run(r) {
      const classes = r.res(R.storageClasses);
      const s = await r.call("create sc", () =>
        classes.create(sc("", { generateName: "gen-sc-" })),
      );
      assert.ok(s);
      await r.call("get sc", () => classes.get(s.metadata.name!));
      const claims = r.res(R.persistentVolumeClaims);
      await r.call("create pvc", () => claims.create(pvc("", { generateName: "gen-pvc-" })));
      await r.call("create with neither name nor generateName", () => classes.create(sc("")));
      await r.call("create with an invalid name", () => classes.create(sc("Not_Valid")));
      await r.call("create a claim with an invalid name", () => claims.create(pvc("Not_Valid")));
    },
    expect(t) {
      assert.equal(objectOf(t, "create sc").metadata.name, "gen-sc-<suffix>");
      assert.equal(objectOf(t, "get sc").metadata.name, "gen-sc-<suffix>");
      assert.equal(objectOf(t, "create pvc").metadata.name, "gen-pvc-<suffix>");
      const e = errorOf(t, "create with neither name nor generateName");
      assert.equal(e.code, 422);
      assert.equal(
        e.message,
        'StorageClass.storage.k8s.io "" is invalid: metadata.name: Required value: name or generateName is required',
      );
      assert.equal(errorOf(t, "create with an invalid name").code, 422);
    },
  },
  {
    title: "a list with limit and continue pages through a consistent snapshot",
    differences: ["continueTokenDecoderMessage"],
    async run(r) {
      const ns = "conformance-pages";
      await r.res(namespacesResource).create({ metadata: { name: ns } });
      const client = r.res(R.leases);
      for (const n of ["p1", "p2", "p3", "p4", "p5"]) await client.create(lease(n, ns));
      const first = await r.call("page 1", () => client.list({ namespace: ns, limit: 2 }));
      assert.ok(first?.metadata.continue);
      const second = await r.call("page 2", () =>
        client.list({ namespace: ns, limit: 2, continue: first.metadata.continue }),
      );
      assert.ok(second?.metadata.continue);
      // A change between pages does not show in the later pages.
      await client.delete("p5", ns);
      await client.create(lease("p6", ns));
      await r.call("page 3", () =>
        client.list({ namespace: ns, limit: 2, continue: second.metadata.continue }),
      );
      await r.call("everything", () => client.list({ namespace: ns }));
      await r.call("a limit larger than the list", () => client.list({ namespace: ns, limit: 50 }));
      await r.call("bad continue", () =>
        client.list({ namespace: ns, limit: 2, continue: "garbage" }),
      );
      await r.call("selector page 1", () =>
        client.list({ namespace: ns, limit: 2, labelSelector: "!nope" }),
      );
    },
    expect(t) {
      const list = (l: string) => t[l] as KubeList<KubeObject>;
      assert.deepEqual(namesOf(t, "page 1"), ["p1", "p2"]);
      assert.equal(list("page 1").metadata.continue, "<continue>");
      assert.equal(list("page 1").metadata.remainingItemCount, 3);
      assert.deepEqual(namesOf(t, "page 2"), ["p3", "p4"]);
      assert.deepEqual(namesOf(t, "page 3"), ["p5"]);
      assert.equal(list("page 3").metadata.continue, undefined);
      assert.deepEqual(namesOf(t, "everything"), ["p1", "p2", "p3", "p4", "p6"]);
      assert.equal(errorOf(t, "bad continue").code, 400);
      // With a selector the server cannot count what is left.
      assert.equal(list("selector page 1").metadata.remainingItemCount, undefined);
    },
  },
  {
    title: "an update that changes nothing keeps the resourceVersion",
    async run(r) {
      const client = r.res(R.storageClasses);
      const s = await r.call("create", () => client.create(sc("noop-sc", { labels: { a: "1" } })));
      assert.ok(s);
      await r.call("same object", () => client.update(s));
      await r.call("same merge patch", () =>
        client.patch("noop-sc", "merge", { metadata: { labels: { a: "1" } } }),
      );
      await r.call("empty strategic patch", () => client.patch("noop-sc", "strategic", {}));
      await r.call("empty JSON patch", () => client.patch("noop-sc", "json", []));
      await r.call("a real change", () =>
        client.patch("noop-sc", "merge", { metadata: { labels: { a: "2" } } }),
      );
      const v = await client.get("noop-sc");
      await r.call("same object without a resourceVersion", () =>
        client.update({ ...v, metadata: { ...v.metadata, resourceVersion: undefined } }),
      );
    },
    expect(t) {
      const rv = (l: string) => objectOf(t, l).metadata.resourceVersion;
      assert.equal(rv("same object"), rv("create"));
      assert.equal(rv("same merge patch"), rv("create"));
      assert.equal(rv("empty strategic patch"), rv("create"));
      assert.equal(rv("empty JSON patch"), rv("create"));
      assert.notEqual(rv("a real change"), rv("create"));
      assert.equal(rv("same object without a resourceVersion"), rv("a real change"));
    },
  },
  {
    title: "core v1 events are created and listed, and seen through events.k8s.io/v1",
    async run(r) {
      const core = r.res(R.coreEvents);
      await r.call("create core event", () =>
        core.create({
          apiVersion: "v1",
          kind: "Event",
          metadata: { name: "core-event.1", namespace: NS },
          involvedObject: {
            kind: "PersistentVolumeClaim",
            namespace: NS,
            name: "claim-for-events",
            uid: "11111111-1111-4111-8111-111111111111",
            apiVersion: "v1",
            resourceVersion: "42",
          },
          reason: "Provisioning",
          message: "External provisioner is provisioning volume for claim",
          source: { component: "conformance-provisioner" },
          firstTimestamp: "2026-01-01T01:00:00+01:00",
          lastTimestamp: "2026-01-01T00:00:00.750Z",
          count: 1,
          type: "Normal",
        }),
      );
      await r.call("list core events by involved object", () =>
        core.list({ namespace: NS, fieldSelector: "involvedObject.name=claim-for-events" }),
      );
      await r.call("list core events by reason and source", () =>
        core.list({
          namespace: NS,
          fieldSelector: "reason=Provisioning,source=conformance-provisioner",
        }),
      );
      await r.call("get through events.k8s.io", () => r.res(R.events).get("core-event.1", NS));
      await r.call("bump the count", () =>
        core.patch(
          "core-event.1",
          "merge",
          { count: 2, lastTimestamp: "2026-01-01T00:00:10Z" },
          NS,
        ),
      );
      const v1 = r.res(R.events);
      await r.call("create events.k8s.io event", () =>
        v1.create({
          apiVersion: "events.k8s.io/v1",
          kind: "Event",
          metadata: { name: "v1-event.1", namespace: NS },
          eventTime: "2026-01-01T01:00:00.123456+01:00",
          reportingController: "conformance.example.com/provisioner",
          reportingInstance: "conformance-provisioner-1",
          action: "Provisioning",
          reason: "ProvisioningSucceeded",
          regarding: { kind: "PersistentVolumeClaim", namespace: NS, name: "claim-for-events" },
          note: "Successfully provisioned volume",
          type: "Normal",
        }),
      );
      await r.call("list events.k8s.io events by regarding", () =>
        v1.list({ namespace: NS, fieldSelector: "regarding.name=claim-for-events" }),
      );
      await r.call("get through core", () => core.get("v1-event.1", NS));
      await r.call("an eventTime without microseconds", () =>
        core.create({
          metadata: { name: "core-event.2", namespace: NS },
          involvedObject: { kind: "Pod", namespace: NS, name: "p" },
          eventTime: "2026-01-01T00:00:00Z",
          reportingComponent: "c",
          reportingInstance: "i",
          action: "a",
          reason: "r",
        }),
      );
      await r.call("a timestamp that is not a time", () =>
        core.create({
          metadata: { name: "core-event.3", namespace: NS },
          involvedObject: { kind: "Pod", namespace: NS, name: "p" },
          firstTimestamp: "yesterday",
        }),
      );
    },
    expect(t) {
      assert.deepEqual(namesOf(t, "list core events by involved object"), ["core-event.1"]);
      assert.deepEqual(namesOf(t, "list events.k8s.io events by regarding"), [
        "core-event.1",
        "v1-event.1",
      ]);
      assert.equal(
        at(t, "get through events.k8s.io", "note"),
        "External provisioner is provisioning volume for claim",
      );
      assert.equal(
        at(t, "get through events.k8s.io", "deprecatedFirstTimestamp"),
        "2026-01-01T00:00:00Z",
      );
      assert.equal(
        at(t, "get through events.k8s.io", "deprecatedLastTimestamp"),
        "2026-01-01T00:00:00Z",
      );
      assert.equal(at(t, "get through events.k8s.io", "eventTime"), null);
      assert.equal(at(t, "get through core", "eventTime"), "2026-01-01T00:00:00.123456Z");
      assert.equal(at(t, "get through core", "firstTimestamp"), null);
      assert.equal(errorOf(t, "an eventTime without microseconds").code, 400);
      assert.equal(errorOf(t, "a timestamp that is not a time").code, 400);
    },
  },
  {
    title: "lease micro-times come back in UTC with six fractional digits",
    differences: ["patchedObjectQuote"],
    async run(r) {
      const client = r.res(R.leases);
      await r.call("create", () =>
        client.create(
          lease(
            "time-lease",
            NS,
            {},
            {
              acquireTime: "2026-01-01T01:00:00.000000+01:00",
              renewTime: "2026-01-01T00:00:05.250000Z",
            },
          ),
        ),
      );
      await r.call("renew with too few digits", () =>
        client.patch("time-lease", "merge", { spec: { renewTime: "2026-01-01T00:00:06.5Z" } }, NS),
      );
      await r.call("renew with too many digits", () =>
        client.patch(
          "time-lease",
          "merge",
          { spec: { renewTime: "2026-01-01T00:00:06.1234567Z" } },
          NS,
        ),
      );
      await r.call("create with a time without microseconds", () =>
        client.create(lease("time-lease-2", NS, {}, { renewTime: "2026-01-01T00:00:00Z" })),
      );
      await r.call("clear the times", () =>
        client.patch("time-lease", "merge", { spec: { renewTime: null, acquireTime: null } }, NS),
      );
    },
    expect(t) {
      assert.equal(at(t, "create", "spec.acquireTime"), "2026-01-01T00:00:00.000000Z");
      assert.equal(at(t, "create", "spec.renewTime"), "2026-01-01T00:00:05.250000Z");
      const e = errorOf(t, "renew with too few digits");
      // A patch whose result does not decode is 422, quoting the patched object.
      assert.equal(e.code, 422);
      assert.match(e.message, /^ "" is invalid: patch: Invalid value: ".*": parsing time/);
      const c = errorOf(t, "create with a time without microseconds");
      assert.equal(c.code, 400);
      assert.match(c.message, /^Lease in version "v1" cannot be handled as a Lease: parsing time/);
    },
  },
  {
    title: "resource quantities come back in canonical form; malformed ones answer 400",
    differences: ["storageProtectionFinalizers", "patchedObjectQuote"],
    async run(r) {
      const v = pv("quantity-pv");
      (v.spec as { capacity: Record<string, string> }).capacity.storage = "1024Mi";
      await r.call("create pv", () => r.res(R.persistentVolumes).create(v));
      const c = pvc("quantity-pvc");
      (c.spec as { resources: { requests: Record<string, string> } }).resources.requests.storage =
        "1.5Gi";
      await r.call("create pvc", () => r.res(R.persistentVolumeClaims).create(c));
      const caps = r.res(R.csiStorageCapacities);
      const values = [
        "2000000000",
        "1500",
        "2000",
        "100m",
        "0.1",
        "1000m",
        "1e3",
        "1.1Gi",
        "0.5Ki",
        "3072Ki",
        "512Ki",
        "1.5G",
        "+1",
        "0",
        "1E",
        "12345678901234567890",
      ];
      for (const [i, value] of values.entries()) {
        await r.call(`capacity ${value}`, () =>
          caps.create(capacity(`quantity-${i}`, value)).then((o) => o.capacity),
        );
      }
      await r.call("capacity 1Gx", () => caps.create(capacity("quantity-bad-1", "1Gx")));
      await r.call("capacity 1K", () => caps.create(capacity("quantity-bad-2", "1K")));
      await r.call("patch to a malformed quantity", () =>
        caps.patch("quantity-0", "merge", { capacity: "lots" }, NS),
      );
    },
    expect(t) {
      assert.equal(at(t, "create pv", "spec.capacity.storage"), "1Gi");
      assert.equal(at(t, "create pvc", "spec.resources.requests.storage"), "1536Mi");
      assert.equal(t["capacity 2000000000"], "2G");
      assert.equal(t["capacity 0.1"], "100m");
      const e = errorOf(t, "capacity 1Gx");
      assert.equal(e.code, 400);
      assert.match(e.message, /cannot be handled as a CSIStorageCapacity: quantities must match/);
    },
  },
  {
    title: "fields Kubernetes makes immutable answer 422 when changed",
    differences: ["storageProtectionFinalizers", "immutableSpecDiff"],
    async run(r) {
      const volumes = r.res(R.persistentVolumes);
      await r.call("create pv", () => volumes.create(pv("immutable-pv")));
      await r.call("change the volume source and mode", () =>
        volumes.patch("immutable-pv", "merge", {
          spec: { csi: { volumeHandle: "other" }, volumeMode: "Block" },
        }),
      );
      await r.call("change capacity, claimRef and mount options", () =>
        volumes.patch("immutable-pv", "merge", {
          spec: {
            capacity: { storage: "2Gi" },
            claimRef: { namespace: NS, name: "immutable-pvc" },
            mountOptions: ["ro"],
          },
        }),
      );
      const claims = r.res(R.persistentVolumeClaims);
      const patchClaim = (p: unknown) => claims.patch("immutable-pvc", "merge", p, NS);
      await r.call("create pvc", () => claims.create(pvc("immutable-pvc")));
      await r.call("change the class", () => patchClaim({ spec: { storageClassName: "other" } }));
      await r.call("grow an unbound claim", () =>
        patchClaim({ spec: { resources: { requests: { storage: "2Gi" } } } }),
      );
      await r.call("set the volume name", () =>
        patchClaim({ spec: { volumeName: "immutable-pv" } }),
      );
      await r.call("change the volume name", () =>
        patchClaim({ spec: { volumeName: "other-pv" } }),
      );
      const classes = r.res(R.storageClasses);
      await r.call("create sc", () =>
        classes.create({ ...sc("immutable-sc"), parameters: { k: "v" } }),
      );
      await r.call("change the class's immutable fields", () =>
        classes.patch("immutable-sc", "merge", {
          provisioner: "other.example.com",
          parameters: { k: "w" },
          reclaimPolicy: "Retain",
          volumeBindingMode: "WaitForFirstConsumer",
        }),
      );
      await r.call("change the class's mutable fields", () =>
        classes.patch("immutable-sc", "merge", {
          allowVolumeExpansion: true,
          mountOptions: ["ro"],
        }),
      );
    },
    expect(t) {
      const e = errorOf(t, "change the volume source and mode");
      assert.equal(e.code, 422);
      assert.equal((e.details as { causes: unknown[] }).causes.length, 2);
      assert.equal(
        at(t, "change capacity, claimRef and mount options", "spec.capacity.storage"),
        "2Gi",
      );
      assert.equal(errorOf(t, "change the class").code, 422);
      assert.equal(errorOf(t, "grow an unbound claim").code, 422);
      assert.equal(at(t, "set the volume name", "spec.volumeName"), "immutable-pv");
      assert.equal(errorOf(t, "change the volume name").code, 422);
      assert.equal(
        (errorOf(t, "change the class's immutable fields").details as { causes: unknown[] }).causes
          .length,
        4,
      );
      assert.equal(at(t, "change the class's mutable fields", "allowVolumeExpansion"), true);
    },
  },
  {
    title:
      "custom resources: generation, status subresource, no strategic merge patch, no unconditional update",
    async run(r) {
      const client = r.res(R.volumeSnapshots);
      const snap = (meta: Meta = {}): KubeObject => ({
        apiVersion: "snapshot.storage.k8s.io/v1",
        kind: "VolumeSnapshot",
        metadata: { name: "custom-vs", namespace: NS, ...meta },
        spec: { source: { persistentVolumeClaimName: "claim" }, volumeSnapshotClassName: "c" },
        status: { readyToUse: true },
      });
      const created = await r.call("create", () =>
        client.create(snap({ finalizers: ["example.com/a"], labels: {} })),
      );
      assert.ok(created);
      await r.call("list", () => client.list({ namespace: NS }));
      await r.call("strategic merge patch", () =>
        client.patch("custom-vs", "strategic", { metadata: { labels: { a: "1" } } }, NS),
      );
      const { resourceVersion: _rv, ...noRv } = created.metadata;
      await r.call("update without a resourceVersion", () =>
        client.update({ ...created, metadata: noRv }),
      );
      const updated = await r.call("update the spec", () =>
        client.update({
          ...created,
          spec: { source: { persistentVolumeClaimName: "claim" }, volumeSnapshotClassName: "d" },
        }),
      );
      assert.ok(updated);
      await r.call("status update", () =>
        client.updateStatus({
          ...updated,
          metadata: { ...updated.metadata, labels: { sent: "with-status" } },
          spec: { source: { persistentVolumeClaimName: "other" } },
          status: { readyToUse: false, restoreSize: "1Gi" },
        }),
      );
      await r.call("merge patch of the labels", () =>
        client.patch("custom-vs", "merge", { metadata: { labels: { a: "1" } } }, NS),
      );
      await r.call("status patch", () =>
        client.patch("custom-vs", "merge", { status: { readyToUse: true } }, NS, {
          subresource: "status",
        }),
      );
      await r.rawDelete("delete", R.volumeSnapshots, "custom-vs", { namespace: NS });
      await r.call("empty the finalizers", () =>
        client.patch("custom-vs", "merge", { metadata: { finalizers: [] } }, NS),
      );
      await r.call("get after", () => client.get("custom-vs", NS));
    },
    expect(t) {
      const c = objectOf(t, "create");
      assert.equal(c.metadata.generation, 1);
      assert.equal(at(t, "create", "status"), undefined);
      assert.equal(c.metadata.labels, undefined);
      // Items of custom resource lists keep apiVersion and kind.
      assert.equal((t.list as KubeList<KubeObject>).items[0]!.kind, "VolumeSnapshot");
      assert.equal(errorOf(t, "strategic merge patch").code, 415);
      assert.equal(errorOf(t, "update without a resourceVersion").code, 422);
      assert.equal(objectOf(t, "update the spec").metadata.generation, 2);
      const s = objectOf(t, "status update");
      assert.equal(s.metadata.labels, undefined);
      assert.equal(at(t, "status update", "spec.volumeSnapshotClassName"), "d");
      assert.deepEqual(at(t, "status update", "status"), { readyToUse: false, restoreSize: "1Gi" });
      const del = t.delete as { code: number; body: KubeObject };
      assert.equal(del.body.metadata.generation, 3);
      assert.equal(errorOf(t, "get after").code, 404);
    },
  },
  {
    title: "dry-run create validates and answers the object without storing it",
    async run(r) {
      const client = r.res(R.storageClasses);
      await r.call("dry-run create", () => client.create(sc("dryrun-sc"), { dryRun: true }));
      await r.call("get", () => client.get("dryrun-sc"));
      await r.call("dry-run create of an invalid object", () =>
        client.create(
          {
            apiVersion: "storage.k8s.io/v1",
            kind: "StorageClass",
            metadata: { name: "dryrun-bad" },
          },
          {
            dryRun: true,
          },
        ),
      );
    },
    expect(t) {
      assert.equal(objectOf(t, "dry-run create").metadata.name, "dryrun-sc");
      assert.equal(errorOf(t, "get").code, 404);
      assert.equal(errorOf(t, "dry-run create of an invalid object").code, 422);
    },
  },
  {
    title: "validation errors answer 422 Invalid with one cause per field",
    async run(r) {
      await r.call("claim without access modes", () =>
        r.res(R.persistentVolumeClaims).create({
          ...pvc("invalid-pvc"),
          spec: { resources: { requests: { storage: "1Gi" } } },
        }),
      );
      await r.call("class without provisioner", () =>
        r.res(R.storageClasses).create({
          apiVersion: "storage.k8s.io/v1",
          kind: "StorageClass",
          metadata: { name: "invalid-sc" },
        }),
      );
      const s = await r.res(R.storageClasses).create(sc("named-sc"));
      await r.raw("name on the body differs from the URL", {
        method: "PUT",
        path: resourcePath(R.storageClasses, undefined, "named-sc"),
        body: { ...s, metadata: { ...s.metadata, name: "other" } },
      });
    },
    expect(t) {
      const e = errorOf(t, "claim without access modes");
      assert.equal(e.code, 422);
      assert.equal(e.reason, "Invalid");
      assert.equal(errorOf(t, "class without provisioner").reason, "Invalid");
      assert.equal(errorOf(t, "name on the body differs from the URL").code, 400);
    },
  },
];

// ---------------------------------------------------------------- the suite

describe("the test API server agrees with kube-apiserver", () => {
  let cluster: Cluster | undefined;
  let testServer: ApiServer | undefined;
  let fake: Side;
  let real: Side | undefined;
  const fakeTranscripts = new Map<string, Record<string, unknown>>();

  const prepare = async (side: Side) => {
    await side.api.resource(namespacesResource).create({ metadata: { name: NS } });
  };

  /** Why the cluster could not be set up (reported by the kube-apiserver side of each case). */
  let clusterError: unknown;

  before(
    async () => {
      testServer = await startApiServer();
      fake = await connect(
        "test API server",
        testServer.kubeconfig(),
        "test-api-server.kubeconfig",
      );
      await prepare(fake);
      if (!binDir) return;
      try {
        cluster = await startCluster({
          binDir,
          log: process.env.E2E_VERBOSE ? (line) => console.error(line) : undefined,
        });
        await stopControllerManager(cluster);
        real = await connect("kube-apiserver", "", cluster.adminKubeconfig);
        await prepare(real);
        await installSnapshotCrd(cluster);
      } catch (err) {
        // The test API server side still runs; each kube-apiserver side fails with this.
        clusterError = err;
      }
    },
    { timeout: TIMEOUT_MS },
  );

  after(
    async () => {
      await cluster?.stop();
      await testServer?.close();
    },
    { timeout: TIMEOUT_MS },
  );

  const runOn = async (c: Case, side: Side): Promise<Record<string, unknown>> => {
    const rec = new Recorder(side);
    await c.run(rec);
    return normalise(rec.transcript);
  };

  const withDifferences = (c: Case, t: Record<string, unknown>) => {
    let out = t;
    for (const name of c.differences ?? []) out = expectedDifferences[name].apply(out);
    return out;
  };

  for (const c of cases) {
    describe(c.title, () => {
      it("gives the expected answers on the test API server", { timeout: TIMEOUT_MS }, async () => {
        const t = await runOn(c, fake);
        fakeTranscripts.set(c.title, t);
        c.expect(t);
      });

      it("gives the same answers on kube-apiserver", {
        skip: skipReal,
        timeout: TIMEOUT_MS,
      }, async () => {
        if (clusterError !== undefined) throw clusterError;
        const theirs = await runOn(c, real!);
        const ours = fakeTranscripts.get(c.title) ?? (await runOn(c, fake));
        for (const name of c.differences ?? []) {
          const d: ExpectedDifference = expectedDifferences[name];
          assert.notDeepEqual(
            d.apply(theirs),
            theirs,
            `expected difference "${name}" (${d.why}) was not seen: remove it from the case`,
          );
        }
        const comparable = withDifferences(c, theirs);
        const diffs = differences(withDifferences(c, ours), comparable);
        assert.ok(
          diffs.length === 0,
          `the test API server answers differently from kube-apiserver:\n${diffs.join("\n")}`,
        );
        c.expect(comparable);
      });
    });
  }
});
