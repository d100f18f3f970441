"""What each hodeictl command does, once its command line is read (by ``hodeictl.parse``, or by the
typer app of ``hodeictl.cli``: both from the table in ``hodeictl.commands``).

Each function takes the keywords its table entry names (plus ``socket``, the top-level option) and
returns hodeictl's exit status. Nothing here loads typer or rich: rich is imported by
``hodeictl.render`` only to draw a table on a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from hodei.protocol import FINAL_STATES, JobInfo, JobState, LogData, LogEnd, Stream
from hodeictl import render
from hodeictl.args import fail, job_id, pairs, say, submit_spec, with_client
from hodeictl.client import Client
from hodeictl.follow import WaitReporter, detached, what_happened
from hodeictl.parse import Call


def run(call: Call) -> int:
    """Run a parsed command line; returns the exit status."""
    action: Callable[..., int] = globals()[call.command.run]
    return action(**call.values)


def version() -> int:
    import hodei

    print(f"hodeictl {hodei.__version__}")
    return 0


def submit(socket: str | None, command: list[str], name: str, env: list[str], cwd: str, timeout: float | None,
           grace: float, priority: int, label: list[str], image: str, retries: int, retry_on_failure: bool,
           constraint: list[str], tty: bool, volume: list[str], follow: bool, from_file: str,
           json: bool) -> int:
    options: dict[str, Any] = {"name": name, "env": env, "cwd": cwd, "timeout": timeout, "grace": grace,
                               "priority": priority, "label": label, "image": image, "retries": retries,
                               "retry_on_failure": retry_on_failure, "constraint": constraint, "tty": tty,
                               "volume": volume}
    if from_file:
        if command or follow:
            fail("--from queues the lines of a file: give no command and no --follow with it")
        specs = [submit_spec([line], **options) for line in _command_lines(from_file)]
        # Ids are printed as each batch is queued: if a later one is refused, the output says which went in.
        each = None if json else lambda j: print(j.id, flush=True)
        jobs = with_client(socket, lambda c: c.submit_many(specs, each=each))
        if json:
            print(render.to_json(jobs), flush=True)
        return 0
    spec = submit_spec(command, **options)

    def work(c: Client) -> int:
        job = c.submit(spec)
        if not follow:
            print(render.to_json(job) if json else job.id, flush=True)
            return 0
        if sys.stderr.isatty():
            print(f"hodeictl: job {job.id} queued", file=sys.stderr)
        return _print_logs(c, job.id, follow=True, tail=None, timestamps=False)

    return with_client(socket, work)


def _command_lines(path: str) -> list[str]:
    """The command lines of a --from file: every line but blank ones and # comments."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e}")
    lines = []
    for n, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode()
        except UnicodeDecodeError:
            fail(f"line {n} of {name} is not UTF-8; nothing was queued")
        if line.strip() and not line.lstrip().startswith("#"):
            lines.append(line)
    if not lines:
        fail(f"{name} holds no command lines")
    return lines


def _print_logs(c: Client, jid: int, follow: bool, tail: int | None, timestamps: bool,
                attempt: int = 0, json: bool = False) -> int:
    """Print the job's output; following, say what it waits for, how it ended unless it succeeded,
    and on Ctrl-C that it keeps running (exit EXIT_DETACHED)."""
    outs = {Stream.STDOUT: sys.stdout.buffer, Stream.STDERR: sys.stderr.buffer}
    at_line_start = {Stream.STDOUT: True, Stream.STDERR: True}
    end: JobInfo | None = None
    try:
        with WaitReporter(c.socket, jid, enabled=follow) as reporter:
            for msg in c.logs(jid, follow=follow, tail=tail, attempt=attempt):
                reporter.stop()  # the job's own output (or its end) speaks from now on
                if isinstance(msg, LogEnd):
                    end = msg.job
                    break
                assert isinstance(msg, LogData)
                if json:
                    print(render.log_chunk_json(msg.stream.name.lower(), msg.ts, msg.data), flush=True)
                    continue
                out = outs[msg.stream]
                data = msg.data
                if timestamps:
                    data = _stamp_lines(data, msg.ts, at_line_start, msg.stream)
                out.write(data)
                out.flush()
    except KeyboardInterrupt:
        if not follow:
            raise
        return detached([jid], "following")
    if end is None or not follow:
        return 0
    if (line := what_happened(end)) is not None:
        say(line)
    return render.exit_status(end)


def _stamp_lines(data: bytes, ts: float, at_start: dict[Stream, bool], stream: Stream) -> bytes:
    stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d} ").encode()
    out = bytearray()
    for line in data.splitlines(keepends=True):
        if at_start[stream]:
            out += stamp
        out += line
        at_start[stream] = line.endswith(b"\n")
    return bytes(out)


