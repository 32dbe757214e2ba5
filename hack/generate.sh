#!/usr/bin/env bash
# Regenerates what is generated from the API types and committed:
#   internal/apis/aadpodidentity/v1/zz_generated.deepcopy.go  (DeepCopy)
#   manifests/crds/aadpodidentity.k8s.io_*.yaml               (the CRDs)
# with controller-gen, pinned in hack/tools/controller-gen/go.mod. Run it after
# changing internal/apis/... and commit the result; `git diff --exit-code`
# afterwards tells whether the committed files were current.
#
# Usage: hack/generate.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin/controller-gen
# The tools module has its own go.mod, so build the binary there and run it
# from the project root, where the API packages are.
go -C "$root/hack/tools/controller-gen" build -o "$bin" sigs.k8s.io/controller-tools/cmd/controller-gen

cd "$root"
"$bin" object paths=./internal/apis/...
"$bin" crd:crdVersions=v1 paths=./internal/apis/... output:crd:artifacts:config=manifests/crds
