"""`edge-console images [REPO]`: the repositories, or one repository's tags.

Sizes, counts and dates are registry_core.browse's, the same the console's Images screen shows.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from console.cli_support import data_dir_of, emit, open_registry
from console.widgets.format import image_created, size, when
from registry_core import browse
from registry_core.errors import NameUnknown
from registry_core.kube import ClusterError, ImageUse
from registry_core.kube.cluster import in_use_if_configured
from registry_core.registry import Registry
from registry_core.store.catalog import TagRow

UNTAGGED = "<untagged>"
NO_IMAGES = "No images yet."


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "images",
        parents=[common],
        help="list repositories, or one repository's tags",
        description="Without REPO: every repository with its tag and manifest counts and "
        "size. With REPO: its tags (and untagged manifests) with digest, size, image "
        "creation time and what uses them in the cluster.",
    )
    parser.add_argument("repository", metavar="REPO", nargs="?", help="a repository name")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    datadir = data_dir_of(args)
    if not datadir.database.exists() and datadir.is_enabled():
        # Enabled, never served: no images, and no reason to create the database here.
        if args.repository is None:
            emit(args, NO_IMAGES, {"repositories": []})
            return 0
        raise _unknown(args.repository)
    registry = open_registry(args)
    try:
        if args.repository is None:
            return _repositories(args, registry)
        return _tags(args, registry, args.repository)
    finally:
        registry.close()


def in_use_in(
    registry: Registry, repository: str, digests: Sequence[str]
) -> Mapping[str, list[dict[str, str]]]:
    """What uses each of `digests` of `repository` in the cluster (absent: nothing). No
    cluster configured: nothing; one not answering: a warning, and the column stays empty."""
    try:
        in_use = in_use_if_configured(registry)
    except ClusterError as exc:
        print(f"edge-console: warning: the IN USE column is empty: {exc}", file=sys.stderr)
        return {}
    if in_use is None:
        return {}
    found = {d: [_user(u) for u in in_use.users_of(repository, d)] for d in digests}
    return {d: users for d, users in found.items() if users}


def _user(use: ImageUse) -> dict[str, str]:
    return {k: str(v) for k, v in use.to_json().items()}


# ---- repositories -------------------------------------------------------------------------


def _repositories(args: argparse.Namespace, registry: Registry) -> int:
    # browse has no paged listing of repositories; its one query answers 10,000 in well
    # under a second (bench/), and each row is small.
    repos = browse.repositories(registry)
    payload = {
        "repositories": [
            {
                "name": r.name,
                "tag_count": r.tag_count,
                "manifest_count": r.manifest_count,
                "size_bytes": r.size_bytes,
                "last_push": r.last_push,
            }
            for r in repos
        ]
    }
    if not repos:
        emit(args, NO_IMAGES, payload)
        return 0
    rows = [
        [r.name, str(r.tag_count), str(r.manifest_count), size(r.size_bytes), when(r.last_push)]
        for r in repos
    ]
    text = table(["REPOSITORY", "TAGS", "MANIFESTS", "SIZE", "LAST PUSH (UTC)"], rows,
                 right={1, 2, 3})
    emit(args, text, payload)
    return 0


# ---- one repository's tags ------------------------------------------------------------------


def _tags(args: argparse.Namespace, registry: Registry, repository: str) -> int:
    tagged = browse.tags(registry, repository)  # validates the name
    untagged = browse.untagged(registry, repository)
    if not tagged and not untagged:
        raise _unknown(repository)
    in_use = in_use_in(registry, repository, [t.digest for t in (*tagged, *untagged)])
    payload = {
        "repository": repository,
        "tags": [{"tag": t.tag, **_manifest_json(t, in_use)} for t in tagged],
        "untagged": [_manifest_json(t, in_use) for t in untagged],
    }
    rows = [
        [
            t.tag or UNTAGGED,
            t.digest,
            size(t.size_bytes),
            image_created(t.image_created),
            t.platforms or "-",
            _in_use_text(in_use.get(t.digest, [])),
        ]
        for t in (*tagged, *untagged)
    ]
    text = table(["TAG", "DIGEST", "SIZE", "CREATED", "PLATFORMS", "IN USE"], rows, right={2})
    emit(args, text, payload)
    return 0


def _unknown(repository: str) -> NameUnknown:
    return NameUnknown(
        f"no repository {repository!r} in this registry (`edge-console images` lists them)"
    )


def _manifest_json(
    row: TagRow, in_use: Mapping[str, list[dict[str, str]]]
) -> dict[str, Any]:
    return {
        "digest": row.digest,
        "media_type": row.media_type,
        "size_bytes": row.size_bytes,
        "created": row.image_created,
        "platforms": row.platforms,
        "pushed_at": row.pushed_at,
        "in_use": list(in_use.get(row.digest, [])),
    }


def _in_use_text(users: Sequence[Mapping[str, str]]) -> str:
    if not users:
        return "-"
    names = [f"{u.get('kind', '?').lower()} {u.get('name', '?')}" for u in users[:2]]
    more = f" +{len(users) - 2}" if len(users) > 2 else ""
    return ", ".join(names) + more


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """An aligned plain-text table; columns in `right` are right-aligned (numbers)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])
