"""hodeid's own log: plain lines with a timestamp on a terminal or in a file; under systemd, lines that
journald files at their priority (`journalctl -p warning` shows warnings) without a second timestamp."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

# syslog priorities, as journald reads them from a "<N>" prefix (sd-daemon(3))
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def to_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journal: systemd says so in JOURNAL_STREAM ("DEV:INODE" of the stream)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class JournalFormatter(logging.Formatter):
    """Each line of a record (a traceback's too) with the record's priority; no time, journald adds it."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def priority(level: int) -> int:
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if level >= threshold:
            return PRIORITY[threshold]
    return PRIORITY[logging.DEBUG]


def configure(level: str, stream: TextIO = sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    if to_journal(stream):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
