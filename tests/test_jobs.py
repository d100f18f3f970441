"""Jobs run as a user typing them would expect: through a shell, or as an exact argv."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import Daemon


def test_submit_prints_only_the_job_id(daemon: Daemon) -> None:
    """`submit` prints the id and nothing else, so `id=$(hodeictl submit ...)` works."""
    out = daemon.ctl("submit", "--name", "build", "true").stdout
    assert out.strip().isdigit() and out.endswith(b"\n") and out.count(b"\n") == 1
    job = daemon.wait_final(int(out))
    assert job["name"] == "build" and job["state"] == "succeeded" and job["exit_code"] == 0


def test_shell_line_with_pipes_quotes_and_redirections(daemon: Daemon, tmp_path) -> None:
    """A single argument is a /bin/sh command line: pipes, quotes, && and redirections work."""
    target = tmp_path / "out.txt"
    line = (f"""printf 'a b\\nc d\\n' | tr a-z A-Z && echo "it's \\"quoted\\"" """
            f"""&& echo to-file > {target} && cat {target}""")
    jid = daemon.submit(line)
    assert daemon.wait_final(jid)["state"] == "succeeded"
    assert daemon.output(jid) == b'A B\nC D\nit\'s "quoted"\nto-file\n'


def test_argv_after_double_dash_is_kept_exact(daemon: Daemon) -> None:
    """Several arguments after -- are an argv, never re-split or re-quoted."""
    args = ["a b", "'single'", '"double"', "$HOME", "*", ""]
    jid = daemon.submit("--", sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", *args)
    daemon.wait_final(jid)
    assert json.loads(daemon.output(jid)) == args


def test_env_and_cwd_reach_the_job(daemon: Daemon, tmp_path) -> None:
    """--env values and --cwd are what the job sees."""
    jid = daemon.submit("--env", "GREETING=hello world", "--env", "EMPTY=", "--cwd", str(tmp_path),
                        'echo "$GREETING|${EMPTY-unset}|$(pwd)"')
    daemon.wait_final(jid)
    assert daemon.output(jid) == f"hello world||{tmp_path}\n".encode()


def test_job_runs_in_the_submitting_directory_by_default(daemon: Daemon, tmp_path) -> None:
    """Without --cwd, the job runs where hodeictl was run, with that shell's environment."""
    res = daemon.ctl("submit", 'echo "$(pwd) $MY_VAR"', cwd=tmp_path, env={"MY_VAR": "from-shell"})
    jid = int(res.stdout)
    job = daemon.wait_final(jid)
    assert daemon.output(jid) == f"{tmp_path} from-shell\n".encode()
    assert job["cwd"] == str(tmp_path)  # `show` records where it ran


def test_exit_codes_and_signal_deaths(daemon: Daemon) -> None:
    """Exit codes are kept; a death by signal records the signal; `wait` exits as the job did."""
    ok = daemon.submit("exit 0")
    seven = daemon.submit("exit 7")
    killed = daemon.submit("--", "sh", "-c", "kill -KILL $$")
    for jid in (ok, seven, killed):
        daemon.wait_final(jid)
    assert daemon.job(ok)["state"] == "succeeded"
    j7 = daemon.job(seven)
    assert (j7["state"], j7["exit_code"], j7["signal"]) == ("failed", 7, None)
    jk = daemon.job(killed)
    assert (jk["state"], jk["exit_code"], jk["signal"]) == ("failed", None, 9)
    assert "signal 9" in jk["reason"]
    assert daemon.ctl("wait", str(ok)).returncode == 0
    assert daemon.ctl("wait", str(seven), check=False).returncode == 7
    assert daemon.ctl("wait", str(killed), check=False).returncode == 128 + 9


def test_missing_program_fails_with_a_reason(daemon: Daemon, tmp_path) -> None:
    """An argv whose program does not exist, or a --cwd that does not, fails with a clear reason."""
    missing = daemon.submit("--", "no-such-program-hodei", "x")
    gone_dir = daemon.submit("--cwd", str(tmp_path / "nope"), "true")
    jm, jd = daemon.wait_final(missing), daemon.wait_final(gone_dir)
    assert jm["state"] == "failed" and jm["exit_code"] == 127 and "not found" in jm["reason"]
    assert jd["state"] == "failed" and "does not exist" in jd["reason"]


