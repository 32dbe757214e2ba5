#!/usr/bin/env bash
# Installs the npm packages of a lockfile-pinned test client (such as
# e2e/clients/js) into the tools cache OUTSIDE the repository, keyed by the
# hash of its package.json and package-lock.json, with `npm ci`. A warm
# cache costs one hash and nothing else; a changed lockfile gets a new
# directory. Nothing is ever installed into the checkout.
#
# Usage: hack/install-npm.sh [DIR]   (default: e2e/clients/js)
# Prints the node_modules directory on the last line of stdout.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src=$(cd "${1:-$root/e2e/clients/js}" && pwd)
cache=${POD_IDENTITY_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-injector}
hash=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)
dir=$cache/npm-$hash
if [ -f "$dir/.complete" ]; then
	echo "$dir/node_modules"
	exit 0
fi
if ! command -v npm >/dev/null; then
	echo "install-npm: npm is missing; install Node.js 20 or later (node and npm)" >&2
	exit 1
fi
mkdir -p "$cache"
exec 9>"$cache/.npm.lock"
flock 9
if [ ! -f "$dir/.complete" ]; then
	start=$SECONDS
	echo ">> npm ci for $src into $dir" >&2
	rm -rf "$dir.tmp"
	mkdir -p "$dir.tmp"
	cp "$src/package.json" "$src/package-lock.json" "$dir.tmp/"
	# --ignore-scripts: no package of a test client needs an install script,
	# and none should run as root here.
	(cd "$dir.tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
	touch "$dir.tmp/.complete"
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
	echo ">> npm ci took $((SECONDS - start))s" >&2
fi
echo "$dir/node_modules"
