/**
 * The HTTP face of the test API server: a web-standard `Request` → `Response` handler that
 * routes Kubernetes REST paths (`/api/v1/...`, `/apis/<group>/<version>/...`, namespaced and
 * cluster-scoped, `/status`), serves discovery (`/api`, `/apis`, `/version`), negotiates JSON,
 * Table and PartialObjectMetadata responses, streams watches, and lets a request hook (the tests'
 * fault injection) answer first.
 * JSON, plus the protobuf bodies kubectl's typed `create` subcommands send (`protobuf.ts`); other
 * protobuf, YAML bodies and server-side apply answer 415 / 406. Access reviews (`kubectl auth
 * can-i`) are answered, not stored: this server allows everything.
 */
import type { KubeObject, WatchEvent } from "../../kube/objects.ts";
import type { Clock } from "../../util/clock.ts";
import type { Logger } from "../../util/log.ts";
import { apiVersionOfServed, findServed, type ServedResource, servedResources } from "./kinds.ts";
import { openApiDocument, openApiIndex } from "./openapi.ts";
import { decodeProtobufObject } from "./protobuf.ts";
import type { PatchKind, Registry } from "./registry.ts";
import type { RequestCounter, RequestHook, RequestInfo } from "./requests.ts";
import {
  ApiError,
  badRequest,
  internalError,
  methodNotAllowed,
  notAcceptable,
  pathNotFound,
  unsupportedMediaType,
  unsupportedPatchType,
} from "./status.ts";
import {
  type IncludeObject,
  partialObjectMetadata,
  partialObjectMetadataList,
  toTable,
} from "./table.ts";
import { WatchSession } from "./watch.ts";

export interface VersionInfo {
  major: string;
  minor: string;
  gitVersion: string;
}

export interface HandlerContext {
  registry: Registry;
  clock: Clock;
  /** Sees each request first (the tests' fault injection); none in the product. */
  onRequest?: RequestHook;
  requests: RequestCounter;
  writes: RequestCounter;
  watches: Set<WatchSession>;
  bookmarkIntervalMs: number;
  defaultWatchTimeoutSeconds: number;
  version: VersionInfo;
  logger: Logger;
}

type Shape =
  | { as: "json" }
  | { as: "table"; apiVersion: string }
  | { as: "partial"; apiVersion: string };

const writeVerbs = new Set(["create", "update", "patch", "delete", "deletecollection"]);
const patchTypes: Record<string, PatchKind> = {
  "application/merge-patch+json": "merge",
  "application/strategic-merge-patch+json": "strategic",
  "application/json-patch+json": "json",
};

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      "content-type": "application/json",
      "cache-control": "no-cache, private",
      ...headers,
    },
  });
}

function errorResponse(err: ApiError): Response {
  return json(err.status, err.code, err.headers);
}

function mediaType(header: string | null): string {
  return (header ?? "").split(";")[0]!.trim().toLowerCase();
}

/** Picks the response shape from the Accept header, in the client's order. */
function negotiate(accept: string | null): Shape {
  if (accept === null || accept.trim() === "") return { as: "json" };
  for (const part of accept.split(",")) {
    const [typeRaw, ...paramsRaw] = part.split(";");
    const type = typeRaw!.trim().toLowerCase();
    const params: Record<string, string> = {};
    for (const p of paramsRaw) {
      const [k, v] = p.split("=");
      if (k && v !== undefined) params[k.trim()] = v.trim();
    }
    if (type !== "application/json" && type !== "*/*" && type !== "application/*") continue;
    const as = params.as;
    if (as === undefined) return { as: "json" };
    if (params.g !== "meta.k8s.io" || (params.v !== "v1" && params.v !== "v1beta1")) continue;
    const apiVersion = `meta.k8s.io/${params.v}`;
    if (as === "Table") return { as: "table", apiVersion };
    if (as === "PartialObjectMetadata" || as === "PartialObjectMetadataList") {
      return { as: "partial", apiVersion };
    }
  }
  throw notAcceptable(["application/json", "application/json;as=Table;v=v1;g=meta.k8s.io"]);
}

/** The `includeObject` parameter of a Table request; default `Metadata`. */
function includeObjectOf(q: URLSearchParams): IncludeObject {
  const v = q.get("includeObject");
  return v === "None" || v === "Object" ? v : "Metadata";
}

