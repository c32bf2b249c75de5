/**
 * Distributed provisioning (`--node-deployment`): one provisioner per node, each deciding which
 * claims are its own (upstream `checkNode` / `becomeOwner`).
 *
 * - A claim whose `volume.kubernetes.io/selected-node` names this node is provisioned here.
 * - A claim that names another node is that node's business.
 * - A claim without a node whose StorageClass binds `Immediate` (with
 *   `--node-deployment-immediate-binding`) is up for grabs: every instance waits a per-claim,
 *   jittered, exponentially growing delay, watching the claim meanwhile, and the first one still
 *   without a rival writes its own node into `selected-node` with a PVC Update (GET, then PUT:
 *   the RBAC has `update`, not `patch`). A conflicting write means someone else changed the
 *   claim: the attempt starts over with a longer delay and most likely then sees the new owner.
 *   The write itself does not provision: the claim's next sync (the update event) sees this node
 *   selected and provisions it.
 *
 * Departing from upstream, on purpose: when the optional capacity check finds too little room on
 * this node the answer is `retry` (try again after the claim's back-off) rather than a silent
 * ignore, because there is no periodic resync here to bring the claim back once room is freed.
 */
import type { CsiDriver } from "../csi/client.ts";
import type { CreateVolumeRequest } from "../gen/csi/v1/csi_pb.js";
import type { KubeApi } from "../kube/api.ts";
import { isConflict, isNotFound } from "../kube/errors.ts";
import type { PersistentVolumeClaim, StorageClass } from "../kube/objects.ts";
import { resources } from "../kube/resources.ts";
import { ANN_SELECTED_NODE, nodeDeploymentDecision } from "../provision/should-provision.ts";
import type { Clock, Random } from "../util/clock.ts";
import { errorText } from "../util/errors.ts";
import type { Logger } from "../util/log.ts";

/** What the claim controller does with a claim in node-deployment mode. */
export type OwnershipDecision =
  /** The claim selected this node: provision it. */
  | "provision"
  /**
   * Not this node's claim now (another node owns it, it waits for a consumer, it is gone), or
   * this node just wrote itself into `selected-node` and the claim's update event will bring it
   * back: drop the claim without a retry.
   */
  | "ignore"
  /** This node has too little capacity for it now: retry after the claim's back-off. */
  | "retry";

export interface NodeOwnershipOptions {
  api: KubeApi;
  /** `NODE_NAME`: this instance's node. */
  nodeName: string;
  /** `--node-deployment-immediate-binding`: take part in owning Immediate claims. Default true. */
  immediateBinding?: boolean;
  /** `--node-deployment-base-delay` in ms: the first delay and the jitter. Upstream default 20 s. */
  baseDelayMs: number;
  /** `--node-deployment-max-delay` in ms: the longest delay. Upstream default 60 s. */
  maxDelayMs: number;
  clock: Clock;
  random: Random;
  logger: Logger;
  /** The claim with this UID as the informer has it now; `undefined` once it is gone. */
  getClaim: (uid: string) => PersistentVolumeClaim | undefined;
  /**
   * Whether this node has room for the claim (GetCapacity for its topology). Default: no
   * check. A rejection is logged and the attempt goes on, as upstream does: provisioning will
   * then fail with an event the user sees instead of every node ignoring the claim silently.
   */
  getCapacity?: (
    claim: PersistentVolumeClaim,
    storageClass: StorageClass,
    signal?: AbortSignal,
  ) => Promise<boolean>;
}

export interface NodeOwnership {
  /**
   * Whether this instance provisions `claim` (see {@link OwnershipDecision}). For an unowned
   * Immediate claim this waits up to `maxDelayMs` (plus polling) before it tries to become the
   * owner. Rejects with the API error when the PVC Update fails other than by a conflict (the
   * caller retries the claim), and with the signal's reason when `signal` aborts.
   */
  decide(
    claim: PersistentVolumeClaim,
    storageClass: StorageClass,
    signal?: AbortSignal,
  ): Promise<OwnershipDecision>;
  /** Resets the claim's delay (call it when the claim is deleted). */
  forget(uid: string): void;
  /** Ownership attempts made for the claim since its delay was last reset. */
  attempts(uid: string): number;
}

