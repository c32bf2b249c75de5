/**
 * The hostdir sample CSI driver's logic: Identity, Controller and Node services over a
 * {@link HostdirStorage}. Nothing here touches the file system or the network, so the rules
 * below are testable on their own; `io.ts` holds the storage and the gRPC server.
 *
 * What it does:
 *
 * - A volume is a directory; its metadata (name, id, capacity, parameters, content source,
 *   topology, creation time, publications) is one JSON file beside it. CreateVolume makes the
 *   directory first and writes the metadata last (atomically), so the metadata file is the commit
 *   point: a directory without metadata is a leftover of an interrupted call and is removed at
 *   startup. DeleteVolume removes the metadata first, then the directory.
 * - CreateVolume is idempotent by name: the same name with a compatible request returns the same
 *   volume; an incompatible one (capacity outside the range, other parameters or content source)
 *   is ALREADY_EXISTS. The size is `required_bytes` (at least the source's size), else the
 *   default size capped by `limit_bytes`. `limit_bytes` below `required_bytes`, or a size larger
 *   than the whole pool, is OUT_OF_RANGE; a size larger than the free space is RESOURCE_EXHAUSTED
 *   (the provisioner may then try another topology segment).
 * - Access: mount volumes in every access mode; block volumes and mount flags are
 *   INVALID_ARGUMENT (a directory cannot honour them; `fs_type` is accepted and ignored).
 * - Clones copy the source volume's directory; snapshots are copies too (CREATE_DELETE_SNAPSHOT
 *   and LIST_SNAPSHOTS), and a volume created from a snapshot copies the snapshot's directory.
 * - With topology on, the one node's segment is `topology.<driver name>/node=<node id>`: every
 *   volume is accessible from it, and a CreateVolume whose requisite topologies exclude it is
 *   RESOURCE_EXHAUSTED.
 * - NodePublishVolume makes the target path a symbolic link to the volume's directory (a bind
 *   mount would need root) and records it; NodeUnpublishVolume removes the link. `readonly` is
 *   recorded, not enforced. A SINGLE_NODE_SINGLE_WRITER volume published at one target is
 *   FAILED_PRECONDITION at another; a published volume cannot be deleted (FAILED_PRECONDITION).
 * - ListVolumes and ListSnapshots page in creation order; the token is the creation sequence
 *   number of the last entry returned, so deleting entries between pages loses nothing.
 *
 * Calls that change state run one at a time (a sample driver favours simplicity over
 * throughput): a clone of a large volume holds up the calls behind it.
 */
import { create, type JsonObject, toJson } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import * as v from "valibot";
import {
  VolumeCapability_AccessMode_Mode as AccessMode,
  Controller,
  ControllerServiceCapability_RPC_Type as ControllerRpc,
  Identity,
  Node,
  NodeServiceCapability_RPC_Type as NodeRpc,
  PluginCapability_Service_Type as PluginService,
  type Snapshot,
  SnapshotSchema,
  type Topology,
  type Volume,
  type VolumeCapability,
  type VolumeContentSource,
  VolumeSchema,
} from "../../gen/csi/v1/csi_pb.js";
import type { DataKind, HostdirStorage, TargetState } from "../../runtime/hostdir-io.ts";
import type { Clock } from "../../util/clock.ts";
import { type Logger, nullLogger } from "../../util/log.ts";

/** `GetPluginInfo.vendor_version` of the sample driver. */
export const HOSTDIR_DRIVER_VERSION = "0.1.0";
/** The default driver name. */
export const DEFAULT_DRIVER_NAME = "hostdir.csi.example.com";
/** The default size of the pool GetCapacity reports on: 100 GiB. */
export const DEFAULT_CAPACITY_BYTES = 100n * 1024n ** 3n;
/** The default size of a volume created without a capacity range: 1 GiB. */
export const DEFAULT_VOLUME_BYTES = 1024n ** 3n;

/** What a CSI driver name must look like (GetPluginInfo: at most 63 characters). */
const DRIVER_NAME_RE = /^[a-zA-Z][A-Za-z0-9.\-_]{0,61}[a-zA-Z]$/;

// ---------------------------------------------------------------------------------------------
// Storage: the seam to the file system (declared and implemented in runtime/hostdir-io.ts).

export type { DataKind, HostdirStorage, TargetState };

