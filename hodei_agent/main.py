"""`hodei-agent`: read the worker's identity from the environment (or flags) and run the agent."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from hodei_agent.agent import Agent, AgentConfig


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
    token = os.environ.get("HODEI_WORKER_TOKEN", "")
    if not args.worker_id or not token:
        print("hodei-agent: HODEI_WORKER_ID and HODEI_WORKER_TOKEN must be set; hodeid sets them when it starts a worker",
              file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s hodei-agent[%(process)d]: %(message)s")
    config = AgentConfig(socket=args.socket, worker_id=args.worker_id, token=token,
                         heartbeat_interval=args.heartbeat_interval, tls_ca=args.tls_ca)
    try:
        import uvloop
    except ImportError:
        asyncio.run(Agent(config).run())
    else:
        uvloop.run(Agent(config).run())
