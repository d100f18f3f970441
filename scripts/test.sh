#!/usr/bin/env bash
# The whole test suite: install hodei with its test dependencies, bring a Docker engine and the worker
# image when this machine can (root on Debian), and run pytest. Extra arguments go to pytest.
source "$(dirname "$0")/bootstrap.sh" test
cd "$ROOT"
if [ -x "$ROOT/scripts/docker-setup.sh" ] && [ "${HODEI_SKIP_DOCKER_SETUP:-}" != 1 ]; then
    if ! "$ROOT/scripts/docker-setup.sh"; then
        if [ "${CI:-}" = true ]; then
            echo "docker setup failed, and CI=true requires the Docker tests to run" >&2
            exit 1
        fi
        echo "==> no Docker engine: the docker tests will fail unless you deselect them (-m 'not docker')" >&2
    fi
fi
exec python -m pytest "$@"
