"""Where hodeid keeps its state and sockets, for root and for an ordinary user."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def default_state_dir() -> Path:
    from pathlib import Path

    if env := os.environ.get("HODEI_STATE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/hodei")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hodei"


SYSTEM_SOCKET = "/run/hodei/hodei.sock"  # the system service's (systemd/hodeid.service)


def _runtime_dir() -> str:
    if os.geteuid() == 0:
        return os.path.dirname(system_socket_path())
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(xdg, "hodei")
    return f"/tmp/hodei-{os.geteuid()}"


def default_socket() -> Path:
    from pathlib import Path

    return Path(default_socket_path())


def default_socket_path() -> str:
    """hodeid's control socket: $HODEI_SOCKET, else hodei.sock in the runtime directory. (A string: the
    CLI's quick path does not load pathlib.)"""
    return os.environ.get("HODEI_SOCKET") or os.path.join(_runtime_dir(), "hodei.sock")


def system_socket_path() -> str:
    """The system service's socket: $HODEI_SYSTEM_SOCKET (for tests and unusual installs), else
    /run/hodei/hodei.sock."""
    return os.environ.get("HODEI_SYSTEM_SOCKET") or SYSTEM_SOCKET


def client_socket_paths() -> list[str]:
    """Where hodeictl looks for hodeid, in order: $HODEI_SOCKET alone when set; else the user's own
    hodeid's socket, then the system service's (the first that answers is used)."""
    if env := os.environ.get("HODEI_SOCKET"):
        return [env]
    own = os.path.join(_runtime_dir(), "hodei.sock")
    system = system_socket_path()
    return [own] if own == system else [own, system]


def agent_socket_for(control_socket: Path) -> Path:
    """The agent socket lives in its own directory beside the control socket.

    Containers get that directory bind-mounted, never the control socket; and a directory (not the
    socket file) so that a restarted hodeid's new socket is what they see.
    """
    return control_socket.parent / "agent" / "agent.sock"
