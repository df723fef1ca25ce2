"""The console in a browser: `edge-console web` driven by a real headless Chromium (Debian's
/usr/bin/chromium through Playwright for Python), over HTTPS, with the registry served by
this process (so the browser's consoles attach to it).

xterm.js draws on a canvas, so the screen is read from the page's xterm Terminal object,
captured by an init script when textual.js creates it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from imagebuilder import write_oci_image
from support import (
    HANG_GUARD,
    LiveServer,
    free_port,
    put_on_parent,
    require_tool,
    running,
    wait_until,
)

from registry_core.access.scopes import parse_scopes
from registry_core.access.tokens import TokenAdmin
from registry_core.datadir import DataDir
from registry_core.identity import CONSOLE
from registry_core.store.audit import AuditFilter

pytestmark = pytest.mark.socket

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
"""Seconds any awaited condition gets before the test fails (never a fixed sleep)."""
REPOSITORY = "web/demo"

CAPTURE_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true,
                                             enumerable: true});
    if (value && value.buffer) { window.__edgeTerminal = value; }
  },
});
"""
SCREEN_HAS = """
(text) => {
  const term = window.__edgeTerminal;
  if (!term) return false;
  const buffer = term.buffer.active;
  for (let i = 0; i < buffer.length; i++) {
    const line = buffer.getLine(i);
    if (line && line.translateToString(true).includes(text)) return true;
  }
  return false;
}
"""


@dataclass
class WebFace:
    url: str
    process: subprocess.Popen[str]
    datadir: DataDir
    username: str
    password: str
    server: LiveServer

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.server.ssl_context(),
                            follow_redirects=False, timeout=HANG_GUARD)

    def app_pids(self) -> list[int]:
        return console_children(self.process.pid)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(HANG_GUARD)


