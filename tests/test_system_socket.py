"""A user's hodeictl finds the system hodeid with no flags, or says exactly why it may not use it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import BIN, Daemon, need_root

NOBODY = 65534


def as_nobody(runtime_dir: Path, system_socket: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """hodeictl as nobody, as from a login shell: no --socket, no HODEI_SOCKET."""
    env = {k: v for k, v in os.environ.items() if k not in ("HODEI_SOCKET", "NO_COLOR")}
    env.update(XDG_RUNTIME_DIR=str(runtime_dir), HODEI_SYSTEM_SOCKET=str(system_socket))
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           str(BIN / "hodeictl"), *args], check=False, capture_output=True, timeout=60, env=env,
                           cwd="/")


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """nobody's $XDG_RUNTIME_DIR, holding the socket a crashed hodeid of theirs left (nobody listens)."""
    d = Path(tempfile.mkdtemp(prefix="hodei-rt"))
    (d / "hodei").mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(d / "hodei" / "hodei.sock"))
    stale.close()
    os.chown(d, NOBODY, NOBODY)
    os.chown(d / "hodei", NOBODY, NOBODY)
    os.chown(d / "hodei" / "hodei.sock", NOBODY, NOBODY)
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.fixture
def temp_group() -> Iterator[str]:
    need_root("needs root to create a group")
    name = f"hodeit{uuid.uuid4().hex[:8]}"
    subprocess.run(["groupadd", name], check=True)
    yield name
    subprocess.run(["groupdel", name], check=False)


def test_group_member_reaches_the_system_hodeid_with_no_flags(shared: Daemon, runtime_dir: Path) -> None:
    """With no hodeid of their own running, a user in the socket's group submits to the system hodeid,
    through the quick path and the typer CLI alike."""
    res = as_nobody(runtime_dir, shared.socket, "submit", "id -u")
    assert res.returncode == 0, res.stderr
    job = int(res.stdout)
    assert shared.wait_final(job)["state"] == "succeeded"
    assert shared.output(job) == f"{NOBODY}\n".encode()
    listed = as_nobody(runtime_dir, shared.socket, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [job]


def test_the_users_own_hodeid_comes_first(shared: Daemon, runtime_dir: Path,
                                          make_daemon: Callable[..., Daemon]) -> None:
    """A hodeid of the user's own that answers is used before the system one."""
    own = make_daemon("--socket-group", "nogroup", start=False)
    own.root.chmod(0o755)
    own.start()
    (runtime_dir / "hodei" / "hodei.sock").unlink()
    (runtime_dir / "hodei" / "hodei.sock").symlink_to(own.socket)
    res = as_nobody(runtime_dir, shared.socket, "submit", "true")
    assert res.returncode == 0, res.stderr
    job = int(res.stdout)
    assert [j["id"] for j in own.jobs()] == [job] and shared.jobs() == []


def test_a_user_outside_the_group_is_told_to_join_it(make_daemon: Callable[..., Daemon], runtime_dir: Path,
                                                     temp_group: str) -> None:
    """Outside the socket's group: one sentence naming the group and the command, and status 77 (not 3,
    which says hodeid is not running). Added to it but in a session from before: log in again."""
    d = make_daemon("--socket-group", temp_group, start=False)
    d.root.chmod(0o755)
    d.start()
    for args in (["submit", "true"], ["list"]):
        res = as_nobody(runtime_dir, d.socket, *args)
        assert res.returncode == 77, res.stderr
        assert res.stderr.decode() == (
            f"hodeictl: you are not in the `{temp_group}` group, which may use hodeid at {d.socket}:"
            f" run `sudo usermod -aG {temp_group} $USER`, then log in again\n")
    subprocess.run(["gpasswd", "-a", "nobody", temp_group], check=True, capture_output=True)
    res = as_nobody(runtime_dir, d.socket, "list")
    assert res.returncode == 77 and b"log in again (or run `newgrp" in res.stderr, res.stderr


def test_no_hodeid_anywhere_names_both_places(runtime_dir: Path) -> None:
    """Neither the user's own hodeid nor the system one: status 3, naming both sockets."""
    need_root("needs root to act as another user")
    res = as_nobody(runtime_dir, runtime_dir / "none.sock", "list")
    assert res.returncode == 3, res.stderr
    assert f"no daemon at {runtime_dir}/hodei/hodei.sock or {runtime_dir}/none.sock".encode() in res.stderr
