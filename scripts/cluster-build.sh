#!/usr/bin/env bash
# Builds the binaries of a real Kubernetes + Knative 1.18 control plane from Go modules
# (no container runtime, no kubectl), once per version, into a cache outside the repo:
#   kube-apiserver, kube-controller-manager (Kubernetes v1.36.3), etcd 3.6.8,
#   Knative Serving v0.45.1 (knative-v1.18.1) controller, autoscaler, activator, queue.
# A second run with the cache present returns at once. Prints the bin directory.
#   scripts/cluster-build.sh            build what is missing
#   SLUICE_CLUSTER_CACHE=/path ...      cache root (default ~/.cache/sluice/cluster)
# The first build downloads ~350 MB of modules and takes 12-15 minutes on 2 idle cores.
set -euo pipefail

K8S=v1.36.3      # Kubernetes; its staging modules are v0.36.3
STAGING=v0.36.3
ETCD=v3.6.8      # Debian's etcd 3.4 breaks watches without resourceVersion
KNATIVE=v0.45.1  # knative-v1.18.1; v0.45.2 is refused by the module proxy here

root=${SLUICE_CLUSTER_CACHE:-$HOME/.cache/sluice/cluster}
dir=$root/k8s-$K8S-etcd-$ETCD-knative-$KNATIVE
bin=$dir/bin
if [[ -f $bin/.complete ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$bin" "$dir/src"
export PATH=$PATH:/usr/local/go/bin GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw
if ! command -v go >/dev/null; then
  echo "cluster-build: Go (1.24 or newer) is needed to build the control plane; none on PATH or in /usr/local/go" >&2
  exit 1
fi
log() { echo "cluster-build: $*" >&2; }

# --- Kubernetes and etcd: one wrapper module that requires k8s.io/kubernetes and maps
# every staging module k/k's own go.mod points at ./staging to its released version.
kube=$dir/src/kube
mkdir -p "$kube/kube-apiserver" "$kube/kube-controller-manager" "$kube/etcd"
kmod=$(go mod download -json "k8s.io/kubernetes@$K8S" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
ksrc=$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S
{
  echo "module sluice.local/cluster/kube"
  echo
  echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$/.0/')"
  echo
  echo "require ("
  echo "  k8s.io/kubernetes $K8S"
  echo "  go.etcd.io/etcd/server/v3 $ETCD"
  echo ")"
  echo
  echo "replace ("
  grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$kmod" | awk -v v="$STAGING" '{print "  " $1 " => " $1 " " v}'
  echo ")"
} > "$kube/go.mod"
# The mains are upstream's own files, taken from the module.
cp "$ksrc/cmd/kube-apiserver/apiserver.go" "$kube/kube-apiserver/main.go"
cp "$ksrc/cmd/kube-controller-manager/controller-manager.go" "$kube/kube-controller-manager/main.go"
cat > "$kube/etcd/main.go" <<'EOF'
// etcd, built from its server module (the same module graph as the apiserver's client).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
log "resolving Kubernetes $K8S modules"
(cd "$kube" && go mod tidy >/dev/null)
# Knative refuses a cluster without a version: set it at link time.
kver="-X k8s.io/component-base/version.gitVersion=$K8S -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36"
for b in kube-apiserver kube-controller-manager etcd; do
  if [[ ! -x $bin/$b ]]; then
    log "building $b"
    (cd "$kube" && go build -trimpath -ldflags "-s -w $kver" -o "$bin/$b.tmp" "./$b")
    mv "$bin/$b.tmp" "$bin/$b"
  fi
done

# --- Knative Serving: a wrapper module with serving's own go.sum (a plain `go install
# …@v0.45.1` fails: a knative.dev/caching pseudo-version is not in the checksum database).
kn=$dir/src/knative
mkdir -p "$kn"
smod=$(go mod download -json "knative.dev/serving@$KNATIVE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
sed -e 's|^module knative.dev/serving$|module sluice.local/cluster/knative|' "$smod/go.mod" > "$kn/go.mod"
printf '\nrequire knative.dev/serving %s\n' "$KNATIVE" >> "$kn/go.mod"
cp "$smod/go.sum" "$kn/go.sum"
chmod u+w "$kn/go.mod" "$kn/go.sum"
log "resolving Knative Serving $KNATIVE modules"
(cd "$kn" && go mod download knative.dev/serving)
for c in controller autoscaler activator queue; do
  if [[ ! -x $bin/knative-$c ]]; then
    log "building knative $c"
    (cd "$kn" && GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w" -o "$bin/knative-$c.tmp" "knative.dev/serving/cmd/$c")
    mv "$bin/knative-$c.tmp" "$bin/knative-$c"
  fi
done
# Knative's manifests (CRDs, ConfigMaps) come from the module cache at test time.
echo "$smod" > "$bin/knative-serving-dir"
touch "$bin/.complete"
echo "$bin"
