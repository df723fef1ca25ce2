"""Sync: the connected registry's link to its parent (endpoint, mode, state, schedule,
window, next run), a sync now with its live progress and a cancel, the run history, and the
staged images (their table and keys are console/screens/sync_staging.py's, mixed in).

A run (a sync, or the pull of a stage) blocks for as long as the uplink needs, so it runs in a
worker through `abandonable`: quitting cancels it (it stops at the next blob boundary) and
never waits for it. A data dir has one run at a time: this pane's is `busy`, `live` and
`_runner`, which a stage's pull claims through the hooks `run_started`, `open_uplink` and
`run_ended`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, cast

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Button, DataTable, Static

from console.screens.base import View
from console.screens.sync_staging import STAGING_BINDINGS, STAGING_HELP, StagingMixin
from console.theme import Role
from console.widgets.cluster_link import Abandoned, abandonable
from console.widgets.format import ago, duration, size, when
from registry_core.errors import EdgeError, SyncInProgressError
from registry_core.events import (
    RepositoryProgress,
    Subscription,
    SyncEvent,
    SyncFinished,
    SyncProgress,
    SyncStarted,
)
from registry_core.store.stages import StageItem
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.progress import from_details
from registry_core.sync.runner import SyncRunner, open_runner
from registry_core.sync.settings import load_settings
from registry_core.sync.status import SyncStatus, read_status

HISTORY_LIMIT = 50
NOT_CONFIGURED = (
    "Not configured: run `edge-console sync configure --connection-string-file F` "
    "(--parent-ca PEM for a parent with a private CA)."
)
STATE_ROLES: dict[str, Role] = {
    "Online": "success",
    "Syncing": "primary",
    "Offline": "warning",
    "Unhealthy": "error",
    "NotConfigured": "muted",
}
RUN_ROLES: dict[str, Role] = {
    "succeeded": "success",
    "running": "primary",
    "stopped": "secondary",
    "cancelled": "secondary",
    "failed": "error",
}
REPOSITORY_COLUMNS = (
    ("Repository", "repository"), ("State", "state"), ("Tags", "tags"),
    ("Changed", "changed"), ("Manifests", "manifests"), ("Blobs", "blobs"),
    ("Copied", "bytes"), ("Error", "error"),
)
REPOSITORY_ROLES: dict[str, Role] = {
    "waiting": "muted",
    "syncing": "primary",
    "done": "success",
    "failed": "error",
}


@dataclass(frozen=True)
class SyncLive:
    """What the live line shows: a run's progress or outcome, a note, or an error."""

    run_id: int | None = None
    status: str = "running"
    repository: str = ""
    tags_checked: int = 0
    tags_changed: int = 0
    manifests_copied: int = 0
    blobs_copied: int = 0
    bytes_copied: int = 0
    errors: tuple[str, ...] = ()
    elsewhere: bool = False
    """The run belongs to another process (cancelling it goes through its row)."""
    note: str = "No sync in progress."
    error: str = ""
    repositories: tuple[RepositoryProgress, ...] = ()
    """Each repository of the run so far (from its SyncProgress events; kept once it ends)."""
    conflicts: int = 0

    @classmethod
    def from_event(cls, event: SyncEvent, before: SyncLive | None = None) -> SyncLive:
        """The run as `event` tells it; the repositories `before` knew of the same run stay
        until an event names them again (SyncStarted and SyncFinished carry none)."""
        status, errors = "running", cast("tuple[str, ...]", ())
        if isinstance(event, SyncFinished):
            status, errors = event.status, event.errors
        repositories = event.repositories if isinstance(event, SyncProgress) else ()
        if not repositories and before is not None and before.run_id == event.run_id:
            repositories = before.repositories
        return cls(
            event.run_id, status, event.repository, event.tags_checked, event.tags_changed,
            event.manifests_copied, event.blobs_copied, event.bytes_copied, errors,
            repositories=repositories,
        )

    @classmethod
    def from_record(cls, record: SyncRunRecord, *, elsewhere: bool = False,
                    before: SyncLive | None = None) -> SyncLive:
        same = before is not None and before.run_id == record.id
        repositories = from_details(record.details)  # saved on each heartbeat
        if not repositories and same and before is not None:
            repositories = before.repositories
        return cls(
            record.id, record.status, "", int(record.details.get("tags_checked", 0)),
            int(record.details.get("tags_changed", 0)), record.manifests_copied,
            record.blobs_copied, record.bytes_copied, tuple(record.errors), elsewhere,
            repositories=repositories, conflicts=len(record.conflicts),
        )

    @property
    def running(self) -> bool:
        return self.run_id is not None and self.status == "running"


