"""Garbage collection: run now or dry run, watch the live run and cancel it, past runs, the
next scheduled run."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.widget import Widget
from textual.widgets import Button, Checkbox, DataTable, Input, Log, ProgressBar, Static

from console.screens.base import Command, View
from console.widgets.format import duration, size, when
from registry_core.errors import EdgeError, GCInProgressError
from registry_core.gc import GCEvent, RunRecord

HISTORY_LIMIT = 50
EVENT_INTERVAL = 0.05
"""At most one progress message per this many seconds reaches the UI (log lines always do)."""


class GCProgress(Message):
    """A GC event of a run in this process (from the collector's thread)."""

    def __init__(self, event: GCEvent) -> None:
        super().__init__()
        self.event = event


class GCFinished(Message):
    def __init__(self, record: RunRecord | None, error: str | None = None) -> None:
        super().__init__()
        self.record = record
        self.error = error


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


class GCView(View):
    tab_title = "Garbage collection"
    help_text = """\
r   run a garbage collection now: deletes unreferenced blobs (and untagged manifests if
    'delete untagged' is ticked) last touched before the grace period
n   dry run: counts what a run would delete and free, deletes nothing
c   cancel the run in progress (the store stays consistent)
x   tick / untick 'delete untagged'
Grace period: content younger than this is kept, so pushes in progress are never broken.
Set 0 to reclaim just-deleted images at once (only when no client is pushing)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run GC", id="gc.run"),
        Binding("n", "dry_run", "Dry run", id="gc.dry_run"),
        Binding("c", "cancel", "Cancel run", id="gc.cancel"),
        Binding("x", "toggle_untagged", "Untagged", show=False, id="gc.untagged"),
    ]

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.current: RunRecord | None = None
        self.live_run_id: int | None = None
        self._unsubscribe: object = None
        self._running_here = False
        self._stale = False

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
        table = cast("DataTable[str | Text]", self.query_one("#gc-history", DataTable))
        table.add_column("#", key="id")
        table.add_column("Trigger", key="trigger")
        table.add_column("Status", key="status")
        table.add_column("Started", key="started")
        table.add_column("Duration", key="duration")
        table.add_column("Freed", key="freed")
        self._unsubscribe = self.edge.collector.subscribe(EventThrottle(self))
        self.load()

    def on_unmount(self) -> None:
        unsubscribe = self._unsubscribe
        if callable(unsubscribe):
            unsubscribe()

    def shown(self) -> None:
        if self._stale:
            self._stale = False
            self.load()

    def data_changed(self) -> None:
        if self.edge.active_tab() != "gc":
            self._stale = True
            return
        self.load()

    # ---- state -------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="gc-state", exit_on_error=False)
    def load(self) -> None:
        collector = self.edge.collector
        try:
            current = collector.current()
            history = collector.history(HISTORY_LIMIT)
        except Exception as exc:  # sqlite3 errors (busy database), EdgeError
            self.post_message(GCFinished(None, f"Could not read GC runs: {exc}"))
            return
        scheduler = self.edge.scheduler
        next_run = scheduler.next_run() if scheduler is not None else None
        self.post_message(
            GCStateLoaded(current, history, next_run, self.edge.config.gc.schedule)
        )

    @on(GCStateLoaded)
    def _state_loaded(self, message: GCStateLoaded) -> None:
        self.show_next(message.next_run, message.schedule)
        if not self._running_here:
            self.show_record(message.current)
        table = cast("DataTable[str | Text]", self.query_one("#gc-history", DataTable))
        table.clear()
        for record in message.history:
            status = Text(record.status, style=_status_style(record.status))
            trigger = record.trigger + (" (dry)" if record.dry_run else "")
            freed = size(record.bytes_freed)
            if record.dry_run:
                freed = f"({freed})"
            table.add_row(
                str(record.id), trigger, status, when(record.started_at),
                duration(record.duration_seconds if record.finished_at else None), freed,
                key=str(record.id),
            )

    def show_next(self, next_run: dt.datetime | None, schedule: str) -> None:
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

    def show_record(self, record: RunRecord | None) -> None:
        live = self.query_one("#gc-live", Static)
        cancel = self.query_one("#gc-cancel", Button)
        if record is None or not record.running:
            cancel.disabled = True
            if record is None and self.live_run_id is None:
                live.update("No run in progress.")
            return
        cancel.disabled = False
        self.live_run_id = record.id
        live.update(self._live_text(record.id, record.phase, record.bytes_freed, record))

    def _live_text(self, run_id: int, phase: str, bytes_freed: int,
                   record: RunRecord | None = None, status: str = "running") -> Text:
        text = Text()
        text.append(f"Run #{run_id} ", style="bold")
        text.append(status, style=_status_style(status))
        text.append(f" · phase: {phase} · freed so far: ")
        text.append(size(bytes_freed), style="bold green")
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

    def action_run(self) -> None:
        self.start_run(dry_run=False)

    def action_dry_run(self) -> None:
        self.start_run(dry_run=True)

    def action_toggle_untagged(self) -> None:
        box = self.query_one("#gc-untagged", Checkbox)
        box.value = not box.value

    def start_run(self, dry_run: bool) -> None:
        if self._running_here:
            self.edge.notify("A garbage collection is already running.", severity="warning")
            return
        self._running_here = True
        self.query_one("#gc-log", Log).clear()
        self.query_one("#gc-progress", ProgressBar).update(total=1, progress=0)
        self.query_one("#gc-cancel", Button).disabled = False
        self.query_one("#gc-live", Static).update("Starting…")
        self.run_gc(dry_run, self.query_one("#gc-untagged", Checkbox).value,
                    self.grace_period())

    @work(thread=True, exclusive=True, group="gc-run", exit_on_error=False)
    def run_gc(self, dry_run: bool, delete_untagged: bool, grace: float | None) -> None:
        try:
            record = self.edge.collector.run(
                trigger="manual", dry_run=dry_run, delete_untagged=delete_untagged,
                grace_period=grace,
            )
        except GCInProgressError as exc:
            self.post_message(GCFinished(None, f"Not started: {exc}"))
            return
        except (EdgeError, ValueError, OSError) as exc:
            self.post_message(GCFinished(None, f"Garbage collection failed: {exc}"))
            return
        except Exception as exc:  # sqlite3 errors
            self.post_message(GCFinished(None, f"Garbage collection failed: {exc}"))
            return
        self.post_message(GCFinished(record))

    @on(GCProgress)
    def _progress(self, message: GCProgress) -> None:
        event = message.event
        self.live_run_id = event.run_id
        if event.message:
            self.query_one("#gc-log", Log).write_line(event.message)
        bar = self.query_one("#gc-progress", ProgressBar)
        if event.total:
            bar.update(total=event.total, progress=event.done)
        self.query_one("#gc-live", Static).update(
            self._live_text(event.run_id, event.phase, event.bytes_freed, status=event.status)
        )
        self.query_one("#gc-cancel", Button).disabled = event.status != "running"

    @on(GCFinished)
    def _finished(self, message: GCFinished) -> None:
        self._running_here = False
        self.query_one("#gc-cancel", Button).disabled = True
        if message.error is not None:
            self.edge.error(message.error)
            self.query_one("#gc-live", Static).update(Text(message.error, style="red"))
            return
        record = message.record
        if record is None:
            return
        verb = "would free" if record.dry_run else "freed"
        self.query_one("#gc-live", Static).update(
            self._live_text(record.id, record.phase, record.bytes_freed, record, record.status)
        )
        bar = self.query_one("#gc-progress", ProgressBar)
        bar.update(total=1, progress=1)
        severity: SeverityLevel = "information" if record.status == "succeeded" else "warning"
        if record.status == "failed":
            severity = "error"
        note = ""
        if record.blobs_kept_grace and not record.bytes_freed:
            note = " (recent content is kept by the grace period)"
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
        except Exception as exc:  # sqlite3 errors
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

    def commands(self) -> list[Command]:
        return [
            Command("GC: run a garbage collection now", "Garbage collection, key r",
                    self.action_run),
            Command("GC: dry run (delete nothing)", "Garbage collection, key n",
                    self.action_dry_run),
            Command("GC: cancel the run in progress", "Garbage collection, key c",
                    self.action_cancel),
            Command("GC: toggle 'delete untagged'", "Garbage collection, key x",
                    self.action_toggle_untagged),
        ]


def _status_style(status: str) -> str:
    return {
        "succeeded": "green",
        "running": "yellow",
        "cancelled": "magenta",
        "failed": "bold red",
    }.get(status, "")
