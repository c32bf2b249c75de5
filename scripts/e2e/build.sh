#!/usr/bin/env bash
# Builds the end-to-end control plane from the Go module proxy, at the versions
# pinned in scripts/e2e/gomod/go.mod (see scripts/e2e/README.md):
#
#   etcd, kube-apiserver, kube-controller-manager, kubectl, csi-mock-driver
#
# and caches them under ${E2E_CACHE_DIR:-$HOME/.cache/csi-provisioner-ts/e2e}/<key>/bin,
# where <key> is derived from the pinned versions, the Go version and a hash of
# the module files. A warm run only checks that the binaries are there.
#
# Usage: BIN=$(bash scripts/e2e/build.sh | tail -1)
#
# Only the bin dir path goes to stdout (last line); progress goes to stderr.
# Environment:
#   E2E_CACHE_DIR   cache root (default $HOME/.cache/csi-provisioner-ts/e2e)
#   E2E_REBUILD=1   rebuild even when the cache is warm
#   GO              the go command (default: go on PATH, else /usr/local/go/bin/go)
# The Go module cache and build cache stay at their defaults (go env GOMODCACHE
# GOCACHE), so that warm CI runs reuse them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gomod_dir="$here/gomod"

log() { printf '[e2e-build] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then
    GO=$(command -v go)
  elif [[ -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
  else
    die "no go command found (install Go >= 1.26 or set GO=/path/to/go)"
  fi
fi

# Pinned versions, read from go.mod (the single source of truth).
mod_version() {
  awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$gomod_dir/go.mod"
}
k8s_version=$(mod_version k8s.io/kubernetes)
etcd_version=$(mod_version go.etcd.io/etcd/server/v3)
[[ -n "$k8s_version" && -n "$etcd_version" ]] || die "cannot read pinned versions from $gomod_dir/go.mod"
k8s_minor=${k8s_version#v1.}
k8s_minor=${k8s_minor%%.*}

version_pkgs=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
k8s_ldflags="-s -w"
for p in "${version_pkgs[@]}"; do
  k8s_ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor -X $p.gitTreeState=clean"
done
# Everything that shapes the binaries; change RECIPE_REVISION when the build changes otherwise.
RECIPE_REVISION=1
recipe="rev=$RECIPE_REVISION CGO_ENABLED=0 -trimpath -buildvcs=false ldflags=[$k8s_ldflags]"

go_version=$("$GO" env GOVERSION)
goarch=$("$GO" env GOOS)-$("$GO" env GOARCH)
inputs_hash=$( (cat "$gomod_dir/go.mod" "$gomod_dir/go.sum" "$gomod_dir"/cmd/*/*.go && echo "$recipe") | sha256sum | cut -c1-12)
key="k8s-${k8s_version}_etcd-${etcd_version}_${go_version}_${goarch}_${inputs_hash}"
cache_root=${E2E_CACHE_DIR:-$HOME/.cache/csi-provisioner-ts/e2e}
out_dir="$cache_root/$key"
bin_dir="$out_dir/bin"

binaries=(etcd kube-apiserver kube-controller-manager kubectl csi-mock-driver)
package_of() {
  case "$1" in
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    kube-apiserver | kube-controller-manager | kubectl) echo "k8s.io/kubernetes/cmd/$1" ;;
    csi-mock-driver) echo ./cmd/csi-mock-driver ;;
  esac
}

warm() {
  local b
  for b in "${binaries[@]}"; do
    [[ -x "$bin_dir/$b" ]] || return 1
  done
}

# --- Peers: hostpathplugin, snapshot-controller, csi-snapshotter and upstream csi-provisioner, built
# offline (-mod=vendor) from the source tarballs in ../shared/peers, cached under their own key (the
# tarballs' hashes), then linked into the control plane's bin dir, so that tests find every binary
# in one place.
peers_src=${E2E_PEERS_DIR:-$(cd "$here/../.." && pwd)/../shared/peers}
peer_binaries=(hostpathplugin snapshot-controller csi-snapshotter csi-provisioner-upstream)
peer_tarball() {
  case "$1" in
    hostpathplugin) echo csi-driver-host-path-*.tar.gz ;;
    snapshot-controller | csi-snapshotter) echo external-snapshotter-*.tar.gz ;;
    csi-provisioner-upstream) echo external-provisioner-*.tar.gz ;;
  esac
}
peer_build() { # name -> "dir pkg version"
  case "$1" in
    hostpathplugin) echo "csi-driver-host-path ./cmd/hostpathplugin v1.18.0" ;;
    snapshot-controller) echo "external-snapshotter ./cmd/snapshot-controller v8.6.0" ;;
    csi-snapshotter) echo "external-snapshotter ./cmd/csi-snapshotter v8.6.0" ;;
    csi-provisioner-upstream) echo "external-provisioner ./cmd/csi-provisioner v6.3.0" ;;
  esac
}

build_peers() {
  if [[ "${E2E_PEERS:-1}" == 0 ]]; then return 0; fi
  [[ -d "$peers_src" ]] || die "no peer sources at $peers_src (set E2E_PEERS_DIR, or E2E_PEERS=0 to skip them)"
  local peers_hash peers_dir peers_bin b t missing=0
  # -s -w: the upstream binary is measured stripped, as it ships (release images strip it too).
  PEERS_RECIPE_REVISION=1
  peers_hash=$( (cd "$peers_src" && sha256sum ./*.tar.gz && echo "rev=$PEERS_RECIPE_REVISION") | sha256sum | cut -c1-12)
  peers_dir="$cache_root/peers_${go_version}_${goarch}_${peers_hash}"
  peers_bin="$peers_dir/bin"
  for b in "${peer_binaries[@]}"; do [[ -x "$peers_bin/$b" ]] || missing=1; done
  if [[ $missing == 1 || "${E2E_REBUILD:-}" == 1 ]]; then
    mkdir -p "$cache_root"
    exec 8>"$cache_root/.peers.lock"
    command -v flock >/dev/null 2>&1 && flock 8
    missing=0
    for b in "${peer_binaries[@]}"; do [[ -x "$peers_bin/$b" ]] || missing=1; done
    if [[ $missing == 1 || "${E2E_REBUILD:-}" == 1 ]]; then
      local stage src_dir start
      stage=$(mktemp -d "$cache_root/.build-peers.XXXXXX")
      mkdir -p "$stage/bin" "$stage/src"
      log "building peers from $peers_src into $peers_bin"
      for t in "$peers_src"/*.tar.gz; do
        tar xzf "$t" -C "$stage/src" || { rm -rf "$stage"; die "cannot unpack $t"; }
      done
      for b in "${peer_binaries[@]}"; do
        read -r src_dir pkg ver <<<"$(peer_build "$b")"
        start=$SECONDS
        log "building $b ($src_dir $pkg $ver) ..."
        (cd "$stage/src/$src_dir" && GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0 "$GO" build -buildvcs=false -trimpath \
          -ldflags="-s -w -X main.version=$ver" -o "$stage/bin/$b" "$pkg") >&2 || { rm -rf "$stage"; die "building $b failed"; }
        log "built $b in $((SECONDS - start))s ($(du -h "$stage/bin/$b" | cut -f1))"
      done
      # The snapshot CRDs and upstream's RBAC travel with the binaries (tests read them).
      mkdir -p "$stage/crd" "$stage/upstream"
      cp "$stage/src/external-snapshotter/client/config/crd/"*.yaml "$stage/crd/"
      cp "$stage/src/external-provisioner/deploy/kubernetes/rbac.yaml" "$stage/upstream/rbac.yaml"
      (cd "$peers_src" && sha256sum ./*.tar.gz) >"$stage/SOURCES"
      rm -rf "$stage/src" "$peers_dir"
      mv "$stage" "$peers_dir"
    fi
    exec 8>&-
  fi
  for b in "${peer_binaries[@]}"; do ln -sfn "$peers_bin/$b" "$bin_dir/$b"; done
  ln -sfn "$peers_dir/crd" "$bin_dir/snapshot-crd"
  ln -sfn "$peers_dir/upstream" "$bin_dir/upstream"
}

if [[ "${E2E_REBUILD:-}" != 1 ]] && warm; then
  log "cache warm: $bin_dir (kubernetes $k8s_version, etcd $etcd_version)"
  build_peers
  echo "$bin_dir"
  exit 0
fi

mkdir -p "$cache_root"
# One build at a time per cache root; a second caller waits, then finds it warm.
exec 9>"$cache_root/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
  if [[ "${E2E_REBUILD:-}" != 1 ]] && warm; then
    log "cache warm: $bin_dir (built by a concurrent run)"
    exec 9>&-
    build_peers
    echo "$bin_dir"
    exit 0
  fi
fi

log "building kubernetes $k8s_version, etcd $etcd_version with $go_version into $bin_dir"
log "go module cache: $("$GO" env GOMODCACHE), build cache: $("$GO" env GOCACHE)"

# Build into a fresh directory and move it into place at the end, so that an
# interrupted build never leaves a half-filled cache entry behind.
staging_dir=$(mktemp -d "$cache_root/.build-$key.XXXXXX")
trap 'rm -rf "$staging_dir"' EXIT
mkdir -p "$staging_dir/bin"

total_start=$SECONDS
for b in "${binaries[@]}"; do
  pkg=$(package_of "$b")
  ldflags="-s -w"
  [[ "$pkg" == k8s.io/kubernetes/* ]] && ldflags=$k8s_ldflags
  start=$SECONDS
  log "building $b ($pkg) ..."
  # -mod=readonly: go.mod/go.sum are committed; never rewrite them here.
  (cd "$gomod_dir" && CGO_ENABLED=0 "$GO" build -mod=readonly -buildvcs=false -trimpath -ldflags="$ldflags" \
    -o "$staging_dir/bin/$b" "$pkg") >&2 || die "building $b failed"
  log "built $b in $((SECONDS - start))s ($(du -h "$staging_dir/bin/$b" | cut -f1))"
done

{
  echo "kubernetes $k8s_version"
  echo "etcd $etcd_version"
  echo "go $go_version $goarch"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((SECONDS - total_start))s"
} >"$staging_dir/VERSIONS"

rm -rf "$out_dir"
mv "$staging_dir" "$out_dir"
trap - EXIT
log "all built in $((SECONDS - total_start))s: $bin_dir"
exec 9>&-
build_peers
echo "$bin_dir"
