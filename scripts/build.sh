#!/usr/bin/env bash
# Builds the release artifacts into dist/, each reporting the version and git commit it was
# built from (`--version`).
#
#   scripts/build.sh [target...]      build the targets (default: what this machine can build)
#   scripts/build.sh --list           print "target<TAB>artifact path" for every target, build nothing
#   scripts/build.sh --stamp          print the VERSION=... and GIT_COMMIT=... a build would embed
#
# Targets:
#   linux-x64         dist/csi-provisioner-linux-x64        bun build --compile (glibc, x86-64)
#   linux-arm64       dist/csi-provisioner-linux-arm64      bun build --compile (glibc, aarch64)
#   node              dist/csi-provisioner.mjs              one ESM file for Node >= 22
#   deno-linux-x64    dist/csi-provisioner-deno-linux-x64   deno compile of that bundle
#   deno-linux-arm64  dist/csi-provisioner-deno-linux-arm64 deno compile of that bundle
#   deno              the deno-linux-* target of this machine's architecture
#
# Default targets: the executable for this machine's architecture, the one for the other
# architecture (skipped with a warning when Bun cannot get that target's runtime), the Node
# bundle, and the Deno executable only when DENORT_BIN is set. A target named on the command
# line that cannot be built is an error (exit 1).
#
# Environment:
#   VERSION           the version to embed (default: the exact tag vX.Y.Z on HEAD without its "v",
#                     else the VERSION already in src/version.ts)
#   GIT_COMMIT        the commit to embed (default: `git rev-parse --short HEAD`, plus "-dirty"
#                     when `git status` shows changes; "unknown" outside a git work tree)
#   BYTECODE          "0" builds the executables without --bytecode (default "1": bytecode cuts
#                     their start-up by more than half; see bench/README.md)
#   JIT_POLICY        the JIT policy the executables start with (`--compile-jit-policy`, default
#                     "32"): JavaScriptCore's tier-up thresholds times 32 until the controllers run,
#                     when the sidecar sets the normal policy (src/runtime/jit.ts); "1" turns it off
#   BUN_X64_RUNTIME   a Bun executable for linux-x64, used as the runtime of that target instead of
#   BUN_ARM64_RUNTIME the one Bun downloads for a cross-compile (`--compile-executable-path`); it
#                     must be the same Bun version as the one building
#   DENORT_BIN        Deno's own variable: the `denort` runtime `deno compile` embeds instead of
#                     downloading it (it must match the deno version and the target)
#   BUN, DENO, NODE   the tools (default: node_modules/.bin/*, else the PATH)
#   DIST_DIR          where to write the artifacts (default: dist/ of the repository); --list
#                     always names the default place
#
# src/version.ts is never edited: the build copies the tree to a temporary directory, rewrites
# the two constant lines there and builds from the copy.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIST="${DIST_DIR:-$ROOT/dist}"
ENTRY="src/main.ts"
NAME="csi-provisioner"

# The single place that names the artifacts (the Containerfile's test reads it through --list).
artifact_file() { # $1 = canonical target
  case "$1" in
    linux-x64 | linux-arm64) echo "$NAME-$1" ;;
    node) echo "$NAME.mjs" ;;
    deno-linux-x64 | deno-linux-arm64) echo "$NAME-$1" ;;
    *) return 1 ;;
  esac
}
artifact_path() { echo "dist/$(artifact_file "$1")"; } # as --list prints it
artifact_out() { echo "$DIST/$(artifact_file "$1")"; } # where this build writes it
ALL_TARGETS=(linux-x64 linux-arm64 node deno-linux-x64 deno-linux-arm64)

say() { printf '%s\n' "$*" >&2; }
die() { say "build: $*"; exit 1; }

host_arch() {
  case "$(uname -m)" in
    x86_64 | amd64) echo x64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) echo "unsupported" ;;
  esac
}
HOST_ARCH="$(host_arch)"

canonical() { # target name or alias -> canonical target
  case "$1" in
    deno) echo "deno-linux-$HOST_ARCH" ;;
    linux-amd64) echo linux-x64 ;;
    linux-aarch64) echo linux-arm64 ;;
    *) artifact_file "$1" >/dev/null && echo "$1" || return 1 ;;
  esac
}

