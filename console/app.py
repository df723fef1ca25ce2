"""The Edge Console: a Textual app over one registry data directory.

The app is built around an injected back end: a `RegistryService` (the registry served in
this process, started by a worker once the UI is up) or a bare `Registry` (attached to the
server of another process, or with no server at all). Every blocking call runs in a thread
worker that ends by posting a message; the UI loop only paints.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.css.query import NoMatches
from textual.dom import DOMNode
from textual.message import Message
from textual.widgets import Footer, TabbedContent, TabPane
from textual.worker import get_current_worker

from console.context import Command, ConsoleContext
from console.keys import help_lines, palette_actions
from console.screens.access import AccessView
from console.screens.base import View
from console.screens.certificates import CertificatesView
from console.screens.cluster import ClusterView
from console.screens.device import DeviceView
from console.screens.gc import GCView
from console.screens.help import HelpScreen, HelpSection
from console.screens.images import ImagesView
from console.screens.storage import StorageView
from console.screens.sync import SyncView
from console.widgets.cluster_link import ClusterLink
from console.widgets.status import DiskStatus, ServerStatus, StatusHeader
from registry_core.config import Config
from registry_core.datadir import DataDir
from registry_core.errors import EdgeError
from registry_core.gc import GarbageCollector
from registry_core.kube import Cluster, KeeperState
from registry_core.registry import Registry
from registry_core.service import RegistryService

TABS: tuple[tuple[str, str], ...] = (
    ("device", "1 Device"),
    ("certificates", "2 Certificates"),
    ("images", "3 Images"),
    ("storage", "4 Storage"),
    ("gc", "5 Garbage collection"),
    ("cluster", "6 Cluster"),
    ("sync", "7 Sync"),
    ("access", "8 Access"),
)

SCREENS_GROUP = Binding.Group("go to")
POLL_INTERVAL = 1.0
GC_WORKER_GROUPS = frozenset({"gc-run", "gc-preview"})
QUIT_WAIT = 1.5
"""Seconds quitting waits for a cancelled garbage collection to stop (between two batches)."""
LIGHT_THEME = "textual-light"
DARK_THEME = "textual-dark"


class ServerChanged(Message):
    """The in-process server started, failed to start, or stopped."""

    def __init__(self, status: ServerStatus) -> None:
        super().__init__()
        self.status = status


class Polled(Message):
    """Once a second: request count, disk, and whether the registry's content changed."""

    def __init__(self, requests: int | None, disk: DiskStatus | None, changed: bool) -> None:
        super().__init__()
        self.requests = requests
        self.disk = disk
        self.changed = changed


class ConsoleCommands(Provider):
    """The command palette: every action of every screen, by name."""

    def _commands(self) -> list[Command]:
        app = self.app
        assert isinstance(app, EdgeConsoleApp)
        return app.all_commands()

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.title, command.callback, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.title)
            if score > 0:
                yield Hit(score, matcher.highlight(command.title), command.callback,
                          help=command.help)


