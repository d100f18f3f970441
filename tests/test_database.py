"""hodeid's database lost, recreated or damaged: no job id is reused, no damage goes unnoticed."""

from __future__ import annotations

import os
import random
import shutil

import pytest
from conftest import Daemon, wait_for


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


DAMAGE_ADVICE = "restore it from a backup or move"


def damage_lines(d: Daemon) -> list[str]:
    return [line for line in d.log().splitlines() if " ERROR " in line and str(d.state_dir / "hodei.db") in line]


def refused_start(d: Daemon) -> str:
    """Start hodeid on this state dir, expecting it to refuse: its one line of complaint."""
    d.start(wait=False)
    assert d.proc is not None
    assert d.proc.wait(timeout=30) != 0, "hodeid started on a damaged database"
    d.stop()
    last = d.log().strip().splitlines()[-1]
    assert "Traceback" not in d.log()
    return last


def test_database_truncated_under_a_running_hodeid_is_reported_and_refused_at_the_next_start(make_daemon) -> None:
    d: Daemon = make_daemon()
    jid = d.submit("echo kept")
    d.wait_final(jid)
    assert d.stop() == 0
    d.start()  # the jobs are in the database file now, not only in its WAL
    db = d.state_dir / "hodei.db"
    os.truncate(db, 0)
    for args in (["list"], ["show", str(jid)], ["submit", "echo more"], ["logs", str(jid)]):
        res = d.ctl(*args, check=False)
        err = res.stderr.decode()
        assert res.returncode != 0, args
        assert str(db) in err and DAMAGE_ADVICE in err and "internal error" not in err, (args, err)
    wait_for(lambda: damage_lines(d), what="hodeid to log the damage")
    d.ctl("list", check=False)
    assert len(damage_lines(d)) == 1, damage_lines(d)
    assert d.stop() == 0
    line = refused_start(d)
    assert f"the database {db} is empty (0 bytes)" in line and "restore it from a backup" in line, line


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_database_deleted_or_replaced_under_a_running_hodeid_is_reported_and_saved(make_daemon, how: str) -> None:
    """Reported once and to every request; what hodeid still held is saved beside it, and starts again."""
    d: Daemon = make_daemon()
    jid = d.submit("echo kept")
    d.wait_final(jid)
    db = d.state_dir / "hodei.db"
    if how == "deleted":
        for path in d.state_dir.glob("hodei.db*"):
            path.unlink()
    else:
        shutil.copy(db, d.root / "copy.db")
        os.replace(d.root / "copy.db", db)
    wait_for(lambda: damage_lines(d), what="hodeid to notice")
    rescued = list(d.state_dir.glob("hodei.db.rescued-*"))
    assert len(rescued) == 1, rescued
    assert f"was {how} while hodeid ran; what hodeid held is saved in {rescued[0]}" in damage_lines(d)[0]
    err = d.ctl("show", str(jid), check=False).stderr.decode()
    assert f"hodeid's database {db} was {how} while hodeid ran" in err, err
    assert f"stop hodeid, then move {rescued[0]} to {db}" in err, err
    assert len(damage_lines(d)) == 1, damage_lines(d)
    assert d.stop() == 0
    os.replace(rescued[0], db)
    d.start()
    assert d.job(jid)["state"] == "succeeded"
    assert d.output(jid) == b"kept\n"
    assert d.submit("echo next") > jid


def test_random_bytes_in_the_middle_of_the_database_refuse_the_start(make_daemon, tmp_path) -> None:
    d: Daemon = make_daemon("--max-workers", "1")
    lines = tmp_path / "jobs"
    lines.write_text("".join(f"echo {'x' * 200} {i}\n" for i in range(3000)))
    d.ctl("submit", "--from", str(lines), "--priority", "0")
    assert d.stop() == 0
    db = d.state_dir / "hodei.db"
    size = db.stat().st_size
    assert size > 64 * 4096, size
    with open(db, "r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(random.Random(8).randbytes(4096))
    line = refused_start(d)
    assert f"the database {db} is damaged (" in line and "restore it from a backup" in line, line
