/**
 * The dev binder (kube-controller-manager's PV controller, in small) on the test API server:
 * the default StorageClass for claims that name none, and an event plus one log line for claims
 * that cannot be provisioned, instead of a silent Pending.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runBinder } from "../../src/dev/binder.ts";
import { noAuth } from "../../src/kube/auth.ts";
import { createKubeApi } from "../../src/kube/client.ts";
import type { CoreEvent, PersistentVolumeClaim, StorageClass } from "../../src/kube/objects.ts";
import { resources } from "../../src/kube/resources.ts";
import { KubeTransport } from "../../src/kube/transport.ts";
import { systemClock } from "../../src/util/clock.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";

const deadline = () => ({ signal: AbortSignal.timeout(20_000) });

function claim(name: string, storageClassName?: string): PersistentVolumeClaim {
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: { name, namespace: "default" },
    spec: {
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: "1Gi" } },
      ...(storageClassName !== undefined ? { storageClassName } : {}),
    },
  };
}

const defaultClass: StorageClass = {
  apiVersion: "storage.k8s.io/v1",
  kind: "StorageClass",
  metadata: {
    name: "hostdir",
    annotations: { "storageclass.kubernetes.io/is-default-class": "true" },
  },
  provisioner: "hostdir.csi.example.com",
};

describe("dev binder", () => {
  let server: ApiServer;
  const stop = new AbortController();
  let binder: Promise<void>;
  const logger = memoryLogger(systemClock);

  before(async () => {
    server = await startApiServer({ objects: [defaultClass] });
    const api = createKubeApi(
      new KubeTransport({
        connection: { server: server.url, tls: {}, auth: noAuth, source: "test" },
        version: "test",
        clock: systemClock,
        random: Math.random,
      }),
    );
    binder = runBinder({ api, clock: systemClock, random: Math.random, logger }, stop.signal);
  });
  after(async () => {
    stop.abort();
    await binder;
    await server.close();
  });

  const eventsFor = (name: string) =>
    server
      .objects(resources.coreEvents, "default")
      .filter((e: CoreEvent) => e.involvedObject?.name === name);

  it("gives a claim without a class the default StorageClass", async () => {
    server.put(claim("plain"));
    const c = await server.waitFor(() => {
      const c = server.get(resources.persistentVolumeClaims, "plain");
      return c?.metadata.annotations?.["volume.kubernetes.io/storage-provisioner"] ? c : undefined;
    }, deadline());
    assert.equal(c.spec.storageClassName, "hostdir");
    assert.equal(
      c.metadata.annotations?.["volume.kubernetes.io/storage-provisioner"],
      "hostdir.csi.example.com",
    );
    assert.ok(
      logger.lines.some((l) =>
        l.includes("Claim default/plain gets the default StorageClass hostdir"),
      ),
    );
  });

  it("tells a claim of an unknown class why it stays Pending: one event, one log line", async () => {
    server.put(claim("lost", "no-such-class"));
    const [event] = await server.waitFor(() => {
      const e = eventsFor("lost");
      return e.length > 0 ? e : undefined;
    }, deadline());
    assert.equal(event?.type, "Warning");
    assert.equal(event?.reason, "ProvisioningFailed");
    assert.equal(event?.message, 'storageclass.storage.k8s.io "no-such-class" not found');
    assert.equal(event?.source?.component, "persistentvolume-controller");
    const lines = logger.lines.filter((l) =>
      l.includes("Claim default/lost cannot be provisioned"),
    );
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0] ?? "", /storageclass\.storage\.k8s\.io \\"no-such-class\\" not found/);
  });

  it('tells a claim with storageClassName "" that no class is set', async () => {
    server.put(claim("classless", ""));
    const [event] = await server.waitFor(() => {
      const e = eventsFor("classless");
      return e.length > 0 ? e : undefined;
    }, deadline());
    assert.equal(event?.type, "Normal");
    assert.equal(event?.reason, "FailedBinding");
    assert.equal(
      event?.message,
      "no persistent volumes available for this claim and no storage class is set",
    );
    assert.equal(
      server.get(resources.persistentVolumeClaims, "classless")?.spec.storageClassName,
      "",
    );
  });
});
