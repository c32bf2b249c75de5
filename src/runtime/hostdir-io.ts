/**
 * The hostdir sample driver's I/O: the file-system {@link HostdirStorage} and the gRPC server on
 * a unix socket. Everything of it that touches `node:*` is here (Bun, Deno and Node all provide
 * these modules); the rules live in `dev/hostdir-driver/driver.ts`.
 *
 * Layout of the data directory:
 *
 * ```
 * <data-dir>/volumes/<id>/        the volume: what NodePublishVolume links to
 * <data-dir>/volumes/<id>.json    its metadata, replaced atomically (temporary file + rename)
 * <data-dir>/snapshots/<id>/      a snapshot: a copy of its source volume
 * <data-dir>/snapshots/<id>.json
 * ```
 */
import {
  cp,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rm,
  rmdir,
  symlink,
} from "node:fs/promises";
import * as http2 from "node:http2";
import { dirname, join, resolve } from "node:path";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { writeFileAtomic } from "./files.ts";

/** A volume's directory, or a snapshot's. */
export type DataKind = "volume" | "snapshot";

/** What is at a NodePublishVolume target path. */
export type TargetState =
  | { kind: "absent" }
  | { kind: "link"; to: string }
  | { kind: "empty-dir" }
  | { kind: "other" };

/**
 * Where volumes and snapshots live. Each has a data directory and a metadata file (text);
 * ids passed in are always ids this driver generated, never raw request fields.
 */
export interface HostdirStorage {
  /** The absolute data directory. */
  readonly root: string;
  /** The absolute path of the data directory of `id`. */
  dataPath(kind: DataKind, id: string): string;
  /**
   * Every metadata file of `kind`, by id. Removes the leftovers of interrupted calls (data
   * directories without metadata, temporary files) and names them in `removed`.
   */
  load(kind: DataKind): Promise<{ records: { id: string; text: string }[]; removed: string[] }>;
  /** Creates the data directory of `id`: empty, or a copy of another data directory. */
  createData(kind: DataKind, id: string, copyOf?: { kind: DataKind; id: string }): Promise<void>;
  /** Replaces the metadata of `id` atomically (temporary file, then rename). */
  writeMeta(kind: DataKind, id: string, text: string): Promise<void>;
  /** Removes the metadata of `id`, then its data directory; missing ones are fine. */
  remove(kind: DataKind, id: string): Promise<void>;
  /** What is at `path` (symbolic links are not followed). */
  inspectTarget(path: string): Promise<TargetState>;
  /** Makes `path` a symbolic link to `to`, replacing an empty directory at `path`. */
  link(path: string, to: string): Promise<void>;
  /** Removes the symbolic link at `path`; a missing one is fine. */
  unlink(path: string): Promise<void>;
}

const META = ".json";
/** What a metadata file's temporary name starts with (see {@link writeFileAtomic}). */
const TEMP = `${META}.tmp`;

function errno(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
}

/** Opens (creating it if needed) the data directory `dataDir` as a {@link HostdirStorage}. */
export async function createFsStorage(dataDir: string): Promise<HostdirStorage> {
  const root = resolve(dataDir);
  const dirOf = (kind: DataKind) => join(root, `${kind}s`);
  for (const kind of ["volume", "snapshot"] as const) await mkdir(dirOf(kind), { recursive: true });
  const dataPath = (kind: DataKind, id: string) => join(dirOf(kind), id);

  return {
    root,
    dataPath,

    async load(kind) {
      const dir = dirOf(kind);
      const entries = await readdir(dir, { withFileTypes: true });
      const names = new Set(entries.map((e) => e.name));
      const records: { id: string; text: string }[] = [];
      const removed: string[] = [];
      for (const entry of entries) {
        const path = join(dir, entry.name);
        if (entry.name.endsWith(META)) {
          const id = entry.name.slice(0, -META.length);
          records.push({ id, text: await readFile(path, "utf8") });
        } else if (
          entry.name.includes(TEMP) ||
          (entry.isDirectory() && !names.has(entry.name + META))
        ) {
          await rm(path, { recursive: true, force: true });
          removed.push(path);
        }
      }
      return { records, removed };
    },

    async createData(kind, id, copyOf) {
      const path = dataPath(kind, id);
      if (copyOf) {
        await cp(dataPath(copyOf.kind, copyOf.id), path, {
          recursive: true,
          errorOnExist: true,
          force: false,
          verbatimSymlinks: true,
        });
      } else {
        await mkdir(path);
      }
    },

    writeMeta: (kind, id, text) => writeFileAtomic(dataPath(kind, id) + META, text, 0o644),

    async remove(kind, id) {
      await rm(dataPath(kind, id) + META, { force: true });
      await rm(dataPath(kind, id), { recursive: true, force: true });
    },

    async inspectTarget(path): Promise<TargetState> {
      let stat: Awaited<ReturnType<typeof lstat>>;
      try {
        stat = await lstat(path);
      } catch (err) {
        if (errno(err) === "ENOENT") return { kind: "absent" };
        throw err;
      }
      if (stat.isSymbolicLink()) return { kind: "link", to: await readlink(path) };
      if (stat.isDirectory() && (await readdir(path)).length === 0) return { kind: "empty-dir" };
      return { kind: "other" };
    },

    async link(path, to) {
      try {
        await rmdir(path);
      } catch (err) {
        if (errno(err) !== "ENOENT") throw err;
      }
      await symlink(to, path, "dir");
    },

    async unlink(path) {
      await rm(path, { force: true });
    },
  };
}

export interface GrpcServerOptions {
  /** The unix socket to listen on; a stale socket file there is replaced. */
  socketPath: string;
  /** Registers the services. */
  routes: (router: ConnectRouter) => void;
  /** Server interceptors; default none. */
  interceptors?: Interceptor[];
  /** How long `close()` lets calls in flight finish before cutting connections; default 5 000. */
  closeGraceMs?: number;
}

export interface GrpcServer {
  /** Stops accepting calls, lets calls in flight finish (briefly), removes the socket file. */
  close(): Promise<void>;
}

/** Serves gRPC (Connect's node adapter on `node:http2`) on a unix socket. */
export async function serveGrpc(options: GrpcServerOptions): Promise<GrpcServer> {
  const { socketPath } = options;
  try {
    if (!(await lstat(socketPath)).isSocket()) {
      throw new Error(`Cannot listen on ${socketPath}: the path exists and is not a socket`);
    }
    await rm(socketPath); // Left behind by a driver that did not stop cleanly.
  } catch (err) {
    if (errno(err) !== "ENOENT") throw err;
  }
  await mkdir(dirname(socketPath), { recursive: true });

  const server = http2.createServer(
    connectNodeAdapter({ routes: options.routes, interceptors: options.interceptors ?? [] }),
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => {});
  });
  await new Promise<void>((done, fail) => {
    server.once("error", fail);
    server.listen(socketPath, () => {
      server.off("error", fail);
      done();
    });
  });

  let closed: Promise<void> | undefined;
  return {
    close() {
      closed ??= new Promise<void>((done) => {
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
        }, options.closeGraceMs ?? 5_000);
        server.close(() => {
          clearTimeout(timer);
          rm(socketPath, { force: true }).then(
            () => done(),
            () => done(),
          );
        });
        for (const session of sessions) session.close();
      });
      return closed;
    },
  };
}
