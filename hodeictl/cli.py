"""`hodeictl`: a thin typer shell over hodeictl.client.Client."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import msgspec
import typer

from hodei.errors import UsageError
from hodei.protocol import JobInfo, JobState, LogData, LogEnd, Stream
from hodeictl import render
from hodeictl.args import fail, job_id, submit_spec, with_client
from hodeictl.client import Client

T = TypeVar("T")

app = typer.Typer(
    name="hodeictl",
    help="Queue shell commands on hodeid, follow their output, cancel them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_state: dict[str, Any] = {"socket": None}

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
JobArg = Annotated[str, typer.Argument(help="job id", show_default=False)]


def run(work: Callable[[Client], T]) -> T:
    return with_client(_state["socket"], work)


@app.callback()
def _global(
    socket: Annotated[str | None, typer.Option("--socket", envvar="HODEI_SOCKET", help="hodeid's control socket")] = None,
) -> None:
    _state["socket"] = socket


@app.command(context_settings={"allow_interspersed_args": False})
def submit(
    command: Annotated[list[str], typer.Argument(help="one shell line, or an argv after --", show_default=False)] = [],  # noqa: B006
    name: Annotated[str, typer.Option("--name", "-n", help="a name to recognise the job by")] = "",
    env: Annotated[list[str], typer.Option("--env", "-e", help="KEY=VALUE, repeatable")] = [],  # noqa: B006
    cwd: Annotated[str, typer.Option("--cwd", help="working directory (default: the current one)")] = "",
    timeout: Annotated[float | None, typer.Option("--timeout", help="seconds before the job is stopped")] = None,
    grace: Annotated[float, typer.Option("--grace", help="seconds between SIGTERM and SIGKILL")] = 10.0,
    priority: Annotated[int, typer.Option("--priority", help="higher runs first")] = 0,
    label: Annotated[list[str], typer.Option("--label", "-l", help="KEY=VALUE, repeatable")] = [],  # noqa: B006
    image: Annotated[str, typer.Option("--image", help="worker image (docker provider)")] = "",
    retries: Annotated[int, typer.Option("--retries", help="run again up to N times if its worker is lost")] = 0,
    retry_on_failure: Annotated[bool, typer.Option("--retry-on-failure", help="retry failed runs too")] = False,
    constraint: Annotated[list[str], typer.Option("--constraint", help="swarm placement, e.g. node.hostname==build2;"
                                                  " repeatable")] = [],  # noqa: B006
    follow: Annotated[bool, typer.Option("--follow", "-f", help="follow the output; exit with the job's status")] = False,
    from_file: Annotated[str, typer.Option("--from", metavar="FILE", help="queue each line of FILE (- for stdin)"
                                           " as a shell command, with these options; prints one id a line")] = "",
    json: JsonOpt = False,
) -> None:
    """Queue a command. Prints the job id (or follows it with -f)."""
    options: dict[str, Any] = dict(name=name, env=env, cwd=cwd, timeout=timeout, grace=grace, priority=priority,
                                   label=label, image=image, retries=retries, retry_on_failure=retry_on_failure,
                                   constraint=constraint)
    if from_file:
        if command or follow:
            fail("--from queues the lines of a file: give no command and no --follow with it")
        specs = [submit_spec([line], **options) for line in _command_lines(from_file)]
        # Ids are printed as each batch is queued: if a later one is refused, the output says which went in.
        jobs = run(lambda c: c.submit_many(specs, each=None if json else lambda j: print(j.id, flush=True)))
        if json:
            print(render.to_json(jobs), flush=True)
        return
    spec = submit_spec(command, **options)

    def work(c: Client) -> int:
        job = c.submit(spec)
        if not follow:
            print(render.to_json(job) if json else job.id, flush=True)
            return 0
        if sys.stderr.isatty():
            print(f"hodeictl: job {job.id} queued", file=sys.stderr)
        return _print_logs(c, job.id, follow=True, tail=None, timestamps=False)

    raise typer.Exit(run(work))


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


def _print_logs(c: Client, jid: int, follow: bool, tail: int | None, timestamps: bool, attempt: int = 0) -> int:
    outs = {Stream.STDOUT: sys.stdout.buffer, Stream.STDERR: sys.stderr.buffer}
    at_line_start = {Stream.STDOUT: True, Stream.STDERR: True}
    end: JobInfo | None = None
    for msg in c.logs(jid, follow=follow, tail=tail, attempt=attempt):
        if isinstance(msg, LogEnd):
            end = msg.job
            break
        assert isinstance(msg, LogData)
        out = outs[msg.stream]
        data = msg.data
        if timestamps:
            data = _stamp_lines(data, msg.ts, at_line_start, msg.stream)
        out.write(data)
        out.flush()
    if end is None or not follow:
        return 0
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


@app.command()
def logs(
    job: JobArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="wait for more output; exit with the job's status")] = False,
    tail: Annotated[int | None, typer.Option("--tail", help="only the last N lines")] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="prefix each line with its time")] = False,
    attempt: Annotated[int, typer.Option("--attempt", help="output of attempt K (default: the latest)")] = 0,
) -> None:
    """Print a job's output: stdout to stdout, stderr to stderr."""
    jid = job_id(job)
    if tail is not None and tail < 0:
        fail("--tail takes a number of lines, zero or more")
    if attempt < 0:
        fail("--attempt takes an attempt number, 1 or more")
    raise typer.Exit(run(lambda c: _print_logs(c, jid, follow, tail, timestamps, attempt)))