function parseBool(v: string | null): boolean {
  return v !== null && ["1", "t", "T", "true", "TRUE", "True"].includes(v);
}

function parseIntParam(v: string | null, name: string): number | undefined {
  if (v === null || v === "") return undefined;
  if (!/^-?\d+$/.test(v)) throw badRequest(`invalid value for ${name}: ${v}`);
  return Number(v);
}

const PROTOBUF = "application/vnd.kubernetes.protobuf";

/** A create or update body: JSON, or (creates only) the protobuf kubectl's typed clients send. */
async function readBody(req: Request, contentType: string, create: boolean): Promise<unknown> {
  if (contentType === PROTOBUF && create) {
    try {
      return decodeProtobufObject(new Uint8Array(await req.arrayBuffer()));
    } catch (err) {
      throw unsupportedMediaType(["application/json"], (err as Error).message);
    }
  }
  if (contentType !== "" && contentType !== "application/json") {
    throw unsupportedMediaType(["application/json"]);
  }
  return readJson(req);
}

async function readJson(req: Request): Promise<unknown> {
  const text = await req.text();
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw badRequest(`the request body is not valid JSON: ${(err as Error).message}`);
  }
}

interface Route {
  kind: "resource";
  res: ServedResource;
  namespace?: string;
  name?: string;
  subresource: string;
  legacyWatch: boolean;
}

type Parsed =
  | Route
  | { kind: "api" }
  | { kind: "apis" }
  | { kind: "group"; group: string }
  | { kind: "groupVersion"; group: string; version: string }
  | { kind: "version" }
  | { kind: "health" }
  | { kind: "openapi"; key: string }
  | { kind: "unknown" };

function parsePath(path: string): Parsed {
  const segs = path
    .split("/")
    .filter((s) => s !== "")
    .map(decodeURIComponent);
  if (segs.length === 1 && segs[0] === "version") return { kind: "version" };
  if (segs[0] === "openapi" && segs[1] === "v3")
    return { kind: "openapi", key: segs.slice(2).join("/") };
  if (segs.length >= 1 && ["healthz", "livez", "readyz"].includes(segs[0]!))
    return { kind: "health" };
  let group: string;
  let version: string;
  let rest: string[];
  if (segs[0] === "api") {
    if (segs.length === 1) return { kind: "api" };
    group = "";
    version = segs[1]!;
    rest = segs.slice(2);
  } else if (segs[0] === "apis") {
    if (segs.length === 1) return { kind: "apis" };
    if (segs.length === 2) return { kind: "group", group: segs[1]! };
    group = segs[1]!;
    version = segs[2]!;
    rest = segs.slice(3);
  } else {
    return { kind: "unknown" };
  }
  if (rest.length === 0) return { kind: "groupVersion", group, version };
  let legacyWatch = false;
  if (rest[0] === "watch") {
    legacyWatch = true;
    rest = rest.slice(1);
  }
  if (rest[0] === "namespaces" && rest.length >= 3) {
    const res = findServed(group, version, rest[2]!);
    if (res?.namespaced) {
      if (rest.length > 5) return { kind: "unknown" };
      return {
        kind: "resource",
        res,
        namespace: rest[1],
        name: rest[3],
        subresource: rest[4] ?? "",
        legacyWatch,
      };
    }
  }
  if (rest.length > 3) return { kind: "unknown" };
  const res = findServed(group, version, rest[0]!);
  if (!res) return { kind: "unknown" };
  if (res.namespaced && rest[1] !== undefined) return { kind: "unknown" };
  return { kind: "resource", res, name: rest[1], subresource: rest[2] ?? "", legacyWatch };
}

// ---------------------------------------------------------------- discovery

const verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

function groupVersions(): { group: string; version: string }[] {
  const seen = new Map<string, { group: string; version: string }>();
  for (const r of servedResources)
    seen.set(apiVersionOfServed(r), { group: r.group, version: r.version });
  return [...seen.values()];
}

function apiGroup(group: string): unknown {
  const versions = groupVersions()
    .filter((gv) => gv.group === group)
    .map((gv) => ({ groupVersion: `${group}/${gv.version}`, version: gv.version }));
  return { name: group, versions, preferredVersion: versions[0] };
}

