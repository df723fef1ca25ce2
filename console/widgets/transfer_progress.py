"""Live progress of an import or export: a bar over the bytes, and a line saying which blob and
how many images; `ProgressRelay` turns the core's progress callbacks (a worker thread) into
messages, at most one every RELAY_INTERVAL seconds besides phase and blob changes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from console.widgets.format import short_digest, size
from registry_core.transfer import Progress

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
