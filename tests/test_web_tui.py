"""`edge-console --web`: one command gives the terminal console, the registry served in its
process and the web face; a browser's console attaches to that registry; quitting the
terminal console ends the web face and every browser's console with it."""

from __future__ import annotations

import os
import pty
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from support import HANG_GUARD, free_port
from test_web import (
    browser,
    console_children,
    context,
    log_in,
    press,
    running,
    wait_for_screen,
    wait_until,
)

from console.web.state import read_web_url, state_path
from registry_core.access.credentials import read_credentials
from registry_core.datadir import DataDir
from registry_core.server import read_server_state

pytestmark = pytest.mark.socket
__all__ = ["browser", "context"]  # the browser fixtures of test_web, used here


@dataclass
class Terminal:
    """A process on a pseudo-terminal; what it writes is drained (and kept) by a thread."""

    process: subprocess.Popen[bytes]
    master: int
    output: bytearray = field(default_factory=bytearray)

    def drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output.extend(data)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())


@pytest.fixture
def tui(datadir: DataDir) -> Iterator[tuple[Terminal, str]]:
    port = free_port()
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    process = subprocess.Popen(
        [sys.executable, "-m", "console", "--data-dir", str(datadir.root), "--web",
         "--web-listen", f"127.0.0.1:{port}"],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )
    os.close(slave)
    terminal = Terminal(process, master)
    threading.Thread(target=terminal.drain, daemon=True).start()
    yield terminal, f"https://127.0.0.1:{port}"
    if process.poll() is None:
        process.kill()
    process.wait(60)
    os.close(master)


def test_console_with_web_face(tui: tuple[Terminal, str], datadir: DataDir,
                               context: Any) -> None:
    terminal, url = tui
    wait_until(lambda: read_web_url(datadir) == url, "web.json")
    wait_until(lambda: read_server_state(datadir) is not None, "the registry served")
    assert read_server_state(datadir)["pid"] == terminal.process.pid  # type: ignore[index]
    ca = ssl.create_default_context(cafile=str(datadir.ca_cert))
    with httpx.Client(base_url=url, verify=ca, timeout=HANG_GUARD) as client:
        assert client.get("/").status_code == 303
    username, password = read_credentials(datadir)
    page = context.new_page()
    log_in(page, _Face(url, username, password))  # type: ignore[arg-type]
    page.wait_for_url(url + "/")
    wait_for_screen(page, "attached")  # the browser's console attaches to the TUI's registry
    wait_for_screen(page, url)  # the Device screen says where to open the web face
    wait_until(lambda: len(console_children(terminal.process.pid)) == 1, "a console process")
    [pid] = console_children(terminal.process.pid)
    press(page, "3")
    wait_for_screen(page, "Images")
    terminal.type("q")
    assert terminal.process.wait(60) == 0, bytes(terminal.output[-2000:])
    wait_until(lambda: not running(pid), "the browser's console to end")
    assert not state_path(datadir).exists()
    assert read_server_state(datadir) is None


@dataclass
class _Face:
    url: str
    username: str
    password: str