function resourceList(group: string, version: string): unknown {
  const resources: unknown[] = [];
  for (const r of servedResources) {
    if (r.group !== group || r.version !== version) continue;
    const entry: Record<string, unknown> = {
      name: r.plural,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: r.review ? ["create"] : verbs,
    };
    if (r.shortNames.length > 0) entry.shortNames = r.shortNames;
    if (r.categories.length > 0) entry.categories = r.categories;
    resources.push(entry);
    if (r.statusSubresource) {
      resources.push({
        name: `${r.plural}/status`,
        singularName: "",
        namespaced: r.namespaced,
        kind: r.kind,
        verbs: ["get", "patch", "update"],
      });
    }
  }
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: group === "" ? version : `${group}/${version}`,
    resources,
  };
}

// ---------------------------------------------------------------- the handler

function shapeList(
  ctx: HandlerContext,
  res: ServedResource,
  shape: Shape,
  items: KubeObject[],
  metadata: Record<string, unknown>,
  includeObject: IncludeObject,
): unknown {
  if (shape.as === "table") {
    return toTable(res, items, metadata, {
      apiVersion: shape.apiVersion,
      includeObject,
      nowMs: ctx.clock.now(),
    });
  }
  if (shape.as === "partial") return partialObjectMetadataList(items, metadata, shape.apiVersion);
  // Items of built-in lists carry no apiVersion and kind (custom resources' do).
  const shown = res.custom
    ? items
    : items.map(({ apiVersion: _a, kind: _k, ...rest }) => rest as KubeObject);
  return { kind: `${res.kind}List`, apiVersion: apiVersionOfServed(res), metadata, items: shown };
}

function shapeOne(
  ctx: HandlerContext,
  res: ServedResource,
  shape: Shape,
  obj: KubeObject,
  includeObject: IncludeObject,
): unknown {
  if (shape.as === "table") {
    return toTable(
      res,
      [obj],
      { resourceVersion: obj.metadata.resourceVersion },
      {
        apiVersion: shape.apiVersion,
        includeObject,
        nowMs: ctx.clock.now(),
      },
    );
  }
  if (shape.as === "partial") return partialObjectMetadata(obj, shape.apiVersion);
  return obj;
}

function serveWatch(
  ctx: HandlerContext,
  req: Request,
  route: Route,
  q: URLSearchParams,
  shape: Shape,
  includeObject: IncludeObject,
  injected?: ApiError,
): Response {
  const { res } = route;
  const allowBookmarks = parseBool(q.get("allowWatchBookmarks"));
  const timeoutSeconds = parseIntParam(q.get("timeoutSeconds"), "timeoutSeconds");
  const labelSelector = q.get("labelSelector");
  let fieldSelector = q.get("fieldSelector");
  if (route.name !== undefined) {
    fieldSelector = [`metadata.name=${route.name}`, fieldSelector].filter(Boolean).join(",");
  }
  ctx.registry.selector(res, labelSelector, fieldSelector);
  let firstTable = true;
  const encode =
    shape.as === "table"
      ? (ev: WatchEvent): unknown => {
          if (ev.type === "BOOKMARK") return ev;
          const table = toTable(
            res,
            [ev.object],
            { resourceVersion: ev.object.metadata.resourceVersion },
            {
              apiVersion: shape.apiVersion,
              includeObject,
              nowMs: ctx.clock.now(),
              noHeaders: !firstTable,
            },
          );
          firstTable = false;
          return { type: ev.type, object: table };
        }
      : shape.as === "partial"
        ? (ev: WatchEvent): unknown => ({
            type: ev.type,
            object: partialObjectMetadata(ev.object, shape.apiVersion),
          })
        : undefined;
  let stop = () => {};
  const session = new WatchSession({
    clock: ctx.clock,
    // Like kube-apiserver, an unset or zero timeoutSeconds means the server's own timeout.
    timeoutMs:
      (timeoutSeconds !== undefined && timeoutSeconds > 0
        ? timeoutSeconds
        : ctx.defaultWatchTimeoutSeconds) * 1000,
    bookmarkIntervalMs: ctx.bookmarkIntervalMs,
    allowBookmarks,
    bookmark: () => ({ type: "BOOKMARK", object: ctx.registry.bookmarkObject(res) }),
    encode,
    onEnd: () => {
      stop();
      ctx.watches.delete(session);
    },
  });
  if (injected) {
    session.send({ type: "ERROR", object: injected.status as unknown as KubeObject });
    session.end();
  } else {
    ctx.watches.add(session);
    try {
      const w = ctx.registry.watch(
        res,
        {
          namespace: route.namespace,
          labelSelector,
          fieldSelector,
          resourceVersion: q.get("resourceVersion"),
          resourceVersionMatch: q.get("resourceVersionMatch"),
          sendInitialEvents: q.has("sendInitialEvents")
            ? parseBool(q.get("sendInitialEvents"))
            : undefined,
          allowWatchBookmarks: allowBookmarks,
        },
        (ev) => session.send(ev),
      );
      stop = w.stop;
      if (w.expired) session.end();
    } catch (err) {
      session.end();
      throw err;
    }
    if (session.ended) stop();
  }
  if (req.signal.aborted) session.end();
  else req.signal.addEventListener("abort", () => session.end(), { once: true });
  return new Response(session.stream, {
    status: 200,
    headers: { "content-type": "application/json", "cache-control": "no-cache, private" },
  });
}

