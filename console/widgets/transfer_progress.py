"""Live progress of an import or export: a bar over the bytes, and a line saying which blob and
how many images; `ProgressRelay` turns the core's progress callbacks (a worker thread) into
messages, at most one every RELAY_INTERVAL seconds besides phase and blob changes;
`TransferModal` is what the import and export dialogs share around them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, Literal, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Button, ProgressBar, Static
from textual.worker import get_current_worker

from console.widgets.format import short_digest, size
from registry_core.errors import EdgeError
from registry_core.transfer import Progress, ProgressCallback, StopCheck, TransferCancelled

RELAY_INTERVAL = 0.1


class ProgressRelay:
    """A `ProgressCallback` that forwards to `post` (thread-safe): a new phase, a new blob and
    the end always, chunk counts at most every RELAY_INTERVAL seconds."""

    def __init__(self, post: Callable[[Progress], object]) -> None:
        self.post = post
        self.last: Progress | None = None
        self.sent = 0.0
        self.lock = threading.Lock()

    def __call__(self, progress: Progress) -> None:
        with self.lock:
            now = time.monotonic()
            last = self.last
            changed = last is None or progress.phase != last.phase or progress.item != last.item
            if not changed and progress.phase != "done" and now - self.sent < RELAY_INTERVAL:
                return
            self.last, self.sent = progress, now
        self.post(progress)


def progress_line(progress: Progress) -> str:
    """`copying sha256:0123456789ab · 12.0 MiB of 40.0 MiB · images 0 of 3`."""
    item = progress.item
    shown = short_digest(item) if item.startswith("sha256:") else item
    parts = [f"{progress.phase} {shown}".strip(),
             f"{size(progress.bytes_done)} of {size(progress.bytes_total)}",
             f"images {progress.images_done} of {progress.images_total}"]
    return " · ".join(parts)


class TransferProgress(Vertical):
    """The bar and the line; hidden until `show` is called."""

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=1, show_eta=False, id="transfer-bar")
        yield Static("", id="transfer-progress-line", markup=False)

    def start(self, text: str) -> None:
        self.display = True
        self.query_one(ProgressBar).update(total=1, progress=0)
        self.query_one("#transfer-progress-line", Static).update(text)

    def show(self, progress: Progress) -> None:
        bar = self.query_one(ProgressBar)
        total = max(progress.bytes_total, 1)
        done = total if progress.phase == "done" else min(progress.bytes_done, total)
        bar.update(total=total, progress=done)
        self.query_one("#transfer-progress-line", Static).update(progress_line(progress))

    def say(self, text: str) -> None:
        self.query_one("#transfer-progress-line", Static).update(text)


ResultT = TypeVar("ResultT")
State = Literal["picking", "previewing", "exporting", "importing", "cancelling"]


@dataclass(frozen=True)
class TransferOutcome(Generic[ResultT]):
    """How a dialog ended after its transfer started (None when closed before)."""

    folder: Path
    result: ResultT | None = None
    cancelled: bool = False
    message: str = ""


class TransferProgressed(Message):
    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress


class TransferEnded(Message, Generic[ResultT]):
    def __init__(self, result: ResultT | None, error: str = "", cancelled: bool = False) -> None:
        super().__init__()
        self.result = result
        self.error = error
        self.cancelled = cancelled


class TransferModal(ModalScreen[TransferOutcome[ResultT] | None]):
    """What the import and export dialogs share: the run in a worker with live progress, its
    end (dismissed with the outcome, or a failure said in one line while the dialog stays) and
    esc stopping it. Subclasses say which state is the work (WORKING) and what stopping says."""

    WORKING: ClassVar[State]
    STOPPING: ClassVar[str]

    state: reactive[State] = reactive("picking", init=False)
    error: reactive[str] = reactive("", init=False)

    def __init__(self) -> None:
        super().__init__()
        self.stop = threading.Event()
        self.progress_count = 0
        """Progress messages shown (tests read it)."""

    @property
    def folder(self) -> Path:
        raise NotImplementedError

    def on_unmount(self) -> None:
        self.stop.set()  # the app quits, or the dialog goes: the worker stops at a chunk

    def watch_error(self, error: str) -> None:
        line = self.query_one("#transfer-error", Static)
        line.update(error)
        line.display = bool(error)

    def begin(self, text: str) -> None:
        """Into the working state, the progress showing `text`."""
        self.state = self.WORKING
        self.error = ""
        self.query_one(TransferProgress).start(text)
        self.query_one("#transfer-cancel", Button).focus()

    def transfer(self, job: Callable[[ProgressCallback, StopCheck], ResultT]) -> None:
        """Runs `job` (in this dialog's worker thread) and posts how it ended."""
        worker = get_current_worker()
        relay = ProgressRelay(lambda p: self.post_message(TransferProgressed(p)))

        def should_stop() -> bool:
            return self.stop.is_set() or worker.is_cancelled

        try:
            result = job(relay, should_stop)
        except TransferCancelled as exc:
            self.post_message(TransferEnded(None, str(exc), cancelled=True))
        except (EdgeError, OSError) as exc:
            self.post_message(TransferEnded(None, str(exc)))
        else:
            self.post_message(TransferEnded(result))

    @on(TransferProgressed)
    def _progressed(self, message: TransferProgressed) -> None:
        self.progress_count += 1
        if self.state == self.WORKING:  # else the line says it is stopping
            self.query_one(TransferProgress).show(message.progress)

    @on(TransferEnded)
    def _ended(self, message: TransferEnded[ResultT]) -> None:
        if message.result is not None or message.cancelled:
            self.dismiss(TransferOutcome(self.folder, message.result, message.cancelled,
                                         message.error))
            return
        self.state = "picking"  # exists, no room, a blob that did not match: said, stay open
        self.query_one(TransferProgress).display = False
        self.error = message.error

    @on(Button.Pressed, "#transfer-cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_cancel()

    def action_cancel(self) -> None:
        if self.state == self.WORKING:
            self.stop.set()
            self.state = "cancelling"
            self.query_one(TransferProgress).say(self.STOPPING)
        elif self.state != "cancelling":
            self.dismiss(None)
