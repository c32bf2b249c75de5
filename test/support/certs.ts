/**
 * Test PKI: a throw-away X.509 v3 certificate authority, a server certificate for loopback
 * (SAN `IP:127.0.0.1`, `IP:::1`, `DNS:localhost`) and a client certificate
 * (`CN=test-user, O=system:masters`), made with the `openssl` command line in a temporary
 * directory. v3 extensions (basicConstraints, keyUsage, extendedKeyUsage, SAN) are required:
 * Deno's rustls rejects v1 certificates. Keys are ECDSA P-256, which is fast to generate.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestPki {
  /** The temporary directory holding every file below (`ca.crt`, `server.key`, ...). */
  dir: string;
  caPem: string;
  caKeyPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  clientCertPem: string;
  clientKeyPem: string;
  /** Paths of the same PEM files, for kubeconfigs that reference files. */
  files: {
    ca: string;
    serverCert: string;
    serverKey: string;
    clientCert: string;
    clientKey: string;
  };
  /** Removes the directory. */
  cleanup(): Promise<void>;
}

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("openssl", args, { cwd }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`openssl ${args[0]} failed: ${stderr || err.message}`));
      else resolve();
    });
  });
}

async function keyPair(cwd: string, name: string): Promise<void> {
  await openssl(
    ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`],
    cwd,
  );
}

async function signed(
  cwd: string,
  name: string,
  subject: string,
  extensions: string[],
): Promise<void> {
  await keyPair(cwd, name);
  await openssl(
    ["req", "-new", "-key", `${name}.key`, "-subj", subject, "-out", `${name}.csr`],
    cwd,
  );
  await writeFile(join(cwd, `${name}.ext`), `${extensions.join("\n")}\n`);
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-sha256",
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.crt`,
    ],
    cwd,
  );
}

/** Generates a fresh CA, server and client certificate in a new temporary directory. */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), "kube-pki-"));
  try {
    await keyPair(dir, "ca");
    await openssl(
      [
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=test-ca",
        "-days",
        "2",
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
        "-out",
        "ca.crt",
      ],
      dir,
    );
    const leaf = [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "subjectKeyIdentifier=hash",
      "authorityKeyIdentifier=keyid,issuer",
    ];
    await signed(dir, "server", "/CN=localhost", [
      ...leaf,
      "extendedKeyUsage=serverAuth",
      "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
    ]);
    await signed(dir, "client", "/O=system:masters/CN=test-user", [
      ...leaf,
      "extendedKeyUsage=clientAuth",
    ]);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const files = {
    ca: join(dir, "ca.crt"),
    serverCert: join(dir, "server.crt"),
    serverKey: join(dir, "server.key"),
    clientCert: join(dir, "client.crt"),
    clientKey: join(dir, "client.key"),
  };
  const text = (p: string) => readFile(p, "utf8");
  return {
    dir,
    caPem: await text(files.ca),
    caKeyPem: await text(join(dir, "ca.key")),
    serverCertPem: await text(files.serverCert),
    serverKeyPem: await text(files.serverKey),
    clientCertPem: await text(files.clientCert),
    clientKeyPem: await text(files.clientKey),
    files,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