// ---------------------------------------------------------------------------------------------
// Records and their JSON form.

/** A NodePublishVolume the driver performed. */
export interface Publication {
  targetPath: string;
  readonly: boolean;
  /** The access mode it was published with. */
  mode: AccessMode;
}

/** A volume as stored. */
export interface VolumeRecord {
  id: string;
  /** The CreateVolume name (idempotency key). */
  name: string;
  capacityBytes: bigint;
  parameters: Record<string, string>;
  contentSource?: { kind: DataKind; id: string };
  /** Topology segments it is accessible from (empty without topology). */
  accessibleTopology: Record<string, string>[];
  /** Creation time, milliseconds since the epoch. */
  createdAtMs: number;
  /** Creation order, shared with snapshots; the ListVolumes page token. */
  seq: number;
  publications: Publication[];
}

/** A snapshot as stored. */
export interface SnapshotRecord {
  id: string;
  name: string;
  sourceVolumeId: string;
  sizeBytes: bigint;
  parameters: Record<string, string>;
  createdAtMs: number;
  seq: number;
}

const StringMap = v.record(v.string(), v.string());
const Bytes = v.pipe(
  v.string(),
  v.regex(/^\d+$/),
  v.transform((s: string) => BigInt(s)),
);
const Time = v.pipe(
  v.string(),
  v.transform((s) => Date.parse(s)),
  v.check((ms) => Number.isFinite(ms), "not a time"),
);
const Seq = v.pipe(v.number(), v.integer(), v.minValue(0));

const VolumeJson = v.object({
  kind: v.literal("volume"),
  id: v.string(),
  name: v.string(),
  capacityBytes: Bytes,
  parameters: StringMap,
  contentSource: v.nullable(v.object({ kind: v.picklist(["volume", "snapshot"]), id: v.string() })),
  accessibleTopology: v.array(StringMap),
  createdAt: Time,
  seq: Seq,
  publications: v.array(
    v.object({
      targetPath: v.string(),
      readonly: v.boolean(),
      mode: v.pipe(v.number(), v.integer()),
    }),
  ),
});

const SnapshotJson = v.object({
  kind: v.literal("snapshot"),
  id: v.string(),
  name: v.string(),
  sourceVolumeId: v.string(),
  sizeBytes: Bytes,
  parameters: StringMap,
  createdAt: Time,
  seq: Seq,
});

/** The metadata file text of a volume. */
export function encodeVolume(r: VolumeRecord): string {
  const json = {
    kind: "volume",
    id: r.id,
    name: r.name,
    capacityBytes: r.capacityBytes.toString(),
    parameters: r.parameters,
    contentSource: r.contentSource ?? null,
    accessibleTopology: r.accessibleTopology,
    createdAt: new Date(r.createdAtMs).toISOString(),
    seq: r.seq,
    publications: r.publications,
  };
  return `${JSON.stringify(json, null, 2)}\n`;
}

/** The metadata file text of a snapshot. */
export function encodeSnapshot(r: SnapshotRecord): string {
  const json = {
    kind: "snapshot",
    id: r.id,
    name: r.name,
    sourceVolumeId: r.sourceVolumeId,
    sizeBytes: r.sizeBytes.toString(),
    parameters: r.parameters,
    createdAt: new Date(r.createdAtMs).toISOString(),
    seq: r.seq,
  };
  return `${JSON.stringify(json, null, 2)}\n`;
}

function parseJson<T extends v.GenericSchema>(
  schema: T,
  what: string,
  text: string,
): v.InferOutput<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`Invalid metadata of ${what}: ${(err as Error).message}`);
  }
  const result = v.safeParse(schema, raw);
  if (!result.success) {
    throw new Error(
      `Invalid metadata of ${what}: ${v.summarize(result.issues).replaceAll("\n", "; ")}`,
    );
  }
  return result.output;
}

/** Reads a volume's metadata file text; throws an `Error` naming `what` when it is invalid. */
export function decodeVolume(text: string, what: string): VolumeRecord {
  const j = parseJson(VolumeJson, what, text);
  return {
    id: j.id,
    name: j.name,
    capacityBytes: j.capacityBytes,
    parameters: j.parameters,
    ...(j.contentSource ? { contentSource: j.contentSource } : {}),
    accessibleTopology: j.accessibleTopology,
    createdAtMs: j.createdAt,
    seq: j.seq,
    publications: j.publications.map((p) => ({ ...p, mode: p.mode as AccessMode })),
  };
}

