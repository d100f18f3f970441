"""The agent's outbox keeps unacknowledged output in memory, then in a spool file, in order."""

from __future__ import annotations

import os

from hodei.protocol import Output, Stream
from hodei_agent.outbox import Outbox


def chunk(seq: int, size: int = 1000) -> Output:
    return Output(job_id=1, seq=seq, stream=Stream.STDOUT if seq % 2 else Stream.STDERR, ts=float(seq),
                  data=os.urandom(size))


def test_spills_past_the_memory_limit_and_reads_back_in_order() -> None:
    """Chunks past the memory limit go to the spool; after() returns them all, intact and in order."""
    box = Outbox(memory_limit=3000, disk_limit=10_000)
    sent = [chunk(i) for i in range(1, 9)]
    for msg in sent:
        box.add(msg)
    assert box.in_memory == 3000 and box.bytes == 8000 and not box.full
    assert box.after(0) == sent
    assert box.after(5) == sent[5:]


def test_ack_forgets_and_full_pauses() -> None:
    """Acknowledged chunks are dropped; past the disk limit the outbox says it is full."""
    box = Outbox(memory_limit=2000, disk_limit=5000)
    for i in range(1, 6):
        box.add(chunk(i))
    assert box.full
    box.ack(3)
    assert not box.full and box.bytes == 2000 and [m.seq for m in box.after(0)] == [4, 5]
    box.ack(5)
    assert box.bytes == 0 and box.after(0) == [] and len(box) == 0
    box.add(chunk(6))  # the spool is reused from its start
    assert [m.seq for m in box.after(0)] == [6]
    box.clear()
    assert box.bytes == 0


def test_a_chunk_the_spool_cannot_take_is_not_kept_in_part(monkeypatch) -> None:
    """A full filesystem may take part of a write: the chunk then raises and leaves nothing behind, and
    once there is room again it is kept whole."""
    import hodei_agent.outbox as outbox_module

    box = Outbox(memory_limit=1000, disk_limit=100_000)
    first, second = chunk(1), chunk(2)
    box.add(first)  # in memory
    real_pwrite = os.pwrite
    monkeypatch.setattr(outbox_module.os, "pwrite", lambda fd, data, offset: real_pwrite(fd, data[:10], offset)
                        if len(data) > 990 else 0)  # 10 bytes, then no more
    try:
        box.add(second)
    except OSError:
        pass
    else:
        raise AssertionError("a chunk the spool could not take was kept")
    assert box.bytes == 1000 and len(box) == 1 and box.after(0) == [first]
    monkeypatch.setattr(outbox_module.os, "pwrite", real_pwrite)
    box.add(second)
    assert box.bytes == 2000 and box.after(0) == [first, second]
