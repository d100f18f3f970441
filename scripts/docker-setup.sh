#!/usr/bin/env bash
# Bring a working Docker engine and a locally built hodei worker image, so the
# test suite can run against the real engine. No container registry is
# reachable from this project's machines: the base image is made with
# debootstrap from the Debian mirror apt already uses, and the worker image is
# built offline from wheels made on the host.
#
# Usage: scripts/docker-setup.sh [--check]
#   Run as root, from any directory. Safe to run again: what is already there
#   is kept, and a second run takes seconds.
#   --check   afterwards, run scripts/docker/check_engine.py (aiodocker smoke
#             test: network none, Init, bind-mounted Unix socket, kill, remove)
#
# Stages:
#   1. engine  `docker info` answers, or: apt-get install docker.io if dockerd
#              is missing, then start `dockerd --bridge=none` in the background
#              (retried with --iptables=false) and wait for it.
#   2. base    hodei-base:bookworm from `debootstrap --variant=minbase
#              --include=python3,python3-venv bookworm`, via `docker import`.
#              Skipped when the image exists.
#   3. worker  hodei-worker:latest, built by `hodeid build-image` (Dockerfile.worker
#              and wheels of the project and its dependencies, network none).
#              Skipped when the image's label hodei.source-hash matches.
#
# Environment:
#   HODEI_WORKER_IMAGE      worker image tag          (hodei-worker:latest)
#   HODEI_BASE_IMAGE        base image tag            (hodei-base:bookworm)
#   HODEI_SRC_DIR           project to build wheels from (the repo root)
#   HODEI_HODEID            the hodeid that builds the image (hodeid on the PATH)
#   HODEI_PYTHON            Python whose version must match the base image's
#                           (default: hodeid's own, else python3)
#   HODEI_DEBIAN_MIRROR     Debian mirror for debootstrap (read from apt's
#                           sources when unset)
#   HODEI_DOCKERD_TIMEOUT   seconds to wait for dockerd to answer (60)
#   HODEI_SETUP_LOG_DIR     where stage logs go (/var/log/hodei-docker-setup)
#   HODEI_FORCE_REBUILD=1   rebuild the worker image even if its hash matches
#   HODEI_CHECK_PYTHON      Python with aiodocker for --check (REPO/.venv/bin/python)
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$REPO_DIR/scripts/docker-setup.sh"
SRC_DIR="${HODEI_SRC_DIR:-$REPO_DIR}"
BASE_IMAGE="${HODEI_BASE_IMAGE:-hodei-base:bookworm}"
WORKER_IMAGE="${HODEI_WORKER_IMAGE:-hodei-worker:latest}"
HODEID="${HODEI_HODEID:-hodeid}"
PYTHON="${HODEI_PYTHON:-python3}"
if [ -z "${HODEI_PYTHON:-}" ] && [ -x "$(dirname "$(command -v "$HODEID" || echo /none)")/python" ]; then
    PYTHON="$(dirname "$(command -v "$HODEID")")/python"  # the Python hodeid build-image makes wheels with
fi
DOCKERD_TIMEOUT="${HODEI_DOCKERD_TIMEOUT:-60}"
LOG_DIR="${HODEI_SETUP_LOG_DIR:-/var/log/hodei-docker-setup}"
DOCKERD_LOG="/var/log/hodei-dockerd.log"
DOCKERFILE="$REPO_DIR/hodeid/Dockerfile.worker"
SUITE="bookworm"
HASH_LABEL="hodei.source-hash"

RUN_CHECK=0
for arg in "$@"; do
    case "$arg" in
        --check) RUN_CHECK=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "docker-setup: unknown argument '$arg' (try --help)." >&2; exit 2 ;;
    esac
done

export DEBIAN_FRONTEND=noninteractive
# The legacy builder: BuildKit would want the buildx plugin, and
# `--network none` is all this build needs.
export DOCKER_BUILDKIT=0

