"""The Docker provider against a real Docker engine, end to end through hodeictl."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Daemon, need_root, wait_for

IMAGE = os.environ.get("HODEI_WORKER_IMAGE", "hodei-worker:latest")
pytestmark = pytest.mark.docker


def docker(*args: str, check: bool = True, input: bytes | None = None) -> str:
    res = subprocess.run(["docker", *args], capture_output=True, timeout=120, input=input)
    if check and res.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {res.stderr.decode()}")
    return res.stdout.decode()


def managed_containers(d: Daemon | None = None, all_: bool = True, labels: tuple[str, ...] = ()) -> list[str]:
    """Worker containers of this daemon (by its instance label), or with the given labels."""
    filters = ["--filter", "label=hodei.managed=true"]
    if d is not None:
        filters += ["--filter", f"label=hodei.instance={(d.state_dir / 'instance').read_text().strip()}"]
    for label in labels:
        filters += ["--filter", f"label={label}"]
    return docker("ps", "-q", *(["-a"] if all_ else []), *filters).split()


def engine_ready() -> str | None:
    """None when the engine answers and the worker image exists; else why not."""
    try:
        docker("info")
    except (AssertionError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        return f"no Docker engine answers ({e}); run scripts/docker-setup.sh as root"
    try:
        docker("image", "inspect", IMAGE)
    except AssertionError:
        return f"the worker image {IMAGE} is missing; run scripts/docker-setup.sh"
    return None


@pytest.fixture(scope="module")
def engine() -> None:
    why = engine_ready()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires the Docker tests to run, but {why}")
        pytest.skip(why)


@pytest.fixture
def dockerd(engine, make_daemon):
    """Start hodeid on the docker provider; no managed container outlives the test."""
    made = []

    def make(*args: str, start: bool = True) -> Daemon:
        d = make_daemon("--provider", "docker", "--image", IMAGE, "--network", "none", "--provision-timeout", "60",
                        *args, start=start)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
        if (d.state_dir / "instance").exists():
            for cid in managed_containers(d):  # only ours: other hodeids may share the engine
                docker("rm", "-f", cid, check=False)


def container_of(d: Daemon, job: dict) -> str:
    return f"hodei-worker-{job['worker_id']}"


def procs_in(container: str) -> list[str]:
    """Command lines of the processes running in a container."""
    script = 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done'
    return [line.strip() for line in docker("exec", container, "sh", "-c", script).splitlines() if line.strip()]


def test_auto_provisions_a_container_from_zero_and_removes_it_when_idle(dockerd) -> None:
    """With no worker, `submit -f` creates a container whose agent registers and runs the job; idle, it goes."""
    d: Daemon = dockerd("--idle-timeout", "2")
    assert d.workers() == [] and managed_containers(d) == []
    res = d.ctl("submit", "-f", "echo hi from $(hostname); cat /etc/debian_version >/dev/null && echo in-container")
    assert res.returncode == 0
    lines = res.stdout.decode().splitlines()
    assert lines[0].startswith("hi from ") and lines[1] == "in-container"
    (job,) = d.jobs()
    assert job["state"] == "succeeded"
    (worker,) = d.workers()
    assert worker["provider"] == "docker" and worker["image"] == IMAGE and worker["jobs_run"] == 1
    name = container_of(d, job)
    labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", name))
    assert labels["hodei.managed"] == "true" and labels["hodei.worker-id"] == job["worker_id"]
    assert docker("inspect", "--format", "{{.HostConfig.NetworkMode}}", name).strip() == "none"
    wait_for(lambda: managed_containers(d) == [] and d.workers() == [], timeout=30,
             what="the idle container to be removed")


def test_five_concurrent_jobs_run_in_five_containers_in_parallel(dockerd) -> None:
    """Five `sleep 3` jobs run in five containers at the same time."""
    d: Daemon = dockerd("--max-workers", "5", "--min-idle", "5")
    wait_for(lambda: [w["state"] for w in d.workers()] == ["idle"] * 5, timeout=90, what="five idle containers")
    # In / (nothing to mount) as root: jobs the warm --min-idle containers can take.
    submits = [d.popen_ctl("submit", "--cwd", "/", "sleep 3") for _ in range(5)]
    ids = [int(p.communicate(timeout=30)[0]) for p in submits]
    jobs = [d.wait_final(jid, timeout=60) for jid in ids]
    assert all(j["state"] == "succeeded" for j in jobs)
    assert len({j["worker_id"] for j in jobs}) == 5
    assert max(j["started_at"] for j in jobs) < min(j["finished_at"] for j in jobs)
    assert len(managed_containers(d, all_=False)) == 5


def test_three_phase_script_streams_live_and_in_order(dockerd) -> None:
    """A multi-phase script's lines reach a follower while it still runs, in order, with the exit status."""
    d: Daemon = dockerd()
    script = ("for phase in 1 2 3; do for i in 1 2; do echo phase $phase step $i; done; sleep 1; done;"
              " echo end >&2; exit 3")
    follower = d.popen_ctl("submit", "-f", script)
    assert follower.stdout is not None
    first = follower.stdout.readline()
    assert first == b"phase 1 step 1\n"
    (job,) = d.jobs()
    assert job["state"] == "running"  # we read the first line while the job was still running
    rest = follower.stdout.read()  # not communicate(): it would skip what readline() buffered
    assert follower.wait(timeout=60) == 3
    follower.stdout.close()
    assert follower.stderr is not None
    err = follower.stderr.read()
    follower.stderr.close()
    expected = [f"phase {p} step {i}" for p in (1, 2, 3) for i in (1, 2)]
    assert (first + rest).decode().splitlines() == expected
    assert err == f"end\nhodeictl: job {job['id']} failed: exited with code 3\n".encode()


