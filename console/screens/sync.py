"""Sync: the connected registry's link to its parent (endpoint, mode, state, schedule,
window, next run), a sync now with its live progress and a cancel, the run history, and the
staged images: stage more, check their readiness, release a stage.

A run (a sync, or the pull of a stage) blocks for as long as the uplink needs, so it runs in a
worker through `abandonable`: quitting cancels it (it stops at the next blob boundary) and
never waits for it. While a stage is pulled, its items are read again a few times a second:
each goes pending -> downloading -> verifying -> staged or failed in the store as it moves.
"""

from __future__ import annotations

import time
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
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button, DataTable, Static

from console.screens.base import View
from console.theme import Role
from console.widgets.cluster_link import Abandoned, abandonable
from console.widgets.confirm import ConfirmationModal
from console.widgets.format import ago, duration, short_digest, size, when
from console.widgets.stage_modal import StageModal, StageRequest
from registry_core.errors import EdgeError, SyncInProgressError
from registry_core.events import Subscription, SyncEvent, SyncFinished, SyncStarted
from registry_core.store.stages import StageItem
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync import staging
from registry_core.sync.runner import SyncRunner, open_runner
from registry_core.sync.settings import load_settings
from registry_core.sync.staging import Readiness
from registry_core.sync.status import SyncStatus, read_status