/** Reads a snapshot's metadata file text; throws an `Error` naming `what` when it is invalid. */
export function decodeSnapshot(text: string, what: string): SnapshotRecord {
  const j = parseJson(SnapshotJson, what, text);
  return {
    id: j.id,
    name: j.name,
    sourceVolumeId: j.sourceVolumeId,
    sizeBytes: j.sizeBytes,
    parameters: j.parameters,
    createdAtMs: j.createdAt,
    seq: j.seq,
  };
}

// ---------------------------------------------------------------------------------------------
// Pure rules.

function invalid(message: string): never {
  throw new ConnectError(message, Code.InvalidArgument);
}

const SUPPORTED_MODES: ReadonlySet<AccessMode> = new Set([
  AccessMode.SINGLE_NODE_WRITER,
  AccessMode.SINGLE_NODE_READER_ONLY,
  AccessMode.SINGLE_NODE_SINGLE_WRITER,
  AccessMode.SINGLE_NODE_MULTI_WRITER,
  AccessMode.MULTI_NODE_READER_ONLY,
  AccessMode.MULTI_NODE_SINGLE_WRITER,
  AccessMode.MULTI_NODE_MULTI_WRITER,
]);

/** Why the driver cannot serve `capability`, or `undefined` when it can. */
export function capabilityProblem(capability: VolumeCapability): string | undefined {
  const access = capability.accessType;
  if (access.case === undefined) return "access_type is required (mount or block)";
  if (access.case === "block") return "block access is not supported: volumes are directories";
  if (access.value.mountFlags.length > 0) {
    return `mount flags ${JSON.stringify(access.value.mountFlags)} are not supported: volumes are linked, not mounted`;
  }
  const mode = capability.accessMode?.mode ?? AccessMode.UNKNOWN;
  if (mode === AccessMode.UNKNOWN) return "access_mode is required";
  if (!SUPPORTED_MODES.has(mode)) return `access mode ${AccessMode[mode] ?? mode} is not supported`;
  return undefined;
}

function requireCapabilities(capabilities: readonly VolumeCapability[], field: string): void {
  if (capabilities.length === 0) invalid(`${field} is required`);
  for (const c of capabilities) {
    const problem = capabilityProblem(c);
    if (problem) invalid(`Unsupported ${field}: ${problem}`);
  }
}

/** Throws INVALID_ARGUMENT for a negative bound and OUT_OF_RANGE for an empty range (0 = unset). */
export function checkCapacityRange(required: bigint, limit: bigint): void {
  if (required < 0n || limit < 0n) invalid("capacity_range must not be negative");
  if (limit > 0n && limit < required) {
    throw new ConnectError(
      `Capacity range is empty: limit_bytes ${limit} is below required_bytes ${required}`,
      Code.OutOfRange,
    );
  }
}

/**
 * The size of a new volume. `required` and `limit` are the capacity range (0 = unset),
 * `sourceBytes` the size of the clone or snapshot source (0 = none). Throws OUT_OF_RANGE
 * when no size satisfies them.
 */
export function chooseVolumeSize(
  required: bigint,
  limit: bigint,
  sourceBytes: bigint,
  defaultBytes: bigint,
): bigint {
  checkCapacityRange(required, limit);
  if (limit > 0n && sourceBytes > limit) {
    throw new ConnectError(
      `Capacity range too small for the content source: it holds ${sourceBytes} bytes, limit_bytes is ${limit}`,
      Code.OutOfRange,
    );
  }
  const floor = required > sourceBytes ? required : sourceBytes;
  const size = floor > 0n ? floor : defaultBytes;
  return limit > 0n && size > limit ? limit : size;
}

function sameMap(
  a: Readonly<Record<string, string>>,
  b: Readonly<Record<string, string>>,
): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => b[k] === a[k]);
}

function contentSourceOf(source: VolumeContentSource | undefined): VolumeRecord["contentSource"] {
  const t = source?.type;
  if (t?.case === "volume") {
    if (t.value.volumeId === "") invalid("volume_content_source.volume.volume_id is required");
    return { kind: "volume", id: t.value.volumeId };
  }
  if (t?.case === "snapshot") {
    if (t.value.snapshotId === "")
      invalid("volume_content_source.snapshot.snapshot_id is required");
    return { kind: "snapshot", id: t.value.snapshotId };
  }
  return undefined;
}

