#!/usr/bin/env bash
# Builds the image from the Containerfile without a registry or a daemon, and unpacks it.
#
#   scripts/image/build.sh OUT_DIR
#
# 1. Assembles the Containerfile's two starting images offline: BUILDER (bash, coreutils and the
#    Bun of node_modules, which is the Containerfile's BUN_VERSION) and BASE (what distroless
#    base-nossl holds: glibc, base-files, netbase, tzdata, /etc/passwd with root, nonroot 65532
#    and nobody), each from Debian packages fetched with `apt-get download`.
# 2. Builds the Containerfile twice with `buildah bud` (vfs storage, chroot isolation, layers
#    cached, so the second build reuses the build stage): the default image and the non-root
#    variant (`--build-arg IMAGE_USER=65532:65532`).
# 3. Pushes each to an OCI layout and unpacks it with umoci into OUT_DIR/<variant>/bundle
#    (rootfs/ and the runtime config.json with the image's user and entrypoint).
#
# Needs root, buildah and umoci (Debian: apt-get install buildah umoci) and apt-get. Buildah's
# storage lives in OUT_DIR/storage and is removed at the end; the .deb files are cached in
# ${IMAGE_DEB_CACHE:-$HOME/.cache/csi-provisioner-ts/image/debs}. Prints OUT_DIR/<variant>/bundle
# for each variant on stdout ("root <dir>", "nonroot <dir>"); progress and timings go to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:?usage: scripts/image/build.sh OUT_DIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DEBS="${IMAGE_DEB_CACHE:-$HOME/.cache/csi-provisioner-ts/image/debs}"
say() { printf '%s\n' "$*" >&2; }
die() { say "image: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (buildah's chroot isolation and umoci unpack)"
for tool in buildah umoci apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install buildah umoci)"
done
started=$(date +%s)
lap() { say "image: $1 ($(($(date +%s) - started)) s)"; }

export BUILDAH_ISOLATION=chroot
STORE=(--root "$OUT/storage/root" --runroot "$OUT/storage/run" --storage-driver vfs)
bh() { buildah "${STORE[@]}" "$@"; }
work="$OUT/work"
cleanup() {
  bh rm --all >/dev/null 2>&1 || true
  rm -rf "$OUT/storage" "$work"
}
trap cleanup EXIT
rm -rf "$work" "$OUT/storage"
mkdir -p "$work" "$DEBS"

# --- the two starting images, from Debian packages ------------------------------------------
BASE_PKGS=(libc6 base-files netbase tzdata)
BUILDER_PKGS=(libc6 base-files libacl1 libattr1 libselinux1 libpcre2-8-0 libtinfo6 libgmp10
  bash dash coreutils sed grep tar mawk)
