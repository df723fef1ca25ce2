"""Cluster: the API server, each namespace's pull secret (apply / repair), the images the
cluster uses from this registry and their pod snippets.

The cluster is opened the first time the pane is shown, in a worker; every call to it runs
in a worker through `abandonable` (quitting never waits for a cluster that does not answer).
No cluster, or one that does not answer, is a state shown here: the rest of the console
works without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, cast

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from console.context import ConsoleContext
from console.screens.base import View
from console.theme import Role
from console.widgets.cluster_link import Abandoned, abandonable, short_kind
from console.widgets.confirm import ConfirmationModal
from console.widgets.format import short_digest
from console.widgets.snippet_modal import SnippetModal
from registry_core.errors import EdgeError
from registry_core.kube import (
    Applied,
    ClusterError,
    ClusterStatus,
    ImageUse,
    KeeperState,
    SecretState,
    pod_snippet,
    unreachable_status,
)

STATE_ROLES: dict[str, Role] = {
    "ok": "success",
    "missing": "warning",
    "stale": "error",
    "skipped": "muted",
}
LISTED = 12
"""The apply confirmation names at most this many namespaces per action."""
KEEPER_INTERVAL = 1.0
"""How often the secret keeper's state is read (an attribute: no I/O)."""


@dataclass(frozen=True)
class ClusterPicture:
    """What the pane shows: the cluster's status, where its configuration came from, and
    the name of the pull secret."""

    status: ClusterStatus
    config: str = ""
    """The kubeconfig and its source (`KubeSettings.describe()`), if a cluster was opened."""
    secret_name: str = ""


class ClusterLoaded(Message):
    def __init__(self, picture: ClusterPicture) -> None:
        super().__init__()
        self.picture = picture


class ApplyProgress(Message):
    def __init__(self, done: int, total: int, current: str) -> None:
        super().__init__()
        self.done = done
        self.total = total
        self.current = current


class SecretsApplied(Message):
    def __init__(self, results: list[Applied], error: str = "") -> None:
        super().__init__()
        self.results = results
        self.error = error


def read_cluster(edge: ConsoleContext, fresh: bool) -> ClusterPicture:
    """The cluster's picture (blocking). An unreachable server is a state, not an error."""
    secret_name = edge.config.kubernetes.secret_name
    try:
        cluster = edge.cluster()
    except ClusterError as exc:
        return ClusterPicture(unreachable_status(exc), "", secret_name)
    if fresh:
        cluster.cache.forget()
    try:
        status = cluster.status()
    except (EdgeError, OSError) as exc:  # a registry read behind the in-use listing
        status = unreachable_status(ClusterError(str(exc)), cluster.settings.source)
    return ClusterPicture(status, cluster.settings.describe(), cluster.secret_name)


def apply_body(picture: ClusterPicture, targets: list[SecretState],
               endpoint: str) -> str:
    """What the apply confirmation says: exactly which namespaces get the secret created,
    which get it repaired (and why), and which are left alone."""
    created = [s for s in targets if s.state == "missing"]
    repaired = [s for s in targets if s.state == "stale"]
    skipped = [s for s in picture.status.namespaces if s.state == "skipped"]
    lines = [f"The pull secret {picture.secret_name} (for {endpoint}) will be:"]
    if created:
        lines.append(f"  created in {len(created)}: {names(created)}")
    if repaired:
        lines.append(f"  repaired in {len(repaired)}:")
        lines += [f"    {s.namespace}: {s.reason}" for s in repaired[:LISTED]]
        if len(repaired) > LISTED:
            lines.append(f"    … and {len(repaired) - LISTED} more")
    unmanaged = [s.namespace for s in repaired if not s.managed]
    if unmanaged:
        lines.append("")
        lines.append(
            f"Not made by edge-console: {', '.join(unmanaged[:LISTED])}. Repairing replaces "
            "their credentials and keeps their labels and annotations."
        )
    ok = sum(s.state == "ok" for s in picture.status.namespaces)
    lines.append("")
    lines.append(f"Left alone: {ok} already right, {len(skipped)} skipped"
                 + (f" ({names(skipped)})" if skipped else "") + ".")
    return "\n".join(lines)


def names(states: list[SecretState]) -> str:
    listed = ", ".join(s.namespace for s in states[:LISTED])
    more = f" and {len(states) - LISTED} more" if len(states) > LISTED else ""
    return listed + more


