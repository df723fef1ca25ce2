"""`edge-console sync configure|status|run`: the connected registry's settings, state, and a
sync now.

The connection string is read from a file or standard input, never from the command line
(where `ps` and the shell history show it), and never printed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import humanize

from console.cli_support import (
    data_dir_of,
    emit,
    fail,
    open_registry,
    run_interruptibly,
    wants_json,
)
from registry_core.config import SYNC_MODES
from registry_core.errors import SyncConfigError
from registry_core.events import SyncFinished
from registry_core.registry import Registry
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.connection import (
    ConnectionString,
    decode_connection_bytes,
    parse_connection_string,
    read_connection_text,
)
from registry_core.sync.runner import SyncRunner, open_runner
from registry_core.sync.settings import SyncSettings, configure, load_settings
from registry_core.sync.status import SyncStatus, read_status


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
    run = actions.add_parser("run", parents=[common],
                             help="one sync now (within the window, if one is open)")
    run.add_argument("--ignore-window", action="store_true",
                     help="run to the end even outside the sync window")
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
    configure_parser.add_argument("--mode", choices=SYNC_MODES,
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
    settings = configure(
        data_dir_of(args), connection=_read_connection(args.connection_file),
        parent_ca=args.parent_ca, mode=args.mode, repositories=args.repositories,
        tag_filters=args.tag_filters, schedule=args.schedule, window=args.window,
    )
    emit(args, "Connected registry configured.\n" + "\n".join(settings_lines(settings)),
         settings.to_json())
    return 0


def _read_connection(source: str | None) -> ConnectionString | None:
    if source is None:
        return None
    if source == "-":
        text = decode_connection_bytes(sys.stdin.buffer.read(), "standard input")
    else:
        text = read_connection_text(Path(source).expanduser())
    return parse_connection_string(text)


def status_command(args: argparse.Namespace) -> int:
    status = read_status(data_dir_of(args))
    emit(args, "\n".join(status_lines(status)), status.to_json())
    return 0


def run_command(args: argparse.Namespace) -> int:
    """One pass now; ctrl-c cancels it at the next blob boundary."""
    registry = open_registry(args, create=True)
    try:
        runner = open_runner(registry)
        until = None if args.ignore_window else _window_end(registry)
        record = _run_interruptibly(runner, until, quiet=wants_json(args))
    finally:
        registry.close()
    emit(args, run_summary(record), record.to_json())
    if record.status in ("failed", "cancelled"):
        return fail(f"sync run {record.id} {record.status}"
                    + (f": {'; '.join(record.errors[:3])}" if record.errors else ""))
    return 0


def _window_end(registry: Registry) -> float | None:
    """The open window's end; outside every window, the run stops at once ('stopped')."""
    end = load_settings(registry.datadir, registry.config).schedule.window_end(time.time())
    if end is None:
        return time.time()
    return None if end == math.inf else end


def _run_interruptibly(runner: SyncRunner, until: float | None, quiet: bool) -> SyncRunRecord:
    progress = None if quiet else runner.registry.events.subscribe(_say, SyncFinished)

    def cancel() -> None:
        print("\ncancelling at the next blob boundary...", file=sys.stderr, flush=True)
        runner.cancel.set()

    try:
        return run_interruptibly(lambda: runner.run("manual", until), cancel, "sync-cli")
    finally:
        if progress is not None:
            progress.close()
        runner.close()


def _say(event: SyncFinished) -> None:
    print(f"sync run {event.run_id}: {event.status}", file=sys.stderr, flush=True)


def run_summary(record: SyncRunRecord) -> str:
    details = record.details
    lines = [
        f"Sync run {record.id} {record.status} in {record.duration_seconds:.1f} s: "
        f"{details.get('tags_changed', 0)} of {details.get('tags_checked', 0)} tags changed "
        f"in {record.repositories} repositories; copied {record.manifests_copied} manifests, "
        f"{record.blobs_copied} blobs ({humanize.naturalsize(record.bytes_copied, binary=True)})."
    ]
    if record.manifests_pushed:
        lines.append(f"Pushed up {pushed_text(record)}.")
    lines += [f"  error: {e}" for e in record.errors]
    return "\n".join(lines)


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
        lines.append(f"  last run            run {run.id} {run.status} at "
                     f"{_local(run.finished_at) or '-'}")
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
