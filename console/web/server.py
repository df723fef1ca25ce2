"""The console in a browser: textual-serve's aiohttp app behind a login, over HTTPS with the
registry's own server certificate; one console process per browser tab.

textual-serve has no TLS and no login; its `Server._make_app()` (private: the version is
pinned in pyproject.toml and tests/test_web.py covers it) returns a plain aiohttp app with the
routes `/`, `/ws`, `/download/{key}` and `/static`. This module adds a middleware that lets
nothing but the login page through without a session, the login routes, a page template
without the internet web font, an Origin check on `/ws`, a cap on live sessions, downloads
bound to the session that made them, and a shutdown that ends every console process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.server import Server

from console.web.app_process import PARENT_ENV
from console.web.sessions import (
    FAILURE_WINDOW,
    IDLE,
    LIFETIME,
    MAX_FAILURES,
    LoginThrottle,
    Sessions,
    WebSession,
)
from registry_core.access.credentials import parse_basic
from registry_core.access.scopes import ACTIONS
from registry_core.datadir import DataDir
from registry_core.errors import EdgeError, NotEnabledError
from registry_core.events import LoginFailed
from registry_core.identity import Authenticates, Identity, may
from registry_core.registry import Registry
from registry_core.server import ListenAddress

log = logging.getLogger("edge_console.web")

DEFAULT_PORT = 31002
COOKIE = "edge_console_session"
TEMPLATES = Path(__file__).parent / "templates"
QUIT_WAIT = 2.0
"""Seconds a console process has to quit when asked, before SIGTERM (then SIGKILL)."""
_SESSION_OF_REQUEST: web.RequestKey[WebSession] = web.RequestKey("edge-console-session", WebSession)


class WebError(EdgeError):
    """The web face could not start (no certificate, address in use, ...)."""


@dataclass(frozen=True)
class WebSettings:
    max_sessions: int = 4
    """Browser tabs with a live console at once; over it, a page says so."""
    idle: float = IDLE
    lifetime: float = LIFETIME
    max_failures: int = MAX_FAILURES
    failure_window: float = FAILURE_WINDOW
    stop_timeout: float = 5.0
    """Seconds stopping waits for the consoles to end before it kills what is left."""
    sweep_interval: float = 15.0
    """Seconds between two looks for expired sessions (their tabs are then closed)."""


def console_access(identity: Identity) -> bool:
    """The admin, or a client token granted every action on `*` (a console can do anything
    the appliance can, so nothing less opens it)."""
    return identity.kind == "admin" or all(may(identity, None, a) for a in ACTIONS)


def server_ssl_context(datadir: DataDir) -> ssl.SSLContext:
    """TLS 1.2 or newer with the registry's own server certificate."""
    if not (datadir.server_cert.exists() and datadir.server_key.exists()):
        raise NotEnabledError(f"no server certificate in {datadir.certs}: run "
                              "`edge-console enable` first")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(datadir.server_cert, datadir.server_key)
    return context


def app_process_argv(datadir: DataDir) -> list[str]:
    """The console of one browser tab: attached to the data dir, never serving it."""
    return [sys.executable, "-m", "console.web.app_process", str(datadir.root)]


def public_url(listen: ListenAddress, endpoint_host: str) -> str:
    """The URL to open: the registry's endpoint name when bound to every address."""
    host = endpoint_host if listen.host in ("0.0.0.0", "::", "") else listen.host
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}:{listen.port}"


