"""Workers as Docker Swarm services, through the manager's Docker API (aiodocker).

Each worker is a service named ``hodei-worker-<id>`` with one replica and restart condition none
(not the replicated-job mode: on Docker 20.10, removing a running replicated-job service leaves its
container running, moby #44312), labelled like the Docker provider's containers. Its task runs on the
node's host network, so the agent dials hodeid's ``--agent-listen`` address with no overlay (and no
IPVS); the one-time token and the CA certificate reach it as Docker secrets, so ``docker service
inspect`` shows no token. The handle of a worker is its service's id.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from aiodocker.exceptions import DockerError

from hodei.errors import ProviderError
from hodei.pools import split_pool
from hodeid.config import Config
from hodeid.providers.docker import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_WORKER,
    EngineClient,
    explain,
    parse_memory,
)

log = logging.getLogger("hodeid.swarm")
SECRET_DIR = "/run/secrets"
TOKEN_FILE = "hodei-token"
CA_FILE = "hodei-ca.pem"
STOP_GRACE_NS = 5 * 10**9  # when a service goes: SIGTERM to the agent, SIGKILL this long after
RUNNING = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}


class SwarmProvider(EngineClient):
    name = "swarm"

    def __init__(self, config: Config, instance: str = "") -> None:
        super().__init__(config, instance)
        self._nodes: dict[str, dict[str, Any]] = {}
        self._nodes_at = 0.0
        self._ca_secret: dict[str, str] | None = None
        self._ca_lock = asyncio.Lock()

    # ---- start ----------------------------------------------------------------------------------

    def agent_address(self) -> str:
        host, _, port = self.config.agent_listen.rpartition(":")
        if not self.config.agent_listen or host in ("", "0.0.0.0", "[::]", "::"):
            raise ProviderError(
                "--provider swarm needs --agent-listen HOST:PORT with an address every node can reach"
                " (the manager's address on the nodes' network, not 0.0.0.0)"
            )
        return f"{'tls' if self.config.tls_cert else 'tcp'}://{host}:{port}"

    async def check(self) -> None:
        """Refuse to start, saying what to do, unless the engine is a swarm manager."""
        self.agent_address()
        try:
            info = await asyncio.wait_for(self.docker.system.info(), 10)
        except Exception as e:
            await self.close()
            raise ProviderError(
                f"--provider swarm, but no Docker engine answers ({e or type(e).__name__}): start dockerd"
                " on a swarm manager, or set DOCKER_HOST to one"
            ) from e
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            await self.close()
            state = swarm.get("LocalNodeState") or "inactive"
            raise ProviderError(
                f"--provider swarm, but this Docker engine is not a swarm manager (swarm state: {state}):"
                " run `docker swarm init` here (and `docker swarm join` on the other nodes), or set"
                " DOCKER_HOST to a manager's engine"
            )

    async def _ca(self) -> dict[str, str] | None:
        """The secret holding the certificate agents check hodeid with (the --tls-cert file)."""
        if self.config.tls_cert is None:
            return None
        async with self._ca_lock:  # workers start concurrently: one creates the secret, the others use it
            if self._ca_secret is None:
                pem = self.config.tls_cert.read_text()
                name = f"hodei-ca-{self.instance}-{hashlib.sha256(pem.encode()).hexdigest()[:12]}"
                try:
                    found = await self.docker.secrets.list(filters={"name": [name]})
                    exact = [s for s in found if s["Spec"]["Name"] == name]
                    secret_id = exact[0]["ID"] if exact else (await self.docker.secrets.create(
                        name, pem, labels={LABEL_MANAGED: "true", LABEL_INSTANCE: self.instance}))["ID"]
                except DockerError as e:
                    raise ProviderError(f"cannot store the CA certificate as a Docker secret: {explain(e)}") from e
                self._ca_secret = {"id": secret_id, "name": name}
            return self._ca_secret

    def service_spec(self, worker_id: str, image: str, secrets: list[dict[str, Any]],
                     constraints: list[str]) -> dict[str, Any]:
        cfg = self.config
        env = {
            "HODEI_AGENT_SOCKET": self.agent_address(),
            "HODEI_WORKER_ID": worker_id,
            "HODEI_HEARTBEAT_INTERVAL": str(cfg.heartbeat_interval),
            # The agent reads its token from the secret file once: it is in no environment and in no
            # part of the service's spec (and it is spent at registration anyway).
            "HODEI_WORKER_TOKEN_FILE": f"{SECRET_DIR}/{TOKEN_FILE}",
        }
        if cfg.tls_cert is not None:
            env["HODEI_TLS_CA"] = f"{SECRET_DIR}/{CA_FILE}"
        resources: dict[str, Any] = {}
        if cfg.cpus:
            resources["NanoCPUs"] = int(cfg.cpus * 1e9)
        if cfg.memory:
            resources["MemoryBytes"] = parse_memory(cfg.memory)
        return {
            "ContainerSpec": {
                "Image": image,
                "Env": env,
                "Init": True,  # docker-init as PID 1: forwards signals, reaps orphans
                "Labels": self.labels(worker_id),
                "Secrets": secrets,
                "StopGracePeriod": STOP_GRACE_NS,
            },
            "Resources": {"Limits": resources, "Reservations": dict(resources)},
            "RestartPolicy": {"Condition": "none"},
            "Placement": {"Constraints": constraints},
            "Networks": [{"Target": "host"}],
        }

    def labels(self, worker_id: str) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_WORKER: worker_id, LABEL_INSTANCE: self.instance}

    async def start(self, worker_id: str, token: str, image: str) -> str:
        """``image`` is the pool's key: the image (or "" for the configured one) and the constraints."""
        image, constraints = split_pool(image)
        image = image or self.config.image
        name = f"hodei-worker-{worker_id}"
        ca = await self._ca()
        try:
            token_secret = await self.docker.secrets.create(f"{name}-token", token, labels=self.labels(worker_id))
        except DockerError as e:
            raise ProviderError(f"cannot store the worker's token as a Docker secret: {explain(e)}") from e
        secrets = [_secret_ref(token_secret["ID"], f"{name}-token", TOKEN_FILE, 0o400)]
        if ca is not None:
            secrets.append(_secret_ref(ca["id"], ca["name"], CA_FILE, 0o444))
        try:
            created = await self.docker.services.create(
                self.service_spec(worker_id, image, secrets, constraints),
                name=name,
                labels=self.labels(worker_id),
                mode={"Replicated": {"Replicas": 1}},
            )
        except Exception as e:
            await self._delete_secret(token_secret["ID"])
            raise ProviderError(f"cannot create a worker service: {explain(e)}") from e
        return str(created["ID"])

    # ---- stop -----------------------------------------------------------------------------------

    async def stop(self, handle: str, force: bool) -> None:
        if not force:
            deadline = time.monotonic() + 5  # the agent exits by itself when asked to
            while time.monotonic() < deadline and await self.exited(handle) is None:
                await asyncio.sleep(0.25)
        await self._remove(handle)

    async def _remove(self, handle: str) -> None:
        """Remove the service (its node stops the task: SIGTERM, SIGKILL after the grace) and its token."""
        try:
            spec = await self.docker.services.inspect(handle)
            await self.docker.services.delete(handle)
        except DockerError as e:
            if e.status != 404:
                log.error("cannot remove service %s: %s", handle[:12], explain(e))
            return
        except Exception as e:
            log.error("cannot remove service %s: %s", handle[:12], explain(e))
            return
        secrets = spec["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []
        for s in secrets:
            if s.get("File", {}).get("Name") == TOKEN_FILE:
                await self._delete_secret(s["SecretID"])

    async def _delete_secret(self, secret_id: str) -> None:
        try:
            await self.docker.secrets.delete(secret_id)
        except Exception as e:
            log.info("cannot remove secret %s: %s", secret_id[:12], explain(e))

    async def kill_job(self, handle: str, pid: int, pid_start: str = "") -> None:
        """The job runs on some node (its pid means nothing here): removing its service is the sure way
        (SIGKILL after the stop grace)."""
        await self._remove(handle)

    # ---- state ----------------------------------------------------------------------------------

    async def node_name(self, node_id: str) -> tuple[str, str]:
        """A node's hostname and state ("ready", "down", ...), from a list at most a second old."""
        if node_id not in self._nodes or time.monotonic() - self._nodes_at > 1.0:
            try:
                self._nodes = {n["ID"]: dict(n) for n in await self.docker.nodes.list()}
                self._nodes_at = time.monotonic()
            except Exception as e:
                log.info("cannot list swarm nodes: %s", explain(e))
        node = self._nodes.get(node_id) or {}
        return (node.get("Description", {}).get("Hostname") or node_id[:12],
                node.get("Status", {}).get("State", "unknown"))

    async def task(self, handle: str) -> dict[str, Any] | None:
        """The service's newest task, or None when it has none yet."""
        tasks: list[dict[str, Any]] = [dict(t) for t in await self.docker.tasks.list(filters={"service": [handle]})]
        return max(tasks, key=lambda t: t.get("Version", {}).get("Index", 0)) if tasks else None

    async def node(self, handle: str) -> str:
        """The hostname of the node the worker's task was placed on ("" before it is placed)."""
        try:
            task = await self.task(handle)
        except Exception:
            return ""
        if not task or not task.get("NodeID"):
            return ""
        return (await self.node_name(task["NodeID"]))[0]

    async def waiting(self, handle: str) -> str | None:
        """A task the scheduler cannot place yet says why (no node satisfies the constraints or has room)."""
        try:
            task = await self.task(handle)
        except Exception:
            return None
        status = (task or {}).get("Status", {})
        if status.get("State") == "pending" and status.get("Err"):
            return f"the swarm cannot place it: {status['Err']}"
        return None

    async def exited(self, handle: str) -> str | None:
        try:
            await self.docker.services.inspect(handle)
            task = await self.task(handle)
        except DockerError as e:
            if e.status == 404:
                return "its service is gone"
            return None  # the manager is having trouble; heartbeats decide
        except Exception:
            return None
        if task is None:
            return None
        status = task.get("Status", {})
        state = status.get("State", "")
        node = ""
        if task.get("NodeID"):
            node, node_state = await self.node_name(task["NodeID"])
            if node_state == "down" and state in RUNNING:
                return f"its node {node} is down"
        where = f" on node {node}" if node else ""
        if state in RUNNING:
            return None
        exit_code = status.get("ContainerStatus", {}).get("ExitCode")
        if state == "complete":
            return f"its task{where} ended (exit code {exit_code})"
        if state in ("failed", "rejected"):
            return f"its task{where} {state}: {status.get('Err') or status.get('Message')}"
        return f"its task{where} was {state}"

    async def managed(self) -> dict[str, str]:
        """Services of ours: labelled managed, and of this instance or of none. Token secrets of ours
        whose service is gone (a removal cut short) are removed on the way."""
        managed = {"label": [f"{LABEL_MANAGED}=true"]}
        try:
            services = await self.docker.services.list(filters=managed)
            secrets = await self.docker.secrets.list(filters=managed)
        except Exception as e:
            log.error("cannot list worker services: %s", explain(e))
            return {}
        found = {}
        for s in services:
            labels = s.get("Spec", {}).get("Labels") or {}
            if labels.get(LABEL_INSTANCE, "") in ("", self.instance):
                found[labels.get(LABEL_WORKER) or s["ID"]] = str(s["ID"])
        for secret in secrets:
            labels = secret.get("Spec", {}).get("Labels") or {}
            worker = labels.get(LABEL_WORKER)
            if worker and worker not in found and labels.get(LABEL_INSTANCE, "") in ("", self.instance):
                await self._delete_secret(secret["ID"])
        return found


def _secret_ref(secret_id: str, name: str, file: str, mode: int) -> dict[str, Any]:
    return {"SecretID": secret_id, "SecretName": name, "File": {"Name": file, "UID": "0", "GID": "0", "Mode": mode}}
