"""The staging half of the Sync screen: the staged images, `+` to stage more (pull them from the
parent now and pin them), `C` to check their readiness, `R` to release a stage.

A stage's pull is a run of the sync runner, the one run a data dir may have, so it claims the
Sync screen's run (its busy flag, live line and cancel) through the hooks `StagingMixin` asks
of its host. While it runs, the staged items are read again a few times a second: each goes
pending -> downloading -> verifying -> staged or failed in the store as it moves.

A mixin rather than a widget of its own: Textual looks a key up from the focused widget to its
ancestors, so the keys belong to the Sync view itself for them to work wherever the focus is
on the screen (and for the footer, help and palette to show them).
"""

from __future__ import annotations

import time
from typing import cast

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import DataTable, Static

from console.screens.base import View
from console.theme import Role
from console.widgets.cluster_link import Abandoned, abandonable
from console.widgets.confirm import ConfirmationModal
from console.widgets.format import short_digest, when
from console.widgets.stage_modal import StageModal, StageRequest
from registry_core.datadir import DataDir
from registry_core.errors import EdgeError, SyncInProgressError
from registry_core.identity import CONSOLE
from registry_core.registry import Registry
from registry_core.store.stages import StageItem
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync import staging
from registry_core.sync.runner import SyncRunner, open_runner
from registry_core.sync.settings import load_settings
from registry_core.sync.staging import Readiness

STAGE_POLL_SECONDS = 0.25
"""How often the staged items are read again while this pane pulls a stage."""
EXPIRY_MARGIN_SECONDS = 0.05
"""The read at a stage's expiry comes this much after it (a read at the very instant could
still see the pin)."""
STAGE_ROLES: dict[str, Role] = {
    "pending": "muted",
    "downloading": "primary",
    "verifying": "primary",
    "staged": "success",
    "expired": "warning",
    "failed": "error",
}
READY_ROLES: dict[str, Role] = {
    "ready": "success",
    "unverified": "warning",
    "expired": "warning",
    "outdated": "warning",
    "missing": "error",
}
STAGING_HELP = (
    "Staging pulls a deployment's images now, whatever the schedule, and pins them: GC\n"
    "and deletes leave them alone until the stage is released (or expires). Each image\n"
    "goes pending, downloading, verifying, then staged or failed (the reason says why);\n"
    "past its stage's expiry a staged image shows expired: it is no longer pinned.\n"
    "A readiness check fills the Check column: ready (here with the parent's digest),\n"
    "unverified (here; the parent could not confirm), expired (here, but its stage\n"
    "expired: stage it again to pin it), outdated or missing. Release acts on the\n"
    "stage of the row under the cursor and asks first."
)
STAGING_BINDINGS: list[BindingType] = [
    Binding("plus", "stage_images", "Stage", id="sync.stage", key_display="+",
            tooltip="stage images: pull REPO:TAG from the parent now and pin them"),
    Binding("C", "check_readiness", "Check", id="sync.check",
            tooltip="check readiness: is each staged image here with the parent's digest"),
    Binding("R", "release_stage", "Release", id="sync.release",
            tooltip="release the stage under the cursor: its images lose their pin "
                    "(asks first)"),
]
"""The host lists them in its BINDINGS (help and palette read the view's own BINDINGS)."""


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


def stage_once(registry: Registry, runner: SyncRunner,
               request: StageRequest) -> tuple[SyncRunRecord, list[StageItem]]:
    """Pull and pin the request's images (blocking); the pins' expiry counts from now."""
    expires_at = None if request.expires_in is None else time.time() + request.expires_in
    try:
        return staging.stage(registry, runner, request.pairs, request.stage, expires_at,
                             who=CONSOLE)
    finally:
        runner.close()


def check_once(registry: Registry, datadir: DataDir,
               pairs: list[tuple[str, str]]) -> ReadinessChecked:
    """Each image's readiness (blocking); with no parent to ask, what is here only."""
    try:
        runner: SyncRunner | None = open_runner(registry, load_settings(datadir))
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
    expired = [f"{r.repository}:{r.tag}" for r in results if r.state == "expired"]
    if expired:
        text += f"; stage expired, no longer pinned: {', '.join(expired)}"
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
        lines.append(f"\nAlso leaving the list, pinning nothing (not staged, or their "
                     f"stage expired): {images(len(others))}.")
        lines += [f"  {i.repository}:{i.tag}  {i.status}" for i in others]
    lines.append("\nThe images themselves stay here; only the pins and the list go.")
    return "\n".join(lines)


