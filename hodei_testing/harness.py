"""Every hodeid a test or a benchmark starts, under one temp dir, and the cleanup of all they started."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from .daemon import Daemon
from .procs import kill_all, processes_with_env


class Harness:
    """A temp dir (short: Unix socket paths are limited to 108 bytes) and the daemons made in it.

    With `mark`, os.environ[mark] is set to a fresh token, so that every process started from now on
    (hodeid, its agents, their jobs, whatever a benchmark runs itself) carries it: cleanup finds
    them by it. `cleanup()` stops every daemon (SIGTERM, then SIGKILL), kills their agents and every
    marked process, removes the containers of the docker daemons (and any carrying `labels`), and
    removes the temp dir unless `keep`. It says what it did and what was left.
    """

    def __init__(self, prefix: str = "hodei-", *, mark: str | None = None, root: Path | None = None) -> None:
        """`root`: a temp dir made already (its cleanup removes it too); default: a new one."""
        self.prefix = prefix
        self.root = root or Path(tempfile.mkdtemp(prefix=prefix))
        self.mark = mark
        self.token = secrets.token_hex(6)
        if mark:
            os.environ[mark] = self.token
        self.daemons: list[Daemon] = []
        self.instances: set[str] = set()  # docker daemons' hodei.instance labels, kept across restarts
        self.labels: list[str] = []  # more container labels for cleanup, e.g. a benchmark's own containers
        self._roots: list[Path] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def daemon(self, name: str | None = None, args: Sequence[str] = (), *, start: bool = False,
               **kw: Any) -> Daemon:  # kw: Daemon's (log_level, hodeid, env, bin_dir)
        """A Daemon in ROOT/NAME (without a name: in a temp dir of its own, whose mode the caller may open).

        Registered before it starts, so cleanup stops it even if it fails to come up."""
        if name is None:
            root = Path(tempfile.mkdtemp(prefix=self.prefix))
            self._roots.append(root)
        else:
            root = self.root / name
            if root.exists():
                raise ValueError(f"a daemon named {name!r} exists already in {self.root}")
        d = Daemon(root, args, **kw)
        self.daemons.append(d)
        return d.start() if start else d

    def marked(self) -> list[int]:
        return processes_with_env(self.mark, self.token) if self.mark else []

    def containers(self) -> list[str]:
        if not shutil.which("docker"):
            return []
        self.instances |= {i for d in self.daemons if d.docker and (i := d.instance)}
        found: list[str] = []
        for label in [*(f"hodei.instance={i}" for i in sorted(self.instances)), *self.labels]:
            out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True,
                                 text=True, timeout=60, check=False).stdout
            found += out.split()
        return found

    def log_tails(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {d.log_path} (tail) ---\n{d.log()[-chars:]}" for d in self.daemons
                         if d.log_path.exists())

    def stop_all(self) -> None:
        for d in self.daemons:
            if d.docker and d.instance:
                self.instances.add(d.instance)
            d.stop()
            d.kill_agents()

    def cleanup(self, keep: bool = False) -> str:
        self.stop_all()
        marked = self.marked()
        kill_all(marked)
        containers = self.containers()
        if containers:
            subprocess.run(["docker", "rm", "-f", *containers], capture_output=True, timeout=120, check=False)
        if not keep:
            for root in [self.root, *self._roots]:
                shutil.rmtree(root, ignore_errors=True)
        if marked or containers:
            time.sleep(0.5)
        still, still_c = self.marked(), self.containers() if containers else []
        where = f"kept {self.root}" if keep else "temp dir removed"
        return (f"cleanup: {len(self.daemons)} hodeid stopped, {len(marked)} marked processes killed, "
                f"{len(containers)} containers removed, {where}; left behind: {len(still)} processes, "
                f"{len(still_c)} containers, dir exists={self.root.exists()}")
