import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { exitOnConnectionLoss } from "../../src/csi/connection-loss.ts";
import { memoryLogger } from "../../src/util/log.ts";
import { FakeClock } from "../support/fake-clock.ts";

const REASON = "Lost connection to CSI driver at /csi/csi.sock: the driver closed the connection";

describe("exitOnConnectionLoss()", () => {
  it("writes the reason as the termination message and exits 1", () => {
    const logger = memoryLogger(new FakeClock());
    const written: string[] = [];
    const exits: number[] = [];
    exitOnConnectionLoss({
      writeTerminationMessage: (m) => {
        written.push(m);
        return true;
      },
      exit: (code) => exits.push(code),
      logger,
    })(REASON);
    assert.deepEqual(written, [REASON]);
    assert.deepEqual(exits, [1]);
    assert.ok(logger.lines.some((l) => l.startsWith("E") && l.includes(REASON)));
  });

  it("exits 1 even when the termination log is not writable, and says so", () => {
    const logger = memoryLogger(new FakeClock());
    const exits: number[] = [];
    exitOnConnectionLoss({
      writeTerminationMessage: () => false,
      exit: (code) => exits.push(code),
      logger,
    })(REASON);
    assert.deepEqual(exits, [1]);
    assert.ok(logger.lines.some((l) => l.includes("Could not write the termination message")));
  });
});
