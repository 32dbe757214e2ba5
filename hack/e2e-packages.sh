#!/usr/bin/env bash
# Prints the import path of every package of this module that has a test
# file built only with the e2e tag (`//go:build e2e`, alone or in an
# expression such as `e2e && linux`), one a line, sorted: the suites that
# `make e2e` runs. It reads the files Go itself would build with -tags e2e,
# so a new suite, or a suite moved to another directory, is never left out;
# files that need a further tag as well (`e2e && footprint`, run by `make
# bench-footprint`) are not built with -tags e2e alone and do not count.
#
# Usage: hack/e2e-packages.sh   (from anywhere in the checkout)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
files=$(go list -tags e2e -f '{{$p := .ImportPath}}{{range .TestGoFiles}}{{$p}} {{$.Dir}}/{{.}}
{{end}}{{range .XTestGoFiles}}{{$p}} {{$.Dir}}/{{.}}
{{end}}' ./...)
pkgs=$(while read -r pkg file; do
	[ -n "$pkg" ] || continue
	# The constraint line names e2e as a tag of its own, not negated.
	if grep -qE '^//go:build(.*[[:space:](&|])?e2e([[:space:])&|]|$)' "$file" &&
		! grep -qE '^//go:build.*!e2e' "$file"; then
		echo "$pkg"
	fi
done <<<"$files" | sort -u)
if [ -z "$pkgs" ]; then
	echo "e2e-packages: no test file of $(go list -m) carries //go:build e2e" >&2
	exit 1
fi
echo "$pkgs"
