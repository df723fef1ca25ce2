"""Serving the registry's ASGI app: granian's embedded server on a thread of its own.

The server thread runs its own asyncio loop, so the console's UI loop never waits on a
client's upload; network, TLS and HTTP parsing run in granian's Rust threads. Uvicorn in a
thread is the fallback (set EDGE_CONSOLE_SERVER=uvicorn), a swap the plain ASGI app allows.

HTTP/1.1 by default: skopeo and containerd negotiate HTTP/2 when offered, and HTTP/2
uploads measured slower here (bench/bench_registry.py, docs/benchmarks.md).
EDGE_CONSOLE_HTTP=auto offers HTTP/2 as well, with raised flow-control windows, for
measuring the difference.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from starlette.types import Receive, Scope, Send

from registry_core.datadir import DataDir
from registry_core.errors import EdgeError
from registry_core.registry import Registry

log = logging.getLogger("edge_registry.server")

START_TIMEOUT = 15.0


class ServerError(EdgeError):
    """The server could not start (address in use, bad certificate, ...)."""


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ServerError(f"invalid listen address {text!r}: expected HOST:PORT")
        return cls(host.strip("[]") or "0.0.0.0", int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class ServedApp(Protocol):
    """The ASGI app served: a RegistryApp, or a wrapper around one (http/observability.py)."""

    @property
    def registry(self) -> Registry: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class _Backend(Protocol):
    def serve(self, loop: asyncio.AbstractEventLoop) -> Any: ...
    def stop(self) -> None: ...


class RegistryServer:
    """Starts and stops the HTTPS server for a RegistryApp on a background thread."""

    def __init__(
        self,
        app: ServedApp,
        listen: ListenAddress,
        cert: Path | None,
        key: Path | None,
    ) -> None:
        self.app = app
        self.listen = listen
        self.cert = cert
        self.key = key
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backend: _Backend | None = None
        self._error: BaseException | None = None

    @property
    def tls(self) -> bool:
        return self.cert is not None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start serving; returns once the port accepts connections, or raises ServerError."""
        _check_port_free(self.listen)
        self._backend = _make_backend(self)
        self._thread = threading.Thread(target=self._run, name="registry-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._error is not None or not self._thread.is_alive():
                raise ServerError(f"the server did not start: {self._error or 'it exited'}")
            if _accepts(self.listen):
                return
            time.sleep(0.02)
        raise ServerError(f"the server did not listen on {self.listen} within {START_TIMEOUT}s")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        assert self._backend is not None
        try:
            loop.run_until_complete(self._backend.serve(loop))
        except BaseException as exc:  # reported to start() or logged
            self._error = exc
            log.exception("registry server stopped with an error")
        finally:
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop: no new connections, in-flight requests finish (up to timeout)."""
        if self._thread is None or self._loop is None or self._backend is None:
            return
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._backend.stop)
            self._thread.join(timeout)
        self._thread = None


class _GranianBackend:
    def __init__(self, server: RegistryServer) -> None:
        from granian.constants import HTTPModes, Interfaces, SSLProtocols
        from granian.http import HTTP1Settings, HTTP2Settings
        from granian.log import LogLevels
        from granian.server.embed import Server

        limits = server.app.registry.config.limits
        self._server = Server(
            server.app,
            address=server.listen.host,
            port=server.listen.port,
            interface=Interfaces.ASGINL,
            http=HTTPModes.auto if _http_mode() == "auto" else HTTPModes.http1,
            http1_settings=HTTP1Settings(
                # hyper closes a connection whose request head (the first, or the next on a
                # kept-alive one) is not complete in time, and answers 431 to a head larger
                # than its read buffer.
                header_read_timeout=max(1, round(limits.header_read_timeout_seconds * 1000)),
                keep_alive=True,
                max_buffer_size=max(8192, limits.read_buffer_bytes),
            ),
            http2_settings=HTTP2Settings(
                adaptive_window=True,
                initial_connection_window_size=16 << 20,
                initial_stream_window_size=8 << 20,
                max_frame_size=1 << 20,
            ),
            websockets=False,
            backlog=1024,
            log_enabled=False,
            log_level=LogLevels.warning,
            ssl_cert=server.cert,
            ssl_key=server.key,
            ssl_protocol_min=SSLProtocols.tls12,
        )

    def serve(self, loop: asyncio.AbstractEventLoop) -> Any:
        return self._server.serve()

    def stop(self) -> None:
        self._server.stop()  # type: ignore[no-untyped-call]


class _UvicornBackend:
    def __init__(self, server: RegistryServer) -> None:
        import uvicorn

        config = uvicorn.Config(
            server.app,
            host=server.listen.host,
            port=server.listen.port,
            ssl_certfile=str(server.cert) if server.cert else None,
            ssl_keyfile=str(server.key) if server.key else None,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            h11_max_incomplete_event_size=1 << 20,
        )
        self._server = uvicorn.Server(config)

    def serve(self, loop: asyncio.AbstractEventLoop) -> Any:
        return self._server.serve()

    def stop(self) -> None:
        self._server.should_exit = True


def _http_mode() -> str:
    return os.environ.get("EDGE_CONSOLE_HTTP", "1")


def _make_backend(server: RegistryServer) -> _Backend:
    if os.environ.get("EDGE_CONSOLE_SERVER", "granian") == "uvicorn":
        return _UvicornBackend(server)
    return _GranianBackend(server)


def _check_port_free(listen: ListenAddress) -> None:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((listen.host, listen.port))
        except OSError as exc:
            raise ServerError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc


def _accepts(listen: ListenAddress) -> bool:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen.host, listen.host)
    try:
        with socket.create_connection((host, listen.port), timeout=0.2):
            return True
    except OSError:
        return False


# ---- the server state file: lets other processes see that a server serves this data dir --


def write_server_state(datadir: DataDir, listen: ListenAddress, tls: bool) -> None:
    state = {"pid": os.getpid(), "listen": str(listen), "tls": tls, "started_at": time.time()}
    tmp = datadir.server_state.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, datadir.server_state)


def clear_server_state(datadir: DataDir) -> None:
    try:
        state = json.loads(datadir.server_state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if state.get("pid") == os.getpid():
        datadir.server_state.unlink(missing_ok=True)


def read_server_state(datadir: DataDir) -> dict[str, Any] | None:
    """The state of a live server on this data dir, or None (stale files are ignored)."""
    try:
        state = json.loads(datadir.server_state.read_text(encoding="utf-8"))
        pid = int(state["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _pid_alive(pid):
        return None
    try:
        listen = ListenAddress.parse(str(state["listen"]))
    except ServerError:
        return None
    return state if _accepts(listen) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
