"""Job output on disk: one append-only file of records per job attempt.

A record is a 21-byte header (sequence number, stream, timestamp, length) and the bytes the job
wrote, exactly as read from its pipe. Records are appended as the agent streams them, so the log on
disk is never behind what the daemon has acknowledged. A resent chunk (seq already stored) is
skipped, which makes delivery exactly-once from the agent's at-least-once resends.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

from hodei.protocol import Stream
from hodeid.notify import Notifier

HEADER = struct.Struct(">QBdI")  # seq, stream, ts, length
READ_BLOCK = 128 << 10  # per read of a follower; a record can be larger (the agent sends up to 256 KiB)
NOTE = 3  # stream code of lines hodeid itself adds (the truncation marker); shown on stderr

log = logging.getLogger("hodeid.logstore")


class DiskFull(OSError):
    """Not enough disk space to store a job's output."""


def reserve_for(directory: Path) -> int:
    """Bytes kept free on the log's filesystem, so the database can still record what happened."""
    st = os.statvfs(directory)
    return min(64 << 20, st.f_blocks * st.f_frsize // 20)


class Record:
    __slots__ = ("data", "seq", "stream", "ts")

    def __init__(self, seq: int, stream: int, ts: float, data: bytes) -> None:
        self.seq, self.stream, self.ts, self.data = seq, stream, ts, data


def parse(buf: bytes | memoryview, start: int = 0) -> tuple[list[Record], int]:
    """Whole records in ``buf`` from ``start``, and the offset just past the last whole one."""
    out = []
    pos, end = start, len(buf)
    while pos + HEADER.size <= end:
        seq, stream, ts, length = HEADER.unpack_from(buf, pos)
        stop = pos + HEADER.size + length
        if stop > end:
            break
        out.append(Record(seq, stream, ts, bytes(buf[pos + HEADER.size : stop])))
        pos = stop
    return out, pos


class _Open:
    __slots__ = ("fd", "last_seq", "output", "size", "truncated")

    def __init__(self, fd: int, last_seq: int, size: int, output: int, truncated: bool) -> None:
        self.fd, self.last_seq, self.size, self.truncated = fd, last_seq, size, truncated
        self.output = output  # bytes of the job's own output (headers and notes not counted)


class LogStore:
    def __init__(self, directory: Path, changes: Notifier, max_bytes: int = 0) -> None:
        self.max_bytes = max_bytes  # per attempt; 0: no limit
        self.dir = directory
        self._dir = os.fspath(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.reserve = reserve_for(directory)
        self._open: dict[tuple[int, int], _Open] = {}
        self._changes = changes

    def path(self, job_id: int, attempt: int) -> str:
        return f"{self._dir}/{job_id}.{attempt}.log"  # a str: pathlib costs more than the rest of a short job's end

    def highest_job_id(self) -> int:
        """The largest job id among the log files (0: none): names only, no stat per file (about 60 ms
        for 100,000 files)."""
        top = 0
        for name in os.listdir(self._dir):
            head, _, rest = name.partition(".")
            if head.isdigit() and rest.endswith(".log") and rest[:-4].isdigit() and int(head) > top:
                top = int(head)
        return top

    def start_empty(self, job_id: int, attempt: int = 1) -> None:
        """A new job's (or a retry's) log starts empty. A file already there was left by another job,
        under an id a database recreated behind hodeid's back gave out again: move it aside, never
        append to it or show it as this job's output."""
        path = self.path(job_id, attempt)
        aside = f"{path}.stale-{time.time_ns()}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return  # the usual case: one failed syscall
        log.warning("job %s attempt %s is new, but its log file was already there (left by another job):"
                    " moved it to %s", job_id, attempt, aside)

    # ---- writing --------------------------------------------------------------------------------

    def _opened(self, job_id: int, attempt: int) -> _Open:
        key = (job_id, attempt)
        handle = self._open.get(key)
        if handle is None:
            path = self.path(job_id, attempt)
            last_seq, good, output, truncated = scan(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            if os.fstat(fd).st_size != good:  # a torn record left by a crash: cut it off
                os.ftruncate(fd, good)
            handle = self._open[key] = _Open(fd, last_seq, good, output, truncated)
        return handle

    def last_seq(self, job_id: int, attempt: int) -> int:
        return self._opened(job_id, attempt).last_seq

    def append(self, job_id: int, attempt: int, seq: int, stream: int, ts: float, data: bytes) -> bool:
        """Store one chunk; False if it was already stored (a resend)."""
        handle = self._opened(job_id, attempt)
        if seq <= handle.last_seq:
            return False
        if handle.truncated:  # over the cap: acknowledged, not kept; the job runs on
            handle.last_seq = seq
            return False
        record = HEADER.pack(seq, stream, ts, len(data)) + data
        if self.max_bytes and handle.output + len(data) > self.max_bytes:
            data = data[: max(0, self.max_bytes - handle.output)]
            note = (f"\n[hodei: output truncated here, past {self.max_bytes} bytes (--max-log-bytes);"
                    " the job keeps running]\n").encode()
            record = HEADER.pack(seq, stream, ts, len(data)) + data + HEADER.pack(seq, NOTE, ts, len(note)) + note
            handle.truncated = True
        st = os.statvfs(self.dir)
        if st.f_bavail * st.f_frsize < self.reserve + len(record):
            raise DiskFull(errno.ENOSPC, f"the disk holding {self.dir} is full")
        try:
            os.write(handle.fd, record)
        except OSError as e:
            os.ftruncate(handle.fd, handle.size)  # no torn record: all of it next time, or nothing
            raise DiskFull(e.errno, f"cannot write to {self.dir}: {e.strerror}") from e
        handle.last_seq = seq
        handle.size += len(record)
        handle.output += len(data)
        self._changes.notify(job_id)
        return True

    def close(self, job_id: int, attempt: int) -> tuple[int, bool]:
        """Close a finished attempt's file; returns its bytes of output, and whether it was truncated."""
        handle = self._open.pop((job_id, attempt), None)
        if handle is not None:
            os.close(handle.fd)
            return handle.output, handle.truncated
        path = self.path(job_id, attempt)
        if not os.path.exists(path):  # no output at all (the usual case for a short job): nothing to scan
            return 0, False
        _, _, output, truncated = scan(path)
        return output, truncated

    def close_all(self) -> None:
        for handle in self._open.values():
            os.close(handle.fd)
        self._open.clear()

    # ---- reading --------------------------------------------------------------------------------

    def size(self, job_id: int, attempt: int) -> int:
        """The log file's bytes (0 if it has none): known while it is open, else one stat."""
        handle = self._open.get((job_id, attempt))
        if handle is not None:
            return handle.size
        try:
            return os.stat(self.path(job_id, attempt)).st_size
        except FileNotFoundError:
            return 0

    def read_from(self, job_id: int, attempt: int, offset: int) -> tuple[list[Record], int]:
        """Whole records from byte ``offset`` on (at most READ_BLOCK bytes of them, or one larger
        record), and the next offset. Each call allocates about what it reads: followers are many."""
        try:
            fd = os.open(self.path(job_id, attempt), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return [], offset
        try:
            buf = os.pread(fd, READ_BLOCK, offset)
            records, used = parse(buf)
            if not records and len(buf) >= HEADER.size:  # one record larger than the block
                (length,) = struct.unpack_from(">I", buf, 17)
                records, used = parse(os.pread(fd, HEADER.size + length, offset))
        finally:
            os.close(fd)
        return records, offset + used

    def tail_offset(self, job_id: int, attempt: int, lines: int) -> tuple[int, int]:
        """Where to start reading to show the last ``lines`` lines: (offset, bytes to skip in that record)."""
        index = list(_index(self.path(job_id, attempt)))
        if not index:  # no output yet (queued, silent, or done without a word): from the start, as it comes
            return 0, 0
        if lines <= 0:
            return index[-1][0] + HEADER.size + index[-1][1], 0
        newlines = 0
        path = self.path(job_id, attempt)
        with open(path, "rb") as f:
            for i in range(len(index) - 1, -1, -1):
                offset, length, _, _ = index[i]
                f.seek(offset + HEADER.size)
                data = f.read(length)
                end = len(data)
                if i == len(index) - 1 and data.endswith(b"\n"):
                    end -= 1  # a final newline ends the last line, it does not start a new one
                pos = end
                while True:
                    pos = data.rfind(b"\n", 0, pos)
                    if pos < 0:
                        break
                    newlines += 1
                    if newlines == lines:
                        return offset, pos + 1
        return 0, 0


def _index(path: str | Path) -> Iterator[tuple[int, int, int, int]]:
    """(offset, data length, stream, seq) of each whole record, reading headers only."""
    try:
        f = open(path, "rb")  # noqa: SIM115  (a generator: the with below closes it; a missing file is no records)
    except FileNotFoundError:
        return
    with f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos + HEADER.size <= size:
            f.seek(pos)
            seq, stream, _, length = HEADER.unpack(f.read(HEADER.size))
            if pos + HEADER.size + length > size:
                return
            yield pos, length, stream, seq
            pos += HEADER.size + length


def scan(path: str | Path) -> tuple[int, int, int, bool]:
    """One pass over a log file: (last sequence number, size of the whole records, bytes of the
    job's own output, whether hodeid truncated it)."""
    last_seq, good, output, truncated = 0, 0, 0, False
    for offset, length, stream, seq in _index(path):
        last_seq, good = seq, offset + HEADER.size + length
        if stream == NOTE:
            truncated = True
        else:
            output += length
    return last_seq, good, output, truncated


__all__ = ["LogStore", "Record", "Stream", "parse", "scan"]
