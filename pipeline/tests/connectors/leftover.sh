#!/bin/sh
# Writes valid outputs and exits 0, leaving a background child running (which holds stderr open);
# records the child's pid into "$1".
set -eu
. "${0%/*}/args.sh"
sleep 300 &
echo $! > "$1/grandchild.pid"
echo '{}' > "$results"
echo '{"entities": []}' > "$graph"
