#!/usr/bin/env bash
# Installs the Debian packages that make test and make demo need, and only
# those that are missing, so that a warm machine spends no time here. Run as
# root (CI and the e2e suite run as root). The npm packages of the e2e
# client matrix come from hack/install-npm.sh, into the tools cache; Node.js
# itself (20 or later, node and npm) must be on the machine, since Debian
# 12's nodejs is 18 and @azure/identity 4.13 needs 20.
set -euo pipefail

packages=(
	libseccomp-dev           # runc is built with cgo and -tags seccomp
	containernetworking-plugins # bridge, host-local and loopback for pods
	iproute2                 # the suite's own network namespace
	busybox-static           # the shell of the azcopy stand-in image
	ca-certificates          # HTTPS from this machine: go module downloads, npm, apt (not the images' bundle, which comes from go.mod)
	python3-azure            # the e2e client matrix: azure.identity for Debian's python3
	azure-cli                # the e2e client matrix: what `az login --identity` 2.45 does
	curl                     # the e2e client matrix: README.md's curl commands
	util-linux               # unshare for the node suite's namespaces, nsenter for make demo's kubectl
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