def applied_summary(results: Iterable[Applied]) -> tuple[str, str]:
    """The toasts after an apply: what changed, and what failed (either may be empty)."""
    done: dict[str, list[str]] = {}
    failed: list[Applied] = []
    for result in results:
        if result.action == "failed":
            failed.append(result)
        else:
            done.setdefault(result.action, []).append(result.namespace)
    parts = [
        f"{action} in {', '.join(done[action])}"
        for action in ("created", "repaired", "unchanged", "skipped")
        if action in done
    ]
    errors = "; ".join(f"failed in {r.namespace}: {r.message}" for r in failed)
    return "; ".join(parts), errors


def image_reference(use: ImageUse) -> str:
    """The tag the container names, else the digest (what a snippet pulls)."""
    return use.tag or use.digest or "latest"


def reference_label(use: ImageUse) -> str:
    return use.tag or "@" + short_digest(use.digest)


class ClusterView(View):
    tab_id = "cluster"
    tab_title = "Cluster"
    help_notes = (
        "enter on a namespace creates or repairs its pull secret; enter on an image in use\n"
        "shows its pod snippet; tab moves between the two tables. Without a cluster (or when\n"
        "it does not answer) the rest of the console works as usual."
    )
    can_filter = True

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("A", "apply_all", "Apply all", id="cluster.apply_all",
                tooltip="create or repair the pull secret in every namespace that needs it "
                "(asks first, naming them)"),
        Binding("y", "snippet", "Pod snippet", id="cluster.snippet",
                tooltip="pod snippet: a pod that pulls the highlighted image in use with the "
                "pull secret"),
        Binding("c", "copy", "Copy snippet", id="cluster.copy",
                tooltip="copy the pod snippet of the highlighted image in use"),
    ]

    picture: reactive[ClusterPicture | None] = reactive(None, init=False)
    """None until the cluster was first read."""
    loading: reactive[bool] = reactive(False, init=False)
    """A read of the cluster is under way."""
    applying: reactive[bool] = reactive(False, init=False)
    """Pull secrets are being applied."""
    progress: reactive[str] = reactive("", init=False)
    filter_text: reactive[str] = reactive("", init=False)
    keeper: reactive[tuple[bool, KeeperState | None]] = reactive((False, None), init=False)
    """Whether this process serves the registry, and its secret keeper's state."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._again: bool | None = None
        """A load asked for while one runs: run it after (True: a fresh one)."""
        self._uses: list[ImageUse] = []
        """The in-use rows as shown (filtered), in table order."""
        self._states: list[SecretState] = []

    def compose(self) -> ComposeResult:
        yield Static("The cluster is read when this screen is first shown.", id="cluster-facts")
        yield Static("", id="cluster-keeper")
        yield Static("", id="cluster-note")
        yield Input(id="cluster-filter", placeholder="filter: type to narrow both lists",
                    compact=True)
        yield Static("Pull secret by namespace", id="cluster-ns-heading", classes="section")
        namespaces: DataTable[str | Text] = DataTable(id="cluster-namespaces", cursor_type="row")
        yield namespaces
        yield Static("Images in use", id="cluster-images-heading", classes="section")
        images: DataTable[str | Text] = DataTable(id="cluster-images", cursor_type="row")
        yield images

    @property
    def namespaces_table(self) -> DataTable[str | Text]:
        return cast("DataTable[str | Text]", self.query_one("#cluster-namespaces", DataTable))

    @property
    def images_table(self) -> DataTable[str | Text]:
        return cast("DataTable[str | Text]", self.query_one("#cluster-images", DataTable))

    def main_widget(self) -> Widget | None:
        return self.namespaces_table

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#cluster-filter", Input).display = False
        self.query_one("#cluster-keeper", Static).display = False
        table = self.namespaces_table
        table.add_column("Namespace", key="namespace")
        table.add_column("Pull secret", key="state")
        table.add_column("Managed", key="managed")
        table.add_column("Reason", key="reason")
        images = self.images_table
        images.add_column("Repository", key="repository")
        images.add_column("Tag / digest", key="reference")
        images.add_column("Used by", key="user")
        images.add_column("Container", key="container")
        images.add_column("State", key="state")
        self.read_keeper()
        self.set_interval(KEEPER_INTERVAL, self.read_keeper)

    # ---- loading -----------------------------------------------------------------------------

    def shown(self) -> None:
        """The first showing opens the cluster; later ones reload only if something changed."""
        if self.picture is None and not self.loading:
            self.stale = False
            self.request_load(fresh=False)
            return
        super().shown()

    def reload(self) -> None:
        self.request_load(fresh=True)

    def data_changed(self) -> None:
        """The registry's content changed: which tags are here may differ (the cached listing
        of the cluster is enough)."""
        if self.edge.active_tab() != self.tab_id:
            self.stale = True
            return
        self.request_load(fresh=False)

    def request_load(self, fresh: bool) -> None:
        """One load at a time: a load asked for meanwhile runs once the current one ends."""
        if self.loading:
            self._again = bool(self._again) or fresh
            return
        self.loading = True
        self.load(fresh)

    @work(thread=True, group="cluster-load", exit_on_error=False)
    def load(self, fresh: bool) -> None:
        try:
            picture = abandonable(partial(read_cluster, self.edge, fresh))
        except Abandoned:
            return
        except Exception as exc:  # the client library's surprise: a state, not a stuck pane
            error = ClusterError(f"cluster not read: {type(exc).__name__}: {exc}")
            picture = ClusterPicture(unreachable_status(error))
        self.post_message(ClusterLoaded(picture))

    @on(ClusterLoaded)
    def _loaded(self, message: ClusterLoaded) -> None:
        self.loading = False
        self.picture = message.picture
        again, self._again = self._again, None
        if again is not None:
            self.request_load(again)

    def read_keeper(self) -> None:
        serving = self.edge.server_status.mode == "serving"
        state = self.edge.secret_keeper_state() if serving else None
        if (serving, state) != self.keeper:
            self.keeper = (serving, state)

    # ---- painting ----------------------------------------------------------------------------

    def repaint(self) -> None:
        self.render_facts()
        self.render_note()
        self.watch_keeper()
        self.render_tables()

    def watch_picture(self) -> None:
        self.render_facts()
        self.render_tables()

    def watch_loading(self) -> None:
        self.render_note()
        if self.picture is None:
            self.render_facts()

    def watch_applying(self) -> None:
        self.render_note()

    def watch_progress(self) -> None:
        self.render_note()

    def watch_filter_text(self) -> None:
        self.render_tables()

    def render_facts(self) -> None:
        facts = self.query_one("#cluster-facts", Static)
        picture = self.picture
        if picture is None:
            if self.loading:
                facts.update("Connecting to the cluster…")
            return
        status = picture.status
        if not status.reachable:
            text = Text()
            text.append(status.error or "cluster not reachable", style=self.style("error",
                                                                                  bold=True))
            if status.server:
                text.append(f"\nAPI server {status.server}")
                if status.context:
                    text.append(f" (context {status.context})")
            if picture.config:
                text.append(f"\nKubeconfig {picture.config}", style=self.style("muted"))
            text.append("\nThe rest of the console works without the cluster; r tries again.",
                        style=self.style("muted"))
            facts.update(text)
            return
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        grid.add_row("API server", f"{status.server}  (context {status.context or '-'})")
        grid.add_row("Kubeconfig", picture.config or status.source or "-")
        grid.add_row("Pull secret", f"{picture.secret_name} for {self.edge.config.endpoint}")
        facts.update(grid)

    def render_note(self) -> None:
        note = self.query_one("#cluster-note", Static)
        if self.applying:
            note.update(Text(self.progress or "Applying…", style=self.style("warning")))
        elif self.loading and self.picture is not None:
            note.update(Text("Reading the cluster again…", style=self.style("muted")))
        else:
            note.update("")
        note.display = self.applying or (self.loading and self.picture is not None)

    def watch_keeper(self) -> None:
        line = self.query_one("#cluster-keeper", Static)
        serving, state = self.keeper
        line.display = serving
        if not serving:
            return
        text = Text()
        text.append("Keeping secrets: ", style="bold")
        if state is None:
            text.append("off in this process (no cluster when the registry started, or "
                        "kubernetes.keep_secrets = false)", style=self.style("muted"))
        elif state.error:
            text.append(f"error: {state.error} (trying again)", style=self.style("error"))
        elif state.watching:
            text.append("watching namespaces", style=self.style("success"))
            text.append(f" · {state.applied} created or repaired since the start")
        else:
            text.append("starting…", style=self.style("warning"))
        line.update(text)

    def render_tables(self) -> None:
        picture = self.picture
        status = picture.status if picture is not None else None
        needle = self.filter_text.strip().lower()
        states = list(status.namespaces) if status is not None else []
        uses = list(status.in_use.uses) if status is not None and status.in_use else []
        if needle:
            states = [s for s in states if needle in state_text(s)]
            uses = [u for u in uses if needle in use_text(u)]
        self._states = states
        self._uses = sorted(uses, key=lambda u: (u.repository, u.namespace, u.kind, u.name,
                                                 u.container))
        self.fill_namespaces(status)
        self.fill_images(status)

    def fill_namespaces(self, status: ClusterStatus | None) -> None:
        table = self.namespaces_table
        cursor = table.cursor_row
        table.clear()
        for s in self._states:
            state = Text(s.state, style=self.style(STATE_ROLES[s.state], bold=s.state == "stale"))
            managed = "" if s.state in ("missing", "skipped") else ("yes" if s.managed else "no")
            table.add_row(s.namespace, state, managed, s.reason, key=s.namespace)
        if self._states:
            table.move_cursor(row=min(cursor, len(self._states) - 1))
        heading = Text("Pull secret by namespace")
        if status is not None and status.reachable:
            counts = {key: 0 for key in STATE_ROLES}
            for s in status.namespaces:
                counts[s.state] += 1
            heading.append("  ")
            heading.append(" · ".join(f"{n} {key}" for key, n in counts.items() if n),
                           style=self.style("muted"))
        self.query_one("#cluster-ns-heading", Static).update(heading)

    def fill_images(self, status: ClusterStatus | None) -> None:
        table = self.images_table
        cursor = table.cursor_row
        table.clear()
        for index, use in enumerate(self._uses):
            reference = Text(reference_label(use))
            if use.digest is None:
                reference.append(" (not here)", style=self.style("warning"))
            user = f"{short_kind(use.kind)} {use.namespace}/{use.name}"
            table.add_row(use.repository, reference, user, use.container,
                          Text(use.state, style=self.style(state_role(use.state))),
                          key=str(index))
        if self._uses:
            table.move_cursor(row=min(cursor, len(self._uses) - 1))
        heading = Text("Images in use")
        in_use = status.in_use if status is not None else None
        if in_use is not None:
            heading.append(f" ({len(in_use.uses)})")
            if in_use.problems:
                heading.append("  not listed: " + "; ".join(in_use.problems),
                               style=self.style("warning"))
        self.query_one("#cluster-images-heading", Static).update(heading)

    # ---- applying ----------------------------------------------------------------------------

    def _cluster_ready(self) -> ClusterPicture | None:
        picture = self.picture
        if self.applying:
            self.edge.notify("Already applying pull secrets.", severity="warning")
            return None
        if picture is None:
            self.edge.notify("The cluster is still being read.", severity="warning")
            return None
        if not picture.status.reachable:
            self.edge.error(picture.status.error or "cluster not reachable")
            return None
        return picture

    def action_apply_all(self) -> None:
        picture = self._cluster_ready()
        if picture is None:
            return
        targets = [s for s in picture.status.namespaces if s.state in ("missing", "stale")]
        if not targets:
            self.edge.notify("Every namespace has the right pull secret (r reads again).",
                             title="Pull secrets")
            return
        namespaces = tuple(s.namespace for s in targets)

        def decided(confirmed: bool | None) -> None:
            if confirmed:
                self.start_apply(namespaces)

        self.app.push_screen(
            ConfirmationModal(
                f"Apply the pull secret in {len(targets)} namespace"
                + ("s?" if len(targets) > 1 else "?"),
                apply_body(picture, targets, self.edge.config.endpoint),
                confirm_label="Apply",
                destructive=False,
            ),
            decided,
        )

    def apply_namespace(self, state: SecretState) -> None:
        """enter on a namespace: create or repair its secret (asks first only for a secret
        that edge-console did not make)."""
        picture = self._cluster_ready()
        if picture is None:
            return
        if state.state == "skipped":
            self.edge.notify(f"{state.namespace} is skipped: {state.reason}.",
                             severity="warning")
            return
        if state.state != "stale" or state.managed:
            self.start_apply((state.namespace,))
            return

        def decided(confirmed: bool | None) -> None:
            if confirmed:
                self.start_apply((state.namespace,))

        self.app.push_screen(
            ConfirmationModal(
                f"Repair the pull secret in {state.namespace}?",
                apply_body(picture, [state], self.edge.config.endpoint),
                confirm_label="Repair",
                destructive=False,
            ),
            decided,
        )

    def start_apply(self, namespaces: tuple[str, ...]) -> None:
        self.applying = True
        self.progress = f"Applying the pull secret in {len(namespaces)} namespace(s)…"
        self.apply(namespaces)

    @work(thread=True, exclusive=True, group="cluster-apply", exit_on_error=False)
    def apply(self, namespaces: tuple[str, ...]) -> None:
        edge = self.edge
        try:
            cluster = abandonable(edge.cluster)
        except Abandoned:
            return
        except ClusterError as exc:
            self.post_message(SecretsApplied([], str(exc)))
            return
        results: list[Applied] = []
        for done, namespace in enumerate(namespaces):
            self.post_message(ApplyProgress(done, len(namespaces), namespace))
            try:
                results.append(abandonable(partial(cluster.apply_secret, namespace)))
            except Abandoned:
                return
            except ClusterError as exc:
                results.append(Applied(namespace, "failed", str(exc)))
            except Exception as exc:  # the client library's surprise: reported, not stuck
                results.append(Applied(namespace, "failed", f"{type(exc).__name__}: {exc}"))
        self.post_message(SecretsApplied(results))

    @on(ApplyProgress)
    def _apply_progress(self, message: ApplyProgress) -> None:
        self.progress = (f"Applying the pull secret: {message.done + 1} of {message.total} "
                         f"({message.current})…")

    @on(SecretsApplied)
    def _applied(self, message: SecretsApplied) -> None:
        self.applying = False
        self.progress = ""
        if message.error:
            self.edge.error(f"Pull secrets not applied: {message.error}")
        else:
            changed, failed = applied_summary(message.results)
            if changed:
                self.edge.notify(changed[:1].upper() + changed[1:] + ".", title="Pull secrets",
                                 timeout=8, markup=False)
            if failed:
                self.edge.error(failed[:1].upper() + failed[1:])
        self.request_load(fresh=True)

    # ---- images in use -----------------------------------------------------------------------

    def highlighted_use(self) -> ImageUse | None:
        table = self.images_table
        if not self._uses or table.row_count == 0:
            return None
        return self._uses[min(table.cursor_row, len(self._uses) - 1)]

    def snippet_for(self, use: ImageUse) -> str | None:
        picture = self.picture
        secret = picture.secret_name if picture is not None and picture.secret_name else None
        try:
            return pod_snippet(self.edge.config, use.repository, image_reference(use),
                               use.namespace, secret)
        except EdgeError as exc:
            self.edge.error(f"No snippet for {use.image}: {exc}")
            return None

    def action_snippet(self) -> None:
        use = self.highlighted_use()
        if use is None:
            self.edge.notify("No image in use is highlighted.", severity="warning")
            return
        self.show_snippet(use)

    def show_snippet(self, use: ImageUse) -> None:
        text = self.snippet_for(use)
        if text is None:
            return

        def decided(copy: bool | None) -> None:
            if copy:
                self.edge.copy_text("pod snippet", text)

        self.app.push_screen(
            SnippetModal(
                f"Pod snippet: {use.repository}:{reference_label(use).lstrip('@')} "
                f"in {use.namespace}",
                text.rstrip("\n"),
                hint="c / enter: copy · esc: close",
            ),
            decided,
        )

    def action_copy(self) -> None:
        use = self.highlighted_use()
        if use is None:
            self.edge.notify("No image in use is highlighted.", severity="warning")
            return
        text = self.snippet_for(use)
        if text is not None:
            self.edge.copy_text("pod snippet", text)

    @on(DataTable.RowSelected, "#cluster-namespaces")
    def _namespace_selected(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self._states):
            self.apply_namespace(self._states[event.cursor_row])

    @on(DataTable.RowSelected, "#cluster-images")
    def _image_selected(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self._uses):
            self.show_snippet(self._uses[event.cursor_row])

    # ---- filter ------------------------------------------------------------------------------

    def start_filter(self) -> None:
        box = self.query_one("#cluster-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#cluster-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value

    @on(Input.Submitted, "#cluster-filter")
    def _filter_submitted(self) -> None:
        self.namespaces_table.focus()

    def on_key(self, event: object) -> None:
        from textual.events import Key

        if not isinstance(event, Key):
            return
        box = self.query_one("#cluster-filter", Input)
        if box.has_focus and event.key in ("escape", "down", "up"):
            event.stop()
            event.prevent_default()
            if event.key == "escape":
                self.clear_filter()
            self.namespaces_table.focus()
        elif event.key == "escape" and self.filter_text:
            event.stop()
            self.clear_filter()

    def clear_filter(self) -> None:
        box = self.query_one("#cluster-filter", Input)
        with box.prevent(Input.Changed):
            box.value = ""
        box.display = False
        self.filter_text = ""


def state_text(state: SecretState) -> str:
    return f"{state.namespace}\t{state.state}\t{state.reason}".lower()


def use_text(use: ImageUse) -> str:
    return "\t".join((use.repository, use.image, use.kind, use.namespace, use.name,
                      use.container, use.state)).lower()


def state_role(state: str) -> Role:
    if state.startswith("Running"):
        return "success"
    if state.startswith(("Waiting", "Pending")):
        return "warning"
    if state.startswith("Terminated"):
        return "error" if "Error" in state else "muted"
    return "muted"
