#!/bin/sh
# Exits 0 with category_results.json made from "$1" and graph.json from "$2", each one of:
# a file to copy, `-` (not written), `fifo` (a named pipe instead), `link:TARGET` (a symbolic link).
set -eu
. "${0%/*}/args.sh"
place() {
    case "$1" in
        -) ;;
        fifo) mkfifo "$2" ;;
        link:*) ln -s "${1#link:}" "$2" ;;
        *) cp "$1" "$2" ;;
    esac
}
place "$1" "$results"
place "$2" "$graph"
