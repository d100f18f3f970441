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