/**
 * The wait before ownership attempt number `attempts` (0 for the first): `baseDelay · 2^attempts`
 * capped at `maxDelay`, minus `random() · baseDelay`, floored at 0 (upstream's
 * `rateLimiterWithJitter`). The jitter spreads the first attempts of many nodes over
 * `[0, baseDelay]`.
 */
export function ownershipDelay(
  attempts: number,
  baseDelayMs: number,
  maxDelayMs: number,
  random: Random,
): number {
  const exp = baseDelayMs * 2 ** attempts;
  const delay = Math.min(Number.isFinite(exp) ? exp : maxDelayMs, maxDelayMs);
  const jitter = baseDelayMs * random();
  return jitter > delay ? 0 : delay - jitter;
}

/** How often the informer's copy is checked while waiting: base/100, at least 10 ms. */
export function ownershipPollInterval(baseDelayMs: number): number {
  return Math.max(baseDelayMs / 100, 10);
}

/**
 * Upstream's capacity check, for `getCapacity`: `request` is the CreateVolume request built as
 * if this node were selected (`buildCreateVolumeRequest` with `selectedNode` = this node). True
 * when it asks for no particular size, or when GetCapacity (with its volume capabilities and
 * parameters) reports at least the required bytes for one of its requisite topologies (or,
 * without topology, once without one). A failed call rejects.
 */
export async function capacityFitsRequest(
  driver: Pick<CsiDriver, "getCapacity">,
  request: CreateVolumeRequest,
  signal?: AbortSignal,
): Promise<boolean> {
  const required = request.capacityRange?.requiredBytes ?? 0n;
  if (required <= 0n) return true;
  const requisite = request.accessibilityRequirements?.requisite ?? [];
  const topologies = requisite.length > 0 ? requisite : [undefined];
  for (const accessibleTopology of topologies) {
    const response = await driver.getCapacity(
      {
        volumeCapabilities: request.volumeCapabilities,
        parameters: request.parameters,
        accessibleTopology,
      },
      { signal },
    );
    if (response.availableCapacity >= required) return true;
  }
  return false;
}

function claimKey(c: PersistentVolumeClaim): string {
  return `${c.metadata.namespace}/${c.metadata.name}`;
}

/** What a look at the claim says while waiting. */
type Watch = { kind: "free" } | { kind: "gone"; why: string } | { kind: "taken"; node: string };

/** What an attempt to write this node into the claim ended with. */
type Attempt = Exclude<Watch, { kind: "free" }> | { kind: "written" } | { kind: "conflict" };