say() { printf '[docker-setup] %s\n' "$*"; }
fail() { printf '[docker-setup] FAILED: %s\n' "$*" >&2; exit 1; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

show_log() {
    printf '[docker-setup] --- last lines of %s ---\n' "$1" >&2
    tail -n 60 "$1" >&2 || true
    printf '[docker-setup] --- end of %s ---\n' "$1" >&2
}

# step DESCRIPTION LOGNAME CMD...: run CMD with its output in
# $LOG_DIR/LOGNAME.log, on one progress line with its time; on failure show
# the end of that log and return the command's status.
step() {
    local desc="$1" log="$LOG_DIR/$2.log" t0 rc=0
    shift 2
    t0="$(now)"
    printf '[docker-setup]   %s ...' "$desc"
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        printf ' %s\n' "$(elapsed "$t0")"
    else
        printf ' failed (exit %s)\n' "$rc"
        show_log "$log"
    fi
    return "$rc"
}

[ "$(id -u)" -eq 0 ] || fail "this script must run as root (it installs packages and starts dockerd)."
mkdir -p "$LOG_DIR"

# One run at a time: concurrent runs would race on apt, dockerd and the tags.
# (dockerd and containerd are started with fd 9 closed, or they would hold it.)
exec 9>"/var/lock/hodei-docker-setup.lock"
flock -w 900 9 || fail "another docker-setup run has held /var/lock/hodei-docker-setup.lock for 15 minutes."

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        step "apt-get update" apt-update apt-get update || fail "apt-get update failed (see $LOG_DIR/apt-update.log)."
        APT_UPDATED=1
    fi
    step "apt-get install $*" "apt-install-$1" apt-get install -y --no-install-recommends "$@" \
        || fail "apt-get install $* failed (see $LOG_DIR/apt-install-$1.log)."
}

docker_answers() { timeout 15 docker info >/dev/null 2>&1; }

