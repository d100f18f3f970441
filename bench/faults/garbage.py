#!/usr/bin/env python3
# A benchmark, not library code: it reports whatever a case raises, and its async cases call blocking
# subprocesses on purpose (the real CLI, timed one at a time).
"""Case 5: 10,000 garbage connections in a row on the control socket (2,000 on the agent socket), then a job.

    .venv/bin/python bench/faults/garbage.py [--quick]    # --quick: 2,000

Each connection sends nothing, random bytes, a frame of random msgpack, an oversized length prefix,
or a valid Hello followed by random bytes (seeded). Reported: what each got back (an Error, a close,
or no answer in 15 s: hung), hodeid's RSS and open fds before and after, and whether `hodeictl
submit -f` still works. Part of bench/reliability.py.
"""

from __future__ import annotations

import asyncio
import collections
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import case  # noqa: F401  (first: the venv's python, and the snapshot of the code first on sys.path)
import msgspec
from case import (
    Poller,
    Run,
    ctl,
    entry,
    mb,
)

from hodei.frames import encode_frame
from hodei.protocol import MAX_FRAME, PROTOCOL_VERSION, CtlReply, Error, Hello, Role
from hodei_testing import fd_count, rss_kb
from hodeictl.client import spec_from_cli


def garbage_connections(path: str, n: int, role: Role = Role.CTL, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    kinds: collections.Counter[str] = collections.Counter()
    outcomes: collections.Counter[str] = collections.Counter()
    hello = encode_frame(Hello(version=PROTOCOL_VERSION, role=role, client="garbage", worker_id="wgarbage",
                               token="not-a-token"))
    decoder = msgspec.msgpack.Decoder(CtlReply)
    slowest = 0.0
    for _ in range(n):
        r = rng.random()
        if r < 0.10:
            kind, payload = "nothing", b""
        elif r < 0.60:
            kind, payload = "random bytes", rng.randbytes(rng.randint(1, 4096))
        elif r < 0.75:
            body = rng.randbytes(rng.randint(0, 2048))
            kind, payload = "frame of random msgpack", len(body).to_bytes(4, "big") + body
        elif r < 0.85:
            kind = "oversized length prefix"
            payload = rng.randint(MAX_FRAME + 1, 2**32 - 1).to_bytes(4, "big") + rng.randbytes(64)
        else:
            kind, payload = "hello, then random bytes", hello + rng.randbytes(rng.randint(1, 4096))
        kinds[kind] += 1
        t0 = time.monotonic()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(15)
        try:
            s.connect(path)
            if payload:
                try:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                except (BrokenPipeError, ConnectionResetError):
                    outcomes["closed by hodeid while sending"] += 1
                    continue
                data = b""
                try:
                    while chunk := s.recv(65536):
                        data += chunk
                except ConnectionResetError:
                    pass
                except TimeoutError:
                    outcomes["no answer within 15 s (hung)"] += 1
                    continue
                frames = []
                pos = 0
                while pos + 4 <= len(data):
                    size = int.from_bytes(data[pos:pos + 4], "big")
                    frames.append(data[pos + 4: pos + 4 + size])
                    pos += 4 + size
                last = None
                for f in frames:
                    try:
                        last = decoder.decode(f)
                    except Exception:
                        last = "undecodable"
                if isinstance(last, Error):
                    outcomes[f"answered Error({last.code})"] += 1
                elif last is None:
                    outcomes["closed without an answer"] += 1
                else:
                    outcomes[f"answered {type(last).__name__}"] += 1
            else:
                outcomes["connected and closed at once"] += 1
        except OSError as e:
            outcomes[f"connect failed: {e.__class__.__name__}"] += 1
        finally:
            s.close()
            slowest = max(slowest, time.monotonic() - t0)
    return {"kinds": dict(kinds), "outcomes": dict(outcomes), "slowest_connection_s": round(slowest, 3)}


async def garbage_case(run: Run) -> dict[str, Any]:
    n = 2000 if run.quick else 10_000
    d = run.daemon("garbage", ["--max-workers", "1"])
    await d.astart()
    p = Poller(d)
    first = await p.call(lambda c: c.submit(spec_from_cli(["echo warm"])))
    await p.call(lambda c: c.wait([first.id]))
    await p.close()
    await asyncio.sleep(0.5)
    res: dict[str, Any] = {"connections": n, "rss_before_kb": rss_kb(d.pid), "fds_before": fd_count(d.pid)}
    t0 = time.monotonic()
    res.update(await asyncio.to_thread(garbage_connections, str(d.socket), n))
    res["took_s"] = round(time.monotonic() - t0, 2)
    # The agent socket too: in the docker provider a job can reach it (its directory is mounted in the container).
    res["agent_socket"] = await asyncio.to_thread(garbage_connections, str(d.agent_socket), n // 5, Role.AGENT, 2)
    await asyncio.sleep(0.5)
    res["rss_after_kb"], res["fds_after"] = rss_kb(d.pid), fd_count(d.pid)
    res["daemon_alive"] = d.proc is not None and d.proc.poll() is None
    t1 = time.monotonic()
    sub = ctl(d, "submit", "-f", "echo still serving")
    res["job_after"] = {"exit": sub.returncode, "stdout": sub.stdout.decode(errors="replace"),
                        "took_s": round(time.monotonic() - t1, 3)}
    log = d.log()
    res["daemon_log_lines"] = log.count("\n")
    res["internal_errors_in_log"] = log.count("internal error") + log.count("Traceback")
    d.stop(30)
    return res


async def cases(run: Run, want: Callable[[int], bool]) -> None:
    if want(5):
        if r := await run.case("5 garbage connections", garbage_case(run)):
            hung = sum(v for k, v in r["outcomes"].items() if "hung" in k)
            hung += sum(v for k, v in r["agent_socket"]["outcomes"].items() if "hung" in k)
            run.row(f"5. {r['connections']:,} garbage connections in a row on the control socket"
                    f" (and {r['connections'] // 5:,} on the agent socket)",
                    f"each gets an Error or a close ({hung} hung); then `submit -f` exits {r['job_after']['exit']}"
                    f" printing {r['job_after']['stdout'].strip()!r}",
                    "nothing" if r["daemon_alive"] and r["job_after"]["exit"] == 0 else "DAEMON DOWN",
                    f"RSS {mb(r['rss_before_kb'])} before, {mb(r['rss_after_kb'])} after;"
                    f" fds {r['fds_before']} -> {r['fds_after']}"
                    f"; {r['took_s']} s for all")


if __name__ == "__main__":
    entry("bench/faults/garbage.py", __doc__, [cases])
