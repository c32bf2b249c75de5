/**
 * The reads provisioning needs, served from the informer caches where upstream uses listers and
 * from the API where it GETs (Secrets, the source PV of a clone, snapshots, attribute classes).
 * NotFound becomes `undefined`; every other failure propagates.
 */
import type { KubeApi } from "../kube/api.ts";
import { isNotFound } from "../kube/errors.ts";
import type { Informer } from "../kube/informer.ts";
import type { CSINode, KubeObject, Node, PersistentVolumeClaim } from "../kube/objects.ts";
import { resources } from "../kube/resources.ts";
import type { ReferenceGrant } from "../provision/data-source.ts";
import type { ProvisionLookups } from "../provision/request.ts";
import type { Clock } from "../util/clock.ts";

async function orUndefined<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export interface LookupSources {
  api: KubeApi;
  claims: Informer<PersistentVolumeClaim>;
  csiNodes?: Informer<CSINode>;
  nodes?: Informer<Node>;
  /** Caches namespace labels for `namespaceTtlMs` (default 60 s); without it, every read GETs. */
  clock?: Clock;
  namespaceTtlMs?: number;
}

function listOf<T extends KubeObject>(i: Informer<T> | undefined): readonly T[] {
  return i ? i.store.list() : [];
}

export function createLookups(src: LookupSources): ProvisionLookups {
  const { api } = src;
  const namespaceTtlMs = src.namespaceTtlMs ?? 60_000;
  const namespaceLabels = new Map<string, { at: number; labels: Record<string, string> }>();
  return {
    getNamespaceLabels: async (name) => {
      const now = src.clock?.now();
      const cached = namespaceLabels.get(name);
      if (cached && now !== undefined && now - cached.at < namespaceTtlMs) return cached.labels;
      const ns = await orUndefined(api.resource(resources.namespaces).get(name));
      if (!ns) return undefined;
      const labels = { ...ns.metadata.labels };
      if (now !== undefined) {
        if (namespaceLabels.size >= 1000) namespaceLabels.clear();
        namespaceLabels.set(name, { at: now, labels });
      }
      return labels;
    },
    getSecret: (ns, name) => orUndefined(api.resource(resources.secrets).get(name, ns)),
    getClaim: async (ns, name) => src.claims.store.get(`${ns}/${name}`),
    getVolume: (name) => orUndefined(api.resource(resources.persistentVolumes).get(name)),
    getVolumeSnapshot: (ns, name) =>
      orUndefined(api.resource(resources.volumeSnapshots).get(name, ns)),
    getVolumeSnapshotContent: (name) =>
      orUndefined(api.resource(resources.volumeSnapshotContents).get(name)),
    getVolumeAttributesClass: (name) =>
      orUndefined(api.resource(resources.volumeAttributesClasses).get(name)),
    listReferenceGrants: async (ns) => {
      const grants: ReferenceGrant[] = [];
      let cont: string | undefined;
      do {
        const page = await api
          .resource(resources.referenceGrants)
          .list({ namespace: ns, limit: 500, continue: cont });
        grants.push(...(page.items as ReferenceGrant[]));
        cont = page.metadata.continue || undefined;
      } while (cont);
      return grants;
    },
    csiNodes: () => listOf(src.csiNodes),
    nodes: () => listOf(src.nodes),
  };
}