def test_failing_command_and_env(dockerd) -> None:
    """A failing command ends failed with its stderr kept; --env values reach the job."""
    d: Daemon = dockerd()
    bad = d.submit("ls /no/such/dir")
    env = d.submit("--env", "GREETING=hello docker", 'echo "$GREETING"')
    jb, je = d.wait_final(bad, timeout=90), d.wait_final(env, timeout=90)
    assert jb["state"] == "failed" and jb["exit_code"] == 2
    logs = d.ctl("logs", str(bad))
    assert logs.stdout == b"" and b"/no/such/dir" in logs.stderr
    assert je["state"] == "succeeded" and d.output(env) == b"hello docker\n"


def test_cancel_reaches_the_job_inside_the_container(dockerd) -> None:
    """Cancel delivers SIGTERM inside the container (the trap says so) and leaves no job process behind."""
    d: Daemon = dockerd()
    jid = d.submit("trap 'echo got TERM; exit 143' TERM; echo started; sleep 300 & wait")
    wait_for(lambda: d.output(jid) == b"started\n", timeout=90, what="the job to start")
    name = container_of(d, d.job(jid))
    assert any(p.startswith("sleep 300") for p in procs_in(name))
    d.ctl("cancel", str(jid))
    job = d.job(jid)
    assert job["state"] == "cancelled"
    assert d.output(jid) == b"started\ngot TERM\n"
    assert not any(p.startswith("sleep") or "trap" in p for p in procs_in(name))


def test_term_ignoring_job_is_killed_after_the_grace(dockerd) -> None:
    """A job that ignores SIGTERM inside a container is SIGKILLed after the grace period."""
    d: Daemon = dockerd()
    jid = d.submit("--grace", "1", "trap '' TERM; echo started; while :; do sleep 0.1; done")
    wait_for(lambda: d.output(jid) == b"started\n", timeout=90, what="the job to start")
    name = container_of(d, d.job(jid))
    d.ctl("cancel", str(jid))
    job = d.job(jid)
    assert job["state"] == "cancelled" and job["signal"] == 9
    assert not any("while" in p or p.startswith("sleep") for p in procs_in(name))


