#!/bin/sh
# Copies the environment it was started with into "$1/environ" (NUL-separated). It reads
# /proc/$$/environ, the block the driver handed to exec, rather than running `env`: the shell adds
# variables of its own (PWD, …) to what its children see.
set -eu
. "${0%/*}/args.sh"
cp "/proc/$$/environ" "$1/environ"
echo '{}' > "$results"
echo '{"entities": []}' > "$graph"
