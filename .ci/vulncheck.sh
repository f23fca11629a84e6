#!/usr/bin/env bash
# Offline vulnerability scan of the main module (./...), bounded in time.
#
#  1. Downloads the Go vulnerability database as a Go module
#     (golang.org/x/vulndb at VULNDB_VERSION) into the module cache.
#  2. Builds a govulncheck database (the v1 layout: index/db.json,
#     index/modules.json, index/vulns.json, ID/GO-*.json, each also .gz)
#     from its data/osv/*.json with x/vulndb's own cmd/indexdb, once per
#     version, cached in VULNDB_CACHE (outside the repository).
#  3. Runs govulncheck (golang.org/x/vuln at GOVULNCHECK_VERSION) with
#     -db file://... and -format json, at the symbol level, under
#     GOTOOLCHAIN (go1.27.3 unless set).
#  4. deploy/cmd/vulngate exits 1 on any vulnerability reached at the symbol
#     level that deploy/vulnerabilities.md does not accept.
#
# Exit status: 0 clean, 1 a reachable vulnerability, 2 or other: the scan
# could not run (124: timed out after VULNCHECK_TIMEOUT seconds per step).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

VULNDB_VERSION="${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}"
GOVULNCHECK_VERSION="${GOVULNCHECK_VERSION:-v1.9.0}"
VULNDB_CACHE="${VULNDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mailrelay/vulndb}"
VULNCHECK_TIMEOUT="${VULNCHECK_TIMEOUT:-900}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"
# The tools are run as pkg@version: no -mod=readonly from the caller (it
# is meant for this repository's go.mod and refuses pkg@version).
tool_goflags="-mod=mod"
start=$SECONDS
step() { echo "vulncheck: $* ($((SECONDS - start)) s)"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "go $(go env GOVERSION), database golang.org/x/vulndb@$VULNDB_VERSION"
db="$VULNDB_CACHE/$VULNDB_VERSION"
if [[ ! -s "$db/index/modules.json" || ! -s "$db/index/db.json" ]]; then
  # Run outside the repository so that its go.mod plays no part.
  src=$(cd "$work" && GOFLAGS="$tool_goflags" timeout "$VULNCHECK_TIMEOUT" \
    go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  if [[ -z "$src" || ! -d "$src/data/osv" ]]; then
    echo "vulncheck: golang.org/x/vulndb@$VULNDB_VERSION has no data/osv" >&2
    exit 2
  fi
  step "indexing $(find "$src/data/osv" -name 'GO-*.json' | wc -l) OSV entries"
  mkdir -p "$VULNDB_CACHE"
  tmpdb=$(mktemp -d "$VULNDB_CACHE/.build.XXXXXX")
  (cd "$work" && GOFLAGS="$tool_goflags" timeout "$VULNCHECK_TIMEOUT" \
    go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$tmpdb/db") ||
    { rm -rf "$tmpdb"; exit 2; }
  rm -rf "$db"
  mv "$tmpdb/db" "$db"
  rm -rf "$tmpdb"
fi
step "database $db: $(find "$db/ID" -name '*.json' | wc -l) entries"

step "govulncheck@$GOVULNCHECK_VERSION ./..."
(cd "$work" && GOFLAGS="$tool_goflags" GOBIN="$work" timeout "$VULNCHECK_TIMEOUT" \
  go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION")
timeout "$VULNCHECK_TIMEOUT" "$work/govulncheck" -C "$root" -db "file://$db" -scan symbol -format json ./... >"$work/scan.json"

step "gate"
status=0
(cd deploy && go run ./cmd/vulngate -accepted vulnerabilities.md) <"$work/scan.json" || status=$?
step "done, exit $status"
exit "$status"
