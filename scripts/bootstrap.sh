# Sourced by the other scripts: a project venv with hodei installed (editable), made with nothing but python3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HODEI_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    python3 -m venv "$VENV"
fi
stamp="$VENV/.hodei-installed$EXTRAS"
if [ ! -e "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "==> installing hodei${EXTRAS:+ with $EXTRAS} into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT${EXTRAS:+[$EXTRAS]}" 2>&1 \
        | { grep -v -e '^WARNING: Location' -e 'is ignored: it is neither a file nor a directory' || true; }
    touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
