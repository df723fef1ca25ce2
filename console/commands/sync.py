"""`edge-console sync configure|status|run`: the connected registry's settings, state, and a
sync now.

The connection string is read from a file or standard input, never from the command line
(where `ps` and the shell history show it), and never printed.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

import humanize

from console.cli_support import (
    data_dir_of,
    emit,
    fail,
    open_registry,
    run_interruptibly,
)
from registry_core.config import SYNC_MODES
from registry_core.errors import ConfigError, NotEnabledError, SyncConfigError
from registry_core.events import (
    RepositoryProgress,
    Subscription,
    SyncEvent,
    SyncFinished,
    SyncProgress,
)
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.connection import (
    KEYS,
    ConnectionString,
    decode_connection_bytes,
    parse_connection_string,
    read_connection_text,
)
from registry_core.sync.runner import SyncRunner, open_runner
from registry_core.sync.schedule import SyncSchedule
from registry_core.sync.settings import SyncSettings, configure, load_settings
from registry_core.sync.status import SyncStatus, read_status

T = TypeVar("T")

WINDOW_CLOSED_EXIT = 3
PASTED = re.compile(r"[A-Za-z]\w*=[^;]*;|(?:" + "|".join(KEYS) + ")=")
"""What a connection string has and a file name, a pattern or a cron line does not."""
"""`sync run` outside the sync window: nothing ran (1 is a run that failed or was cancelled)."""


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "sync", parents=[common], help="the connected registry: sync from a parent registry",
        description="The connected registry: its parent, mode, repositories, schedule and "
                    "window, and its state.",
    )
    actions = parser.add_subparsers(dest="sync_command", metavar="ACTION", required=True)
    _register_configure(actions, common)
    status = actions.add_parser("status", parents=[common],
                                help="state, mode, parent, last sync, next run")
    status.set_defaults(handler=status_command)
    run = actions.add_parser(
        "run", parents=[common], help="one sync now (within the window, if one is open)",
        description="One sync now, with its progress on standard error. Outside the sync "
                    f"window nothing runs and the exit status is {WINDOW_CLOSED_EXIT} "
                    "(--ignore-window syncs anyway); a run that fails or is cancelled exits "
                    "1.")
    run.add_argument("--ignore-window", action="store_true",
                     help="sync now and to the end, even outside the sync window")
    run.set_defaults(handler=run_command)


def _register_configure(actions: Any, common: argparse.ArgumentParser) -> None:
    configure_parser = actions.add_parser(
        "configure", parents=[common], help="set the connection string and what to sync",
        description="Set the connection string (from a file or standard input) and the sync "
                    "settings; what is not given stays as it was.",
    )
    configure_parser.add_argument(
        "--connection-string-file", metavar="F|-", dest="connection_file",
        help="file holding the connection string (- for standard input); needed the first "
             "time")
    # a string given on the command line is refused without being echoed
    configure_parser.add_argument("--connection-string", dest="connection_argv",
                                  help=argparse.SUPPRESS)
    configure_parser.add_argument("stray", nargs="*", help=argparse.SUPPRESS)
    configure_parser.add_argument("--parent-ca", type=Path, metavar="PEM",
                                  help="CA certificate(s) of a parent with a private CA")
    configure_parser.add_argument("--mode", type=_mode, metavar="|".join(SYNC_MODES),
                                  help="ReadOnly: pull only; ReadWrite: local pushes go up")
    configure_parser.add_argument(
        "--repository", action="append", metavar="PATTERN", dest="repositories",
        help="a repository name or glob (app/*); repeat for more; replaces the list")
    configure_parser.add_argument(
        "--tag-filter", action="append", metavar="REGEX", dest="tag_filters",
        help="sync only tags this regex matches whole; repeat for more; replaces the list")
    configure_parser.add_argument("--schedule", metavar="CRON",
                                  help="5-field cron, local time ('* * * * *': continuously)")
    configure_parser.add_argument("--window", metavar="DURATION",
                                  help="ISO-8601 duration each schedule time opens (PT3H)")
    configure_parser.set_defaults(handler=configure_command)


def configure_command(args: argparse.Namespace) -> int:
    if args.connection_argv is not None:
        raise SyncConfigError(
            "the connection string is never given on the command line (ps shows it): use "
            "--connection-string-file F, or - for standard input")
    if args.stray:
        raise SyncConfigError(
            "sync configure takes only options; a connection string goes in a file or standard "
            "input (--connection-string-file F|-), never on the command line")
    _refuse_pasted(args)
    settings = configure(
        data_dir_of(args), connection=_read_connection(args.connection_file),
        parent_ca=args.parent_ca, mode=args.mode, repositories=args.repositories,
        tag_filters=args.tag_filters, schedule=args.schedule, window=args.window,
    )
    emit(args, "Connected registry configured.\n" + "\n".join(settings_lines(settings)),
         settings.to_json())
    return 0


def _mode(text: str) -> str:
    """--mode, checked without echoing what was given (it may be a pasted secret)."""
    if text not in SYNC_MODES:
        raise argparse.ArgumentTypeError(f"the mode is {' or '.join(SYNC_MODES)}")
    return text


def _refuse_pasted(args: argparse.Namespace) -> None:
    """A connection string pasted where a file name or a setting goes is refused unshown
    (an error that named the argument would print its password)."""
    given = {"--connection-string-file": [args.connection_file],
             "--parent-ca": [None if args.parent_ca is None else str(args.parent_ca)],
             "--repository": args.repositories or [], "--tag-filter": args.tag_filters or [],
             "--schedule": [args.schedule], "--window": [args.window]}
    for option, values in given.items():
        if any(v is not None and PASTED.search(v) for v in values):
            raise SyncConfigError(
                f"{option}: this looks like the connection string itself (not shown); put it "
                "in a file or pass - and pipe it on standard input "
                "(--connection-string-file F|-)")


def _read_connection(source: str | None) -> ConnectionString | None:
    if source is None:
        return None
    if not source.strip():
        raise SyncConfigError("--connection-string-file is empty: name a file, or - for "
                              "standard input")
    if source == "-":
        text = decode_connection_bytes(sys.stdin.buffer.read(), "standard input")
    else:
        text = read_connection_text(Path(source).expanduser())
    return parse_connection_string(text)


def status_command(args: argparse.Namespace) -> int:
    datadir = data_dir_of(args)
    if datadir.root.exists() and not datadir.root.is_dir():
        raise ConfigError(f"{datadir.root} is a file, not a data directory")
    if not datadir.is_enabled():
        raise NotEnabledError(f"the registry is not enabled in {datadir.root}: run "
                              "`edge-console enable` first")
    status = read_status(datadir)
    emit(args, "\n".join(status_lines(status)), status.to_json())
    return 0


def run_command(args: argparse.Namespace) -> int:
    """One pass now; ctrl-c cancels it at the next blob boundary. Outside the window, says
    when the next one opens and exits WINDOW_CLOSED_EXIT without running."""
    registry = open_registry(args, create=True)
    try:
        runner = open_runner(registry)
        until = None
        if not args.ignore_window:
            schedule = load_settings(registry.datadir, registry.config).schedule
            end = schedule.window_end(time.time())
            if end is None:
                runner.close()
                return _window_closed(schedule, time.time())
            until = None if end == math.inf else end
        record = _run_interruptibly(runner, until)
    finally:
        registry.close()
    emit(args, run_summary(record), record.to_json())
    if record.status in ("failed", "cancelled"):
        return fail(f"sync run {record.id} {record.status}"
                    + (f": {'; '.join(record.errors[:3])}" if record.errors else ""))
    return 0


def _window_closed(schedule: SyncSchedule, now: float) -> int:
    opens = schedule.next_start(now)
    print(f"edge-console: the sync window is closed (the next opens at "
          f"{_local_hm(opens, now)}, in {_span(opens - now)}); --ignore-window syncs now",
          file=sys.stderr)
    return WINDOW_CLOSED_EXIT


def _local_hm(at: float, now: float) -> str:
    """`02:00 local`, with the date when that is not today."""
    moment, today = time.localtime(at), time.localtime(now)
    day = "" if moment[:3] == today[:3] else time.strftime("%Y-%m-%d ", moment)
    return f"{day}{time.strftime('%H:%M', moment)} local"


def _span(seconds: float) -> str:
    """`3 h 12 min`, `2 d 4 h`, `5 min`, `40 s`."""
    whole = max(0, round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{secs} s"


def _run_interruptibly(runner: SyncRunner, until: float | None) -> SyncRunRecord:
    try:
        return with_progress(runner, lambda: runner.run("manual", until))
    finally:
        runner.close()


def with_progress(runner: SyncRunner, work: Callable[[], T]) -> T:
    """`work` (a pass of `runner`: a sync run, a stage) with its progress on standard error;
    ctrl-c cancels it at the next blob boundary."""
    def cancel() -> None:
        print("\ncancelling at the next blob boundary...", file=sys.stderr, flush=True)
        runner.cancel.set()

    with progress_on_stderr(runner):
        return run_interruptibly(work, cancel, "sync-cli")


class ProgressPrinter:
    """A sync's progress on standard error, from its events: a line for each repository as it
    ends; on a terminal, also one line rewritten in place (the repository under way, bytes so
    far). Nothing else: a log file gets one line a repository, however long the run."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.ended: set[str] = set()
        self.last: tuple[RepositoryProgress, ...] = ()
        self.status_shown = 0
        """The width of the in-place line on the terminal (0: none shown)."""
        self.lock = threading.Lock()  # events come from the run's threads

    def __call__(self, event: SyncEvent) -> None:
        with self.lock:
            if isinstance(event, SyncProgress):
                self.progress(event)
            elif isinstance(event, SyncFinished):
                self.finished(event)

    def progress(self, event: SyncProgress) -> None:
        if event.repositories:
            self.last = event.repositories
        for repository in event.repositories:
            if repository.state in ("done", "failed") and \
                    repository.repository not in self.ended:
                self.ended.add(repository.repository)
                self.say(repository_line(repository))
        if self.tty:
            self.show(status_line(event)[:self.columns() - 1])

    def finished(self, event: SyncFinished) -> None:
        for repository in self.last:  # under way when the run ended (stopped, cancelled)
            if repository.repository not in self.ended:
                self.ended.add(repository.repository)
                self.say(repository_line(repository, ended=event.status))
        self.say(f"sync run {event.run_id}: {event.status}")

    def columns(self) -> int:
        """The terminal's width: a longer line would wrap, and `\\r` not reach its start."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            columns = 0
        return columns or 80  # a terminal that says no size (0) gets the usual width

    def say(self, line: str) -> None:
        self.clear()
        print(line, file=self.stream, flush=True)

    def show(self, line: str) -> None:
        self.clear()
        self.stream.write(line)
        self.stream.flush()
        self.status_shown = len(line)

    def clear(self) -> None:
        if self.status_shown:
            self.stream.write("\r" + " " * self.status_shown + "\r")
            self.status_shown = 0


@contextmanager
def progress_on_stderr(runner: SyncRunner) -> Iterator[ProgressPrinter]:
    """Print the runner's progress (ProgressPrinter) while the block runs."""
    printer = ProgressPrinter(sys.stderr)
    subscription: Subscription[SyncEvent] = runner.registry.events.subscribe(
        printer, SyncProgress, SyncFinished)
    try:
        yield printer
    finally:
        subscription.close()
        with printer.lock:
            printer.clear()


