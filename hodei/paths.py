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


def _runtime_dir() -> str:
    if os.geteuid() == 0:
        return "/run/hodei"
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(xdg, "hodei")
    return f"/tmp/hodei-{os.geteuid()}"


def default_socket() -> Path:
    from pathlib import Path

    return Path(default_socket_path())


def default_socket_path() -> str:
    """The control socket: $HODEI_SOCKET, else hodei.sock in the runtime directory. (A string: the
    CLI's quick path does not load pathlib.)"""
    return os.environ.get("HODEI_SOCKET") or os.path.join(_runtime_dir(), "hodei.sock")


def agent_socket_for(control_socket: Path) -> Path:
    """The agent socket lives in its own directory beside the control socket.

    Containers get that directory bind-mounted, never the control socket; and a directory (not the
    socket file) so that a restarted hodeid's new socket is what they see.
    """
    return control_socket.parent / "agent" / "agent.sock"