def test_container_that_never_registers_is_reaped_and_the_job_runs_elsewhere(dockerd, tmp_path) -> None:
    """A worker whose agent never registers is removed after the provision timeout; its job runs on a new one."""
    slow = "hodei-worker-test-stuck:latest"
    gate = "/run/hodei-agent"
    dockerfile = (f"FROM {IMAGE}\nENTRYPOINT [\"/bin/sh\", \"-c\", \"if [ -e {gate}/let-in ]; then exec "
                  f"/opt/hodei/bin/hodei-agent; else touch {gate}/stuck-$HOSTNAME; exec sleep 1000; fi\"]\n")
    docker("build", "--network", "none", "-t", slow, "-", input=dockerfile.encode())
    d: Daemon = dockerd("--image", slow, "--provision-timeout", "3")
    jid = d.submit("echo ran")
    agent_dir = d.agent_socket.parent
    wait_for(lambda: list(agent_dir.glob("stuck-*")), timeout=60, what="the first container to get stuck")
    (first,) = managed_containers(d)
    (agent_dir / "let-in").touch()  # later containers register; the first one sleeps on
    job = d.wait_final(jid, timeout=90)
    assert job["state"] == "succeeded" and d.output(jid) == b"ran\n"
    assert first not in managed_containers(d)
    assert "did not register" in d.log()


def test_container_killed_from_outside_makes_its_job_lost(dockerd) -> None:
    """`docker kill` of a worker mid-job makes the job lost, with the reason, within the heartbeat timeout."""
    d: Daemon = dockerd()
    jid = d.submit("echo started; sleep 300")
    wait_for(lambda: d.output(jid) == b"started\n", timeout=90, what="the job to start")
    name = container_of(d, d.job(jid))
    docker("kill", name)
    job = d.wait_final(jid, timeout=5 + 5)  # the fixture's heartbeat timeout, plus slack for a loaded machine
    assert job["state"] == "lost" and job["worker_id"] in job["reason"]
    wait_for(lambda: managed_containers(d) == [], timeout=30, what="the dead container to be removed")


def test_stray_labelled_container_is_removed_at_start(dockerd) -> None:
    """A container labelled hodei.managed that hodeid does not know is removed when hodeid starts."""
    stray = docker("run", "-d", "--network", "none", "--label", "hodei.managed=true", "--label",
                   "hodei.worker-id=wstray", "--entrypoint", "sleep", IMAGE, "1000").strip()
    assert managed_containers(labels=("hodei.worker-id=wstray",)) == [stray[:12]]
    d: Daemon = dockerd()
    assert d.ready()
    assert managed_containers(labels=("hodei.worker-id=wstray",)) == []


def test_stop_leaves_no_idle_container(dockerd) -> None:
    """A graceful stop of hodeid removes its idle containers."""
    d: Daemon = dockerd()
    d.wait_final(d.submit("true"), timeout=90)
    assert len(managed_containers(d)) == 1
    assert d.stop() == 0
    wait_for(lambda: managed_containers(d) == [], timeout=30, what="the idle container to be removed")


def test_missing_image_is_a_clear_reason_and_the_daemon_keeps_serving(dockerd) -> None:
    """A job naming an image that does not exist waits with a reason saying what to run; others still run."""
    d: Daemon = dockerd()
    stuck = d.submit("--image", "hodei-no-such-image:1", "true")
    reason = wait_for(lambda: d.job(stuck)["reason"], timeout=60, what="a reason on the waiting job")
    assert "hodei-no-such-image:1 is missing" in reason and "hodeid build-image" in reason
    assert d.job(stuck)["state"] == "queued"
    ok = d.submit("echo fine")
    assert d.wait_final(ok, timeout=90)["state"] == "succeeded"
    d.ctl("cancel", str(stuck))
    assert d.job(stuck)["state"] == "cancelled"
    assert "cannot start a docker worker" in d.log()