async function serveResource(
  ctx: HandlerContext,
  req: Request,
  route: Route,
  info: RequestInfo,
  q: URLSearchParams,
): Promise<Response> {
  const { res } = route;
  if (route.subresource !== "" && !(route.subresource === "status" && res.statusSubresource)) {
    throw pathNotFound();
  }
  const sub = route.subresource === "status" ? ("status" as const) : undefined;
  const shape =
    req.method === "GET" || req.method === "HEAD"
      ? negotiate(req.headers.get("accept"))
      : { as: "json" as const };
  const includeObject = includeObjectOf(q);
  const dryRun = q.getAll("dryRun").includes("All");
  const ns = route.namespace;

  if (info.verb === "list") {
    const limit = parseIntParam(q.get("limit"), "limit");
    const result = ctx.registry.list(res, {
      namespace: ns,
      labelSelector: q.get("labelSelector"),
      fieldSelector: q.get("fieldSelector"),
      limit,
      continue: q.get("continue"),
      resourceVersion: q.get("resourceVersion"),
      resourceVersionMatch: q.get("resourceVersionMatch"),
    });
    const metadata: Record<string, unknown> = { resourceVersion: result.resourceVersion };
    if (result.continue) metadata.continue = result.continue;
    // Custom resource lists (unstructured) always carry `continue`, empty on the last page.
    else if (res.custom) metadata.continue = "";
    if (result.remainingItemCount !== undefined)
      metadata.remainingItemCount = result.remainingItemCount;
    return json(shapeList(ctx, res, shape, result.items, metadata, includeObject));
  }
  if (info.verb === "get") {
    return json(shapeOne(ctx, res, shape, ctx.registry.get(res, ns, route.name!), includeObject));
  }
  const contentType = mediaType(req.headers.get("content-type"));
  if (res.review) {
    if (info.verb !== "create") throw methodNotAllowed();
    return json(res.review((await readBody(req, contentType, true)) as KubeObject), 201);
  }
  if (info.verb === "create" || info.verb === "update") {
    const body = await readBody(req, contentType, info.verb === "create");
    if (info.verb === "create") {
      if (res.namespaced && ns === undefined) throw methodNotAllowed();
      return json(ctx.registry.create(res, ns, body, { dryRun }), 201);
    }
    return json(ctx.registry.update(res, ns, route.name!, body, { dryRun, subresource: sub }));
  }
  if (info.verb === "patch") {
    const kind = patchTypes[contentType];
    if (kind === undefined) {
      throw unsupportedPatchType();
    }
    const body = await readJson(req);
    return json(ctx.registry.patch(res, ns, route.name!, kind, body, { dryRun, subresource: sub }));
  }
  if (info.verb === "delete" || info.verb === "deletecollection") {
    const body = (await readJson(req)) as
      | { preconditions?: { uid?: string; resourceVersion?: string }; dryRun?: string[] }
      | undefined;
    const opts = {
      dryRun: dryRun || (body?.dryRun ?? []).includes("All"),
      uid: body?.preconditions?.uid,
      resourceVersion: body?.preconditions?.resourceVersion,
    };
    if (info.verb === "delete") {
      return json(ctx.registry.delete(res, ns, route.name!, opts).object);
    }
    const result = ctx.registry.deleteCollection(
      res,
      {
        namespace: ns,
        labelSelector: q.get("labelSelector"),
        fieldSelector: q.get("fieldSelector"),
      },
      opts,
    );
    return json(
      shapeList(
        ctx,
        res,
        { as: "json" },
        result.items,
        { resourceVersion: result.resourceVersion },
        includeObject,
      ),
    );
  }
  throw methodNotAllowed();
}

