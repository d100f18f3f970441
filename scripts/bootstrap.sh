# Sourced by the other scripts: a project venv with hodei installed (editable), made with nothing but python3.
#
# The interpreter: $HODEI_PYTHON if set; else the distribution's /usr/bin/python3 when it is 3.11+ with
# venv, because distributions build it with PGO and LTO (a pyenv build, first on PATH on some boxes, is not,
# and runs every Python part of hodei slower: see docs/benchmarks.md) and because a
# system service should not hang on a per-user interpreter; else python3 from PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HODEI_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"
pick_python() {
    if [ -n "${HODEI_PYTHON:-}" ]; then echo "$HODEI_PYTHON"; return; fi
    local py
    for py in /usr/bin/python3 python3; do
        if "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$py"; return
        fi
    done
    echo python3
}
if [ ! -x "$VENV/bin/python" ]; then
    PY="$(pick_python)"
    echo "==> creating $VENV with $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.hodei-installed$EXTRAS"
if [ ! -e "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "==> installing hodei${EXTRAS:+ with $EXTRAS} into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT${EXTRAS:+[$EXTRAS]}" 2>&1 \
        | { grep -v -e '^WARNING: Location' -e 'is ignored: it is neither a file nor a directory' || true; }
    touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
