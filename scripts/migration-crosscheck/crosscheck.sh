#!/usr/bin/env bash
# Checks src/migration/ against upstream's own csi-translation-lib (vendored in the external-provisioner
# source tarball under ../shared/peers): builds a small Go program on that library offline
# (-mod=vendor), feeds the same generated cases (StorageClasses, CSI PVs, in-tree PVs of all seven
# plugins) to it and to our functions, and reports every difference. Not part of `npm test`
# (it needs Go and ~2 minutes to build); run it after changing a translation.
#
#   bash scripts/migration-crosscheck/crosscheck.sh      # → "3058 cases, 0 differ"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=${E2E_PEERS_DIR:-$root/../shared/peers}
tarball=$(ls "$peers"/external-provisioner-*.tar.gz | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar xzf "$tarball" -C "$work"
src=$(ls -d "$work"/*/ | head -1)
mkdir -p "$src/cmd/migration-crosscheck"
cp "$here/translate.go.txt" "$src/cmd/migration-crosscheck/main.go"
(cd "$src" && GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0 go build -o "$work/translate" ./cmd/migration-crosscheck)
"$root/node_modules/.bin/bun" "$here/compare.ts" "$work/translate"