@dataclass(frozen=True)
class SyncPicture:
    """What the pane read from the data dir: the status, the runs, the staged images."""

    status: SyncStatus | None
    history: list[SyncRunRecord]
    stages: list[StageItem]
    error: str = ""


class SyncLoaded(Message):
    def __init__(self, picture: SyncPicture, number: int) -> None:
        super().__init__()
        self.picture = picture
        self.number = number


class SyncEventArrived(Message):
    """An event of a sync run in this process (posted from the run's thread)."""

    def __init__(self, event: SyncEvent) -> None:
        super().__init__()
        self.event = event


class SyncRunDone(Message):
    def __init__(self, record: SyncRunRecord | None, error: str = "") -> None:
        super().__init__()
        self.record = record
        self.error = error


def read_picture(view: SyncView) -> SyncPicture:
    """The status, history and staged images (blocking: a worker's call)."""
    edge = view.edge
    store = edge.registry.store
    try:
        status = read_status(edge.datadir, store, now=edge.clock())
        history = store.sync_runs.recent(HISTORY_LIMIT)
        stages = store.stages.items()
    except (EdgeError, OSError) as exc:
        return SyncPicture(None, [], [], f"Could not read the sync state: {exc}")
    return SyncPicture(status, history, stages)


def run_once(runner: SyncRunner) -> SyncRunRecord:
    """One manual pass, whatever the window (the technician asked for it now)."""
    try:
        return runner.run(trigger="manual")
    finally:
        runner.close()


def pushed_note(record: SyncRunRecord) -> str:
    """ReadWrite: what went up, for the end-of-run toast ("" when nothing did)."""
    if not record.manifests_pushed:
        return ""
    details = record.details
    return (f"; {record.manifests_pushed:,} manifests pushed up "
            f"({int(details.get('blobs_uploaded', 0)):,} blobs uploaded, "
            f"{size(int(details.get('bytes_uploaded', 0)))}; "
            f"{int(details.get('blobs_mounted', 0)):,} mounted)")


def conflicts_note(record: SyncRunRecord) -> str:
    """ReadWrite tags changed on both sides (moved, or deleted on the parent), for the
    end-of-run toast ("" when none); `edge-console sync status` names each."""
    if not record.conflicts:
        return ""
    return (f"; {plural(len(record.conflicts), 'conflict')} with the parent (a tag changed on "
            "both sides)")


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