@app.command()
def cancel(
    jobs: Annotated[list[str], typer.Argument(help="job ids", show_default=False)],
    grace: Annotated[float | None, typer.Option("--grace", help="seconds between SIGTERM and SIGKILL")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="return without waiting for the job to stop")] = False,
    json: JsonOpt = False,
) -> None:
    """Stop jobs: SIGTERM to all their processes, SIGKILL after the grace period."""
    ids = [job_id(j) for j in jobs]
    if grace is not None and grace < 0:
        fail("--grace must be zero or a positive number of seconds")
    done = run(lambda c: c.cancel(ids, grace=grace, wait=not no_wait))
    _print_states(done, json)


@app.command()
def wait(jobs: Annotated[list[str], typer.Argument(help="job ids", show_default=False)], json: JsonOpt = False) -> None:
    """Wait for jobs to finish. Exit status: the first failing job's (see --help of hodeictl)."""
    ids = [job_id(j) for j in jobs]
    done = run(lambda c: c.wait(ids))
    _print_states(done, json)
    raise typer.Exit(next((s for s in map(render.exit_status, done) if s), 0))


def _print_states(jobs: list[JobInfo], json: bool) -> None:
    if json:
        print(render.to_json(jobs))
        return
    for j in jobs:
        print(f"{j.id}\t{j.state}" + (f"\t{j.reason}" if j.reason else ""))


@app.command("list")
def list_(
    state: Annotated[list[str], typer.Option("--state", "-s", help="only jobs in this state, repeatable")] = [],  # noqa: B006
    limit: Annotated[int, typer.Option("--limit", help="the newest N jobs (0: all)")] = 50,
    json: JsonOpt = False,
) -> None:
    """List jobs, oldest first."""
    states = []
    for s in state:
        try:
            states.append(JobState(s.lower()))
        except ValueError:
            fail(f"unknown state {s!r}: use one of {', '.join(JobState)}")
    if not 0 <= limit < 2**31:
        fail("--limit takes a number, zero or more")
    jobs = run(lambda c: c.list(states, limit))
    print(render.to_json(jobs)) if json else render.jobs_table(jobs)


app.command("ls", help="List jobs (same as list).")(list_)


@app.command()
def show(job: JobArg, json: JsonOpt = False) -> None:
    """Show one job in full."""
    jid = job_id(job)
    info, history = run(lambda c: c.history(jid))
    if json:
        print(render.to_json({**msgspec.to_builtins(info), "history": msgspec.to_builtins(history)}))
    else:
        render.show_job(info)
        render.history(history)


@app.command()
def workers(json: JsonOpt = False) -> None:
    """List the workers hodeid runs now."""
    found = run(lambda c: c.workers())
    print(render.to_json(found)) if json else render.workers_table(found)


agents = typer.Typer(help="Agents on other machines (root or hodeid's --admin-group).", no_args_is_help=True)
app.add_typer(agents, name="agents")


@agents.command("add")
def agents_add(
    pool: Annotated[str, typer.Option("--pool", help="take jobs submitted with --image POOL (default: jobs naming no image)")] = "",
    json: JsonOpt = False,
) -> None:
    """Register an agent for another machine; prints the environment to start it with."""
    added = run(lambda c: c.add_agent(pool))
    if json:
        print(render.to_json(added))
        return
    print(f"HODEI_WORKER_ID={added.worker_id}\nHODEI_WORKER_TOKEN={added.token}")
    if sys.stdout.isatty():
        print("# on the agent's machine: HODEI_WORKER_ID=... HODEI_WORKER_TOKEN=... "
              "hodei-agent --connect tls://THIS_HOST:PORT --tls-ca ca.pem", file=sys.stderr)


@agents.command("rm")
def agents_rm(worker: Annotated[str, typer.Argument(help="the agent's worker id", show_default=False)]) -> None:
    """Revoke a remote agent's registration; a job it runs is marked lost."""
    run(lambda c: c.remove_agent(worker))


def main() -> None:
    try:
        app()
    except UsageError as e:
        fail(str(e))
    except BrokenPipeError:
        os._exit(0)


if __name__ == "__main__":  # the typer CLI alone, without the quick path: python -m hodeictl.cli
    main()
