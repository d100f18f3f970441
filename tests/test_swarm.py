"""The swarm provider against a real three-node Docker Swarm, built on this machine by
scripts/swarm-cluster.sh (three engines in their own network namespaces, one manager and two workers,
and a local registry holding the worker image). hodeid runs beside the manager, on the host, and its
agents dial back over TCP+TLS to the bridge address."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Daemon, need_root, processes_with_env, wait_for

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "swarm-cluster.sh"
pytestmark = pytest.mark.docker


class Cluster:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.manager = env["HODEI_SWARM_MANAGER"]
        self.nodes = dict(item.split("=", 1) for item in env["HODEI_SWARM_NODES"].split())
        self.image = env["HODEI_SWARM_IMAGE"]
        self.host = env["HODEI_SWARM_HOST_ADDR"]

    def docker(self, *args: str, node: str | None = None, check: bool = True) -> str:
        host = self.nodes[node] if node else self.manager
        res = subprocess.run(["docker", "-H", host, *args], capture_output=True, timeout=60)
        if check and res.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {res.stderr.decode()}")
        return res.stdout.decode()

    def services(self, *labels: str) -> list[str]:
        """Names of hodei services (with these labels too)."""
        filters = [a for label in ("hodei.managed=true", *labels) for a in ("--filter", f"label={label}")]
        return self.docker("service", "ls", "--format", "{{.Name}}", *filters).split()

    def containers(self) -> dict[str, list[str]]:
        """Running hodei worker containers on each node."""
        return {n: self.docker("ps", "-q", "--filter", "label=hodei.managed=true", node=n).split()
                for n in self.nodes}


def run_script_args(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=900, close_fds=True)


def run_script(action: str) -> subprocess.CompletedProcess[str]:
    return run_script_args(action)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The three-node swarm; torn down (namespaces, engines, shims, mounts, rules, data) whatever happens."""
    need_root("builds network namespaces and Docker engines")
    if os.environ.get("HODEI_SWARM_REUSE") == "1" and (res := run_script("env")).returncode == 0:
        yield Cluster(dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line))
        return
    try:
        res = run_script("up")
        if res.returncode != 0:
            pytest.fail(f"the test swarm could not be built:\n{res.stderr[-4000:]}")
        yield Cluster(dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line))
    finally:
        down = run_script("down")
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="session")
def tls(tmp_path_factory, cluster: Cluster) -> tuple[Path, Path]:
    """A self-signed certificate for the bridge address, which the agents check hodeid with."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=hodeid", "-addext", f"subjectAltName=IP:{cluster.host}"],
                   check=True, capture_output=True)
    return cert, key


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def swarmd(cluster: Cluster, tls, make_daemon, monkeypatch) -> Iterator[Callable[..., Daemon]]:
    """Start hodeid on the swarm provider against the manager; no service of it outlives the test."""
    monkeypatch.setenv("DOCKER_HOST", cluster.manager)
    cert, key = tls
    made: list[Daemon] = []

    def make(*args: str, start: bool = True) -> Daemon:
        d = make_daemon("--provider", "swarm", "--image", cluster.image, "--provision-timeout", "90",
                        "--agent-listen", f"{cluster.host}:{free_port(cluster.host)}",
                        "--tls-cert", str(cert), "--tls-key", str(key), *args, start=start)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
        if (d.state_dir / "instance").exists():
            instance = (d.state_dir / "instance").read_text().strip()
            for name in cluster.services(f"hodei.instance={instance}"):
                cluster.docker("service", "rm", name, check=False)


def node_of(d: Daemon, job: dict) -> str:
    return d.output(job["id"]).decode().split()[0]


def test_refuses_an_engine_that_is_not_a_swarm_manager(cluster: Cluster, make_daemon, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", cluster.nodes["hodei-sw2"])
    d = make_daemon("--provider", "swarm", "--agent-listen", f"{cluster.host}:7000", start=False)
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(timeout=30) != 0
    log = d.log()
    assert "not a swarm manager" in log and "docker swarm init" in log and "Traceback" not in log


def test_six_jobs_from_zero_spread_over_the_three_nodes(swarmd, cluster: Cluster) -> None:
    """From no worker at all, six concurrent jobs get six services, placed over all three nodes, and run
    at the same time; each reports the node it ran on; the token is nowhere in the service spec."""
    d: Daemon = swarmd("--max-workers", "6")
    assert d.workers() == [] and cluster.services() == []
    submits = [d.popen_ctl("submit", "hostname; sleep 3") for _ in range(6)]
    ids = [int(p.communicate(timeout=30)[0]) for p in submits]
    jobs = [d.wait_final(jid, timeout=180) for jid in ids]
    assert [j["state"] for j in jobs] == ["succeeded"] * 6
    assert {node_of(d, j) for j in jobs} == set(cluster.nodes)
    # `show` and `workers` name the node each job and worker ran on, as the job itself saw it
    assert all(d.job(j["id"])["node"] == node_of(d, j) for j in jobs)
    table = d.ctl("workers").stdout.decode()
    assert "node" in table.splitlines()[0].lower().split() and all(n in table for n in cluster.nodes)
    assert {w["node"] for w in d.workers()} == set(cluster.nodes)
    assert max(j["started_at"] for j in jobs) < min(j["finished_at"] for j in jobs)
    workers = d.workers()
    assert len(workers) == 6 and all(w["provider"] == "swarm" for w in workers)
    (spec,) = json.loads(cluster.docker("service", "inspect", f"hodei-worker-{jobs[0]['worker_id']}"))
    labels = spec["Spec"]["Labels"]
    assert labels["hodei.managed"] == "true" and labels["hodei.worker-id"] == jobs[0]["worker_id"]
    container = spec["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert spec["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    assert not any("TOKEN=" in e for e in container.get("Env", []))
    assert {s["File"]["Name"] for s in container["Secrets"]} == {"hodei-token", "hodei-ca.pem"}


def test_live_output_in_order_then_cancel_delivers_sigterm_and_leaves_no_service(swarmd, cluster: Cluster) -> None:
    d: Daemon = swarmd()
    script = "for phase in 1 2 3; do echo phase $phase; sleep 1; done; trap 'echo got TERM; exit 7' TERM; " \
             "echo waiting; while :; do sleep 0.2; done"
    follower = d.popen_ctl("submit", "-f", script)
    assert follower.stdout is not None
    first = follower.stdout.readline()
    assert first == b"phase 1\n"
    (job,) = d.jobs()
    assert job["state"] == "running"  # the first line came while the job still ran
    lines = [first] + [follower.stdout.readline() for _ in range(3)]
    assert lines == [b"phase 1\n", b"phase 2\n", b"phase 3\n", b"waiting\n"]
    d.ctl("cancel", str(job["id"]))
    follower.communicate(timeout=60)
    final = d.wait_final(job["id"], timeout=60)
    assert final["state"] == "cancelled"
    assert d.output(job["id"]).decode().splitlines()[-1] == "got TERM"
    d.stop()
    wait_for(lambda: cluster.services() == [] and not any(cluster.containers().values()), timeout=60,
             what="no hodei service or container left after a stop")


def test_a_job_ignoring_sigterm_is_killed_after_the_grace(swarmd, cluster: Cluster) -> None:
    """Cancel with a grace of 1 s: the job that traps TERM is SIGKILLed; no process of it is left on its
    node. --cpus and --memory are the service's limits and reservations."""
    d: Daemon = swarmd("--cpus", "0.5", "--memory", "256m")
    jid = d.submit("trap '' TERM; echo armed; while :; do sleep 0.2; done")
    wait_for(lambda: d.output(jid) == b"armed\n", timeout=120, what="the job to arm its trap")
    job = d.job(jid)
    (spec,) = json.loads(cluster.docker("service", "inspect", f"hodei-worker-{job['worker_id']}"))
    resources = spec["Spec"]["TaskTemplate"]["Resources"]
    assert resources["Limits"] == resources["Reservations"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 256 << 20}
    (container,) = cluster.docker("ps", "-q", "--filter", f"label=hodei.worker-id={job['worker_id']}",
                                  node=job["node"]).split()
    assert any("while :" in p for p in procs_in(cluster, job["node"], container))
    d.ctl("cancel", "--grace", "1", str(jid))
    final = d.wait_final(jid, timeout=60)
    assert final["state"] == "cancelled"
    wait_for(lambda: not any("while :" in p for p in procs_in(cluster, job["node"], container)), timeout=10,
             what="no process of the job left in its container")