def repository_line(repository: RepositoryProgress, ended: str = "") -> str:
    """`shop/web: done, 3 of 12 tags changed, 4 manifests, 7 blobs (41.0 MiB) copied`."""
    state = repository.state if not ended else f"{ended} while {repository.state}"
    tags = f"{repository.tags_changed} of {repository.tags_total or repository.tags_checked} " \
           f"tags changed"
    if repository.state == "waiting":
        tags = "not started"
    elif ended and repository.tags_total:
        tags += f" ({repository.tags_checked} checked)"
    copied = (f"{plural(repository.manifests_copied, 'manifest')}, "
              f"{plural(repository.blobs_copied, 'blob')} "
              f"({humanize.naturalsize(repository.bytes_copied, binary=True)}) copied")
    error = f": {repository.error}" if repository.error else ""
    return f"{repository.repository}: {state}, {tags}, {copied}{error}"


def status_line(event: SyncProgress) -> str:
    """The in-place line: `run 12 · shop/web 3/12 tags · 2 of 5 repositories ended · 41 MiB`."""
    parts = [f"sync run {event.run_id}"]
    under_way = [r for r in event.repositories if r.state == "syncing"]
    for repository in under_way[:2]:
        total = f"/{repository.tags_total}" if repository.tags_total else ""
        parts.append(f"{repository.repository} {repository.tags_checked}{total} tags")
    if len(under_way) > 2:
        parts.append(f"+{len(under_way) - 2} more")
    if not event.repositories and event.repository:
        parts.append(event.repository)
    ended = sum(r.state in ("done", "failed") for r in event.repositories)
    if event.repositories:
        parts.append(f"{ended} of {len(event.repositories)} repositories ended")
    parts.append(humanize.naturalsize(event.bytes_copied, binary=True))
    return " · ".join(parts)