if [ "${1:-}" = "--list" ]; then
  for t in "${ALL_TARGETS[@]}"; do printf '%s\t%s\n' "$t" "$(artifact_path "$t")"; done
  exit 0
fi
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 0
fi

tool() { # $1 = env override, $2 = name
  if [ -n "$1" ]; then echo "$1"
  elif [ -x "$ROOT/node_modules/.bin/$2" ]; then echo "$ROOT/node_modules/.bin/$2"
  elif command -v "$2" >/dev/null 2>&1; then command -v "$2"
  else echo ""
  fi
}
BUN="$(tool "${BUN:-}" bun)"
DENO="$(tool "${DENO:-}" deno)"
NODE="$(tool "${NODE:-}" node)"
[ -n "$BUN" ] || die "bun not found: run \`npm ci\` (it installs bun into node_modules/.bin) or put bun on the PATH"

# --- what to build ---------------------------------------------------------------------------
explicit=1
targets=()
if [ "${1:-}" = "--stamp" ]; then
  :
elif [ $# -eq 0 ]; then
  explicit=0
  other=$([ "$HOST_ARCH" = arm64 ] && echo x64 || echo arm64)
  targets=("linux-$HOST_ARCH" "linux-$other" node)
  [ -n "${DENORT_BIN:-}" ] && targets+=("deno-linux-$HOST_ARCH")
else
  for t in "$@"; do
    c="$(canonical "$t")" || die "unknown target \"$t\"; targets: ${ALL_TARGETS[*]} deno"
    targets+=("$c")
  done
fi
# Deno compiles the Node bundle, so build that first.
needs_bundle=0
for t in "${targets[@]}"; do case "$t" in deno-*) needs_bundle=1 ;; esac; done
if [ $needs_bundle = 1 ] && [[ ! " ${targets[*]} " =~ " node " ]]; then targets=(node "${targets[@]}"); fi

# --- version and commit ----------------------------------------------------------------------
current_const() { # $1 = constant name -> its value in src/version.ts
  sed -n -E "s/^export const $1: string = \"([^\"]*)\";$/\1/p" "$ROOT/src/version.ts"
}
if [ -z "${VERSION:-}" ]; then
  tag="$(git -C "$ROOT" describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null || true)"
  VERSION="${tag#v}"
  [ -n "$VERSION" ] || VERSION="$(current_const VERSION)"
fi
if [ -z "${GIT_COMMIT:-}" ]; then
  if GIT_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"; then
    [ -z "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] || GIT_COMMIT="$GIT_COMMIT-dirty"
  else
    GIT_COMMIT=unknown
  fi
fi
safe='^[0-9A-Za-z][0-9A-Za-z.+_-]*$'
[[ "$VERSION" =~ $safe ]] || die "VERSION \"$VERSION\" must match $safe"
[[ "$GIT_COMMIT" =~ $safe ]] || die "GIT_COMMIT \"$GIT_COMMIT\" must match $safe"
if [ "${1:-}" = "--stamp" ]; then
  printf 'VERSION=%s\nGIT_COMMIT=%s\n' "$VERSION" "$GIT_COMMIT"
  exit 0
fi

# --- a temporary tree with the version stamped in ---------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/csi-provisioner-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# The whole tree but the dependencies, git and the outputs: the entry point may import from
# outside src/.
tar -C "$ROOT" --exclude=./node_modules --exclude=./.git --exclude=./dist --exclude=./tmp \
  --exclude=./.cache -cf - . |
  tar -C "$work" -xf -
ln -s "$ROOT/node_modules" "$work/node_modules"
stamp() { # $1 = constant name, $2 = value
  local file="$work/src/version.ts"
  sed -i -E "s/^(export const $1: string = )\"[^\"]*\";$/\1\"$2\";/" "$file"
  grep -qxF "export const $1: string = \"$2\";" "$file" ||
    die "src/version.ts has no line 'export const $1: string = \"...\";' to stamp"
}
stamp VERSION "$VERSION"
stamp GIT_COMMIT "$GIT_COMMIT"
mkdir -p "$DIST"
DIST="$(cd "$DIST" && pwd)" # the builders run in $work
say "build: version $VERSION, commit $GIT_COMMIT, into $DIST"

# --- builders ----------------------------------------------------------------------------------
built=()
skipped=()
failed=()

# Runs the artifact's --version (when this machine can run it) and checks what it embedded.
verify() { # $1 = label, $2... = command
  local label="$1" out
  shift
  out="$("$@" --version 2>&1)" || { say "build: $label --version failed: $out"; return 1; }
  case "$out" in
    # versionLine() shows at most 12 characters of the commit.
    *"v${VERSION#v} (commit ${GIT_COMMIT:0:12}"*) say "  $out" ;;
    *) say "build: $label --version printed \"$out\", expected v${VERSION#v} and commit $GIT_COMMIT"; return 1 ;;
  esac
}

