"""What a pane of the console may ask of the app it runs in (no import of the app itself)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from textual.notifications import SeverityLevel

from console.widgets.status import ServerStatus
from registry_core.config import Config
from registry_core.datadir import DataDir
from registry_core.gc import GarbageCollector
from registry_core.kube import Cluster, KeeperState
from registry_core.registry import Registry


@dataclass(frozen=True)
class Command:
    """One entry of the command palette."""

    title: str
    help: str
    callback: Callable[[], object]


class ConsoleContext(Protocol):
    """The back end and the app-wide services a view uses; `EdgeConsoleApp` provides them."""

    @property
    def registry(self) -> Registry: ...

    @property
    def datadir(self) -> DataDir: ...

    @property
    def config(self) -> Config: ...

    @property
    def collector(self) -> GarbageCollector: ...

    @property
    def scheduler(self) -> Any: ...

    @property
    def attached(self) -> dict[str, Any] | None: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def downloads_dir(self) -> Path | None: ...

    @property
    def server_status(self) -> ServerStatus: ...

    def cluster(self) -> Cluster:
        """The cluster, opened on first use and shared by the panes. Blocking: call it from a
        worker (through `abandonable`); ClusterError when there is none to talk to."""
        ...

    def secret_keeper_state(self) -> KeeperState | None:
        """The state of the pull-secret keeper of the registry served in this process (None:
        no keeper here)."""
        ...

    def active_tab(self) -> str: ...

    def content_changed(self) -> None: ...

    def copy_text(self, what: str, text: str) -> None: ...

    def error(self, text: str) -> None: ...

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None: ...
