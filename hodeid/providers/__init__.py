"""Where workers come from: processes on this host, Docker containers, or Docker Swarm services."""

from __future__ import annotations

import secrets

from hodeid.config import Config
from hodeid.providers.base import Provider


def instance_id(config: Config) -> str:
    """A stable id of this hodeid's state, to tell its containers from another hodeid's."""
    path = config.state_dir / "instance"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = secrets.token_hex(8)
        path.write_text(value + "\n")
        return value


async def make_provider(config: Config) -> Provider:
    """The provider the config names; ``auto`` takes Docker when an engine answers."""
    from hodeid.providers.local import LocalProvider

    if config.provider == "local":
        return LocalProvider(config)
    from hodeid.providers.docker import DockerProvider, docker_available

    if config.provider == "docker" or (config.provider == "auto" and await docker_available()):
        provider = DockerProvider(config, instance_id(config))
        await provider.check()
        return provider
    if config.provider == "auto":
        return LocalProvider(config)
    if config.provider == "swarm":
        from hodeid.providers.swarm import SwarmProvider

        swarm = SwarmProvider(config, instance_id(config))
        await swarm.check()
        return swarm
    raise ValueError(f"unknown provider {config.provider!r}: use local, docker, swarm or auto")
