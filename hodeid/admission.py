"""TCP connections that have not yet said who they are: how many may wait, and descriptors kept in reserve.

Until its TLS handshake and hello a peer of ``--agent-listen`` is anonymous, yet it costs hodeid a
file descriptor for up to the handshake timeout. Anyone who can reach the port could otherwise hold
every descriptor hodeid has, and then ``hodeictl`` and the jobs' log files fail. So a listener lets
at most PER_LISTENER anonymous connections wait, at most PER_SOURCE of them from one address, and
turns new ones away while fewer than ``reserve`` descriptors are left: the control socket and the
log files keep those. (The Unix sockets are not counted: only their owner, or the socket group,
can connect to them, and the kernel names each peer's uid.)
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from hodeid import fdlimit

log = logging.getLogger("hodeid")
PER_LISTENER = 256
PER_SOURCE = 32
REFUSAL_LOG_EVERY = 10.0  # seconds: one log line for a whole flood of refusals


def reserve_for(limit: int) -> int:
    """Descriptors a TCP listener leaves free: an eighth of the limit, at least 64."""
    return max(64, limit // 8)


class Slot:
    """One anonymous connection's place; ``release`` once it has said hello (or gone)."""

    __slots__ = ("_gate", "_held", "_listener", "_source")

    def __init__(self, gate: Gate, listener: str, source: str) -> None:
        self._gate, self._listener, self._source, self._held = gate, listener, source, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._gate._release(self._listener, self._source)


class Gate:
    def __init__(self, fd_limit: int) -> None:
        self.fd_limit = fd_limit
        self.reserve = reserve_for(fd_limit)
        self._waiting: Counter[str] = Counter()  # per listener
        self._by_source: Counter[tuple[str, str]] = Counter()
        self._refused: Counter[str] = Counter()
        self._last_report = 0.0

    def admit(self, listener: str, source: str) -> Slot | None:
        """A slot for a new connection on ``listener`` from ``source``, or None: close it."""
        why = self._refusal(listener, source)
        if why:
            self._refuse(listener, why)
            return None
        self._waiting[listener] += 1
        self._by_source[listener, source] += 1
        return Slot(self, listener, source)

    def _refusal(self, listener: str, source: str) -> str:
        if self._by_source[listener, source] >= PER_SOURCE:
            return f"{PER_SOURCE} connections from {source} have not said hello yet"
        if self._waiting[listener] >= PER_LISTENER:
            return f"{PER_LISTENER} connections have not said hello yet"
        used = fdlimit.in_use()
        if used is not None and used >= self.fd_limit - self.reserve:
            return f"{used} of {self.fd_limit} file descriptors are in use (the last {self.reserve} are kept)"
        return ""

    def _refuse(self, listener: str, why: str) -> None:
        self._refused[listener] += 1
        now = time.monotonic()
        if now - self._last_report >= REFUSAL_LOG_EVERY:
            self._last_report = now
            log.warning("refused %d connection(s) on %s lately: %s", self._refused[listener], listener, why)
            self._refused.clear()

    def _release(self, listener: str, source: str) -> None:
        self._waiting[listener] -= 1
        key = (listener, source)
        self._by_source[key] -= 1
        if self._by_source[key] <= 0:
            del self._by_source[key]
