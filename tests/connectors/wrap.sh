#!/bin/sh
# A test connector: does what its first argument says, then (for most behaviours) runs the demo
# connector (second argument) with the contract's arguments (the rest).
#   ok                  run the demo connector
#   sleep:N:MARKER      create MARKER, sleep N seconds, then run it
#   fail-if:MARKER      exit 3 while MARKER exists, else run it
#   env:FILE            write the environment to FILE, then run it
#   leak                print the credential to stderr, exit 4
#   exit                print a line to stderr, exit 3
#   reserved            write a results file with a reserved category, exit 0
#   invalid             write a results file that is not JSON, exit 0
set -eu
behaviour="$1"
demo="$2"
shift 2
results=""
prev=""
for arg in "$@"; do
  [ "$prev" = "--category-results-out" ] && results="$arg"
  prev="$arg"
done
case "$behaviour" in
  ok) exec "$demo" "$@" ;;
  sleep:*)
    rest="${behaviour#sleep:}"
    seconds="${rest%%:*}"
    marker="${rest#*:}"
    touch "$marker"
    sleep "$seconds"
    exec "$demo" "$@" ;;
  fail-if:*)
    marker="${behaviour#fail-if:}"
    if [ -e "$marker" ]; then echo "failing: $marker exists" >&2; exit 3; fi
    exec "$demo" "$@" ;;
  env:*)
    /usr/bin/env > "${behaviour#env:}"
    exec "$demo" "$@" ;;
  leak)
    echo "about to fail; my token is $DEMO_CLOUD_TOKEN (a connector must never do this)" >&2
    exit 4 ;;
  exit)
    echo "cannot reach the cloud" >&2
    exit 3 ;;
  reserved)
    printf '{"__sync": {"status": "succeeded", "items_scanned": 1, "started_at": "2026-11-29T08:00:00Z", "ended_at": "2026-11-29T08:00:01Z", "errors": []}}' > "$results"
    exit 0 ;;
  invalid)
    printf 'not json' > "$results"
    exit 0 ;;
  *) echo "wrap.sh: unknown behaviour $behaviour" >&2; exit 64 ;;
esac