# pid_is PIDFILE NAME: the pid file names a live process called NAME.
pid_is() {
    local pid
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

# /run is not a tmpfs on every machine here, so files from a dockerd of an
# earlier session may outlive it. dockerd refuses to start beside a pid file
# whose pid is alive (maybe reused by something else), and its managed
# containerd trusts containerd.pid the same way: drop the ones that lie.
clean_stale_pidfiles() {
    if [ -e /var/run/docker.pid ] && ! pid_is /var/run/docker.pid dockerd; then
        rm -f /var/run/docker.pid
    fi
    if [ -e /var/run/docker/containerd/containerd.pid ] \
        && ! pid_is /var/run/docker/containerd/containerd.pid containerd; then
        rm -f /var/run/docker/containerd/containerd.pid
    fi
}

# dockerd 20.10 starts a containerd of its own (socket under
# /var/run/docker/containerd) unless /run/containerd/containerd.sock exists, in
# which case it uses that one and fails if nobody answers on it. A socket
# left by a system containerd that is gone: start that containerd again.
ensure_system_containerd() {
    local sock=/run/containerd/containerd.sock
    [ -S "$sock" ] || return 0
    if timeout 5 ctr --address "$sock" version >/dev/null 2>&1; then
        return 0
    fi
    command -v containerd >/dev/null || fail "$sock exists but no containerd answers on it and none is installed."
    say "  starting containerd (its socket $sock was left without a server)"
    setsid nohup containerd >>/var/log/hodei-containerd.log 2>&1 </dev/null 9>&- &
    local i
    for ((i = 0; i < 30; i++)); do
        timeout 5 ctr --address "$sock" version >/dev/null 2>&1 && return 0
        sleep 1
    done
    fail "containerd did not answer on $sock within 30 s (see /var/log/hodei-containerd.log)."
}

# wait_for_engine PID: poll `docker info` until it answers (0), the process
# PID dies (1) or the timeout passes (2).
wait_for_engine() {
    local pid="$1" deadline=$((SECONDS + DOCKERD_TIMEOUT))
    while ((SECONDS < deadline)); do
        docker_answers && return 0
        kill -0 "$pid" 2>/dev/null || { docker_answers && return 0; return 1; }
        sleep 0.5
    done
    return 2
}

# start_dockerd FLAGS...: start dockerd in its own session, wait for it; on
# failure stop it again (by its pid) and return non-zero.
start_dockerd() {
    say "  starting dockerd $* (log: $DOCKERD_LOG)"
    printf '\n=== %s: dockerd %s ===\n' "$(date -u +%FT%TZ)" "$*" >>"$DOCKERD_LOG"
    setsid nohup dockerd "$@" >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
    local pid=$! rc=0
    wait_for_engine "$pid" || rc=$?
    [ "$rc" -eq 0 ] && return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    return "$rc"
}

stage_engine() {
    if docker_answers; then
        say "engine: already answering"
        return 0
    fi
    say "engine: \`docker info\` does not answer; bringing up dockerd"
    if ! command -v dockerd >/dev/null; then
        apt_install docker.io
    fi
    command -v docker >/dev/null || fail "the docker client is missing although docker.io is installed."

    # A dockerd that is already up but still starting (or hung): wait on it
    # rather than starting a second one.
    if pid_is /var/run/docker.pid dockerd; then
        local pid
        pid="$(cat /var/run/docker.pid)"
        say "  waiting for the running dockerd (pid $pid)"
        wait_for_engine "$pid" && return 0
        fail "a dockerd (pid $pid) is running but \`docker info\` got no answer within ${DOCKERD_TIMEOUT} s; see $DOCKERD_LOG."
    fi

    clean_stale_pidfiles
    ensure_system_containerd
    # Workers use network mode none and a bind-mounted Unix socket: no bridge.
    if start_dockerd --bridge=none; then return 0; fi
    say "  dockerd did not come up; trying again without iptables"
    clean_stale_pidfiles
    if start_dockerd --bridge=none --iptables=false; then return 0; fi
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    fail "dockerd did not answer within ${DOCKERD_TIMEOUT} s, with or without iptables; see $DOCKERD_LOG."
}

# The Debian mirror apt already uses for $SUITE (falling back to the host's
# own codename, whose archive serves $SUITE too). Reads one-line sources
# (sources.list, *.list) and deb822 ones (*.sources), as apt does.
debian_mirror() {
    if [ -n "${HODEI_DEBIAN_MIRROR:-}" ]; then
        printf '%s\n' "$HODEI_DEBIAN_MIRROR"
        return 0
    fi
    local host_codename="" files=() f
    # shellcheck disable=SC1091
    host_codename="$(. /etc/os-release 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}")" || true
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ "${#files[@]}" -gt 0 ] || return 1
    awk -v want="$SUITE" -v alt="$host_codename" '
        function consider(uri, suite) {
            if (uri !~ /^(https?|ftp|file):/) return
            if (suite == want && first_want == "") first_want = uri
            if (alt != "" && suite == alt && first_alt == "") first_alt = uri
        }
        function flush(   i, j, nu, ns, us, ss, t) {
            if (is822 && types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") {
                nu = split(uris, us, /[ \t]+/); ns = split(suites, ss, /[ \t]+/)
                for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
                    if (us[i] != "" && ss[j] != "") consider(us[i], ss[j])
            }
            types = ""; uris = ""; suites = ""; enabled = ""
        }
        FNR == 1 { flush(); is822 = (FILENAME ~ /\.sources$/) }
        {
            if ($0 ~ /^[ \t]*#/) next               # a comment line, even inside a stanza
            line = $0; sub(/#.*/, "", line)
            if (is822) {
                if (line ~ /^[ \t]*$/) { flush(); next }
                if (line ~ /^[ \t]/) next           # continuation lines: not needed here
                key = tolower(line); sub(/:.*/, "", key)
                val = line; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = tolower(val)
                next
            }
            n = split(line, w, /[ \t]+/); k = 1
            if (w[k] == "") k++
            if (w[k] != "deb") next
            k++
            if (w[k] ~ /^\[/) { while (k <= n && w[k] !~ /\]$/) k++; k++ }
            if (k + 1 <= n) consider(w[k], w[k + 1])
        }
        END {
            flush()
            if (first_want != "") print first_want
            else if (first_alt != "") print first_alt
            else exit 1
        }
    ' "${files[@]}"
}

stage_base() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "base: $BASE_IMAGE already present"
        return 0
    fi
    say "base: building $BASE_IMAGE"
    command -v debootstrap >/dev/null || apt_install debootstrap
    local mirror
    mirror="$(debian_mirror)" \
        || fail "no Debian mirror for $SUITE found in /etc/apt/sources.list{,.d}; set HODEI_DEBIAN_MIRROR."
    local rootfs
    rootfs="$(mktemp -d /var/tmp/hodei-rootfs.XXXXXX)"
    # shellcheck disable=SC2064
    trap "rm -rf '$rootfs'" EXIT
    step "debootstrap --variant=minbase $SUITE from $mirror (about a minute)" debootstrap debootstrap --variant=minbase --include=python3,python3-venv \
        "$SUITE" "$rootfs" "$mirror" \
        || fail "debootstrap of $SUITE failed (see $LOG_DIR/debootstrap.log)."
    # Downloaded packages and package lists are of no use without a network;
    # /dev is mounted over by Docker in every container.
    rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/cache/apt/*.bin \
        "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/dev/*
    tar -C "$rootfs" -c . | step "docker import $BASE_IMAGE" docker-import docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase with python3, made by debootstrap\"" \
        - "$BASE_IMAGE" \
        || fail "docker import of the $SUITE root file system failed (see $LOG_DIR/docker-import.log)."
    rm -rf "$rootfs"
    trap - EXIT
}

# A hash of what goes into the worker image: every file of the project's
# top-level Python packages (and of src/, if any), its packaging files,
# Dockerfile.worker, this script and the base image's id.
source_hash() {
    local base_id
    base_id="$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")"
    {
        (
            cd "$SRC_DIR"
            {
                local d
                for d in */; do
                    d="${d%/}"
                    if [ -f "$d/__init__.py" ] || [ "$d" = src ]; then
                        find "$d" \( -name __pycache__ -o -name '*.egg-info' -o -name '.?*' \) -prune \
                            -o -type f ! -name '*.py[co]' -print0
                    fi
                done
                find . -maxdepth 1 -type f \( -name pyproject.toml -o -name setup.cfg -o -name setup.py \
                    -o -name 'README*' -o -name 'LICENSE*' -o -name MANIFEST.in \) -print0
            } | LC_ALL=C sort -z | xargs -0 -r sha256sum
        )
        sha256sum <"$DOCKERFILE"
        sha256sum <"$SELF"
        printf 'base %s\n' "$base_id"
    } | sha256sum | cut -c1-64
}