def test_jobs_run_in_workers_of_their_image_with_limits(dockerd) -> None:
    """--image picks the worker image (pooled per image); --cpus and --memory limit each container."""
    docker("tag", IMAGE, "hodei-worker-test-alt:latest")
    d: Daemon = dockerd("--cpus", "0.5", "--memory", "256m")
    default = d.submit("echo default")
    alt = d.submit("--image", "hodei-worker-test-alt:latest", "echo alt")
    jd, ja = d.wait_final(default, timeout=90), d.wait_final(alt, timeout=90)
    assert jd["state"] == ja["state"] == "succeeded" and jd["worker_id"] != ja["worker_id"]
    images = {w["id"]: w["image"] for w in d.workers()}
    assert images[jd["worker_id"]] == IMAGE and images[ja["worker_id"]] == "hodei-worker-test-alt:latest"
    limits = docker("inspect", "--format", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}", container_of(d, jd))
    assert limits.split() == ["500000000", str(256 << 20)]


def test_one_job_per_container(dockerd) -> None:
    """With --max-jobs-per-worker 1 every job gets a fresh container, removed after its job."""
    d: Daemon = dockerd("--max-jobs-per-worker", "1")
    first = d.wait_final(d.submit("hostname"), timeout=90)
    second = d.wait_final(d.submit("hostname"), timeout=90)
    assert first["worker_id"] != second["worker_id"]
    assert d.output(first["id"]) != d.output(second["id"])
    wait_for(lambda: managed_containers(d) == [], timeout=30, what="used containers to be removed")


@pytest.mark.parametrize("how", ["graceful", "kill -9"])
def test_running_container_job_survives_a_daemon_restart(dockerd, how: str) -> None:
    """A job in a container keeps running across a hodeid restart; its agent reconnects; no line is lost."""
    d: Daemon = dockerd()
    gate = d.agent_socket.parent / "gate"  # the agent directory is what containers see, at /run/hodei-agent
    jid = d.submit("i=0; while [ ! -e /run/hodei-agent/gate ]; do i=$((i+1)); echo line $i; sleep 0.01; done;"
                   " echo done")
    wait_for(lambda: d.output(jid).count(b"\n") > 20, timeout=90, what="some output")
    container = container_of(d, d.job(jid))
    if how == "graceful":
        assert d.stop() == 0
    else:
        d.kill()
    assert docker("inspect", "--format", "{{.State.Running}}", container).strip() == "true"
    d.start()
    wait_for(lambda: d.workers() and d.workers()[0]["job_id"] == jid and d.workers()[0]["last_heartbeat"],
             timeout=30, what="the agent to reconnect")
    gate.touch()
    job = d.wait_final(jid, timeout=60)
    assert job["state"] == "succeeded"
    lines = d.output(jid).decode().splitlines()
    assert lines[-1] == "done"
    assert lines[:-1] == [f"line {i}" for i in range(1, len(lines))]  # no gap, no repeat


class EngineProxy:
    """A Unix socket that forwards to the real Docker engine, and can be cut: the engine 'vanishes'."""

    def __init__(self, path) -> None:
        import threading

        self.path = str(path)
        self._threading = threading
        self._server = None
        self._conns: list = []

    def start(self) -> None:
        import socket as s

        srv = s.socket(s.AF_UNIX, s.SOCK_STREAM)
        if os.path.exists(self.path):
            os.unlink(self.path)
        srv.bind(self.path)
        srv.listen(64)
        self._server = srv
        self._threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv) -> None:
        import socket as s

        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            upstream = s.socket(s.AF_UNIX, s.SOCK_STREAM)
            upstream.connect("/var/run/docker.sock")
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for c in (a, b):
                try:
                    c.shutdown(2)
                except OSError:
                    pass

    def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for c in self._conns:
            try:
                c.shutdown(2)
                c.close()
            except OSError:
                pass
        self._conns.clear()
        if os.path.exists(self.path):
            os.unlink(self.path)


@pytest.fixture
def proxied(dockerd, tmp_path):
    """hodeid on the docker provider reaching the engine through an EngineProxy the test can cut."""
    proxy = EngineProxy(tmp_path / "docker.sock")
    proxy.start()
    os.environ["DOCKER_HOST"] = f"unix://{proxy.path}"
    try:
        d: Daemon = dockerd("--idle-timeout", "600")
    finally:
        del os.environ["DOCKER_HOST"]
    yield d, proxy
    proxy.cut()


