"""Device: endpoint, credentials, server state; hosts line and client set-up per client OS.

The login line is the admin's, or a client token's (chosen under "Log in as"): a token's
password is never stored in clear, so its line carries a placeholder for it."""

from __future__ import annotations

from functools import partial
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import RadioButton, RadioSet, Select, Static

from console.context import Command
from console.screens.base import View
from console.web.state import read_web_url
from console.widgets.snippet import Snippet
from console.widgets.status import ROLES
from registry_core.access.tokens import TokenAdmin
from registry_core.device import (
    CLIENT_OSES,
    ClientOS,
    DeviceInfo,
    client_setup_snippets,
    device_info,
    hosts_add_command,
    hosts_file_path,
    hosts_line,
)
from registry_core.device import Snippet as SetupSnippet
from registry_core.errors import EdgeError

OS_LABELS: dict[ClientOS, str] = {"windows": "Windows", "linux": "Linux", "macos": "macOS"}
MASK = "•" * 12
ADMIN = "(admin)"
"""The "Log in as" choice of the admin (no token name has parentheses)."""


def is_login(snippet: SetupSnippet) -> bool:
    return snippet.text.startswith("docker login")


def token_login(info: DeviceInfo, token: str) -> SetupSnippet:
    """The login line of a client token: its password is not kept, so a placeholder."""
    return SetupSnippet(
        f"Log in as the token {token} (put its password, shown once when it was made or "
        "replaced, in place of the placeholder)",
        f"echo '<password of {token}>' | docker login {info.endpoint} -u {token} "
        "--password-stdin",
    )


def setup_snippets(info: DeviceInfo, client_os: ClientOS, login_as: str) -> list[SetupSnippet]:
    """The client set-up, its login line for `login_as` (ADMIN or a token's name)."""
    snippets = client_setup_snippets(info, client_os)
    if login_as == ADMIN:
        return snippets
    return [token_login(info, login_as) if is_login(s) else s for s in snippets]


class DeviceLoaded(Message):
    def __init__(self, info: DeviceInfo | None, error: str | None = None) -> None:
        super().__init__()
        self.info = info
        self.error = error


class WebFaceFound(Message):
    """Where the web face of this data dir can be opened (None: it is not served)."""

    def __init__(self, url: str | None) -> None:
        super().__init__()
        self.url = url


class TokensListed(Message):
    def __init__(self, names: tuple[str, ...], number: int) -> None:
        super().__init__()
        self.names = names
        self.number = number