class EdgeConsoleApp(App[None]):
    """The console. Give it a service (served here) or a registry (attached / no server)."""

    CSS_PATH = "edge_console.tcss"
    TITLE = "Edge Console"
    COMMANDS: ClassVar[set[Any]] = App.COMMANDS | {ConsoleCommands}
    ENABLE_COMMAND_PALETTE = True
    AUTO_FOCUS = None

    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(title[0], f"show_tab('{tab}')", title[2:], show=False, id=f"app.tab.{tab}",
                    group=SCREENS_GROUP)
            for tab, title in TABS
        ),
        Binding("tab", "app.focus_next", "Next field", show=False, id="app.next_field",
                tooltip="move between the fields of a screen (shift+tab: back)"),
        Binding("r", "reload", "Reload", id="app.reload", tooltip="reload this screen"),
        Binding("slash", "filter", "Filter", id="app.filter",
                tooltip="filter the list as you type; enter keeps the filter, esc clears it"),
        Binding("ctrl+p", "command_palette", "Palette", show=False, id="app.palette",
                tooltip="command palette: every action by name"),
        Binding("question_mark", "help", "Help", id="app.help",
                tooltip="this help: the keys of the screen shown"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False, id="app.theme",
                tooltip="light or dark theme"),
        Binding("q", "quit", "Quit", id="app.quit",
                tooltip="quit (a garbage collection or sync in progress is cancelled)"),
    ]

    def __init__(
        self,
        service: RegistryService | None = None,
        *,
        registry: Registry | None = None,
        datadir: DataDir | None = None,
        serve: bool = True,
        listen: str | None = None,
        attached: dict[str, Any] | None = None,
        collector: GarbageCollector | None = None,
        clock: Callable[[], float] = time.time,
        downloads_dir: Path | None = None,
        poll: bool = True,
    ) -> None:
        super().__init__()
        if service is None and registry is None:
            raise ValueError("EdgeConsoleApp needs a RegistryService or a Registry")
        self.service = service
        self.registry: Registry = service.registry if service is not None else registry  # type: ignore[assignment]
        self.datadir: DataDir = datadir or self.registry.datadir
        self.attached = attached
        self.clock = clock
        self.downloads_dir = downloads_dir
        self._serve = serve and service is not None and attached is None
        self._listen = listen
        self._poll = poll
        self._collector = collector
        self.server_status = self._initial_status()
        self.requests: int | None = None
        self.cluster_link = ClusterLink(partial(Cluster.open, self.registry))

    # ---- back end ----------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self.registry.config

    @property
    def collector(self) -> GarbageCollector:
        """The service's collector when it has one, else one made for this registry."""
        if self._collector is None:
            found = getattr(self.service, "collector", None) if self.service else None
            self._collector = (
                found if isinstance(found, GarbageCollector) else GarbageCollector(self.registry)
            )
        return self._collector

    @property
    def scheduler(self) -> Any:
        """The service's GC scheduler, if this process runs one."""
        return getattr(self.service, "scheduler", None) if self.service is not None else None

    def cluster(self) -> Cluster:
        """The cluster as config.toml, KUBECONFIG or ~/.kube/config name it, opened on first
        use (blocking: workers only); ClusterError when there is none to talk to."""
        return self.cluster_link.get()

    def secret_keeper_state(self) -> KeeperState | None:
        keeper = self.service.secret_keeper if self.service is not None else None
        return keeper.state if keeper is not None else None

    def _initial_status(self) -> ServerStatus:
        listen = self._listen or self.config.listen_address
        if self.attached is not None:
            return ServerStatus(
                "attached",
                address=str(self.attached.get("listen", "?")),
                detail=f"pid {self.attached.get('pid', '?')}",
            )
        if self._serve:
            return ServerStatus("starting", address=listen)
        server = getattr(self.service, "server", None)
        if server is not None and server.running:
            return ServerStatus("serving", address=str(server.listen))
        return ServerStatus("stopped", address=listen)

    # ---- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        header = StatusHeader(id="status")
        header.endpoint = self.config.endpoint
        header.server = self.server_status
        yield header
        with TabbedContent(id="tabs", initial="device"):
            with TabPane(TABS[0][1], id="device"):
                yield DeviceView(id="device-view")
            with TabPane(TABS[1][1], id="certificates"):
                yield CertificatesView(id="certificates-view")
            with TabPane(TABS[2][1], id="images"):
                yield ImagesView(id="images-view")
            with TabPane(TABS[3][1], id="storage"):
                yield StorageView(id="storage-view")
            with TabPane(TABS[4][1], id="gc"):
                yield GCView(id="gc-view")
            with TabPane(TABS[5][1], id="cluster"):
                yield ClusterView(id="cluster-view")
            with TabPane(TABS[6][1], id="sync"):
                yield SyncView(id="sync-view")
            with TabPane(TABS[7][1], id="access"):
                yield AccessView(id="access-view")
        yield Footer()

    def on_mount(self) -> None:
        if self._serve:
            self.start_server()
        if self._poll:
            self.poll_registry()
        self.current_view().focus_main()

    def context(self) -> ConsoleContext:
        """This app as its views see it (mypy checks that it provides the whole context)."""
        return self

    def views(self) -> list[View]:
        return list(self.query(View))

    def current_view(self) -> View:
        tabs = self.query_one("#tabs", TabbedContent)
        return self.query_one(f"#{tabs.active}-view", View)

    def active_tab(self) -> str:
        return self.query_one("#tabs", TabbedContent).active

    def view(self, tab: str) -> View:
        return self.query_one(f"#{tab}-view", View)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        view = self.current_view()
        view.shown()
        self.refresh_bindings()  # `/` exists only on panes with a list
        if self.focused is not None and view in self.focused.ancestors_with_self:
            return
        self.call_after_refresh(view.focus_main)

    # ---- server and polling ------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="server", exit_on_error=False)
    def start_server(self) -> None:
        """Start the in-process server; a busy port is reported, the console stays usable."""
        assert self.service is not None
        listen = self._listen or self.config.listen_address
        try:
            address = self.service.start(self._listen)
        except (EdgeError, OSError) as exc:
            self.post_message(ServerChanged(ServerStatus("down", address=listen, detail=str(exc))))
            return
        self.post_message(ServerChanged(ServerStatus("serving", address=str(address))))

    @on(ServerChanged)
    def _server_changed(self, message: ServerChanged) -> None:
        self.server_status = message.status
        self.query_one(StatusHeader).server = message.status
        if message.status.mode == "down":
            self.notify(
                f"Registry not served: {message.status.detail}. Browsing the data dir only.",
                severity="error",
                timeout=15,
            )
        for view in self.views():
            view.data_changed()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def poll_registry(self) -> None:
        """Once a second: has anything committed (a push, a delete, a GC)? How full is the
        disk? One long-lived thread, so one database connection."""
        worker = get_current_worker()
        last_version: int | None = None
        last_used: int | None = None
        while not worker.is_cancelled:
            changed = False
            disk: DiskStatus | None = None
            try:
                version = self.registry.change_counter()
                used = self.registry.used_bytes()
                changed = last_version is not None and (
                    version != last_version or used != last_used
                )
                last_version, last_used = version, used
                cap = self.registry.capacity()
                disk = DiskStatus(cap.capacity_bytes, cap.free_bytes, cap.reserve_bytes)
            except (EdgeError, OSError) as exc:  # a locked or vanished database: try again
                self.log.warning(f"poll: {exc}")
            requests = self.service.app.stats.requests if self.service is not None else None
            self.post_message(Polled(requests, disk, changed))
            deadline = time.monotonic() + POLL_INTERVAL
            while not worker.is_cancelled and time.monotonic() < deadline:
                time.sleep(0.05)

    @on(Polled)
    def _polled(self, message: Polled) -> None:
        header = self.query_one(StatusHeader)
        if message.disk is not None:
            header.disk = message.disk
        if message.requests != self.requests:
            self.requests = message.requests
            self.query_one(DeviceView).show_requests(message.requests)
        if message.changed:
            self.content_changed()

    def content_changed(self) -> None:
        """Tell every pane that the registry's content changed."""
        for view in self.views():
            view.data_changed()

    # ---- actions -----------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        if tabs.active != tab:
            # Drop the focus first: a focused widget in the pane being hidden would otherwise
            # pass it on to its neighbour after we focus the new pane.
            self.screen.set_focus(None)
            tabs.active = tab
        self.call_after_refresh(self.view(tab).focus_main)

    def action_help(self) -> None:
        view = self.current_view()
        self.push_screen(HelpScreen([
            HelpSection("Keys", help_lines(self.BINDINGS)),
            HelpSection(view.tab_title, help_lines(view.help_bindings()), view.help_notes),
        ]))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":
            with contextlib.suppress(NoMatches):
                return self.current_view().can_filter
        return True

    def action_filter(self) -> None:
        self.current_view().start_filter()

    def action_reload(self) -> None:
        self.current_view().reload()

    async def action_quit(self) -> None:
        """Quit; a garbage collection started here is cancelled first and waited for (it stops
        between two batches), so that the process does not outlive the window."""
        await self.stop_gc()
        self.exit()

    async def stop_gc(self) -> None:
        running = [w for w in self.workers if w.group in GC_WORKER_GROUPS and w.is_running]
        if not running or self._collector is None:
            return
        self._collector.cancel_local()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.workers.wait_for_complete(running), QUIT_WAIT)

    def on_unmount(self) -> None:
        """The collector's heartbeat thread ends with the app (closing twice is harmless: the
        service closes its own again); so does the connection to the cluster (a call still
        in progress is not waited for)."""
        if self._collector is not None:
            self._collector.close()
        self.cluster_link.close()

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT_THEME if self.current_theme.dark else DARK_THEME

    def copy_text(self, what: str, text: str) -> None:
        """Copy to the clipboard (OSC 52) and say what was copied; the text stays on screen."""
        self.copy_to_clipboard(text)
        first = text.splitlines()[0] if text else ""
        more = " …" if "\n" in text else ""
        self.notify(f"{first}{more}", title=f"Copied {what}", timeout=4, markup=False)

    def error(self, text: str) -> None:
        """One precise line, as an error toast."""
        self.notify(text, severity="error", timeout=10, markup=False)

    # ---- command palette ---------------------------------------------------------------------

    def all_commands(self) -> list[Command]:
        """Every key of the app and of every pane, by what it does, then the extra commands."""
        commands = [
            Command(action.title, f"key {action.keys}",
                    partial(self.call_later, self.run_action, action.action))
            for action in palette_actions(self.BINDINGS)
            if action.action != "command_palette"
        ]
        for tab, _title in TABS:
            view = self.view(tab)
            for action, owner in view.palette_actions():
                commands.append(
                    Command(
                        f"{view.tab_title}: {action.title}",
                        f"{view.tab_title}, key {action.keys}",
                        partial(self._run_on_tab, tab, action.action, owner),
                    )
                )
            for command in view.commands():
                commands.append(Command(command.title, command.help,
                                        partial(self._call_on_tab, tab, command.callback)))
        return commands

    def _run_on_tab(self, tab: str, action: str, owner: DOMNode) -> None:
        self.action_show_tab(tab)
        self.call_after_refresh(self.run_action, action, owner)

    def _call_on_tab(self, tab: str, callback: Callable[[], object]) -> None:
        self.action_show_tab(tab)
        self.call_after_refresh(callback)

    def get_system_commands(self, screen: Any) -> Iterable[Any]:
        yield from super().get_system_commands(screen)
