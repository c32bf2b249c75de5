/**
 * What the sidecar does when it loses the driver after start-up: the same as upstream
 * (csi-lib-utils `ExitOnConnectionLoss`). It never reconnects: a driver that went away may
 * come back with a different identity or state, so the container restarts instead.
 */
import type { Logger } from "../util/log.ts";

/** What {@link exitOnConnectionLoss} needs from the process. */
export interface ExitOnConnectionLossDeps {
  /** Writes the termination message (`writeTerminationMessage` of `src/runtime/process.ts`). */
  writeTerminationMessage: (message: string) => boolean;
  /** Ends the process (`exit` of `src/runtime/process.ts`). */
  exit: (code: number) => void;
  logger: Logger;
}

/**
 * The `onConnectionLost` policy of the sidecar, as upstream: write the reason (which starts with
 * upstream's "Lost connection to CSI driver") to the termination log (`/dev/termination-log`)
 * when it is writable, and exit 1 so that Kubernetes restarts the container.
 */
export function exitOnConnectionLoss(deps: ExitOnConnectionLossDeps): (reason: string) => void {
  return (reason) => {
    if (!deps.writeTerminationMessage(reason)) {
      deps.logger.warn("Could not write the termination message", { message: reason });
    }
    deps.logger.error("Exiting: the sidecar does not reconnect to a lost CSI driver", {
      reason,
    });
    deps.exit(1);
  };
}
