/**
 * The differential suite: upstream's `csi-provisioner` is the oracle. Every case of
 * test/e2e/differential/cases.ts runs once with upstream's sidecar and once with ours, against
 * the same control plane and hostpathplugin, and the normalised results are compared: the PV,
 * the claim's annotations and finalizers, the CreateVolume and DeleteVolume requests the driver
 * logged, the sidecar's events and, for bad flags, the exit code. A difference is either in
 * differential/allowlist.ts (and the README's "What is different from upstream (on purpose)")
 * or fails the suite. Prints one line:
 *
 *   differential: N cases, N identical, N intentional differences, N unexpected
 *
 *   export E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)
 *   E2E_PROVISIONER=/path/to/csi-provisioner-linux-x64 \
 *     node_modules/.bin/node --test --test-concurrency=1 test/e2e/differential.test.ts
 *
 * Only unexpected differences are printed, one line each (case, field path, upstream's value,
 * ours); DIFF_SHOW_ALL=1 prints the intentional ones too. DIFF_SETS=default,meta runs only those
 * flag sets (and no bad flags unless DIFF_BAD_FLAGS=1); DIFF_PROGRESS=1 prints each phase's
 * stages with times; DIFF_DUMP=file writes every normalised observation as JSON; E2E_VERBOSE=1
 * prints every child's log lines; E2E_KEEP_DIR=1 keeps the logs. The pure parts (table,
 * normalisation, comparison) are tested first and need no cluster.
 */

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { type Cluster, startCluster } from "./cluster.ts";
import { ALLOWLIST } from "./differential/allowlist.ts";
import { BAD_FLAGS, CASES, type Case, validateTable } from "./differential/cases.ts";
import {
  type CaseResult,
  describeDifference,
  diff,
  judge,
  summaryLine,
  unusedEntries,
} from "./differential/compare.ts";
import {
  normaliseClaim,
  normaliseEventSources,
  normaliseEvents,
  normalisePv,
  normaliseRequests,
  Tokens,
} from "./differential/normalise.ts";
import { type Observations, runAll } from "./differential/run.ts";
import { installSnapshotCrds, OUR_EXECUTABLE, startSnapshotChain } from "./peers.ts";
import { killAllStarted } from "./support.ts";

describe("differential: the case table", () => {
  it("is sound and has at least 40 cases", () => {
    assert.deepEqual(validateTable(), []);
    assert.ok(CASES.length + BAD_FLAGS.length >= 40, `${CASES.length + BAD_FLAGS.length} cases`);
  });

  it("finds a source that is missing, in another flag set, itself cloned or shared", () => {
    const base: Case = {
      id: "a",
      flags: "default",
      what: "",
      class: {},
      claim: {},
      expect: "provisioned",
    };
    const problems = validateTable([
      base,
      { ...base, id: "b", claim: { cloneOf: "nope" } },
      { ...base, id: "c", flags: "meta", claim: { cloneOf: "a" } },
      { ...base, id: "d", claim: { restoreOf: "b" } },
      { ...base, id: "e", claim: { cloneOf: "a" } },
      { ...base, id: "f", claim: { cloneOf: "a" } },
      { ...base, id: "a" },
    ]);
    assert.deepEqual(problems, [
      "duplicate case id a",
      "b: source nope is no case",
      "c: source a is in another flag set",
      "d: source b has a source itself",
      "f: clone source a is used by e too",
    ]);
  });
});

