"""`edge-console import PATH` and `edge-console export REF... PATH`: offline transfer.

Import reads an OCI image layout (a directory or its .tar) or a docker-archive (plain or
gzip) and stores every image in it (`--dry-run`: only says what it holds and which blobs are
here already). Export writes images to an OCI layout (a directory, or a .tar by extension)
or a docker-archive. Both show a progress bar on a terminal; ctrl-c stops them, an import
then storing nothing (see registry_core.transfer).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import humanize

from console.cli_support import emit, open_registry, run_interruptibly
from registry_core import transfer
from registry_core.identity import CONSOLE

T = TypeVar("T")
BAR_WIDTH = 30
REDRAW_SECONDS = 0.1


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    imp = subparsers.add_parser(
        "import", parents=[common], help="import an OCI image layout or a docker-archive",
        description="Store every image of an OCI image layout (a directory or its .tar) or "
        "a docker save / docker-archive tarball (plain or gzip). Images named by a bare "
        "tag go to the repository named after the file, or --repository.",
    )
    imp.add_argument("path", type=_path, metavar="PATH", help="the layout or archive")
    imp.add_argument("--tag", metavar="REPO:TAG",
                     help="name the image (the only one, or the only one without a name)")
    imp.add_argument("--repository", metavar="NAME",
                     help="repository for images named by a bare tag (default: from PATH)")
    imp.add_argument("--dry-run", action="store_true",
                     help="only show what PATH holds and which blobs are here already")
    imp.set_defaults(handler=run_import)
    exp = subparsers.add_parser(
        "export", parents=[common], help="export images to an OCI layout or docker-archive",
        description="Write images (REPO:TAG, REPO@DIGEST, or REPO for all its tags) to an OCI "
        "image layout at PATH (a directory, or a tar if PATH ends in .tar), digests "
        "preserved, or to a docker-archive tarball.",
    )
    exp.add_argument("refs", nargs="+", metavar="REF", help="REPO:TAG, REPO@DIGEST or REPO")
    exp.add_argument("path", type=_path, metavar="PATH", help="where to write")
    exp.add_argument("--format", choices=transfer.FORMATS, default=transfer.OCI)
    exp.add_argument("--force", action="store_true", help="overwrite an existing PATH")
    exp.set_defaults(handler=run_export)


def _path(text: str) -> Path:
    """PATH, not empty (Path('') is '.', the current directory: not what was meant)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: name a file or directory")
    return Path(text)


class Bar:
    """A progress bar on a terminal (stderr); nothing otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False
        self._drawn = 0.0

    def __call__(self, progress: transfer.Progress) -> None:
        if not self.stream.isatty():
            return
        now = time.monotonic()
        if now - self._drawn < REDRAW_SECONDS and progress.phase in ("copying", "writing"):
            return
        self._drawn = now
        frac = min(1.0, progress.bytes_done / max(progress.bytes_total, 1))
        filled = int(BAR_WIDTH * frac)
        self.stream.write(
            f"\r{progress.phase:10} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] "
            f"{_size(progress.bytes_done)}/{_size(progress.bytes_total)}  "
            f"images {progress.images_done}/{progress.images_total}   ")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * (BAR_WIDTH + 70) + "\r")
            self.stream.flush()


def _size(n: int) -> str:
    return str(humanize.naturalsize(n, binary=True))


def _with_progress(job: Callable[[transfer.ProgressCallback, transfer.StopCheck], T],
                   name: str) -> T:
    """`job` with a progress bar on stderr; ctrl-c says so and stops it at the next chunk."""
    stop, bar = threading.Event(), Bar(sys.stderr)

    def cancel() -> None:
        print("\ncancelling...", file=sys.stderr, flush=True)
        stop.set()

    try:
        return run_interruptibly(lambda: job(bar, stop.is_set), cancel, name)
    finally:
        bar.clear()


def run_import(args: argparse.Namespace) -> int:
    registry = open_registry(args, create=True)
    try:
        if args.dry_run:
            plan = transfer.preview(registry, args.path, tag=args.tag,
                                    repository=args.repository)
            emit(args, plan_text(plan), plan.to_json())
            return 0
        result = _with_progress(lambda on_progress, should_stop: transfer.import_images(
            registry, args.path, who=CONSOLE, tag=args.tag, repository=args.repository,
            on_progress=on_progress, should_stop=should_stop), "import-cli")
        emit(args, import_text(result), result.to_json())
        return 0
    finally:
        registry.close()


def run_export(args: argparse.Namespace) -> int:
    registry = open_registry(args)
    try:
        result = _with_progress(lambda on_progress, should_stop: transfer.export_images(
            registry, args.refs, args.path, format=args.format, force=args.force,
            on_progress=on_progress, should_stop=should_stop), "export-cli")
        emit(args, export_text(result), result.to_json())
        return 0
    finally:
        registry.close()


def _image_lines(images: Iterable[transfer.PlannedImage | transfer.ImportedImage]
                 ) -> list[str]:
    lines = []
    for image in images:
        tags = ",".join(image.tags) or "<untagged>"
        platforms = image.platforms if isinstance(image, transfer.PlannedImage) else ()
        extra = f"  {' '.join(platforms)}" if platforms else ""
        lines.append(f"  {image.repository}:{tags}  {image.digest}{extra}")
    return lines


def plan_text(plan: transfer.ImportPlan) -> str:
    here = plan.blobs - plan.new_blobs
    lines = [f"{plan.source} ({plan.format}) holds {len(plan.images)} image(s):"]
    for image in plan.images:
        lines += _image_lines([image])
        lines.append(f"    {_size(image.size)}; {image.blobs} blobs, {image.new_blobs} new "
                     f"({_size(image.new_bytes)})")
        lines += [f"    moves tag {tag} from {digest}" for tag, digest in image.moves.items()]
    lines.append(f"Would copy {plan.new_blobs} of {plan.blobs} blobs "
                 f"({_size(plan.new_bytes)}); {here} already here. Nothing was stored.")
    return "\n".join(lines)


def import_text(result: transfer.ImportResult) -> str:
    plan = result.plan
    lines = [f"Imported {len(result.images)} image(s) from {plan.source} ({plan.format}):"]
    lines += _image_lines(result.images)
    lines.append(f"Copied {result.blobs_copied} blobs ({_size(result.bytes_copied)}); "
                 f"{plan.blobs - plan.new_blobs} were already here; "
                 f"took {result.seconds:.1f} s.")
    return "\n".join(lines)


def export_text(result: transfer.ExportResult) -> str:
    lines = [f"Exported {len(result.images)} image(s) to {result.destination} "
             f"({result.format}):"]
    lines += [f"  {i['reference']}  {i['digest']}" for i in result.images]
    lines.append(f"{result.blobs} blobs, {_size(result.bytes)}; took {result.seconds:.1f} s.")
    return "\n".join(lines)

