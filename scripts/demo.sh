#!/usr/bin/env bash
# The main job: builds swarmd and swarmctl, starts a single-node cluster in a fresh state
# directory, runs a sample service (3 replicas of `sleep`) on the embedded default executor and
# shows it. Then it keeps the cluster up until Ctrl-C; with --once it stops right away.
# Either way it removes the service and stops swarmd on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
once=false
[ "${1:-}" = "--once" ] && once=true

scripts/setup.sh
cargo build --locked -p swarmd -p swarmctl
bin=target/debug
state=$(mktemp -d /tmp/swarm-demo.XXXXXX)
sock="$state/swarmd.sock"
ctl() { "$bin/swarmctl" -s "$sock" "$@"; }

"$bin/swarmd" --state-dir "$state" --listen-remote-api 127.0.0.1:0 >"$state.log" 2>&1 &
swarmd_pid=$!
cleanup() {
    ctl service rm web >/dev/null 2>&1 || true
    # Wait (bounded) for the tasks to stop before stopping swarmd.
    for _ in $(seq 1 100); do
        [ "$(ctl --format json task ls 2>/dev/null || echo '[]')" = "[]" ] && break
        sleep 0.1
    done
    kill "$swarmd_pid" 2>/dev/null || true
    wait "$swarmd_pid" 2>/dev/null || true
}
trap cleanup EXIT

echo "== starting swarmd (state in $state, log in $state.log)"
for _ in $(seq 1 300); do
    ctl node ls >/dev/null 2>&1 && break
    if ! kill -0 "$swarmd_pid" 2>/dev/null; then
        echo "swarmd exited; its log:" >&2
        cat "$state.log" >&2
        exit 1
    fi
    sleep 0.1
done
ctl node ls
echo
echo "== swarmctl service create --name web --replicas 3 --process -- sleep 1000"
ctl service create --name web --replicas 3 --process -- sleep 1000
for _ in $(seq 1 300); do
    ctl service ls | grep -q ' 3/3 ' && break
    sleep 0.1
done
ctl service ls
echo
ctl task ls --service web
if ! ctl service ls | grep -q ' 3/3 '; then
    echo "the sample service did not reach 3/3 running" >&2
    exit 1
fi
echo
if $once; then
    echo "== done (--once): removing the service and stopping swarmd"
    exit 0
fi
echo "== the cluster is up. In another shell:"
echo "   export SWARM_SOCKET=$sock"
echo "   $bin/swarmctl service scale web 5"
echo "Press Ctrl-C to remove the service and stop swarmd."
wait "$swarmd_pid"
