"""`hodeid build-image`: build the worker image through the Docker API, with no network needed.

The build context is Dockerfile.worker (shipped in this package) and a wheels/ folder holding hodei
and every dependency (or given with --wheels). The hodei wheel is the distribution this hodeid runs
from: remade from its installed files, or built from its checkout when it runs from one (an editable
install), or built from --source DIR; `pip wheel` adds the dependencies. The build runs with network
mode none.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import importlib.metadata
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

import aiodocker

from hodei.errors import HodeiError, ProviderError

DEFAULT_BASE = "python:3.11-slim"
DOCKERFILE = Path(__file__).with_name("Dockerfile.worker")
DISTRIBUTION = "hodei"
# Files of an installed distribution that are the installer's, not the wheel's.
INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def find_source() -> Path | None:
    """The hodei checkout this hodeid runs from (an editable install), if any."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else None


def installed_files() -> tuple[importlib.metadata.Distribution, list[importlib.metadata.PackagePath]] | None:
    """The installed hodei distribution and its files, when this hodeid runs from them (an install
    from a wheel); None for an editable install or a checkout on the path."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    files = dist.files or []
    here = Path(__file__).resolve()
    if not any(f.name == here.name and Path(str(dist.locate_file(f))).resolve() == here for f in files):
        return None
    return dist, files


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_of_installed(dist: importlib.metadata.Distribution, files: list[importlib.metadata.PackagePath],
                       into: Path) -> Path:
    """Remake the wheel of an installed distribution from its files: the packages and the .dist-info
    it was installed with, minus compiled caches, the scripts pip made and the installer's own files."""
    dist_info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    wheel_meta = Parser().parsestr(Path(str(dist.locate_file(f"{dist_info}/WHEEL"))).read_text())
    tag = (wheel_meta.get_all("Tag") or ["py3-none-any"])[0]  # hodei is pure Python: one tag
    name = dist.metadata["Name"].replace("-", "_")
    path = into / f"{name}-{dist.version}-{tag}.whl"
    record = []
    into.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for f in files:
            if f.parts[0] == ".." or "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            if f.parts[0] == dist_info and f.name in INSTALLER_FILES:
                continue
            data = Path(str(dist.locate_file(f))).read_bytes()
            whl.writestr(f.as_posix(), data)
            record.append(f"{f.as_posix()},{record_hash(data)},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        whl.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path


def hodei_wheel_source(source: Path | None, tmp: Path) -> Path:
    """What `pip wheel` makes the hodei wheel from: --source, else the distribution hodeid runs from."""
    if source is not None:
        if not (source / "pyproject.toml").exists():
            raise HodeiError(f"--source {source} is not a hodei checkout: it has no pyproject.toml")
        return source
    if (installed := installed_files()) is not None:
        return wheel_of_installed(*installed, into=tmp / "installed")
    if (checkout := find_source()) is not None:
        return checkout
    raise HodeiError("cannot find the files of the hodei distribution this hodeid runs from:"
                     " pass --source DIR (a hodei checkout) or --wheels DIR")


def make_wheels(source: Path, into: Path) -> None:
    """Wheels of ``source`` (a checkout or a wheel file) and of every dependency, into ``into``."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir", str(into),
           str(source)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
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
    p = argparse.ArgumentParser(prog="hodeid build-image",
                                description="Build the hodei worker image (no network needed).")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"base image with python3 and venv (default {DEFAULT_BASE})")
    p.add_argument("--tag", default="hodei-worker:latest", help="image tag to build")
    p.add_argument("--push", metavar="REGISTRY/NAME:TAG", default="",
                   help="build the image as this tag and push it there, for the nodes of a swarm to pull")
    p.add_argument("--source", type=Path, default=None,
                   help="hodei source checkout to build from (default: the hodei this hodeid runs from)")
    p.add_argument("--wheels", type=Path, default=None, help="use these wheels instead of running pip wheel")
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE image label, repeatable")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the build's progress")
    args = p.parse_args(argv)
    args.tag = args.push or args.tag
    try:
        labels = dict(item.partition("=")[::2] for item in args.label)
        with tempfile.TemporaryDirectory(prefix="hodei-build-") as tmp:
            wheels = args.wheels or Path(tmp) / "wheels"
            if args.wheels is None:
                source = hodei_wheel_source(args.source, Path(tmp))
                print(f"hodeid: making wheels of {source}", file=sys.stderr)
                make_wheels(source, wheels)
            print(f"hodeid: building {args.tag} on {args.base}", file=sys.stderr)
            asyncio.run(build(context_tar(DOCKERFILE, wheels), args.tag, args.base, labels, args.quiet))
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
