/**
 * The default command: connect to the driver, then run the provisioning controllers against the
 * Kubernetes API until a termination signal drains them.
 */
import type { Config } from "../config/schema.ts";
import type { Logger } from "../util/log.ts";

export interface RunDeps {
  logger: Logger;
  signal: AbortSignal;
}

export async function runCommand(
  kind: "run" | "dev",
  _config: Config,
  deps: RunDeps,
): Promise<number> {
  deps.logger.error(`The ${kind} command is not wired yet`);
  return 1;
}