function verbOf(method: string, route: Route, q: URLSearchParams): string | undefined {
  switch (method) {
    case "GET":
    case "HEAD":
      if (route.legacyWatch || parseBool(q.get("watch"))) return "watch";
      return route.name === undefined ? "list" : "get";
    case "POST":
      return route.name === undefined && route.subresource === "" ? "create" : undefined;
    case "PUT":
      return route.name !== undefined ? "update" : undefined;
    case "PATCH":
      return route.name !== undefined ? "patch" : undefined;
    case "DELETE":
      return route.name !== undefined ? "delete" : "deletecollection";
    default:
      return undefined;
  }
}

function serveNonResource(ctx: HandlerContext, parsed: Parsed, req: Request): Response {
  const host = new URL(req.url).host;
  switch (parsed.kind) {
    case "api":
      return json({
        kind: "APIVersions",
        versions: ["v1"],
        serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: host }],
      });
    case "apis":
      return json({
        kind: "APIGroupList",
        apiVersion: "v1",
        groups: [...new Set(servedResources.map((r) => r.group))]
          .filter((g) => g !== "")
          .map(apiGroup),
      });
    case "group": {
      if (!servedResources.some((r) => r.group === parsed.group)) throw pathNotFound();
      return json({ kind: "APIGroup", apiVersion: "v1", ...(apiGroup(parsed.group) as object) });
    }
    case "groupVersion":
      if (!servedResources.some((r) => r.group === parsed.group && r.version === parsed.version)) {
        throw pathNotFound();
      }
      return json(resourceList(parsed.group, parsed.version));
    case "version":
      return json({
        major: ctx.version.major,
        minor: ctx.version.minor,
        gitVersion: ctx.version.gitVersion,
        gitCommit: "",
        gitTreeState: "clean",
        buildDate: "2026-01-01T00:00:00Z",
        goVersion: "",
        compiler: "typescript",
        platform: "linux/amd64",
      });
    case "openapi": {
      const doc = parsed.key === "" ? openApiIndex() : openApiDocument(parsed.key);
      if (doc === undefined) throw pathNotFound();
      return json(doc);
    }
    case "health":
      return new Response("ok", { headers: { "content-type": "text/plain; charset=utf-8" } });
    default:
      throw pathNotFound();
  }
}

export function createHandler(ctx: HandlerContext): (req: Request) => Promise<Response> {
  return async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const q = url.searchParams;
    const method = req.method.toUpperCase();
    try {
      const parsed = parsePath(url.pathname);
      const verb = parsed.kind === "resource" ? verbOf(method, parsed, q) : undefined;
      let info: RequestInfo;
      if (parsed.kind === "resource") {
        info = {
          method,
          verb: verb ?? method.toLowerCase(),
          resource: parsed.res.plural,
          subresource: parsed.subresource,
          path: url.pathname,
          watch: verb === "watch",
        };
      } else {
        info = {
          method,
          verb: method === "GET" ? "get" : method.toLowerCase(),
          resource: "",
          subresource: "",
          path: url.pathname,
          watch: false,
        };
      }
      // Non-resource requests (discovery, /version) count under their path.
      ctx.requests.add(info.verb, info.resource || info.path, info.subresource);
      if (writeVerbs.has(info.verb)) ctx.writes.add(info.verb, info.resource, info.subresource);
      const verdict = await ctx.onRequest?.(info, req.signal);
      if (verdict && !(verdict.inBand && info.watch)) throw verdict.error;
      if (parsed.kind !== "resource") {
        if (method !== "GET" && method !== "HEAD") throw methodNotAllowed();
        return serveNonResource(ctx, parsed, req);
      }
      if (verb === undefined) throw methodNotAllowed();
      if (info.watch) {
        const shape = negotiate(req.headers.get("accept"));
        if (parsed.subresource !== "") throw pathNotFound();
        return serveWatch(ctx, req, parsed, q, shape, includeObjectOf(q), verdict?.error);
      }
      return await serveResource(ctx, req, parsed, info, q);
    } catch (err) {
      if (err instanceof ApiError) return errorResponse(err);
      if (req.signal.aborted) return new Response(null, { status: 499 });
      ctx.logger.error("API server request failed", { method, path: url.pathname, err });
      return errorResponse(internalError(err instanceof Error ? err.message : String(err)));
    }
  };
}