describe("differential: normalisation", () => {
  const uid = "0b4f9a3c-1d2e-4f5a-8b6c-7d8e9f0a1b2c";
  const tokens = () =>
    new Tokens()
      .add("diff-up-default", "<ns>")
      .addUid(uid, "<uid:plain>", 16)
      .add("vol-42", "<volume:plain>");

  it("replaces UIDs in every form a volume name takes, namespaces, volume IDs, identities and times", () => {
    const t = tokens();
    assert.equal(t.string(`pvc-${uid}`), "pvc-<uid:plain>");
    assert.equal(t.string("vol-0b4f9a3c1d2e4f5a"), "vol-<uid:plain>");
    assert.equal(t.string("pvc-0b4f9a3c1d2e4f5a8b6c7d8e9f0a1b2c"), "pvc-<uid:plain>");
    assert.equal(t.string("diff-up-default/plain"), "<ns>/plain");
    assert.equal(
      t.string("1765080000123-4821-hostpath.csi.k8s.io"),
      "<identity>-hostpath.csi.k8s.io",
    );
    assert.equal(
      t.string("at 2026-12-07T04:50:01Z for 11111111-2222-3333-4444-555555555555"),
      "at <time> for <uuid>",
    );
    assert.deepEqual(t.value({ "<x>": ["vol-42"], [`k-${uid}`]: 1 }), {
      "<x>": ["<volume:plain>"],
      "k-<uid:plain>": 1,
    });
  });

  it("keeps what the provisioner decides of a PV and drops what the server decides", () => {
    const pv = {
      metadata: {
        name: `pvc-${uid}`,
        uid: "x",
        resourceVersion: "12",
        creationTimestamp: "2026-12-07T04:50:01Z",
        managedFields: [{}],
        annotations: { "pv.kubernetes.io/provisioned-by": "hostpath.csi.k8s.io" },
        finalizers: [
          "kubernetes.io/pv-protection",
          "external-provisioner.volume.kubernetes.io/finalizer",
        ],
      },
      spec: {
        claimRef: { name: "plain", namespace: "diff-up-default", uid, resourceVersion: "9" },
        csi: { volumeHandle: "vol-42", fsType: "ext4" },
      },
      status: { phase: "Bound", lastPhaseTransitionTime: "2026-12-07T04:50:02Z" },
    };
    assert.deepEqual(normalisePv(pv, tokens()), {
      metadata: {
        name: "pvc-<uid:plain>",
        annotations: { "pv.kubernetes.io/provisioned-by": "hostpath.csi.k8s.io" },
        finalizers: [
          "external-provisioner.volume.kubernetes.io/finalizer",
          "kubernetes.io/pv-protection",
        ],
      },
      spec: {
        claimRef: { name: "plain", namespace: "<ns>", uid: "<uid:plain>" },
        csi: { volumeHandle: "<volume:plain>", fsType: "ext4" },
      },
      status: { phase: "Bound" },
    });
  });

  it("reduces a claim to annotations, finalizers, volume and phase", () => {
    const claim = {
      metadata: { uid, resourceVersion: "3", annotations: { a: "b" } },
      spec: { volumeName: `pvc-${uid}` },
      status: { phase: "Bound", capacity: { storage: "1Gi" } },
    };
    assert.deepEqual(normaliseClaim(claim, tokens()), {
      annotations: { a: "b" },
      finalizers: [],
      volumeName: "pvc-<uid:plain>",
      phase: "Bound",
      capacity: { storage: "1Gi" },
    });
  });

  it("groups events by type and reason with distinct messages, ignoring counts", () => {
    const events = [
      { type: "Warning", reason: "ProvisioningFailed", message: "x in diff-up-default", count: 3 },
      { type: "Warning", reason: "ProvisioningFailed", message: "x in diff-up-default", count: 1 },
      { type: "Normal", reason: "Provisioning", message: "b" },
    ];
    assert.deepEqual(normaliseEvents(events, tokens()), {
      "Normal Provisioning": ["b"],
      "Warning ProvisioningFailed": ["x in <ns>"],
    });
  });

  it("names who wrote each kind of event, with the recorder's random ID normalised", () => {
    const events = [
      {
        type: "Normal",
        reason: "Provisioning",
        source: { component: "hostpath.csi.k8s.io_vm_11111111-2222-3333-4444-555555555555" },
        reportingComponent: "hostpath.csi.k8s.io_vm_11111111-2222-3333-4444-555555555555",
      },
      {
        type: "Normal",
        reason: "Provisioning",
        source: { component: "external-provisioner", host: "vm" },
        reportingComponent: "external-provisioner",
        reportingInstance: "vm",
      },
    ];
    assert.deepEqual(normaliseEventSources(events, tokens()), {
      "Normal Provisioning": [
        "external-provisioner on vm, reporting external-provisioner vm",
        "hostpath.csi.k8s.io_vm_<uuid> on , reporting hostpath.csi.k8s.io_vm_<uuid> ",
      ],
    });
  });

  it("keeps distinct requests once, in a stable order, whatever their key order", () => {
    const reqs = [
      { name: `pvc-${uid}`, parameters: { b: "1", a: "2" } },
      { parameters: { a: "2", b: "1" }, name: `pvc-${uid}` },
      { name: "other" },
    ];
    assert.deepEqual(normaliseRequests(reqs, tokens()), [
      { name: "other" },
      { name: "pvc-<uid:plain>", parameters: { a: "2", b: "1" } },
    ]);
  });
});

