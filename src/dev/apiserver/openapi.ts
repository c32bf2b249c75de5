/**
 * A minimal OpenAPI v3 description, just enough for kubectl: `/openapi/v3` lists one document
 * per group-version, and each document declares the PATCH operation of every resource with its
 * `x-kubernetes-group-version-kind` and the `fieldValidation`, `dryRun` and `fieldManager`
 * query parameters. From that kubectl learns that the server validates fields itself, so
 * `kubectl apply` / `kubectl create` (default `--validate=strict`) send `fieldValidation=Strict`
 * instead of failing with "failed to download openapi". The PATCH operations declare no
 * request body, so kubectl computes strategic merge patches from its compiled-in types rather
 * than from schemas this document does not carry. `/openapi/v2` is not served (404); kubectl
 * only falls back to it when v3 is missing.
 */
import { apiVersionOfServed, type ServedResource, servedResources } from "./kinds.ts";

/** The document key of a group-version: `api/v1`, `apis/storage.k8s.io/v1`. */
export function openApiKey(r: { group: string; version: string }): string {
  return r.group === "" ? `api/${r.version}` : `apis/${r.group}/${r.version}`;
}

function hash(text: string): string {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0).toString(16).toUpperCase().padStart(8, "0");
}

const queryParams = ["dryRun", "fieldManager", "fieldValidation", "force", "pretty"].map(
  (name) => ({
    name,
    in: "query",
    schema: { type: name === "force" ? "boolean" : "string", uniqueItems: true },
  }),
);

function operationId(r: ServedResource): string {
  const group = r.group === "" ? "core" : r.group.split(".")[0]!;
  const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
  return `patch${cap(group)}${cap(r.version)}${r.namespaced ? "Namespaced" : ""}${r.kind}`;
}

/** The OpenAPI v3 document of one group-version, or undefined when none is served. */
export function openApiDocument(key: string): unknown {
  const served = servedResources.filter((r) => openApiKey(r) === key);
  if (served.length === 0) return undefined;
  const paths: Record<string, unknown> = {};
  for (const r of served) {
    const base = `/${openApiKey(r)}${r.namespaced ? "/namespaces/{namespace}" : ""}/${r.plural}/{name}`;
    paths[base] = {
      parameters: [
        { name: "name", in: "path", required: true, schema: { type: "string", uniqueItems: true } },
        ...(r.namespaced
          ? [
              {
                name: "namespace",
                in: "path",
                required: true,
                schema: { type: "string", uniqueItems: true },
              },
            ]
          : []),
      ],
      patch: {
        description: `partially update the specified ${r.kind}`,
        operationId: operationId(r),
        parameters: queryParams,
        responses: { "200": { description: "OK" } },
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": { group: r.group, version: r.version, kind: r.kind },
      },
    };
  }
  return {
    openapi: "3.0.0",
    info: { title: "Kubernetes", version: apiVersionOfServed(served[0]!) },
    paths,
    components: { schemas: {} },
  };
}

/** The `/openapi/v3` index: document keys to their URLs. */
export function openApiIndex(): unknown {
  const paths: Record<string, { serverRelativeURL: string }> = {};
  for (const r of servedResources) {
    const key = openApiKey(r);
    if (paths[key]) continue;
    const doc = JSON.stringify(openApiDocument(key));
    paths[key] = { serverRelativeURL: `/openapi/v3/${key}?hash=${hash(doc)}` };
  }
  return { paths };
}
