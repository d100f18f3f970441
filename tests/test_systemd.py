"""The system service under a real systemd: a Debian box booted with systemd as PID 1 in a container on
the host's Docker engine (no network), hodei installed on it exactly as the README says, then used as its
users would: plain `hodeictl`, a job that behaves as in the user's login shell, warnings in the journal,
jobs that outlive `systemctl restart hodeid`, and no "left-over process" complaints from systemd.

The box's image (scripts/docker/systemd-image.sh) is built once and kept, like the worker image; the
container and every temp dir are removed after the module, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_root, wait_for

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.docker


def run(*cmd: str, check: bool = True, timeout: float = 300, input: bytes | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, timeout=timeout, input=input, cwd=cwd, check=False)
    out = subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode(errors="replace"),
                                      res.stderr.decode(errors="replace"))
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {res.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def readme_install_steps() -> str:
    """The first sh block of the README's section on the system service: what the test runs, verbatim."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Running as a systemd service"):]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the README's systemd section has no sh block of install steps"
    return match.group(1)


class Box:
    """A container booted with systemd as PID 1."""

    def __init__(self, name: str) -> None:
        self.name = name

    def root(self, script: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run("docker", "exec", self.name, "bash", "-c", script, check=check, timeout=timeout)

    def login(self, user: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``script`` in a login shell of ``user`` (su -), as after logging in."""
        return run("docker", "exec", self.name, "su", "-", user, "-c", script, check=check, timeout=120)

    def journal(self, *args: str) -> str:
        return self.root("journalctl --no-pager -o cat " + " ".join(args)).stdout

    def job(self, user: str, job_id: int) -> dict:
        return json.loads(self.login(user, f"hodeictl show {job_id} --json").stdout)


def _wheels(into: Path) -> None:
    """hodei and its dependencies, and hatchling for `pip install .`: the box installs with no network."""
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir", str(into)]
    run(*pip, str(REPO), timeout=600)
    run(*pip, "hatchling", timeout=600)


def _source_tar() -> bytes:
    """The working tree (what git would commit, uncommitted changes included), as hodei/ in a tar."""
    names = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO).stdout.split("\0")
    with tempfile.TemporaryFile() as f:
        with tarfile.open(fileobj=f, mode="w") as tar:
            for name in filter(None, names):
                if (REPO / name).is_file():
                    tar.add(REPO / name, arcname=f"hodei/{name}")
        f.seek(0)
        return f.read()


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    need_root("needs root to run the Docker engine's systemd container")
    try:
        run("docker", "info", timeout=30)
        run("docker", "image", "inspect", "hodei-base:bookworm", timeout=30)
    except (AssertionError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        why = f"no Docker engine with hodei-base:bookworm ({e}); run scripts/docker-setup.sh as root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires the systemd tests to run, but {why}")
        pytest.skip(why)
    image = run(str(REPO / "scripts" / "docker" / "systemd-image.sh"), timeout=900).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="hodei-systemd-"))
    name = f"hodei-systemd-test-{secrets.token_hex(4)}"
    try:
        _wheels(tmp / "wheels")
        run("docker", "run", "-d", "--name", name, "--network", "none", "--cap-add", "ALL",
            "--cap-drop", "SYS_RESOURCE", "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", image)
        b = Box(name)
        wait_for(lambda: b.root("systemctl is-system-running", check=False).stdout.strip() in ("running", "degraded"),
                 timeout=60, interval=0.2, what="systemd to boot in the container")
        run("docker", "cp", str(tmp / "wheels"), f"{name}:/wheels")
        run("docker", "cp", "-", f"{name}:/root", input=_source_tar())
        # This box has no network: pip takes everything from /wheels (as an offline site would set it up).
        b.root("printf '[global]\\nno-index = true\\nfind-links = /wheels\\n' > /etc/pip.conf")
        b.root("cd /root/hodei && set -ex\n" + readme_install_steps(), timeout=600)
        b.root("useradd -m -s /bin/bash alice && useradd -m -s /bin/bash bob && usermod -aG hodei alice")
        # alice's login shell has its own umask and open-file limit, unlike any default of hodeid's
        b.root("echo 'umask 027; ulimit -Sn 4000' >> /home/alice/.profile")
        yield b
    finally:
        if os.environ.get("HODEI_KEEP_SYSTEMD_BOX") != "1":
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, timeout=120, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_readme_install_gives_an_active_notify_service(box: Box) -> None:
    """After the README's steps the unit is active (Type=notify, so hodeid said READY=1), its
    Documentation= exists, it pulls in no other service, and hodeictl is on every user's PATH."""
    assert box.root("systemctl is-active hodeid").stdout.strip() == "active"
    props = box.root("systemctl show hodeid -p Type -p Documentation -p Wants").stdout
    assert "Type=notify" in props
    doc = re.search(r"Documentation=file://(\S+)", props)
    assert doc and box.root(f"test -s {doc.group(1)}", check=False).returncode == 0, props
    assert "docker" not in re.search(r"Wants=(.*)", props).group(1)  # type: ignore[union-attr]
    assert box.login("bob", "command -v hodeictl").stdout.strip() == "/usr/local/bin/hodeictl"
    assert box.root("stat -c '%a %G' /run/hodei/hodei.sock").stdout.split() == ["660", "hodei"]


def test_a_group_member_submits_with_plain_hodeictl(box: Box) -> None:
    """alice, in the hodei group, runs hodeictl with no flags: her job runs as her."""
    res = box.login("alice", "hodeictl submit -f 'id -un; pwd'")
    assert res.stdout == "alice\n/home/alice\n"


def test_a_user_outside_the_group_is_told_what_to_run(box: Box) -> None:
    res = box.login("bob", "hodeictl list", check=False)
    assert res.returncode == 77
    assert res.stderr == ("hodeictl: you are not in the `hodei` group, which may use hodeid at /run/hodei/hodei.sock:"
                          " run `sudo usermod -aG hodei $USER`, then log in again\n")


def test_a_job_behaves_as_in_the_login_shell(box: Box) -> None:
    """umask and open-file limit as in alice's login shell; for root, the same namespaces, capabilities
    and seccomp filters as a root login shell (no sandbox of the unit's), so kernel modules, dmesg and
    mounts are as the shell sees them."""
    shell = box.login("alice", "umask; ulimit -n").stdout
    assert shell == "0027\n4000\n"
    assert box.login("alice", "hodeictl submit -f 'umask; ulimit -n'").stdout == shell
    probe = ("readlink /proc/self/ns/mnt; grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp|Seccomp_filters):'"
             " /proc/self/status; dmesg >/dev/null 2>&1; echo dmesg $?")
    shell = box.login("root", probe).stdout
    assert box.login("root", f"hodeictl submit -f \"{probe}\"").stdout == shell


def test_a_lost_worker_is_a_warning_in_the_journal(box: Box) -> None:
    """Kill an agent mid-job: `journalctl -u hodeid -p warning` shows the lost worker. The agent ran in
    a scope of its own, outside hodeid's service."""
    job = int(box.login("alice", "hodeictl submit 'sleep 300'").stdout)
    wait_for(lambda: box.job("alice", job)["state"] == "running", timeout=30, what="the job to run")
    worker = box.job("alice", job)["worker_id"]
    agent = box.root(f"grep -lz '^HODEI_WORKER_ID={worker}$' /proc/[0-9]*/environ").stdout.split("/")[2]
    cgroup = box.root(f"cat /proc/{agent}/cgroup").stdout
    box.root(f"kill -KILL {agent}")
    wait_for(lambda: box.job("alice", job)["state"] == "lost", timeout=60, what="the job to be marked lost")
    box.root("pkill -KILL -u alice -x sleep", check=False)  # the orphaned job
    warnings = box.journal("-u", "hodeid", "-p", "warning")
    assert f"worker {worker} lost: " in warnings, warnings
    assert f"/hodei-workers.slice/hodei-worker-{worker}.scope" in cgroup and "hodeid.service" not in cgroup, cgroup


def test_jobs_survive_restart_and_stop_with_no_left_over_warnings(box: Box) -> None:
    """A running job's output is complete across `systemctl restart hodeid`, and across a stop and a
    start; systemd never finds a left-over process of the service."""
    job = int(box.login("alice", "hodeictl submit 'for i in $(seq 1 10); do echo line $i; sleep 0.4; done'").stdout)
    wait_for(lambda: box.job("alice", job)["state"] == "running", timeout=30, what="the job to run")
    box.root("systemctl restart hodeid")
    assert box.root("systemctl is-active hodeid").stdout.strip() == "active"
    box.login("alice", f"hodeictl wait {job}")
    assert box.login("alice", f"hodeictl logs {job}").stdout == "".join(f"line {i}\n" for i in range(1, 11))

    job = int(box.login("alice", "hodeictl submit 'sleep 2; echo done'").stdout)
    wait_for(lambda: box.job("alice", job)["state"] == "running", timeout=30, what="the job to run")
    box.root("systemctl stop hodeid && systemctl start hodeid")
    box.login("alice", f"hodeictl wait {job}")
    assert box.login("alice", f"hodeictl logs {job}").stdout == "done\n"

    journal = box.journal()
    for complaint in ("left-over process", "unclean termination", "remains running after unit stopped"):
        assert complaint not in journal, [line for line in journal.splitlines() if complaint in line]