class StagingMixin(View):
    """The staged images table and its actions, for the Sync view to mix in.

    A View itself, so that Textual registers its reactives and `@on` handlers; the host
    composes `compose_staging()`, calls `add_stage_columns()` on mount, fills the table with
    `fill_stages` and provides the run hooks below."""

    readiness: reactive[dict[tuple[str, str], Readiness]] = reactive(dict, init=False)
    """The last readiness check, by (repository, tag)."""
    checking: reactive[bool] = reactive(False, init=False)

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._staging: Timer | None = None
        """Reads the staged items again while this pane pulls a stage."""
        self._expiry: Timer | None = None
        """Reads them again when the next stage expires (its images then show expired)."""

    # ---- what the host provides: its read of the data dir and its one run ----------------

    def staged_items(self) -> list[StageItem]:
        """The staged items of the last read."""
        raise NotImplementedError

    def ready_to_run(self) -> bool:
        """No run under way (and the sync configured); if not, said in a toast."""
        raise NotImplementedError

    def run_started(self, note: str) -> None:
        """The run is this pane's from now; `note` for the live line."""
        raise NotImplementedError

    def open_uplink(self) -> SyncRunner:
        """In the worker: the runner of the run, which a cancel stops (EdgeError: none)."""
        raise NotImplementedError

    def run_ended(self, error: str = "") -> None:
        """The run is over; `error` (if any) is said."""
        raise NotImplementedError

    # ---- the table ---------------------------------------------------------------------------

    def compose_staging(self) -> ComposeResult:
        yield Static("Staged images", classes="section")
        yield Static("", id="sync-stage-note")
        stages: DataTable[str | Text] = DataTable(id="sync-stages", cursor_type="row")
        yield stages

    @property
    def stages_table(self) -> DataTable[str | Text]:
        return cast("DataTable[str | Text]", self.query_one("#sync-stages", DataTable))

    def add_stage_columns(self) -> None:
        stages = self.stages_table
        for label, key in (("Stage", "stage"), ("Image", "image"), ("Status", "status"),
                           ("Check", "check"), ("Digest", "digest"), ("Expires", "expires"),
                           ("Reason", "reason")):
            stages.add_column(label, key=key)

    def watch_readiness(self) -> None:
        self.fill_stages(self.staged_items())

    def watch_checking(self) -> None:
        self.watch_readiness()

    def role_style(self, roles: dict[str, Role], value: str, *, bold: bool = False) -> Style:
        role = roles.get(value)
        return self.style(role, bold=bold) if role else Style()

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
        self.reload_at_expiry(items)

    def reload_at_expiry(self, items: list[StageItem]) -> None:
        """A read when the next of these pins expires (the store's clock, as the pins')."""
        if self._expiry is not None:
            self._expiry.stop()
            self._expiry = None
        now = time.time()
        due = [i.expires_at for i in items
               if i.status == "staged" and i.expires_at is not None and i.expires_at > now]
        if due:
            self._expiry = self.set_timer(min(due) - now + EXPIRY_MARGIN_SECONDS, self.reload)

    def check_cell(self, item: StageItem) -> tuple[Text, str]:
        """The Check column (the last readiness check) and, when not ready, why."""
        if self.checking:
            return Text("checking…", style=self.style("muted")), ""
        result = self.readiness.get((item.repository, item.tag))
        if result is None:
            return Text("-", style=self.style("muted")), ""
        return Text(result.state, style=self.role_style(READY_ROLES, result.state)), \
            "" if result.state == "ready" else result.message

    def chosen_item(self) -> StageItem | None:
        """The staged item under the table's cursor."""
        items = self.staged_items()
        row = self.stages_table.cursor_row
        return items[row] if 0 <= row < len(items) else None

    # ---- stage -------------------------------------------------------------------------------

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
        self.readiness = {k: v for k, v in self.readiness.items() if k not in request.pairs}
        count = len(request.pairs)
        self.run_started(f"Staging {count} image{'s' if count != 1 else ''} "
                         f"in {request.stage}…")
        self._staging = self.set_interval(STAGE_POLL_SECONDS, self.reload)
        self.run_stage(request)

    @work(thread=True, exclusive=True, group="sync-run", exit_on_error=False)
    def run_stage(self, request: StageRequest) -> None:
        try:
            runner = self.open_uplink()
        except EdgeError as exc:
            self.post_message(StageDone(None, [], f"Not staged: {exc}"))
            return
        registry = self.edge.registry
        try:
            record, items = abandonable(lambda: stage_once(registry, runner, request))
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
        if self._staging is not None:
            self._staging.stop()
            self._staging = None
        self.run_ended(message.error)
        self.reload()
        if message.error:
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

    # ---- check -------------------------------------------------------------------------------

    def action_check_readiness(self) -> None:
        items = self.staged_items()
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
        edge = self.edge
        try:
            checked = abandonable(lambda: check_once(edge.registry, edge.datadir, pairs))
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

    # ---- release -----------------------------------------------------------------------------

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
        items = [i for i in self.staged_items() if i.stage == name]
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
            released = staging.release(self.edge.registry, name, who=CONSOLE)
        except EdgeError as exc:
            self.post_message(StageReleased(name, 0, f"Not released: {exc}"))
            return
        self.post_message(StageReleased(name, released))

    @on(StageReleased)
    def _released(self, message: StageReleased) -> None:
        self.reload()
        if message.error:
            self.edge.error(message.error)
            return
        self.edge.notify(f"Released the stage {message.stage}: {message.released} images "
                         "unpinned.", title="Stage", markup=False)
        self.edge.content_changed()
