#!/usr/bin/env bash
# Runs csi-sanity, the CSI community's conformance suite, against the hostdir sample driver
# (examples/hostdir-driver): once as started plainly and once with --topology. Exits non-zero
# when a run fails or the driver does not stop cleanly on SIGTERM.
#
# csi-sanity is built from the Go module proxy (github.com/kubernetes-csi/csi-test/v5, newest v5
# release unless CSI_SANITY_VERSION says otherwise) and cached as
#   ${CSI_SANITY_CACHE:-$HOME/.cache/csi-provisioner-ts/csi-sanity}/<version>/csi-sanity
# Offline, the newest cached version is used.
#
# No spec is skipped with --ginkgo.skip: the driver serves the Identity, Controller and Node
# suites, and csi-sanity itself skips the specs of capabilities the driver does not advertise
# (ControllerPublish/Unpublish, expansion, modification, GetSnapshot, volume health, stage and
# unstage, volume stats, group snapshots).
#
# Usage: scripts/csi-sanity.sh [csi-sanity flags...]   e.g. --ginkgo.focus=CreateVolume
# Environment:
#   CSI_SANITY_VERSION   csi-test v5 version to use (default: the newest v5 release)
#   CSI_SANITY_CACHE     cache directory (default: $HOME/.cache/csi-provisioner-ts/csi-sanity)
#   CSI_SANITY_RUNTIME   runtime that runs the driver: bun (default), deno or node
#   CSI_SANITY_MODES     which runs: "plain topology" (default), or one of them
#   GO                   Go toolchain (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BIN="$ROOT/node_modules/.bin"
MODULE="github.com/kubernetes-csi/csi-test/v5"
CACHE="${CSI_SANITY_CACHE:-$HOME/.cache/csi-provisioner-ts/csi-sanity}"
RUNTIME="${CSI_SANITY_RUNTIME:-bun}"
MODES="${CSI_SANITY_MODES:-plain topology}"

log() { echo "csi-sanity.sh: $*" >&2; }

find_go() {
  if [ -n "${GO:-}" ]; then echo "$GO"; return; fi
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  if [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go; return; fi
  return 1
}

newest_cached() {
  [ -d "$CACHE" ] || return 1
  local v
  v=$(find "$CACHE" -mindepth 2 -maxdepth 2 -name csi-sanity -type f -printf '%h\n' 2>/dev/null |
    xargs -r -n1 basename | sort -V | tail -n 1)
  [ -n "$v" ] && echo "$v"
}

# Prints the path of the csi-sanity binary, building it when it is not cached.
csi_sanity_binary() {
  local go version dir tmp
  go="$(find_go)" || { log "no Go toolchain found (set GO)"; return 1; }
  version="${CSI_SANITY_VERSION:-}"
  if [ -z "$version" ]; then
    version=$("$go" list -m -f '{{.Version}}' "$MODULE@latest" 2>/dev/null) || version=""
    if [ -z "$version" ]; then
      version=$(newest_cached) || { log "cannot resolve $MODULE@latest and nothing is cached"; return 1; }
      log "offline: using cached csi-sanity $version"
    fi
  fi
  dir="$CACHE/$version"
  if [ ! -x "$dir/csi-sanity" ]; then
    log "building csi-sanity $version from the Go module proxy"
    mkdir -p "$CACHE"
    tmp="$(mktemp -d "$CACHE/.build-XXXXXX")"
    if ! GOBIN="$tmp" "$go" install "$MODULE/cmd/csi-sanity@$version" >&2; then
      rm -rf "$tmp"
      log "building csi-sanity $version failed"
      return 1
    fi
    mkdir -p "$dir"
    mv "$tmp/csi-sanity" "$dir/csi-sanity"
    rm -rf "$tmp"
  fi
  log "csi-sanity $version: $dir/csi-sanity"
  echo "$dir/csi-sanity"
}

driver_command() {
  local main="$ROOT/examples/hostdir-driver/main.ts"
  case "$RUNTIME" in
    bun) echo "$BIN/bun $main" ;;
    node) echo "$BIN/node $main" ;;
    deno) echo "$BIN/deno run -A $main" ;;
    *) log "unknown CSI_SANITY_RUNTIME=$RUNTIME (want bun, deno or node)"; return 1 ;;
  esac
}

SANITY="$(csi_sanity_binary)"
DRIVER="$(driver_command)"
WORK="$(mktemp -d)"
DRIVER_PID=""
cleanup() {
  if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
    kill -TERM "$DRIVER_PID" 2>/dev/null || true
    wait "$DRIVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

status=0
for mode in $MODES; do
  run="$WORK/$mode"
  mkdir -p "$run"
  socket="$run/csi.sock"
  flags=(--endpoint="unix://$socket" --data-dir="$run/data" --capacity=1Ti --node-id=sanity-node)
  [ "$mode" = topology ] && flags+=(--topology)
  log "=== $mode: driver on $RUNTIME (${flags[*]})"
  # shellcheck disable=SC2086 # DRIVER is a command line
  $DRIVER "${flags[@]}" 2>"$run/driver.log" &
  DRIVER_PID=$!

  # Wait (up to 30 s) for the socket; a driver that exits early fails the run.
  for _ in $(seq 1 300); do
    [ -S "$socket" ] && break
    kill -0 "$DRIVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -S "$socket" ]; then
    log "$mode: the driver did not start; its log:"
    cat "$run/driver.log" >&2
    exit 1
  fi

  rc=0
  "$SANITY" \
    --csi.endpoint="$socket" \
    --csi.mountdir="$run/mount" \
    --csi.stagingdir="$run/staging" \
    --ginkgo.no-color \
    "$@" || rc=$?
  [ $rc -eq 0 ] || { status=$rc; log "$mode: csi-sanity failed (exit $rc)"; }

  kill -TERM "$DRIVER_PID"
  drc=0
  wait "$DRIVER_PID" || drc=$?
  DRIVER_PID=""
  if [ $drc -ne 0 ] || [ -e "$socket" ]; then
    log "$mode: the driver did not stop cleanly (exit $drc, socket left: $([ -e "$socket" ] && echo yes || echo no)); its log:"
    tail -n 40 "$run/driver.log" >&2
    status=1
  fi
  if [ $rc -ne 0 ]; then
    log "$mode: last lines of the driver's log:"
    tail -n 40 "$run/driver.log" >&2
  fi
done
exit $status