declare -A DEB # package -> its .deb in $DEBS
fetch() { # finds (or downloads) the candidate .deb of each package
  local policy p v missing=()
  policy="$(apt-cache policy "$@")" # one call: each call reads the whole package cache
  for p in "$@"; do
    v="$(awk -v p="$p:" '$1 == p { on = 1; next } /^[^ ]/ { on = 0 } on && $1 == "Candidate:" { print $2; exit }' <<<"$policy")"
    if [ -z "$v" ] || [ "$v" = "(none)" ]; then
      # No package lists (apt-get update never ran): the newest cached .deb will do.
      DEB[$p]="$(compgen -G "$DEBS/${p}_*.deb" | sort -V | tail -1 || true)"
      [ -n "${DEB[$p]}" ] || die "apt knows no candidate for $p and none is cached: run apt-get update"
      continue
    fi
    DEB[$p]="$(compgen -G "$DEBS/${p}_${v//:/%3a}_*.deb" | head -1 || true)"
    [ -n "${DEB[$p]}" ] || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    (cd "$DEBS" && apt-get download -qq "${missing[@]}" 2>/dev/null) ||
      die "apt-get download ${missing[*]} failed (apt-get update?)"
    for p in "${missing[@]}"; do
      v="$(awk -v p="$p:" '$1 == p { on = 1; next } /^[^ ]/ { on = 0 } on && $1 == "Candidate:" { print $2; exit }' <<<"$policy")"
      DEB[$p]="$(compgen -G "$DEBS/${p}_${v//:/%3a}_*.deb" | head -1 || true)"
      [ -n "${DEB[$p]}" ] || die "apt-get download $p left no ${p}_${v}_*.deb in $DEBS"
    done
  fi
}
unpack_debs() { # $1 = rootfs, $@ = packages
  local dir="$1" p
  shift
  mkdir -p "$dir"
  for p in "$@"; do dpkg-deb -x "${DEB[$p]}" "$dir"; done
  # Links that maintainer scripts and alternatives would make.
  [ ! -e "$dir/bin/dash" ] || ln -sf dash "$dir/bin/sh"
  [ ! -e "$dir/usr/bin/mawk" ] || ln -sf mawk "$dir/usr/bin/awk"
  mkdir -p "$dir/tmp" "$dir/proc" "$dir/dev" "$dir/root"
  chmod 1777 "$dir/tmp"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$dir/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$dir/etc/group"
  mkdir -p "$dir/home/nonroot" && chown 65532:65532 "$dir/home/nonroot"
  # Documentation is not part of the image.
  rm -rf "$dir/usr/share/doc" "$dir/usr/share/man" "$dir/usr/share/info" "$dir/usr/share/lintian"
}
commit_rootfs() { # $1 = rootfs, $2 = image name, $3... = more `buildah config` options
  local c
  c="$(bh from scratch)"
  bh copy --quiet "$c" "$1" / >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --user 0:0 --os linux --arch amd64 "${@:3}" "$c"
  bh commit --quiet --rm "$c" "$2" >/dev/null
}

[ "$(uname -m)" = x86_64 ] || die "the offline bases are assembled for amd64 only"
BUN="$(readlink -f "$ROOT/node_modules/.bin/bun")"
[ -x "$BUN" ] || die "no node_modules/.bin/bun: run npm ci"
want="$(sed -n 's/^ARG BUN_VERSION=//p' "$ROOT/Containerfile")"
have="$("$BUN" --version)"
[ "$want" = "$have" ] || die "node_modules has bun $have, the Containerfile builds with $want"

fetch $(printf '%s\n' "${BASE_PKGS[@]}" "${BUILDER_PKGS[@]}" | sort -u)
lap "Debian packages ready in $DEBS"
unpack_debs "$work/base" "${BASE_PKGS[@]}"
commit_rootfs "$work/base" localhost/csi-provisioner-base:local
unpack_debs "$work/builder" "${BUILDER_PKGS[@]}"
install -D -m 0755 "$BUN" "$work/builder/usr/local/bin/bun"
# The builder trusts what this machine trusts (`bun install` may pass a TLS-inspecting proxy):
# the system CA bundle, also as NODE_EXTRA_CA_CERTS, which Bun reads.
builder_env=()
ca=/etc/ssl/certs/ca-certificates.crt
if [ -f "$ca" ]; then
  install -D -m 0644 "$ca" "$work/builder$ca"
  builder_env=(--env "NODE_EXTRA_CA_CERTS=$ca")
fi
commit_rootfs "$work/builder" localhost/csi-provisioner-builder:local "${builder_env[@]}"
rm -rf "$work/base" "$work/builder"
lap "assembled localhost/csi-provisioner-base:local and localhost/csi-provisioner-builder:local"

# --- the Containerfile ------------------------------------------------------------------------
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
build_variant() { # $1 = variant, $2... = extra build arguments
  local variant="$1"
  shift
  bh bud --pull=never --platform linux/amd64 -f "$ROOT/Containerfile" \
    --build-arg BUILDER=localhost/csi-provisioner-builder:local \
    --build-arg BASE=localhost/csi-provisioner-base:local \
    --build-arg REVISION="$commit" "$@" \
    -t "localhost/csi-provisioner:$variant" "$ROOT" >"$work/$variant.log" 2>&1 ||
    { cat "$work/$variant.log" >&2; die "buildah bud ($variant) failed"; }
  lap "built localhost/csi-provisioner:$variant"
  rm -rf "$OUT/$variant"
  mkdir -p "$OUT/$variant"
  # Uncompressed where this buildah honours it, else the fastest gzip: the layers are unpacked
  # right away.
  bh push --quiet --disable-compression --compression-level 1 "localhost/csi-provisioner:$variant" "oci:$OUT/$variant/oci:$variant" >/dev/null
  lap "pushed to $OUT/$variant/oci"
  umoci unpack --image "$OUT/$variant/oci:$variant" "$OUT/$variant/bundle" >/dev/null
  say "image: $variant: $(du -sh "$OUT/$variant/oci/blobs" | cut -f1) of OCI blobs; $(bh inspect --format '{{.Docker.Config.User}} {{.Docker.Config.Entrypoint}}' "localhost/csi-provisioner:$variant") (user, entrypoint)"
  lap "unpacked into $OUT/$variant/bundle"
  printf '%s %s\n' "$variant" "$OUT/$variant/bundle"
}
build_variant root
[ "${IMAGE_NONROOT:-0}" = 0 ] || build_variant nonroot --build-arg IMAGE_USER=65532:65532
