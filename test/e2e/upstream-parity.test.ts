/**
 * Drop-in parity with upstream's binary, end to end: the compiled sidecar runs the scenario of
 * scripts/capture-upstream.ts (a real control plane, the CSI mock driver; a claim provisioned
 * and deleted, a bad StorageClass parameter, a driver error, two topology failures; text and
 * JSON logs; NODE_NAME set without --node-deployment) and what it shows is compared with what
 * upstream's binary showed in the same run (test/fixtures/upstream-behaviour.json).
 *
 *   E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1) E2E_PROVISIONER=dist/csi-provisioner-linux-x64 \
 *     node_modules/.bin/node --test test/e2e/upstream-parity.test.ts
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type Capture, capture, FIXTURE } from "../../scripts/capture-upstream.ts";
import { familyDifferences } from "../support/metric-families.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const binDir = process.env.E2E_BIN_DIR;
const EXE = process.env.E2E_PROVISIONER ?? path.join(ROOT, "dist/csi-provisioner-linux-x64");
const skip = !binDir
  ? "E2E_BIN_DIR is not set: build the control plane with E2E_BIN_DIR=$(bash scripts/e2e/build.sh | tail -1)"
  : false;
const TIMEOUT_MS = 240_000;

/** klog's header: severity, mmdd hh:mm:ss.uuuuuu, thread id, file:line. */
const KLOG_HEADER = /^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d{6} +\d+ [^ :\]]+:\d+\] /;

describe("drop-in parity with upstream's binary", { skip }, () => {
  const upstream = JSON.parse(readFileSync(FIXTURE, "utf8")) as Capture;
  let ours: Capture;
  before(
    async () => {
      assert.ok(
        existsSync(EXE),
        `${EXE} does not exist: run scripts/build.sh or set E2E_PROVISIONER`,
      );
      ours = await capture(EXE, binDir!);
    },
    { timeout: TIMEOUT_MS },
  );

  it("keeps the provisioner identity free of NODE_NAME without --node-deployment", () => {
    assert.equal(upstream.provisionerIdentity.endsWithNodeName, false);
    assert.match(ours.provisionerIdentity.identity, /^\d+-\d{1,4}-hostpath\.csi\.k8s\.io$/);
    assert.equal(ours.provisionerIdentity.endsWithNodeName, false);
  });

  it("writes upstream's ProvisioningFailed texts", () => {
    assert.deepEqual(ours.events, upstream.events);
  });

  it("serves upstream's metric families, types, help, label names and values", () => {
    assert.deepEqual(
      familyDifferences(ours.metrics, upstream.metrics, {
        upstream: upstream.driverName,
        ours: ours.driverName,
      }),
      [],
    );
  });

  it("logs klog's text header and component-base's JSON keys", () => {
    assert.ok(ours.logs.text.length > 0 && ours.logs.json.length > 0);
    for (const line of [...ours.logs.text, ...upstream.logs.text]) assert.match(line, KLOG_HEADER);
    for (const line of ours.logs.json) {
      const keys = Object.keys(JSON.parse(line));
      assert.deepEqual(keys.slice(0, 3), ["ts", "caller", "msg"], line);
      // Info lines carry v right after msg; error lines carry no v.
      assert.ok(keys[3] === "v" || !keys.includes("v"), line);
    }
  });
});
