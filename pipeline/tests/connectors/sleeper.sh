#!/bin/sh
# Starts a background child, records its directory and its pid into "$1", then sleeps far past
# any test's time limit. The pid file appears last and whole (written aside, then renamed): the
# test cancels the run as soon as it exists.
set -eu
. "${0%/*}/args.sh"
sleep 300 &
echo "$dir" > "$1/dir"
echo $! > "$1/grandchild.pid.part"
mv "$1/grandchild.pid.part" "$1/grandchild.pid"
echo "sleeping" >&2
sleep 300
