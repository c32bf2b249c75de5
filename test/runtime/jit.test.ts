import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { normalJitPolicy } from "../../src/runtime/jit.ts";

interface BunUnsafe {
  setJITPolicy(scale: number): void;
}
const bun = (globalThis as { Bun?: { unsafe: BunUnsafe } }).Bun;

describe("normalJitPolicy()", () => {
  it("sets Bun's normal JIT policy (scale 1), once per call", {
    skip: bun ? false : "Bun only",
  }, () => {
    const unsafe = bun!.unsafe;
    const original = unsafe.setJITPolicy;
    const scales: number[] = [];
    unsafe.setJITPolicy = (scale) => {
      scales.push(scale);
      original.call(unsafe, scale);
    };
    try {
      normalJitPolicy();
    } finally {
      unsafe.setJITPolicy = original;
    }
    assert.deepEqual(scales, [1]);
  });

  it("does nothing where there is no Bun (Node, Deno)", { skip: bun ? "Bun" : false }, () => {
    assert.equal(normalJitPolicy(), undefined);
  });
});
