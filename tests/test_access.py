"""Each user sees and cancels only their own jobs, and their jobs run as them."""

from __future__ import annotations

import json
import os
import stat
import subprocess

from conftest import BIN, Daemon, need_root

NOBODY = 65534


def as_nobody(d: Daemon, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           str(BIN / "hodeictl"), *args], capture_output=True, timeout=60, env=d.env, cwd="/")


def test_group_socket_is_0660(shared: Daemon) -> None:
    """With --socket-group the control socket is 0660 and owned by that group; the agent socket stays private."""
    st = os.stat(shared.socket)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == NOBODY
    assert stat.S_IMODE(os.stat(shared.agent_socket).st_mode) == 0o600


def test_users_see_only_their_own_jobs_and_jobs_run_as_them(shared: Daemon) -> None:
    """Another user's jobs are invisible and uncancellable to a user; root sees all; a job runs as its submitter."""
    mine = shared.submit("sleep 300")
    res = as_nobody(shared, "submit", "id -u; id -g")
    assert res.returncode == 0, res.stderr
    theirs = int(res.stdout)
    assert shared.wait_final(theirs)["state"] == "succeeded"
    assert shared.output(theirs) == f"{NOBODY}\n{NOBODY}\n".encode()
    listed = json.loads(as_nobody(shared, "list", "--json").stdout)
    assert [j["id"] for j in listed] == [theirs]
    for cmd in (["show", str(mine)], ["cancel", str(mine)], ["logs", str(mine)], ["wait", str(mine)]):
        refused = as_nobody(shared, *cmd)
        assert refused.returncode == 4 and b"no job" in refused.stderr, cmd
    assert shared.job(mine)["state"] in ("queued", "assigned", "running")
    assert {j["id"] for j in shared.jobs()} == {mine, theirs}  # root sees everything
    shared.ctl("cancel", "--grace", "0", str(mine))


def test_admin_only_requests_are_refused_with_the_permission_status(shared: Daemon) -> None:
    """A user who is not an admin cannot register or revoke remote agents: exit 77 (as for a socket they may
    not use, not 2 for a bad request), and the message says who may and what to do."""
    for cmd, what in ((["agents", "add"], b"may register agents"), (["agents", "rm", "w-1"], b"may remove agents")):
        refused = as_nobody(shared, *cmd)
        assert refused.returncode == 77, (cmd, refused)
        assert what in refused.stderr and b"run it as root" in refused.stderr, (cmd, refused)
    assert shared.ctl("agents", "add", "--json").returncode == 0  # root may


def test_other_users_cannot_reach_a_private_socket(daemon: Daemon) -> None:
    """Without --socket-group, another user cannot even connect, and is told so with the permission
    status (77), not the one of a hodeid that is not running (3)."""
    need_root("needs root to act as another user")
    daemon.root.chmod(0o755)
    res = as_nobody(daemon, "list")
    assert res.returncode == 77 and b"is private to root" in res.stderr, res.stderr
