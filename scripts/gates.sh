#!/usr/bin/env bash
# The quality gates: ruff (the rules in pyproject.toml) over the whole tree, and mypy --strict over the
# packages (pyproject.toml's [tool.mypy] files). Prints every finding, then each tool's count and time.
# Exit 0: no finding; 1: findings; 2: a tool could not run. scripts/test.sh runs this before pytest.
source "$(dirname "$0")/bootstrap.sh" test
cd "$ROOT"

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
worst=0
# $1: the gate's name; the rest: its command. Findings go to stdout; the tool's own exit code decides.
gate() {
    local name="$1" t0 out rc=0 count
    shift
    t0="$(now)"
    out="$("$@" 2>&1)" || rc=$?
    case "$name" in
        ruff) count="$(grep -cE '^[^ ]+:[0-9]+:[0-9]+: ' <<<"$out" || true)" ;;
        mypy) count="$(grep -cE '^[^ ]+:[0-9]+: error: ' <<<"$out" || true)" ;;
    esac
    if [ "$rc" -eq 0 ]; then
        echo "==> $name: no findings ($(took "$t0"))"
        return
    fi
    printf '%s\n' "$out"
    if [ "$rc" -eq 1 ] && [ "$count" -gt 0 ]; then
        echo "==> $name: $count findings ($(took "$t0"))"
        [ "$worst" -ge 1 ] || worst=1
    else
        echo "==> $name could not run (exit $rc)" >&2
        worst=2
    fi
}
gate ruff ruff check --output-format concise --quiet .
gate mypy mypy --strict
exit "$worst"
