#!/bin/sh
# A test connector: does what its first argument says, then (for most behaviours) runs the demo
# connector (second argument) with the contract's arguments (the rest). It runs confined: it
# writes only in its run directory (its working directory) and reads only the system's files,
# its own directory (the demo connector is staged beside it) and its kind's `read_paths`.
#   ok                  run the demo connector
#   sleep:N:MARKER      create MARKER in the run directory, sleep N seconds, then run it
#   fail-if:MARKER      while MARKER exists, print "failing: " and its content, exit 3; else run
#                       it (the kind grants MARKER's directory in `read_paths`)
#   env                 print the environment's names (never the values: the credential is one),
#                       HOME, TMPDIR and the working directory to stderr, exit 3
#   argv                print the arguments after the first two to stderr, one a line, exit 3
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
    touch "./$marker"
    sleep "$seconds"
    exec "$demo" "$@" ;;
  fail-if:*)
    marker="${behaviour#fail-if:}"
    if [ -e "$marker" ]; then echo "failing: $(cat "$marker")" >&2; exit 3; fi
    exec "$demo" "$@" ;;
  env)
    env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/name \1/p' >&2
    echo "home ${HOME-}" >&2
    echo "tmpdir ${TMPDIR-}" >&2
    echo "cwd $(pwd -P)" >&2
    exit 3 ;;
  argv)
    printf 'arg %s\n' "$@" >&2
    exit 3 ;;
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