build_exe() { # $1 = linux-x64 | linux-arm64
  local target="$1" arch="${1#linux-}" out runtime_var runtime log
  out="$(artifact_out "$target")"
  runtime_var="BUN_$(echo "$arch" | tr a-z A-Z)_RUNTIME"
  runtime="${!runtime_var:-}"
  # --splitting: each dynamic import() becomes its own chunk inside the executable, loaded only
  # when reached (client-node for a kubeconfig plugin, the dev kit, capacity, ...): 5 MiB less
  # idle RSS than one chunk (bench/README.md, "Start-up and idle memory").
  local args=(build --compile "--target=bun-$target" --minify --keep-names --splitting
    --no-compile-autoload-dotenv --no-compile-autoload-bunfig)
  # Bytecode defaults to CommonJS, where a top-level await (examples/hostdir-driver) is an error.
  [ "${BYTECODE:-1}" = 0 ] || args+=(--bytecode --format=esm)
  # Start-up code (module evaluation, the CSI descriptors, flags, the handshake, the initial
  # lists) runs once: compiling it costs time and the JIT's memory without paying back. 32 idled
  # 3-4 MiB lower than 1, and lower than 8, 16, 64, 128 or 1000, with a faster first Probe
  # (bench/README.md, "JIT policy"). The normal policy comes back once the controllers run.
  args+=("--compile-jit-policy=${JIT_POLICY:-32}")
  if [ -n "$runtime" ]; then
    [ -x "$runtime" ] || { say "build: $runtime_var=$runtime is not an executable file"; return 1; }
    args+=("--compile-executable-path=$runtime")
  fi
  log="$work/$target.log"
  rm -f "$out"
  if ! (cd "$work" && "$BUN" "${args[@]}" "$ENTRY" --outfile "$out") >"$log" 2>&1; then
    cat "$log" >&2
    if [ "$arch" != "$HOST_ARCH" ] && [ -z "$runtime" ]; then
      local pkg="@oven/bun-linux-$([ "$arch" = arm64 ] && echo aarch64 || echo x64)"
      say "build: $target needs the Bun $("$BUN" --version) runtime for $target, which bun downloads"
      say "  (npm package $pkg, cached in \$BUN_INSTALL_CACHE_DIR or ~/.bun/install/cache) and could"
      say "  not get. Provide it: set $runtime_var to bin/bun of that package at the same version,"
      say "  e.g. $runtime_var=/opt/$pkg/bin/bun scripts/build.sh $target"
    fi
    return 1
  fi
  chmod 0755 "$out"
  run_foreign "$target" "$arch" "$out"
}

# Verifies an executable for this machine directly, and one for the other architecture through
# qemu-user when it is installed with that architecture's glibc (Debian: qemu-user and
# libc6-arm64-cross or libc6-amd64-cross).
run_foreign() { # $1 = label, $2 = x64 | arm64, $3 = executable
  local qemu sysroot
  if [ "$2" = "$HOST_ARCH" ]; then verify "$1" "$3"; return; fi
  qemu=$([ "$2" = arm64 ] && echo qemu-aarch64 || echo qemu-x86_64)
  sysroot=$([ "$2" = arm64 ] && echo /usr/aarch64-linux-gnu || echo /usr/x86_64-linux-gnu)
  if command -v "$qemu" >/dev/null 2>&1 && [ -d "$sysroot" ]; then
    verify "$1 (under $qemu)" "$qemu" -L "$sysroot" "$3"
  else
    say "  (not run: built for $2 on a $HOST_ARCH machine without $qemu and $sysroot)"
  fi
}

