/**
 * What a failed provisioning attempt means for the claim (upstream `checkError` and the library's
 * provisioning states).
 *
 * - `inBackground`: a CreateVolume may still be running in the driver. Keep driving the claim,
 *   even after its PVC is deleted, until an answer is final: a volume may exist.
 * - `finished`: nothing is in flight; the claim is retried with back-off while it exists.
 * - `noChange`: keep the state of the previous attempt (`finished` when there was none).
 * - `reschedule`: nothing is in flight and another node may do better: remove the claim's
 *   `volume.kubernetes.io/selected-node` so that the scheduler picks again.
 */
import { Code, ConnectError } from "@connectrpc/connect";

export type ProvisioningOutcome = "finished" | "inBackground" | "noChange" | "reschedule";

/** The outcome of a CreateVolume that failed with `code`. */
export type CreateVolumeOutcome = "finished" | "inBackground" | "reschedule";

/**
 * Whether a failure may be answered by rescheduling: only when topology is in use (otherwise the
 * next CreateVolume would be identical) and the claim has a selected node (late binding).
 */
export function mayReschedule(
  supportsTopology: boolean,
  selectedNode: string | undefined,
): boolean {
  return supportsTopology && (selectedNode ?? "") !== "";
}

/**
 * The outcome of a CreateVolume that failed with gRPC status `code`:
 *
 * | code | outcome |
 * |---|---|
 * | ResourceExhausted | `reschedule` when `mayReschedule`, else `finished` |
 * | Canceled, DeadlineExceeded, Unavailable, Aborted | `inBackground` |
 * | every other code | `finished` |
 */
export function createVolumeOutcome(code: Code, mayReschedule: boolean): CreateVolumeOutcome {
  switch (code) {
    case Code.ResourceExhausted:
      // The driver cannot provision in the requested topology; not in progress.
      return mayReschedule ? "reschedule" : "finished";
    case Code.Canceled: // we gave up waiting; the driver may go on
    case Code.DeadlineExceeded: // timeout
    case Code.Unavailable: // connection broken: a previous call may still run
    case Code.Aborted: // CSI: an operation is already pending for this volume
      return "inBackground";
    default:
      return "finished";
  }
}

/**
 * `InvalidArgument` means the request cannot succeed as it stands: the claim goes to the slow
 * retry (`--retry-interval-max`) until its StorageClass changes (upstream "infeasible").
 */
export function isInfeasible(code: Code): boolean {
  return code === Code.InvalidArgument;
}

export interface CreateVolumeFailure {
  outcome: CreateVolumeOutcome;
  /** The gRPC code; `undefined` for an error that is not a gRPC status. */
  code: Code | undefined;
  /** See {@link isInfeasible}. */
  infeasible: boolean;
}

/**
 * Classifies anything a CreateVolume call threw. An error that is not a `ConnectError` did not
 * come from the driver (it failed before or around the call): we cannot know whether a previous
 * CreateVolume is still running, so it is `inBackground`.
 */
export function classifyCreateVolumeError(
  error: unknown,
  mayReschedule: boolean,
): CreateVolumeFailure {
  if (!(error instanceof ConnectError)) {
    return { outcome: "inBackground", code: undefined, infeasible: false };
  }
  return {
    outcome: createVolumeOutcome(error.code, mayReschedule),
    code: error.code,
    infeasible: isInfeasible(error.code),
  };
}
