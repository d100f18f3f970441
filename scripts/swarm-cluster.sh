#!/usr/bin/env bash
# A three-node Docker Swarm on this one machine, for the swarm provider's tests and benchmarks.
#
# Usage: scripts/swarm-cluster.sh up|down|env|start-engine NODE
#   up     tear down what an earlier run left, then build the cluster; prints its environment
#   down   remove every namespace, engine, shim, mount, rule and directory `up` made (safe to repeat)
#   env    print the environment of a running cluster (the file $STATE/env)
#   start-engine NODE   start a node's engine again (sw1, sw2 or sw3), after a test killed it
#
# What `up` builds (root only; no traffic leaves the machine):
#   - a bridge $BRIDGE with $SUBNET.1/24 on the host, and three network namespaces hodei-sw1..3
#     (addresses $SUBNET.11..13, no default route), joined to it by veth pairs;
#   - FORWARD rules: ACCEPT inside the bridge, DROP whatever would leave it;
#   - in each namespace a dockerd with its own hostname (a UTS namespace), mount namespace, data root,
#     exec root (its own containerd: a system containerd's socket is hidden from it), /etc/docker
#     (its own engine key), socket $RUN/swN.sock and cgroup parent /hodei-swN, with a
#     resolv.conf naming 127.0.0.1 so that image lookups fail at once instead of timing out;
#   - one swarm: sw1 the manager (`--dispatcher-heartbeat 1s`, so a dead node shows Down in seconds),
#     sw2 and sw3 workers;
#   - Debian's docker-registry on $SUBNET.1:5000 holding the worker image, copied from the host engine
#     with skopeo (the host engine is only read), and pulled by every node.
#
# Environment: HODEI_SWARM_SUBNET (10.213.77), HODEI_SWARM_IMAGE ($HODEI_WORKER_IMAGE, else hodei-worker:latest, on the host engine),
#   HODEI_SWARM_DIR (/var/lib/hodei-swarm), HODEI_SWARM_RUN (/run/hodei-swarm).
set -euo pipefail

SUBNET="${HODEI_SWARM_SUBNET:-10.213.77}"
IMAGE="${HODEI_SWARM_IMAGE:-${HODEI_WORKER_IMAGE:-hodei-worker:latest}}"
STATE="${HODEI_SWARM_DIR:-/var/lib/hodei-swarm}"
RUN="${HODEI_SWARM_RUN:-/run/hodei-swarm}"
BRIDGE=hodeisw0
NODES=(sw1 sw2 sw3)
REGISTRY="$SUBNET.1:5000"
NAME="${IMAGE##*/}"
NAME="${NAME%%@*}"
[[ "$NAME" == *:* ]] || NAME="$NAME:latest"
REG_IMAGE="$REGISTRY/$NAME"

say() { printf '[swarm-cluster] %s\n' "$*" >&2; }
fail() { printf '[swarm-cluster] FAILED: %s\n' "$*" >&2; exit 1; }

ns() { echo "hodei-$1"; }
addr() { echo "$SUBNET.1${1#sw}"; }
sock() { echo "$RUN/$1.sock"; }
dk() { local n="$1"; shift; timeout 60 docker -H "unix://$(sock "$n")" "$@"; }

# The packages this needs, installed when missing (a clean CI machine has none of them).
need_packages() {
    local missing=() cmd pkg
    for pair in ip:iproute2 iptables:iptables nsenter:util-linux docker-registry:docker-registry \
        skopeo:skopeo dockerd:docker.io; do
        cmd="${pair%%:*}" pkg="${pair#*:}"
        command -v "$cmd" >/dev/null || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || fail "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || fail "apt-get install ${missing[*]} failed"
}

# wait_until SECONDS DESCRIPTION CMD...: poll CMD every half second.
wait_until() {
    local limit="$1" what="$2" deadline
    shift 2
    deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what did not happen within $limit s"
        sleep 0.5
    done
}

