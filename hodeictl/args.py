"""What hodeictl's arguments mean, checked without typer: the rules ``hodeictl.actions`` applies to
values however the command line was read (by ``hodeictl.parse`` or by the typer app)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from hodei.errors import HodeiError
from hodei.pools import constraint_problem, parse_volume, volume_text
from hodei.protocol import JobSpec
from hodeictl.client import Client, spec_from_cli

T = TypeVar("T")


def say(message: str) -> None:
    """One line of hodeictl's own on stderr."""
    print(f"hodeictl: {message}", file=sys.stderr, flush=True)


def fail(message: str, code: int = 2) -> NoReturn:
    say(message)
    raise SystemExit(code)


def with_client(socket: str | None, work: Callable[[Client], T]) -> T:
    """Run ``work`` on a connection to hodeid; its errors become one line and hodeictl's exit status."""
    try:
        with Client(socket) as client:
            return work(client)
    except HodeiError as e:
        fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def job_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        fail(f"{text!r} is not a job id: job ids are numbers, as `hodeictl list` shows")
    if not 0 < value < 2**63:
        fail(f"{text!r} is not a job id: job ids are positive numbers, as `hodeictl list` shows")
    return value


def pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def submit_spec(
    command: list[str],
    name: str = "",
    env: list[str] | None = None,
    cwd: str = "",
    timeout: float | None = None,
    grace: float = 10.0,
    priority: int = 0,
    label: list[str] | None = None,
    image: str = "",
    retries: int = 0,
    retry_on_failure: bool = False,
    constraint: list[str] | None = None,
    tty: bool = False,
    volume: list[str] | None = None,
) -> JobSpec:
    """The job `hodeictl submit` asks for, or one clear line and exit status 2."""
    if retries < 0:
        fail("--retries must be zero or more")
    if not command or (len(command) == 1 and not command[0].strip()):
        fail("the command is empty: give a shell line, or an argv after --")
    if any("\0" in part for part in command):
        fail("the command contains a NUL byte, which no process can receive")
    if timeout is not None and not timeout > 0:
        fail("--timeout must be a positive number of seconds")
    if not grace >= 0:
        fail("--grace must be zero or a positive number of seconds")
    if not -(2**31) < priority < 2**31:
        fail("--priority must be between -2147483647 and 2147483647")
    for c in constraint or []:
        if problem := constraint_problem(c):
            fail(problem)
    volumes = []
    for text in volume or []:
        try:
            volumes.append(volume_text(*parse_volume(text, os.getcwd())))
        except ValueError as e:
            fail(str(e))
    return spec_from_cli(command, name=name, env=pairs(env or [], "--env"), cwd=os.path.abspath(cwd) if cwd else "",
                         timeout=timeout, grace=grace, priority=priority, labels=pairs(label or [], "--label"),
                         image=image, retries=retries, retry_on_failure=retry_on_failure,
                         constraints=constraint or [], tty=tty, volumes=volumes)
