/**
 * The version and git commit this build reports (`--version`, `version`, the User-Agent).
 *
 * A release build replaces the two constant lines below in place, e.g.
 * `sed -i -E 's/^(export const VERSION: string = )".*";$/\1"1.2.3";/' src/version.ts` (and the same
 * for `GIT_COMMIT`) before `bun build --compile`; keep each on one line in exactly this form.
 * A plain constant works the same under Bun, Deno, Node and in a bundle, with no build-time
 * defines to remember.
 */
export const VERSION: string = "0.1.0-dev";
export const GIT_COMMIT: string = "unknown";

/**
 * One line for `--version`: `csi-provisioner v0.1.0-dev (commit abc1234, bun 1.4.5)`.
 * `runtime` names the JavaScript runtime and its version (`runtimeVersion()` from
 * `src/runtime/process.ts`).
 */
export function versionLine(runtime: string): string {
  // A bare hash is shortened to 12 characters; a suffix such as `-dirty` is kept whole.
  const commit = /^[0-9a-f]{13,}$/.test(GIT_COMMIT) ? GIT_COMMIT.slice(0, 12) : GIT_COMMIT;
  return `csi-provisioner v${VERSION.replace(/^v/, "")} (commit ${commit}, ${runtime})`;
}
