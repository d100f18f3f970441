"""hodeid's database lost, recreated or damaged: no job id is reused, no damage goes unnoticed."""

from __future__ import annotations

import shutil

from conftest import Daemon


def test_a_recreated_database_never_reuses_the_ids_of_logs_on_disk(make_daemon) -> None:
    """Delete hodei.db* between two runs: the new jobs get new ids, and each shows its own output only."""
    d: Daemon = make_daemon()
    old = [d.submit(f"echo old {i}; echo more old {i}") for i in range(3)]
    for jid in old:
        d.wait_final(jid)
    assert d.stop() == 0
    for path in d.state_dir.glob("hodei.db*"):
        path.unlink()
    d.start()
    new = d.submit("echo new 1; echo new 2; echo new 3")
    assert new > max(old)
    assert d.wait_final(new)["state"] == "succeeded"
    assert d.output(new) == b"new 1\nnew 2\nnew 3\n"
    assert d.ctl("logs", str(old[0]), check=False).returncode == 4  # the old job is gone, not mixed into a new one


def test_a_new_job_never_appends_to_a_log_file_left_by_another(daemon: Daemon) -> None:
    """Second line of defence: a file already there under a new job's id is moved aside, not appended to."""
    first = daemon.submit("echo first job")
    daemon.wait_final(first)
    logs = daemon.state_dir / "logs"
    shutil.copy(logs / f"{first}.1.log", logs / f"{first + 1}.1.log")  # left there behind hodeid's back
    second = daemon.submit("echo second job")
    assert second == first + 1
    daemon.wait_final(second)
    assert daemon.output(second) == b"second job\n"
    assert [p.name for p in logs.glob(f"{second}.1.log.*")], "the stray file is kept, under another name"