def test_cancel_with_a_silent_agent_removes_the_service_and_every_process(swarmd, cluster: Cluster) -> None:
    """The agent is frozen (SIGSTOP): after the grace and the daemon's slack, hodeid removes the worker's
    service, so the job's processes die with its container, and the job ends cancelled saying so. (The
    heartbeat timeout is longer than grace + slack here: else the silent worker is lost first.)"""
    d: Daemon = swarmd("--heartbeat-timeout", "30")
    marker = f"silent-agent-{os.getpid()}"  # all nodes share this kernel: the job's shell is found by it
    jid = d.submit(f"echo started; while :; do sleep 0.2; done; : {marker}")
    wait_for(lambda: d.output(jid) == b"started\n", timeout=120, what="the job to start")
    worker = d.job(jid)["worker_id"]
    assert job_shells(marker)
    agent = [p for p in processes_with_env("HODEI_WORKER_ID", worker)
             if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[1:2] == [b"/opt/hodei/bin/hodei-agent"]]
    assert len(agent) == 1
    os.kill(agent[0], signal.SIGSTOP)
    d.ctl("cancel", "--grace", "1", str(jid))
    final = d.wait_final(jid, timeout=60)
    assert final["state"] == "cancelled" and "did not answer" in final["reason"]
    wait_for(lambda: f"hodei-worker-{worker}" not in cluster.services(), timeout=30, what="its service to go")
    wait_for(lambda: not job_shells(marker) and not processes_with_env("HODEI_WORKER_ID", worker), timeout=30,
             what="no process of the worker or the job left")