function sameSource(a: VolumeRecord["contentSource"], b: VolumeRecord["contentSource"]): boolean {
  return a?.kind === b?.kind && a?.id === b?.id;
}

function describeSource(s: VolumeRecord["contentSource"]): string {
  return s ? `${s.kind} ${s.id}` : "none";
}

/** A page of `items` (sorted by `seq`) after `token`, at most `maxEntries` (0 = all). */
export function page<T extends { seq: number }>(
  items: readonly T[],
  token: string,
  maxEntries: number,
): { entries: T[]; nextToken: string } {
  if (maxEntries < 0) invalid(`max_entries must not be negative, got ${maxEntries}`);
  let after = -1;
  if (token !== "") {
    if (!/^\d{1,15}$/.test(token)) {
      throw new ConnectError(
        `Invalid starting_token ${JSON.stringify(token)}: not issued by this driver`,
        Code.Aborted,
      );
    }
    after = Number(token);
  }
  const rest = items.filter((i) => i.seq > after);
  if (maxEntries === 0 || rest.length <= maxEntries) return { entries: rest, nextToken: "" };
  const entries = rest.slice(0, maxEntries);
  return { entries, nextToken: String(entries[entries.length - 1]!.seq) };
}

/** The fields of a request worth one log line: ids and names, never secrets. */
function summarize(message: unknown): Record<string, unknown> {
  const m = message as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of [
    "name",
    "volumeId",
    "snapshotId",
    "sourceVolumeId",
    "targetPath",
    "startingToken",
  ]) {
    const value = m[key];
    if (typeof value === "string" && value !== "") out[key] = value;
  }
  if (typeof m.maxEntries === "number" && m.maxEntries !== 0) out.maxEntries = m.maxEntries;
  const range = m.capacityRange as { requiredBytes?: bigint; limitBytes?: bigint } | undefined;
  if (range?.requiredBytes) out.requiredBytes = range.requiredBytes;
  if (range?.limitBytes) out.limitBytes = range.limitBytes;
  return out;
}

// ---------------------------------------------------------------------------------------------
// The driver.

export interface HostdirDriverOptions {
  /** Where volumes and snapshots are kept. */
  storage: HostdirStorage;
  /** `NodeGetInfo.node_id`, and the value of the topology segment. */
  nodeId: string;
  /** Creation times. */
  clock: Clock;
  /** Makes a fresh volume or snapshot id (for example `crypto.randomUUID`). */
  newId: () => string;
  /** `GetPluginInfo.name`; default {@link DEFAULT_DRIVER_NAME}. */
  driverName?: string;
  /** Size of the pool GetCapacity reports on; default {@link DEFAULT_CAPACITY_BYTES}. */
  capacityBytes?: bigint;
  /** Size of a volume created without a capacity range; default {@link DEFAULT_VOLUME_BYTES}. */
  defaultVolumeBytes?: bigint;
  /** Advertise VOLUME_ACCESSIBILITY_CONSTRAINTS with one segment per node; default false. */
  topology?: boolean;
  /** `NodeGetInfo.max_volumes_per_node`; default 0 (no limit). */
  maxVolumesPerNode?: bigint;
  /** One line per call (more with `-v=5`); default: nothing. */
  log?: Logger;
}

export interface HostdirDriver {
  readonly driverName: string;
  /** The node's topology segment, when topology is on. */
  readonly topology: Readonly<Record<string, string>> | undefined;
  /** Registers the Identity, Controller and Node services. */
  routes(router: ConnectRouter): void;
  /** Logs each call and turns unexpected errors into INTERNAL; install it on the server. */
  readonly interceptor: Interceptor;
}

