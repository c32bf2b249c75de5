/**
 * The executable starts with JavaScriptCore's tier-up thresholds scaled up
 * (`--compile-jit-policy` in scripts/build.sh): start-up code — module evaluation, building the
 * CSI descriptors, the flags, the handshake, the initial lists — runs once, and compiling it costs
 * CPU and memory that never pay back (bench/README.md, "JIT policy"). Called once the controllers
 * run: from then on the hot paths (watch events, API writes, gRPC calls) compile as usual.
 * Nothing to do on Node or Deno, nor with `bun src/main.ts`, whose policy is the normal one.
 */
export function normalJitPolicy(): void {
  bunUnsafe()?.setJITPolicy?.(1);
}

function bunUnsafe(): { setJITPolicy?(scale: number): void } | undefined {
  return (globalThis as { Bun?: { unsafe?: { setJITPolicy?(scale: number): void } } }).Bun?.unsafe;
}
