"""Images: repositories → tags → manifest detail; filter, sort, delete by digest, untag."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar, Literal

import humanize
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Input, Static

from console.context import ConsoleContext
from console.screens import images_transfer
from console.screens.base import View
from console.widgets.cluster_link import (
    Abandoned,
    abandonable,
    labels_by_manifest,
    no_cluster,
)
from console.widgets.confirm import ConfirmationModal
from console.widgets.format import ago, image_created, short_digest, size
from console.widgets.virtual_table import Column, Row, VirtualTable
from registry_core import browse
from registry_core.browse import ManifestDetail
from registry_core.errors import EdgeError, Pinned
from registry_core.identity import CONSOLE
from registry_core.kube import ClusterError, ImageUse, InUse
from registry_core.manifests import DOCKER_CONFIG, OCI_CONFIG
from registry_core.preview import DeletePreview, preview_delete
from registry_core.sync import staging

Level = Literal["repos", "tags", "all", "detail"]

# Row layouts (tuples, as the virtual table keeps them).
# repositories: (name, tag_count, size_bytes, last_push, manifest_count)
# tags:         (repository, tag, digest, size_bytes, image_created, platforms, pushed_at,
#                (repository, digest))  <- the key of the "In use" column
UNTAGGED = "<untagged>"
LISTED_USERS = 8
"""The delete confirmation names at most this many of the cluster's users of a manifest."""
InUseLabels = dict[tuple[str, str], str]
NOT_CHECKED = "Not checked whether the cluster uses it"


IMAGE_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})


@dataclass(frozen=True)
class Target:
    """A manifest the technician pointed at."""

    repository: str
    digest: str
    tag: str | None


class ImagesLoaded(Message):
    def __init__(self, level: Level, repository: str | None, rows: list[Row],
                 pinned: frozenset[tuple[str, str]] = frozenset()) -> None:
        super().__init__()
        self.level = level
        self.repository = repository
        self.rows = rows
        self.pinned = pinned


class DetailLoaded(Message):
    def __init__(self, detail: ManifestDetail) -> None:
        super().__init__()
        self.detail = detail


class ImagesFailed(Message):
    def __init__(self, text: str, gone: bool = False) -> None:
        super().__init__()
        self.text = text
        self.gone = gone


class PreviewReady(Message):
    def __init__(self, preview: DeletePreview, cluster_note: str = "") -> None:
        super().__init__()
        self.preview = preview
        self.cluster_note = cluster_note


class InUseLoaded(Message):
    """The cluster's images in use, as the "In use" column's labels (None: no cluster to
    ask, or it did not answer)."""

    def __init__(self, labels: InUseLabels | None) -> None:
        super().__init__()
        self.labels = labels


def in_use_labels(edge: ConsoleContext) -> InUseLabels | None:
    """Blocking. None when there is no cluster or it does not answer (logged, not shown:
    the column stays away rather than nagging)."""
    try:
        in_use = edge.cluster().in_use()
    except (EdgeError, OSError):  # ClusterError, or the registry's graph could not be read
        return None
    return labels_by_manifest(in_use.uses, in_use.graph.children, in_use.graph.parents)


def cluster_in_use(edge: ConsoleContext) -> tuple[InUse | None, str]:
    """The cluster's images in use for the delete preview, and a note for the confirmation
    when the cluster could not be asked ((None, "") when no cluster is configured at all)."""
    try:
        return edge.cluster().in_use(), ""
    except ClusterError as exc:
        if no_cluster(exc):
            return None, ""
        return None, f"{NOT_CHECKED}: {exc}"
    except (EdgeError, OSError) as exc:
        return None, f"{NOT_CHECKED}: {exc}"


class ManifestDeleted(Message):
    def __init__(
        self, target: Target, tags: tuple[str, ...], bytes_freed: int | None, untag: bool
    ) -> None:
        super().__init__()
        self.target = target
        self.tags = tags
        self.bytes_freed = bytes_freed
        self.untag = untag