# kill_wait PID...: SIGTERM, up to 10 s, then SIGKILL.
kill_wait() {
    [ "$#" -gt 0 ] || return 0
    local pids=("$@") i alive
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && return 0
        sleep 0.5
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

# Every process of a node: those in its network namespace (dockerd, containerd, shims, host-network
# tasks) and those in its containers' cgroups (tasks with a network of their own).
node_pids() {
    local n="$1" f
    ip netns pids "$(ns "$n")" 2>/dev/null || true
    for f in /sys/fs/cgroup/*/hodei-"$n"/cgroup.procs /sys/fs/cgroup/*/hodei-"$n"/*/cgroup.procs \
        /sys/fs/cgroup/hodei-"$n"/cgroup.procs /sys/fs/cgroup/hodei-"$n"/*/cgroup.procs; do
        [ -r "$f" ] && cat "$f"
    done 2>/dev/null || true
}

down() {
    local n pid pids engines=()
    # Engines first, politely and all at once (they stop their tasks), then whatever is left of each node.
    for n in "${NODES[@]}"; do
        pid="$(cat "$RUN/$n.pid" 2>/dev/null || true)"
        if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then engines+=("$pid"); fi
    done
    pid="$(cat "$RUN/registry.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = docker-registry ]; then kill -KILL "$pid"; fi
    kill_wait "${engines[@]}"
    for n in "${NODES[@]}"; do
        mapfile -t pids < <(node_pids "$n" | sort -u)
        if [ "${#pids[@]}" -gt 0 ]; then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
    done
    # Mounts made in the host's namespace under our directories (the nodes' own died with them).
    for d in "$STATE" "$RUN"; do
        { grep -o " $d[^ ]*" /proc/self/mounts 2>/dev/null || true; } | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
    done
    for n in "${NODES[@]}"; do
        ip netns del "$(ns "$n")" 2>/dev/null || true
        ip link del "hsw-$n" 2>/dev/null || true
        for f in /sys/fs/cgroup/*/hodei-"$n" /sys/fs/cgroup/hodei-"$n"; do
            if [ -d "$f" ]; then find "$f" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
        done
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    while iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do :; done
    while iptables -D FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null; do :; done
    while iptables -D FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP 2>/dev/null; do :; done
    rm -rf "$STATE" "$RUN"
}

start_node() {
    local n="$1" net
    net="$(ns "$n")"
    ip netns add "$net"
    ip link add "hsw-$n" type veth peer name eth0 netns "$net"
    ip link set "hsw-$n" master "$BRIDGE" up
    ip -n "$net" addr add "$(addr "$n")/24" dev eth0
    ip -n "$net" link set eth0 up
    ip -n "$net" link set lo up
    start_engine "$n"
}

# start_engine NODE: (re)start a node's dockerd in its namespace; what its last engine left running
# (shims, tasks of a node that was killed) is killed first, as a machine that comes back has none of it.
start_engine() {
    local n="$1" net pids
    net="$(ns "$n")"
    mapfile -t pids < <(node_pids "$n" | sort -u)
    if [ "${#pids[@]}" -gt 0 ]; then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
    mkdir -p "$STATE/$n/data" "$STATE/$n/etc" "$STATE/$n/run-containerd" "$RUN/$n" /etc/docker
    printf 'nameserver 127.0.0.1\n' >"$STATE/$n/resolv.conf"
    printf '127.0.0.1 localhost\n%s hodei-%s\n' "$(addr "$n")" "$n" >"$STATE/$n/hosts"
    # `ip netns exec` would remount /sys, and dockerd then finds no devices cgroup: nsenter instead.
    setsid nohup nsenter "--net=/run/netns/$net" -- unshare --uts --mount --propagation slave -- sh -c "
        hostname hodei-$n &&
        mount --bind '$STATE/$n/resolv.conf' /etc/resolv.conf &&
        mount --bind '$STATE/$n/hosts' /etc/hosts &&
        mount --bind '$STATE/$n/etc' /etc/docker &&
        if [ -d /run/containerd ]; then mount --bind '$STATE/$n/run-containerd' /run/containerd; fi &&
        exec dockerd --data-root '$STATE/$n/data' --exec-root '$RUN/$n' --pidfile '$RUN/$n.pid' \
            -H 'unix://$(sock "$n")' --bridge=none --iptables=false --ip-masq=false \
            --cgroup-parent /hodei-$n --insecure-registry '$REGISTRY' --log-level warn" \
        >>"$STATE/$n.log" 2>&1 </dev/null 9>&- &
}

start_registry() {
    mkdir -p "$STATE/registry"
    cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
    setsid nohup docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 </dev/null 9>&- &
    echo $! >"$RUN/registry.pid"
}

registry_answers() { exec 3<>"/dev/tcp/$SUBNET.1/5000"; }

up() {
    [ "$(id -u)" -eq 0 ] || fail "this script must run as root (it makes namespaces and starts engines)"
    need_packages
    docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "the host engine has no $IMAGE to copy (run scripts/docker-setup.sh)"
    down
    local t0=$SECONDS n token pid
    mkdir -p "$STATE" "$RUN"
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    # The host drops forwarded traffic (policy DROP, bridge netfilter on): let the nodes talk to each
    # other, and nothing out of the bridge.
    iptables -I FORWARD 1 -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    iptables -I FORWARD 2 -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
    iptables -I FORWARD 3 -o "$BRIDGE" ! -i "$BRIDGE" -j DROP
    start_registry
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in "${NODES[@]}"; do wait_until 60 "dockerd of $n answering" dk "$n" info; done
    wait_until 20 "the registry answering on $REGISTRY" registry_answers
    say "engines up ($((SECONDS - t0)) s)"
    dk sw1 swarm init --advertise-addr "$(addr sw1)" --listen-addr "$(addr sw1):2377" \
        --dispatcher-heartbeat 1s >/dev/null
    token="$(dk sw1 swarm join-token -q worker)"
    for n in sw2 sw3; do
        dk "$n" swarm join --token "$token" --advertise-addr "$(addr "$n")" --listen-addr "$(addr "$n"):2377" \
            "$(addr sw1):2377" >/dev/null
    done
    wait_until 30 "three nodes Ready" sh -c \
        "[ \"\$(docker -H unix://$(sock sw1) node ls --format '{{.Status}}' | grep -c Ready)\" = 3 ]"
    say "swarm of three ($((SECONDS - t0)) s); copying $IMAGE to $REG_IMAGE"
    timeout 300 skopeo copy -q --dest-tls-verify=false "docker-daemon:$IMAGE" "docker://$REG_IMAGE" \
        || fail "skopeo could not copy $IMAGE to the registry"
    local pulls=()
    for n in "${NODES[@]}"; do dk "$n" pull -q "$REG_IMAGE" >/dev/null & pulls+=($!); done
    for pid in "${pulls[@]}"; do wait "$pid" || fail "a node could not pull $REG_IMAGE"; done
    cat >"$STATE/env" <<EOF
HODEI_SWARM_MANAGER=unix://$(sock sw1)
HODEI_SWARM_NODES=$(for n in "${NODES[@]}"; do printf 'hodei-%s=unix://%s ' "$n" "$(sock "$n")"; done)
HODEI_SWARM_IMAGE=$REG_IMAGE
HODEI_SWARM_HOST_ADDR=$SUBNET.1
HODEI_SWARM_REGISTRY=$REGISTRY
EOF
    say "ready in $((SECONDS - t0)) s"
    cat "$STATE/env"
}

case "${1:-}" in
    up) up ;;
    start-engine)
        [[ " ${NODES[*]} " == *" ${2:-} "* ]] || fail "start-engine takes a node: ${NODES[*]}"
        start_engine "$2"
        wait_until 60 "dockerd of $2 answering" dk "$2" info ;;
    down) down ;;
    env) cat "$STATE/env" ;;
    *) echo "usage: $0 up|down|env|start-engine NODE" >&2; exit 2 ;;
esac
