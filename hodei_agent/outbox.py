"""Output the daemon has not acknowledged yet: in memory while small, then in a spool file.

While hodeid is away (a restart), a chatty job keeps running: its output goes to the spool file in
the worker, and is resent from there once hodeid is back. Only past ``disk_limit``, or when the
spool's filesystem is full, is the job paused (the agent stops reading its pipes): ``add`` either
keeps a chunk whole or raises and keeps nothing of it.
"""

from __future__ import annotations

import collections
import errno
import os
import tempfile

from hodei.protocol import Output, Stream

MEMORY_LIMIT = 8 * 1024 * 1024
DISK_LIMIT = 1024 * 1024 * 1024


class _Spilled:
    __slots__ = ("job_id", "length", "offset", "seq", "stream", "ts")

    def __init__(self, msg: Output, offset: int) -> None:
        self.job_id, self.seq, self.stream, self.ts = msg.job_id, msg.seq, msg.stream, msg.ts
        self.offset, self.length = offset, len(msg.data)


class Outbox:
    def __init__(self, memory_limit: int = MEMORY_LIMIT, disk_limit: int = DISK_LIMIT) -> None:
        self.memory_limit = memory_limit
        self.disk_limit = disk_limit
        self._entries: collections.deque[Output | _Spilled] = collections.deque()
        self.bytes = 0  # all unacknowledged output
        self.in_memory = 0
        self._spool: int | None = None  # fd of the spool file, unlinked at creation
        self._spool_end = 0

    @property
    def full(self) -> bool:
        return self.bytes >= self.disk_limit

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, msg: Output) -> None:
        """Keep ``msg`` until acknowledged; OSError (ENOSPC, say) when it cannot be kept, and then
        nothing of it is: the caller holds it and tries again once acknowledgements free room."""
        size = len(msg.data)
        if self.in_memory + size <= self.memory_limit:
            self._entries.append(msg)
            self.in_memory += size
        else:
            self._write_spool(msg.data)
            self._entries.append(_Spilled(msg, self._spool_end))
            self._spool_end += size
        self.bytes += size

    def _write_spool(self, data: bytes) -> None:
        """Write ``data`` whole at the spool's end, or raise OSError (the end does not move)."""
        if self._spool is None:
            fd, path = tempfile.mkstemp(prefix="hodei-agent-spool-")
            os.unlink(path)  # nobody else needs its name; it goes away with us
            self._spool, self._spool_end = fd, 0
        view, done = memoryview(data), 0
        while done < len(data):  # a full filesystem may take part of a write without an error
            n = os.pwrite(self._spool, view[done:], self._spool_end + done)
            if n <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += n

    def ack(self, seq: int) -> None:
        """Forget everything up to ``seq``: hodeid has it stored."""
        while self._entries and self._entries[0].seq <= seq:
            entry = self._entries.popleft()
            size = len(entry.data) if isinstance(entry, Output) else entry.length
            self.bytes -= size
            if isinstance(entry, Output):
                self.in_memory -= size
        if self._spool is not None and not any(isinstance(e, _Spilled) for e in self._entries):
            os.ftruncate(self._spool, 0)
            self._spool_end = 0

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = self.in_memory = 0
        if self._spool is not None:
            os.close(self._spool)
            self._spool = None

    def after(self, seq: int) -> list[Output]:
        """The unacknowledged chunks past ``seq``, in order, read back from the spool where needed.

        At most about 8 MiB at once, so resending a large spool never loads it whole.
        """
        out: list[Output] = []
        size = 0
        for entry in self._entries:
            if entry.seq <= seq:
                continue
            if isinstance(entry, Output):
                out.append(entry)
            else:
                assert self._spool is not None
                data = os.pread(self._spool, entry.length, entry.offset)
                out.append(Output(job_id=entry.job_id, seq=entry.seq, stream=Stream(entry.stream), ts=entry.ts,
                                  data=data))
            size += len(out[-1].data)
            if size >= MEMORY_LIMIT:
                break
        return out
