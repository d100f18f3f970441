"""`hodeid build-image`: build the worker image through the Docker API, with no network needed.

The build context is Dockerfile.worker and a wheels/ folder holding hodei and every dependency,
made on this host by `pip wheel` (or given with --wheels). The build runs with network mode none.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import aiodocker

from hodei.errors import HodeiError, ProviderError

DEFAULT_BASE = "python:3.11-slim"


def find_source() -> Path | None:
    """The hodei checkout this hodeid runs from (an editable install), if any."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() and (here / "Dockerfile.worker").exists() else None


def make_wheels(source: Path, into: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir", str(into),
           str(source)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise ProviderError(f"pip wheel failed:\n{res.stderr.strip()[-2000:]}")


def context_tar(dockerfile: Path, wheels: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(dockerfile, arcname="Dockerfile.worker")
        tar.add(wheels, arcname="wheels")
    return buf.getvalue()


async def build(context: bytes, tag: str, base: str, labels: dict[str, str], quiet: bool) -> None:
    docker = aiodocker.Docker()
    params = {
        "t": tag,
        "dockerfile": "Dockerfile.worker",
        "buildargs": json.dumps({"BASE_IMAGE": base}),
        "labels": json.dumps(labels),
        "networkmode": "none",  # aiodocker's build() has no such argument, hence the raw call
        "rm": "1",
        "forcerm": "1",
    }
    try:
        async with docker._query(
            "build", "POST", params=params, headers={"content-type": "application/x-tar"}, data=context, timeout=None
        ) as resp:
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise ProviderError(f"the image build failed: {event['error'].strip()}")
                if not quiet and (text := event.get("stream")):
                    sys.stderr.write(text)
    except aiodocker.DockerError as e:
        raise ProviderError(f"the image build failed: {e.message}") from e
    finally:
        await docker.close()


def split_tag(ref: str) -> tuple[str, str]:
    """``registry:5000/name:tag`` -> (``registry:5000/name``, ``tag``); no tag is ``latest``."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:  # no colon, or the colon is a registry's port
        return ref, "latest"
    return name, tag


async def push(ref: str) -> None:
    """Push the image to the registry its name starts with, so that every swarm node can pull it."""
    docker = aiodocker.Docker()
    name, tag = split_tag(ref)
    try:
        await docker.images.push(name, tag=tag)
    except aiodocker.DockerError as e:
        raise ProviderError(f"cannot push {ref}: {e.message}") from e
    finally:
        await docker.close()


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="hodeid build-image", description="Build the hodei worker image (no network needed).")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"base image with python3 and venv (default {DEFAULT_BASE})")
    p.add_argument("--tag", default="hodei-worker:latest", help="image tag to build")
    p.add_argument("--push", metavar="REGISTRY/NAME:TAG", default="",
                   help="build the image as this tag and push it there, for the nodes of a swarm to pull")
    p.add_argument("--source", type=Path, default=None, help="hodei source checkout (default: the one hodeid runs from)")
    p.add_argument("--wheels", type=Path, default=None, help="use these wheels instead of running pip wheel")
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE image label, repeatable")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    args.tag = args.push or args.tag
    try:
        source = args.source or find_source()
        if source is None or not (source / "Dockerfile.worker").exists():
            raise HodeiError("cannot find the hodei sources: pass --source DIR (a checkout with Dockerfile.worker)")
        labels = dict(item.partition("=")[::2] for item in args.label)
        with tempfile.TemporaryDirectory(prefix="hodei-build-") as tmp:
            wheels = args.wheels or Path(tmp) / "wheels"
            if args.wheels is None:
                print(f"hodeid: making wheels of {source}", file=sys.stderr)
                make_wheels(source, wheels)
            print(f"hodeid: building {args.tag} on {args.base}", file=sys.stderr)
            asyncio.run(build(context_tar(source / "Dockerfile.worker", wheels), args.tag, args.base, labels, args.quiet))
        if args.push:
            print(f"hodeid: pushing {args.push}", file=sys.stderr)
            asyncio.run(push(args.push))
    except HodeiError as e:
        print(f"hodeid: {e}", file=sys.stderr)
        sys.exit(1)
    except (OSError, aiodocker.DockerError) as e:
        print(f"hodeid: cannot reach the Docker engine: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"hodeid: built {args.tag}{' and pushed it' if args.push else ''}", file=sys.stderr)
