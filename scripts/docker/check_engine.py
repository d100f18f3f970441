"""Check that the local Docker engine does what hodei's workers need.

Through the Docker API (aiodocker), with the container config the daemon is
meant to use for workers:

  1. a container with network mode none and Init=true reaches a Unix socket
     served on the host and bind-mounted into it (as a file, and as its
     directory), and docker-init is its PID 1;
  2. a running container is killed through the API, then removed;
  3. the median time of `docker run --rm IMAGE true` over 5 runs.

Usage: .venv/bin/python scripts/docker/check_engine.py [--image hodei-base:bookworm]
Exits non-zero, with one line saying what failed, if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import aiodocker

CLIENT_SNIPPET = r"""
import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["SOCK"])
s.sendall(b"ping from " + os.environ["WHO"].encode() + b"\n")
print("reply:", s.recv(200).decode().strip())
print("pid1:", os.readlink("/proc/1/exe"))
print("ifaces:", sorted(n for _, n in socket.if_nameindex()))
"""


def container_config(image: str, cmd: list[str], binds: list[str], env: dict[str, str]) -> dict:
    return {
        "Image": image,
        "Cmd": cmd,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": {"hodei.check": "1"},
        "HostConfig": {
            "Binds": binds,
            "NetworkMode": "none",
            "Init": True,
        },
    }


async def echo_server(path: str) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(b"echo: " + line)
        await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(handle, path=path)


async def run_to_end(docker: aiodocker.Docker, config: dict, name: str) -> tuple[int, str]:
    container = await docker.containers.create(config=config, name=name)
    try:
        await container.start()
        result = await asyncio.wait_for(container.wait(), timeout=30)
        logs = "".join(await container.log(stdout=True, stderr=True))
        return result["StatusCode"], logs
    finally:
        await container.delete(force=True)


async def check_socket(docker: aiodocker.Docker, image: str, tmp: str) -> None:
    sock = os.path.join(tmp, "agent.sock")
    server = await echo_server(sock)
    try:
        cases = {
            # the socket file itself
            "file": (f"{sock}:/run/hodei/agent.sock", "/run/hodei/agent.sock"),
            # its directory: survives the socket being recreated on the host
            "dir": (f"{tmp}:/run/hodei", "/run/hodei/agent.sock"),
        }
        for who, (bind, inside) in cases.items():
            config = container_config(
                image, ["python3", "-c", CLIENT_SNIPPET], [bind], {"SOCK": inside, "WHO": who}
            )
            t0 = time.monotonic()
            code, logs = await run_to_end(docker, config, f"hodei-check-sock-{who}-{os.getpid()}")
            dt = time.monotonic() - t0
            if code != 0 or f"echo: ping from {who}" not in logs:
                raise SystemExit(f"socket check ({who} bind) failed: exit {code}, output {logs!r}")
            if "docker-init" not in logs:
                raise SystemExit(f"socket check ({who} bind): PID 1 is not docker-init: {logs!r}")
            if "ifaces: ['lo']" not in logs:
                raise SystemExit(f"socket check ({who} bind): network is not none: {logs!r}")
            print(f"ok  socket via {who} bind, Init, network none ({dt:.2f}s): "
                  + " | ".join(logs.strip().splitlines()))
    finally:
        server.close()
        await server.wait_closed()


async def check_kill_remove(docker: aiodocker.Docker, image: str) -> None:
    config = container_config(image, ["sleep", "300"], [], {})
    name = f"hodei-check-kill-{os.getpid()}"
    container = await docker.containers.create(config=config, name=name)
    await container.start()
    info = await container.show()
    assert info["State"]["Running"], info["State"]
    t0 = time.monotonic()
    # SIGTERM goes to docker-init, which forwards it to `sleep`: a clean stop.
    await container.kill(signal="SIGTERM")
    result = await asyncio.wait_for(container.wait(), timeout=20)
    t_term = time.monotonic() - t0
    await container.delete(force=True)
    try:
        await docker.containers.get(name)
    except aiodocker.exceptions.DockerError as e:
        if e.status != 404:
            raise
    else:
        raise SystemExit("kill check: container still exists after delete")
    print(f"ok  SIGTERM via kill -> exit {result['StatusCode']} in {t_term:.2f}s; removed")

    container = await docker.containers.create(config=config, name=name)
    await container.start()
    t0 = time.monotonic()
    await container.kill()  # SIGKILL
    result = await asyncio.wait_for(container.wait(), timeout=20)
    await container.delete(force=True)
    print(f"ok  SIGKILL via kill -> exit {result['StatusCode']} in {time.monotonic() - t0:.2f}s; removed")


def time_docker_run(image: str, n: int = 5) -> None:
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        subprocess.run(["docker", "run", "--rm", image, "true"], check=True)
        times.append(time.monotonic() - t0)
    print(f"ok  docker run --rm {image} true: median {statistics.median(times):.3f}s "
          f"(runs: {', '.join(f'{t:.3f}' for t in times)})")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="hodei-base:bookworm")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hodei-check-")
    try:
        async with aiodocker.Docker() as docker:
            version = await docker.version()
            print(f"engine {version['Version']} (API {version['ApiVersion']})")
            await check_socket(docker, args.image, tmp)
            await check_kill_remove(docker, args.image)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    time_docker_run(args.image)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except aiodocker.exceptions.DockerError as e:
        sys.exit(f"engine check failed: Docker API error {e.status}: {e.message}")