HISTORY_LIMIT = 50
STAGE_POLL_SECONDS = 0.25
"""How often the staged items are read again while this pane pulls a stage."""
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
STAGE_ROLES: dict[str, Role] = {
    "pending": "muted",
    "downloading": "primary",
    "verifying": "primary",
    "staged": "success",
    "failed": "error",
}
READY_ROLES: dict[str, Role] = {
    "ready": "success",
    "unverified": "warning",
    "outdated": "warning",
    "missing": "error",
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

    @classmethod
    def from_event(cls, event: SyncEvent) -> SyncLive:
        status, errors = "running", cast("tuple[str, ...]", ())
        if isinstance(event, SyncFinished):
            status, errors = event.status, event.errors
        return cls(
            event.run_id, status, event.repository, event.tags_checked, event.tags_changed,
            event.manifests_copied, event.blobs_copied, event.bytes_copied, errors,
        )

    @classmethod
    def from_record(cls, record: SyncRunRecord, *, elsewhere: bool = False) -> SyncLive:
        return cls(
            record.id, record.status, "", int(record.details.get("tags_checked", 0)),
            int(record.details.get("tags_changed", 0)), record.manifests_copied,
            record.blobs_copied, record.bytes_copied, tuple(record.errors), elsewhere,
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


class StageDone(Message):
    def __init__(self, record: SyncRunRecord | None, items: list[StageItem],
                 error: str = "") -> None:
        super().__init__()
        self.record = record
        self.items = items
        self.error = error


class ReadinessChecked(Message):
    def __init__(self, results: list[Readiness], parent_note: str) -> None:
        super().__init__()
        self.results = results
        self.parent_note = parent_note
        """Why the parent was not asked ('' when it was)."""


class StageReleased(Message):
    def __init__(self, stage: str, released: int, error: str = "") -> None:
        super().__init__()
        self.stage = stage
        self.released = released
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


def stage_once(view: SyncView, runner: SyncRunner,
               request: StageRequest) -> tuple[SyncRunRecord, list[StageItem]]:
    """Pull and pin the request's images (blocking); the pins' expiry counts from now."""
    expires_at = None if request.expires_in is None else time.time() + request.expires_in
    try:
        return staging.stage(view.edge.registry, runner, request.pairs, request.stage,
                             expires_at)
    finally:
        runner.close()


def check_once(view: SyncView, pairs: list[tuple[str, str]]) -> ReadinessChecked:
    """Each image's readiness (blocking); with no parent to ask, what is here only."""
    registry = view.edge.registry
    try:
        runner: SyncRunner | None = open_runner(registry, load_settings(view.edge.datadir))
    except EdgeError as exc:
        runner, note = None, str(exc)
    else:
        note = ""
    try:
        return ReadinessChecked(staging.check(registry, pairs, runner), note)
    finally:
        if runner is not None:
            runner.close()


def readiness_summary(results: list[Readiness]) -> str:
    """'3 of 4 ready; missing: app/x:1': what the toast says after a check."""
    ready = [r for r in results if r.ok]
    text = f"{len(ready)} of {len(results)} ready"
    for state in ("missing", "outdated"):
        names = [f"{r.repository}:{r.tag}" for r in results if r.state == state]
        if names:
            text += f"; {state}: {', '.join(names)}"
    unverified = sum(r.state == "unverified" for r in results)
    if unverified:
        text += f"; {unverified} here but not confirmed by the parent"
    return text


def images(count: int) -> str:
    return f"{count} image{'' if count == 1 else 's'}"


def release_body(stage: str, items: list[StageItem], at: float) -> str:
    """What releasing the stage takes away, image by image."""
    pinned = [i for i in items if i.pins(at)]
    others = [i for i in items if not i.pins(at)]
    lines = [f"Pins lost: {images(len(pinned))} of the stage {stage}. Deletes of them are no "
             "longer refused, and a garbage collection may collect what nothing else keeps."]
    lines += [f"  {i.repository}:{i.tag}  {short_digest(i.digest)}" for i in pinned]
    if others:
        lines.append(f"\nAlso leaving the list, not staged (they pin nothing): "
                     f"{images(len(others))}.")
        lines += [f"  {i.repository}:{i.tag}  {i.status}" for i in others]
    lines.append("\nThe images themselves stay here; only the pins and the list go.")
    return "\n".join(lines)


class SyncView(View):
    tab_id = "sync"
    tab_title = "Sync"
    help_notes = (
        "A sync copies from the parent what changed in the configured repositories; it\n"
        "deletes nothing, so it starts without asking. A run in another process (the\n"
        "serving registry's schedule) shows here too and can be cancelled the same way.\n"
        "Staging pulls a deployment's images now, whatever the schedule, and pins them: GC\n"
        "and deletes leave them alone until the stage is released (or expires). Each image\n"
        "goes pending, downloading, verifying, then staged or failed (the reason says why).\n"
        "A readiness check fills the Check column: ready (here with the parent's digest),\n"
        "unverified (here; the parent could not confirm), outdated or missing. Release\n"
        "acts on the stage of the row under the cursor and asks first."
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "sync_now", "Sync now", id="sync.run",
                tooltip="sync now: pull what changed on the parent (copies, deletes nothing)"),
        Binding("x", "cancel", "Cancel run", id="sync.cancel",
                tooltip="cancel the sync in progress (it stops at the next blob boundary)"),
        Binding("plus", "stage_images", "Stage", id="sync.stage", key_display="+",
                tooltip="stage images: pull REPO:TAG from the parent now and pin them"),
        Binding("C", "check_readiness", "Check", id="sync.check",
                tooltip="check readiness: is each staged image here with the parent's digest"),
        Binding("R", "release_stage", "Release", id="sync.release",
                tooltip="release the stage under the cursor: its images lose their pin "
                        "(asks first)"),
    ]

    picture: reactive[SyncPicture | None] = reactive(None, init=False)
    """None until the data dir was first read."""
    busy: reactive[bool] = reactive(False, init=False)
    """This pane started a run that has not ended yet."""
    live: reactive[SyncLive] = reactive(SyncLive(), init=False)
    readiness: reactive[dict[tuple[str, str], Readiness]] = reactive(dict, init=False)
    """The last readiness check, by (repository, tag)."""
    checking: reactive[bool] = reactive(False, init=False)

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._events: Subscription[SyncEvent] | None = None
        self._runner: SyncRunner | None = None
        self._staging: Timer | None = None
        """Reads the staged items again while this pane pulls a stage."""
        self._reads = 0
        """Reads of the data dir asked for; only the newest one's answer is shown."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="sync-scroll"):
            with Horizontal(id="sync-actions"):
                yield Button("Sync now", id="sync-run", variant="primary", compact=True)
                yield Button("Cancel", id="sync-cancel", variant="error", disabled=True,
                             compact=True)
            yield Static("Reading the sync settings…", id="sync-connection")
            yield Static("No sync in progress.", id="sync-live")
            yield Static("Run history", classes="section")
            history: DataTable[str | Text] = DataTable(id="sync-history", cursor_type="row")
            yield history
            yield Static("Staged images", classes="section")
            yield Static("", id="sync-stage-note")
            stages: DataTable[str | Text] = DataTable(id="sync-stages", cursor_type="row")
            yield stages

    @property
    def history_table(self) -> DataTable[str | Text]:
        return cast("DataTable[str | Text]", self.query_one("#sync-history", DataTable))

    @property
    def stages_table(self) -> DataTable[str | Text]:
        return cast("DataTable[str | Text]", self.query_one("#sync-stages", DataTable))

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
        stages = self.stages_table
        for label, key in (("Stage", "stage"), ("Image", "image"), ("Status", "status"),
                           ("Check", "check"), ("Digest", "digest"), ("Expires", "expires"),
                           ("Reason", "reason")):
            stages.add_column(label, key=key)
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

    def watch_readiness(self) -> None:
        if self.picture is not None:
            self.fill_stages(self.picture.stages)

    def watch_checking(self) -> None:
        self.watch_readiness()

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

    # ---- painting ----------------------------------------------------------------------------

    def role_style(self, roles: dict[str, Role], value: str, *, bold: bool = False) -> Style:
        role = roles.get(value)
        return self.style(role, bold=bold) if role else Style()

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
        if live.errors:
            more = f" (and {len(live.errors) - 1} more)" if len(live.errors) > 1 else ""
            text.append(f"\n{live.errors[0]}{more}", style=self.style("error"))
        return text

    def fill_history(self, history: list[SyncRunRecord]) -> None:
        table = self.history_table
        table.clear()
        for record in history:
            status = Text(record.status, style=self.role_style(RUN_ROLES, record.status))
            errors = Text(str(len(record.errors)), style=self.style("error")) \
                if record.errors else Text("0")
            table.add_row(
                str(record.id), record.trigger, status, when(record.started_at),
                duration(record.duration_seconds if record.finished_at else None),
                str(record.details.get("tags_changed", "-")), f"{record.manifests_copied:,}",
                f"{record.blobs_copied:,}", size(record.bytes_copied), errors,
                key=str(record.id),
            )

    def fill_stages(self, items: list[StageItem]) -> None:
        note = self.query_one("#sync-stage-note", Static)
        note.update("No staged images (+ to stage some)." if not items else "")
        note.display = not items
        table = self.stages_table
        table.display = bool(items)
        row = table.cursor_row
        table.clear()
        for item in items:
            status = Text(item.status, style=self.role_style(STAGE_ROLES, item.status))
            expires = "when released" if item.expires_at is None else when(item.expires_at)
            check, problem = self.check_cell(item)
            table.add_row(item.stage, f"{item.repository}:{item.tag}", status, check,
                          short_digest(item.digest), expires, item.reason or problem,
                          key=str(item.id))
        if 0 < row < len(items):  # a re-read (while staging) keeps the technician's row
            table.move_cursor(row=row, animate=False)

    def check_cell(self, item: StageItem) -> tuple[Text, str]:
        """The Check column (the last readiness check) and, when not ready, why."""
        if self.checking:
            return Text("checking…", style=self.style("muted")), ""
        result = self.readiness.get((item.repository, item.tag))
        if result is None:
            return Text("-", style=self.style("muted")), ""
        return Text(result.state, style=self.role_style(READY_ROLES, result.state)), \
            "" if result.state == "ready" else result.message

    # ---- running -----------------------------------------------------------------------------

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

    def action_sync_now(self) -> None:
        if not self.ready_to_run():
            return
        self.busy = True
        self.live = SyncLive(note="Starting…")
        self.run_sync()

    @work(thread=True, exclusive=True, group="sync-run", exit_on_error=False)
    def run_sync(self) -> None:
        edge = self.edge
        try:
            runner = open_runner(edge.registry, load_settings(edge.datadir))
        except EdgeError as exc:
            self.post_message(SyncRunDone(None, f"Not started: {exc}"))
            return
        self._runner = runner
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
        self.live = SyncLive.from_event(event)
        if isinstance(event, SyncStarted | SyncFinished):
            self.load()  # the state (Syncing), the history

    @on(SyncRunDone)
    def _run_done(self, message: SyncRunDone) -> None:
        self.busy = False
        self._runner = None
        if message.error:
            self.edge.error(message.error)
            self.live = SyncLive(error=message.error)
            self.load()
            return
        record = message.record
        if record is None:
            return
        self.live = SyncLive.from_record(record)
        severity: SeverityLevel = "information" if record.status == "succeeded" else "warning"
        if record.status == "failed":
            severity = "error"
        self.edge.notify(
            f"Run #{record.id} {record.status}: {record.manifests_copied:,} manifests, "
            f"{record.blobs_copied:,} blobs, {size(record.bytes_copied)} copied.",
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

    # ---- staging -----------------------------------------------------------------------------

    def action_stage_images(self) -> None:
        if not self.ready_to_run():
            return
        chosen = self.chosen_item()

        def decided(request: StageRequest | None) -> None:
            if request is not None and self.ready_to_run():
                self.start_staging(request)

        self.app.push_screen(
            StageModal(chosen.stage if chosen is not None else staging.DEFAULT_STAGE), decided
        )

    def start_staging(self, request: StageRequest) -> None:
        self.busy = True
        self.readiness = {k: v for k, v in self.readiness.items() if k not in request.pairs}
        count = len(request.pairs)
        self.live = SyncLive(note=f"Staging {count} image{'s' if count != 1 else ''} "
                                  f"in {request.stage}…")
        self._staging = self.set_interval(STAGE_POLL_SECONDS, self.load)
        self.run_stage(request)

    @work(thread=True, exclusive=True, group="sync-run", exit_on_error=False)
    def run_stage(self, request: StageRequest) -> None:
        edge = self.edge
        try:
            runner = open_runner(edge.registry, load_settings(edge.datadir))
        except EdgeError as exc:
            self.post_message(StageDone(None, [], f"Not staged: {exc}"))
            return
        self._runner = runner
        try:
            record, items = abandonable(lambda: stage_once(self, runner, request))
        except Abandoned:  # the app is closing; the run stops by itself (cancel is set)
            return
        except SyncInProgressError as exc:
            self.post_message(StageDone(None, [], f"Not staged: {exc}"))
            return
        except (EdgeError, OSError) as exc:
            self.post_message(StageDone(None, [], f"Staging failed: {exc}"))
            return
        self.post_message(StageDone(record, items))

    @on(StageDone)
    def _stage_done(self, message: StageDone) -> None:
        self.busy = False
        self._runner = None
        if self._staging is not None:
            self._staging.stop()
            self._staging = None
        self.load()
        if message.error:
            self.edge.error(message.error)
            self.live = SyncLive(error=message.error)
            return
        items, record = message.items, message.record
        assert record is not None
        failed = [i for i in items if i.status != "staged"]
        text = f"{len(items) - len(failed)} of {len(items)} staged (sync run #{record.id})."
        if failed:
            text += " Failed: " + "; ".join(
                f"{i.repository}:{i.tag} ({i.reason or i.status})" for i in failed)
        self.edge.notify(text, title="Stage", severity="warning" if failed else "information",
                         timeout=8, markup=False)
        self.edge.content_changed()

    def chosen_item(self) -> StageItem | None:
        """The staged item under the table's cursor."""
        items = self.picture.stages if self.picture is not None else []
        row = self.stages_table.cursor_row
        return items[row] if 0 <= row < len(items) else None

    def action_check_readiness(self) -> None:
        items = self.picture.stages if self.picture is not None else []
        if not items:
            self.edge.notify("Nothing is staged: nothing to check.", severity="warning")
            return
        if self.checking:
            self.edge.notify("A readiness check is already under way.", severity="warning")
            return
        self.checking = True
        self.check_readiness(list(dict.fromkeys((i.repository, i.tag) for i in items)))

    @work(thread=True, exclusive=True, group="sync-check", exit_on_error=False)
    def check_readiness(self, pairs: list[tuple[str, str]]) -> None:
        try:
            checked = abandonable(lambda: check_once(self, pairs))
        except Abandoned:
            return
        except (EdgeError, OSError) as exc:
            checked = ReadinessChecked([], f"the check failed: {exc}")
        self.post_message(checked)

    @on(ReadinessChecked)
    def _checked(self, message: ReadinessChecked) -> None:
        results = message.results
        self.readiness = {(r.repository, r.tag): r for r in results}
        self.checking = False
        if not results:
            self.edge.error(f"Readiness not known: {message.parent_note}")
            return
        text = readiness_summary(results)
        if message.parent_note:
            text += f". The parent was not asked: {message.parent_note}"
        severity: SeverityLevel = "information"
        if not all(r.ok for r in results):
            severity = "error"
        elif any(r.state != "ready" for r in results):
            severity = "warning"
        self.edge.notify(text, title="Readiness", severity=severity, timeout=10, markup=False)

    def action_release_stage(self) -> None:
        chosen = self.chosen_item()
        if chosen is None:
            self.edge.notify("Nothing is staged: no stage to release.", severity="warning")
            return
        if self._staging is not None:
            self.edge.notify("A stage is being pulled: release once it ends.",
                             severity="warning")
            return
        name = chosen.stage
        assert self.picture is not None
        items = [i for i in self.picture.stages if i.stage == name]
        now = time.time()  # pins end by the real clock (the store's), not the pane's
        pinned = sum(i.pins(now) for i in items)

        def decided(confirmed: bool | None) -> None:
            if confirmed:
                self.release(name)

        self.app.push_screen(
            ConfirmationModal(f"Release the stage {name}? Pins lost: {images(pinned)}.",
                              release_body(name, items, now), confirm_label="Release"),
            decided,
        )

    @work(thread=True, group="sync-release", exit_on_error=False)
    def release(self, name: str) -> None:
        try:
            released = staging.release(self.edge.registry, name)
        except EdgeError as exc:
            self.post_message(StageReleased(name, 0, f"Not released: {exc}"))
            return
        self.post_message(StageReleased(name, released))

    @on(StageReleased)
    def _released(self, message: StageReleased) -> None:
        self.load()
        if message.error:
            self.edge.error(message.error)
            return
        self.edge.notify(f"Released the stage {message.stage}: {message.released} images "
                         "unpinned.", title="Stage", markup=False)
        self.edge.content_changed()
