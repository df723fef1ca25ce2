"""Storage: capacity, reclaimable space, per-repository usage, and usage over time."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from console.screens.base import View
from console.theme import Role, Styles
from console.widgets.bars import Bar, Part
from console.widgets.format import percent, size
from registry_core.errors import EdgeError
from registry_core.usage import UsageReport, UsageSample, usage_history, usage_report

MAX_REPOSITORY_BARS = 50
HISTORY_SAMPLES = 200


class UsageLoaded(Message):
    def __init__(self, report: UsageReport, history: list[UsageSample]) -> None:
        super().__init__()
        self.report = report
        self.history = history


class UsageFailed(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


def capacity_bar(report: UsageReport, styles: Styles) -> Bar:
    registry_kept = max(0, report.used_bytes - report.reclaimable_bytes)
    other = max(0, report.capacity_bytes - report.free_bytes - report.used_bytes)
    return Bar(
        [
            Part(registry_kept, styles.fill("primary")),
            Part(report.reclaimable_bytes, styles.fill("warning"), "▓"),
            Part(other, styles.fill("muted"), "▒"),
        ],
        total=report.capacity_bytes,
        marker_at=report.capacity_bytes - report.reserve_bytes,
        marker_style=styles.text("error", bold=True),
    )


def summary(report: UsageReport, styles: Styles) -> RenderableType:
    head = Text()
    head.append("Capacity ", style="bold")
    head.append(f"{size(report.capacity_bytes)}")
    if report.quota_bytes:
        head.append(" (quota)")
    head.append(" · registry uses ")
    head.append(size(report.used_bytes), style=styles.text("primary", bold=True))
    head.append(f" ({percent(report.used_bytes, report.capacity_bytes)})")
    head.append(" · free ")
    free_role: Role = "error" if report.low_space else "success"
    head.append(size(report.free_bytes), style=styles.text(free_role, bold=True))
    legend = Text()
    legend.append("█", style=styles.fill("primary"))
    legend.append(" images  ")
    legend.append("▓", style=styles.fill("warning"))
    legend.append(f" reclaimable by GC {size(report.reclaimable_bytes)}  ")
    legend.append("▒", style=styles.fill("muted"))
    legend.append(" other files  ")
    legend.append("░", style="dim")
    legend.append(" free  ")
    legend.append("│", style=styles.text("error", bold=True))
    legend.append(f" reserve {size(report.reserve_bytes)}")
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column()
    facts.add_row(
        "Untagged",
        f"{report.untagged_manifests:,} manifest(s) hold {size(report.untagged_bytes)}"
        + ("" if report.delete_untagged else " (kept: delete_untagged is off)"),
    )
    grace_hours = report.grace_period_seconds / 3600
    facts.add_row(
        "Reclaimable",
        f"{size(report.reclaimable_bytes)} now; {size(report.reclaimable_in_grace_bytes)} "
        f"more after the {grace_hours:g} h grace period",
    )
    reserve = Text(f"{size(report.reserve_bytes)}: pushes are refused when free space "
                   "would drop below it")
    if report.low_space:
        reserve = Text(f"LOW SPACE: free {size(report.free_bytes)} is below the reserve "
                       f"{size(report.reserve_bytes)}; delete images and run a GC",
                       style=styles.text("error", bold=True))
    facts.add_row("Reserve", reserve)
    if report.low_space_refusals:
        facts.add_row("Refused", f"{report.low_space_refusals:,} pushes for lack of space")
    facts.add_row(
        "Stored",
        f"{report.blobs:,} blobs, {report.manifests:,} manifests, {report.tags:,} tags"
        + (f", {report.uploads_in_progress} uploads in progress "
           f"({size(report.uploads_bytes)})" if report.uploads_in_progress else ""),
    )
    return Group(head, capacity_bar(report, styles), legend, Text(""), facts)


def repository_table(report: UsageReport, styles: Styles) -> RenderableType:
    repos = sorted(report.repositories, key=lambda r: (-r.total_bytes, r.name))
    if not repos:
        return Text("No repositories yet.", style="dim")
    biggest = max(r.total_bytes for r in repos) or 1
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold", expand=True)
    table.add_column("Repository", ratio=2, no_wrap=True, overflow="ellipsis")
    table.add_column("Exclusive █ / shared ▒", ratio=3, no_wrap=True)
    table.add_column("Total", justify="right", no_wrap=True)
    table.add_column("Excl.", justify="right", no_wrap=True)
    table.add_column("Tags", justify="right", no_wrap=True)
    for repo in repos[:MAX_REPOSITORY_BARS]:
        bar = Bar(
            [Part(repo.exclusive_bytes, styles.fill("primary")),
             Part(repo.shared_bytes, styles.fill("accent"), "▒")],
            total=biggest,
            rest_char=" ",
        )
        table.add_row(repo.name, bar, size(repo.total_bytes), size(repo.exclusive_bytes),
                      f"{repo.tags:,}")
    if len(repos) > MAX_REPOSITORY_BARS:
        rest = len(repos) - MAX_REPOSITORY_BARS
        table.add_row(Text(f"… and {rest:,} smaller repositories", style="dim"), "", "", "", "")
    return table


class StorageView(View):
    tab_id = "storage"
    tab_title = "Storage"
    help_notes = (
        "The bar: images, reclaimable by a garbage collection (▓), other files on the volume (▒),\n"
        "free space (░); the │ mark is the low-space reserve.\n"
        "Exclusive bytes are freed by deleting the repository's images; shared layers are also\n"
        "used by other repositories. The screen also reloads on every push, delete and GC."
    )

    report: reactive[UsageReport | None] = reactive(None, init=False)
    history: reactive[list[UsageSample]] = reactive(list, init=False)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="storage-scroll"):
            yield Static("Loading…", id="storage-summary")
            yield Static("Usage over time", classes="section", id="storage-trend-title")
            yield Sparkline([], id="storage-sparkline")
            yield Static("", id="storage-trend-note")
            yield Static("Repositories", classes="section")
            yield Static("", id="storage-repos")

    def main_widget(self) -> Widget | None:
        return self.query_one("#storage-scroll", VerticalScroll)

    def on_mount(self) -> None:
        self.load()

    def reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="storage", exit_on_error=False)
    def load(self) -> None:
        registry = self.edge.registry
        try:
            report = usage_report(registry)
            history = usage_history(registry, HISTORY_SAMPLES)
        except (EdgeError, OSError) as exc:
            self.post_message(UsageFailed(f"Could not measure storage: {exc}"))
            return
        self.post_message(UsageLoaded(report, history))

    @on(UsageFailed)
    def _failed(self, message: UsageFailed) -> None:
        self.edge.error(message.text)

    @on(UsageLoaded)
    def _loaded(self, message: UsageLoaded) -> None:
        self.history = message.history
        self.report = message.report

    def watch_report(self) -> None:
        self.repaint()

    def repaint(self) -> None:
        report = self.report
        if report is None:
            return
        styles = Styles(self.app)
        self.query_one("#storage-summary", Static).update(summary(report, styles))
        self.query_one("#storage-repos", Static).update(repository_table(report, styles))
        data = [float(s.used_bytes) for s in self.history]
        note = self.query_one("#storage-trend-note", Static)
        sparkline = self.query_one("#storage-sparkline", Sparkline)
        if len(data) >= 2:
            sparkline.data = data
            low, high = min(data), max(data)
            note.update(Text(f"{len(data)} samples · low {size(int(low))} · "
                             f"high {size(int(high))} · now {size(report.used_bytes)}",
                             style="dim"))
        else:
            sparkline.data = [float(report.used_bytes)] * 2
            note.update(Text("A sample is taken after each push, delete and GC.", style="dim"))