describe("differential: comparison", () => {
  it("reports each differing leaf with its path and both values", () => {
    const d = diff(
      "plain",
      { pv: { spec: { csi: { fsType: "ext4", volumeAttributes: { "a/b": "1" } } } }, list: [1, 2] },
      {
        pv: { spec: { csi: { fsType: "xfs", volumeAttributes: { "a/b": "1" } } } },
        list: [1, 2, 3],
      },
    );
    assert.deepEqual(d, [
      { case: "plain", path: "list", upstream: [1, 2], ours: [1, 2, 3] },
      { case: "plain", path: "pv.spec.csi.fsType", upstream: "ext4", ours: "xfs" },
    ]);
    assert.deepEqual(diff("x", { a: { "k/v": 1 } }, { a: {} }), [
      { case: "x", path: 'a["k/v"]', upstream: 1, ours: undefined },
    ]);
    assert.deepEqual(diff("x", { a: [{ b: 1 }] }, { a: [{ b: 1 }] }), []);
  });

  it("judges a case identical, intentional or unexpected, and prints the summary", () => {
    const allow = [
      {
        id: "deferred",
        reason: "r",
        path: 'events["Normal Provisioning"]',
        when: (x: { ours: unknown }) => x.ours === undefined,
      },
      { id: "only-b", reason: "r", cases: ["b"], path: /^pv\./ },
    ];
    const results: CaseResult[] = [
      judge("a", [], allow),
      judge("b", [{ case: "b", path: "pv.x", upstream: 1, ours: 2 }], allow),
      judge("c", [{ case: "c", path: "pv.x", upstream: 1, ours: 2 }], allow),
      judge(
        "d",
        [{ case: "d", path: 'events["Normal Provisioning"]', upstream: ["m"], ours: undefined }],
        allow,
      ),
      judge(
        "e",
        [{ case: "e", path: 'events["Normal Provisioning"]', upstream: ["m"], ours: ["n"] }],
        allow,
      ),
    ];
    assert.deepEqual(
      results.map((r) => r.verdict),
      ["identical", "intentional", "unexpected", "intentional", "unexpected"],
    );
    assert.equal(
      summaryLine(results),
      "differential: 5 cases, 1 identical, 2 intentional differences, 2 unexpected",
    );
    assert.equal(
      describeDifference(results[2]!.differences[0]!),
      "c: pv.x: upstream 1 | ours 2 — UNEXPECTED",
    );
    assert.deepEqual(
      unusedEntries(results.slice(0, 1), allow).map((a) => a.id),
      ["deferred", "only-b"],
    );
  });
});

const binDir = process.env.E2E_BIN_DIR;
const skip = !binDir
  ? "E2E_BIN_DIR is not set: build the control plane with E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)"
  : false;
const verbose = Boolean(process.env.E2E_VERBOSE);
const onlySets = process.env.DIFF_SETS?.split(",").filter(Boolean);
const showAll = Boolean(process.env.DIFF_SHOW_ALL);
const showProgress = verbose || Boolean(process.env.DIFF_PROGRESS);

describe("differential: upstream's csi-provisioner against ours", {
  skip,
  timeout: 1_200_000,
}, () => {
  let cluster: Cluster | undefined;
  let stopChain: (() => Promise<void>) | undefined;
  const dir = mkdtempSync(path.join(os.tmpdir(), "diff-"));

  after(async () => {
    await stopChain?.();
    await killAllStarted();
    await cluster?.stop();
    if (!process.env.E2E_KEEP_DIR) rmSync(dir, { recursive: true, force: true });
    else console.error(`differential: logs kept in ${dir}`);
  });

  it("every case behaves as upstream's, or differs on purpose", {
    timeout: 1_200_000,
  }, async () => {
    const started = Date.now();
    const log = verbose ? (l: string) => console.error(l) : undefined;
    cluster = await startCluster({
      binDir: binDir!,
      driver: "hostpath",
      enableTopology: true,
      workDir: dir,
      keepWorkDir: Boolean(process.env.E2E_KEEP_DIR),
      log,
    });
    await installSnapshotCrds(cluster, binDir!);
    const chain = await startSnapshotChain(cluster, { binDir: binDir!, logDir: dir, log });
    stopChain = () => chain.stop();

    const obs: Observations = await runAll({
      cluster,
      binDir: binDir!,
      executable: OUR_EXECUTABLE,
      logDir: dir,
      log,
      flagSets: onlySets,
      skipBadFlags: onlySets !== undefined && !process.env.DIFF_BAD_FLAGS,
      progress: showProgress
        ? (l) => console.error(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${l}`)
        : undefined,
    });

    const results: CaseResult[] = [];
    const tableErrors: string[] = [];
    for (const [id, o] of obs) {
      const k = CASES.find((x) => x.id === id);
      if (k && o.upstream.outcome !== k.expect) {
        tableErrors.push(
          `${id}: expected ${k.expect}, upstream's outcome is ${o.upstream.outcome}`,
        );
      }
      const d = diff(
        id,
        { outcome: o.upstream.outcome, ...o.upstream.value },
        { outcome: o.ours.outcome, ...o.ours.value },
      );
      results.push(judge(id, d, ALLOWLIST));
    }
    for (const r of results) {
      for (const j of r.differences) {
        if (!j.intentional || showAll) console.log(describeDifference(j));
      }
    }
    console.log(summaryLine(results));
    const unused = unusedEntries(results, ALLOWLIST).map((a) => a.id);
    console.error(
      `differential: wall time ${((Date.now() - started) / 1000).toFixed(0)} s${unused.length > 0 ? `; allowlist entries not needed this run: ${unused.join(", ")}` : ""}`,
    );
    if (process.env.DIFF_DUMP) {
      const { writeFileSync } = await import("node:fs");
      writeFileSync(process.env.DIFF_DUMP, JSON.stringify(Object.fromEntries(obs), null, 2));
    }
    assert.deepEqual(tableErrors, [], "the case table does not match upstream's behaviour");
    const unexpected = results.filter((r) => r.verdict === "unexpected").map((r) => r.case);
    assert.deepEqual(unexpected, [], "cases that differ from upstream without an allowlist entry");
  });
});
