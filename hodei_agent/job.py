"""One job as a process group: start it, pump its output, signal it, and report how it ended."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import functools
import logging
import mmap
import os
import pwd
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hodei import procs
from hodei.protocol import Assignment, Stream
from hodei_agent import limits

log = logging.getLogger("hodei-agent")
CHUNK = 256 * 1024  # bytes read from a pipe at most at once; a read returns as soon as any are there
DRAIN_AFTER_EXIT = 2.0  # seconds to wait for pipes held open by escaped processes after the job ends
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# The PATH a job gets when its spec brings none: a login shell's on Debian.
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_UMASK = 0o022

Emit = Callable[[Stream, bytes], Awaitable[None]]


def user_basics(uid: int | None) -> dict[str, str]:
    """HOME, USER, LOGNAME, SHELL and a PATH for the user a job runs as (from the password database)."""
    return dict(_basics(os.geteuid() if uid is None else uid))


@functools.lru_cache(maxsize=64)
def _basics(uid: int) -> tuple[tuple[str, str], ...]:
    """user_basics, looked up once per uid for the agent's life (a job start is on the hot path)."""
    try:
        entry = pwd.getpwuid(uid)
        name, home, shell = entry.pw_name, entry.pw_dir, entry.pw_shell or "/bin/sh"
    except KeyError:  # a uid with no account here (a container's, say)
        name, home, shell = str(uid), "/", "/bin/sh"
    return (("HOME", home), ("USER", name), ("LOGNAME", name), ("SHELL", shell),
            ("PATH", ROOT_PATH if uid == 0 else USER_PATH))


def job_env(a: Assignment) -> dict[str, str]:
    """The job's environment: what its spec brings, plus its user's basics where the spec has none.
    Never the agent's own: that is hodeid's (secrets included) on the local provider."""
    env = user_basics(a.uid)
    env.update(a.env)
    env["HODEI_JOB_ID"] = str(a.job_id)
    return env


def argv_of(a: Assignment) -> list[str]:
    return ["/bin/sh", "-c", a.command[0]] if a.shell else list(a.command)


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)  # fewer wake-ups for chatty jobs
    except OSError:
        pass
    return r, w


async def _reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(fd, "rb", 0))
    return reader


