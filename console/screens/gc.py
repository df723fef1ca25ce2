"""Garbage collection: run now or dry run, watch the live run and cancel it, past runs, the
next scheduled run."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import ClassVar, Literal, cast

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
from textual.widgets import Button, Checkbox, DataTable, Input, Log, ProgressBar, Static

from console.screens.base import View
from console.theme import Role
from console.widgets.confirm import ConfirmationModal
from console.widgets.format import duration, short_digest, size, when
from registry_core.errors import EdgeError, GCInProgressError
from registry_core.events import GCEvent, Subscription
from registry_core.gc import GCCancelled, RunRecord
from registry_core.identity import CONSOLE

HISTORY_LIMIT = 50
LISTED_MANIFESTS = 8
"""The confirmation lists at most this many of the manifests a run will delete."""
STATUS_ROLES: dict[str, Role] = {
    "succeeded": "success",
    "running": "warning",
    "cancelled": "secondary",
    "failed": "error",
}
Busy = Literal["idle", "previewing", "running"]
EVENT_INTERVAL = 0.05
"""At most one progress message per this many seconds reaches the UI (log lines always do)."""


class GCProgress(Message):
    """A GC event of a run in this process (from the registry's event stream, in the thread
    of the run)."""

    def __init__(self, event: GCEvent) -> None:
        super().__init__()
        self.event = event


class GCFinished(Message):
    def __init__(self, record: RunRecord | None, error: str | None = None) -> None:
        super().__init__()
        self.record = record
        self.error = error


class GCPreviewed(Message):
    """The preview that precedes a real run is ready: what the run would delete."""

    def __init__(self, record: RunRecord) -> None:
        super().__init__()
        self.record = record


@dataclass(frozen=True)
class Live:
    """What the live line shows: a run's progress, a note, or an error."""

    run_id: int | None = None
    phase: str = ""
    bytes_freed: int = 0
    status: str = "running"
    record: RunRecord | None = None
    note: str = ""
    error: str = ""


class GCStateLoaded(Message):
    def __init__(self, current: RunRecord | None, history: list[RunRecord],
                 next_run: dt.datetime | None, schedule: str) -> None:
        super().__init__()
        self.current = current
        self.history = history
        self.next_run = next_run
        self.schedule = schedule


class EventThrottle:
    """Forwards GC events as messages: log lines and the end always, progress at most every
    EVENT_INTERVAL seconds (a sweep of a million blobs must not flood the UI loop)."""

    def __init__(self, view: GCView) -> None:
        self.view = view
        self.last = 0.0
        self.lock = threading.Lock()

    def __call__(self, event: GCEvent) -> None:
        with self.lock:
            t = time.monotonic()
            important = bool(event.message) or event.status != "running" or event.done == 0 \
                or event.done == event.total
            if not important and t - self.last < EVENT_INTERVAL:
                return
            self.last = t
        self.view.post_message(GCProgress(event))


def confirm_body(record: RunRecord) -> str:
    """What the confirmation says a run with these options will delete (from its preview)."""
    grace = f"{record.grace_period_seconds:g} s"
    if record.delete_untagged:
        untagged = "deleted ('delete untagged' is ticked)"
    else:
        untagged = "kept (tick 'delete untagged' to delete them too)"
    lines = [
        f"Grace period: {grace} (content younger than this is kept).",
        f"Untagged manifests: {untagged}.",
        "",
        "Counted just now, the run will delete:",
        f"  {record.manifests_deleted:,} manifests",
    ]
    listed = record.details.get("manifests", [])[:LISTED_MANIFESTS]
    lines += [f"    {m['repository']}@{short_digest(m['digest'])}" for m in listed]
    if record.manifests_deleted > len(listed):
        lines.append(f"    … and {record.manifests_deleted - len(listed):,} more")
    lines += [
        f"  {record.blobs_deleted:,} blobs, freeing {size(record.bytes_freed)}",
        f"  {record.uploads_purged:,} abandoned uploads",
        f"Kept by the grace period: {record.manifests_kept_grace:,} manifests, "
        f"{record.blobs_kept_grace:,} blobs.",
        "The run checks each item again as it deletes it: a push in the meantime is safe.",
    ]
    return "\n".join(lines)