def test_engine_vanishing_and_returning(proxied) -> None:
    """With the engine gone, a job waits with the reason and hodeid serves on; when it returns, the job runs."""
    d, proxy = proxied
    assert d.wait_final(d.submit("echo before"), timeout=90)["state"] == "succeeded"
    proxy.cut()
    jid = d.submit("--image", "hodei-worker-test-alt2:latest", "echo after")  # needs a new worker
    reason = wait_for(lambda: d.job(jid)["reason"], timeout=60, what="a reason on the waiting job")
    assert "waiting for a worker" in reason and d.job(jid)["state"] == "queued"
    assert d.ctl("list").returncode == 0
    docker("tag", IMAGE, "hodei-worker-test-alt2:latest")
    proxy.start()
    job = d.wait_final(jid, timeout=90)
    assert job["state"] == "succeeded" and d.output(jid) == b"after\n"


def test_a_workers_start_token_is_spent_once_it_registered(dockerd) -> None:
    """The token a container was started with (visible in `docker inspect`) is worth nothing once its
    agent has registered: hodeid gave the agent a new one and refuses the old."""
    import socket

    from hodei.frames import body_size, encode_frame
    from hodei.protocol import PROTOCOL_VERSION, Hello, Role

    d = dockerd()
    jid = d.submit("sleep 300")
    job = d.wait_state(jid, "running", timeout=60)
    env = json.loads(docker("inspect", container_of(d, job)))[0]["Config"]["Env"]
    token = next(v.split("=", 1)[1] for v in env if v.startswith("HODEI_WORKER_TOKEN="))
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(d.agent_socket))
        s.sendall(encode_frame(Hello(version=PROTOCOL_VERSION, role=Role.AGENT, worker_id=job["worker_id"],
                                     token=token, rotates_token=True)))
        f = s.makefile("rb")
        reply = f.read(body_size(f.read(4)))
    assert b"presented no valid token" in reply
    d.ctl("cancel", "--grace", "0", str(jid))
    assert d.job(jid)["state"] == "cancelled"  # the real agent still answers


def test_engine_not_answering_is_logged_with_backoff_and_not_taken_for_a_running_worker(proxied) -> None:
    """While the engine cannot be reached, hodeid says so in its log (not at every supervision pass, with
    backoff) instead of silently taking its worker for running; it says when the engine is back, and the
    worker, whose heartbeats never stopped, runs the next job."""
    d, proxy = proxied
    first = d.wait_final(d.submit("echo before"), timeout=90)
    assert first["state"] == "succeeded"
    proxy.cut()
    cut_at = time.monotonic()
    wait_for(lambda: "cannot ask about worker container" in d.log(), timeout=30, what="the engine error logged")
    wait_for(lambda: d.log().count("still no answer from the Docker engine") >= 2, timeout=30,
             what="the engine error logged again, later")
    assert "the Docker engine is not reachable" in d.log()
    assert [w["state"] for w in d.workers()] == ["idle"]
    proxy.start()
    outage = time.monotonic() - cut_at
    wait_for(lambda: "the Docker engine answers again" in d.log(), timeout=60, what="the engine's return logged")
    errors = d.log().count("cannot ask about worker container") + d.log().count("still no answer from")
    # Supervision asks every 0.25 s here; the questions back off, doubling from 1 s.
    assert errors <= 2 + math.log2(1 + outage), (errors, outage)
    second = d.wait_final(d.submit("echo after"), timeout=90)
    assert second["state"] == "succeeded" and second["worker_id"] == first["worker_id"]