def logs(socket: str | None, job: str | None, follow: bool, tail: int | None, timestamps: bool, attempt: int,
         json: bool) -> int:
    jid = None if job is None else job_id(job)
    if tail is not None and tail < 0:
        fail("--tail takes a number of lines, zero or more")
    if attempt < 0:
        fail("--attempt takes an attempt number, 1 or more")

    def work(c: Client) -> int:
        nonlocal jid
        if jid is None:  # the caller's latest job
            latest = [j.id for page in c.list_pages(limit=1, mine=True) for j in page]
            if not latest:
                fail("you have no jobs yet: give a job id", 1)
            jid = latest[0]
        return _print_logs(c, jid, follow, tail, timestamps, attempt, json)

    return with_client(socket, work)


def cancel(socket: str | None, jobs: list[str], all_jobs: bool, state: list[str], grace: float | None,
           no_wait: bool, json: bool) -> int:
    ids = [job_id(j) for j in jobs]
    states = _states(state)
    if grace is not None and grace < 0:
        fail("--grace must be zero or a positive number of seconds")
    if not ids and not all_jobs and not states:
        fail("`hodeictl cancel` needs a job id, --all or --state")
    if ids and (all_jobs or states):
        fail("give job ids, or --all / --state, not both")
    if finished := [s for s in states if s in FINAL_STATES]:
        fail(f"a {finished[0]} job has already ended: --state takes queued, assigned or running")

    def work(c: Client) -> None:
        if not ids:  # hodeid lists the jobs this user may see: their own, or everyone's for root and admins
            wanted = states or [s for s in JobState if s not in FINAL_STATES]
            ids.extend(j.id for page in c.list_pages(wanted) for j in page)
            if not ids:
                say(f"no {' or '.join(wanted)} job to cancel")
                if json:
                    print("[]")
                return
        _print_states(c.cancel_pages(ids, grace=grace, wait=not no_wait), json)

    with_client(socket, work)
    return 0


def _states(given: list[str]) -> list[JobState]:
    """--state values as states, or one clear line naming the valid ones."""
    states = []
    for s in given:
        try:
            states.append(JobState(s.lower()))
        except ValueError:
            fail(f"unknown state {s!r}: use one of {', '.join(JobState)}")
    return states


def wait(socket: str | None, jobs: list[str], json: bool) -> int:
    ids = [job_id(j) for j in jobs]

    def work(c: Client) -> int:
        try:
            return _print_states(c.wait_pages(ids), json, tell=True)
        except KeyboardInterrupt:
            return detached(ids, "waiting")

    return with_client(socket, work)


def _print_states(pages: Iterable[list[JobInfo]], json: bool, tell: bool = False) -> int:
    """Print each job as its page arrives; returns the first failing job's exit status (0: none failed).
    With ``tell``, a job that did not succeed also gets its line on stderr (`wait`)."""
    status = 0

    def each() -> Iterator[JobInfo]:
        nonlocal status
        for page in pages:
            for j in page:
                status = status or render.exit_status(j)
                if tell and (line := what_happened(j)) is not None:
                    say(line)
                yield j
            sys.stdout.flush()

    if json:
        render.json_array(each())
        return status
    if sys.stdout.isatty():  # a table with the states in colour, as every other command draws
        render.states_table(each())
        return status
    for j in each():  # in a pipe, as scripts read it: one job a line, no header
        print(f"{j.id}\t{j.state}" + (f"\t{j.reason}" if j.reason else ""))
    return status


def list_(socket: str | None, state: list[str], limit: int, name: str, label: list[str], json: bool) -> int:
    states = _states(state)
    if not 0 <= limit < 2**31:
        fail("--limit takes a number, zero or more")
    labels = pairs(label, "--label")

    def show(c: Client) -> None:
        jobs = (job for page in c.list_pages(states, limit, name, labels) for job in page)
        render.json_array(jobs) if json else render.jobs_table(jobs)

    with_client(socket, show)
    return 0


def show(socket: str | None, job: str, json: bool) -> int:
    jid = job_id(job)
    info, history = with_client(socket, lambda c: c.history(jid))
    if json:
        print(render.to_json({**msgspec.to_builtins(info), "history": msgspec.to_builtins(history)}))
    else:
        render.show_job(info)
        render.history(history)
    return 0


def workers(socket: str | None, json: bool) -> int:
    found = with_client(socket, lambda c: c.workers())
    print(render.to_json(found)) if json else render.workers_table(found)
    return 0


def agents_add(socket: str | None, pool: str, json: bool) -> int:
    added = with_client(socket, lambda c: c.add_agent(pool))
    if json:
        print(render.to_json(added))
        return 0
    print(f"HODEI_WORKER_ID={added.worker_id}\nHODEI_WORKER_TOKEN={added.token}")
    if sys.stdout.isatty():
        print("# on the agent's machine: HODEI_WORKER_ID=... HODEI_WORKER_TOKEN=... "
              "hodei-agent --connect tls://THIS_HOST:PORT --tls-ca ca.pem", file=sys.stderr)
    return 0


def agents_rm(socket: str | None, worker: str) -> int:
    with_client(socket, lambda c: c.remove_agent(worker))
    return 0