class GCView(View):
    tab_id = "gc"
    tab_title = "Garbage collection"
    help_notes = (
        "A run deletes unreferenced blobs (and untagged manifests when 'delete untagged' is\n"
        "ticked) last touched before the grace period; it asks first, saying what goes.\n"
        "Grace period: content younger than this is kept, so pushes in progress are never\n"
        "broken. Set 0 to reclaim just-deleted images at once (only when no client is pushing)."
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "run", "Run GC", id="gc.run",
                tooltip="run a garbage collection now (shows what it deletes and asks first)"),
        Binding("n", "dry_run", "Dry run", id="gc.dry_run",
                tooltip="dry run: count what a run would delete and free, delete nothing"),
        Binding("x", "cancel", "Cancel run", id="gc.cancel",
                tooltip="cancel the run in progress (the store stays consistent)"),
        Binding("t", "toggle_untagged", "Untagged", show=False, id="gc.untagged",
                tooltip="tick / untick 'delete untagged'"),
    ]

    busy: reactive[Busy] = reactive("idle", init=False)
    """What this pane started and waits for: nothing, the preview of a run, or a run."""
    live: reactive[Live] = reactive(Live(note="No run in progress."), init=False)
    history: reactive[list[RunRecord]] = reactive(list, init=False)
    schedule: reactive[tuple[dt.datetime | None, str] | None] = reactive(None, init=False)

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._events: Subscription[GCEvent] | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="gc-scroll"):
            with Horizontal(id="gc-actions"):
                yield Button("Run now", id="gc-run", variant="warning", compact=True)
                yield Button("Dry run", id="gc-dry-run", variant="primary", compact=True)
                yield Button("Cancel", id="gc-cancel", variant="error", disabled=True,
                             compact=True)
            with Horizontal(id="gc-options"):
                yield Checkbox("Delete untagged", id="gc-untagged", compact=True)
                yield Static("Grace period (s)", id="gc-grace-label")
                yield Input(id="gc-grace", type="integer", max_length=9, compact=True)
            yield Static("", id="gc-next")
            yield Static("No run in progress.", id="gc-live")
            yield ProgressBar(total=1, show_eta=False, id="gc-progress")
            yield Log(id="gc-log", max_lines=500)
            yield Static("History", classes="section")
            table: DataTable[str | Text] = DataTable(id="gc-history", cursor_type="row")
            yield table

    def main_widget(self) -> Widget | None:
        return self.query_one("#gc-run", Button)

    def on_mount(self) -> None:
        gc_config = self.edge.config.gc
        self.query_one("#gc-untagged", Checkbox).value = gc_config.delete_untagged
        self.query_one("#gc-grace", Input).value = str(gc_config.grace_period_seconds)
        table = self.history_table
        table.add_column("#", key="id")
        table.add_column("Trigger", key="trigger")
        table.add_column("Status", key="status")
        table.add_column("Started", key="started")
        table.add_column("Duration", key="duration")
        table.add_column("Freed", key="freed")
        self._events = self.edge.registry.events.subscribe(EventThrottle(self), GCEvent)
        self.load()

    def on_unmount(self) -> None:
        if self._events is not None:
            self._events.close()
        if self.busy != "idle":
            self.edge.collector.cancel_local()  # the app is closing: do not outlive it

    @property
    def history_table(self) -> DataTable[str | Text]:
        return cast("DataTable[str | Text]", self.query_one("#gc-history", DataTable))

    def reload(self) -> None:
        self.load()

    # ---- state -------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="gc-state", exit_on_error=False)
    def load(self) -> None:
        collector = self.edge.collector
        try:
            current = collector.current()
            history = collector.history(HISTORY_LIMIT)
        except EdgeError as exc:
            self.post_message(GCFinished(None, f"Could not read GC runs: {exc}"))
            return
        scheduler = self.edge.scheduler
        next_run = scheduler.next_run() if scheduler is not None else None
        self.post_message(
            GCStateLoaded(current, history, next_run, self.edge.config.gc.schedule)
        )

    @on(GCStateLoaded)
    def _state_loaded(self, message: GCStateLoaded) -> None:
        self.schedule = (message.next_run, message.schedule)
        self.history = message.history
        current = message.current
        if self.busy == "idle" and current is not None and current.running:
            self.live = Live(current.id, current.phase, current.bytes_freed, record=current)

    def repaint(self) -> None:
        self.watch_schedule()
        self.watch_live()
        self.watch_history()

    def watch_history(self) -> None:
        table = self.history_table
        table.clear()
        for record in self.history:
            status = Text(record.status, style=self.status_style(record.status))
            trigger = record.trigger + (" (dry)" if record.dry_run else "")
            freed = size(record.bytes_freed)
            if record.dry_run:
                freed = f"({freed})"
            table.add_row(
                str(record.id), trigger, status, when(record.started_at),
                duration(record.duration_seconds if record.finished_at else None), freed,
                key=str(record.id),
            )

    def watch_schedule(self) -> None:
        if self.schedule is None:
            return
        next_run, schedule = self.schedule
        text = Text()
        text.append("Next scheduled run: ", style="bold")
        if next_run is not None:
            text.append(f"{next_run:%Y-%m-%d %H:%M %Z}".strip())
            text.append(f"  (cron {schedule!r})", style="dim")
        elif not schedule:
            text.append("none (gc.schedule is empty)")
        elif self.edge.attached is not None:
            text.append(f"run by the serving process (cron {schedule!r})")
        else:
            text.append(f"only while the registry is served (cron {schedule!r})")
        self.query_one("#gc-next", Static).update(text)

    def watch_live(self) -> None:
        live = self.live
        self.query_one("#gc-cancel", Button).disabled = not (
            self.busy == "running" or (live.run_id is not None and live.status == "running")
        )
        widget = self.query_one("#gc-live", Static)
        if live.error:
            widget.update(Text(live.error, style=self.style("error")))
        elif live.run_id is None:
            widget.update(live.note)
        else:
            widget.update(self.live_text(live))

    def watch_busy(self) -> None:
        self.watch_live()

    def status_style(self, status: str) -> Style:
        role = STATUS_ROLES.get(status)
        return self.style(role, bold=status == "failed") if role else Style()

    def live_text(self, live: Live) -> Text:
        assert live.run_id is not None
        text = Text()
        text.append(f"Run #{live.run_id} ", style="bold")
        text.append(live.status, style=self.status_style(live.status))
        text.append(f" · phase: {live.phase} · freed so far: ")
        text.append(size(live.bytes_freed), style=self.style("success", bold=True))
        record = live.record
        if record is not None:
            text.append(
                f"\nmanifests {record.manifests_deleted:,} deleted of "
                f"{record.manifests_scanned:,} · blobs {record.blobs_deleted:,} deleted of "
                f"{record.blobs_scanned:,} · kept by grace: {record.blobs_kept_grace:,} blobs"
            )
        return text

    # ---- running -----------------------------------------------------------------------------

    def grace_period(self) -> float | None:
        value = self.query_one("#gc-grace", Input).value.strip()
        if not value:
            return None
        try:
            seconds = int(value)
        except ValueError:
            return None
        return float(max(0, seconds))

    def delete_untagged(self) -> bool:
        return self.query_one("#gc-untagged", Checkbox).value

    def action_run(self) -> None:
        """A run deletes: first a preview with the same options (no run recorded), then the
        confirmation."""
        if not self._claim("previewing"):
            return
        self.live = Live(note="Counting what the run would delete…")
        self.preview_run(self.delete_untagged(), self.grace_period())

    def action_dry_run(self) -> None:
        if self._claim("running"):
            self.start_run(dry_run=True, delete_untagged=self.delete_untagged(),
                           grace=self.grace_period())

    def action_toggle_untagged(self) -> None:
        box = self.query_one("#gc-untagged", Checkbox)
        box.value = not box.value

    def _claim(self, busy: Busy) -> bool:
        if self.busy != "idle":
            self.edge.notify("A garbage collection is already running.", severity="warning")
            return False
        self.busy = busy
        return True

    @work(thread=True, exclusive=True, group="gc-preview", exit_on_error=False)
    def preview_run(self, delete_untagged: bool, grace: float | None) -> None:
        try:
            record = self.edge.collector.preview(delete_untagged, grace)
        except (EdgeError, ValueError, OSError, GCCancelled) as exc:
            self.post_message(GCFinished(None, f"Not started: {exc}"))
            return
        self.post_message(GCPreviewed(record))

    @on(GCPreviewed)
    def _previewed(self, message: GCPreviewed) -> None:
        record = message.record
        if record.status != "succeeded":
            self.busy = "idle"
            self.live = Live(note=f"Not started: the preview {record.status}.")
            self.load()
            return
        self.live = Live(note="Waiting for your answer…")

        def decided(confirmed: bool | None) -> None:
            if not confirmed:
                self.busy = "idle"
                self.live = Live(note="Not started (cancelled at the confirmation).")
                self.load()
                return
            self.busy = "running"
            self.start_run(dry_run=False, delete_untagged=record.delete_untagged,
                           grace=record.grace_period_seconds)

        self.app.push_screen(
            ConfirmationModal(
                "Run a garbage collection now?", confirm_body(record), confirm_label="Run GC"
            ),
            decided,
        )

    def start_run(self, *, dry_run: bool, delete_untagged: bool, grace: float | None) -> None:
        self.query_one("#gc-log", Log).clear()
        self.query_one("#gc-progress", ProgressBar).update(total=1, progress=0)
        self.live = Live(note="Starting…")
        self.run_gc(dry_run, delete_untagged, grace)

    @work(thread=True, exclusive=True, group="gc-run", exit_on_error=False)
    def run_gc(self, dry_run: bool, delete_untagged: bool, grace: float | None) -> None:
        try:
            record = self.edge.collector.run(
                trigger="manual", dry_run=dry_run, delete_untagged=delete_untagged,
                grace_period=grace, who=CONSOLE,
            )
        except GCInProgressError as exc:
            self.post_message(GCFinished(None, f"Not started: {exc}"))
            return
        except (EdgeError, ValueError, OSError) as exc:
            self.post_message(GCFinished(None, f"Garbage collection failed: {exc}"))
            return
        self.post_message(GCFinished(record))

    @on(GCProgress)
    def _progress(self, message: GCProgress) -> None:
        event = message.event
        if event.message:
            self.query_one("#gc-log", Log).write_line(event.message)
        if event.total:
            self.query_one("#gc-progress", ProgressBar).update(
                total=event.total, progress=event.done
            )
        self.live = Live(event.run_id, event.phase, event.bytes_freed, event.status)

    @on(GCFinished)
    def _finished(self, message: GCFinished) -> None:
        self.busy = "idle"
        if message.error is not None:
            self.edge.error(message.error)
            self.live = Live(error=message.error)
            return
        record = message.record
        if record is None:
            return
        self.live = Live(record.id, record.phase, record.bytes_freed, record.status, record)
        self.query_one("#gc-progress", ProgressBar).update(total=1, progress=1)
        severity: SeverityLevel = "information" if record.status == "succeeded" else "warning"
        if record.status == "failed":
            severity = "error"
        note = ""
        if record.blobs_kept_grace and not record.bytes_freed:
            note = " (recent content is kept by the grace period)"
        verb = "would free" if record.dry_run else "freed"
        self.edge.notify(
            f"Run #{record.id} {record.status}: {verb} {size(record.bytes_freed)}{note}.",
            title="Garbage collection" + (" (dry run)" if record.dry_run else ""),
            severity=severity,
            timeout=8,
        )
        self.load()
        if not record.dry_run:
            self.edge.content_changed()

    def action_cancel(self) -> None:
        self.cancel_run()

    @work(thread=True, group="gc-cancel", exit_on_error=False)
    def cancel_run(self) -> None:
        try:
            asked = self.edge.collector.cancel()
        except EdgeError as exc:
            self.post_message(GCFinished(None, f"Could not cancel: {exc}"))
            return
        if not asked:
            self.app.call_from_thread(
                self.edge.notify, "No garbage collection is running.", severity="warning"
            )

    @on(Button.Pressed, "#gc-run")
    def _run_pressed(self) -> None:
        self.action_run()

    @on(Button.Pressed, "#gc-dry-run")
    def _dry_pressed(self) -> None:
        self.action_dry_run()

    @on(Button.Pressed, "#gc-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()