def test_stopping_with_the_engine_gone_logs_why_its_containers_stay(proxied) -> None:
    """A graceful stop of hodeid while the engine cannot be reached says, for its idle worker, that it
    could neither wait for the container to exit nor remove it, instead of passing over the first."""
    d, proxy = proxied
    job = d.wait_final(d.submit("true"), timeout=90)
    container = docker("inspect", "--format", "{{.Id}}", container_of(d, job)).strip()
    proxy.cut()
    assert d.stop() == 0
    log = d.log()
    assert f"cannot wait for container {container[:12]} to exit: the Docker engine is not reachable" in log
    assert f"cannot remove container {container[:12]}: the Docker engine is not reachable" in log


def test_a_constrained_job_waits_with_a_reason_on_the_docker_provider(dockerd) -> None:
    """Placement constraints are the swarm provider's: on Docker the job waits and says why."""
    d: Daemon = dockerd()
    jid = d.submit("--constraint", "node.hostname==build2", "true")
    job = wait_for(lambda: "provider swarm" in (j := d.job(jid))["reason"] and j, timeout=30,
                   what="the job's reason to name the swarm provider")
    assert job["state"] == "queued" and "node.hostname==build2" in job["reason"]


# ---- a job sees its submitter's project ------------------------------------------------------------

NOBODY = 65534


@pytest.fixture
def shared_docker(dockerd):
    """A root hodeid on the docker provider whose socket other users reach (the `nogroup` group)."""
    need_root("needs root to act as two users")
    d: Daemon = dockerd("--socket-group", "nogroup", start=False)
    d.root.chmod(0o755)
    return d.start()