build_node() {
  local out log="$work/node.log"
  out="$(artifact_out node)"
  rm -f "$out"
  if ! (cd "$work" && "$BUN" build --target=node --format=esm --minify --keep-names "$ENTRY" \
    --outfile "$out") >"$log" 2>&1; then
    cat "$log" >&2
    return 1
  fi
  # The entry point's "#!/usr/bin/env -S bun" would run the bundle with Bun: point it at Node.
  if head -n 1 "$out" | grep -q '^#!'; then sed -i '1s|^#!.*$|#!/usr/bin/env node|' "$out"
  else sed -i '1i #!/usr/bin/env node' "$out"
  fi
  chmod 0755 "$out"
  local major=""
  [ -n "$NODE" ] && major="$("$NODE" -p 'process.versions.node.split(".")[0]' 2>/dev/null || true)"
  if [ -n "$major" ] && [ "$major" -ge 22 ]; then verify node "$NODE" "$out" || return 1
  else say "  (not run: no Node >= 22 found; set NODE or run npm ci)"
  fi
}

build_deno() { # $1 = deno-linux-x64 | deno-linux-arm64
  local target="$1" arch="${1#deno-linux-}" out log triple
  out="$(artifact_out "$target")"
  triple=$([ "$arch" = arm64 ] && echo aarch64-unknown-linux-gnu || echo x86_64-unknown-linux-gnu)
  [ -n "$DENO" ] || { say "build: $target: deno not found (npm ci installs it)"; return 1; }
  if [ -z "${DENORT_BIN:-}" ]; then
    say "build: $target needs Deno's denort runtime (deno $("$DENO" -v | cut -d' ' -f2), $triple)."
    say "  deno compile would download it from Deno's servers, which this project's machines"
    say "  cannot reach. Set DENORT_BIN to a local denort of the same version (the binary in"
    say "  denort-$triple.zip of that Deno release), e.g."
    say "  DENORT_BIN=/opt/denort scripts/build.sh $target"
    return 1
  fi
  [ -f "$DENORT_BIN" ] || { say "build: DENORT_BIN=$DENORT_BIN does not exist"; return 1; }
  # Compiled from the Node bundle: compiling src/main.ts would embed all of node_modules/
  # (with nodeModulesDir "manual", ~650 MB including the toolchains), the bundle is one file.
  log="$work/$target.log"
  rm -f "$out"
  if ! DENORT_BIN="$DENORT_BIN" "$DENO" compile -A --no-check --no-config --target "$triple" \
    --output "$out" "$(artifact_out node)" >"$log" 2>&1; then
    cat "$log" >&2
    return 1
  fi
  run_foreign "$target" "$arch" "$out"
}

for t in "${targets[@]}"; do
  say "build: $t -> $(artifact_out "$t")"
  case "$t" in
    linux-*) fn=(build_exe "$t") ;;
    node) fn=(build_node) ;;
    deno-*) fn=(build_deno "$t") ;;
  esac
  if "${fn[@]}"; then
    built+=("$t")
  elif [ $explicit = 0 ] && [ "$t" != "linux-$HOST_ARCH" ] && [ "$t" != node ]; then
    say "build: skipped $t (not requested explicitly; see the message above)"
    skipped+=("$t")
  else
    failed+=("$t")
    if [ "$t" = node ] && [ $needs_bundle = 1 ]; then die "the Node bundle failed, so deno compile cannot run"; fi
  fi
done

say ""
for t in "${built[@]}"; do
  f="$(artifact_out "$t")"
  say "$(printf '  %-17s %6s MB  %s' "$t" "$(awk -v b="$(stat -c %s "$f")" 'BEGIN { printf "%.1f", b / 1048576 }')" "$f")"
done
[ ${#skipped[@]} -eq 0 ] || say "  skipped: ${skipped[*]}"
[ ${#failed[@]} -eq 0 ] || die "failed: ${failed[*]}"
