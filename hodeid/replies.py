"""What a client is told when its request failed: every error hodeid answers with, mapped in one place.

Each ``HodeiError`` carries its wire code (``code``); the few errors that are not hodei's own and that a
request may still hit (a number out of SQLite's range, a database that is locked or full) are mapped here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hodei.errors import HodeiError
from hodei.protocol import Error, ErrorCode

# Errors a request may end with while its connection stays usable: the client is told, and may go on.
REQUEST_ERRORS = (HodeiError, OverflowError, sqlite3.OperationalError)


def error_reply(e: BaseException, db_path: Path) -> Error:
    """The Error reply for ``e``; one that is no request error is hodeid's fault and is said to be."""
    if isinstance(e, HodeiError):
        return Error(code=e.code, message=str(e))
    if isinstance(e, OverflowError):
        return Error(code=ErrorCode.INVALID, message="a number in the request is out of range")
    if isinstance(e, sqlite3.OperationalError):  # say what went wrong, keep the connection
        return Error(code=ErrorCode.INTERNAL, message=database_trouble(e, db_path))
    return Error(code=ErrorCode.INTERNAL, message="hodeid hit an internal error; see its log")


def database_trouble(e: sqlite3.OperationalError, db_path: Path) -> str:
    """What a client is told when its request hit a database error: locked, full, or else."""
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return (f"hodeid's database {db_path} is locked by another process ({e}): close whatever"
                " holds it open (an sqlite3 shell, a backup tool) and retry")
    if code == sqlite3.SQLITE_FULL:
        return f"hodeid cannot write its database ({e}): the disk is full; free some space and retry"
    return f"hodeid cannot use its database ({e}); see its log"
