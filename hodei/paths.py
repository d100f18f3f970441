"""Where hodeid keeps its state and sockets, for root and for an ordinary user."""

from __future__ import annotations

import os
from pathlib import Path


def default_state_dir() -> Path:
    if env := os.environ.get("HODEI_STATE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/hodei")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hodei"


def default_runtime_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/hodei")
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(xdg) / "hodei"
    return Path(f"/tmp/hodei-{os.geteuid()}")


def default_socket() -> Path:
    """The control socket: $HODEI_SOCKET, else hodei.sock in the runtime directory."""
    if env := os.environ.get("HODEI_SOCKET"):
        return Path(env)
    return default_runtime_dir() / "hodei.sock"


def agent_socket_for(control_socket: Path) -> Path:
    """The agent socket lives in its own directory beside the control socket.

    Containers get that directory bind-mounted, never the control socket; and a directory (not the
    socket file) so that a restarted hodeid's new socket is what they see.
    """
    return control_socket.parent / "agent" / "agent.sock"
