"""`hodeid`: parse flags into a Config and run the server. Nothing else lives here."""

from __future__ import annotations

import argparse
import grp
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from hodei import __version__, loops
from hodei.errors import HodeiError
from hodei.paths import default_socket, default_state_dir
from hodeid import logsetup
from hodeid.config import LIMITS, LOG_LEVELS, PROVIDERS, SOCKET_PATH_MAX, Config, ConfigError, describe


def _number(kind: type[int] | type[float], flag: str) -> Callable[[str], float]:
    """A number as typed; its range is checked with the rest of the settings (hodeid.config.check)."""
    def parse(text: str) -> float:
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}: it takes {describe(flag)}") from None

    return parse


def _socket_group() -> str | None:
    """$HODEI_SOCKET_GROUP; else, for root (the system service), the `hodei` group if the box has one."""
    if (env := os.environ.get("HODEI_SOCKET_GROUP")) is not None:
        return env or None
    if os.geteuid() == 0:
        try:
            return grp.getgrnam("hodei").gr_name
        except KeyError:
            pass
    return None


_NUMBERS = {  # the number flags and their help; hodeid.config.LIMITS has their ranges
    "--max-workers": "workers at once (default: the number of CPUs)",
    "--min-idle": "idle workers kept ready, at most --max-workers",
    "--idle-timeout": "seconds before an idle worker is stopped",
    "--heartbeat-interval": "seconds between an agent's heartbeats",
    "--heartbeat-timeout": "seconds of silence before a worker is lost, at least twice the interval",
    "--provision-timeout": "seconds a new worker has to register",
    "--handshake-timeout": "drop a connection that sends no hello within this many seconds",
    "--max-log-bytes": "output kept per job (default 1 GiB; 0: no limit); past it a marker, the job runs on",
    "--max-jobs-per-worker": "retire a worker after N jobs (0: never)",
    "--cpus": "docker CPU limit per worker (0: none)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, as hodeid's other refusals: `hodeid: ...`, exit status 2."""
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    d = Config.__dataclass_fields__
    p = _Parser(
        prog="hodeid",
        description="The hodei daemon: runs the job queue and its workers.",
        epilog="`hodeid build-image --help`: build the Docker worker image.",
    )
    p.add_argument("--version", action="version", version=f"hodeid {__version__}")
    p.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                   help="where the job database and the jobs' output live (env HODEI_STATE_DIR; default:"
                        " /var/lib/hodei for root, else $XDG_STATE_HOME/hodei or ~/.local/state/hodei)")
    p.add_argument("--socket", type=Path, default=None, metavar="PATH",
                   help=f"control socket (env HODEI_SOCKET); its path and agent/agent.sock beside it"
                   f" take at most {SOCKET_PATH_MAX} bytes")
    p.add_argument("--agent-socket", type=Path, default=None, metavar="PATH",
                   help="socket agents connect to (default: agent/agent.sock beside --socket)")
    p.add_argument("--socket-group", default=_socket_group(), metavar="GROUP",
                   help="make the control socket 0660 for this group (env HODEI_SOCKET_GROUP; root's default:"
                        " `hodei` when that group exists; '' for none)")
    p.add_argument("--admin-group", default=os.environ.get("HODEI_ADMIN_GROUP"), metavar="GROUP",
                   help="its members see and cancel every user's jobs and manage remote agents, as root does"
                        " (env HODEI_ADMIN_GROUP; default: none)")
    p.add_argument("--provider", choices=PROVIDERS, default=os.environ.get("HODEI_PROVIDER", "local"),
                   help="where workers run: local (processes on this host), docker (a container each),"
                        " swarm (Docker swarm services), auto (docker when an engine answers, else local)"
                        " (env HODEI_PROVIDER; default: local)")
    for flag, text in _NUMBERS.items():
        name = LIMITS[flag][0]
        kind = int if d[name].type == "int" else float
        field = d[name]  # max_workers' default depends on the machine: its field has a factory
        default = field.default_factory() if callable(field.default_factory) else field.default
        p.add_argument(flag, type=_number(kind, flag), default=default, metavar=kind.__name__.upper(),
                       help=f"{text}; {describe(flag)}")
    p.add_argument("--agent-listen", default=os.environ.get("HODEI_AGENT_LISTEN", ""), metavar="HOST:PORT",
                   help="also accept agents over TCP here, port 1 to 65535 (off by default;"
                   " register them with `hodeictl agents add`)")
    p.add_argument("--tls-cert", type=Path, default=None, metavar="PEM",
                   help="certificate (PEM) for --agent-listen")
    p.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="private key (PEM) for --agent-listen")
    p.add_argument("--image", default=os.environ.get("HODEI_WORKER_IMAGE", d["image"].default),
                   help="worker image of the docker and swarm providers, for jobs that name none"
                        f" (env HODEI_WORKER_IMAGE; default: {d['image'].default})")
    p.add_argument("--network", default="", metavar="MODE",
                   help="docker network mode for workers (default: the engine's)")
    p.add_argument("--memory", default="", metavar="SIZE", help="docker memory limit per worker, e.g. 2g")
    p.add_argument("--log-level", default=os.environ.get("HODEI_LOG_LEVEL", "info"), metavar="LEVEL",
                   help=f"least important messages hodeid logs: {', '.join(LOG_LEVELS)}"
                        " (env HODEI_LOG_LEVEL; default: info)")
    return p


def config_from(args: argparse.Namespace) -> Config:
    return Config(
        state_dir=args.state_dir or default_state_dir(),
        socket=args.socket or default_socket(),
        agent_socket=args.agent_socket,
        socket_group=args.socket_group,
        admin_group=args.admin_group,
        provider=args.provider,
        max_workers=args.max_workers,
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
        log_level=args.log_level,
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build-image"]:
        from hodeid import build_image

        return build_image.main(argv[1:])
    args = parser().parse_args(argv)
    try:
        config = config_from(args)
    except ConfigError as e:
        print(f"hodeid: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    logsetup.configure(config.log_level)
    from hodeid.server import Server

    try:
        loops.run(Server(config).run())
    except HodeiError as e:
        print(f"hodeid: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
