#!/usr/bin/env bash
# Builds the real control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), the node (kubelet, containerd, its runc shim, ctr
# and runc), Helm and azcopy from Go modules into a cache OUTSIDE the
# repository, keyed by version, and prints nothing but progress. golangci-lint
# is built the same way, but only when named (`make lint` asks for it). A binary already in the
# cache is not rebuilt. A cold build took 20 minutes on 2 busy cores
# (kube-apiserver 12, kube-controller-manager 6); with a warm GOCACHE each
# binary takes seconds (kube-apiserver 9s).
#
# Usage: hack/build-tools.sh [tool ...]   (default: all)
# Prints the cache directory on the last line of stdout.
set -euo pipefail

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
AZCOPY_VERSION=v10.32.7
CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
HELM_VERSION=v3.22.0
GOLANGCI_LINT_VERSION=v2.15.0 # must match hack/tools/golangci-lint/go.mod
AZURITE_VERSION=3.37.0 # must match hack/tools/azurite/package.json

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${POD_IDENTITY_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-injector}
kube_dir=$cache/k8s-${KUBE_VERSION}
etcd_dir=$cache/etcd-${ETCD_VERSION}
azcopy_dir=$cache/azcopy-${AZCOPY_VERSION}
containerd_dir=$cache/containerd-${CONTAINERD_VERSION}
runc_dir=$cache/runc-${RUNC_VERSION}
helm_dir=$cache/helm-${HELM_VERSION}
lint_dir=$cache/golangci-lint-${GOLANGCI_LINT_VERSION}
azurite_dir=$cache/azurite-${AZURITE_VERSION}
mkdir -p "$kube_dir" "$etcd_dir" "$azcopy_dir" "$containerd_dir" "$runc_dir" "$helm_dir" "$lint_dir"

# One build at a time per cache: a second `make tools` (say e2e and demo
# started together) waits here and then finds the binaries built, instead of
# doubling the memory of two links on a small machine.
if command -v flock >/dev/null; then
	exec 9>"$cache/.lock"
	if ! flock -n 9; then
		echo ">> another build-tools.sh is building into $cache; waiting for it" >&2
		flock 9
	fi
fi

export CGO_ENABLED=0
# The tool modules stand alone: a go.work above the checkout must not pull
# them into a workspace with the project's own dependency versions.
export GOWORK=off

# build MODULE_DIR OUT PKG [LDFLAGS [TAGS]]: one link at a time, since each
# link of a Kubernetes binary needs about 2.7 GB and the machine has 2 cores.
build() {
	local dir=$1 out=$2 pkg=$3 ldflags=${4:-} tags=${5:-}
	if [ -x "$out" ]; then
		return
	fi
	local start=$SECONDS
	echo ">> building $(basename "$out") (cold: several minutes; warm: seconds)" >&2
	(cd "$root/$dir" && go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
	mv "$out.tmp" "$out"
	echo ">> built $(basename "$out") in $((SECONDS - start))s" >&2
}

major=${KUBE_VERSION#v}; major=${major%%.*}
minor=${KUBE_VERSION#v*.}; minor=${minor%%.*}
kube_ldflags="-X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} -X k8s.io/component-base/version.gitMajor=${major} -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=${KUBE_VERSION} -X k8s.io/client-go/pkg/version.gitMajor=${major} -X k8s.io/client-go/pkg/version.gitMinor=${minor}"

# azurite: the Azure Storage emulator from npm, for the real node's seed
# test, installed exactly as hack/tools/azurite/package-lock.json pins it
# (no install scripts run), outside the repository.
install_azurite() {
	if [ -x "$azurite_dir/node_modules/.bin/azurite-blob" ]; then
		return
	fi
	if ! command -v npm >/dev/null; then
		echo "build-tools: azurite needs Node.js and npm (Node.js 20 or later)" >&2
		exit 1
	fi
	local start=$SECONDS
	echo ">> installing azurite ${AZURITE_VERSION} from npm (cold: about a minute)" >&2
	rm -rf "$azurite_dir.tmp" && mkdir -p "$azurite_dir.tmp"
	cp "$root/hack/tools/azurite/package.json" "$root/hack/tools/azurite/package-lock.json" "$azurite_dir.tmp/"
	(cd "$azurite_dir.tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
	rm -rf "$azurite_dir" && mv "$azurite_dir.tmp" "$azurite_dir"
	echo ">> installed azurite in $((SECONDS - start))s" >&2
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet containerd runc helm azcopy azurite)
for t in "${tools[@]}"; do
	case $t in
	etcd) build hack/tools/etcd "$etcd_dir/etcd" go.etcd.io/etcd/server/v3 ;;
	kube-apiserver | kube-controller-manager | kube-scheduler | kubectl | kubelet)
		build hack/tools/kube "$kube_dir/$t" "k8s.io/kubernetes/cmd/$t" "$kube_ldflags" ;;
	containerd)
		ctrd_ldflags="-X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION}"
		for c in containerd containerd-shim-runc-v2 ctr; do
			build hack/tools/containerd "$containerd_dir/$c" "github.com/containerd/containerd/v2/cmd/$c" "$ctrd_ldflags" "no_btrfs no_devmapper no_zfs"
		done ;;
	runc)
		# runc needs cgo for libseccomp (Debian's libseccomp-dev), so it is
		# not static like the rest.
		CGO_ENABLED=1 build hack/tools/runc "$runc_dir/runc" github.com/opencontainers/runc "-X main.version=${RUNC_VERSION#v}" seccomp ;;
	helm)
		build hack/tools/helm "$helm_dir/helm" helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" ;;
	azurite) install_azurite ;;
	golangci-lint)
		# main.date set means the binary reports this version, not the
		# tools module's (devel).
		build hack/tools/golangci-lint "$lint_dir/golangci-lint" github.com/golangci/golangci-lint/v2/cmd/golangci-lint \
			"-X main.version=${GOLANGCI_LINT_VERSION#v} -X main.commit=module -X main.date=unknown" ;;
	azcopy) build hack/tools/azcopy "$azcopy_dir/azcopy" github.com/Azure/azure-storage-azcopy/v10 ;;
	*) echo "unknown tool $t" >&2; exit 2 ;;
	esac
done
echo "$cache"
