"""`hodeid`: parse flags into a Config and run the server. Nothing else lives here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from hodei import __version__
from hodei.errors import HodeiError
from hodei.paths import default_socket, default_state_dir
from hodeid import loops
from hodeid.config import Config


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} is negative")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    d = Config.__dataclass_fields__
    p = argparse.ArgumentParser(
        prog="hodeid",
        description="The hodei daemon: runs the job queue and its workers.",
        epilog="`hodeid build-image --help`: build the Docker worker image.",
    )
    p.add_argument("--version", action="version", version=f"hodeid {__version__}")
    p.add_argument("--state-dir", type=Path, default=None, help="database and logs (env HODEI_STATE_DIR)")
    p.add_argument("--socket", type=Path, default=None, help="control socket (env HODEI_SOCKET)")
    p.add_argument("--agent-socket", type=Path, default=None, help="socket agents connect to (default: agent/agent.sock beside --socket)")
    p.add_argument("--socket-group", default=os.environ.get("HODEI_SOCKET_GROUP"), help="make the control socket 0660 for this group")
    p.add_argument("--admin-group", default=os.environ.get("HODEI_ADMIN_GROUP"), help="members see and cancel all jobs")
    p.add_argument("--provider", choices=["local", "docker", "swarm", "auto"], default=os.environ.get("HODEI_PROVIDER", "local"))
    p.add_argument("--max-workers", type=_positive(int), default=d["max_workers"].default_factory())  # type: ignore[misc]
    p.add_argument("--min-idle", type=_positive(int), default=0)
    p.add_argument("--idle-timeout", type=_positive(float), default=d["idle_timeout"].default, help="seconds")
    p.add_argument("--heartbeat-interval", type=_positive(float), default=d["heartbeat_interval"].default)
    p.add_argument("--heartbeat-timeout", type=_positive(float), default=d["heartbeat_timeout"].default)
    p.add_argument("--provision-timeout", type=_positive(float), default=d["provision_timeout"].default)
    p.add_argument("--handshake-timeout", type=_positive(float), default=d["handshake_timeout"].default,
                   help="drop a connection that sends no hello within this many seconds")
    p.add_argument("--max-log-bytes", type=_positive(int), default=d["max_log_bytes"].default,
                   help="output kept per job (default 1 GiB; 0: no limit); past it a marker, the job runs on")
    p.add_argument("--max-jobs-per-worker", type=_positive(int), default=0, help="retire a worker after N jobs (0: never)")
    p.add_argument("--agent-listen", default=os.environ.get("HODEI_AGENT_LISTEN", ""), metavar="HOST:PORT",
                   help="also accept agents over TCP here (off by default; register them with `hodeictl agents add`)")
    p.add_argument("--tls-cert", type=Path, default=None, help="certificate (PEM) for --agent-listen")
    p.add_argument("--tls-key", type=Path, default=None, help="private key (PEM) for --agent-listen")
    p.add_argument("--image", default=os.environ.get("HODEI_WORKER_IMAGE", d["image"].default), help="docker worker image")
    p.add_argument("--network", default="", help="docker network mode for workers (default: the engine's)")
    p.add_argument("--cpus", type=_positive(float), default=0.0, help="docker CPU limit per worker")
    p.add_argument("--memory", default="", help="docker memory limit per worker, e.g. 2g")
    p.add_argument("--log-level", default=os.environ.get("HODEI_LOG_LEVEL", "info"))
    return p


def config_from(args: argparse.Namespace) -> Config:
    return Config(
        state_dir=args.state_dir or default_state_dir(),
        socket=args.socket or default_socket(),
        agent_socket=args.agent_socket,
        socket_group=args.socket_group,
        admin_group=args.admin_group,
        provider=args.provider,
        max_workers=max(1, args.max_workers),
        min_idle=args.min_idle,
        idle_timeout=args.idle_timeout,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout,
        provision_timeout=args.provision_timeout,
        max_jobs_per_worker=args.max_jobs_per_worker,
        handshake_timeout=args.handshake_timeout,
        max_log_bytes=args.max_log_bytes,
        agent_listen=args.agent_listen,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        image=args.image,
        network=args.network,
        cpus=args.cpus,
        memory=args.memory,
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build-image"]:
        from hodeid import build_image

        return build_image.main(argv[1:])
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    config = config_from(args)
    from hodeid.server import Server

    try:
        loops.run(Server(config).run())
    except HodeiError as e:
        print(f"hodeid: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
