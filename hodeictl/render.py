"""How hodeictl shows things: rich tables on a terminal, plain text in a pipe, JSON on request."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from hodei.protocol import JobEvent, JobInfo, JobState, WorkerInfo

# Exit statuses of `wait`, `logs -f` and `submit -f`, after the job's own.
EXIT_CANCELLED = 130  # as if interrupted
EXIT_TIMED_OUT = 124  # as timeout(1)
EXIT_LOST = 125


def exit_status(job: JobInfo) -> int:
    """The job's exit code; 128+N for a death by signal N; fixed codes for cancelled, timed out, lost."""
    match job.state:
        case JobState.SUCCEEDED:
            return 0
        case JobState.CANCELLED:
            return EXIT_CANCELLED
        case JobState.TIMED_OUT:
            return EXIT_TIMED_OUT
        case JobState.LOST:
            return EXIT_LOST
        case JobState.FAILED:
            if job.signal:
                return 128 + job.signal
            return job.exit_code if job.exit_code else 1
    return 0


def to_json(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


def log_chunk_json(stream: str, ts: float, data: bytes) -> str:
    """One chunk of a job's output as `logs --json` prints it: {"stream", "time", and "text" when the
    bytes are UTF-8, else "base64"}. A character split between two chunks makes both base64."""
    try:
        body = {"text": data.decode()}
    except UnicodeDecodeError:
        import base64

        body = {"base64": base64.b64encode(data).decode()}
    return to_json({"stream": stream, "time": ts, **body})


def json_array(items: Iterable[Any]) -> None:
    """Print a JSON array an item at a time, as the items arrive: the same text as to_json of the list."""
    out = sys.stdout
    out.write("[")
    for n, item in enumerate(items):
        out.write("," + to_json(item) if n else to_json(item))
    out.write("]\n")


def command_text(job: JobInfo) -> str:
    if job.shell:
        return job.command[0]
    import shlex

    return shlex.join(job.command)


def ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    secs = max(0.0, time.time() - ts)
    if secs < 60:
        return f"{secs:.0f}s ago"
    if secs < 3600:
        return f"{secs / 60:.0f}m ago"
    if secs < 86400:
        return f"{secs / 3600:.1f}h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def duration(job: JobInfo) -> str:
    if job.started_at is None:
        return "-"
    end = job.finished_at or time.time()
    return f"{end - job.started_at:.1f}s"


def result(job: JobInfo) -> str:
    if job.signal:
        return f"signal {job.signal}"
    return "-" if job.exit_code is None else str(job.exit_code)


# The colour of each job and worker state in a table on a terminal.
STATE_STYLES = {
    "queued": "yellow", "assigned": "cyan", "running": "bold cyan", "succeeded": "green", "failed": "bold red",
    "cancelled": "magenta", "timed_out": "red", "lost": "bold red",
    "starting": "yellow", "idle": "green", "busy": "cyan", "stopping": "magenta", "gone": "dim",
}


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], title: str = "") -> None:
    """A rich table on a terminal (it needs every row first), its STATE column in colour; in a pipe,
    each row as it comes, tab-separated."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        state = headers.index("STATE") if "STATE" in headers else -1
        t = Table(*headers, title=title or None, box=None, header_style="bold")
        for row in rows:  # Text, not markup: a name or command with [brackets] is shown as written
            t.add_row(*(Text(cell, style=STATE_STYLES.get(cell, "") if i == state else "")
                        for i, cell in enumerate(row)))
        Console().print(t)
        return
    print("\t".join(h.lower() for h in headers))
    for row in rows:
        print("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))


def jobs_table(jobs: Iterable[JobInfo]) -> None:
    table(
        ["ID", "STATE", "NAME", "COMMAND", "EXIT", "CREATED", "DURATION", "WORKER"],
        (
            [str(j.id), str(j.state), j.name or "-", _short(command_text(j)), result(j), ago(j.created_at),
             duration(j), j.worker_id or "-"]
            for j in jobs
        ),
    )


def states_table(jobs: Iterable[JobInfo]) -> None:
    """What `wait` and `cancel` show on a terminal: each job's end."""
    table(["ID", "STATE", "EXIT", "REASON"], ([str(j.id), str(j.state), result(j), j.reason or "-"] for j in jobs))


def workers_table(workers: list[WorkerInfo]) -> None:
    nodes = any(w.node for w in workers)  # a NODE column only when some worker runs elsewhere (swarm)
    table(
        ["ID", "PROVIDER", "STATE", "JOB", "IMAGE", *(["NODE"] if nodes else []), "AGE", "LAST HEARTBEAT", "JOBS RUN"],
        [
            [w.id, w.provider, str(w.state), str(w.job_id or "-"), w.image or "-",
             *([w.node or "-"] if nodes else []),
             ago(w.created_at).replace(" ago", ""), ago(w.last_heartbeat), str(w.jobs_run)]
            for w in workers
        ],
    )


def show_job(job: JobInfo) -> None:
    fields = [
        ("id", str(job.id)),
        ("name", job.name or "-"),
        ("state", str(job.state)),
        ("command", command_text(job)),
        ("exit code", result(job)),
        ("reason", job.reason or "-"),
        ("priority", str(job.priority)),
        ("labels", ", ".join(f"{k}={v}" for k, v in job.labels.items()) or "-"),
        ("cwd", job.cwd or "-"),
        ("timeout", f"{job.timeout:g}s" if job.timeout else "-"),
        ("worker", job.worker_id or "-"),
        *([("node", job.node)] if job.node else []),
        ("attempt", f"{job.attempt}" + (f" (of at most {job.retries + 1})" if job.retries else "")),
        ("created", _stamp(job.created_at)),
        ("started", _stamp(job.started_at)),
        ("finished", _stamp(job.finished_at)),
        ("duration", duration(job)),
        ("output", f"{job.log_bytes} bytes"),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key:<{width}}  {value}")


def history(events: list[JobEvent]) -> None:
    print("history")
    for e in events:
        when = time.strftime("%H:%M:%S", time.localtime(e.at)) + f".{int(e.at % 1 * 1000):03d}"
        extra = " ".join(x for x in (f"on {e.worker_id}" if e.worker_id else "", e.reason) if x)
        print(f"  {when}  {e.to_state}{'  ' + extra if extra else ''}")


def _stamp(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f" ({ago(ts)})"


def _short(text: str, width: int = 48) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
