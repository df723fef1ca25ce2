"""`edge-console stage REF...|--file F [--check] [--release]`: a deployment's images pulled
from the parent now and pinned until released; --check says whether all are here."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from console.cli_support import emit, fail, open_registry, wants_json
from console.commands.sync import with_progress
from registry_core.durations import parse_duration
from registry_core.errors import EdgeError, NameInvalid
from registry_core.identity import CONSOLE
from registry_core.registry import Registry
from registry_core.store.stages import StageItem
from registry_core.sync import staging
from registry_core.sync.runner import SyncRunner, open_runner


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "stage", parents=[common],
        help="pull a deployment's images from the parent now and pin them",
        description="Stage images (REPOSITORY:TAG) before a maintenance window: pulled from "
                    "the parent now, checked, and kept (GC and deletes leave them) until "
                    "released. --check: exit 0 only when every listed image is here.",
    )
    parser.add_argument("refs", nargs="*", metavar="REPO:TAG")
    parser.add_argument("--file", type=Path, metavar="F",
                        help="a file listing REPO:TAG, one a line (- for standard input)")
    parser.add_argument("--stage", default=staging.DEFAULT_STAGE, metavar="NAME",
                        help="the stage's name (default: default)")
    parser.add_argument("--expires", metavar="DURATION",
                        help="unpin after this long (ISO 8601, e.g. P2D); default: until "
                             "released")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true",
                      help="say whether each image is here with the parent's digest")
    what.add_argument("--release", action="store_true", help="unpin the stage's images")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    misuse = _misuse(args)
    if misuse:
        return fail(misuse)
    pairs = staging.parse_refs(_listed(args))
    expires = args.expires
    expires_in = None if expires is None else parse_duration(expires, "stage --expires")
    registry = open_registry(args, create=True)
    try:
        if args.release:
            return _release(args, registry)
        if args.check:
            return _check(args, registry, pairs)
        if not pairs:
            raise NameInvalid("name the images to stage (REPO:TAG ... or --file F)")
        return _stage(args, registry, pairs, expires_in)
    finally:
        registry.close()


def _misuse(args: argparse.Namespace) -> str:
    """What is wrong with the options together ('' when nothing)."""
    if not args.stage.strip():
        return "--stage is empty: name the stage"
    if args.release and (args.refs or args.file is not None):
        return ("--release releases a whole stage (name it with --stage NAME); it takes "
                "no REPO:TAG or --file")
    if args.expires is not None and (args.check or args.release):
        return f"--expires is for staging; it means nothing with --{_mode(args)}"
    return ""


def _mode(args: argparse.Namespace) -> str:
    return "release" if args.release else "check"


def _release(args: argparse.Namespace, registry: Registry) -> int:
    released = staging.release(registry, args.stage, who=CONSOLE)
    text = f"Released {released} images of stage {args.stage}." if released else \
        f"Stage {args.stage} was released already: nothing to release."
    emit(args, text, {"stage": args.stage, "released": released})
    return 0


def _listed(args: argparse.Namespace) -> list[str]:
    refs = list(args.refs)
    if args.file is not None:
        refs += _read_list(args.file).splitlines()
    return refs


def _read_list(path: Path) -> str:
    stdin = str(path) == "-"
    data = sys.stdin.buffer.read() if stdin else path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        name = "standard input" if stdin else str(path)
        raise NameInvalid(f"{name}: not UTF-8 text (a stage list is REPO:TAG lines)") \
            from None


def _stage(args: argparse.Namespace, registry: Registry, pairs: list[tuple[str, str]],
           expires_in: float | None) -> int:
    expires = None if expires_in is None else time.time() + expires_in
    runner = open_runner(registry)
    try:
        record, items = with_progress(runner, lambda: staging.stage(
            registry, runner, pairs, args.stage, expires, who=CONSOLE))
    finally:
        runner.close()
    lines = [_item_line(i) for i in items]
    failed = [i for i in items if i.status != "staged"]
    lines.append(f"\n{len(items) - len(failed)} of {len(items)} staged (sync run {record.id}).")
    emit(args, "\n".join(lines), {"stage": args.stage, "run": record.to_json(False),
                                  "items": [i.to_json() for i in items]})
    return 1 if failed else 0


def _check(args: argparse.Namespace, registry: Registry,
           pairs: list[tuple[str, str]]) -> int:
    if not pairs:  # the stage's own list
        with registry.store.snapshot():
            pairs = [(i.repository, i.tag) for i in registry.store.stages.items(args.stage)]
        if not pairs and not wants_json(args):
            return fail(f"stage {args.stage} lists no images (and no REPO:TAG or --file was "
                        "given): nothing to check")
    runner = _runner_or_none(registry)
    try:
        results = staging.check(registry, pairs, runner)
    finally:
        if runner is not None:
            runner.close()
    ready = all(r.ok for r in results) and bool(results)
    lines = [f"{r.repository}:{r.tag}  {r.state}  {r.message}".rstrip() for r in results]
    lines.append("\n" + _verdict(ready, results))
    emit(args, "\n".join(lines), {"stage": args.stage, "ready": ready,
                                  "images": [r.to_json() for r in results]})
    return 0 if ready else fail("not every image is here" if results else "nothing to check")


def _verdict(ready: bool, results: list[staging.Readiness]) -> str:
    expired = sum(r.state == "expired" for r in results)
    if not ready:
        return "NOT ready"
    if expired:
        return (f"ready, but {expired} image{'s are' if expired > 1 else ' is'} no longer "
                "pinned (its stage expired)")
    return "ready"


def _runner_or_none(registry: Registry) -> SyncRunner | None:
    try:
        return open_runner(registry)
    except EdgeError:
        return None


def _item_line(item: StageItem) -> str:
    digest = item.digest[:19] if item.digest else "-"
    reason = f"  {item.reason}" if item.reason else ""
    return f"{item.repository}:{item.tag}  {item.status}  {digest}{reason}"
