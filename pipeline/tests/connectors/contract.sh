#!/bin/sh
# Obeys the contract and reports what it was given on stderr, one `KEY VALUE` line each (its
# directory is gone once the run returns, and it can write nowhere else): every argument (`arg`),
# whether its working directory is the driver's directory (`cwd`), that directory's mode and
# owner (`mode`, `owner`), its own uid (`uid`), scope.json (`scope`) and the size of the
# graph.json it wrote (`graph_bytes`).
set -eu
. "${0%/*}/args.sh"
{
    printf 'arg %s\n' "$@"
    if [ "$(pwd -P)" = "$(cd "$dir" && pwd -P)" ]; then echo "cwd same"; else echo "cwd $(pwd -P)"; fi
    echo "mode $(stat -c %a "$dir")"
    echo "owner $(stat -c %u "$dir")"
    echo "uid $(id -u)"
    echo "scope $(cat "$scope")"
} >&2
cat > "$results" <<'JSON'
{
  "identities": {"status": "succeeded", "items_scanned": 2, "started_at": "2026-11-29T08:00:00Z",
                 "ended_at": "2026-11-29T08:00:01.250Z", "errors": []},
  "storage":    {"status": "failed", "items_scanned": 0, "started_at": "2026-11-29T08:00:01Z",
                 "ended_at": "2026-11-29T08:00:01Z", "errors": ["access denied listing buckets"]}
}
JSON
cat > "$graph" <<'JSON'
{
  "entities": [
    {"id": "aws:machine:web-1", "type": "machine", "cloud": "aws", "name": "web-1",
     "properties": {"internet_exposed": true}},
    {"id": "aws:identity:alice", "type": "identity", "cloud": "aws", "name": "alice",
     "properties": {"principal": "alice@example.com", "admin": true, "mfa": false}}
  ],
  "edges": [{"from": "aws:machine:web-1", "to": "aws:identity:alice", "type": "runs_as"}]
}
JSON
echo "graph_bytes $(wc -c < "$graph")" >&2
echo "contract connector done" >&2
