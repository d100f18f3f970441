"""Every setting of hodeid, apart from the code that acts on them, and the one check of their values."""

from __future__ import annotations

import grp
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from hodei.errors import HodeiError
from hodei.paths import agent_socket_for, default_socket, default_state_dir

MAX_WORKERS = 1024
SOCKET_PATH_MAX = 107  # bytes: a Unix socket's path, without its NUL, must fit sockaddr_un's 108
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
PROVIDERS = ("local", "docker", "swarm", "auto")
# flag -> (Config field, lowest, highest); every number is also refused when it is not finite (nan, inf)
LIMITS: dict[str, tuple[str, float, float]] = {
    "--max-workers": ("max_workers", 1, MAX_WORKERS),
    "--min-idle": ("min_idle", 0, MAX_WORKERS),
    "--idle-timeout": ("idle_timeout", 0, 7 * 86400),
    "--heartbeat-interval": ("heartbeat_interval", 0.1, 60),
    "--heartbeat-timeout": ("heartbeat_timeout", 0.2, 3600),
    "--provision-timeout": ("provision_timeout", 1, 3600),
    "--handshake-timeout": ("handshake_timeout", 0.1, 3600),
    "--max-log-bytes": ("max_log_bytes", 0, 1 << 40),
    "--max-jobs-per-worker": ("max_jobs_per_worker", 0, 10**9),
    "--cpus": ("cpus", 0, 1024),
}


class ConfigError(HodeiError):
    """A setting of hodeid is out of range; see `hodeid --help`."""

    exit_code = 2  # as argparse's usage errors


@dataclass
class Config:
    state_dir: Path = field(default_factory=default_state_dir)
    socket: Path = field(default_factory=default_socket)
    agent_socket: Path | None = None  # default: agent/agent.sock beside the control socket
    socket_group: str | None = None  # control socket 0660 with this group instead of 0600
    admin_group: str | None = None  # members see and cancel every user's jobs, as root does
    provider: str = "local"  # local | docker | swarm | auto
    max_workers: int = field(default_factory=lambda: min(os.cpu_count() or 1, MAX_WORKERS))
    min_idle: int = 0
    idle_timeout: float = 60.0
    heartbeat_interval: float = 2.0
    heartbeat_timeout: float = 15.0
    provision_timeout: float = 60.0
    max_jobs_per_worker: int = 0  # 0: no limit
    max_log_bytes: int = 1 << 30  # output kept per job attempt; past it a marker, and the rest is dropped
    handshake_timeout: float = 10.0
    # agents on other machines: off unless agent_listen is "HOST:PORT"; TLS when a cert and key are given
    agent_listen: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None  # seconds a new connection has to say hello
    # docker provider
    image: str = "hodei-worker:latest"
    network: str = ""  # docker network mode; "" is the engine's default
    cpus: float = 0.0
    memory: str = ""
    log_level: str = "info"

    def __post_init__(self) -> None:
        check(self)

    @property
    def agent_address(self) -> tuple[str, int]:
        """``agent_listen`` as (host, port); only meaningful when it is set."""
        host, _, port = self.agent_listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def agent_socket_path(self) -> Path:
        return self.agent_socket or agent_socket_for(self.socket)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "hodei.db"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def worker_log_dir(self) -> Path:
        return self.state_dir / "workers"


def describe(flag: str) -> str:
    """The accepted range of a number flag, as --help and the errors say it."""
    _, low, high = LIMITS[flag]
    return f"{low:g} to {high:g}" if high < 1e6 else f"{low:g} to {int(high)}"


def check(cfg: Config) -> None:
    """Refuse any setting hodeid cannot run well with, in one sentence naming the flag and the range."""
    for flag, (name, low, high) in LIMITS.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not low <= value <= high:
            shown = f"{value:g}" if isinstance(value, float) else repr(value)
            raise ConfigError(f"{flag} {shown} is out of range: it takes {describe(flag)}")
    if cfg.min_idle > cfg.max_workers:
        raise ConfigError(f"--min-idle {cfg.min_idle} is more than --max-workers {cfg.max_workers}")
    if cfg.heartbeat_timeout < 2 * cfg.heartbeat_interval:
        raise ConfigError(f"--heartbeat-timeout {cfg.heartbeat_timeout:g} must be at least twice"
                          f" --heartbeat-interval {cfg.heartbeat_interval:g}, or every worker would be lost")
    for flag, path in (("--socket", cfg.socket), ("--agent-socket", cfg.agent_socket_path)):
        size = len(os.fsencode(path))
        if size > SOCKET_PATH_MAX:
            derived = " (derived from --socket: agent/agent.sock beside it)" if cfg.agent_socket is None \
                and flag == "--agent-socket" else ""
            raise ConfigError(f"{flag} {os.fspath(path)}{derived} is {size} bytes long: a Unix socket path"
                              f" takes at most {SOCKET_PATH_MAX}; pick a shorter one")
    for flag, group in (("--socket-group", cfg.socket_group), ("--admin-group", cfg.admin_group)):
        if group:
            try:
                grp.getgrnam(group)
            except KeyError:
                raise ConfigError(f"{flag} {group!r} is not a group on this machine (see `getent group`)") from None
    if cfg.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"--log-level {cfg.log_level!r} is not a level: use one of {', '.join(LOG_LEVELS)}")
    if cfg.provider not in PROVIDERS:
        raise ConfigError(f"--provider {cfg.provider!r} is not a provider: use one of {', '.join(PROVIDERS)}")
    if cfg.agent_listen:
        host, _, port = cfg.agent_listen.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"--agent-listen {cfg.agent_listen!r} is not HOST:PORT with a port from 1 to 65535,"
                              " e.g. 0.0.0.0:7077")