def run_summary(record: SyncRunRecord) -> str:
    details = record.details
    conflicts = f" with {plural(len(record.conflicts), 'conflict')}" if record.conflicts else ""
    lines = [
        f"Sync run {record.id} {record.status}{conflicts} in {record.duration_seconds:.1f} s: "
        f"{details.get('tags_changed', 0)} of {details.get('tags_checked', 0)} tags changed "
        f"in {record.repositories} repositories; copied {record.manifests_copied} manifests, "
        f"{record.blobs_copied} blobs ({humanize.naturalsize(record.bytes_copied, binary=True)})."
    ]
    if record.manifests_pushed:
        lines.append(f"Pushed up {pushed_text(record)}.")
    if record.status == "stopped":
        lines.append("The sync window closed: the rest comes in the next window.")
    lines += [f"  conflict: {conflict_text(c)}" for c in record.conflicts]
    lines += [f"  error: {e}" for e in record.errors]
    return "\n".join(lines)


def conflict_text(conflict: dict[str, Any]) -> str:
    """One ReadWrite conflict as the run record names it: a tag moved on both sides (`app:v1
    moved here (sha256:abc…) and on the parent (sha256:def…): the parent's kept; the local
    manifest stays by digest`), or deleted on the parent (followed here, or kept, and why)."""
    name = f"{conflict.get('repository', '?')}:{conflict.get('tag', '?')}"
    local, kept = short(conflict.get("local")), str(conflict.get("kept", "parent"))
    reason = f": {conflict['reason']}" if conflict.get("reason") else ""
    if not conflict.get("parent"):
        if kept == "local":
            return f"{name} deleted on the parent, kept here ({local}){reason}"
        return f"{name} deleted on the parent: untagged here; {local} stays by digest"
    text = (f"{name} moved here ({local}) and on the parent "
            f"({short(conflict.get('parent'))}): the {kept}'s kept")
    if kept == "parent":
        text += "; the local manifest stays by digest"
    return text + reason


