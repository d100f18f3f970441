"""Workers as Docker containers, through the Docker API (aiodocker).

Each worker is a container named ``hodei-worker-<id>``, labelled ``hodei.managed=true`` and
``hodei.worker-id=<id>``, running the agent under Docker's init (so signals reach the job). The
agent reaches hodeid through the agent socket's directory, bind-mounted read-write; the container
needs no network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from hodei.errors import ProviderError
from hodei.pools import split_pool, split_user
from hodeid.config import Config
from hodeid.mounts import mount_refused

log = logging.getLogger("hodeid.docker")
AGENT_DIR_IN_CONTAINER = "/run/hodei-agent"
LABEL_MANAGED = "hodei.managed"
LABEL_WORKER = "hodei.worker-id"
LABEL_INSTANCE = "hodei.instance"
ENGINE_TIMEOUT = 10.0  # seconds one question to the engine may take before it counts as not answering
RETRY_FIRST, RETRY_MAX = 1.0, 30.0  # seconds between questions while the engine does not answer
STOP_WAIT = 5.0  # seconds a worker asked to exit gets before its container is removed by force
# What a call to the engine raises when it cannot be reached: aiodocker turns refused connections into
# DockerError 900; a connection cut mid-answer or a hung engine raise these.
UNREACHABLE = (aiohttp.ClientError, OSError, TimeoutError)


async def docker_available(timeout: float = 3.0) -> bool:
    try:
        docker = aiodocker.Docker()
    except (ValueError, OSError, AssertionError) as e:  # a malformed DOCKER_HOST; no socket at all (aiodocker asserts)
        log.info("--provider auto: no Docker engine (%s): workers are local processes", e or "no socket found")
        return False
    try:
        await asyncio.wait_for(docker.version(), timeout)
        return True
    except (DockerError, *UNREACHABLE) as e:
        log.info("--provider auto: %s: workers are local processes", explain(e))
        return False
    finally:
        await docker.close()


def parse_memory(text: str) -> int:
    """'512m', '2g', '1048576' -> bytes."""
    text = text.strip().lower()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise ProviderError(f"--memory {text!r} is not a size like 512m or 2g") from None


def explain(e: Exception) -> str:
    if isinstance(e, DockerError) and e.status == 900:  # aiodocker's code for a refused connection
        return f"the Docker engine is not reachable: {e.message}"
    if isinstance(e, DockerError):
        return f"the Docker engine said: {e.message} (HTTP {e.status})"
    if isinstance(e, TimeoutError):
        return f"the Docker engine did not answer within {ENGINE_TIMEOUT:g}s"
    return f"the Docker engine is not reachable: {e}" if str(e) else f"Docker error {type(e).__name__}"


class EngineClient:
    """A provider's connection to a Docker engine, made on first use (DOCKER_HOST names the engine)."""

    def __init__(self, config: Config, instance: str = "") -> None:
        self.config = config
        self.instance = instance
        self._docker: aiodocker.Docker | None = None
        self._down_since: float | None = None  # when the engine stopped answering exited()
        self._retry_at = 0.0
        self._retry_delay = RETRY_FIRST

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker()
        return self._docker

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None


