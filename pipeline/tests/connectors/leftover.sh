#!/bin/sh
# Writes valid outputs and exits 0, leaving a background child running (which holds stderr open);
# prints the child's pid on stderr (`grandchild PID`).
set -eu
. "${0%/*}/args.sh"
sleep 300 &
echo "grandchild $!" >&2
echo '{}' > "$results"
echo '{"entities": []}' > "$graph"
