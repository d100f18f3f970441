#!/usr/bin/env bash
# Build the image tests/test_systemd.py boots (systemd as PID 1, see systemd.Dockerfile beside this
# script), once: it is rebuilt only when that Dockerfile, this script or the base image change (label
# hodei.source-hash), as scripts/docker-setup.sh does for the worker image. Prints the image's tag.
#
# The build fetches systemd's packages from the Debian mirror in the base image's apt sources, so it
# runs with network host; the containers booted from the image need no network.
#
# Environment: HODEI_SYSTEMD_IMAGE (hodei-systemd:bookworm), HODEI_BASE_IMAGE (hodei-base:bookworm,
# made by scripts/docker-setup.sh).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKERFILE="$HERE/systemd.Dockerfile"
TAG="${HODEI_SYSTEMD_IMAGE:-hodei-systemd:bookworm}"
BASE="${HODEI_BASE_IMAGE:-hodei-base:bookworm}"
HASH_LABEL="hodei.source-hash"
KIND_LABEL="hodei.systemd-image"  # marks every build of this image, so that old ones can be pruned

fail() { printf 'systemd-image: %s\n' "$*" >&2; exit 1; }

base_id="$(docker image inspect -f '{{.Id}}' "$BASE" 2>/dev/null)" \
    || fail "the base image $BASE is missing: run scripts/docker-setup.sh (as root) first."
hash="$({ sha256sum <"$DOCKERFILE"; sha256sum <"${BASH_SOURCE[0]}"; printf 'base %s\n' "$base_id"; } | sha256sum | cut -c1-64)"
current() { docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$TAG" 2>/dev/null || true; }

if [ "$(current)" != "$hash" ]; then
    exec 9>/var/lock/hodei-systemd-image.lock  # one build at a time; a second run waits, then finds it built
    flock -w 900 9 || fail "another build has held /var/lock/hodei-systemd-image.lock for 15 minutes."
    if [ "$(current)" != "$hash" ]; then
        log="$(mktemp /tmp/hodei-systemd-image.XXXXXX.log)"
        if ! DOCKER_BUILDKIT=0 docker build --network host --force-rm --build-arg "BASE=$BASE" \
            --label "$HASH_LABEL=$hash" --label "$KIND_LABEL=1" -t "$TAG" - <"$DOCKERFILE" >"$log" 2>&1; then
            tail -n 40 "$log" >&2
            rm -f "$log"
            fail "docker build of $TAG failed."
        fi
        rm -f "$log"
        docker image prune -f --filter "label=$KIND_LABEL" >/dev/null 2>&1 || true  # earlier builds, untagged
    fi
fi
printf '%s\n' "$TAG"
