#!/usr/bin/env bash
# Idle memory and size of the sidecar's stack, one layer at a time, and of
# the sidecar itself (BENCHMARKS.md, "Sidecar footprint"). Each program is
# built as `make build` builds the sidecar, started, left idle for 2 s, and
# read from /proc/<pid>/status: RssAnon is what the process allocated (heap,
# stacks, runtime data), RssFile the pages of its binary the kernel mapped
# in. Run from the repository root: hack/footprint/measure.sh [runs]
set -euo pipefail
runs=${1:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
build() { CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/$1" "$2"; }
for v in bare http tls azidentity; do build "$v" "./hack/footprint/$v"; done
build sidecar ./cmd/sidecar
echo tok > "$out/token"
port=$((20000 + RANDOM % 20000))
export POD_IDENTITY_SIDECAR_CONFIG='{"apiVersion":"sidecar.aadpodidentity.k8s.io/v1","port":'"$port"',"defaultIdentity":"a","identities":[{"name":"a","namespace":"ns","source":"federated","clientID":"00000000-0000-0000-0000-000000000001","tenantID":"00000000-0000-0000-0000-000000000002","tokenFile":"'"$out/token"'"}]}'
export IDENTITY_HEADER=footprint

kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$2/status"; }
measure() { # name, command...
	local name=$1; shift
	for _ in $(seq "$runs"); do
		"$@" >/dev/null 2>&1 &
		local pid=$!
		sleep 2
		printf '| %s | %s | %s | %s | %.1f |\n' "$name" "$(kb VmRSS $pid)" "$(kb RssAnon $pid)" "$(kb RssFile $pid)" \
			"$(echo "$(stat -c %s "$out/${name%% *}") / 1048576" | bc -l)"
		kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
	done
}
echo "| program | VmRSS kB | RssAnon kB | RssFile kB | binary MiB |"
echo "|---|---|---|---|---|"
measure bare "$out/bare"
measure http "$out/http"
measure tls "$out/tls"
measure azidentity "$out/azidentity"
measure "sidecar (one federated identity)" "$out/sidecar" serve
cp /etc/ssl/certs/ca-certificates.crt "$out/ca.pem" 2>/dev/null && \
	measure "sidecar (one federated identity, --ca-file)" "$out/sidecar" serve --ca-file "$out/ca.pem"
echo
echo "init-time heap of the sidecar (GODEBUG=inittrace=1), largest packages:"
GODEBUG=inittrace=1 "$out/sidecar" probe --port 1 2>&1 | awk '/^init / { b[$2] += $8; a[$2] += $10; t += $8 } END { for (p in b) printf "%8d B %5d allocs %s\n", b[p], a[p], p; printf "%8d B total\n", t }' | sort -rn | head -8
