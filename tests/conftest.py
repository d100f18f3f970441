"""A real hodeid in a temp dir, talked to over its real socket, running real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
FINAL = {"succeeded", "failed", "cancelled", "timed_out", "lost"}


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def processes_with_env(key: str, value: str) -> list[int]:
    """Pids of live processes whose environment has key=value (agents of one daemon, say)."""
    found = []
    needle = f"{key}={value}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0") and pid_alive(int(entry)):
                    found.append(int(entry))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return found


class Daemon:
    def __init__(self, root: Path, args: list[str]) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.socket = root / "hodei.sock"
        self.agent_socket = root / "agent" / "agent.sock"
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "hodeid.log"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HODEI_SOCKET"] = str(self.socket)
        # A root hodeid shares its socket with the `hodei` group when the box has one (a box with the
        # service installed): test daemons stay private unless a test passes --socket-group.
        env["HODEI_SOCKET_GROUP"] = ""
        env.pop("NO_COLOR", None)
        return env

    def start(self, extra: list[str] | None = None, wait: bool = True) -> Daemon:
        cmd = [str(BIN / "hodeid"), "--state-dir", str(self.state_dir), "--socket", str(self.socket),
               "--log-level", "debug", *self.args, *(extra or [])]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            wait_for(self.ready, timeout=15, what="hodeid to answer on its socket")
        return self

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"hodeid exited with {self.proc.returncode}:\n{self.log()}")
        return self.socket.exists() and self.ctl("list", "--json", check=False).returncode == 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ctl(self, *args: str, check: bool = True, timeout: float = 60, input: bytes | None = None,
            cwd: str | Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run hodeictl against this daemon, as a user would."""
        res = subprocess.run([str(BIN / "hodeictl"), *args], capture_output=True, timeout=timeout, input=input,
                             env={**self.env, **(env or {})}, cwd=cwd)
        if check and res.returncode != 0:
            raise AssertionError(f"hodeictl {' '.join(args)} -> {res.returncode}\n{res.stderr.decode(errors='replace')}")
        return res

    def popen_ctl(self, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(BIN / "hodeictl"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.env, **kw)

    def submit(self, *args: str) -> int:
        return int(self.ctl("submit", *args).stdout)

    def job(self, job_id: int) -> dict[str, Any]:
        return json.loads(self.ctl("show", str(job_id), "--json").stdout)

    def jobs(self) -> list[dict[str, Any]]:
        return json.loads(self.ctl("list", "--limit", "0", "--json").stdout)

    def workers(self) -> list[dict[str, Any]]:
        return json.loads(self.ctl("workers", "--json").stdout)

    def wait_state(self, job_id: int, states: set[str] | str, timeout: float = 20) -> dict[str, Any]:
        states = {states} if isinstance(states, str) else states
        return wait_for(lambda: (j := self.job(job_id))["state"] in states and j, timeout=timeout,
                        what=f"job {job_id} to be {'/'.join(sorted(states))}")

    def wait_final(self, job_id: int, timeout: float = 30) -> dict[str, Any]:
        return self.wait_state(job_id, FINAL, timeout)

    def output(self, job_id: int) -> bytes:
        return self.ctl("logs", str(job_id)).stdout

    def agents(self) -> list[int]:
        return processes_with_env("HODEI_AGENT_SOCKET", str(self.agent_socket))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._log.close()


@pytest.fixture
def make_daemon(request: pytest.FixtureRequest) -> Iterator[Callable[..., Daemon]]:
    """Start hodeid with extra flags; every daemon and agent is gone after the test."""
    made: list[Daemon] = []
    roots: list[Path] = []

    def make(*args: str, start: bool = True) -> Daemon:
        root = Path(tempfile.mkdtemp(prefix="hodei-t"))  # short: Unix socket paths are limited to 108 bytes
        roots.append(root)
        d = Daemon(root, ["--max-workers", "4", "--heartbeat-interval", "0.5", "--heartbeat-timeout", "5", *args])
        made.append(d)
        return d.start() if start else d

    yield make
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    for d in made:
        d.stop()
        if failed:
            sys.stderr.write(f"\n--- hodeid log ({d.root}) ---\n{d.log()[-20000:]}\n")
        for pid in d.agents():
            os.kill(pid, signal.SIGKILL)
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    return make_daemon()


@pytest.fixture
def shared(make_daemon: Callable[..., Daemon]) -> Daemon:
    """A root hodeid whose control socket is open to the `nogroup` group, so other users can reach it."""
    need_root("needs root to act as two users")
    d: Daemon = make_daemon("--socket-group", "nogroup", start=False)
    d.root.chmod(0o755)
    return d.start()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def need_root(why: str) -> None:
    """Skip a test that needs root when run by hand; under CI=true, fail instead: nothing skips silently."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true requires this test to run, but it {why} and this is not root")
    pytest.skip(why)