export function createNodeOwnership(opts: NodeOwnershipOptions): NodeOwnership {
  const { api, nodeName, clock, logger } = opts;
  const immediateBinding = opts.immediateBinding ?? true;
  const pollMs = ownershipPollInterval(opts.baseDelayMs);
  /** Claim UID → attempts since the last reset (upstream's rate-limiter entry). */
  const attempts = new Map<string, number>();
  const pvcs = api.resource(resources.persistentVolumeClaims);

  const look = (claim: PersistentVolumeClaim): Watch => {
    const uid = claim.metadata.uid ?? "";
    const current = opts.getClaim(uid);
    if (!current || current.metadata.uid !== uid) return { kind: "gone", why: "deleted" };
    if (current.metadata.deletionTimestamp) return { kind: "gone", why: "being deleted" };
    if (current.spec.volumeName) return { kind: "gone", why: "bound" };
    const node = current.metadata.annotations?.[ANN_SELECTED_NODE] ?? "";
    return node === "" ? { kind: "free" } : { kind: "taken", node };
  };

  /** Waits `delayMs`, checking the claim every `pollMs`; stops early when it is not free. */
  const wait = async (
    claim: PersistentVolumeClaim,
    delayMs: number,
    signal?: AbortSignal,
  ): Promise<Watch> => {
    const deadline = clock.now() + delayMs;
    for (;;) {
      const left = deadline - clock.now();
      if (left <= 0) return look(claim);
      await clock.sleep(Math.min(pollMs, left), signal);
      const state = look(claim);
      if (state.kind !== "free") return state;
    }
  };

  /** GET + PUT of `selected-node = me`; what happened, or throws the API error. */
  const writeOwner = async (
    claim: PersistentVolumeClaim,
    signal?: AbortSignal,
  ): Promise<Attempt> => {
    const name = claim.metadata.name ?? "";
    const namespace = claim.metadata.namespace;
    let live: PersistentVolumeClaim;
    try {
      live = await pvcs.get(name, namespace, { signal });
    } catch (err) {
      if (isNotFound(err)) return { kind: "gone", why: "deleted" };
      throw err;
    }
    if (live.metadata.uid !== claim.metadata.uid) return { kind: "gone", why: "replaced" };
    if (live.metadata.deletionTimestamp) return { kind: "gone", why: "being deleted" };
    if (live.spec.volumeName) return { kind: "gone", why: "bound" };
    const node = live.metadata.annotations?.[ANN_SELECTED_NODE] ?? "";
    if (node !== "") return { kind: "taken", node };
    try {
      await pvcs.update(
        {
          ...live,
          metadata: {
            ...live.metadata,
            annotations: { ...live.metadata.annotations, [ANN_SELECTED_NODE]: nodeName },
          },
        },
        { signal },
      );
      return { kind: "written" };
    } catch (err) {
      if (isConflict(err)) return { kind: "conflict" };
      if (isNotFound(err)) return { kind: "gone", why: "deleted" };
      throw err;
    }
  };

  /** The capacity check; a failed check counts as enough (see `getCapacity`). */
  const hasCapacity = async (
    claim: PersistentVolumeClaim,
    storageClass: StorageClass,
    key: string,
    signal?: AbortSignal,
  ): Promise<boolean> => {
    try {
      return await opts.getCapacity!(claim, storageClass, signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      logger.v(3).info("Capacity check failed; trying to become the owner anyway", {
        claim: key,
        err: errorText(err),
      });
      return true;
    }
  };

  const becomeOwner = async (
    claim: PersistentVolumeClaim,
    storageClass: StorageClass,
    signal?: AbortSignal,
  ): Promise<OwnershipDecision> => {
    const uid = claim.metadata.uid ?? "";
    const key = claimKey(claim);
    const log = logger.v(5);
    for (;;) {
      const attempt = attempts.get(uid) ?? 0;
      const delay = ownershipDelay(attempt, opts.baseDelayMs, opts.maxDelayMs, opts.random);
      attempts.set(uid, attempt + 1);
      log.info("Will try to become the owner of the claim", {
        claim: key,
        node: nodeName,
        delayMs: delay,
        attempt,
      });
      const watched = await wait(claim, delay, signal);
      let state: Attempt;
      if (watched.kind !== "free") state = watched;
      else {
        if (opts.getCapacity && !(await hasCapacity(claim, storageClass, key, signal))) {
          log.info("Not enough capacity on this node for the claim", { claim: key });
          return "retry";
        }
        state = await writeOwner(claim, signal);
      }

      if (state.kind === "written") {
        attempts.delete(uid);
        logger.v(4).info("Became the owner of the claim", { claim: key, node: nodeName });
        return "ignore";
      }
      if (state.kind === "conflict") {
        logger.v(3).info("Conflict while selecting this node for the claim; trying again", {
          claim: key,
        });
        continue;
      }
      // Someone else owns it, or it is no longer there to own: start from scratch next time.
      attempts.delete(uid);
      if (state.kind === "taken") {
        log.info("Did not become the owner of the claim", { claim: key, owner: state.node });
      } else {
        log.info("Stopped trying to own the claim", { claim: key, reason: state.why });
      }
      return "ignore";
    }
  };

  return {
    async decide(claim, storageClass, signal) {
      const decision = nodeDeploymentDecision(claim, storageClass, {
        nodeName,
        immediateBinding,
      });
      if (decision !== "becomeOwner") return decision;
      return becomeOwner(claim, storageClass, signal);
    },
    forget(uid) {
      attempts.delete(uid);
    },
    attempts(uid) {
      return attempts.get(uid) ?? 0;
    },
  };
}