def console_children(parent: int) -> list[int]:
    """Pids of the console processes (console.web.app_process) whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"console.web.app_process" in cmdline:
            found.append(int(entry.name))
    return found


def start_web(datadir: DataDir, server: LiveServer, *extra: str) -> WebFace:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "console", "--data-dir", str(datadir.root), "web",
         "--listen", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "Serving the console on" not in line:
        process.kill()
        pytest.fail(f"edge-console web did not start: {line}{process.stdout.read()}")
    assert f"https://127.0.0.1:{port}" in line and "attached to the registry" in line, line
    return WebFace(f"https://127.0.0.1:{port}", process, datadir, server.username,
                   server.password, server)


@pytest.fixture
def served(live_server: LiveServer, tmp_path: Path) -> LiveServer:
    """The registry served here, with one image in `web/demo`."""
    image = write_oci_image(tmp_path / "image")
    put_on_parent(live_server.service.registry, REPOSITORY, image, "v1")
    return live_server


@pytest.fixture
def web(served: LiveServer, datadir: DataDir) -> Iterator[WebFace]:
    face = start_web(datadir, served, "--max-sessions", "2")
    yield face
    face.stop()
    for pid in face.app_pids():
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium")
    try:
        from playwright import sync_api
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Playwright for Python is required in CI (the test extra)")
        pytest.skip("Playwright for Python is not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    # The appliance's CA is not in Chromium's store here: certificate errors are ignored
    # (the CA itself is checked by the httpx tests below).
    context = browser.new_context(ignore_https_errors=True, accept_downloads=True,
                                  viewport={"width": 1280, "height": 800})
    context.add_init_script(CAPTURE_TERMINAL)
    context.set_default_timeout(HANG_GUARD * 1000)
    yield context
    context.close()


def log_in(page: Any, web: WebFace, username: str | None = None,
           password: str | None = None) -> None:
    page.goto(web.url + "/")
    assert page.url == web.url + "/login"
    page.fill("#username", username or web.username)
    page.fill("#password", password or web.password)
    page.click("#login")


def wait_for_screen(page: Any, text: str) -> None:
    page.wait_for_function(SCREEN_HAS, arg=text, timeout=HANG_GUARD * 1000)


def press(page: Any, key: str) -> None:
    page.focus("textarea.xterm-helper-textarea")
    page.keyboard.press(key)


def open_console(context: Any, web: WebFace) -> Any:
    page = context.new_page()
    log_in(page, web)
    page.wait_for_url(web.url + "/")
    wait_for_screen(page, "Device")
    return page


# ---- the tests ---------------------------------------------------------------------------


def test_login_shows_device_then_images(web: WebFace, context: Any) -> None:
    page = open_console(context, web)
    wait_for_screen(page, web.server.service.config.endpoint)
    wait_for_screen(page, f"In a browser  {web.url}")  # the Device screen's URL to open
    cookie = next(c for c in context.cookies() if c["name"] == "edge_console_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert len(cookie["value"]) >= 40
    press(page, "3")
    wait_for_screen(page, REPOSITORY)
    [pid] = web.app_pids()
    assert running(pid)


def test_nothing_reachable_without_login(web: WebFace, context: Any) -> None:
    with web.client() as client:  # the registry's own CA verifies the web face
        index = client.get("/")
        assert index.status_code == 303 and index.headers["location"] == "/login"
        for path in ("/ws", "/download/anything", "/static/js/textual.js",
                     "/static/", "/static/css/xterm.css"):
            refused = client.get(path, headers={"Connection": "Upgrade",
                                                "Upgrade": "websocket",
                                                "Sec-WebSocket-Version": "13",
                                                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
            assert refused.status_code == 401, (path, refused.status_code)
        # A made-up cookie is no session.
        client.cookies.set("edge_console_session", "x" * 43)
        assert client.get("/static/js/textual.js").status_code == 401
        assert client.get("/").status_code == 303
    page = context.new_page()
    page.goto(web.url + "/static/js/textual.js")
    assert "Log in first" in page.content()
    assert web.app_pids() == []


def test_websocket_from_another_origin_refused(web: WebFace) -> None:
    with web.client() as client:
        login = client.post("/login", data={"username": web.username,
                                            "password": web.password})
        assert login.status_code == 303
        assert client.get("/").status_code == 200
        headers = {"Connection": "Upgrade", "Upgrade": "websocket",
                   "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        evil = client.get("/ws", headers={**headers, "Origin": "https://evil.example"})
        assert evil.status_code == 403
        no_origin = client.get("/ws", headers=headers)
        assert no_origin.status_code == 403
    assert web.app_pids() == []


def test_page_has_no_internet_font(web: WebFace) -> None:
    with web.client() as client:
        client.post("/login", data={"username": web.username, "password": web.password})
        page = client.get("/").text
    assert "googleapis" not in page
    assert re.findall(r"https?://[^\"' )]+", page) == [
        url for url in re.findall(r"https?://[^\"' )]+", page)
        if url.startswith((web.url, "http://www.w3.org/"))
    ]
    assert "fonts/RobotoMono-VariableFont_wght.ttf" in page


def test_bad_password_refused_audited_and_rate_limited(web: WebFace, context: Any) -> None:
    page = context.new_page()
    log_in(page, web, password="not-the-password")
    assert "Wrong user name or password" in page.inner_text("#message")
    assert page.url == web.url + "/login"
    assert not any(c["name"] == "edge_console_session" for c in context.cookies())
    registry = web.server.service.registry

    def audited() -> bool:
        rows = registry.audit.query(AuditFilter(principal=web.username, action="login"))
        return any(r.result == "failed" and "web console" in r.detail.get("reason", "")
                   for r in rows)

    wait_until(audited, "the failed login in the audit log")
    with web.client() as client:
        statuses = [client.post("/login", data={"username": web.username,
                                                "password": "wrong"}).status_code
                    for _ in range(5)]
        assert statuses[:4] == [401] * 4 and statuses[4] == 429, statuses
        # Rate-limited: even the right password waits now.
        limited = client.post("/login", data={"username": web.username,
                                              "password": web.password})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert "edge_console_session" not in limited.cookies


def test_token_needs_every_action_on_star(web: WebFace, context: Any) -> None:
    admin = TokenAdmin(web.server.service.registry)
    reader = admin.create("reader", parse_scopes(["*:content/read,metadata/read"]), who=CONSOLE)
    full = admin.create("operator", parse_scopes(
        ["*:content/read,content/write,content/delete,metadata/read,metadata/write,"
         "metrics/read"]), who=CONSOLE)
    with web.client() as client:
        refused = client.post("/login", data={"username": "reader",
                                              "password": reader.password})
        assert refused.status_code == 401
    page = context.new_page()
    log_in(page, web, "operator", full.password)
    page.wait_for_url(web.url + "/")
    wait_for_screen(page, "Device")


def test_session_cap_and_closing_a_tab_ends_its_console(web: WebFace, context: Any) -> None:
    first = open_console(context, web)
    second = context.new_page()
    second.goto(web.url + "/")
    wait_for_screen(second, "Device")
    wait_until(lambda: len(web.app_pids()) == 2, "two console processes")
    pids = web.app_pids()
    third = context.new_page()
    response = third.goto(web.url + "/")
    assert response.status == 503
    assert "All console sessions are in use" in third.content()
    assert len(web.app_pids()) == 2
    first.close()
    wait_until(lambda: len(web.app_pids()) == 1, "the closed tab's console to end")
    [left] = web.app_pids()
    assert left in pids
    assert not any(running(pid) for pid in pids if pid != left)
    # The slot is free once the server has reaped the process (a moment after it exits).
    wait_until(lambda: third.reload().status == 200, "a free session slot")
    wait_for_screen(third, "Device")


def test_stopping_the_server_ends_every_console(web: WebFace, context: Any) -> None:
    open_console(context, web)
    [pid] = web.app_pids()
    assert web.stop() == 0
    wait_until(lambda: not running(pid), "the console process to end")


def test_killed_server_leaves_no_console(web: WebFace, context: Any) -> None:
    """A web face killed outright takes its consoles with it (their stdin closes; the
    parent-death signal, for a console that is not reading it: test_web_process.py)."""
    open_console(context, web)
    [pid] = web.app_pids()
    web.process.kill()
    web.process.wait(HANG_GUARD)
    wait_until(lambda: not running(pid), "the console process to end with its parent")


def test_ca_download_in_the_browser(web: WebFace, context: Any) -> None:
    page = open_console(context, web)
    press(page, "2")
    wait_for_screen(page, "Export")
    with page.expect_download(timeout=HANG_GUARD * 1000) as pem_download:
        press(page, "e")
    pem = pem_download.value
    assert pem.suggested_filename == "edge-registry-ca.crt"
    assert Path(pem.path()).read_bytes() == web.datadir.ca_cert.read_bytes()
    press(page, "f")
    with page.expect_download(timeout=HANG_GUARD * 1000) as der_download:
        press(page, "e")
    der = der_download.value
    assert der.suggested_filename == "edge-registry-ca.cer"
    from cryptography import x509

    pem_cert = x509.load_pem_x509_certificate(web.datadir.ca_cert.read_bytes())
    assert x509.load_der_x509_certificate(Path(der.path()).read_bytes()) == pem_cert


def test_download_only_for_the_session_that_made_it(web: WebFace, context: Any) -> None:
    """The browser's fetch of the download is held back, so that the key stays live: another
    logged-in session is refused it, the session that made it gets the file."""
    context.route("**/download/**", lambda route: route.abort())
    page = open_console(context, web)
    press(page, "2")
    wait_for_screen(page, "Export")
    with context.expect_event("request", predicate=lambda r: "/download/" in r.url) as asked:
        press(page, "e")
    path = asked.value.url.removeprefix(web.url)
    assert path.startswith("/download/")
    with web.client() as other:
        assert other.post("/login", data={"username": web.username,
                                          "password": web.password}).status_code == 303
        assert other.get(path).status_code == 404
    cookie = next(c for c in context.cookies() if c["name"] == "edge_console_session")
    with web.client() as owner:
        owner.cookies.set("edge_console_session", cookie["value"])
        fetched = owner.get(path)
        assert fetched.status_code == 200
        assert fetched.content == web.datadir.ca_cert.read_bytes()


class StepClock:
    """A clock the test moves (the sessions' idle time and lifetime)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_expired_session_closes_its_tab_and_console(served: LiveServer, context: Any) -> None:
    from console.web.server import WebConsole, WebSettings

    service = served.service
    face = WebConsole(service.registry, service.app.authenticator,
                      f"127.0.0.1:{free_port()}",
                      settings=WebSettings(idle=600, sweep_interval=0.1))
    clock = StepClock()
    face.server.sessions.clock = clock
    url = face.start()
    try:
        page = context.new_page()
        page.goto(url + "/")
        page.fill("#username", served.username)
        page.fill("#password", served.password)
        page.click("#login")
        wait_for_screen(page, "Device")
        [pid] = face.app_pids
        clock.now += 601  # ten minutes without a key pressed
        wait_until(lambda: not running(pid), "the expired session's console to end")
        page.wait_for_selector("body.-closed")  # the page says the session ended
        page.goto(url + "/")
        assert page.url == url + "/login"
    finally:
        face.stop()
