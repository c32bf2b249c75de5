#!/usr/bin/env -S bun
/**
 * Composition root: parse the command line, build the dependencies, run the command, and turn
 * its outcome into an exit code. The only module that knows about the real process.
 */
import { resolveCommand } from "./cli/main-args.ts";
import { runProbe } from "./cli/probe.ts";
import {
  argv,
  env,
  exit,
  hostname,
  onTerminationSignal,
  preciseNow,
  processId,
  processStats,
  readTextFile,
  runtimeVersion,
  writeStderr,
  writeStdout,
  writeTerminationMessage,
} from "./runtime/process.ts";
import { systemClock } from "./util/clock.ts";
import { createLogger } from "./util/log.ts";
import { versionLine } from "./version.ts";

async function main(): Promise<number> {
  const resolved = resolveCommand(argv(), env());
  switch (resolved.kind) {
    case "help":
      writeStdout(resolved.text.endsWith("\n") ? resolved.text : `${resolved.text}\n`);
      return 0;
    case "version":
      writeStdout(`${versionLine(runtimeVersion())}\n`);
      return 0;
    case "error":
      writeStderr(`${resolved.message}\n`);
      return resolved.exitCode;
  }
  const { config } = resolved;
  // --log-{json,text}-split-stream: info lines to stdout, warnings and errors to stderr.
  const split =
    config.loggingFormat === "json" ? config.logJsonSplitStream : config.logTextSplitStream;
  const logger = createLogger({
    write: split ? (line) => writeStdout(`${line}\n`) : (line) => writeStderr(`${line}\n`),
    writeError: (line) => writeStderr(`${line}\n`),
    clock: { now: preciseNow, sleep: systemClock.sleep },
    verbosity: config.verbosity,
    format: config.loggingFormat,
    pid: processId(),
  });
  for (const w of resolved.warnings) logger.warn(w);
  const stop = new AbortController();
  const removeSignals = onTerminationSignal((sig) => {
    logger.info("Received signal; shutting down", { signal: sig });
    stop.abort(new Error(`received ${sig}`));
  });
  try {
    switch (resolved.kind) {
      case "probe":
        return await runProbe({
          config: {
            csiAddress: config.csiAddress,
            timeoutMs: config.timeoutMs,
            output: config.output === "json" ? "json" : "text",
            connectTimeoutMs: config.connectTimeoutMs,
          },
          deps: {
            clock: systemClock,
            logger,
            write: writeStdout,
            writeError: writeStderr,
            signal: stop.signal,
          },
        });
      case "orphans": {
        const { runOrphans } = await import("./cli/orphans.ts");
        return await runOrphans(
          {
            csiAddress: config.csiAddress,
            timeoutMs: config.timeoutMs,
            output: config.output,
            kubeconfig: config.kubeconfig,
            master: config.master,
            kubeApiQps: config.kubeApiQps,
            kubeApiBurst: config.kubeApiBurst,
            volumeNamePrefix: config.volumeNamePrefix,
            journalNamespace: config.leaderElectionNamespace || config.podNamespace,
          },
          {
            clock: systemClock,
            random: Math.random,
            logger,
            env: env(),
            readFile: readTextFile,
            write: writeStdout,
            writeError: writeStderr,
            signal: stop.signal,
          },
        );
      }
      case "run":
      case "dev": {
        const run =
          resolved.kind === "run"
            ? (await import("./sidecar.ts")).runSidecar
            : (await import("./dev/command.ts")).runDev;
        return await run(config, {
          logger,
          signal: stop.signal,
          clock: systemClock,
          random: Math.random,
          env: env(),
          readFile: readTextFile,
          hostname: hostname(),
          uuid: () => crypto.randomUUID(),
          writeTerminationMessage,
          exit,
          processStats: processStats(),
        });
      }
    }
  } finally {
    removeSignals();
  }
  return 0;
}

main().then(
  (code) => exit(code),
  (err: unknown) => {
    writeStderr(
      `csi-provisioner: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    exit(1);
  },
);