class _PtyReader:
    """Reads a pty's master side: read() returns b"" at the end, which a pty reports as EIO once
    every process has closed its side."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    async def read(self, n: int) -> bytes:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = os.read(self.fd, n)
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_reader(self.fd, _settle, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(self.fd)
                continue
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                os.close(self.fd)
                self.fd = -1
            return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _settle(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _pty(uid: int | None) -> tuple[int, int]:
    """A pseudo-terminal for a job: 80x24, owned by its user, and passing output through as written
    (no \\n -> \\r\\n), so the stored log holds the bytes the job wrote."""
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    if uid is not None and uid != os.geteuid():
        os.fchown(slave, uid, -1)
    os.set_inheritable(master, False)
    return master, slave


class _ChildSetup:
    """What the child does after it has its session and user: take its pty as controlling terminal,
    then enter its working directory (see _EnterAsUser)."""

    def __init__(self, enter: _EnterAsUser | None) -> None:
        self.enter = enter

    def __call__(self) -> None:
        fcntl.ioctl(1, termios.TIOCSCTTY, 0)
        if self.enter is not None:
            self.enter()


def identity(uid: int | None, gid: int | None = None, groups: list[int] | None = None) -> dict[str, Any]:
    """subprocess arguments to run as ``uid`` with its groups (``gid`` and ``groups`` when hodeid names
    them: a container may have no account for the uid); nothing when it is us."""
    if uid is None or uid == os.geteuid():
        return {}
    if gid is not None:
        return {"user": uid, "group": gid, "extra_groups": [gid, *(groups or [])]}
    try:
        entry = pwd.getpwuid(uid)
        gid, groups = entry.pw_gid, os.getgrouplist(entry.pw_name, entry.pw_gid)
    except KeyError:
        gid, groups = uid, [uid]
    return {"user": uid, "group": gid, "extra_groups": groups}


def cwd_refused(cwd: str, errno_: int) -> str:
    """Why the job cannot start in ``cwd``, as its user found it (so it says nothing that user may not know)."""
    if errno_ == errno.ENOENT:
        return f"the working directory {cwd} does not exist"
    if errno_ == errno.ENOTDIR:
        return f"the working directory {cwd} is not a directory"
    if errno_ in (errno.EACCES, errno.EPERM):
        return f"the job's user may not enter the working directory {cwd}"
    return f"cannot enter the working directory {cwd}: {os.strerror(errno_)}"


class _EnterAsUser:
    """Enter the working directory in the child, after it has become the job's user.

    subprocess's own ``cwd`` is entered before the switch, i.e. as root: a user could then run a job
    in a directory only root (or another user) may enter. The errno of a failed chdir comes back
    through a shared page, since the child cannot return anything else.
    """

    def __init__(self, cwd: str) -> None:
        self.cwd = cwd
        self.failed = mmap.mmap(-1, 4)

    def __call__(self) -> None:
        try:
            os.chdir(self.cwd)
        except OSError as e:
            self.failed[:4] = (e.errno or errno.EIO).to_bytes(4, "little")
            raise

    def errno(self) -> int:
        return int.from_bytes(self.failed[:4], "little")


async def _exit_of(proc: subprocess.Popen[bytes]) -> None:
    """Wait for the process to exit, without blocking the loop and without reaping it: its pidfd
    becomes readable when it exits. Until it is reaped, its pid (its group's id) is no one else's."""
    loop = asyncio.get_running_loop()
    fd = os.pidfd_open(proc.pid)
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class SpawnFailed(Exception):
    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


class Result:
    def __init__(self, exit_code: int | None, sig: int | None, outcome: str, reason: str) -> None:
        self.exit_code, self.signal, self.outcome, self.reason = exit_code, sig, outcome, reason


class JobProcess:
    def __init__(self, assignment: Assignment, emit: Emit) -> None:
        self.a = assignment
        self.emit = emit
        self.proc: subprocess.Popen[bytes] | None = None
        self.outcome = ""  # set by cancel or timeout: the reason we signalled it
        self.reason = ""
        self._killer: asyncio.TimerHandle | None = None
        self.pid_start = ""  # the stamp of the job's process (hodei.procs), read before anything reaps it
        self._emitting = 0  # pumps handing a chunk over (which waits while the agent has no room for it)
        self.lost_bytes = 0  # output that could not be kept at all
        self.lost_error = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        a = self.a
        who = identity(a.uid, a.gid, a.groups)
        # As another user, the directory is entered (and so checked) as that user, in the child.
        enter = _EnterAsUser(a.cwd) if a.cwd and who else None
        if a.cwd and not who and not os.path.isdir(a.cwd):  # as ourselves, a check here is the same check
            raise SpawnFailed(cwd_refused(a.cwd, errno.ENOENT if not os.path.exists(a.cwd) else errno.ENOTDIR), 127)
        if a.tty:  # one pty for stdout and stderr (stdin stays /dev/null: no one can type into it)
            out_r, out_w = _pty(a.uid)
            err_r, err_w = -1, os.dup(out_w)
            os.set_inheritable(err_w, False)
        else:  # Real pipes, not socket pairs: scripts that write to /dev/stderr must work as in a terminal.
            out_r, out_w = _pipe()
            err_r, err_w = _pipe()
        setup: Callable[[], None] | None = _ChildSetup(enter) if a.tty else enter
        restore_nofile = limits.set_for_spawn(a.nofile)
        try:
            # subprocess.Popen, not the loop's subprocess support: it spawns with vfork in a fraction of
            # a millisecond, where uvloop forks the whole agent; the exit is awaited through a pidfd.
            self.proc = subprocess.Popen(
                argv_of(a),
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                cwd=(a.cwd or None) if enter is None else None,
                preexec_fn=setup,
                env=job_env(a),
                umask=DEFAULT_UMASK if a.umask is None else a.umask,
                start_new_session=True,  # its own process group: signals reach every process of the job
                **who,
            )
        except subprocess.SubprocessError as e:
            if enter is not None and enter.errno():
                raise SpawnFailed(cwd_refused(a.cwd, enter.errno()), 127) from e
            raise SpawnFailed(f"cannot start the job: {e}", 126) from e
        except FileNotFoundError as e:
            raise SpawnFailed(f"cannot run {a.command[0]!r}: command not found", 127) from e
        except PermissionError as e:
            raise SpawnFailed(f"cannot run {a.command[0]!r}: permission denied", 126) from e
        except Exception as e:  # whatever it is, the job failed to start and the agent carries on
            raise SpawnFailed(f"cannot start the job: {e}", 126) from e
        finally:
            restore_nofile()
            os.close(out_w)
            os.close(err_w)
            if self.proc is None:
                os.close(out_r)
                if err_r >= 0:
                    os.close(err_r)
        self.pid_start = procs.stamp(self.pid)
        self.stdout: asyncio.StreamReader | _PtyReader
        self.stderr: asyncio.StreamReader | None = None
        if a.tty:
            self.stdout = _PtyReader(out_r)
        else:
            self.stdout = await _reader(out_r)
            self.stderr = await _reader(err_r)

    async def run(self) -> Result:
        """Pump output until the job ends; kill what it leaves behind; return how it ended."""
        proc = self.proc
        assert proc is not None
        pumps = [asyncio.ensure_future(self._pump(self.stdout, Stream.STDOUT))]
        if self.stderr is not None:
            pumps.append(asyncio.ensure_future(self._pump(self.stderr, Stream.STDERR)))
        timer = None
        if self.a.timeout:
            timer = asyncio.get_running_loop().call_later(
                self.a.timeout, self.terminate, self.a.grace, "timed_out", f"timed out after {self.a.timeout:g}s"
            )
        await _exit_of(proc)
        if timer:
            timer.cancel()
        self._signal_group(signal.SIGKILL)  # the job is over: nothing of it outlives it (before the reap,
        rc = proc.wait()                     # which would free its pid, and so its group's id, for others)
        if self._killer:
            self._killer.cancel()
        # Drain the pipes: without a deadline while a chunk waits for room (it is the job's output),
        # else for DRAIN_AFTER_EXIT only (an escaped process may hold a pipe open for ever).
        _, pending = await asyncio.wait(pumps, timeout=DRAIN_AFTER_EXIT)
        while pending and self._emitting:
            _, pending = await asyncio.wait(pending, timeout=DRAIN_AFTER_EXIT)
        for p in pending:
            p.cancel()
        if isinstance(self.stdout, _PtyReader):
            if pending:  # an escaped process still holds the pty: its end is not waited for
                await asyncio.wait(pending)
            self.stdout.close()
        for p in pumps:
            if p not in pending:
                p.result()
        reason = self.reason
        if self.lost_bytes:
            lost = f"{self.lost_bytes} bytes of output were lost: {self.lost_error}"
            reason = f"{reason}; {lost}" if reason else lost
        if rc < 0:
            return Result(None, -rc, self.outcome, reason)
        return Result(rc, None, self.outcome, reason)

    async def _pump(self, pipe: asyncio.StreamReader | _PtyReader, stream: Stream) -> None:
        while data := await pipe.read(CHUNK):
            self._emitting += 1
            try:
                await self.emit(stream, data)
            except Exception as e:  # never stop reading: a job blocked on a full pipe would hang forever
                log.exception("could not forward %d bytes of job %s output", len(data), self.a.job_id)
                self.lost_bytes += len(data)  # said in the job's end reason: never a silent gap
                self.lost_error = self.lost_error or str(e) or type(e).__name__
            finally:
                self._emitting -= 1

    def terminate(self, grace: float, outcome: str, reason: str) -> None:
        """SIGTERM to the whole process group now, SIGKILL after ``grace`` seconds."""
        if self.proc is None or self.proc.returncode is not None:
            return
        if not self.outcome:
            self.outcome, self.reason = outcome, reason
        self._signal_group(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        if grace > 0:
            deadline = time.monotonic() + grace
            if self._killer is None or self._killer.when() > asyncio.get_running_loop().time() + grace:
                if self._killer:
                    self._killer.cancel()
                self._killer = asyncio.get_running_loop().call_later(
                    max(0.0, deadline - time.monotonic()), self._signal_group, signal.SIGKILL
                )

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
