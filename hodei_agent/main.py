"""`hodei-agent`: read the worker's identity from the environment (or flags) and run the agent."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys

from hodei import loops
from hodei_agent.agent import Agent, AgentConfig

PR_SET_DUMPABLE = 4


def read_token() -> str:
    """The worker's token: from HODEI_WORKER_TOKEN_FILE (``-``: standard input, as the local provider
    sends it) or HODEI_WORKER_TOKEN. It does not stay in the environment jobs could be given."""
    path = os.environ.pop("HODEI_WORKER_TOKEN_FILE", "")
    token = os.environ.pop("HODEI_WORKER_TOKEN", "")
    if path:
        try:
            with open(sys.stdin.fileno() if path == "-" else path, closefd=path != "-") as f:
                token = f.readline().strip()
        except OSError as e:
            print(f"hodei-agent: cannot read the worker token from {path}: {e.strerror}", file=sys.stderr)
            sys.exit(2)
    return token


def undumpable() -> None:
    """Jobs may run as the agent's own user: they must not read its memory or /proc/PID/environ (where
    its token is), which a process that is not dumpable keeps to root."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="hodei-agent", description="hodei worker agent (started by hodeid)")
    p.add_argument("--socket", "--connect", dest="socket",
                   default=os.environ.get("HODEI_AGENT_SOCKET", "/run/hodei/agent/agent.sock"),
                   help="hodeid's agent socket, or tcp://HOST:PORT / tls://HOST:PORT (env HODEI_AGENT_SOCKET)")
    p.add_argument("--tls-ca", default=os.environ.get("HODEI_TLS_CA", ""),
                   help="CA certificate to check hodeid with (tls://; default: the system's)")
    p.add_argument("--worker-id", default=os.environ.get("HODEI_WORKER_ID", ""))
    p.add_argument("--heartbeat-interval", type=float, default=float(os.environ.get("HODEI_HEARTBEAT_INTERVAL") or 2.0))
    args = p.parse_args(argv)
    token = read_token()
    if not args.worker_id or not token:
        print("hodei-agent: HODEI_WORKER_ID and HODEI_WORKER_TOKEN (or HODEI_WORKER_TOKEN_FILE) must be set;"
              " hodeid sets them when it starts a worker", file=sys.stderr)
        sys.exit(2)
    undumpable()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s hodei-agent[%(process)d]: %(message)s")
    config = AgentConfig(socket=args.socket, worker_id=args.worker_id, token=token,
                         heartbeat_interval=args.heartbeat_interval, tls_ca=args.tls_ca)
    loops.run(Agent(config).run())
