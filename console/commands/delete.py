"""`edge-console delete REPO@DIGEST|REPO:TAG`: delete a manifest by digest, or remove one tag.

As on the console's Images screen: a REPO:TAG names the manifest the tag points at, and the
manifest goes by digest with every tag on it; `--untag` removes only that tag. The preview
(registry_core.preview: the tags that go, index children, referrers left dangling, the bytes
a garbage collection then frees) is printed first; `--dry-run` stops there. A manifest that
an index lists is refused (delete the index), and so is a manifest or tag a stage pins (the
core's refusal, asked before the preview) unless `--force`: then the preview names the pin and
the audit row records it. The bytes come back with the next `gc`.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import humanize

from console.cli_support import emit, open_registry, wants_json
from console.widgets.format import short_digest, size
from registry_core import browse
from registry_core.errors import (
    DigestInvalid,
    EdgeError,
    ManifestUnknown,
    NameInvalid,
    Pinned,
    Unsupported,
)
from registry_core.identity import CONSOLE
from registry_core.kube import ClusterError, ImageUse, InUse
from registry_core.kube.cluster import in_use_if_configured
from registry_core.preview import DeletePreview, preview_delete
from registry_core.reference import Digest, parse_digest, validate_name, validate_tag
from registry_core.registry import Registry


class Refused(EdgeError):
    """The delete would break something (an index, a running workload): nothing was deleted."""


class Unchecked(Refused):
    """The cluster could not be asked whether it uses the image: nothing was deleted."""


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "delete",
        parents=[common],
        help="delete an image by digest (or remove one tag), after showing what goes",
        description="Delete the manifest REPO@DIGEST, or the one REPO:TAG points at, with "
        "every tag on it (the Images screen's delete); --untag removes only the tag. The "
        "space comes back with the next `edge-console gc`.",
    )
    parser.add_argument("reference", metavar="REPO@DIGEST|REPO:TAG", help="what to delete")
    parser.add_argument("--untag", action="store_true",
                        help="remove only this tag (REPO:TAG); the manifest and its other tags "
                        "stay")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be deleted and the bytes freed; delete nothing")
    parser.add_argument("--force", action="store_true",
                        help="delete even what workloads in the cluster use or a stage pins "
                        "(the pin is named in the audit log)")
    parser.set_defaults(handler=run)


def parse_target(text: str) -> tuple[str, Digest | str]:
    """(repository, digest or tag) from `REPO@DIGEST` or `REPO:TAG`; one-line errors."""
    try:
        name, at, digest = text.partition("@")
        if at:
            return validate_name(name), parse_digest(digest)
        name, colon, tag = text.rpartition(":")
        if not colon:
            raise NameInvalid("expected REPO@DIGEST or REPO:TAG")
        return validate_name(name), validate_tag(tag)
    except (NameInvalid, DigestInvalid, Unsupported) as exc:
        raise NameInvalid(f"invalid reference {text[:300]!r}: {exc}") from None


def cluster_in_use(args: argparse.Namespace, registry: Registry, what: str) -> InUse | None:
    """The cluster's images in use; None when no cluster is configured (nothing to check),
    or when it cannot be asked and --force says to go ahead. A configured cluster that does
    not answer refuses the delete: it must not go ahead on a guess."""
    try:
        return in_use_if_configured(registry)
    except ClusterError as exc:
        if args.force:
            return None
        raise Unchecked(
            f"cannot check whether the cluster uses {what}: {exc}; use --force to delete it "
            "anyway"
        ) from None


def run(args: argparse.Namespace) -> int:
    repository, ref = parse_target(args.reference)
    if args.untag and isinstance(ref, Digest):
        raise NameInvalid("--untag removes one tag: give REPO:TAG, not a digest")
    registry = open_registry(args)
    try:
        digest = _resolve(registry, repository, ref)
        if args.untag:
            assert isinstance(ref, str)
            return _untag(args, registry, repository, ref, digest)
        return _delete(args, registry, repository, digest)
    finally:
        registry.close()


def _resolve(registry: Registry, repository: str, ref: Digest | str) -> str:
    """The digest a tag points at now (what the preview and the delete then name)."""
    if isinstance(ref, Digest):
        return str(ref)
    try:
        return str(registry.get_manifest(repository, ref).digest)
    except ManifestUnknown:
        raise ManifestUnknown(f"no tag {repository}:{ref} in this registry") from None


def _refuse_if_used(args: argparse.Namespace, users: list[ImageUse], what: str) -> None:
    if users and not args.force:
        names = ", ".join(f"{u.kind.lower()} {u.namespace}/{u.name}" for u in users[:3])
        more = f" and {len(users) - 3} more" if len(users) > 3 else ""
        raise Refused(f"{what} is in use by {names}{more}: use --force to delete it anyway")


def _delete(
    args: argparse.Namespace,
    registry: Registry,
    repository: str,
    digest: str,
) -> int:
    what = f"{repository}@{digest}"
    try:
        preview = preview_delete(registry, repository, digest,
                                 in_use=cluster_in_use(args, registry, what))
    except ManifestUnknown:
        raise ManifestUnknown(f"no manifest {repository}@{digest} in this registry") from None
    if not preview.allowed:
        raise Refused(f"{what} is part of the index {preview.blocked_by[0]}: "
                      "delete the index instead")
    pin = _pin(args, registry, repository, digest)
    _refuse_if_used(args, preview.in_use_by, what)
    users = [u.to_json() for u in preview.in_use_by]
    payload: dict[str, Any] = {
        **preview.to_json(),
        "untag": False,
        "dry_run": bool(args.dry_run),
        "deleted": False,
    }
    if pin:
        payload["pin_overridden"] = pin
    if not wants_json(args):
        print(preview_text(preview, users) + _pin_text(pin), flush=True)
    if args.dry_run:
        emit(args, "\nDry run: nothing was deleted.", payload)
        return 0
    try:
        result = registry.delete_manifest(repository, digest, who=CONSOLE,
                                          override_pins=args.force)
    except ManifestUnknown:
        raise ManifestUnknown(f"{what} was deleted meanwhile (a client or a GC)") from None
    payload.update(tags=list(result.tags), deleted=True)
    tags = ", ".join(result.tags) if result.tags else "no tags"
    text = (f"\nDeleted {repository}@{short_digest(digest)} ({tags}). "
            f"Run `edge-console gc` to free {size(preview.bytes_freed)}.")
    emit(args, text, payload)
    return 0


def _untag(
    args: argparse.Namespace,
    registry: Registry,
    repository: str,
    tag: str,
    digest: str,
) -> int:
    what = f"{repository}:{tag}"
    pin = _pin(args, registry, repository, tag)
    in_use = cluster_in_use(args, registry, what)
    used = [] if in_use is None else in_use.users_of_tag(repository, tag)
    _refuse_if_used(args, used, what)
    users = [u.to_json() for u in used]
    others = [t for t in browse.manifest_detail(registry, repository, digest).tags if t != tag]
    payload: dict[str, Any] = {
        "repository": repository,
        "digest": digest,
        "tags": [tag],
        "other_tags": others,
        "bytes_freed": 0,
        "in_use_by": users,
        "untag": True,
        "dry_run": bool(args.dry_run),
        "deleted": False,
    }
    if pin:
        payload["pin_overridden"] = pin
    if not wants_json(args):
        print(untag_text(registry, repository, tag, digest, others, users) + _pin_text(pin),
              flush=True)
    if args.dry_run:
        emit(args, "\nDry run: nothing was deleted.", payload)
        return 0
    registry.untag(repository, tag, who=CONSOLE, override_pins=args.force)
    payload["deleted"] = True
    emit(args, f"\nRemoved the tag {repository}:{tag}.", payload)
    return 0


def _pin(args: argparse.Namespace, registry: Registry, repository: str, reference: str) -> str:
    """What the delete itself would refuse for a stage's pin: raised, or with --force the
    refusal's text to show and record ("" when nothing pins it)."""
    try:
        registry.refuse_if_pinned(repository, reference)
    except Pinned as exc:
        if not args.force:
            raise
        return str(exc)
    return ""