class SyncView(StagingMixin, View):
    tab_id = "sync"
    tab_title = "Sync"
    help_notes = (
        "A sync copies from the parent what changed in the configured repositories; it\n"
        "deletes nothing, so it starts without asking. A run in another process (the\n"
        "serving registry's schedule) shows here too and can be cancelled the same way.\n"
        + STAGING_HELP
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "sync_now", "Sync now", id="sync.run",
                tooltip="sync now: pull what changed on the parent (copies, deletes nothing)"),
        Binding("x", "cancel", "Cancel run", id="sync.cancel",
                tooltip="cancel the sync in progress (it stops at the next blob boundary)"),
        *STAGING_BINDINGS,
    ]

    DEFAULT_CSS = """
    #sync-repositories {
        height: auto;
        max-height: 12;
        margin-top: 1;
    }
    """

    picture: reactive[SyncPicture | None] = reactive(None, init=False)
    """None until the data dir was first read."""
    busy: reactive[bool] = reactive(False, init=False)
    """This pane started a run that has not ended yet."""
    live: reactive[SyncLive] = reactive(SyncLive(), init=False)

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._events: Subscription[SyncEvent] | None = None
        self._runner: SyncRunner | None = None
        self._reads = 0
        """Reads of the data dir asked for; only the newest one's answer is shown."""
        self._repositories_shown: tuple[RepositoryProgress, ...] | None = None
        """What the per-repository table shows (None: unknown, repaint it whole)."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="sync-scroll"):
            with Horizontal(id="sync-actions"):
                yield Button("Sync now", id="sync-run", variant="primary", compact=True)
                yield Button("Cancel", id="sync-cancel", variant="error", disabled=True,
                             compact=True)
            yield Static("Reading the sync settings…", id="sync-connection")
            yield Static("No sync in progress.", id="sync-live")
            repositories: DataTable[str | Text] = DataTable(
                id="sync-repositories", cursor_type="none", zebra_stripes=False)
            repositories.display = False  # shown once a run names its repositories
            yield repositories
            yield Static("Run history", classes="section")
            history: DataTable[str | Text] = DataTable(id="sync-history", cursor_type="row")
            yield history
            yield from self.compose_staging()

    @property
    def history_table(self) -> DataTable[str | Text]:
        return cast("DataTable[str | Text]", self.query_one("#sync-history", DataTable))

    @property
    def repositories_table(self) -> DataTable[str | Text]:
        return cast("DataTable[str | Text]", self.query_one("#sync-repositories", DataTable))

    def main_widget(self) -> Widget | None:
        return self.query_one("#sync-run", Button)

    def on_mount(self) -> None:
        super().on_mount()
        history = self.history_table
        for label, key in (("#", "id"), ("Trigger", "trigger"), ("Status", "status"),
                           ("Started", "started"), ("Duration", "duration"),
                           ("Tags changed", "tags"), ("Manifests", "manifests"),
                           ("Blobs", "blobs"), ("Copied", "bytes"), ("Errors", "errors")):
            history.add_column(label, key=key)
        repositories = self.repositories_table
        for label, key in REPOSITORY_COLUMNS:
            repositories.add_column(label, key=key)
        self.add_stage_columns()
        self._events = self.edge.registry.events.subscribe(self._event, SyncEvent)
        self.load()

    def on_unmount(self) -> None:
        if self._events is not None:
            self._events.close()
        if self._runner is not None:
            self._runner.cancel.set()  # the app is closing: stop at the next blob boundary

    def _event(self, event: SyncEvent) -> None:
        """In the run's thread: hand the event to the UI loop."""
        self.post_message(SyncEventArrived(event))

    def reload(self) -> None:
        self.load()

    # ---- state -------------------------------------------------------------------------------

    def load(self) -> None:
        self._reads += 1
        self.read(self._reads)

    @work(thread=True, exclusive=True, group="sync-state", exit_on_error=False)
    def read(self, number: int) -> None:
        self.post_message(SyncLoaded(read_picture(self), number))

    @on(SyncLoaded)
    def _loaded(self, message: SyncLoaded) -> None:
        if message.number != self._reads:
            return  # an older read, overtaken (a cancelled thread worker still posts)
        picture = message.picture
        self.picture = picture
        if not self.busy:
            self.follow(picture.status.running if picture.status is not None else None)

    def follow(self, running: SyncRunRecord | None) -> None:
        """Show the running run this pane did not start: one of this process is followed by
        its events, one of another process by its row (read again on each load)."""
        live = self.live
        heard = live.running and not live.elsewhere
        if running is not None and not (heard and live.run_id == running.id):
            self.live = SyncLive.from_record(running, elsewhere=True)
        elif running is None and live.running and live.elsewhere:
            self.live = SyncLive(note="No sync in progress.")

    def repaint(self) -> None:
        self._repositories_shown = None  # the theme changed: every row again
        self.watch_picture()
        self.watch_live()

    def watch_picture(self) -> None:
        picture = self.picture
        if picture is None:
            return
        panel = self.query_one("#sync-connection", Static)
        if picture.error:
            panel.update(Text(picture.error, style=self.style("error")))
        elif picture.status is not None:
            panel.update(self.connection_text(picture.status))
        self.fill_history(picture.history)
        self.fill_stages(picture.stages)

    def watch_busy(self) -> None:
        self.watch_live()

    def watch_live(self) -> None:
        live = self.live
        self.query_one("#sync-cancel", Button).disabled = not (self.busy or live.running)
        widget = self.query_one("#sync-live", Static)
        if live.error:
            widget.update(Text(live.error, style=self.style("error")))
        elif live.run_id is None:
            widget.update(live.note)
        else:
            widget.update(self.live_text(live))
        self.fill_repositories(live.repositories if live.run_id is not None else ())

    # ---- painting ----------------------------------------------------------------------------

    def connection_text(self, status: SyncStatus) -> Text:
        text = Text()
        settings = status.settings

        def line(label: str, *parts: str | tuple[str, Style]) -> None:
            if text:
                text.append("\n")
            text.append(f"{label:<11}", style="bold")
            for part in parts:
                text.append(*(part if isinstance(part, tuple) else (part,)))

        line("State", (status.state, self.role_style(STATE_ROLES, status.state, bold=True)))
        if settings is None:
            text.append("\n")
            text.append(NOT_CONFIGURED, style=self.style("warning"))
            return text
        connection = settings.connection
        line("Parent", f"{connection.protocol}://{connection.parent_endpoint}",
             (f"  as {connection.name}", self.style("muted")))
        scope = ", ".join(settings.repositories) or "none"
        tags = ", ".join(settings.tag_filters) or "all"
        line("Mode", settings.mode, (f"  repositories: {scope} · tags: {tags}",
                                      self.style("muted")))
        now = self.edge.clock()
        last = "never" if status.last_sync is None else (
            f"{when(status.last_sync)} ({ago(status.last_sync, now)})")
        line("Last sync", last)
        cron = settings.schedule.cron + (" (continuously)" if settings.schedule.continuous
                                         else "")
        line("Schedule", cron, f" · window {settings.window}, {self.window_text(status)}")
        if not settings.enabled:
            line("Next run", ("none (sync disabled)", self.style("muted")))
        else:
            line("Next run", when(status.next_run) if status.next_run is not None else "-")
        return text

    @staticmethod
    def window_text(status: SyncStatus) -> str:
        if status.window_end is None:
            return "closed now"
        if status.window_end == float("inf"):
            return "always open"
        return f"open until {when(status.window_end)}"

    def live_text(self, live: SyncLive) -> Text:
        assert live.run_id is not None
        text = Text()
        text.append(f"Run #{live.run_id} ", style="bold")
        text.append(live.status, style=self.role_style(RUN_ROLES, live.status, bold=True))
        if live.elsewhere and live.running:
            text.append(" (in another process)", style=self.style("muted"))
        if live.repository:
            text.append(f" · {live.repository}")
        text.append(
            f"\ntags {live.tags_checked:,} checked, {live.tags_changed:,} changed · manifests "
            f"{live.manifests_copied:,} · blobs {live.blobs_copied:,} · "
        )
        text.append(size(live.bytes_copied), style=self.style("success", bold=True))
        if live.conflicts:
            text.append(f" · {plural(live.conflicts, 'conflict')} with the parent",
                        style=self.style("warning", bold=True))
        if live.errors:
            more = f" (and {len(live.errors) - 1} more)" if len(live.errors) > 1 else ""
            text.append(f"\n{live.errors[0]}{more}", style=self.style("error"))
        return text

    def fill_repositories(self, repositories: tuple[RepositoryProgress, ...]) -> None:
        """One row a repository of the run shown, in the order they began; a row changes in
        place (events come a few a second, for as many repositories as the scope holds)."""
        table = self.repositories_table
        table.display = bool(repositories)
        shown = self._repositories_shown
        self._repositories_shown = repositories
        names = [r.repository for r in repositories]
        if shown is None or [r.repository for r in shown] != names[:len(shown)]:
            table.clear()
            shown = ()
        for index, repository in enumerate(repositories):
            cells = self.repository_cells(repository)
            if index >= len(shown):
                table.add_row(repository.repository, *cells, key=repository.repository)
            elif shown[index] != repository:
                for column, cell in zip(REPOSITORY_COLUMNS[1:], cells, strict=True):
                    table.update_cell(repository.repository, column[1], cell)

    def repository_cells(self, repository: RepositoryProgress) -> tuple[str | Text, ...]:
        total = f"/{repository.tags_total:,}" if repository.tags_total else ""
        return (
            Text(repository.state, style=self.role_style(REPOSITORY_ROLES, repository.state)),
            f"{repository.tags_checked:,}{total}", f"{repository.tags_changed:,}",
            f"{repository.manifests_copied:,}", f"{repository.blobs_copied:,}",
            size(repository.bytes_copied), Text(repository.error, style=self.style("error")),
        )

    def fill_history(self, history: list[SyncRunRecord]) -> None:
        table = self.history_table
        table.clear()
        for record in history:
            status = Text(record.status, style=self.role_style(RUN_ROLES, record.status))
            if record.conflicts:  # it may have succeeded, but a tag changed on both sides
                status.append(f" · {plural(len(record.conflicts), 'conflict')}",
                              style=self.style("warning"))
            errors = Text(str(len(record.errors)), style=self.style("error")) \
                if record.errors else Text("0")
            table.add_row(
                str(record.id), record.trigger, status, when(record.started_at),
                duration(record.duration_seconds if record.finished_at else None),
                str(record.details.get("tags_changed", "-")), f"{record.manifests_copied:,}",
                f"{record.blobs_copied:,}", size(record.bytes_copied), errors,
                key=str(record.id),
            )

    # ---- running -----------------------------------------------------------------------------

    # The hooks StagingMixin asks for, up to run_ended (a sync now uses them too).

    def ready_to_run(self) -> bool:
        """Sync configured and no run under way; if not, said in a toast."""
        status = self.picture.status if self.picture is not None else None
        if status is None or not status.configured:
            self.edge.notify(NOT_CONFIGURED, severity="warning", markup=False)
            return False
        if self.busy or self.live.running:
            self.edge.notify("A sync is already running.", severity="warning")
            return False
        return True

    def staged_items(self) -> list[StageItem]:
        return self.picture.stages if self.picture is not None else []

    def run_started(self, note: str) -> None:
        self.busy = True
        self.live = SyncLive(note=note)

    def open_uplink(self) -> SyncRunner:
        edge = self.edge
        runner = open_runner(edge.registry, load_settings(edge.datadir))
        self._runner = runner
        return runner

    def run_ended(self, error: str = "") -> None:
        self.busy = False
        self._runner = None
        if error:
            self.edge.error(error)
            self.live = SyncLive(error=error)

    def action_sync_now(self) -> None:
        if not self.ready_to_run():
            return
        self.run_started("Starting…")
        self.run_sync()

    @work(thread=True, exclusive=True, group="sync-run", exit_on_error=False)
    def run_sync(self) -> None:
        try:
            runner = self.open_uplink()
        except EdgeError as exc:
            self.post_message(SyncRunDone(None, f"Not started: {exc}"))
            return
        try:
            record = abandonable(lambda: run_once(runner))
        except Abandoned:  # the app is closing; the run stops by itself (cancel is set)
            return
        except SyncInProgressError as exc:
            self.post_message(SyncRunDone(None, f"Not started: {exc}"))
            return
        except (EdgeError, OSError) as exc:
            self.post_message(SyncRunDone(None, f"Sync failed: {exc}"))
            return
        self.post_message(SyncRunDone(record))

    @on(SyncEventArrived)
    def _event_arrived(self, message: SyncEventArrived) -> None:
        event = message.event
        self.live = SyncLive.from_event(event, self.live)
        if isinstance(event, SyncStarted | SyncFinished):
            self.load()  # the state (Syncing), the history

    @on(SyncRunDone)
    def _run_done(self, message: SyncRunDone) -> None:
        self.run_ended(message.error)
        if message.error:
            self.load()
            return
        record = message.record
        if record is None:
            return
        self.live = SyncLive.from_record(record, before=self.live)
        clean = record.status == "succeeded" and not record.conflicts
        severity: SeverityLevel = "information" if clean else "warning"
        if record.status == "failed":
            severity = "error"
        self.edge.notify(
            f"Run #{record.id} {record.status}: {record.manifests_copied:,} manifests, "
            f"{record.blobs_copied:,} blobs, {size(record.bytes_copied)} copied"
            f"{pushed_note(record)}{conflicts_note(record)}.",
            title="Sync", severity=severity, timeout=8,
        )
        self.load()
        self.edge.content_changed()

    def action_cancel(self) -> None:
        if self._runner is not None:
            self._runner.cancel.set()
            self.edge.notify("Cancelling: the sync stops at the next blob boundary.")
        elif self.live.running and self.live.run_id is not None:
            self.cancel_elsewhere(self.live.run_id)
        else:
            self.edge.notify("No sync is running.", severity="warning")

    @work(thread=True, group="sync-cancel", exit_on_error=False)
    def cancel_elsewhere(self, run_id: int) -> None:
        """Ask the process that runs it (its heartbeat reads the request)."""
        store = self.edge.registry.store
        try:
            with store.exclusive():
                asked = store.sync_runs.request_cancel(run_id)
        except EdgeError as exc:
            self.app.call_from_thread(self.edge.error, f"Could not cancel: {exc}")
            return
        text = "Cancel asked: the run stops at its next heartbeat." if asked \
            else "That sync has already ended."
        self.app.call_from_thread(self.edge.notify, text)
        self.app.call_from_thread(self.load)

    @on(Button.Pressed, "#sync-run")
    def _run_pressed(self) -> None:
        self.action_sync_now()

    @on(Button.Pressed, "#sync-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()
