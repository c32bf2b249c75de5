/**
 * A tiny in-memory KubeApi for the owner lookup: `get` of stored objects (NotFound otherwise);
 * every other verb throws, so a test notices an unexpected call.
 */
import type { KubeApi, ResourceClient } from "../../src/kube/api.ts";
import { KubeApiError } from "../../src/kube/errors.ts";
import type { KubeObject } from "../../src/kube/objects.ts";
import type { Resource } from "../../src/kube/resources.ts";

export interface GetCall {
  plural: string;
  group: string;
  namespace: string | undefined;
  name: string;
}

export class MemoryKube implements KubeApi {
  /** Objects by `group/plural/namespace/name`. */
  readonly objects = new Map<string, KubeObject>();
  readonly gets: GetCall[] = [];

  add(group: string, plural: string, obj: KubeObject): this {
    const m = obj.metadata;
    this.objects.set(`${group}/${plural}/${m.namespace ?? ""}/${m.name}`, obj);
    return this;
  }

  resource<T extends KubeObject>(r: Resource<T>): ResourceClient<T> {
    const unexpected = (verb: string) => () => {
      throw new Error(`Unexpected ${verb} of ${r.plural}`);
    };
    return {
      resource: r,
      get: async (name: string, namespace?: string) => {
        this.gets.push({ plural: r.plural, group: r.group, namespace, name });
        const obj = this.objects.get(`${r.group}/${r.plural}/${namespace ?? ""}/${name}`);
        if (!obj) {
          throw KubeApiError.fromResponse({
            verb: "get",
            target: `${r.plural} ${namespace}/${name}`,
            status: 404,
            body: {
              kind: "Status",
              code: 404,
              reason: "NotFound",
              message: `${r.plural} "${name}" not found`,
            },
          });
        }
        return structuredClone(obj) as T;
      },
      list: unexpected("list"),
      watch: unexpected("watch"),
      create: unexpected("create"),
      update: unexpected("update"),
      updateStatus: unexpected("updateStatus"),
      patch: unexpected("patch"),
      delete: unexpected("delete"),
    } as ResourceClient<T>;
  }
}