class ConsoleAppService(AppService):
    """textual-serve's app process, started without a shell (so its pid is the console's)
    and told the web face's pid (it asks for a parent-death signal)."""

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        super().__init__(" ".join(argv), **kwargs)
        self.argv = argv

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Any:
        environment = self._build_environment(width=width, height=height)
        environment[PARENT_ENV] = str(os.getpid())
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    async def stop(self) -> None:
        """Ask the console to quit; SIGTERM, then SIGKILL, if it does not in time."""
        task, self._task = self._task, None
        if task is None:
            return
        await self._download_manager.cancel_app_downloads(app_service_id=self.app_service_id)
        await self.send_meta({"type": "quit"})
        process = self._process
        for signal_it in (None, "terminate", "kill"):
            if signal_it is not None and process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    getattr(process, signal_it)()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), QUIT_WAIT)
                if process is not None:
                    await asyncio.wait_for(process.wait(), QUIT_WAIT)
                return
        task.cancel()

    def kill(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()


@dataclass(eq=False)
class LiveConsole:
    """One browser tab's websocket and the console process behind it."""

    session: WebSession
    websocket: web.WebSocketResponse
    service: ConsoleAppService | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class ConsoleServer(Server):
    """textual-serve's Server with the login, the session cap and a clean stop."""

    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticates,
        app_argv: list[str],
        settings: WebSettings,
    ) -> None:
        super().__init__(" ".join(app_argv), title="Edge Console", templates_path=TEMPLATES)
        self.registry = registry
        self.authenticator = authenticator
        self.app_argv = app_argv
        self.settings = settings
        self.sessions = Sessions(settings.idle, settings.lifetime)
        self.throttle = LoginThrottle(settings.max_failures, settings.failure_window)
        self.live: set[LiveConsole] = set()
        self.stopping = False

    async def make_app(self) -> web.Application:
        app = await self._make_app()
        app.middlewares.append(self._require_login)
        app.router.add_get("/login", self.handle_login_page)
        app.router.add_post("/login", self.handle_login)
        app.router.add_post("/logout", self.handle_logout)
        app.on_response_prepare.append(_security_headers)
        return app

    async def on_startup(self, app: web.Application) -> None:
        """Quiet (textual-serve prints a banner here, which would draw over a TUI)."""

    # ---- the login -----------------------------------------------------------------------

    @web.middleware
    async def _require_login(
        self, request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if request.path == "/login":
            return await handler(request)
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            if request.method == "GET" and request.path == "/":
                raise web.HTTPSeeOther("/login")
            raise web.HTTPUnauthorized(text="Log in first: /login\n")
        request[_SESSION_OF_REQUEST] = session
        return await handler(request)

    async def handle_login_page(self, request: web.Request) -> web.StreamResponse:
        if self.sessions.get(request.cookies.get(COOKIE)) is not None:
            raise web.HTTPSeeOther("/")
        return self.page(request, "Log in", "Edge Console", form=True)

    async def handle_login(self, request: web.Request) -> web.StreamResponse:
        address = request.remote
        if not same_origin(request, allow_missing=True):
            raise web.HTTPForbidden(text="cross-origin login refused\n")
        form = await request.post()
        username = str(form.get("username", ""))[:256]
        password = str(form.get("password", ""))[:1024]
        wait = self.throttle.wait_for(address)
        if wait > 0:
            self.login_failed(username, address, "too many failed logins")
            response = self.page(request, "Log in", "Edge Console", form=True, status=429,
                                 message=f"Too many failed logins from {address}: try again "
                                         f"in {int(wait) + 1} s.", error=True)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        identity, reason = await self.check(username, password)
        if identity is None:
            self.throttle.failed(address)
            self.login_failed(username, address, reason)
            return self.page(request, "Log in", "Edge Console", form=True, status=401,
                             message="Wrong user name or password.", error=True)
        self.throttle.succeeded(address)
        token, _ = self.sessions.create(identity.name, address)
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, token, path="/", secure=True, httponly=True,
                            samesite="Strict")
        raise response

    async def check(self, username: str, password: str) -> tuple[Identity | None, str]:
        """(the identity, '') or (None, why it may not log in)."""
        header = basic_header(username, password)
        if not username or parse_basic(header) is None:
            return None, "malformed credentials"
        identity = await self.authenticator.authenticate(header)
        if identity is None:
            return None, self.authenticator.refusal(header)
        if not console_access(identity):
            return None, "token not granted console access (every action on *)"
        return identity, ""

    def login_failed(self, principal: str, address: str | None, reason: str) -> None:
        """Audited: the registry's audit log writes LoginFailed (as `login`, failed)."""
        self.registry.events.emit(LoginFailed(principal=principal, address=address,
                                              reason=f"web console: {reason}"))

    async def handle_logout(self, request: web.Request) -> web.StreamResponse:
        if not same_origin(request, allow_missing=False):
            raise web.HTTPForbidden(text="cross-origin logout refused\n")
        self.sessions.end(request.cookies.get(COOKIE))
        await self.close_consoles(lambda live: not self.sessions.alive(live.session))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    # ---- the console page, its websocket, downloads -----------------------------------------

    async def handle_index(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        if len(self.live) >= self.settings.max_sessions:
            return self.full_page(request)
        origin = origin_of(request)
        router = request.app.router
        static = f"{origin}{router['static'].url_for(filename='/')}".rstrip("/") + "/"
        context = {
            "font_size": _to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": "wss:" + f"{origin}{router['websocket'].url_for()}"[6:],
            "config": {"static": {"url": static}},
            "application": {"name": self.title},
        }
        response = aiohttp_jinja2.render_template("app_index.html", request, context)
        response.headers["Cache-Control"] = "no-store"
        return response

    def full_page(self, request: web.Request) -> web.Response:
        return self.page(
            request, "Too many sessions", "All console sessions are in use", status=503,
            message=f"{self.settings.max_sessions} browser sessions of the console are open, "
                    "the most this appliance allows.",
            note="Close one of them (its tab), then reload this page.",
            link="/", link_text="Reload")

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        session = request[_SESSION_OF_REQUEST]
        if not same_origin(request, allow_missing=False):
            raise web.HTTPForbidden(text="cross-origin websocket refused\n")
        if self.stopping:
            raise web.HTTPServiceUnavailable(text="the web console is stopping\n")
        if len(self.live) >= self.settings.max_sessions:
            raise web.HTTPServiceUnavailable(text="all console sessions are in use\n")
        websocket = web.WebSocketResponse(heartbeat=15)
        live = LiveConsole(session, websocket)
        self.live.add(live)  # before any await: the cap holds
        try:
            await websocket.prepare(request)
            await self.run_console(live, request)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await websocket.close()
        except Exception:
            log.exception("web console session failed")
        finally:
            if live.service is not None:
                await live.service.stop()
            self.live.discard(live)
            live.ended.set()
        return websocket

    async def run_console(self, live: LiveConsole, request: web.Request) -> None:
        websocket = live.websocket
        service = ConsoleAppService(
            self.app_argv,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=self.download_manager,
        )
        live.service = service
        await service.start(_to_int(request.query.get("width", "80"), 80),
                            _to_int(request.query.get("height", "24"), 24))
        async for message in websocket:
            if message.type != WSMsgType.TEXT:
                continue
            envelope = json.loads(message.data)
            if not isinstance(envelope, list) or not envelope:
                continue
            kind, data = envelope[0], envelope[1] if len(envelope) > 1 else None
            if kind == "stdin" and isinstance(data, str):
                self.sessions.touch(live.session)
                await service.send_bytes(data.encode("utf-8"))
            elif kind == "resize" and isinstance(data, dict):
                await service.set_terminal_size(_to_int(str(data.get("width")), 80),
                                                _to_int(str(data.get("height")), 24))
            elif kind == "ping":
                await websocket.send_json(["pong", data])
            elif kind == "blur":
                await service.blur()
            elif kind == "focus":
                await service.focus()

    async def handle_download(self, request: web.Request) -> web.StreamResponse:
        """A download only for the session whose console made it."""
        session = request[_SESSION_OF_REQUEST]
        key = request.match_info["key"]
        try:
            download = await self.download_manager.get_download_metadata(key)
        except KeyError:
            raise web.HTTPNotFound(text="no such download\n") from None
        owners = [live.session for live in self.live if live.service is download.app_service]
        if session not in owners:
            raise web.HTTPNotFound(text="no such download\n")
        return await super().handle_download(request)

    # ---- expiry and stopping -------------------------------------------------------------

    async def sweep_forever(self) -> None:
        """Close the tabs of sessions that expired (idle, or past their lifetime)."""
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            self.sessions.sweep()
            await self.close_consoles(lambda live: not self.sessions.alive(live.session))

    async def close_consoles(self, which: Callable[[LiveConsole], bool]) -> None:
        chosen = [live for live in self.live if which(live)]
        for live in chosen:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(live.websocket.close(), 1.0)
        if chosen:
            await asyncio.wait([asyncio.create_task(live.ended.wait()) for live in chosen],
                               timeout=self.settings.stop_timeout)

    async def end_all(self) -> None:
        """Close every tab and end its console; kill what does not end in time."""
        self.stopping = True
        live = list(self.live)
        await self.close_consoles(lambda _: True)
        for one in live:
            if one.service is not None:
                one.service.kill()

    def page(self, request: web.Request, title: str, heading: str, *, status: int = 200,
             **context: Any) -> web.Response:
        response = aiohttp_jinja2.render_template(
            "page.html", request, {"title": title, "heading": heading, **context},
            status=status)
        response.headers["Cache-Control"] = "no-store"
        return response


class WebConsole:
    """The web face on its own thread and event loop: `start` returns once it listens (or
    raises WebError), `stop` ends every console and returns within a bounded time."""

    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticates,
        listen: str | None = None,
        *,
        settings: WebSettings | None = None,
        app_argv: list[str] | None = None,
    ) -> None:
        self.registry = registry
        self.datadir = registry.datadir
        host = ListenAddress.parse(registry.config.listen_address).host
        self.listen = ListenAddress.parse(listen or f"{host}:{DEFAULT_PORT}")
        self.settings = settings or WebSettings()
        self.server = ConsoleServer(registry, authenticator,
                                    app_argv or app_process_argv(self.datadir), self.settings)
        self.url = public_url(self.listen, registry.config.endpoint_host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def app_pids(self) -> list[int]:
        """The console processes of the open tabs."""
        return [pid for live in list(self.server.live)
                if live.service is not None and (pid := live.service.pid) is not None]

    def start(self) -> str:
        context = server_ssl_context(self.datadir)
        self._thread = threading.Thread(target=self._run, args=(context,), name="web-console",
                                        daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise WebError(f"cannot serve the web console on {self.listen}: {self._error}")
        return self.url

    def stop(self) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is None or stop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(stop.set)
        thread.join(self.settings.stop_timeout + 10.0)

    def _run(self, context: ssl.SSLContext) -> None:
        asyncio.run(self._serve(context))

    async def _serve(self, context: ssl.SSLContext) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner: web.AppRunner | None = None
        try:
            runner = web.AppRunner(await self.server.make_app(), access_log=None,
                                   shutdown_timeout=1.0)
            await runner.setup()
            site = web.TCPSite(runner, self.listen.host, self.listen.port,
                               ssl_context=context)
            await site.start()
        except (OSError, EdgeError) as exc:
            self._error = exc
            self._started.set()
            if runner is not None:
                await runner.cleanup()
            return
        self._started.set()
        sweeper = asyncio.create_task(self.server.sweep_forever())
        try:
            await self._stop.wait()
        finally:
            sweeper.cancel()
            await self.server.end_all()
            await runner.cleanup()


def same_origin(request: web.Request, *, allow_missing: bool) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return allow_missing
    return origin == origin_of(request)


def origin_of(request: web.Request) -> str:
    """The origin the browser sees (https and the Host it asked for): the page's asset
    and websocket URLs must be on it, or the browser blocks them."""
    return f"https://{request.host}"


def basic_header(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode("utf-8", "surrogatepass")
    return "Basic " + base64.b64encode(raw).decode("ascii")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")  # no-referrer: Origin null


def _to_int(value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        return default


__all__ = ["DEFAULT_PORT", "ConsoleServer", "WebConsole", "WebError", "WebSettings",
           "console_access"]
