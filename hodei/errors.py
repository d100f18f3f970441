"""Every error hodei raises on purpose. The docstring is the default message and says what to do."""

from __future__ import annotations

from hodei.protocol import ErrorCode


class HodeiError(Exception):
    """Something went wrong in hodei. ``code`` is what hodeid answers a client with when this stops a request."""

    exit_code = 1
    code = ErrorCode.BAD_REQUEST

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self)


class ProtocolError(HodeiError):
    """The peer sent bytes that are not a hodei message; the connection is closed."""


class FrameTooLarge(ProtocolError):
    """The peer announced a frame larger than the limit; the connection is closed."""


class DaemonNotRunning(HodeiError):
    """hodeid is not running: start it with `hodeid` (or `systemctl start hodeid`)."""

    exit_code = 3


class NoAccess(HodeiError):
    """You may not use this hodeid's socket."""

    exit_code = 77  # sysexits.h EX_NOPERM: distinct from "not running" (3)


class RemoteError(HodeiError):
    """hodeid refused the request."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.remote_code = code  # a str: a newer hodeid may answer with a code this client does not know

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        if self.remote_code == ErrorCode.NOT_FOUND:
            return 4
        if self.remote_code == ErrorCode.AUTH:
            return NoAccess.exit_code  # refused for who the caller is, as when the socket itself is refused
        return 2


class SocketInUse(HodeiError):
    """Another hodeid is already serving on this socket: stop it first, or pick another --socket."""

    exit_code = 1


class StateDirError(HodeiError):
    """The state directory cannot be used: check that it exists and is writable, or pass --state-dir."""


class ProviderError(HodeiError):
    """The worker provider failed."""


class InvalidTransition(HodeiError):
    """The job is not in a state that allows this change."""

    code = ErrorCode.INVALID