stage_worker() {
    [ -f "$DOCKERFILE" ] || fail "$DOCKERFILE is missing."
    [ -f "$SRC_DIR/pyproject.toml" ] || fail "no pyproject.toml in $SRC_DIR (HODEI_SRC_DIR)."
    local hash current
    hash="$(source_hash)"
    current="$(docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$WORKER_IMAGE" 2>/dev/null || true)"
    if [ "$current" = "$hash" ] && [ "${HODEI_FORCE_REBUILD:-0}" != 1 ]; then
        say "worker: $WORKER_IMAGE is up to date (${hash:0:12})"
        return 0
    fi

    say "worker: building $WORKER_IMAGE${current:+ (sources changed)}"
    # The wheels are made by the host's Python, so compiled dependencies must
    # match the image's Python.
    command -v "$PYTHON" >/dev/null || fail "$PYTHON (HODEI_PYTHON) is not installed."
    local host_py image_py
    host_py="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    image_py="$(docker run --rm --network none --entrypoint python3 "$BASE_IMAGE" \
        -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
        || fail "could not run python3 in $BASE_IMAGE."
    [ "$host_py" = "$image_py" ] \
        || fail "$PYTHON is Python $host_py but $BASE_IMAGE has $image_py: set HODEI_PYTHON to a python$image_py."

    # The one documented way to build the worker image: hodeid build-image (Docker API, network none,
    # wheels made by pip on this host).
    command -v "$HODEID" >/dev/null \
        || fail "$HODEID is not on the PATH: install hodei first (./scripts/test.sh does), or set HODEI_HODEID."
    step "hodeid build-image $WORKER_IMAGE (${hash:0:12})" build-image "$HODEID" build-image -q \
        --source "$SRC_DIR" --base "$BASE_IMAGE" --tag "$WORKER_IMAGE" --label "$HASH_LABEL=$hash" \
        || fail "hodeid build-image of $WORKER_IMAGE failed (see $LOG_DIR/build-image.log)."

    # The agent's entry point must load: catches a wheel that does not fit.
    step "check that hodei-agent loads in $WORKER_IMAGE" worker-smoke docker run --rm --network none --entrypoint /opt/hodei/bin/python \
        "$WORKER_IMAGE" -c '
import importlib.metadata as md
eps = [e for e in md.entry_points(group="console_scripts") if e.name == "hodei-agent"]
assert eps, "no hodei-agent console script"
eps[0].load()
' || fail "the hodei-agent entry point does not load in $WORKER_IMAGE (see $LOG_DIR/worker-smoke.log)."
    # Earlier builds of the worker, now untagged.
    docker image prune -f --filter "label=$HASH_LABEL" >/dev/null 2>&1 || true
}

t_all="$(now)"
t="$(now)"; stage_engine; say "engine ready ($(elapsed "$t"))"
t="$(now)"; stage_base; say "base image $BASE_IMAGE ready ($(elapsed "$t"))"
t="$(now)"; stage_worker; say "worker image $WORKER_IMAGE ready ($(elapsed "$t"))"
if [ "$RUN_CHECK" -eq 1 ]; then
    check_py="${HODEI_CHECK_PYTHON:-$REPO_DIR/.venv/bin/python}"
    [ -x "$check_py" ] || fail "$check_py (HODEI_CHECK_PYTHON) is not there to run the check."
    t="$(now)"
    "$check_py" "$REPO_DIR/scripts/docker/check_engine.py" --image "$BASE_IMAGE" \
        || fail "the engine check failed."
    say "engine check passed ($(elapsed "$t"))"
fi
say "done in $(elapsed "$t_all")"