def test_job_json_has_the_documented_fields(daemon: Daemon) -> None:
    """show --json carries id, name, state, command, exit_code, signal, reason and the timestamps."""
    jid = daemon.submit("--label", "team=infra", "--priority", "3", "echo hi")
    job = daemon.wait_final(jid)
    for key in ("id", "name", "state", "command", "exit_code", "signal", "reason", "created_at", "started_at",
                "finished_at", "worker_id"):
        assert key in job
    assert job["labels"] == {"team": "infra"} and job["priority"] == 3
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert job["worker_id"]
    listed = daemon.jobs()
    assert [j["id"] for j in listed] == [jid] and listed[0]["state"] == "succeeded"
    assert daemon.ctl("list", "--state", "succeeded", "--json").stdout.count(b'"id"') == 1
    assert json.loads(daemon.ctl("list", "--state", "failed", "--json").stdout) == []


def test_submit_from_a_file_queues_each_line_in_order(daemon: Daemon, tmp_path) -> None:
    """`submit --from FILE` queues every command line of the file (not blanks or comments), in order,
    with the options given, and prints the ids; 250+ lines take several batches."""
    cmds = tmp_path / "cmds"
    cmds.write_text("# build shards\necho one\n\n  echo 'two words' | tr a-z A-Z\n"
                    + "".join(f"echo n{i}\n" for i in range(250)))
    ids = [int(x) for x in daemon.ctl("submit", "--from", str(cmds), "--name", "shard").stdout.split()]
    assert len(ids) == 252 and ids == sorted(ids)
    done = json.loads(daemon.ctl("wait", *map(str, ids), "--json", timeout=120).stdout)
    assert [(j["state"], j["name"]) for j in done] == [("succeeded", "shard")] * 252
    assert daemon.output(ids[1]) == b"TWO WORDS\n"
    assert daemon.output(ids[-1]) == b"n249\n"


def test_a_batch_with_one_bad_job_queues_none_of_it(daemon: Daemon) -> None:
    from hodei.errors import RemoteError
    from hodeictl.client import Client, spec_from_cli

    before = len(daemon.jobs())
    with Client(daemon.socket, timeout=30) as c, pytest.raises(RemoteError, match=r"job 2 of 3: .*none of them"):
        list(c.submit_many([spec_from_cli(["true"]), spec_from_cli(["  "]), spec_from_cli(["true"])]))
    assert len(daemon.jobs()) == before


def test_submit_from_a_file_with_a_bad_line_queues_nothing(daemon: Daemon, tmp_path) -> None:
    """A line that is not UTF-8, or holds a NUL byte, is named in one clear line; no job is queued."""
    cmds = tmp_path / "cmds"
    for content, needle in ((b"echo ok\necho \xff\n", b"line 2 of"), (b"echo ok\necho a\x00b\n", b"NUL byte")):
        cmds.write_bytes(content)
        res = daemon.ctl("submit", "--from", str(cmds), check=False)
        assert res.returncode == 2 and needle in res.stderr, res.stderr
        assert b"Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert daemon.jobs() == []


def test_volume_needs_the_docker_provider(daemon: Daemon, tmp_path) -> None:
    """--volume on local workers is refused with one sentence; a malformed one, by hodeictl, the same way."""
    res = daemon.ctl("submit", "--volume", str(tmp_path), "true", check=False)
    assert res.returncode != 0 and res.stdout == b""
    assert res.stderr.decode() == "hodeictl: --volume needs hodeid --provider docker; this hodeid's is local\n"
    res = daemon.ctl("submit", "--volume", "/a:rel", "true", check=False)
    assert res.returncode == 2
    assert res.stderr.decode() == "hodeictl: --volume container path 'rel' is not an absolute path\n"
    assert daemon.jobs() == []
