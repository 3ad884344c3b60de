#!/bin/sh
# Obeys the contract and reports what it was given into the directory "$1" (outside its own):
# its arguments, whether its working directory is the driver's directory, that directory's mode,
# and a copy of scope.json.
set -eu
. "${0%/*}/args.sh"
out=$1
printf '%s\n' "$@" > "$out/argv"
if [ "$(pwd -P)" = "$(cd "$dir" && pwd -P)" ]; then echo same > "$out/cwd"; else pwd -P > "$out/cwd"; fi
stat -c %a "$dir" > "$out/mode"
cp "$scope" "$out/scope.json"
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
cp "$graph" "$out/graph.json"
echo "contract connector done" >&2
