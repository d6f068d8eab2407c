#!/usr/bin/env bash
# Runs govulncheck on the module with an offline vulnerability database built
# from the golang.org/x/vulndb module (no network access to vuln.go.dev).
# Both builds are checked: the full one and the on-instance one (-tags agentonly).
# A GOTOOLCHAIN in the environment decides which standard library is checked.
set -euo pipefail
cd "$(dirname "$0")/.."

vulndb_version=v0.0.0-20261105234957-e22db6528018
govulncheck_version=v1.9.0
cache=${SPOT_AGENT_CACHE:-$PWD/.cache}
bin=$cache/bin
db=$cache/vulndb/$vulndb_version

mkdir -p "$bin"
if ! [ -x "$bin/govulncheck" ] || ! go version -m "$bin/govulncheck" | grep -q "golang.org/x/vuln[[:space:]]*$govulncheck_version"; then
	echo "== install govulncheck $govulncheck_version"
	GOBIN=$bin go install "golang.org/x/vuln/cmd/govulncheck@$govulncheck_version"
fi
if ! [ -f "$db/index/db.json" ]; then
	echo "== build the vulnerability database from golang.org/x/vulndb@$vulndb_version"
	src=$(go mod download -json "golang.org/x/vulndb@$vulndb_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src/data/osv" ] || { echo "check-vulns: no data/osv in $src" >&2; exit 1; }
	rm -rf "$db.tmp"
	go run "golang.org/x/vulndb/cmd/indexdb@$vulndb_version" -vulns "$src/data/osv" -out "$db.tmp"
	mkdir -p "$(dirname "$db")"
	rm -rf "$db"
	mv "$db.tmp" "$db"
fi

echo "== govulncheck ($(go env GOVERSION)), full build"
"$bin/govulncheck" -db "file://$db" ./...
echo "== govulncheck ($(go env GOVERSION)), on-instance build"
"$bin/govulncheck" -db "file://$db" -tags agentonly ./cmd/spot-agent