class UntagReady(Message):
    def __init__(self, target: Target, users: list[ImageUse], cluster_note: str) -> None:
        super().__init__()
        self.target = target
        self.users = users
        self.cluster_note = cluster_note


def untag_body(target: Target, users: list[ImageUse], cluster_note: str = "") -> str:
    """The untag dialog: only the tag goes; who in the cluster pulls by that tag."""
    lines = [
        f"Only the tag goes. The manifest {target.digest} stays and can still be pulled by "
        "digest; other tags on it stay too.",
    ]
    if users:
        lines += ["", f"WARNING: the cluster names this tag ({len(users)}): pods that pull it "
                      "again will fail."]
        lines += [f"  {use.describe()}" for use in users[:LISTED_USERS]]
        if len(users) > LISTED_USERS:
            lines.append(f"  … and {len(users) - LISTED_USERS} more")
    elif cluster_note:
        lines += ["", cluster_note]
    return "\n".join(lines)


def delete_body(preview: DeletePreview, cluster_note: str = "") -> str:
    """What the confirmation dialog says: the digest, who in the cluster uses it, every tag,
    what a GC will free."""
    lines = [
        f"Repository: {preview.repository}",
        f"Digest:     {preview.digest}",
        "",
    ]
    users = preview.in_use_by
    if users:
        lines.append(
            f"WARNING: the cluster uses this image ({len(users)}): pods that pull it again "
            "will fail."
        )
        lines += [f"  {use.describe()}" for use in users[:LISTED_USERS]]
        if len(users) > LISTED_USERS:
            lines.append(f"  … and {len(users) - LISTED_USERS} more")
        lines.append("")
    elif cluster_note:
        lines += [cluster_note, ""]
    if preview.tags:
        lines.append(f"Tags deleted with it ({len(preview.tags)}): {', '.join(preview.tags)}")
    else:
        lines.append("Tags deleted with it: none (the manifest is untagged)")
    for child in preview.children:
        platform = f" {child.platform}" if child.platform else ""
        lines.append(
            f"  child {short_digest(child.digest)}{platform}: {child.fate} ({child.reason})"
        )
    if preview.referrers:
        lines.append(f"Referrers left without their subject: {len(preview.referrers)}")
        for ref in preview.referrers:
            kind = ref.artifact_type or ref.media_type
            lines.append(f"  {short_digest(ref.digest)} {kind}: {ref.fate}")
    lines.append("")
    lines.append(
        f"A garbage collection will then free {size(preview.bytes_freed)} "
        f"({len(preview.blobs_freed)} blobs no other image uses)."
    )
    if preview.bytes_in_grace:
        grace = humanize.naturaldelta(dt.timedelta(seconds=preview.grace_period_seconds))
        lines.append(
            f"Of that, {size(preview.bytes_in_grace)} was pushed less than {grace} ago, inside "
            "the GC grace period: a GC frees it once that has passed, or at once with "
            "grace period 0 on the GC screen."
        )
    lines.append("Clients pulling this digest or these tags will get 'manifest unknown'.")
    return "\n".join(lines)


