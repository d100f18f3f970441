"""Where workers come from: processes on this host, or Docker containers."""

from __future__ import annotations

from hodeid.config import Config
from hodeid.providers.base import Provider


async def make_provider(config: Config) -> Provider:
    """The provider the config names; ``auto`` takes Docker when an engine answers."""
    from hodeid.providers.local import LocalProvider

    if config.provider == "local":
        return LocalProvider(config)
    from hodeid.providers.docker import DockerProvider, docker_available

    if config.provider == "docker":
        provider = DockerProvider(config)
        await provider.check()
        return provider
    if config.provider == "auto":
        if await docker_available():
            provider = DockerProvider(config)
            await provider.check()
            return provider
        return LocalProvider(config)
    raise ValueError(f"unknown provider {config.provider!r}: use local, docker or auto")
