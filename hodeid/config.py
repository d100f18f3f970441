"""Every setting of hodeid, apart from the code that acts on them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hodei.paths import agent_socket_for, default_socket, default_state_dir


@dataclass
class Config:
    state_dir: Path = field(default_factory=default_state_dir)
    socket: Path = field(default_factory=default_socket)
    agent_socket: Path | None = None  # default: agent/agent.sock beside the control socket
    socket_group: str | None = None  # control socket 0660 with this group instead of 0600
    admin_group: str | None = None  # members see and cancel every user's jobs, as root does
    provider: str = "local"  # local | docker | swarm | auto
    max_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
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
