#!/bin/sh
# Starts a background child, records its directory and both pids into "$1", then sleeps far past
# any test's time limit.
set -eu
. "${0%/*}/args.sh"
sleep 300 &
echo $! > "$1/grandchild.pid"
echo "$dir" > "$1/dir"
echo "sleeping" >&2
sleep 300
