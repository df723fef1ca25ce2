"""`edge-console gc`: one garbage-collection run with a progress bar, or the run history.

Runs against the data dir directly, whether or not `serve` is running there (SQLite
transactions keep the two safe). A second `gc` while one runs fails with a one-line error.
Ctrl-C cancels the run, which leaves a consistent store.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

import humanize

from console.arg_types import positive_int, seconds
from console.cli_support import emit, fail, open_registry, run_interruptibly, wants_json
from registry_core.events import GCEvent, GCStarted
from registry_core.gc import GarbageCollector, RunRecord
from registry_core.identity import CONSOLE

BAR_WIDTH = 30


HISTORY_LIMIT = 20


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "gc",
        parents=[common],
        help="garbage collection: delete what nothing references (online, safe with pushes)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="report what a run would delete, and the bytes, without deleting")
    parser.add_argument("--delete-untagged", action="store_true", default=None,
                        help="also collect untagged manifests older than the grace period")
    parser.add_argument("--grace-period", type=seconds, metavar="SECONDS", default=None,
                        help="keep blobs and manifests younger than this (default: config)")
    mode.add_argument("--history", action="store_true", help="list past runs")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help=f"runs listed by --history (default {HISTORY_LIMIT})")
    mode.add_argument("--cancel", action="store_true",
                      help="ask the run in progress (in any process) to stop")

    def checked(args: argparse.Namespace) -> int:
        refusal = misuse(args)
        if refusal is not None:
            parser.error(refusal)
        return run(args)

    parser.set_defaults(handler=checked)


def misuse(args: argparse.Namespace) -> str | None:
    """Flags given together that do not go together (argparse's groups cannot say these)."""
    if args.limit is not None and not args.history:
        return "--limit goes with --history"
    if (args.history or args.cancel) and (
            args.delete_untagged or args.grace_period is not None):
        given = "--history" if args.history else "--cancel"
        return f"--delete-untagged and --grace-period go with a run, not with {given}"
    return None


def run(args: argparse.Namespace) -> int:
    registry = open_registry(args)
    try:
        collector = GarbageCollector(registry)
        if args.history:
            return _history(args, collector)
        if args.cancel:
            return _cancel(args, collector)
        return _run(args, collector)
    finally:
        registry.close()


def _history(args: argparse.Namespace, collector: GarbageCollector) -> int:
    runs = collector.history(args.limit or HISTORY_LIMIT)
    lines = [
        f"{'id':>5}  {'started':19}  {'trigger':8}  {'status':9}  {'mode':7}  "
        f"{'manifests':>9}  {'blobs':>7}  {'freed':>10}  {'duration':>8}"
    ]
    for r in runs:
        lines.append(
            f"{r.id:>5}  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.started_at))}  "
            f"{r.trigger:8}  {r.status:9}  {'dry run' if r.dry_run else 'delete':7}  "
            f"{r.manifests_deleted:>9}  {r.blobs_deleted:>7}  "
            f"{humanize.naturalsize(r.bytes_freed, binary=True):>10}  "
            f"{r.duration_seconds:>7.1f}s"
        )
    if not runs:
        lines.append("(no garbage collection has run yet)")
    emit(args, "\n".join(lines),
         {"runs": [r.to_json(include_details=False) for r in runs]})
    return 0


def _cancel(args: argparse.Namespace, collector: GarbageCollector) -> int:
    current = collector.current()
    if current is None:
        return fail("no garbage collection is in progress")
    collector.cancel(current.id)
    emit(args, f"Asked run {current.id} to stop.", {"id": current.id, "cancel_requested": True})
    return 0


class Progress:
    """A progress bar on a TTY (stderr), plain log lines otherwise."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.quiet = quiet
        self._last_line = 0.0
        self._bar_shown = False

    def __call__(self, event: GCEvent) -> None:
        if isinstance(event, GCStarted):
            return  # the first log line says what the run is
        if event.message:
            self._clear()
            if not self.quiet or event.status != "running":
                print(event.message, file=self.stream, flush=True)
            return
        if self.tty:
            self._bar(event)

    def _bar(self, event: GCEvent) -> None:
        total = max(event.total, 1)
        frac = min(1.0, event.done / total)
        filled = int(BAR_WIDTH * frac)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        freed = humanize.naturalsize(event.bytes_freed, binary=True)
        self.stream.write(
            f"\r{event.phase:16} [{bar}] {event.done}/{event.total}  freed {freed}   "
        )
        self.stream.flush()
        self._bar_shown = True

    def _clear(self) -> None:
        if self._bar_shown:
            self.stream.write("\r" + " " * (BAR_WIDTH + 60) + "\r")
            self.stream.flush()
            self._bar_shown = False


def _run(args: argparse.Namespace, collector: GarbageCollector) -> int:
    progress = Progress(sys.stderr, quiet=wants_json(args))

    def cancel() -> None:
        print("\ncancelling...", file=sys.stderr, flush=True)
        collector.cancel_local()

    record = run_interruptibly(
        lambda: collector.run(
            trigger="cli", dry_run=args.dry_run, delete_untagged=args.delete_untagged,
            grace_period=args.grace_period, on_event=progress, who=CONSOLE,
        ),
        cancel, "gc-cli",
    )
    emit(args, summary(record), record.to_json())
    if record.status == "failed":
        return fail(f"garbage collection failed: {'; '.join(record.errors) or 'unknown error'}")
    if record.status == "cancelled":
        return fail(f"garbage collection run {record.id} was cancelled")
    return 0


def summary(record: RunRecord) -> str:
    freed = humanize.naturalsize(record.bytes_freed, binary=True)
    if record.dry_run:
        head = (f"Dry run {record.id}: would delete {record.manifests_deleted} manifests and "
                f"{record.blobs_deleted} blobs, freeing {freed} ({record.bytes_freed} bytes).")
    else:
        head = (f"Run {record.id} {record.status}: deleted {record.manifests_deleted} manifests "
                f"and {record.blobs_deleted} blobs, freed {freed} ({record.bytes_freed} bytes).")
    lines = [
        head,
        f"  scanned: {record.manifests_scanned} manifests, {record.blobs_scanned} blobs",
        f"  kept by the grace period ({record.grace_period_seconds:g} s): "
        f"{record.manifests_kept_grace} manifests, {record.blobs_kept_grace} blobs",
        f"  abandoned uploads purged: {record.uploads_purged}",
        f"  delete untagged: {'yes' if record.delete_untagged else 'no'}; "
        f"took {record.duration_seconds:.2f} s",
    ]
    lines.extend(f"  error: {e}" for e in record.errors)
    return "\n".join(lines)
