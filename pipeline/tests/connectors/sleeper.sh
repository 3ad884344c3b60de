#!/bin/sh
# Starts a background child, records its pid into `grandchild.pid` in its own directory, then
# sleeps far past any test's time limit. The pid file appears whole (written aside, then
# renamed): the test, which looks for it in the runs directory, acts as soon as it exists.
set -eu
sleep 300 &
echo $! > grandchild.pid.part
mv grandchild.pid.part grandchild.pid
echo "sleeping" >&2
sleep 300
