"""`hodeid build-image` from hodei installed with pip, as the README's service section installs it: no
checkout in reach, and the image it builds runs jobs."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Daemon

BASE = os.environ.get("HODEI_BASE_IMAGE", "hodei-base:bookworm")
REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.docker


def run(*cmd: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout,
                         check=False)
    if res.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} -> {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res.stdout


@pytest.fixture(scope="module")
def base_image() -> str:
    try:
        run("docker", "image", "inspect", BASE, timeout=60)
    except (AssertionError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        why = f"no Docker engine with the base image {BASE} ({e}); run scripts/docker-setup.sh as root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires the Docker tests to run, but {why}")
        pytest.skip(why)
    return BASE


@pytest.fixture
def installed_hodeid(tmp_path: Path) -> Path:
    """hodeid in a fresh venv, installed (not editable) from a wheel of this checkout."""
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, REPO)
    (wheel,) = dist.glob("hodei-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    return venv / "bin" / "hodeid"


def test_build_image_from_an_installed_hodei_runs_jobs(base_image: str, installed_hodeid: Path, tmp_path: Path,
                                                       make_daemon) -> None:
    """Installed from a wheel, with no checkout in reach, `hodeid build-image` builds a worker image
    whose agent registers with hodeid and runs a job."""
    tag = f"hodei-worker-test-{secrets.token_hex(4)}:latest"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    d: Daemon | None = None
    try:
        run(installed_hodeid, "build-image", "-q", "--base", base_image, "--tag", tag, cwd=elsewhere)
        d = make_daemon("--provider", "docker", "--image", tag, "--network", "none", "--provision-timeout", "60")
        # From a directory without a hodei/ in it: the job runs there (mounted), and python -c imports from it.
        res = d.ctl("submit", "-f", "echo hi from $(/opt/hodei/bin/python -c 'import hodei; print(hodei.__file__)')",
                    timeout=120, cwd=elsewhere)
        out = res.stdout.decode()
        assert out.startswith("hi from /opt/hodei/lib/python3.") and out.endswith("/site-packages/hodei/__init__.py\n")
        (worker,) = d.workers()
        assert worker["image"] == tag and worker["provider"] == "docker"
    finally:
        if d is not None:
            d.stop()
            instance = (d.state_dir / "instance").read_text().strip()
            ours = run("docker", "ps", "-aq", "--filter", f"label=hodei.instance={instance}").split()
            if ours:
                run("docker", "rm", "-f", *ours)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120, check=False)
