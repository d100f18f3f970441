"""Workers as Docker containers (placeholder until the Docker provider lands)."""

from __future__ import annotations

from hodei.errors import ProviderError
from hodeid.config import Config


async def docker_available() -> bool:
    return False


class DockerProvider:
    name = "docker"

    def __init__(self, config: Config) -> None:
        self.config = config

    async def check(self) -> None:
        raise ProviderError("the docker provider is not available yet; use --provider local")