/** Loads the stored volumes and snapshots and returns the driver's services. */
export async function createHostdirDriver(options: HostdirDriverOptions): Promise<HostdirDriver> {
  const { storage, clock, newId, nodeId } = options;
  const driverName = options.driverName ?? DEFAULT_DRIVER_NAME;
  if (!DRIVER_NAME_RE.test(driverName)) {
    throw new Error(
      `Invalid driver name ${JSON.stringify(driverName)}: want 2 to 63 letters, digits, '.', '-' or '_', starting and ending with a letter`,
    );
  }
  if (nodeId === "") throw new Error("Invalid node id: must not be empty");
  const capacityBytes = options.capacityBytes ?? DEFAULT_CAPACITY_BYTES;
  const defaultVolumeBytes = options.defaultVolumeBytes ?? DEFAULT_VOLUME_BYTES;
  const maxVolumesPerNode = options.maxVolumesPerNode ?? 0n;
  const log = options.log ?? nullLogger;
  const segment = options.topology ? { [`topology.${driverName}/node`]: nodeId } : undefined;

  // State: loaded once, then kept in step with the storage.
  const volumes = new Map<string, VolumeRecord>();
  const snapshots = new Map<string, SnapshotRecord>();
  for (const kind of ["volume", "snapshot"] as const) {
    const { records, removed } = await storage.load(kind);
    for (const name of removed)
      log.info("Removed leftover of an interrupted call", { kind, path: name });
    for (const { id, text } of records) {
      const what = `${kind} ${id}`;
      if (kind === "volume") volumes.set(id, decodeVolume(text, what));
      else snapshots.set(id, decodeSnapshot(text, what));
    }
  }
  let nextSeq = 1 + Math.max(0, ...[...volumes.values(), ...snapshots.values()].map((r) => r.seq));
  log.info("Loaded volumes and snapshots", {
    dataDir: storage.root,
    volumes: volumes.size,
    snapshots: snapshots.size,
  });

  // One state-changing call at a time.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => {});
    return run;
  };

  const bySeq = <T extends { seq: number }>(items: Iterable<T>) =>
    [...items].sort((a, b) => a.seq - b.seq);
  const used = () => [...volumes.values()].reduce((sum, r) => sum + r.capacityBytes, 0n);
  const volumeByName = (name: string) => [...volumes.values()].find((r) => r.name === name);
  const snapshotByName = (name: string) => [...snapshots.values()].find((r) => r.name === name);
  const onOurNode = (t: Topology) => segment !== undefined && sameMap(t.segments, segment);

  const saveVolume = (r: VolumeRecord) => storage.writeMeta("volume", r.id, encodeVolume(r));

  function toVolume(r: VolumeRecord): Volume {
    const source = r.contentSource;
    return create(VolumeSchema, {
      volumeId: r.id,
      capacityBytes: r.capacityBytes,
      volumeContext: { path: storage.dataPath("volume", r.id) },
      ...(source
        ? {
            contentSource: {
              type:
                source.kind === "volume"
                  ? { case: "volume", value: { volumeId: source.id } }
                  : { case: "snapshot", value: { snapshotId: source.id } },
            },
          }
        : {}),
      accessibleTopology: r.accessibleTopology.map((segments) => ({ segments })),
    });
  }

  function toSnapshot(r: SnapshotRecord): Snapshot {
    return create(SnapshotSchema, {
      snapshotId: r.id,
      sourceVolumeId: r.sourceVolumeId,
      sizeBytes: r.sizeBytes,
      creationTime: timestampFromMs(r.createdAtMs),
      readyToUse: true,
    });
  }

  const identity: Partial<ServiceImpl<typeof Identity>> = {
    getPluginInfo: () => ({
      name: driverName,
      vendorVersion: HOSTDIR_DRIVER_VERSION,
      manifest: { "data-dir": storage.root },
    }),
    getPluginCapabilities: () => ({
      capabilities: [
        PluginService.CONTROLLER_SERVICE,
        ...(segment ? [PluginService.VOLUME_ACCESSIBILITY_CONSTRAINTS] : []),
      ].map((type) => ({ type: { case: "service", value: { type } } })),
    }),
    probe: () => ({ ready: true }),
  };

  const controllerCapabilities = [
    ControllerRpc.CREATE_DELETE_VOLUME,
    ControllerRpc.LIST_VOLUMES,
    ControllerRpc.GET_CAPACITY,
    ControllerRpc.CLONE_VOLUME,
    ControllerRpc.SINGLE_NODE_MULTI_WRITER,
    ControllerRpc.CREATE_DELETE_SNAPSHOT,
    ControllerRpc.LIST_SNAPSHOTS,
  ];

  const controller: Partial<ServiceImpl<typeof Controller>> = {
    controllerGetCapabilities: () => ({
      capabilities: controllerCapabilities.map((type) => ({
        type: { case: "rpc", value: { type } },
      })),
    }),

    createVolume(req) {
      if (req.name === "") invalid("name is required");
      requireCapabilities(req.volumeCapabilities, "volume_capabilities");
      if (Object.keys(req.mutableParameters).length > 0) {
        invalid(
          "mutable_parameters are not supported: the driver does not advertise MODIFY_VOLUME",
        );
      }
      const source = contentSourceOf(req.volumeContentSource);
      const required = req.capacityRange?.requiredBytes ?? 0n;
      const limit = req.capacityRange?.limitBytes ?? 0n;
      checkCapacityRange(required, limit);
      const requisite = segment ? (req.accessibilityRequirements?.requisite ?? []) : [];
      if (requisite.length > 0 && !requisite.some(onOurNode)) {
        throw new ConnectError(
          `Volume ${req.name} cannot be provisioned in the requisite topology: this driver serves only ${JSON.stringify(segment)}`,
          Code.ResourceExhausted,
        );
      }

      return serial(async () => {
        const existing = volumeByName(req.name);
        if (existing) {
          const c = existing.capacityBytes;
          const mismatch =
            c < required || (limit > 0n && c > limit)
              ? `it has ${c} bytes, outside the requested range [${required}, ${limit || "no limit"}]`
              : !sameMap(existing.parameters, req.parameters)
                ? "it has other parameters"
                : !sameSource(existing.contentSource, source)
                  ? `its content source is ${describeSource(existing.contentSource)}, not ${describeSource(source)}`
                  : undefined;
          if (mismatch) {
            throw new ConnectError(
              `Volume ${req.name} already exists as ${existing.id} and is incompatible: ${mismatch}`,
              Code.AlreadyExists,
            );
          }
          return { volume: toVolume(existing) };
        }

        let sourceBytes = 0n;
        if (source?.kind === "volume") {
          const from = volumes.get(source.id);
          if (!from) throw new ConnectError(`Source volume ${source.id} not found`, Code.NotFound);
          sourceBytes = from.capacityBytes;
        } else if (source?.kind === "snapshot") {
          const from = snapshots.get(source.id);
          if (!from)
            throw new ConnectError(`Source snapshot ${source.id} not found`, Code.NotFound);
          sourceBytes = from.sizeBytes;
        }
        const size = chooseVolumeSize(required, limit, sourceBytes, defaultVolumeBytes);
        if (size > capacityBytes) {
          throw new ConnectError(
            `Volume ${req.name} of ${size} bytes exceeds the driver's total capacity of ${capacityBytes} bytes`,
            Code.OutOfRange,
          );
        }
        const free = capacityBytes - used();
        if (size > free) {
          throw new ConnectError(
            `Volume ${req.name} of ${size} bytes does not fit: ${free} bytes free`,
            Code.ResourceExhausted,
          );
        }

        const record: VolumeRecord = {
          id: newId(),
          name: req.name,
          capacityBytes: size,
          parameters: { ...req.parameters },
          ...(source ? { contentSource: source } : {}),
          accessibleTopology: segment ? [{ ...segment }] : [],
          createdAtMs: clock.now(),
          seq: nextSeq++,
          publications: [],
        };
        await storage.createData("volume", record.id, source);
        try {
          await saveVolume(record);
        } catch (err) {
          await storage.remove("volume", record.id).catch(() => {});
          throw err;
        }
        volumes.set(record.id, record);
        return { volume: toVolume(record) };
      });
    },

    deleteVolume(req) {
      if (req.volumeId === "") invalid("volume_id is required");
      return serial(async () => {
        const record = volumes.get(req.volumeId);
        if (!record) return {};
        if (record.publications.length > 0) {
          const targets = record.publications.map((p) => p.targetPath).join(", ");
          throw new ConnectError(
            `Volume ${record.id} is in use: published at ${targets}; unpublish it first`,
            Code.FailedPrecondition,
          );
        }
        await storage.remove("volume", record.id);
        volumes.delete(record.id);
        return {};
      });
    },

    validateVolumeCapabilities(req) {
      if (req.volumeId === "") invalid("volume_id is required");
      if (req.volumeCapabilities.length === 0) invalid("volume_capabilities is required");
      const record = volumes.get(req.volumeId);
      if (!record) throw new ConnectError(`Volume ${req.volumeId} not found`, Code.NotFound);
      const problems = req.volumeCapabilities.map(capabilityProblem).filter((p) => p !== undefined);
      if (Object.keys(req.parameters).length > 0 && !sameMap(req.parameters, record.parameters)) {
        problems.push("the volume was created with other parameters");
      }
      if (Object.keys(req.mutableParameters).length > 0)
        problems.push("mutable parameters are not supported");
      const context = toVolume(record).volumeContext;
      if (Object.keys(req.volumeContext).length > 0 && !sameMap(req.volumeContext, context)) {
        problems.push("the volume context is not this volume's");
      }
      if (problems.length > 0) return { message: problems.join("; ") };
      return {
        confirmed: {
          volumeCapabilities: req.volumeCapabilities,
          volumeContext: req.volumeContext,
          parameters: req.parameters,
        },
      };
    },

    listVolumes(req) {
      const { entries, nextToken } = page(
        bySeq(volumes.values()),
        req.startingToken,
        req.maxEntries,
      );
      return { entries: entries.map((r) => ({ volume: toVolume(r) })), nextToken };
    },

    getCapacity(req) {
      const unsupported = req.volumeCapabilities.some((c) => capabilityProblem(c) !== undefined);
      const elsewhere =
        segment !== undefined && req.accessibleTopology && !onOurNode(req.accessibleTopology);
      if (unsupported || elsewhere) return { availableCapacity: 0n };
      const free = capacityBytes - used();
      const available = free > 0n ? free : 0n;
      return { availableCapacity: available, maximumVolumeSize: available };
    },

    createSnapshot(req) {
      if (req.name === "") invalid("name is required");
      if (req.sourceVolumeId === "") invalid("source_volume_id is required");
      return serial(async () => {
        const existing = snapshotByName(req.name);
        if (existing) {
          if (existing.sourceVolumeId !== req.sourceVolumeId) {
            throw new ConnectError(
              `Snapshot ${req.name} already exists as ${existing.id} of volume ${existing.sourceVolumeId}, not of ${req.sourceVolumeId}`,
              Code.AlreadyExists,
            );
          }
          return { snapshot: toSnapshot(existing) };
        }
        const source = volumes.get(req.sourceVolumeId);
        if (!source)
          throw new ConnectError(`Source volume ${req.sourceVolumeId} not found`, Code.NotFound);
        const record: SnapshotRecord = {
          id: newId(),
          name: req.name,
          sourceVolumeId: source.id,
          sizeBytes: source.capacityBytes,
          parameters: { ...req.parameters },
          createdAtMs: clock.now(),
          seq: nextSeq++,
        };
        await storage.createData("snapshot", record.id, { kind: "volume", id: source.id });
        try {
          await storage.writeMeta("snapshot", record.id, encodeSnapshot(record));
        } catch (err) {
          await storage.remove("snapshot", record.id).catch(() => {});
          throw err;
        }
        snapshots.set(record.id, record);
        return { snapshot: toSnapshot(record) };
      });
    },

    deleteSnapshot(req) {
      if (req.snapshotId === "") invalid("snapshot_id is required");
      return serial(async () => {
        if (!snapshots.has(req.snapshotId)) return {};
        await storage.remove("snapshot", req.snapshotId);
        snapshots.delete(req.snapshotId);
        return {};
      });
    },

    listSnapshots(req) {
      const matching = bySeq(snapshots.values()).filter(
        (s) =>
          (req.snapshotId === "" || s.id === req.snapshotId) &&
          (req.sourceVolumeId === "" || s.sourceVolumeId === req.sourceVolumeId),
      );
      const { entries, nextToken } = page(matching, req.startingToken, req.maxEntries);
      return { entries: entries.map((s) => ({ snapshot: toSnapshot(s) })), nextToken };
    },
  };

  const node: Partial<ServiceImpl<typeof Node>> = {
    nodeGetInfo: () => ({
      nodeId,
      maxVolumesPerNode,
      ...(segment ? { accessibleTopology: { segments: { ...segment } } } : {}),
    }),

    nodeGetCapabilities: () => ({
      capabilities: [NodeRpc.SINGLE_NODE_MULTI_WRITER].map((type) => ({
        type: { case: "rpc", value: { type } },
      })),
    }),

    nodePublishVolume(req) {
      if (req.volumeId === "") invalid("volume_id is required");
      if (req.targetPath === "") invalid("target_path is required");
      if (!req.targetPath.startsWith("/")) invalid(`target_path ${req.targetPath} is not absolute`);
      if (!req.volumeCapability) invalid("volume_capability is required");
      requireCapabilities([req.volumeCapability], "volume_capability");
      const mode = req.volumeCapability.accessMode!.mode;
      const target = req.targetPath;

      return serial(async () => {
        const record = volumes.get(req.volumeId);
        if (!record) throw new ConnectError(`Volume ${req.volumeId} not found`, Code.NotFound);
        const dir = storage.dataPath("volume", record.id);
        const here = record.publications.find((p) => p.targetPath === target);
        if (here && (here.readonly !== req.readonly || here.mode !== mode)) {
          throw new ConnectError(
            `Volume ${record.id} is already published at ${target} with readonly=${here.readonly} and mode ${AccessMode[here.mode]}`,
            Code.AlreadyExists,
          );
        }
        const elsewhere = record.publications.filter((p) => p.targetPath !== target);
        const singleWriter = [mode, ...elsewhere.map((p) => p.mode)].includes(
          AccessMode.SINGLE_NODE_SINGLE_WRITER,
        );
        if (elsewhere.length > 0 && singleWriter) {
          throw new ConnectError(
            `Volume ${record.id} is SINGLE_NODE_SINGLE_WRITER and already published at ${elsewhere[0]!.targetPath}`,
            Code.FailedPrecondition,
          );
        }
        const state = await storage.inspectTarget(target);
        if (state.kind === "link" && state.to === dir) {
          // Already linked: idempotent.
        } else if (state.kind === "absent" || state.kind === "empty-dir") {
          await storage.link(target, dir);
        } else {
          throw new ConnectError(
            `Target path ${target} is in use: it is ${state.kind === "link" ? `a link to ${state.to}` : "not empty"}`,
            Code.FailedPrecondition,
          );
        }
        if (!here) {
          record.publications.push({ targetPath: target, readonly: req.readonly, mode });
          await saveVolume(record);
        }
        return {};
      });
    },

    nodeUnpublishVolume(req) {
      if (req.volumeId === "") invalid("volume_id is required");
      if (req.targetPath === "") invalid("target_path is required");
      const target = req.targetPath;
      return serial(async () => {
        const record = volumes.get(req.volumeId);
        if (!record) throw new ConnectError(`Volume ${req.volumeId} not found`, Code.NotFound);
        const state = await storage.inspectTarget(target);
        if (state.kind === "link" && state.to === storage.dataPath("volume", record.id)) {
          await storage.unlink(target);
        }
        const kept = record.publications.filter((p) => p.targetPath !== target);
        if (kept.length !== record.publications.length) {
          record.publications = kept;
          await saveVolume(record);
        }
        return {};
      });
    },
  };

  const interceptor: Interceptor = (next) => async (req) => {
    const method = req.method.name;
    const message = req.stream ? undefined : req.message; // CSI has unary calls only.
    const fields = message ? summarize(message) : {};
    const started = clock.now();
    const verbose = log.v(5);
    if (verbose.enabled && message) {
      const json = toJson(req.method.input, message) as JsonObject;
      delete json.secrets;
      verbose.info("CSI request", { method, request: json });
    }
    try {
      const res = await next(req);
      log.info(`${method} OK`, { ...fields, ms: clock.now() - started });
      if (verbose.enabled && !res.stream) {
        verbose.info("CSI response", { method, response: toJson(req.method.output, res.message) });
      }
      return res;
    } catch (err) {
      const known = err instanceof ConnectError;
      const error = known
        ? err
        : new ConnectError(
            `${method} failed: ${(err as Error)?.message ?? String(err)}`,
            Code.Internal,
          );
      const line = {
        ...fields,
        code: Code[error.code],
        error: error.rawMessage,
        ms: clock.now() - started,
      };
      if (known && error.code !== Code.Internal && error.code !== Code.Unknown)
        log.info(`${method} failed`, line);
      else log.error(`${method} failed`, line);
      throw error;
    }
  };

  return {
    driverName,
    topology: segment,
    interceptor,
    routes(router) {
      router.service(Identity, identity);
      router.service(Controller, controller);
      router.service(Node, node);
    },
  };
}