def as_nobody(d: Daemon, *args: str, cwd: str | Path = "/") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           str(d.bin / "hodeictl"), *args], capture_output=True, timeout=120, env=d.env, cwd=cwd)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temp directory every user may enter (pytest's own are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="hodei-proj-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def project(open_tmp: Path) -> Path:
    """A project directory of nobody's, with a file in it."""
    proj = open_tmp / "proj"
    proj.mkdir()
    (proj / "Makefile").write_text("all:\n")
    os.chown(proj, NOBODY, NOBODY)
    os.chown(proj / "Makefile", NOBODY, NOBODY)
    return proj


def test_docker_job_runs_in_the_project_as_its_submitter(shared_docker: Daemon, project: Path) -> None:
    """Submitted from a project directory, a Docker job lists its files there and what it writes belongs to the
    submitter on the host; `show` says where it ran."""
    d = shared_docker
    res = as_nobody(d, "submit", "pwd; ls; id -u; id -g; echo hi > out.txt", cwd=project)
    assert res.returncode == 0, res.stderr
    job = d.wait_final(int(res.stdout), timeout=120)
    assert job["state"] == "succeeded", job
    assert d.output(job["id"]).decode().split() == [str(project), "Makefile", str(NOBODY), str(NOBODY)]
    out = project / "out.txt"
    assert out.read_text() == "hi\n"
    assert (out.stat().st_uid, out.stat().st_gid) == (NOBODY, NOBODY)
    assert job["cwd"] == str(project)


def test_docker_volume_the_submitter_cannot_read_is_refused(shared_docker: Daemon, project: Path,
                                                             open_tmp: Path) -> None:
    """A --volume of a root-only directory, or of a symlink to one, by another user is refused at submit
    with one sentence; nothing is queued."""
    d = shared_docker
    secret = open_tmp / "secret"
    secret.mkdir(mode=0o700)
    (secret / "key").write_text("root only\n")
    link = project / "link"
    link.symlink_to(secret)
    for path in (secret, link):
        res = as_nobody(d, "submit", "--volume", f"{path}:/data", "cat /data/key", cwd=project)
        err = res.stderr.decode()
        assert res.returncode != 0 and res.stdout == b"", err
        assert err.count("\n") == 1 and f"--volume {path} cannot be mounted: uid {NOBODY} cannot open it" in err, err
    assert d.jobs() == []


def test_docker_volume_read_only_and_at_its_own_path(dockerd, project: Path, open_tmp: Path) -> None:
    """--volume HOST:CONTAINER:ro is mounted read-only there; --volume HOST alone at the same path, writable."""
    d = dockerd()
    data = open_tmp / "data"
    data.mkdir()
    (data / "in.txt").write_text("input\n")
    cache = open_tmp / "cache"
    cache.mkdir()
    job_id = d.submit("--volume", f"{data}:/data:ro", "--volume", str(cache),
                      f"cat /data/in.txt; echo x > {cache}/w; if {{ echo y > /data/w; }} 2>&1; then echo WROTE; fi")
    job = d.wait_final(job_id, timeout=120)
    assert job["state"] == "succeeded", job
    out = d.output(job_id).decode()
    assert out.startswith("input\n") and "Read-only file system" in out and "WROTE" not in out, out
    assert (cache / "w").read_text() == "x\n" and not (data / "w").exists()


def test_docker_two_users_never_share_a_worker(shared_docker: Daemon, project: Path) -> None:
    """Root's job and nobody's job, both from the same directory, run on different workers: a worker mounts
    one user's files only."""
    d = shared_docker
    mine = int(d.ctl("submit", "id -u", cwd=project).stdout)
    res = as_nobody(d, "submit", "id -u", cwd=project)
    assert res.returncode == 0, res.stderr
    theirs = int(res.stdout)
    first, second = d.wait_final(mine, timeout=120), d.wait_final(theirs, timeout=120)
    assert first["state"] == second["state"] == "succeeded"
    assert first["worker_id"] != second["worker_id"]
    again = as_nobody(d, "submit", "id -u", cwd=project)
    third = d.wait_final(int(again.stdout), timeout=120)
    assert third["worker_id"] != first["worker_id"]
    assert d.output(theirs) == d.output(third["id"]) == f"{NOBODY}\n".encode()


def test_docker_project_swapped_for_a_link_while_queued_is_not_mounted(dockerd, project: Path, open_tmp: Path) -> None:
    """A project directory replaced by a symlink to a root-only one after submit is checked again as the
    submitter before its worker starts: the job waits with the reason and the root-only files are never mounted."""
    need_root("needs root to act as two users")
    d: Daemon = dockerd("--socket-group", "nogroup", "--max-workers", "1", start=False)
    d.root.chmod(0o755)
    d.start()
    busy = int(d.ctl("submit", "sleep 120", cwd=open_tmp).stdout)
    d.wait_state(busy, "running", timeout=120)
    res = as_nobody(d, "submit", "cat key", cwd=project)
    assert res.returncode == 0, res.stderr
    theirs = int(res.stdout)
    secret = open_tmp / "secret"
    secret.mkdir(mode=0o700)
    (secret / "key").write_text("root only\n")
    project.rename(open_tmp / "moved")
    project.symlink_to(secret)
    d.ctl("cancel", str(busy))
    reason = wait_for(lambda: "cannot be mounted" in (r := d.job(theirs)["reason"]) and r, timeout=120,
                      what="the reason on the waiting job")
    assert f"{project} cannot be mounted" in reason, reason
    assert d.job(theirs)["state"] == "queued" and d.output(theirs) == b""


def test_docker_hodeid_still_sends_a_remote_pools_jobs_to_its_agents(dockerd) -> None:
    """A job for a pool of remote agents is not turned into a Docker pool of its submitter's: the agent runs it."""
    from test_remote_agents import free_port, start_agent

    port = free_port()
    d: Daemon = dockerd("--agent-listen", f"127.0.0.1:{port}")
    added = json.loads(d.ctl("agents", "add", "--pool", "gpu", "--json").stdout)
    agent = start_agent(d, f"tcp://127.0.0.1:{port}", added["worker_id"], added["token"])
    try:
        wait_for(lambda: any(w["state"] == "idle" for w in d.workers()), timeout=30, what="the remote agent")
        jid = d.submit("--image", "gpu", "echo pooled")
        job = d.wait_final(jid, timeout=60)
        assert job["worker_id"] == added["worker_id"] and d.output(jid) == b"pooled\n"
        refused = d.ctl("submit", "--image", "gpu", "--volume", "/tmp", "true", check=False)
        assert refused.returncode != 0 and "pool gpu is remote agents" in refused.stderr.decode()
    finally:
        agent.kill()
        agent.wait()