class ImagesView(View):
    tab_id = "images"
    tab_title = "Images"
    help_notes = "Deleting frees no space by itself: run a garbage collection (5) afterwards."
    can_filter = True

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="images.back",
                tooltip="back one level (and clear the filter)"),
        Binding("d,ctrl+d,delete", "delete", "Delete", id="images.delete",
                tooltip="delete the highlighted manifest by digest (every tag on it goes; "
                "asks first)"),
        Binding("u", "untag", "Untag", id="images.untag",
                tooltip="untag: remove only the highlighted tag (the manifest stays)"),
        Binding("a", "all_tags", "All tags", id="images.all_tags",
                tooltip="all tags of every repository in one list"),
        Binding("I", "import", "Import", id="images.import", show=False,
                tooltip="import images from an OCI layout (a folder or .tar) or a "
                "docker-archive, with a preview first"),
        Binding("e", "export", "Export", id="images.export", show=False,
                tooltip="export the highlighted repository or tag to an OCI layout or a "
                "docker-archive"),
    ]

    table_level: reactive[Level] = reactive("repos", init=False)
    """What the table lists: repositories, one repository's tags, or all tags."""
    repository: reactive[str | None] = reactive(None, init=False)
    """The repository whose tags are listed (table_level "tags")."""
    detail: reactive[ManifestDetail | None] = reactive(None, init=False)
    """The manifest shown over the table, if any."""
    pinned: reactive[frozenset[tuple[str, str]]] = reactive(frozenset(), init=False)
    """(repository, digest) of the manifests a stage pins (a "Staged" column when any)."""
    in_use: reactive[InUseLabels | None] = reactive(None, init=False)
    """The cluster's users of each manifest, as the "In use" column shows them (None: no
    cluster answered: no column)."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._in_use_again: bool | None = None
        """None: no listing of the cluster runs; False: one runs; True: and another is due."""
        self.transfer_folder: Path | None = None
        """The folder the last import or export was picked in (the next one starts there)."""
        self.transfer_jobs: images_transfer.TransferJobs | None = None

    @property
    def level(self) -> Level:
        """What is shown: the table's level, or "detail"."""
        return "detail" if self.detail is not None else self.table_level

    def compose(self) -> ComposeResult:
        with Horizontal(id="images-top"):
            yield Static("", id="images-crumb")
            yield Static("", id="images-count")
        yield Input(id="images-filter", placeholder="filter: type to narrow the list", compact=True)
        with ContentSwitcher(initial="images-table", id="images-switcher"):
            yield VirtualTable(id="images-table", empty_text="No images yet.")
            with VerticalScroll(id="images-detail"):
                yield Static("", id="images-detail-body")

    @property
    def table(self) -> VirtualTable:
        return self.query_one("#images-table", VirtualTable)

    def main_widget(self) -> Widget | None:
        if self.level == "detail":
            return self.query_one("#images-detail", VerticalScroll)
        return self.table

    def on_mount(self) -> None:
        self.query_one("#images-filter", Input).display = False
        self.table.set_columns(self.columns_for("repos"))
        self.load_level("repos", None)

    # ---- columns -----------------------------------------------------------------------------

    def columns_for(self, level: Level) -> list[Column]:
        now = self.edge.clock
        pushed = Column(
            "pushed", "Pushed", 6, width=14, format=lambda v: ago(v, now()), searchable=False
        )
        if level == "repos":
            return [
                Column("name", "Repository", 0, min_width=16),
                Column("tags", "Tags", 1, width=6, align="right", searchable=False),
                Column("size", "Size", 2, width=10, align="right", format=size, searchable=False),
                Column(
                    "last_push",
                    "Last push",
                    3,
                    width=14,
                    format=lambda v: ago(v, now()),
                    searchable=False,
                ),
            ]
        columns = [
            Column("tag", "Tag", 1, min_width=11, format=lambda v: v or UNTAGGED),
            Column("digest", "Digest", 2, width=19, format=short_digest),
            Column("size", "Size", 3, width=10, align="right", format=size, searchable=False),
            Column(
                "created",
                "Created",
                4,
                width=10,
                format=lambda v: image_created(v)[:10],
                searchable=False,
            ),
            Column("platforms", "Platforms", 5, min_width=8, format=lambda v: v or "-"),
            pushed,
        ]
        if self.pinned:
            columns.insert(
                2,
                Column("pinned", "Staged", 7, width=6,
                       format=lambda key: "yes" if key in self.pinned else "",
                       searchable=False),
            )
        if self.in_use is not None:  # next to the digest: seen first, before deleting
            columns.insert(
                2,
                Column("in_use", "In use", 7, width=11, format=self.in_use_label,
                       searchable=False),
            )
        if level == "all":
            columns.insert(0, Column("repository", "Repository", 0, min_width=14))
        return columns

    def in_use_label(self, key: tuple[str, str]) -> str:
        return self.in_use.get(key, "") if self.in_use is not None else ""

    # ---- loading -----------------------------------------------------------------------------

    def reload(self) -> None:
        if self.detail is not None:
            self.load_detail(Target(self.detail.repository, self.detail.digest, None))
        else:
            self.load_level(self.table_level, self.repository)

    @work(thread=True, exclusive=True, group="images-load", exit_on_error=False)
    def load_level(self, level: Level, repository: str | None) -> None:
        registry = self.edge.registry
        try:
            if level == "repos":
                rows: list[Row] = [
                    (r.name, r.tag_count, r.size_bytes, r.last_push, r.manifest_count)
                    for r in browse.repositories(registry)
                ]
            else:
                found = browse.tags(registry, repository if level == "tags" else None)
                if level == "tags" and repository is not None:
                    found = found + browse.untagged(registry, repository)
                pinned = frozenset(staging.pinned_manifests(registry))
                rows = [
                    (
                        t.repository,
                        t.tag,
                        t.digest,
                        t.size_bytes,
                        t.image_created,
                        t.platforms,
                        t.pushed_at,
                        (t.repository, t.digest),
                    )
                    for t in found
                ]
        except (EdgeError, OSError) as exc:
            self.post_message(ImagesFailed(f"Could not list images: {exc}"))
            return
        self.post_message(ImagesLoaded(level, repository, rows,
                                       pinned if level != "repos" else frozenset()))

    @on(ImagesLoaded)
    def _loaded(self, message: ImagesLoaded) -> None:
        self.pinned = message.pinned
        self.table_level = message.level
        self.repository = message.repository
        if message.level == "repos":
            self.table.set_rows(message.rows, keep=lambda r: r[0])
        else:
            self.table.set_rows(message.rows, keep=lambda r: (r[0], r[1], r[2]))
            self.request_in_use()
        self.update_crumb()

    def request_in_use(self) -> None:
        """Ask the cluster which manifests it uses (one listing at a time)."""
        if self._in_use_again is not None:
            self._in_use_again = True
            return
        self._in_use_again = False
        self.load_in_use()

    @work(thread=True, group="images-in-use", exit_on_error=False)
    def load_in_use(self) -> None:
        try:
            labels = abandonable(partial(in_use_labels, self.edge))
        except Abandoned:
            return
        except Exception as exc:  # the client library's surprise: no column, no nagging
            self.log.warning(f"images in use: {type(exc).__name__}: {exc}")
            labels = None
        self.post_message(InUseLoaded(labels))

    @on(InUseLoaded)
    def _in_use_loaded(self, message: InUseLoaded) -> None:
        again, self._in_use_again = self._in_use_again, None
        self.in_use = message.labels
        if again:
            self.request_in_use()

    def watch_pinned(self, old: frozenset[tuple[str, str]],
                     new: frozenset[tuple[str, str]]) -> None:
        if self.table_level != "repos" and bool(old) != bool(new):  # the column comes or goes
            self.table.set_columns(self.columns_for(self.table_level))

    def watch_in_use(self, old: InUseLabels | None, new: InUseLabels | None) -> None:
        if self.table_level == "repos":
            return
        if (old is None) != (new is None):  # the column comes or goes
            self.table.set_columns(self.columns_for(self.table_level))
        else:
            self.table.refresh()

    def watch_table_level(self, level: Level) -> None:
        self.table.set_columns(self.columns_for(level))
        self._clear_filter()

    def watch_repository(self) -> None:
        self._clear_filter()

    @work(thread=True, exclusive=True, group="images-detail", exit_on_error=False)
    def load_detail(self, target: Target) -> None:
        try:
            detail = browse.manifest_detail(self.edge.registry, target.repository, target.digest)
        except EdgeError as exc:
            self.post_message(
                ImagesFailed(f"{target.repository}@{target.digest}: {exc}", gone=True)
            )
            return
        except OSError as exc:
            self.post_message(ImagesFailed(f"Could not read the manifest: {exc}"))
            return
        self.post_message(DetailLoaded(detail))

    @on(DetailLoaded)
    def _detail_loaded(self, message: DetailLoaded) -> None:
        self.detail = message.detail

    def watch_detail(self, detail: ManifestDetail | None) -> None:
        switcher = self.query_one("#images-switcher", ContentSwitcher)
        if detail is None:
            switcher.current = "images-table"
            self.table.focus()
        else:
            self.repaint()
            if switcher.current != "images-detail":
                switcher.current = "images-detail"
                self.query_one("#images-detail", VerticalScroll).focus()
        self.update_crumb()

    def repaint(self) -> None:
        if self.detail is not None:
            self.query_one("#images-detail-body", Static).update(self.render_detail(self.detail))

    @on(ImagesFailed)
    def _failed(self, message: ImagesFailed) -> None:
        if message.gone and self.detail is not None:
            self.edge.notify(
                "That manifest is gone (deleted by a client or a GC).", severity="warning"
            )
            self.action_back()
            return
        self.edge.error(message.text)

    # ---- painting ----------------------------------------------------------------------------

    def update_crumb(self) -> None:
        table = self.table
        crumb = Text()
        crumb.append("Images", style="bold")
        if self.table_level == "all":
            crumb.append(" > all tags")
        elif self.table_level == "tags" and self.repository:
            crumb.append(f" > {self.repository}")
        if self.detail is not None:
            crumb.append(f" > {short_digest(self.detail.digest)}")
        self.query_one("#images-crumb", Static).update(crumb)
        noun = "repositories" if self.table_level == "repos" else "tags"
        if self.detail is not None:
            count = ""
        elif table.filter_text:
            more = "+" if table.filtering else ""  # a big table's filter is still scanning
            count = f"{table.row_count:,}{more} of {table.total_count:,} {noun}"
        else:
            count = f"{table.total_count:,} {noun}"
        self.query_one("#images-count", Static).update(count)

    def render_detail(self, detail: ManifestDetail) -> RenderableType:
        facts = Table.grid(padding=(0, 1))
        facts.add_column(style="bold", no_wrap=True)
        facts.add_column()
        facts.add_row("Repository", detail.repository)
        facts.add_row("Digest", detail.digest)
        facts.add_row("Media type", detail.media_type)
        facts.add_row("Tags", ", ".join(detail.tags) or "(untagged)")
        facts.add_row(
            "Size",
            f"{size(detail.content_bytes + detail.size_bytes)} (manifest {detail.size_bytes:,} B)",
        )
        facts.add_row("Created", image_created(detail.image_created))
        if detail.artifact_type and detail.artifact_type not in IMAGE_CONFIG_TYPES:
            # A plain image's "artifact type" is its config type: not worth a line.
            facts.add_row("Artifact type", detail.artifact_type)
        if detail.subject:
            facts.add_row("Subject", detail.subject)
        if detail.kept_because:
            facts.add_row("Kept", detail.kept_because)
        parts: list[RenderableType] = [facts]
        if detail.config is not None:
            parts.append(Text("\nConfig", style="bold underline"))
            parts.append(
                Text(
                    f"{detail.config.digest}  {size(detail.config.size_bytes)}  "
                    f"{detail.config.media_type}"
                )
            )
        if detail.layers:
            layers = Table(
                title=None, box=None, padding=(0, 1), show_edge=False, header_style="bold"
            )
            layers.add_column("#", justify="right")
            layers.add_column("Layer digest")
            layers.add_column("Size", justify="right")
            layers.add_column("Media type")
            for number, layer in enumerate(detail.layers, 1):
                layers.add_row(
                    str(number),
                    short_digest(layer.digest, 24),
                    size(layer.size_bytes),
                    layer.media_type,
                )
            parts.append(Text(f"\nLayers ({len(detail.layers)})", style="bold underline"))
            parts.append(layers)
        if detail.children:
            children = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
            children.add_column("Platform")
            children.add_column("Digest")
            children.add_column("Size", justify="right")
            for child in detail.children:
                children.add_row(
                    child.platform or "-", short_digest(child.digest, 24), size(child.size_bytes)
                )
            parts.append(Text(f"\nPlatforms ({len(detail.children)})", style="bold underline"))
            parts.append(children)
        parts.append(Text(f"\nReferrers ({len(detail.referrers)})", style="bold underline"))
        if detail.referrers:
            for ref in detail.referrers:
                parts.append(
                    Text(
                        f"{short_digest(ref.digest, 24)}  "
                        f"{ref.artifact_type or '-'}  {size(ref.size_bytes)}"
                    )
                )
        else:
            parts.append(Text("none (no signatures or attestations point at it)", style="dim"))
        parts.append(Text("\nd delete by digest · esc back", style="dim"))
        return Group(*parts)

    # ---- navigation --------------------------------------------------------------------------

    @on(VirtualTable.Highlighted, "#images-table")
    def _highlighted(self) -> None:
        self.update_crumb()

    @on(VirtualTable.Selected, "#images-table")
    def _selected(self, event: VirtualTable.Selected) -> None:
        row = event.row
        if self.table_level == "repos":
            self.load_level("tags", str(row[0]))
        else:
            self.load_detail(Target(str(row[0]), str(row[2]), str(row[1]) or None))

    def action_back(self) -> None:
        if self.detail is not None:
            self.detail = None
            return
        if self.table.filter_text:
            self._clear_filter()
            return
        if self.table_level in ("tags", "all"):
            self.load_level("repos", None)

    def action_import(self) -> None:
        images_transfer.open_import(self)

    def action_export(self) -> None:
        images_transfer.open_export(self)

    def transfer_backend(self) -> images_transfer.TransferJobs:
        """What the import and export dialogs run (the core's transfer operations)."""
        if self.transfer_jobs is None:
            self.transfer_jobs = images_transfer.TransferJobs(self.edge.registry)
        return self.transfer_jobs

    def export_refs(self) -> list[str]:
        """What the highlighted row names: a repository (every tag), a tag, or a digest."""
        if self.detail is not None:
            return [f"{self.detail.repository}@{self.detail.digest}"]
        row = self.table.cursor_row
        if row is None:
            return []
        if self.table_level == "repos":
            return [str(row[0])]
        repository, tag, digest = str(row[0]), str(row[1] or ""), str(row[2])
        return [f"{repository}:{tag}" if tag else f"{repository}@{digest}"]

    def action_all_tags(self) -> None:
        self.detail = None
        self.load_level("all", None)

    def open_repository(self, name: str) -> None:
        """Show the tags of `name` (for tests)."""
        self.load_level("tags", name)

    # ---- filter ------------------------------------------------------------------------------

    def start_filter(self) -> None:
        self.detail = None
        box = self.query_one("#images-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#images-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.filter(event.value)
        self.update_crumb()

    @on(Input.Submitted, "#images-filter")
    def _filter_submitted(self) -> None:
        self.table.focus()

    def on_key(self, event: object) -> None:
        from textual.events import Key

        if not isinstance(event, Key):
            return
        box = self.query_one("#images-filter", Input)
        if box.has_focus and event.key in ("escape", "down", "up"):
            event.stop()
            event.prevent_default()
            if event.key == "escape":
                self._clear_filter()
            self.table.focus()

    def _clear_filter(self) -> None:
        box = self.query_one("#images-filter", Input)
        with box.prevent(Input.Changed):
            box.value = ""
        box.display = False
        self.table.filter("")
        if box.has_focus:
            self.table.focus()
        self.update_crumb()

    # ---- delete and untag --------------------------------------------------------------------

    def current_target(self) -> Target | None:
        if self.detail is not None:
            return Target(self.detail.repository, self.detail.digest, None)
        if self.table_level == "repos":
            return None
        row = self.table.cursor_row
        if row is None:
            return None
        return Target(str(row[0]), str(row[2]), str(row[1]) or None)

    def action_delete(self) -> None:
        target = self.current_target()
        if target is None:
            self.edge.notify(
                "Open a repository (enter) and choose a tag to delete.", severity="warning"
            )
            return
        self.prepare_delete(target)

    @work(thread=True, exclusive=True, group="images-preview", exit_on_error=False)
    def prepare_delete(self, target: Target) -> None:
        try:
            in_use, note = abandonable(partial(cluster_in_use, self.edge))
        except Abandoned:
            return
        except Exception as exc:  # the client library's surprise: say so, still ask
            in_use, note = None, f"{NOT_CHECKED}: {exc}"
        try:
            self.edge.registry.refuse_if_pinned(target.repository, target.digest)
            preview = preview_delete(
                self.edge.registry, target.repository, target.digest, in_use=in_use
            )
        except Pinned as exc:  # staged: refused before any dialog, as the core would
            self.post_message(ImagesFailed(str(exc)))
            return
        except (EdgeError, OSError) as exc:
            self.post_message(
                ImagesFailed(
                    f"Cannot delete {target.repository}@{short_digest(target.digest)}: {exc}"
                )
            )
            return
        self.post_message(PreviewReady(preview, note))

    @on(PreviewReady)
    def _preview_ready(self, message: PreviewReady) -> None:
        preview = message.preview
        if not preview.allowed:
            self.edge.error(
                f"{short_digest(preview.digest)} is part of the index "
                f"{short_digest(preview.blocked_by[0])}: delete the index instead."
            )
            return
        target = Target(preview.repository, preview.digest, None)

        def decided(confirmed: bool | None) -> None:
            if confirmed:
                self.delete(target, False, preview.bytes_freed)

        self.app.push_screen(
            ConfirmationModal(
                f"Delete {preview.repository}@{short_digest(preview.digest)}?"
                + (" The cluster uses it." if preview.in_use_by else ""),
                delete_body(preview, message.cluster_note),
                confirm_label="Delete",
            ),
            decided,
        )

    def action_untag(self) -> None:
        target = self.current_target()
        if target is None or not target.tag:
            self.edge.notify(
                "Choose a tag to untag (untagged manifests: use d).", severity="warning"
            )
            return
        self.prepare_untag(target)

    @work(thread=True, exclusive=True, group="images-preview", exit_on_error=False)
    def prepare_untag(self, target: Target) -> None:
        try:
            in_use, note = abandonable(partial(cluster_in_use, self.edge))
        except Abandoned:
            return
        assert target.tag is not None
        try:
            self.edge.registry.refuse_if_pinned(target.repository, target.tag)
        except EdgeError as exc:  # staged: refused before any dialog, as the core would
            self.post_message(ImagesFailed(str(exc)))
            return
        users = [] if in_use is None else in_use.users_of_tag(target.repository, target.tag)
        self.post_message(UntagReady(target, users, note))

    @on(UntagReady)
    def _untag_ready(self, message: UntagReady) -> None:
        target = message.target

        def decided(confirmed: bool | None) -> None:
            if confirmed:
                self.delete(target, True, None)

        self.app.push_screen(
            ConfirmationModal(
                f"Remove the tag {target.repository}:{target.tag}?"
                + (" The cluster uses it." if message.users else ""),
                untag_body(target, message.users, message.cluster_note),
                confirm_label="Untag",
            ),
            decided,
        )

    @work(thread=True, group="images-delete", exit_on_error=False)
    def delete(self, target: Target, untag: bool, bytes_freed: int | None) -> None:
        registry = self.edge.registry
        try:
            if untag:
                assert target.tag is not None
                result = registry.untag(target.repository, target.tag, who=CONSOLE)
            else:
                result = registry.delete_manifest(target.repository, target.digest, who=CONSOLE)
        except (EdgeError, OSError) as exc:
            self.post_message(ImagesFailed(f"Delete failed: {exc}"))
            return
        self.post_message(ManifestDeleted(target, result.tags, bytes_freed, untag))

    @on(ManifestDeleted)
    def _deleted(self, message: ManifestDeleted) -> None:
        target = message.target
        if message.untag:
            self.edge.notify(f"Removed the tag {target.repository}:{target.tag}.", title="Untagged")
        else:
            tags = ", ".join(message.tags) if message.tags else "no tags"
            freed = size(message.bytes_freed or 0)
            self.edge.notify(
                f"{target.repository}@{short_digest(target.digest)} ({tags}). "
                f"Run a garbage collection (5) to free {freed}.",
                title="Deleted",
                timeout=8,
                markup=False,
            )
        self.detail = None
        self.edge.content_changed()
