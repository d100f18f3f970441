"""One private hodeid: its own state dir and sockets in a directory, started with the flags you give."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hodei.errors import HodeiError
from hodei.protocol import Ping
from hodeictl.client import Client

from .aclient import Client as AsyncClient
from .procs import kill_all, processes_with_env
from .wait import wait_for

BIN = Path(sys.executable).parent  # hodeid and hodeictl beside the interpreter: the venv being tested
FINAL = {"succeeded", "failed", "cancelled", "timed_out", "lost"}


class Daemon:
    """hodeid with `--state-dir ROOT/state --socket ROOT/hodei.sock --agent-socket ROOT/agent/agent.sock`.

    Its output goes to ROOT/hodeid.log (appended over restarts); it runs in ROOT, so that nothing in the
    caller's directory shadows the agent it starts with `python -m hodei_agent`. `ctl()` runs the real
    hodeictl against it, `client()` and `aclient()` give hodeictl's Client (blocking, awaitable).
    """

    def __init__(self, root: Path, args: Sequence[str] = (), *, log_level: str | None = None,
                 bin_dir: Path = BIN, hodeid: Sequence[str] | None = None, env: dict[str, str] | None = None) -> None:
        """`hodeid`: the command that starts it (default: BIN/hodeid), e.g. [python, "-m", "hodeid"] with
        `env={"PYTHONPATH": other_checkout}` to run another tree's code; `env` goes to hodeid and hodeictl."""
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.state_dir = root / "state"
        self.socket = root / "hodei.sock"
        self.agent_socket = root / "agent" / "agent.sock"  # passed explicitly: agents() looks for it
        self.log_path = root / "hodeid.log"
        self.args = list(args)
        self.log_level = log_level
        self.bin = bin_dir
        self.hodeid = list(hodeid) if hodeid else [str(bin_dir / "hodeid")]
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_in: float | None = None  # seconds from the last Popen to the first answer

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env, "HODEI_SOCKET": str(self.socket)}
        # A root hodeid shares its socket with the `hodei` group when the box has one (a box with the
        # service installed): a private daemon stays private unless its flags say --socket-group.
        env["HODEI_SOCKET_GROUP"] = ""
        env.pop("NO_COLOR", None)
        return env

    @property
    def pid(self) -> int:
        assert self.proc is not None, "hodeid was not started"
        return self.proc.pid

    @property
    def docker(self) -> bool:
        pairs = zip(self.args, self.args[1:], strict=False)
        return "--provider=docker" in self.args or any(p == ("--provider", "docker") for p in pairs)

    @property
    def instance(self) -> str:
        """The id hodeid labels its containers with (hodei.instance=ID); "" before its first start."""
        try:
            return (self.state_dir / "instance").read_text().strip()
        except OSError:
            return ""

    def command(self, extra: Sequence[str] = ()) -> list[str]:
        level = ["--log-level", self.log_level] if self.log_level else []
        return [*self.hodeid, "--state-dir", str(self.state_dir), "--socket", str(self.socket),
                "--agent-socket", str(self.agent_socket), *level, *self.args, *extra]

    def spawn(self, extra: Sequence[str] = ()) -> float:
        """Start hodeid without waiting for it; returns time.monotonic() just before the Popen."""
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(extra), stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.root)
        return t0

    def start(self, extra: Sequence[str] = (), wait: bool = True, timeout: float = 30,
              interval: float = 0.005) -> Daemon:
        """Start hodeid; with `wait`, return once it answers a Ping (AssertionError if it exits first)."""
        t0 = self.spawn(extra)
        if wait:
            wait_for(self.ready, timeout=timeout, interval=interval, what="hodeid to answer on its socket")
            self.started_in = time.monotonic() - t0
        return self

    async def astart(self, extra: Sequence[str] = (), timeout: float = 30) -> Daemon:
        """`start`, for an event loop that must keep running meanwhile."""
        import asyncio

        return await asyncio.to_thread(self.start, extra, True, timeout)

    def answers(self) -> bool:
        """Does hodeid answer a Ping on its control socket right now?"""
        try:
            with Client(self.socket, timeout=5) as c:
                c.request(Ping())
            return True
        except (OSError, HodeiError):
            return False

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"hodeid exited with {self.proc.returncode}:\n{self.log()[-5000:]}")
        return self.answers()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None, "hodeid was not started"
        self.proc.send_signal(sig)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` s (default 15; 30 on the docker provider, whose hodeid waits
        up to 20 s for its containers' removal); hodeid's exit status (None if it never started)."""
        if self.proc is None:
            return None
        if timeout is None:
            timeout = 30 if self.docker else 15
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9, and reap it."""
        assert self.proc is not None, "hodeid was not started"
        self.proc.kill()
        self.proc.wait()

    def agents(self) -> list[int]:
        """Pids of the live agents of this hodeid's agent socket (local provider)."""
        return processes_with_env("HODEI_AGENT_SOCKET", str(self.agent_socket))

    def kill_agents(self) -> int:
        pids = self.agents()
        kill_all(pids)
        return len(pids)

    # ---- as a user would: the real hodeictl --------------------------------------------------------

    def ctl(self, *args: str, check: bool = True, timeout: float = 60, input: bytes | None = None,
            cwd: str | Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run hodeictl against this daemon; with `check`, AssertionError on a non-zero exit."""
        res = subprocess.run([str(self.bin / "hodeictl"), *args], capture_output=True, timeout=timeout, input=input,
                             env={**self.env, **(env or {})}, cwd=cwd, check=False)
        if check and res.returncode != 0:
            raise AssertionError(
                f"hodeictl {' '.join(args)} -> {res.returncode}\n{res.stderr.decode(errors='replace')}")
        return res

    def popen_ctl(self, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen([str(self.bin / "hodeictl"), *args], env=self.env, **kw)

    def submit(self, *args: str) -> int:
        return int(self.ctl("submit", *args).stdout)

    def job(self, job_id: int) -> dict[str, Any]:
        job: dict[str, Any] = json.loads(self.ctl("show", str(job_id), "--json").stdout)
        return job

    def jobs(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = json.loads(self.ctl("list", "--limit", "0", "--json").stdout)
        return jobs

    def workers(self) -> list[dict[str, Any]]:
        workers: list[dict[str, Any]] = json.loads(self.ctl("workers", "--json").stdout)
        return workers

    def wait_state(self, job_id: int, states: set[str] | str, timeout: float = 20) -> dict[str, Any]:
        wanted = {states} if isinstance(states, str) else states

        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in wanted else None

        job: dict[str, Any] = wait_for(reached, timeout=timeout, what=f"job {job_id} to be {'/'.join(sorted(wanted))}")
        return job

    def wait_final(self, job_id: int, timeout: float = 30) -> dict[str, Any]:
        return self.wait_state(job_id, FINAL, timeout)

    def output(self, job_id: int) -> bytes:
        return self.ctl("logs", str(job_id)).stdout

    # ---- as a program would: hodeictl's Client ------------------------------------------------------

    def client(self, timeout: float | None = None) -> Client:
        return Client(self.socket, timeout=timeout)

    def aclient(self) -> AsyncClient:
        return AsyncClient(self.socket)
