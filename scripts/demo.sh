#!/usr/bin/env bash
# The main job: install hodei, start hodeid in a scratch directory, run a sample job and follow its output.
source "$(dirname "$0")/bootstrap.sh"
work="$(mktemp -d /tmp/hodei-demo.XXXXXX)"
export HODEI_SOCKET="$work/hodei.sock"
hodeid --state-dir "$work/state" --socket "$HODEI_SOCKET" >"$work/hodeid.log" 2>&1 &
daemon=$!
cleanup() { kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do hodeictl list >/dev/null 2>&1 && break; sleep 0.1; done
echo "==> hodeid is running (socket $HODEI_SOCKET); submitting a three-phase job and following it"
set -x
hodeictl submit -f --name demo 'for phase in build test package; do echo "== $phase"; for i in 1 2 3; do echo "$phase step $i"; sleep 0.3; done; done; echo done >&2'
{ set +x; } 2>/dev/null
hodeictl list
