#!/usr/bin/env bash
# Installs the Debian packages that make test and make demo need, and only
# those that are missing, so that a warm machine spends no time here. Run as
# root (CI and the e2e suite run as root).
set -euo pipefail

packages=(
	libseccomp-dev           # runc is built with cgo and -tags seccomp
	containernetworking-plugins # bridge, host-local and loopback for pods
	iproute2                 # the suite's own network namespace
	busybox-static           # the shell of the azcopy stand-in image
	ca-certificates          # the images' CA bundle
)

# Azurite (the node suite's blob emulator) comes from npm. Machines with
# Node.js 20 from elsewhere keep it; others get Debian's nodejs and npm.
if ! command -v npm >/dev/null; then
	packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing Debian packages: ${missing[*]}; run as root or install them" >&2
	exit 1
fi
echo ">> installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
