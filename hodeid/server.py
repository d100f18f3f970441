"""hodeid's lifecycle: claim the state dir and sockets, serve, and stop in two stages."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import grp
import logging
import os
import signal
import socket
import ssl
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hodei.errors import HodeiError, ProtocolError, SocketInUse, StateDirError
from hodei.framing import FrameReader, FrameWriter
from hodei.protocol import (
    PROTOCOL_VERSION,
    AgentToDaemon,
    CtlRequest,
    Error,
    ErrorCode,
    Hello,
    Role,
)
from hodeid import fdlimit, sdnotify
from hodeid.admission import Gate, Slot
from hodeid.agents import serve_agent
from hodeid.app import App
from hodeid.background import Background
from hodeid.config import Config
from hodeid.ctl import serve_ctl
from hodeid.providers import make_provider
from hodeid.recovery import recover
from hodeid.replies import error_reply
from hodeid.store import DatabaseDamaged
from hodeid.worker import AuthError

log = logging.getLogger("hodeid")
HELLO_MAX = 64 * 1024  # a hello is tiny: nobody unauthenticated makes us buffer 8 MiB
STOP_GRACE = 0.5  # seconds open requests get at a graceful stop; followers and waiters reconnect


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return int(struct.unpack("3i", creds)[1])


def claim_socket(path: Path) -> None:
    """Refuse if a live hodeid answers on ``path``; remove a stale socket left by a crash."""
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # stale: nobody listens
        return
    except OSError as e:
        raise SocketInUse(f"{path} exists and cannot be checked ({e}); remove it if no hodeid runs") from e
    finally:
        probe.close()
    raise SocketInUse(f"another hodeid is already serving on {path}: stop it first, or pick another --socket")


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.app: App | None = None
        self._servers: list[asyncio.base_events.Server] = []
        # The server's tasks, each group entered by ``run`` for the life of what it holds:
        self._loops = Background("hodeid")  # the scheduler and worker supervision (``_essential``)
        self._conns = Background("hodeid's connections")  # every connection's handler
        self._listeners = Background("hodeid's agent listeners")  # --agent-listen: the accept loops
        self._stop = asyncio.Event()
        self._force = False
        self._failed = ""  # the essential loop that failed, if one did
        self._lock_fd: int | None = None
        self._gate = Gate(fdlimit.raise_soft())  # hodeid's own limit, raised as it is set up

    # ---- start ----------------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        cfg = self.config
        # Everything hodeid writes (the database holds every job's environment) is for hodeid alone,
        # whatever umask it was started with; jobs get their submitter's umask, not this one.
        os.umask(0o077)
        try:
            make_private(cfg.state_dir)
            for name in ("hodei.db", "hodei.db-wal", "hodei.db-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(cfg.state_dir / name, 0o600)
            for sub in (cfg.log_dir, cfg.worker_log_dir):
                if sub.exists():
                    make_private(sub)
            if not cfg.socket.parent.exists():  # others may need to reach the socket inside (--socket-group)
                cfg.socket.parent.mkdir(parents=True)
                os.chmod(cfg.socket.parent, 0o755)
            cfg.agent_socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(cfg.state_dir / "hodeid.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StateDirError(f"cannot use {e.filename}: {e.strerror}; pass a writable --state-dir") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SocketInUse(f"another hodeid is already using the state directory {cfg.state_dir}") from None
        self._lock_fd = fd

    async def _listen(self, path: Path, role: Role, mode: int, group: str | None) -> None:
        old = os.umask(0o177)  # the socket is never reachable by others, not even for a moment
        try:
            server = await asyncio.start_unix_server(
                functools.partial(self._accepted, role), path=str(path), limit=1 << 20
            )
        finally:
            os.umask(old)
        if group:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        os.chmod(path, mode)
        self._servers.append(server)

    async def _listen_tcp(self, cfg: Config) -> None:
        """Agents on other machines: TCP, with TLS when a certificate is configured; tokens as always."""
        host, port = cfg.agent_address  # checked with the other settings (hodeid.config.check)
        ctx = None
        if cfg.tls_cert or cfg.tls_key:
            if not (cfg.tls_cert and cfg.tls_key):
                raise HodeiError("--tls-cert and --tls-key go together")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            except (OSError, ssl.SSLError) as e:
                raise HodeiError(f"cannot load the TLS certificate or key: {e}") from e
        elif host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("agents on %s connect without TLS: tokens cross the network in clear", cfg.agent_listen)
        loop = asyncio.get_running_loop()
        try:
            addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                               flags=socket.AI_PASSIVE)
            socks = [_bound(family, address) for family, *_, address in dict.fromkeys(addresses)]
        except OSError as e:
            raise HodeiError(f"cannot listen on {cfg.agent_listen}: {e.strerror}") from e
        for sock in socks:  # accepted here, not by asyncio.start_server: see _accept_tcp
            if not self._listeners.spawn(f"accept-tcp-{_address(sock)}", self._accept_tcp, sock, ctx):
                sock.close()
        log.info("accepting remote agents on %s%s", cfg.agent_listen, " (TLS)" if ctx else "")

    async def _accept_tcp(self, listening: socket.socket, ctx: ssl.SSLContext | None) -> None:
        """Admit (or close) each connection before a byte of it is read; its TLS handshake then counts
        against the handshake timeout, as its hello does."""
        loop = asyncio.get_running_loop()
        listener = self.config.agent_listen
        try:
            while True:
                try:
                    sock, peer = await loop.sock_accept(listening)
                except OSError as e:  # out of descriptors, most likely: the waiting ones can wait a moment
                    log.warning("cannot accept on %s: %s", listener, e)
                    await asyncio.sleep(0.1)
                    continue
                slot = self._gate.admit(listener, str(peer[0]))
                if slot is None:
                    sock.close()
                elif not self._conns.spawn(f"agent-connection-{peer[0]}", self._tcp_connection, sock, slot, ctx):
                    sock.close()
                    slot.release()
        finally:
            listening.close()

    def _accepted(self, role: Role, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        """A connection on a Unix socket: its handler runs in the connections' task group."""
        if not self._conns.spawn(f"{role}-connection", self._connection, role, None, r, w):
            w.close()

    async def _tcp_connection(self, sock: socket.socket, slot: Slot, ctx: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.handshake_timeout  # for the TLS handshake and the hello together
        reader = asyncio.StreamReader(limit=1 << 20)
        protocol = asyncio.StreamReaderProtocol(reader)
        connected = False
        try:
            transport, _ = await asyncio.wait_for(
                loop.connect_accepted_socket(lambda: protocol, sock, ssl=ctx), self.config.handshake_timeout)
            connected = True
        except (TimeoutError, OSError, ssl.SSLError) as e:
            log.info("dropped an agent connection during its TLS handshake: %s", e or "timed out")
            return
        finally:
            if not connected:
                sock.close()
                slot.release()
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._connection(Role.AGENT, slot, reader, writer, deadline - loop.time())

    async def _build(self) -> App:
        cfg = self.config
        self._prepare_dirs()
        claim_socket(cfg.socket)
        claim_socket(cfg.agent_socket_path)
        provider = await make_provider(cfg)
        try:
            self.app = await App.build(cfg, provider)
        except BaseException:
            await provider.close()
            raise
        return self.app

    async def _start(self, app: App) -> None:
        """Take up what the last run left, open the sockets and start the loops: inside the task groups."""
        cfg = self.config
        await recover(app)
        group = cfg.socket_group
        await self._listen(cfg.socket, Role.CTL, 0o660 if group else 0o600, group)
        await self._listen(cfg.agent_socket_path, Role.AGENT, 0o600, None)
        if cfg.agent_listen:
            await self._listen_tcp(cfg)
        self._loops.spawn("scheduler", self._essential, "scheduler", app.scheduler.run)
        self._loops.spawn("supervise-workers", self._essential, "worker supervision", self._supervise, app)
        app.jobs.wakeup.set()
        log.info(
            "hodeid ready: socket %s, provider %s, max %d workers, state %s",
            cfg.socket, app.provider.name, cfg.max_workers, cfg.state_dir,
        )

    async def _essential(self, name: str, loop: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run one of the loops hodeid cannot work without; if it ends, hodeid stops, loudly."""
        try:
            await loop(*args)
            log.critical("hodeid's %s loop ended; stopping hodeid", name)
        except Exception:
            log.critical("hodeid's %s loop failed; stopping hodeid", name, exc_info=True)
        self._failed = name
        self.request_stop()

    async def _supervise(self, app: App) -> None:
        period = min(1.0, self.config.heartbeat_interval / 2)
        while True:
            await asyncio.sleep(period)
            try:
                await app.store.check_file()
                await app.jobs.supervise()
            except DatabaseDamaged:
                pass  # the store has logged it, once; every request says so
            except Exception:
                log.exception("worker supervision pass failed")

    # ---- connections ----------------------------------------------------------------------------

    async def _connection(self, role: Role, slot: Slot | None, r: asyncio.StreamReader, w: asyncio.StreamWriter,
                          timeout: float | None = None) -> None:
        """One connection; ``slot``: its place among the TCP ones that have not said hello yet."""
        assert self.app is not None
        writer = FrameWriter(w)
        try:
            try:
                hello = await asyncio.wait_for(FrameReader[Hello](r, Hello, max_frame=HELLO_MAX).read(),
                                               self.config.handshake_timeout if timeout is None else timeout)
            finally:
                if slot is not None:
                    slot.release()
            if hello is None:
                return
            if hello.version != PROTOCOL_VERSION:
                await writer.send(Error(code=ErrorCode.VERSION, message=(
                    f"protocol version {hello.version} is not supported (hodeid speaks {PROTOCOL_VERSION});"
                    " install matching versions of hodeictl, hodei-agent and hodeid")))
                return
            if hello.role is not role:
                await writer.send(Error(code=ErrorCode.BAD_REQUEST, message=f"this socket is for {role} connections"))
                return
            if role is Role.CTL:
                await serve_ctl(self.app, FrameReader[CtlRequest](r, CtlRequest), writer, peer_uid(w))
            else:
                await serve_agent(self.app, hello, FrameReader[AgentToDaemon](r, AgentToDaemon), writer)
        except TimeoutError:
            log.info("dropped a %s connection that sent no hello within %gs", role, self.config.handshake_timeout)
        except (ConnectionError, BrokenPipeError, ssl.SSLError, asyncio.CancelledError):
            pass
        except Exception as e:
            if isinstance(e, AuthError):
                log.warning("%s", e)
            elif isinstance(e, ProtocolError):
                log.info("closed a %s connection: %s", role, e)
            elif not isinstance(e, HodeiError):
                log.exception("internal error on a %s connection", role)
            await _try_send(writer, error_reply(e, self.config.db_path))
        finally:
            writer.close()

    # ---- stop -----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self._stop.is_set():
            log.warning("second stop signal: stopping now")
            self._force = True
            self._conns.cancel()
            return
        log.info("stopping (send the signal again to force)")
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        app = await self._build()
        try:
            # Left in reverse order: listeners, connections, the loops, then the app's own tasks (cancel
            # watchdogs, then the pool's, whose pending worker removals finish within a bound) and, shielded,
            # the final writes and closes of the logs, the database and the provider.
            async with app.running(), self._loops:
                async with self._conns, self._listeners:
                    await self._start(app)
                    sdnotify.notify("READY=1")
                    await self._stop.wait()
                    sdnotify.notify("STOPPING=1")
                    await self.shutdown(app)
                await app.pool.remove_stopping()  # retired workers gone, not merely asked to go
                self._loops.cancel()
        finally:
            for path in (self.config.socket, self.config.agent_socket_path):
                path.unlink(missing_ok=True)
        log.info("stopped")
        if self._failed:
            raise HodeiError(f"hodeid stopped because its {self._failed} loop failed; its log says why")

    async def shutdown(self, app: App) -> None:
        """Stop taking work, let idle workers go, leave running jobs running for the next start; open
        requests get STOP_GRACE seconds (none after a second signal), then their handlers are cancelled."""
        for server in self._servers:
            server.close()
        self._listeners.cancel()
        app.scheduler.paused = True
        await app.pool.stop_idle()
        self._conns.stop_within(0 if self._force else STOP_GRACE)


def make_private(directory: Path) -> None:
    """Create ``directory`` (0700), or make an existing one 0700, saying so if others could enter it."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        log.warning("%s was open to other users (mode %04o): made it 0700, since it holds jobs' environments"
                    " and output", directory, mode)
        os.chmod(directory, 0o700)


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bound(family: int, address: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _try_send(writer: FrameWriter, msg: Any) -> None:
    try:
        await asyncio.wait_for(writer.send(msg), 1.0)
    except (ConnectionError, OSError, TimeoutError, RuntimeError):
        pass
