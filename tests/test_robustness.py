"""The daemon survives any bytes a client sends, and answers bad input with a typed error."""

from __future__ import annotations

import os
import socket
import struct

import msgspec
from conftest import Daemon

from hodei.frames import encode_frame
from hodei.protocol import PROTOCOL_VERSION, Hello, Role


def _raw(daemon: Daemon, data: bytes, path=None) -> bytes:
    """Send raw bytes on a fresh connection and return whatever comes back before it closes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(str(path or daemon.socket))
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    return b"".join(chunks) if "chunks" in locals() else b""


def _frames(data: bytes) -> list[dict]:
    out, pos = [], 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(msgspec.msgpack.decode(data[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return out


HELLO = encode_frame(Hello(version=PROTOCOL_VERSION, role=Role.CTL))


def test_garbage_and_oversized_frames_leave_the_daemon_serving(daemon: Daemon) -> None:
    """Random bytes, a huge length, a truncated frame, wrong tags and types: each gets an error or a close."""
    cases = [
        os.urandom(4096),
        struct.pack(">I", 0xFFFFFFFF) + b"x" * 100,
        struct.pack(">I", 9 * 1024 * 1024),
        struct.pack(">I", 100) + b"short",
        encode_frame({"type": "NoSuchMessage"}),
        encode_frame({"type": "Hello", "version": "one", "role": 5}),
        HELLO + encode_frame({"type": "Submit", "spec": {"command": "not a list"}}),
        HELLO + encode_frame({"type": "GetJob", "job_id": "1; DROP TABLE jobs"}),
        HELLO + struct.pack(">I", 64 * 1024 * 1024),
        HELLO + b"\x00\x00\x00\x03\xc1\xc1\xc1",
        b"",
    ]
    for case in cases:
        replies = _frames(_raw(daemon, case))
        for reply in replies:
            assert reply["type"] in ("Error", "Welcome"), reply
    oversized = _frames(_raw(daemon, HELLO + struct.pack(">I", 64 * 1024 * 1024)))
    assert oversized[-1]["type"] == "Error" and "limit" in oversized[-1]["message"]
    wrong_type = _frames(_raw(daemon, HELLO + encode_frame({"type": "GetJob", "job_id": "x"})))
    assert wrong_type[-1]["type"] == "Error"
    jid = daemon.submit("echo still here")
    assert daemon.wait_final(jid)["state"] == "succeeded"
    assert daemon.output(jid) == b"still here\n"


def test_wrong_version_and_wrong_role_are_refused_with_a_reason(daemon: Daemon) -> None:
    """A client of another protocol version, or an agent on the control socket, is told why."""
    old = _frames(_raw(daemon, encode_frame(Hello(version=PROTOCOL_VERSION + 99, role=Role.CTL))))
    assert old == [{"type": "Error", "code": "version", "message": old[0]["message"]}]
    assert "protocol version" in old[0]["message"]
    agent_on_ctl = _frames(_raw(daemon, encode_frame(Hello(version=PROTOCOL_VERSION, role=Role.AGENT))))
    assert agent_on_ctl[0]["type"] == "Error"


def test_agent_without_a_valid_token_is_refused(daemon: Daemon) -> None:
    """The agent socket refuses a worker id and token it did not hand out."""
    forged = Hello(version=PROTOCOL_VERSION, role=Role.AGENT, worker_id="wdeadbeef", token="guess")
    replies = _frames(_raw(daemon, encode_frame(forged), path=daemon.agent_socket))
    assert replies[0]["type"] == "Error" and replies[0]["code"] == "auth"
    assert daemon.workers() == []


def test_many_garbage_connections_in_a_row(daemon: Daemon) -> None:
    """Hundreds of garbage connections leave the daemon serving."""
    for i in range(300):
        _raw(daemon, os.urandom(64 + i))
    assert daemon.wait_final(daemon.submit("true"))["state"] == "succeeded"


def test_silent_client_is_dropped_after_the_handshake_timeout(make_daemon) -> None:
    """A client that connects and says nothing is disconnected once the handshake time is up."""
    d: Daemon = make_daemon("--handshake-timeout", "1")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(d.socket))
    assert s.recv(100) == b""  # closed by hodeid, not by us
    s.close()
    assert "sent no hello within 1s" in d.log()
    assert d.wait_final(d.submit("true"))["state"] == "succeeded"


def test_requests_right_after_a_log_stream_are_not_lost(daemon: Daemon) -> None:
    """On one connection, a request sent the moment a log stream ends is answered (200 times in a row)."""
    from hodeictl.client import Client, spec_from_cli

    with Client(daemon.socket, timeout=10) as c:  # a request left unanswered fails the test, not hangs it
        job = c.submit(spec_from_cli(["echo hi"]))
        c.wait([job.id])
        for _ in range(200):
            for _msg in c.logs(job.id):
                pass
            assert isinstance(c.workers(), list)
