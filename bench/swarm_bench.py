#!/usr/bin/env python3
"""hodei on the swarm provider, on the three-node swarm of scripts/swarm-cluster.sh, next to its floors.

    .venv/bin/python bench/swarm_bench.py            # builds the swarm, measures, tears it down (root)
    .venv/bin/python bench/swarm_bench.py --reuse    # use a swarm that `swarm-cluster.sh up` left running
    .venv/bin/python bench/swarm_bench.py --quick    # fewer samples

Measures, in the same run:
1. Cold path: zero workers, `hodeictl submit -f 'echo hi'` -> its first line, against the floor
   of a service of the worker image running `true` (created through the API, restart none, host
   network) -> its task Complete.
   Each hodeid sample starts from zero workers (--max-jobs-per-worker 1; we wait for no service).
2. Warm dispatch: --min-idle 1; the job's created_at -> started_at (stamped by hodeid and by the
   agent, on this one kernel's clock) for `true` jobs submitted one after another.
3. Twenty `sleep 2` jobs at once on twenty idle workers spread over three nodes, against the same
   on one node (the two worker nodes paused): the makespan, first created_at -> last finished_at.
The markdown report goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
SCRIPT = REPO / "scripts" / "swarm-cluster.sh"


def say(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


def wait_for(cond, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(interval)
    return value


class Swarm:
    def __init__(self, env: dict[str, str]) -> None:
        self.manager = env["HODEI_SWARM_MANAGER"]
        self.image = env["HODEI_SWARM_IMAGE"]
        self.host = env["HODEI_SWARM_HOST_ADDR"]

    def docker(self, *args: str, check: bool = True) -> str:
        res = subprocess.run(["docker", "-H", self.manager, *args], capture_output=True, text=True, timeout=120)
        if check and res.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {res.stderr}")
        return res.stdout

    def services(self) -> list[str]:
        return self.docker("service", "ls", "--format", "{{.Name}}", "--filter", "label=hodei.managed=true").split()


class Hodeid:
    def __init__(self, swarm: Swarm, tmp: Path, tls: tuple[Path, Path], *args: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hb", dir=tmp))
        self.socket = self.root / "hodei.sock"
        with socket.socket() as s:
            s.bind((swarm.host, 0))
            port = s.getsockname()[1]
        self.env = {**os.environ, "HODEI_SOCKET": str(self.socket), "DOCKER_HOST": swarm.manager}
        self.log = open(self.root / "hodeid.log", "ab")  # noqa: SIM115  (hodeid's log, open for its life; closed in stop)
        self.proc = subprocess.Popen(
            [str(BIN / "hodeid"), "--state-dir", str(self.root / "state"), "--socket", str(self.socket),
             "--provider", "swarm", "--image", swarm.image, "--agent-listen", f"{swarm.host}:{port}",
             "--tls-cert", str(tls[0]), "--tls-key", str(tls[1]), "--heartbeat-interval", "0.5", *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        wait_for(lambda: self.ctl("list", check=False).returncode == 0, 30, "hodeid to answer")

    def ctl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN / "hodeictl"), *args], capture_output=True, text=True, env=self.env,
                             timeout=300, input=input)
        if check and res.returncode != 0:
            raise RuntimeError(f"hodeictl {' '.join(args)}: {res.stderr}")
        return res

    def workers(self) -> list[dict]:
        return json.loads(self.ctl("workers", "--json").stdout)

    def job(self, jid: int) -> dict:
        return json.loads(self.ctl("show", str(jid), "--json").stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def floor_service(swarm: Swarm, i: int) -> float:
    """`docker service create` of the worker image running `true`, through the API as hodeid does it
    (no CLI start-up in the figure): create -> its task Complete, polled every 10 ms."""
    import asyncio

    import aiodocker

    async def once() -> float:
        docker = aiodocker.Docker(url=swarm.manager)
        try:
            t0 = time.monotonic()
            created = await docker.services.create(
                {"ContainerSpec": {"Image": swarm.image, "Command": ["/bin/true"]},
                 "RestartPolicy": {"Condition": "none"}, "Networks": [{"Target": "host"}]},
                name=f"hodei-bench-floor-{os.getpid()}-{i}", labels={"hodei.bench": "floor"})
            while True:
                tasks = await docker.tasks.list(filters={"service": [created["ID"]]})
                if tasks and tasks[0]["Status"]["State"] == "complete":
                    took = time.monotonic() - t0
                    break
                await asyncio.sleep(0.01)
            await docker.services.delete(created["ID"])
            return took
        finally:
            await docker.close()

    return asyncio.run(once())


def cold_hodei(d: Hodeid, swarm: Swarm) -> float:
    wait_for(lambda: not d.workers() and not swarm.services(), 120, "no worker left", interval=0.2)
    t0 = time.monotonic()
    p = subprocess.Popen([str(BIN / "hodeictl"), "submit", "-f", "echo hi"], stdout=subprocess.PIPE, env=d.env)
    assert p.stdout is not None
    line = p.stdout.readline()
    took = time.monotonic() - t0
    p.communicate(timeout=60)
    assert line == b"hi\n", line
    return took


def twenty(d: Hodeid, n: int) -> tuple[float, dict[str, int]]:
    wait_for(lambda: [w["state"] for w in d.workers()].count("idle") >= n, 300, f"{n} idle workers", interval=0.5)
    ids = [int(x) for x in d.ctl("submit", "--from", "-", input="hostname; sleep 2\n" * n).stdout.split()]
    def done() -> list[dict] | None:
        js = [d.job(i) for i in ids]
        return js if all(j["state"] == "succeeded" for j in js) else None

    jobs = wait_for(done, 120, "the twenty jobs", interval=0.2)
    nodes: dict[str, int] = {}
    for j in jobs:
        nodes[j["node"]] = nodes.get(j["node"], 0) + 1
    return max(j["finished_at"] for j in jobs) - min(j["created_at"] for j in jobs), nodes


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reuse", action="store_true", help="use the running swarm of swarm-cluster.sh")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    cold_n, warm_n = (3, 20) if args.quick else (5, 50)
    built = False
    if not args.reuse:
        say("building the swarm (scripts/swarm-cluster.sh up)")
        subprocess.run([str(SCRIPT), "up"], check=True, capture_output=True, close_fds=True)
        built = True
    env = dict(line.split("=", 1) for line in subprocess.run([str(SCRIPT), "env"], check=True, capture_output=True,
                                                             text=True).stdout.splitlines() if "=" in line)
    swarm = Swarm(env)
    tmp = Path(tempfile.mkdtemp(prefix="hodei-swbench"))
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=hodeid", "-addext", f"subjectAltName=IP:{swarm.host}"],
                   check=True, capture_output=True)
    daemons: list[Hodeid] = []
    try:
        say("cold path, interleaved with the docker service floor")
        d = Hodeid(swarm, tmp, (cert, key), "--max-jobs-per-worker", "1")
        daemons.append(d)
        cold, floor = [], []
        for i in range(cold_n):
            floor.append(floor_service(swarm, i))
            cold.append(cold_hodei(d, swarm))
            say(f"  cold {cold[-1]:.2f}s  floor {floor[-1]:.2f}s")
        d.stop()
        say("warm dispatch")
        d = Hodeid(swarm, tmp, (cert, key), "--min-idle", "1")
        daemons.append(d)
        wait_for(lambda: [w["state"] for w in d.workers()] == ["idle"], 120, "an idle worker", interval=0.2)
        warm = []
        for _ in range(warm_n):
            jid = int(d.ctl("submit", "true").stdout)
            j = wait_for(lambda jid=jid: (j := d.job(jid))["state"] == "succeeded" and j, 60, "the job",
                         interval=0.01)
            warm.append(j["started_at"] - j["created_at"])
        d.stop()
        say("twenty sleep 2 on three nodes")
        d = Hodeid(swarm, tmp, (cert, key), "--max-workers", "20", "--min-idle", "20", "--provision-timeout", "300")
        daemons.append(d)
        three, three_nodes = twenty(d, 20)
        d.stop()
        wait_for(lambda: not swarm.services(), 120, "no service left", interval=0.5)
        say("twenty sleep 2 on one node")
        for n in ("hodei-sw2", "hodei-sw3"):
            swarm.docker("node", "update", "--availability", "pause", n)
        try:
            d = Hodeid(swarm, tmp, (cert, key), "--max-workers", "20", "--min-idle", "20", "--provision-timeout", "300")
            daemons.append(d)
            one, one_nodes = twenty(d, 20)
            d.stop()
        finally:
            for n in ("hodei-sw2", "hodei-sw3"):
                swarm.docker("node", "update", "--availability", "active", n)
    finally:
        for d in daemons:
            d.stop()
        for name in swarm.services():
            swarm.docker("service", "rm", name, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        if built:
            subprocess.run([str(SCRIPT), "down"], capture_output=True, close_fds=True)
    cm, fm = statistics.median(cold), statistics.median(floor)
    cold_row = (f"| cold: submit -> first line, median of {cold_n} | {cm:.2f} s"
                f" | service running `true` -> Complete: {fm:.2f} s | {cm / fm:.2f}x |")
    warm_row = (f"| warm dispatch: created -> started, {warm_n} jobs"
                f" | p50 {pct(warm, 50) * 1000:.1f} ms, p90 {pct(warm, 90) * 1000:.1f} ms | | |")
    twenty_row = (f"| twenty `sleep 2`, makespan | three nodes {three:.2f} s {three_nodes}"
                  f" | one node {one:.2f} s {one_nodes} | {three / one:.2f}x |")
    print(f"""## Swarm provider, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `{' '.join(sys.argv[1:])}`

| Measurement | hodei | floor / peer (same run) | ratio |
|---|---|---|---|
{cold_row}
{warm_row}
{twenty_row}
""")


if __name__ == "__main__":
    main()
