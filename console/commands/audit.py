"""`edge-console audit`: the audit log, newest first, filtered by time, principal, action and
repository."""

from __future__ import annotations

import argparse
import time
from typing import Any

from console.arg_types import positive_int
from console.cli_support import emit, open_registry
from registry_core.access.audit import AuditEntry, AuditFilter, parse_duration

COLUMNS = (("time", 19), ("principal", 16), ("address", 15), ("action", 16),
           ("repository", 24), ("reference", 24), ("result", 6))


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "audit", parents=[common],
        help="the audit log: who pushed, deleted, logged in and changed settings",
    )
    parser.add_argument("--since", metavar="DURATION",
                        help="only the last DURATION (30m, 1h, 7d, 2w, PT3H)")
    parser.add_argument("--principal", metavar="P",
                        help="only this principal (a user or token name, console, gc, sync)")
    parser.add_argument("--action", metavar="A",
                        help="only this action (manifest.push, manifest.delete, tag.move, "
                             "tag.delete, blob.delete, gc.run, sync.run, login, "
                             "token.create, config.change...; a refused request is named "
                             "by what it tried: manifest.pull, blob.upload, tags.list...)")
    parser.add_argument("--repository", metavar="R", help="only this repository")
    parser.add_argument("--limit", type=positive_int, default=100, metavar="N",
                        help="at most N entries, newest first (default 100)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    since = None if args.since is None else time.time() - parse_duration(args.since)
    chosen = AuditFilter(since=since, principal=args.principal, action=args.action,
                         repository=args.repository)
    registry = open_registry(args)
    try:
        entries = registry.audit.query(chosen, limit=max(args.limit, 1))
    finally:
        registry.close()
    emit(args, render(entries), {"entries": [e.to_json() for e in entries],
                                 "count": len(entries)})
    return 0


def render(entries: list[AuditEntry]) -> str:
    if not entries:
        return "No audit entries."
    lines = [_row([name for name, _ in COLUMNS])]
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at))
        count = e.detail.get("count")
        result = e.result if not count else f"{e.result} x{count}"
        lines.append(_row([when, e.principal, e.address or "-", e.action,
                           e.repository or "-", _short(e.reference or "-"), result]))
    return "\n".join(lines)


def _short(reference: str) -> str:
    """A digest shortened the way the console shows it (algorithm and 12 hex digits)."""
    algorithm, _, hexpart = reference.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart and len(hexpart) > 12 else reference


def _row(values: list[str]) -> str:
    cells = [v[:w].ljust(w) for v, (_, w) in zip(values[:-1], COLUMNS, strict=False)]
    return " ".join([*cells, values[-1]]).rstrip()