class DockerProvider(EngineClient):
    name = "docker"

    async def check(self) -> None:
        """Fail early, with what to do, when the engine or the worker image is missing."""
        try:
            await asyncio.wait_for(self.docker.version(), 10)
        except Exception as e:
            await self.close()
            raise ProviderError(
                f"--provider docker, but no Docker engine answers ({e or type(e).__name__}): start dockerd,"
                " or use --provider local"
            ) from e
        await self.require_image(self.config.image)

    async def require_image(self, image: str) -> None:
        try:
            await self.docker.images.inspect(image)
        except DockerError as e:
            if e.status == 404:
                raise ProviderError(
                    f"the worker image {image} is missing: build it with `hodeid build-image --tag {image}`"
                ) from e
            raise ProviderError(explain(e)) from e

    def container_config(self, worker_id: str, token: str, image: str,
                         binds: list[str] | None = None) -> dict[str, Any]:
        """``binds``: a user's directories (``HOST:CONTAINER:MODE``, checked at submit by hodeid.mounts)."""
        cfg = self.config
        host: dict[str, Any] = {
            "Binds": [f"{cfg.agent_socket_path.parent}:{AGENT_DIR_IN_CONTAINER}", *(binds or [])],
            "Init": True,  # docker-init as PID 1: forwards signals, reaps orphans
        }
        if cfg.network:
            host["NetworkMode"] = cfg.network
        if cfg.cpus:
            host["NanoCpus"] = int(cfg.cpus * 1e9)
        if cfg.memory:
            host["Memory"] = parse_memory(cfg.memory)
        return {
            "Image": image,
            "Env": [
                f"HODEI_AGENT_SOCKET={AGENT_DIR_IN_CONTAINER}/{cfg.agent_socket_path.name}",
                f"HODEI_WORKER_ID={worker_id}",
                f"HODEI_WORKER_TOKEN={token}",
                f"HODEI_HEARTBEAT_INTERVAL={cfg.heartbeat_interval}",
            ],
            "Labels": {LABEL_MANAGED: "true", LABEL_WORKER: worker_id, LABEL_INSTANCE: self.instance},
            "HostConfig": host,
        }

    async def start(self, worker_id: str, token: str, image: str) -> str:
        user, binds = split_user(image)
        if user and binds and (refused := await mount_refused(user, binds)):
            raise ProviderError(refused)
        image, constraints = split_pool(image)
        if constraints:
            raise ProviderError(f"placement constraints ({', '.join(constraints)}) need hodeid --provider swarm")
        image = image or self.config.image
        try:
            container = await self.docker.containers.create_or_replace(
                name=f"hodei-worker-{worker_id}", config=self.container_config(worker_id, token, image, binds)
            )
        except DockerError as e:
            if e.status == 404:
                raise ProviderError(
                    f"the worker image {image} is missing: build it with `hodeid build-image --tag {image}`"
                ) from e
            raise ProviderError(f"cannot create a worker container: {explain(e)}") from e
        except Exception as e:
            raise ProviderError(f"cannot create a worker container: {explain(e)}") from e
        try:
            await container.start()
        except Exception as e:
            await self._remove(container.id)
            raise ProviderError(f"cannot start the worker container: {explain(e)}") from e
        return str(container.id)

    async def stop(self, handle: str, force: bool) -> None:
        container = self.docker.containers.container(handle)
        if not force:
            try:
                await asyncio.wait_for(container.wait(), STOP_WAIT)  # the agent exits by itself when asked to
            except TimeoutError:
                log.info("container %s did not exit within %gs of being asked: removing it", handle[:12], STOP_WAIT)
            except DockerError as e:
                if e.status != 404:  # gone already: nothing to wait for
                    log.warning("cannot wait for container %s to exit: %s", handle[:12], explain(e))
            except UNREACHABLE as e:
                log.warning("cannot wait for container %s to exit: %s", handle[:12], explain(e))
        await self._remove(handle)

    async def _remove(self, handle: str) -> None:
        try:
            await self.docker.containers.container(handle).delete(force=True)
        except DockerError as e:
            if e.status not in (404, 409):  # gone already, or being removed
                log.error("cannot remove container %s: %s", handle[:12], explain(e))
        except Exception as e:
            log.error("cannot remove container %s: %s", handle[:12], explain(e))

    async def exited(self, handle: str) -> str | None:
        """Why the container is gone, from the engine; None while it runs, and while the engine does not
        answer: that is logged (with backoff, as are the questions) and the agent's heartbeats decide."""
        if self._down_since is not None and time.monotonic() < self._retry_at:
            return None
        try:
            async with asyncio.timeout(ENGINE_TIMEOUT):
                info = await self.docker.containers.container(handle).show()
        except DockerError as e:
            if e.status == 404:
                self._engine_answered()
                return "its container is gone"
            self._engine_failed(handle, e)
            return None
        except UNREACHABLE as e:
            self._engine_failed(handle, e)
            return None
        self._engine_answered()
        state = info.get("State", {})
        if state.get("Running"):
            return None
        if state.get("OOMKilled"):
            return "its container was killed for using too much memory"
        if state.get("Status") == "created":
            return None
        return f"its container stopped ({state.get('Status')}, exit code {state.get('ExitCode')})"

    def _engine_failed(self, handle: str, e: Exception) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since, self._retry_delay = now, RETRY_FIRST
            log.error("cannot ask about worker container %s: %s; until it answers, workers count as running"
                      " while their heartbeats last", handle[:12], explain(e))
        else:
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
            log.error("still no answer from the Docker engine after %.0fs: %s", now - self._down_since, explain(e))
        self._retry_at = now + self._retry_delay

    def _engine_answered(self) -> None:
        if self._down_since is not None:
            log.warning("the Docker engine answers again, after %.0fs", time.monotonic() - self._down_since)
            self._down_since = None

    async def kill_job(self, handle: str, pid: int, pid_start: str = "") -> None:
        """The job's pid lives in the container's namespace: killing the container (by its id, never
        a host pid) is the sure way."""
        try:
            await self.docker.containers.container(handle).kill(signal="SIGKILL")
        except Exception as e:
            log.info("kill of container %s: %s", handle[:12], e)

    async def waiting(self, handle: str) -> str | None:
        return None  # it starts at once or fails

    async def node(self, handle: str) -> str:
        return ""  # this host's engine

    async def managed(self) -> dict[str, str]:
        """Containers of ours: labelled managed, and of this instance or of none."""
        try:
            containers = await self.docker.containers.list(
                all=True, filters={"label": [f"{LABEL_MANAGED}=true"]}
            )
        except Exception as e:
            log.error("cannot list worker containers: %s", explain(e))
            return {}
        found = {}
        for c in containers:
            labels = c._container.get("Labels") or {}
            if labels.get(LABEL_INSTANCE, "") in ("", self.instance):
                found[labels.get(LABEL_WORKER) or c.id] = str(c.id)
        return found
