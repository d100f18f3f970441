"""Imported first by every bench script: re-exec it with the repo's .venv/bin/python (or --venv DIR /
HODEI_BENCH_VENV: the hodei installed in another venv), so that it runs with any python3, and put the
repo on sys.path. It imports nothing of hodei: a script may still choose which copy of the code to load."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_venv_arg = next((a.split("=", 1)[1] if "=" in a else sys.argv[i + 2] for i, a in enumerate(sys.argv[1:])
                  if a.split("=", 1)[0] == "--venv" and ("=" in a or i + 2 < len(sys.argv))), None)
VENV = Path(_venv_arg or os.environ.get("HODEI_BENCH_VENV") or REPO / ".venv").resolve()
if (VENV / "bin" / "python").exists() and Path(sys.prefix).resolve() != VENV:
    os.execv(str(VENV / "bin" / "python"), [str(VENV / "bin" / "python"), sys.argv[0], *sys.argv[1:]])
sys.path.insert(0, str(REPO))
