#!/usr/bin/env bash
# Regenerates go.mod and go.sum in this folder from the pinned versions below.
# Run it only to change a pinned version; scripts/e2e/build.sh uses the
# committed go.mod/go.sum as they are (read-only).
#
# k8s.io/kubernetes's own go.mod requires ~30 staging modules (k8s.io/api,
# k8s.io/apiserver, ...) at v0.0.0 and replaces them with ./staging/src/...
# paths that exist only in its git tree. A module that imports
# k8s.io/kubernetes/cmd/... must replace each of those with the matching
# published v0.X.Y release; the list is read from that go.mod here.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="/usr/local/go/bin:$PATH"
export GOTOOLCHAIN=local

KUBERNETES_VERSION=v1.36.3 # as pinned by csi-driver-host-path's go.mod
STAGING_VERSION="v0.${KUBERNETES_VERSION#v1.}"
ETCD_VERSION=v3.6.8 # the go.etcd.io/etcd/* version k8s.io/kubernetes ${KUBERNETES_VERSION} requires

kmod=$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | jq -r .GoMod)
mapfile -t staging < <(go mod edit -json "$kmod" | jq -r '.Require[] | select(.Version == "v0.0.0" and (.Path | startswith("k8s.io/"))) | .Path')
echo "replacing ${#staging[@]} staging modules with ${STAGING_VERSION}" >&2

rm -f go.mod go.sum
go mod init csi-provisioner-ts/e2e >&2
go mod edit -go=1.26.0
args=(-require="k8s.io/kubernetes@${KUBERNETES_VERSION}" -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}")
for m in "${staging[@]}"; do
  args+=(-replace="${m}=${m}@${STAGING_VERSION}")
done
go mod edit "${args[@]}"
go mod tidy >&2
go list -m k8s.io/kubernetes go.etcd.io/etcd/server/v3 k8s.io/api github.com/container-storage-interface/spec >&2