def job_shells(marker: str) -> list[int]:
    """Live processes whose command line holds the marker."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return found


def procs_in(cluster: Cluster, node: str, container: str) -> list[str]:
    """Command lines of the processes running in a container on a node."""
    script = 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done'
    out = cluster.docker("exec", container, "sh", "-c", script, node=node)
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_stray_services_are_removed_at_start_and_while_running_and_idle_workers_go(swarmd, cluster: Cluster) -> None:
    d: Daemon = swarmd("--idle-timeout", "3", start=False)
    def stray(name: str) -> str:
        cluster.docker("service", "create", "-d", "-q", "--name", name, "--label", "hodei.managed=true", "--label",
                       f"hodei.worker-id={name}", "--restart-condition", "none", "--network", "host",
                       "--entrypoint", "/bin/sleep", cluster.image, "600")
        assert name in cluster.services()
        return name

    first = stray("hodei-worker-stray1")
    d.start()
    wait_for(lambda: first not in cluster.services(), timeout=30, what="the stray service to be removed at start")
    second = stray("hodei-worker-stray2")  # made while hodeid runs: its periodic sweep (30 s) removes it
    wait_for(lambda: second not in cluster.services(), timeout=75, interval=0.5, what="the second stray to go")
    jid = d.submit("true")
    assert d.wait_final(jid, timeout=120)["state"] == "succeeded"
    wait_for(lambda: cluster.services() == [] and d.workers() == [], timeout=60,
             what="the idle worker's service to be removed")
    wait_for(lambda: not any(cluster.containers().values()), timeout=60, what="its container to go")


def test_running_job_survives_kill_9_of_hodeid(swarmd) -> None:
    d: Daemon = swarmd()
    jid = d.submit("for i in $(seq 1 8); do echo line $i; sleep 1; done")
    wait_for(lambda: b"line 2" in d.output(jid), timeout=120, what="the job to be running")
    d.kill()
    d.start()
    final = d.wait_final(jid, timeout=60)
    assert final["state"] == "succeeded"
    assert d.output(jid).decode().splitlines() == [f"line {i}" for i in range(1, 9)]


def test_constraint_places_the_job_on_that_node_in_a_pool_of_its_own(swarmd, cluster: Cluster) -> None:
    """An idle worker of the plain pool does not take a constrained job: a worker is started for the image
    and constraint set, on the node the constraint names, each time."""
    d: Daemon = swarmd("--min-idle", "1")
    wait_for(lambda: [w["state"] for w in d.workers()] == ["idle"], timeout=120, what="an idle worker")
    for node in ("hodei-sw3", "hodei-sw2"):
        res = d.ctl("submit", "-f", "--constraint", f"node.hostname == {node}", "hostname")
        assert res.stdout.decode().split() == [node]
    pools = sorted(w["image"] for w in d.workers())
    # the configured image with no constraint, and (no --image: the configured one) two constraint sets
    assert pools == [" @node.hostname==hodei-sw2", " @node.hostname==hodei-sw3", cluster.image]
    last = max(d.jobs(), key=lambda j: j["id"])
    (spec,) = json.loads(cluster.docker("service", "inspect", f"hodei-worker-{last['worker_id']}"))
    assert spec["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == ["node.hostname==hodei-sw2"]


def test_a_job_no_node_satisfies_waits_with_a_reason_that_says_so(swarmd) -> None:
    d: Daemon = swarmd()
    jid = d.submit("--constraint", "node.labels.gpu==true", "true")
    job = wait_for(lambda: "cannot place" in (j := d.job(jid))["reason"] and j, timeout=60,
                   what="the job's reason to say the swarm cannot place it")
    assert job["state"] == "queued" and "constraints not satisfied" in job["reason"], job["reason"]


def test_build_image_push_then_every_node_pulls_it(swarmd, cluster: Cluster, monkeypatch) -> None:
    """`hodeid build-image --push REGISTRY/NAME:TAG` on the manager's engine puts the image in the registry;
    a job on a node that never had it runs in it (the node pulls it)."""
    monkeypatch.setenv("DOCKER_HOST", cluster.manager)
    tag = f"{cluster.env['HODEI_SWARM_REGISTRY']}/hodei-worker:pushed-{os.getpid()}"
    res = subprocess.run([str(ROOT / ".venv" / "bin" / "hodeid"), "build-image", "-q", "--base", cluster.image,
                          "--push", tag], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "pushed" in res.stderr.splitlines()[-1]
    assert cluster.docker("image", "ls", "-q", tag, node="hodei-sw3").strip() == ""
    d: Daemon = swarmd("--image", tag)
    out = d.ctl("submit", "-f", "--constraint", "node.hostname==hodei-sw3", "hostname").stdout.decode()
    assert out.split() == ["hodei-sw3"]
    assert cluster.docker("image", "ls", "-q", tag, node="hodei-sw3").strip() != ""


def test_an_image_no_node_can_pull_leaves_the_job_waiting_with_the_reason(swarmd, cluster: Cluster) -> None:
    d: Daemon = swarmd("--image", f"{cluster.env['HODEI_SWARM_REGISTRY']}/no-such-image:1")
    jid = d.submit("true")
    job = wait_for(lambda: "waiting for a worker" in (j := d.job(jid))["reason"] and j, timeout=90,
                   what="a reason on the waiting job")
    assert job["state"] == "queued" and "No such image: " in job["reason"] and "rejected" in job["reason"], job
    assert d.ctl("list").returncode == 0  # the daemon keeps serving


def test_node_engine_stopped_mid_job_loses_it_naming_the_node_and_the_retry_runs_elsewhere(
        swarmd, cluster: Cluster) -> None:
    """A worker node's engine killed under a running job: within the heartbeat timeout the attempt is lost
    with the node named, and the retry succeeds on the other worker node. The node then comes back and
    brings nothing back: no second run of the job."""
    cluster.docker("node", "update", "--availability", "pause", "hodei-sw1")  # the manager must stay up
    victim = ""
    try:
        d: Daemon = swarmd("--max-workers", "2", "--min-idle", "2")
        wait_for(lambda: [w["state"] for w in d.workers()] == ["idle"] * 2, timeout=180, what="two idle workers")
        jid = d.submit("--retries", "1", "hostname; sleep 15; echo done")
        victim = wait_for(lambda: (o := d.output(jid).decode().split()) and o[0], timeout=60,
                          what="the job's first line")
        assert victim in ("hodei-sw2", "hodei-sw3")
        pid = int(Path(f"/run/hodei-swarm/{victim.removeprefix('hodei-')}.pid").read_text())
        os.kill(pid, 9)
        requeued = wait_for(lambda: (j := d.job(jid))["attempt"] == 2 and j, timeout=30, interval=0.01,
                            what="the first attempt to be lost and the job requeued")
        assert "lost" in requeued["reason"] and f"node {victim} is down" in requeued["reason"], requeued
        final = d.wait_final(jid, timeout=120)
        assert final["state"] == "succeeded", final
        out = d.output(jid).decode().split()
        assert out[0] != victim and out[-1] == "done"
        res = run_script_args("start-engine", victim.removeprefix("hodei-"))
        assert res.returncode == 0, res.stderr
        victim = ""
        wait_for(lambda: "Down" not in cluster.docker("node", "ls", "--format", "{{.Status}}"), timeout=60,
                 what="the node to be back")
        assert d.job(jid)["attempt"] == 2 and d.job(jid)["state"] == "succeeded"
    finally:
        cluster.docker("node", "update", "--availability", "active", "hodei-sw1")
        if victim:
            run_script_args("start-engine", victim.removeprefix("hodei-"))
