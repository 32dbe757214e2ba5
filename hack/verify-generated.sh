#!/usr/bin/env bash
# Fails when the generated DeepCopy or CRDs do not match the API types in
# the working tree: it regenerates them with hack/generate.sh and compares
# with what was there before. The regenerated files are left in place, so
# that a failure is fixed by committing them.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
generated=(internal/apis/aadpodidentity/v1/zz_generated.deepcopy.go manifests/crds)
for p in "${generated[@]}"; do
	mkdir -p "$before/$(dirname "$p")"
	cp -R "$root/$p" "$before/$p"
done
"$root/hack/generate.sh"
stale=0
for p in "${generated[@]}"; do
	if ! diff -r "$before/$p" "$root/$p" >/dev/null; then
		echo "stale generated file(s): $p does not match the API types; hack/generate.sh has rewritten it, commit the result" >&2
		diff -r "$before/$p" "$root/$p" | head -20 >&2 || true
		stale=1
	fi
done
exit $stale