def _pin_text(pin: str) -> str:
    return f"\nPINNED (deleted anyway: --force): {pin}" if pin else ""


# ---- what the technician reads ----------------------------------------------------------------


def preview_text(preview: DeletePreview, users: list[dict[str, Any]]) -> str:
    """The preview as the Images screen's confirmation words it, digests in full."""
    lines = [
        f"Delete {preview.repository}@{preview.digest}",
        f"  media type: {preview.media_type}",
    ]
    if preview.tags:
        lines.append(f"  tags deleted with it ({len(preview.tags)}): {', '.join(preview.tags)}")
    else:
        lines.append("  tags deleted with it: none (the manifest is untagged)")
    for child in preview.children:
        platform = f" {child.platform}" if child.platform else ""
        lines.append(f"  child {child.digest}{platform}: {child.fate} ({child.reason})")
    if preview.referrers:
        lines.append(f"  referrers left without their subject ({len(preview.referrers)}):")
        for ref in preview.referrers:
            kind = ref.artifact_type or ref.media_type
            lines.append(f"    {ref.digest} {kind}: {ref.fate} ({ref.reason})")
    lines += _in_use_lines(users)
    lines.append(
        f"A garbage collection will then free {size(preview.bytes_freed)} "
        f"({preview.bytes_freed} bytes in {_blobs(len(preview.blobs_freed))} no other image "
        "uses)."
    )
    if preview.bytes_in_grace:
        grace = humanize.naturaldelta(dt.timedelta(seconds=preview.grace_period_seconds))
        lines.append(
            f"Of that, {size(preview.bytes_in_grace)} was pushed less than {grace} ago, inside "
            "the GC grace period: a GC frees it once that has passed, or at once with "
            "`edge-console gc --grace-period 0`."
        )
    lines.append("Clients pulling this digest or these tags will get 'manifest unknown'.")
    return "\n".join(lines)


def untag_text(
    registry: Registry,
    repository: str,
    tag: str,
    digest: str,
    others: list[str],
    users: list[dict[str, Any]],
) -> str:
    lines = [
        f"Remove the tag {repository}:{tag}",
        f"  it points at {digest}, which stays and can still be pulled by digest",
        f"  other tags on it stay: {', '.join(others)}" if others else
        "  it is the manifest's last tag: the manifest becomes untagged",
        *_in_use_lines(users),
    ]
    if not others and registry.config.gc.delete_untagged:
        lines.append("delete_untagged is on: a garbage collection will then collect it.")
    else:
        lines.append("Nothing is freed: the manifest stays.")
    return "\n".join(lines)


def _blobs(n: int) -> str:
    return f"{n} blob" if n == 1 else f"{n} blobs"


def _in_use_lines(users: list[dict[str, Any]]) -> list[str]:
    if not users:
        return []
    return ["  in use in the cluster by:"] + [
        f"    {u['kind'].lower()} {u['namespace']}/{u['name']} (container {u['container']}, "
        f"{u['state']})"
        for u in users
    ]