def short(digest: object) -> str:
    text = str(digest or "")
    if not text:
        return "none"
    algorithm, _, hexpart = text.partition(":")
    return f"{algorithm}:{hexpart[:12]}…" if len(hexpart) > 12 else text


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def pushed_text(record: SyncRunRecord) -> str:
    """ReadWrite: the manifests sent up, the blobs uploaded and those the parent mounted
    from another of its repositories (no bytes on the uplink)."""
    details = record.details
    uploaded = int(details.get("blobs_uploaded", 0))
    size = humanize.naturalsize(int(details.get("bytes_uploaded", 0)), binary=True)
    return (f"{record.manifests_pushed} manifests, {uploaded} blobs uploaded ({size}), "
            f"{int(details.get('blobs_mounted', 0))} mounted")


# ---- text ------------------------------------------------------------------------------------


def settings_lines(settings: SyncSettings) -> list[str]:
    c = settings.connection
    tags = ", ".join(settings.tag_filters) if settings.tag_filters else "all"
    repositories = ", ".join(settings.repositories) or "none (nothing syncs: add --repository)"
    schedule = f"{settings.schedule.cron}" + (
        " (continuously)" if settings.schedule.continuous else f", window {settings.window}")
    return [
        f"  connected registry  {c.name}",
        f"  parent              {c.parent_url}  (token {c.token_name})",
        f"  parent CA           {settings.parent_ca or 'the system CAs'}",
        f"  mode                {settings.mode}",
        f"  repositories        {repositories}",
        f"  tags                {tags}",
        f"  schedule            {schedule}",
        f"  parallel transfers  {settings.parallel_transfers}",
    ] + ([] if settings.enabled else ["  scheduled syncs     disabled ([sync] enabled = false)"])


def status_lines(status: SyncStatus) -> list[str]:
    if status.settings is None:
        return ["State: NotConfigured (no connected registry).",
                "Configure one with: edge-console sync configure --connection-string-file F "
                "(or - for standard input)"]
    never = " (never synced)" if status.last_sync is None else ""
    lines = [f"State: {status.state}{never}", *settings_lines(status.settings),
             f"  last sync           {_local(status.last_sync) or 'never'}",
             f"  window              {_window(status)}",
             f"  next run            {_local(status.next_run) or '-'}"]
    if status.running is not None:
        lines.append(f"  running             run {status.running.id} since "
                     f"{_local(status.running.started_at)}")
    if status.last_run is not None:
        run = status.last_run
        conflicts = f" with {plural(len(run.conflicts), 'conflict')}" if run.conflicts else ""
        lines.append(f"  last run            run {run.id} {run.status}{conflicts} at "
                     f"{_local(run.finished_at) or '-'}")
        lines.extend(f"    conflict: {conflict_text(c)}" for c in run.conflicts[:5])
        lines.extend(f"    error: {e}" for e in run.errors[:5])
    return lines


def _window(status: SyncStatus) -> str:
    if status.settings is not None and not status.settings.enabled:
        return "-"
    if status.window_end is None:
        return "closed"
    if status.window_end == float("inf"):
        return "open (continuously)"
    return f"open until {_local(status.window_end)}"


def _local(at: float | None) -> str | None:
    if at is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