class DeviceView(View):
    tab_id = "device"
    tab_title = "Device"
    help_notes = (
        "Copies go to the clipboard of your terminal (OSC 52); the text is always on screen too."
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "next_os", "Client OS", id="device.os",
                tooltip="next client OS (Windows, Linux, macOS)"),
        Binding("h", "copy_hosts", "Copy hosts", id="device.copy_hosts",
                tooltip="copy the hosts line"),
        Binding("m", "copy_add_command", "Copy add cmd", show=False, id="device.copy_add",
                tooltip="copy the command that adds the hosts line"),
        Binding("i", "copy_login", "Copy login", id="device.copy_login",
                tooltip="copy the docker login line"),
        Binding("p", "copy_password", "Copy pw", id="device.copy_password",
                tooltip="copy the registry password"),
        Binding("v", "reveal", "Reveal", id="device.reveal",
                tooltip="reveal or hide the password"),
    ]

    info: reactive[DeviceInfo | None] = reactive(None, init=False)
    client_os: reactive[ClientOS] = reactive("windows", init=False)
    revealed: reactive[bool] = reactive(False, init=False)
    requests: reactive[int | None] = reactive(None, init=False)
    login_as: reactive[str] = reactive(ADMIN, init=False)
    """Whose login line the set-up shows: ADMIN or a client token's name."""
    tokens: reactive[tuple[str, ...]] = reactive((), init=False)
    """The client tokens' names, for the "Log in as" choice."""
    web_url: reactive[str | None] = reactive(None, init=False)
    """The URL of the console in a browser, while `edge-console web` (or --web) serves it."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._listings = 0
        """Token listings asked for; only the newest one's answer is shown."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="device-scroll"):
            yield Static("Loading…", id="device-facts")
            with Horizontal(id="os-row"):
                yield Static("Client OS ", id="os-label")
                with RadioSet(id="client-os"):
                    for client_os in CLIENT_OSES:
                        yield RadioButton(
                            OS_LABELS[client_os],
                            value=client_os == self.client_os,
                            id=f"os-{client_os}",
                        )
            with Horizontal(id="login-row"):
                yield Static("Log in as ", id="login-label")
                yield Select([("admin", ADMIN)], value=ADMIN, allow_blank=False,
                             id="login-as", compact=True)
            yield Static("", id="hosts-heading", classes="section")
            yield Snippet("Hosts line", "", id="snippet-hosts")
            yield Snippet("Command that adds it", "", id="snippet-hosts-add")
            yield Static("Client set-up", classes="section", id="setup-heading")
            yield Vertical(id="setup-list")

    def main_widget(self) -> Widget | None:
        return self.query_one("#snippet-hosts", Snippet)

    def on_mount(self) -> None:
        self.load()
        self.list_tokens()
        self.find_web_face()

    def reload(self) -> None:
        self.load()
        self.list_tokens()
        self.find_web_face()

    def shown(self) -> None:
        super().shown()
        self.list_tokens()  # made or deleted on the Access screen meanwhile
        self.find_web_face()

    @work(thread=True, exclusive=True, group="device-web", exit_on_error=False)
    def find_web_face(self) -> None:
        self.post_message(WebFaceFound(read_web_url(self.edge.datadir)))

    @on(WebFaceFound)
    def _web_face_found(self, message: WebFaceFound) -> None:
        self.web_url = message.url

    def watch_web_url(self) -> None:
        self.render_facts()

    def list_tokens(self) -> None:
        self._listings += 1
        self.read_tokens(self._listings)

    @work(thread=True, group="device-tokens", exit_on_error=False)
    def read_tokens(self, number: int) -> None:
        try:
            names = tuple(t.name for t in TokenAdmin(self.edge.registry).list())
        except (EdgeError, OSError) as exc:  # the admin's line still works: say it, go on
            self.app.call_from_thread(self.edge.error, f"Could not list the tokens: {exc}")
            return
        self.post_message(TokensListed(names, number))

    @on(TokensListed)
    def _tokens_listed(self, message: TokensListed) -> None:
        if message.number == self._listings:  # else a newer listing is on its way
            self.tokens = message.names

    @work(thread=True, exclusive=True, group="device", exit_on_error=False)
    def load(self) -> None:
        try:
            info = device_info(self.edge.datadir)
        except (EdgeError, OSError) as exc:
            self.post_message(DeviceLoaded(None, str(exc)))
            return
        self.post_message(DeviceLoaded(info))

    @on(DeviceLoaded)
    def _loaded(self, message: DeviceLoaded) -> None:
        if message.error is not None:
            self.edge.error(message.error)
            self.query_one("#device-facts", Static).update(
                Text(message.error, style=self.style("error"))
            )
            return
        self.info = message.info

    def data_changed(self) -> None:
        self.render_facts()  # the server's state is shown here
        if self.edge.active_tab() == self.tab_id:
            self.list_tokens()

    def show_requests(self, requests: int | None) -> None:
        self.requests = requests

    # ---- painting ----------------------------------------------------------------------------

    def watch_info(self) -> None:
        self.repaint()

    def watch_revealed(self) -> None:
        self.render_facts()

    def watch_requests(self) -> None:
        self.render_facts()

    def watch_tokens(self, names: tuple[str, ...]) -> None:
        choice = self.query_one("#login-as", Select)
        with choice.prevent(Select.Changed):
            choice.set_options([("admin", ADMIN), *((f"token {n}", n) for n in names)])
            choice.value = self.login_as if self.login_as in names else ADMIN
        if self.login_as not in names:
            self.login_as = ADMIN

    def watch_login_as(self, login_as: str) -> None:
        choice = self.query_one("#login-as", Select)
        if choice.value != login_as:
            with choice.prevent(Select.Changed):
                choice.value = login_as
        self.render_snippets()

    def watch_client_os(self, client_os: ClientOS) -> None:
        self.query_one(f"#os-{client_os}", RadioButton).value = True
        self.render_snippets()

    def repaint(self) -> None:
        self.render_facts()
        self.render_snippets()

    def render_facts(self) -> None:
        info = self.info
        if info is None:
            return
        status = self.edge.server_status
        grid = Table.grid(padding=(0, 2), expand=False)
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(no_wrap=True)
        password = info.password if self.revealed else MASK
        server_style = self.style(ROLES[status.mode], bold=status.mode == "down")
        requests = "-" if self.requests is None else f"{self.requests:,}"
        grid.add_row("Device name", info.device_name, "DNS domain", info.dns_domain)
        grid.add_row("Endpoint", info.endpoint, "Node IP", info.node_ip)
        grid.add_row("Listen", info.listen, "TLS", "on" if self.edge.config.tls else "OFF")
        grid.add_row("Username", info.username, "Password", password + "  (v, p)")
        grid.add_row("Server", Text(status.describe(), style=server_style), "Requests", requests)
        if self.web_url is not None:
            grid.add_row("In a browser", self.web_url, "", "")
        self.query_one("#device-facts", Static).update(grid)

    def render_snippets(self) -> None:
        info = self.info
        if info is None:
            return
        client_os = self.client_os
        path = hosts_file_path(client_os)
        self.query_one("#hosts-heading", Static).update(
            f"Hosts entry for {OS_LABELS[client_os]}: add this line to {path}"
        )
        how = "PowerShell as administrator" if client_os == "windows" else "a shell (sudo)"
        self.query_one("#snippet-hosts", Snippet).set_text(
            f"Hosts line ({path})", hosts_line(info), what="hosts line"
        )
        self.query_one("#snippet-hosts-add", Snippet).set_text(
            f"Command that adds it, in {how}", hosts_add_command(info, client_os),
            what="hosts command",
        )
        container = self.query_one("#setup-list", Vertical)
        container.remove_children()
        widgets: list[Snippet] = []
        for snippet in setup_snippets(info, client_os, self.login_as):
            widget = Snippet(snippet.title, snippet.text)
            if "docker login" in snippet.text:
                widget.what = "docker login line"
            widget.add_class("setup-snippet")
            widgets.append(widget)
        container.mount_all(widgets)

    # ---- actions -----------------------------------------------------------------------------

    @on(RadioSet.Changed, "#client-os")
    def _os_chosen(self, event: RadioSet.Changed) -> None:
        chosen = (event.pressed.id or "os-windows").removeprefix("os-")
        for client_os in CLIENT_OSES:
            if client_os == chosen:
                self.client_os = client_os

    @on(Select.Changed, "#login-as")
    def _login_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.login_as = event.value

    def set_login_as(self, login_as: str) -> None:
        self.login_as = login_as

    def action_next_os(self) -> None:
        position = CLIENT_OSES.index(self.client_os)
        self.client_os = CLIENT_OSES[(position + 1) % len(CLIENT_OSES)]

    def set_client_os(self, client_os: ClientOS) -> None:
        self.client_os = client_os

    @on(Snippet.CopyRequested)
    def _copy_snippet(self, message: Snippet.CopyRequested) -> None:
        self.edge.copy_text(message.snippet.what, message.snippet.text)

    def action_copy_hosts(self) -> None:
        if self.info is not None:
            self.edge.copy_text("hosts line", hosts_line(self.info))

    def action_copy_add_command(self) -> None:
        if self.info is not None:
            self.edge.copy_text("hosts command", hosts_add_command(self.info, self.client_os))

    def login_line(self) -> str | None:
        if self.info is None:
            return None
        for snippet in setup_snippets(self.info, self.client_os, self.login_as):
            if "docker login" in snippet.text:
                return snippet.text
        return None

    def action_copy_login(self) -> None:
        line = self.login_line()
        if line is not None:
            self.edge.copy_text("docker login line", line)

    def action_copy_password(self) -> None:
        if self.info is None:
            return
        self.app.copy_to_clipboard(self.info.password)
        self.edge.notify("The password is on the clipboard.", title="Copied password",
                         timeout=4)

    def action_reveal(self) -> None:
        self.revealed = not self.revealed

    def commands(self) -> list[Command]:
        return [
            *(Command(f"Client OS: {OS_LABELS[client_os]}", "Device",
                      partial(self.set_client_os, client_os))
              for client_os in CLIENT_OSES),
            Command("Log in as: admin", "Device: the login line",
                    partial(self.set_login_as, ADMIN)),
            *(Command(f"Log in as: token {name}", "Device: the login line",
                      partial(self.set_login_as, name))
              for name in self.tokens),
        ]
