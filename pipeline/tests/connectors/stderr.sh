#!/bin/sh
# Prints its credential to stderr (what a connector must never do), then "$1" bytes of `x`, then
# the credential "$3" more times, then exits with status "$2".
set -eu
printf 'connecting with token=%s' "$SV0_TEST_TOKEN" >&2
head -c "$1" /dev/zero | tr '\0' x >&2
i=0
while [ "$i" -lt "$3" ]; do
    printf ' token=%s' "$SV0_TEST_TOKEN" >&2
    i=$((i + 1))
done
exit "$2"
