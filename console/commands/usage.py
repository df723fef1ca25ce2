"""`edge-console usage`: storage usage of the registry, answered from SQLite."""

from __future__ import annotations

import argparse
import time
from typing import Any

import humanize

from console.arg_types import positive_int
from console.cli_support import emit, open_registry
from registry_core.usage import UsageReport, usage_report


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "usage", parents=[common], help="storage usage: capacity, per repository, reclaimable"
    )
    parser.add_argument("--top", type=positive_int, default=0, metavar="N",
                        help="list only the N largest repositories (default: all)")
    parser.set_defaults(handler=run)


def _size(n: int) -> str:
    return humanize.naturalsize(n, binary=True)


def run(args: argparse.Namespace) -> int:
    registry = open_registry(args)
    try:
        report = usage_report(registry)
    finally:
        registry.close()
    emit(args, render(report, args.top), report.to_json())
    return 0


def render(report: UsageReport, top: int = 0) -> str:
    pct = 100.0 * report.used_bytes / report.capacity_bytes if report.capacity_bytes else 0.0
    lines = [
        f"Capacity     {_size(report.capacity_bytes):>12}"
        + (" (quota)" if report.quota_bytes and report.quota_bytes == report.capacity_bytes
           else ""),
        f"Used         {_size(report.used_bytes):>12}  ({pct:.1f}% of capacity; "
        f"{report.blobs} blobs, {report.manifests} manifests, {report.tags} tags)",
        f"Free         {_size(report.free_bytes):>12}  (reserve {_size(report.reserve_bytes)})",
        f"Reclaimable  {_size(report.reclaimable_bytes):>12}  "
        f"({_size(report.reclaimable_in_grace_bytes)} of it still inside the "
        f"{report.grace_period_seconds:g} s grace period)",
        f"Untagged     {_size(report.untagged_bytes):>12}  "
        f"({report.untagged_manifests} manifests not reachable from a tag)",
    ]
    if report.uploads_in_progress:
        lines.append(f"Uploads      {_size(report.uploads_bytes):>12}  "
                     f"({report.uploads_in_progress} in progress)")
    if report.low_space:
        lines.append("LOW SPACE: new uploads are refused; delete images and run `edge-console gc`.")
    if report.low_space_refusals:
        last = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.last_refusal_at))
                if report.last_refusal_at else "?")
        lines.append(f"Uploads refused for low space: {report.low_space_refusals} (last {last})")
    repos = sorted(report.repositories, key=lambda r: (-r.total_bytes, r.name))
    if top:
        repos = repos[:top]
    if repos:
        lines.append("")
        lines.append(f"{'repository':40} {'total':>10} {'exclusive':>10} {'shared':>10} "
                     f"{'untagged':>10} {'tags':>5}")
        for r in repos:
            lines.append(
                f"{r.name[:40]:40} {_size(r.total_bytes):>10} {_size(r.exclusive_bytes):>10} "
                f"{_size(r.shared_bytes):>10} {_size(r.untagged_bytes):>10} {r.tags:>5}"
            )
    return "\n".join(lines)
