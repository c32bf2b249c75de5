/**
 * The TLS and auth matrix: kubeconfig and in-cluster configurations against loopback HTTPS
 * servers (one requires a client certificate signed by the test CA), through the real transport.
 */
import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { type KubeConnection, loadKubeConnection } from "../../src/kube/config.ts";
import { isTransport, isUnauthorized } from "../../src/kube/errors.ts";
import { KubeTransport } from "../../src/kube/transport.ts";
import { closeIdleConnections } from "../../src/runtime/https.ts";
import { makeTestPki, type TestPki } from "../support/certs.ts";
import { FakeClock } from "../support/fake-clock.ts";
import {
  type ConnectProxy,
  type Loopback,
  sendJson,
  startConnectProxy,
  startLoopback,
  statusBody,
} from "../support/loopback.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");
const readText = (p: string) => readFile(p, "utf8");

interface KubeconfigParts {
  server: string;
  cluster?: Record<string, unknown>;
  user?: Record<string, unknown>;
  namespace?: string;
}

function kubeconfig(p: KubeconfigParts): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      { name: "decoy", cluster: { server: "https://decoy.invalid:1" } },
      { name: "test", cluster: { server: p.server, ...p.cluster } },
    ],
    users: [
      { name: "decoy", user: { token: "wrong" } },
      { name: "tester", user: { ...p.user } },
    ],
    contexts: [
      { name: "other", context: { cluster: "decoy", user: "decoy" } },
      { name: "main", context: { cluster: "test", user: "tester", namespace: p.namespace } },
    ],
    "current-context": "main",
  });
}

