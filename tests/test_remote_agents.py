"""Agents on other machines: TCP off by default; with it on, TLS and a token per agent."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
from conftest import BIN, Daemon, wait_for

from hodei.frames import encode_frame
from hodei.protocol import PROTOCOL_VERSION, Hello, Role


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def start_agent(d: Daemon, address: str, worker_id: str, token: str, ca=None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HODEI_WORKER_ID": worker_id, "HODEI_WORKER_TOKEN": token,
           "HODEI_HEARTBEAT_INTERVAL": "0.5", "HODEI_AGENT_SOCKET": address}
    if ca:
        env["HODEI_TLS_CA"] = str(ca)
    with open(d.root / f"agent-{worker_id}.log", "ab") as log:
        return subprocess.Popen([str(BIN / "hodei-agent")], env=env, stdout=log, stderr=log)


def listening_ports(pid: int) -> str:
    return subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout


def test_no_tcp_listener_by_default(daemon: Daemon) -> None:
    """Without --agent-listen, hodeid listens on no TCP port at all."""
    assert daemon.proc is not None
    assert f"pid={daemon.proc.pid}," not in listening_ports(daemon.proc.pid)


def test_remote_agent_over_tls_runs_jobs_and_bad_tokens_are_refused(make_daemon, tls) -> None:
    """A registered agent connects over TLS with its token and runs a job; a wrong token is refused."""
    cert, key = tls
    port = free_port()
    d: Daemon = make_daemon("--agent-listen", f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key))
    added = json.loads(d.ctl("agents", "add", "--json").stdout)
    address = f"tls://127.0.0.1:{port}"
    intruder = start_agent(d, address, added["worker_id"], "not-the-token", ca=cert)
    agent = start_agent(d, address, added["worker_id"], added["token"], ca=cert)
    try:
        assert intruder.wait(timeout=30) is not None
        wait_for(lambda: [(w["id"], w["provider"], w["state"]) for w in d.workers()]
                 == [(added["worker_id"], "remote", "idle")], timeout=30, what="the remote agent to register")
        jid = d.submit("echo ran on the remote agent")
        job = d.wait_final(jid)
        assert job["state"] == "succeeded" and job["worker_id"] == added["worker_id"]
        assert d.output(jid) == b"ran on the remote agent\n"
        assert "presented no valid token" in d.log()
        hello = encode_frame(Hello(version=PROTOCOL_VERSION, role=Role.AGENT, worker_id=added["worker_id"],
                                   token=added["token"]))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:  # no TLS: no welcome
            plain.sendall(hello)
            try:
                answer = plain.recv(1000)
            except ConnectionResetError:
                answer = b""
            assert b"Welcome" not in answer
        d.ctl("agents", "rm", added["worker_id"])
        assert agent.wait(timeout=30) == 0  # told to go, it exits
        assert d.workers() == []
        assert d.wait_final(d.submit("echo local"))["state"] == "succeeded"  # local workers still serve
    finally:
        for p in (agent, intruder):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_remote_agent_with_plain_tcp_on_loopback(make_daemon) -> None:
    """Without a certificate the listener is plain TCP (hodeid warns unless it is loopback)."""
    port = free_port()
    d: Daemon = make_daemon("--agent-listen", f"127.0.0.1:{port}")
    added = json.loads(d.ctl("agents", "add", "--pool", "gpu", "--json").stdout)
    agent = start_agent(d, f"tcp://127.0.0.1:{port}", added["worker_id"], added["token"])
    try:
        wait_for(lambda: d.workers() and d.workers()[0]["state"] == "idle", timeout=30, what="the remote agent")
        jid = d.submit("--image", "gpu", "echo pooled")
        job = d.wait_final(jid)
        assert job["worker_id"] == added["worker_id"] and d.output(jid) == b"pooled\n"
    finally:
        agent.kill()
        agent.wait()
