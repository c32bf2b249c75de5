/**
 * Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), which
 * `kubectl get` asks for, and the metadata-only forms (`as=PartialObjectMetadata[List]`).
 */
import type { KubeObject, ListMeta } from "../../kube/objects.ts";
import type { ServedResource } from "./kinds.ts";

export type IncludeObject = "None" | "Object" | "Metadata";

export interface TableOptions {
  /** `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`. */
  apiVersion: string;
  includeObject: IncludeObject;
  /** Omit the column definitions (`TableOptions.noHeaders`, and watch events after the first). */
  noHeaders?: boolean;
  nowMs: number;
}

export function partialObjectMetadata(obj: KubeObject, apiVersion = "meta.k8s.io/v1"): KubeObject {
  return { kind: "PartialObjectMetadata", apiVersion, metadata: obj.metadata };
}

export function partialObjectMetadataList(
  items: KubeObject[],
  metadata: ListMeta,
  apiVersion = "meta.k8s.io/v1",
): unknown {
  return {
    kind: "PartialObjectMetadataList",
    apiVersion,
    metadata,
    items: items.map((o) => partialObjectMetadata(o, apiVersion)),
  };
}

/** A Table of `items`. */
export function toTable(
  res: ServedResource,
  items: KubeObject[],
  metadata: ListMeta,
  opts: TableOptions,
): unknown {
  const table: Record<string, unknown> = {
    kind: "Table",
    apiVersion: opts.apiVersion,
    metadata,
  };
  if (!opts.noHeaders) {
    table.columnDefinitions = res.columns.map((c) => {
      const def: Record<string, unknown> = {
        name: c.name,
        type: c.type,
        format: c.format ?? "",
        description: c.description,
        priority: c.priority,
      };
      return def;
    });
  }
  table.rows = items.map((obj) => {
    const row: Record<string, unknown> = {
      cells: res.columns.map((c) => c.cell(obj, opts.nowMs)),
    };
    if (opts.includeObject === "Object") row.object = obj;
    else if (opts.includeObject === "Metadata") row.object = partialObjectMetadata(obj);
    return row;
  });
  return table;
}