describe("loadKubeConnection()", () => {
  let pki: TestPki;
  let mtls: Loopback;
  let tlsOnly: Loopback;
  let proxy: ConnectProxy;
  let dir: string;
  let clock: FakeClock;

  const whoami = (
    req: { headers: Record<string, unknown> },
    res: Parameters<Loopback["handler"]>[1],
  ) => sendJson(res, 200, { kind: "Whoami", authorization: req.headers.authorization ?? null });

  before(async () => {
    pki = await makeTestPki();
    mtls = await startLoopback({ pki, handler: whoami });
    tlsOnly = await startLoopback({ pki, requireClientCert: false, handler: whoami });
    proxy = await startConnectProxy();
  });
  after(async () => {
    await mtls.close();
    await tlsOnly.close();
    await proxy.close();
    await pki.cleanup();
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kubeconfig-"));
    clock = new FakeClock();
    mtls.handler = whoami;
    tlsOnly.handler = whoami;
  });
  afterEach(async () => {
    closeIdleConnections();
    await rm(dir, { recursive: true, force: true });
  });

  async function load(text: string, extra: Partial<Parameters<typeof loadKubeConnection>[0]> = {}) {
    const path = join(dir, "kubeconfig");
    await writeFile(path, text);
    return loadKubeConnection({
      kubeconfigPath: path,
      env: {},
      readFile: readText,
      clock,
      ...extra,
    });
  }

  function call(conn: KubeConnection) {
    const t = new KubeTransport({
      connection: conn,
      version: "test",
      clock,
      random: () => 0.5,
      idempotentRetries: 0,
    });
    return t.request<{ kind: string; authorization: string | null }>({
      method: "GET",
      path: "/api/v1/namespaces/default/pods",
    });
  }

  describe("with a kubeconfig", () => {
    it("connects with inline CA, client certificate and key data to a server requiring a client certificate", async () => {
      const conn = await load(
        kubeconfig({
          server: mtls.url,
          cluster: { "certificate-authority-data": b64(pki.caPem) },
          user: {
            "client-certificate-data": b64(pki.clientCertPem),
            "client-key-data": b64(pki.clientKeyPem),
          },
          namespace: "team-a",
        }),
      );
      assert.equal(conn.server, mtls.url);
      assert.equal(conn.namespace, "team-a");
      assert.match(conn.source, /context main/);
      const res = await call(conn);
      assert.equal(res.json.kind, "Whoami");
      assert.equal(res.json.authorization, null);
    });

    it("watches over TLS with the CA, client certificate and key, and closes the stream on abort", async () => {
      let closed!: () => void;
      const serverSawClose = new Promise<void>((r) => {
        closed = r;
      });
      mtls.handler = (req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.write(`${JSON.stringify({ type: "ADDED", watch: req.query.get("watch") })}\n`);
        res.on("close", () => closed());
      };
      const conn = await load(
        kubeconfig({
          server: mtls.url,
          cluster: { "certificate-authority-data": b64(pki.caPem) },
          user: {
            "client-certificate-data": b64(pki.clientCertPem),
            "client-key-data": b64(pki.clientKeyPem),
          },
        }),
      );
      const t = new KubeTransport({ connection: conn, version: "test", clock, random: () => 0.5 });
      const ac = new AbortController();
      const stream = await t.stream<{ type: string; watch: string }>({
        method: "GET",
        path: "/api/v1/persistentvolumes",
        query: { watch: "true" },
        signal: ac.signal,
      });
      assert.deepEqual((await stream.next()).value, { type: "ADDED", watch: "true" });
      const pending = stream.next();
      ac.abort(new Error("done watching"));
      await assert.rejects(pending, /done watching/);
      await serverSawClose;
    });

    it("connects with certificate files given relative to the kubeconfig's directory", async () => {
      await writeFile(join(dir, "ca.pem"), pki.caPem);
      await writeFile(join(dir, "client.pem"), pki.clientCertPem);
      await writeFile(join(dir, "client-key.pem"), pki.clientKeyPem);
      const conn = await load(
        kubeconfig({
          server: mtls.url,
          cluster: { "certificate-authority": "ca.pem" },
          user: { "client-certificate": "client.pem", "client-key": join(dir, "client-key.pem") },
        }),
      );
      assert.equal((await call(conn)).json.kind, "Whoami");
    });

    it("fails with a transport error when the server requires a client certificate and none is configured", async () => {
      const conn = await load(
        kubeconfig({
          server: mtls.url,
          cluster: { "certificate-authority-data": b64(pki.caPem) },
          user: { token: "t" },
        }),
      );
      const err = await call(conn).catch((e: unknown) => e);
      assert.ok(isTransport(err), String(err));
      assert.match(
        (err as Error).message,
        /^Get \/api\/v1\/namespaces\/default\/pods: .*certificate/i,
      );
      assert.equal(mtls.requests.filter((r) => r.headers.authorization === "Bearer t").length, 0);
    });

    it("fails with a transport error when the server's CA is not trusted", async () => {
      const conn = await load(
        kubeconfig({
          server: mtls.url,
          user: {
            "client-certificate-data": b64(pki.clientCertPem),
            "client-key-data": b64(pki.clientKeyPem),
          },
        }),
      );
      const err = await call(conn).catch((e: unknown) => e);
      assert.ok(isTransport(err), String(err));
      assert.match((err as Error).message, /certificate/i);
    });

    it("skips server verification with insecure-skip-tls-verify", async () => {
      const conn = await load(
        kubeconfig({
          server: mtls.url,
          cluster: { "insecure-skip-tls-verify": true },
          user: {
            "client-certificate-data": b64(pki.clientCertPem),
            "client-key-data": b64(pki.clientKeyPem),
          },
        }),
      );
      assert.equal(conn.tls.insecureSkipVerify, true);
      assert.equal((await call(conn)).json.kind, "Whoami");
    });

    it("sends a bearer token and impersonation headers", async () => {
      const conn = await load(
        kubeconfig({
          server: tlsOnly.url,
          cluster: { "certificate-authority-data": b64(pki.caPem) },
          user: {
            token: "static-token",
            as: "system:serviceaccount:kube-system:csi",
            "as-uid": "1234",
          },
        }),
      );
      assert.equal((await call(conn)).json.authorization, "Bearer static-token");
      const req = tlsOnly.requests.at(-1)!;
      assert.equal(req.headers["impersonate-user"], "system:serviceaccount:kube-system:csi");
      assert.equal(req.headers["impersonate-uid"], "1234");
    });

    it("sends basic auth for a username and password", async () => {
      const conn = await load(
        kubeconfig({
          server: tlsOnly.url,
          cluster: { "certificate-authority-data": b64(pki.caPem) },
          user: { username: "admin", password: "pässword" },
        }),
      );
      const auth = (await call(conn)).json.authorization!;
      assert.equal(
        Buffer.from(auth.replace(/^Basic /, ""), "base64").toString("utf8"),
        "admin:pässword",
      );
    });

    it("re-reads a rotated token-file after a minute, and at once after a 401", async () => {
      const tokenPath = join(dir, "token");
      await writeFile(tokenPath, "token-1\n");
      const conn = await load(
        kubeconfig({
          server: tlsOnly.url,
          cluster: { "certificate-authority-data": b64(pki.caPem) },
          user: { "token-file": "token" },
        }),
      );
      assert.equal((await call(conn)).json.authorization, "Bearer token-1");
      await writeFile(tokenPath, "token-2\n");
      await clock.advance(30_000);
      assert.equal((await call(conn)).json.authorization, "Bearer token-1", "cached for a minute");
      await clock.advance(30_000);
      assert.equal(
        (await call(conn)).json.authorization,
        "Bearer token-2",
        "re-read after a minute",
      );

      // The server stops accepting token-2 as soon as token-3 is written.
      await writeFile(tokenPath, "token-3");
      tlsOnly.handler = (req, res) =>
        req.headers.authorization === "Bearer token-3"
          ? whoami(req, res)
          : sendJson(res, 401, statusBody(401, "Unauthorized", "Unauthorized"));
      assert.equal((await call(conn)).json.authorization, "Bearer token-3", "re-read after a 401");
    });

    it("runs an exec credential plugin once while its credential is valid, and again after a 401", async () => {
      const plugin = join(dir, "plugin.sh");
      await writeFile(
        plugin,
        [
          "#!/bin/sh",
          'd="$(dirname "$0")"',
          'n=$(cat "$d/count" 2>/dev/null || echo 0); n=$((n+1)); echo "$n" > "$d/count"',
          'printf "%s" "$KUBERNETES_EXEC_INFO" > "$d/exec-info"',
          'printf \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-%s","expirationTimestamp":"2999-01-01T00:00:00Z"}}\' "$n"',
          "",
        ].join("\n"),
      );
      await chmod(plugin, 0o755);
      const conn = await load(
        kubeconfig({
          server: tlsOnly.url,
          cluster: { "certificate-authority-data": b64(pki.caPem) },
          user: {
            exec: {
              apiVersion: "client.authentication.k8s.io/v1",
              command: "./plugin.sh",
              interactiveMode: "Never",
              provideClusterInfo: true,
            },
          },
        }),
      );
      assert.equal((await call(conn)).json.authorization, "Bearer exec-1");
      assert.equal((await call(conn)).json.authorization, "Bearer exec-1");
      assert.equal((await readText(join(dir, "count"))).trim(), "1");
      const info = JSON.parse(await readText(join(dir, "exec-info")));
      assert.equal(info.kind, "ExecCredential");
      assert.equal(info.apiVersion, "client.authentication.k8s.io/v1");
      assert.equal(info.spec.interactive, false);
      assert.equal(info.spec.cluster.server, tlsOnly.url);

      tlsOnly.handler = (req, res) =>
        req.headers.authorization === "Bearer exec-1"
          ? sendJson(res, 401, statusBody(401, "Unauthorized", "Unauthorized"))
          : whoami(req, res);
      assert.equal((await call(conn)).json.authorization, "Bearer exec-2");
      assert.equal((await readText(join(dir, "count"))).trim(), "2");
    });

    it("uses a client certificate handed out by an exec plugin", async () => {
      await writeFile(
        join(dir, "credential.json"),
        JSON.stringify({
          apiVersion: "client.authentication.k8s.io/v1beta1",
          kind: "ExecCredential",
          status: { clientCertificateData: pki.clientCertPem, clientKeyData: pki.clientKeyPem },
        }),
      );
      const plugin = join(dir, "cert-plugin.sh");
      await writeFile(plugin, '#!/bin/sh\ncat "$(dirname "$0")/credential.json"\n');
      await chmod(plugin, 0o755);
      const conn = await load(
        kubeconfig({
          server: mtls.url,
          cluster: { "certificate-authority-data": b64(pki.caPem) },
          user: { exec: { apiVersion: "client.authentication.k8s.io/v1beta1", command: plugin } },
        }),
      );
      assert.equal((await call(conn)).json.kind, "Whoami");
    });

    it("reports a failing exec plugin as a transport error", async () => {
      const plugin = join(dir, "broken.sh");
      await writeFile(plugin, "#!/bin/sh\necho 'not logged in' >&2\nexit 3\n");
      await chmod(plugin, 0o755);
      const conn = await load(
        kubeconfig({
          server: tlsOnly.url,
          cluster: { "certificate-authority-data": b64(pki.caPem) },
          user: { exec: { apiVersion: "client.authentication.k8s.io/v1", command: plugin } },
        }),
      );
      const err = await call(conn).catch((e: unknown) => e);
      assert.ok(isTransport(err));
      assert.match((err as Error).message, /getting credentials: not logged in/);
    });

    it("tunnels through an http proxy-url", async () => {
      const conn = await load(
        kubeconfig({
          server: mtls.url.replace("127.0.0.1", "localhost"),
          cluster: { "certificate-authority-data": b64(pki.caPem), "proxy-url": proxy.url },
          user: {
            "client-certificate-data": b64(pki.clientCertPem),
            "client-key-data": b64(pki.clientKeyPem),
          },
        }),
      );
      assert.equal(conn.proxyUrl, proxy.url);
      assert.equal((await call(conn)).json.kind, "Whoami");
      assert.deepEqual(proxy.tunnels.at(-1), `localhost:${mtls.port}`);
    });

    it("rejects a SOCKS proxy-url", async () => {
      await assert.rejects(
        load(kubeconfig({ server: mtls.url, cluster: { "proxy-url": "socks5://127.0.0.1:1080" } })),
        /proxy-url socks5:\/\/127\.0\.0\.1:1080: only http:\/\/ proxies are supported/,
      );
    });

    it("reports a missing file, a missing context and a half-configured client certificate clearly", async () => {
      await assert.rejects(
        loadKubeConnection({
          kubeconfigPath: join(dir, "nope"),
          env: {},
          readFile: readText,
          clock,
        }),
        /^Error: Cannot read kubeconfig .*nope: /,
      );
      const noContext = JSON.parse(kubeconfig({ server: mtls.url }));
      noContext["current-context"] = "gone";
      await assert.rejects(
        load(JSON.stringify(noContext)),
        /current-context "gone" is not defined/,
      );
      await assert.rejects(
        load(
          kubeconfig({
            server: mtls.url,
            user: { "client-certificate-data": b64(pki.clientCertPem) },
          }),
        ),
        /client certificate without a key/,
      );
    });

    it("lets KUBECONFIG override --kubeconfig and --master override the server", async () => {
      const path = join(dir, "from-env");
      await writeFile(
        path,
        kubeconfig({ server: "https://from-env.invalid:6443", user: { token: "env" } }),
      );
      const conn = await loadKubeConnection({
        kubeconfigPath: join(dir, "does-not-exist"),
        masterUrl: tlsOnly.url.replace("127.0.0.1", "localhost"),
        env: { KUBECONFIG: path },
        readFile: readText,
        clock,
      });
      assert.equal(conn.server, tlsOnly.url.replace("127.0.0.1", "localhost"));
      assert.equal((await conn.auth.credentials()).headers.Authorization, "Bearer env");
    });
  });

  describe("in cluster", () => {
    async function serviceAccountDir(token: string, namespace = "kube-system"): Promise<string> {
      await writeFile(join(dir, "token"), token);
      await writeFile(join(dir, "ca.crt"), pki.caPem);
      await writeFile(join(dir, "namespace"), namespace);
      return dir;
    }

    it("uses the service-account token, CA and namespace, and follows token rotation", async () => {
      const sa = await serviceAccountDir("sa-token-1");
      const conn = await loadKubeConnection({
        env: {
          KUBERNETES_SERVICE_HOST: "127.0.0.1",
          KUBERNETES_SERVICE_PORT: String(tlsOnly.port),
        },
        readFile: readText,
        clock,
        serviceAccountDir: sa,
      });
      assert.equal(conn.server, `https://127.0.0.1:${tlsOnly.port}`);
      assert.equal(conn.namespace, "kube-system");
      assert.equal((await call(conn)).json.authorization, "Bearer sa-token-1");
      await writeFile(join(sa, "token"), "sa-token-2");
      await clock.advance(60_000);
      assert.equal((await call(conn)).json.authorization, "Bearer sa-token-2");
    });

    it("surfaces a 401 that persists after re-reading the token", async () => {
      const sa = await serviceAccountDir("revoked");
      tlsOnly.handler = (_req, res) =>
        sendJson(res, 401, statusBody(401, "Unauthorized", "Unauthorized"));
      const conn = await loadKubeConnection({
        env: {
          KUBERNETES_SERVICE_HOST: "127.0.0.1",
          KUBERNETES_SERVICE_PORT: String(tlsOnly.port),
        },
        readFile: readText,
        clock,
        serviceAccountDir: sa,
      });
      const err = await call(conn).catch((e: unknown) => e);
      assert.ok(isUnauthorized(err));
    });

    it("brackets an IPv6 service host", async () => {
      const sa = await serviceAccountDir("t");
      const conn = await loadKubeConnection({
        env: { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" },
        readFile: readText,
        clock,
        serviceAccountDir: sa,
      });
      assert.equal(conn.server, "https://[fd00::1]:443");
    });

    it("fails clearly outside a cluster or without a token", async () => {
      await assert.rejects(
        loadKubeConnection({ env: {}, readFile: readText, clock, serviceAccountDir: dir }),
        /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined/,
      );
      await assert.rejects(
        loadKubeConnection({
          env: { KUBERNETES_SERVICE_HOST: "10.0.0.1", KUBERNETES_SERVICE_PORT: "443" },
          readFile: readText,
          clock,
          serviceAccountDir: dir,
        }),
        /cannot read .*\/token/,
      );
    });
  });

  describe("with --master only", () => {
    it("talks to the given URL without credentials, defaulting to http for host:port", async () => {
      const conn = await loadKubeConnection({
        masterUrl: "127.0.0.1:8080",
        env: {},
        readFile: readText,
        clock,
      });
      assert.equal(conn.server, "http://127.0.0.1:8080");
      assert.deepEqual((await conn.auth.credentials()).headers, {});
    });
  });
});
