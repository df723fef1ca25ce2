"""A path field over a directory tree, for the import and export dialogs.

The tree starts at a folder (the home folder, or the one last used); moving in it fills the
field. Import: choosing a file, or a folder that holds an OCI layout or a docker-archive's
manifest.json, chooses the source; other folders just open. Export: the tree lists folders
only, and moving in it puts the export's file name in the highlighted folder. Enter in the
field chooses what is typed (a folder that holds no image opens in the tree instead).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DirectoryTree, Input, Tree
from textual.widgets.directory_tree import DirEntry

IMAGE_MARKERS = ("oci-layout", "index.json", "manifest.json")


def holds_images(folder: Path) -> bool:
    """A folder an import reads (an OCI layout, or an unpacked docker-archive)."""
    return any((folder / name).is_file() for name in IMAGE_MARKERS)


def shown_path(path: Path) -> str:
    """The path as the dialogs show it: `~/usb/layout` under the home folder."""
    home = Path.home()
    for base in (home, home.resolve()):
        if path.is_absolute() and path.is_relative_to(base):
            rest = path.relative_to(base)
            return "~" if rest == Path() else f"~/{rest}"
    return str(path)


class PickerTree(DirectoryTree):
    """A directory tree whose root reads like the field (`~/usb`); folders only for an
    export's destination."""

    def __init__(self, path: Path, *, folders_only: bool, id: str | None = None) -> None:
        super().__init__(path, id=id)
        self.folders_only = folders_only

    def on_mount(self) -> None:
        self.root.set_label(shown_path(Path(self.path)))

    async def watch_path(self) -> None:
        await super().watch_path()
        self.root.set_label(shown_path(Path(self.path)))

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        if not self.folders_only:
            return paths
        return [path for path in paths if self._safe_is_dir(path)]


class PathPicker(Vertical):
    """The field and the tree. Posts `Chosen` with the path the technician picked."""

    class Chosen(Message):
        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, start: Path, *, folders_only: bool = False, file_name: str = "",
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.start = start
        self.folders_only = folders_only
        self.file_name = file_name
        """Export: the name put in the highlighted folder."""

    def compose(self) -> ComposeResult:
        value = self.start / self.file_name if self.file_name else self.start
        yield Input(shown_path(value), id="transfer-path", compact=True,
                    placeholder="a folder (OCI layout) or a .tar / .tar.gz")
        yield PickerTree(self.start, folders_only=self.folders_only, id="transfer-tree")

    @property
    def field(self) -> Input:
        return self.query_one("#transfer-path", Input)

    @property
    def folder_tree(self) -> DirectoryTree:
        return self.query_one("#transfer-tree", DirectoryTree)

    @property
    def path(self) -> Path:
        return Path(self.field.value.strip()).expanduser()

    @on(Tree.NodeHighlighted, "#transfer-tree")
    def _highlighted(self, event: Tree.NodeHighlighted[DirEntry]) -> None:
        entry = event.node.data
        if entry is None:
            return
        where = Path(entry.path)
        self.field.value = shown_path(where / self.file_name if self.file_name else where)

    @on(DirectoryTree.FileSelected, "#transfer-tree")
    def _file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.post_message(self.Chosen(event.path))

    @on(DirectoryTree.DirectorySelected, "#transfer-tree")
    def _folder_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        if not self.folders_only and holds_images(event.path):
            self.post_message(self.Chosen(event.path))

    @on(Input.Submitted, "#transfer-path")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        path = self.path
        if not self.folders_only and path.is_dir() and not holds_images(path):
            self.folder_tree.path = path  # a folder to look in, not a source
            return
        self.post_message(self.Chosen(path))

    def set_file_name(self, name: str) -> None:
        """Export: the format changed the file's name (or its extension)."""
        self.file_name = name
        self.field.value = shown_path(self.path.parent / name)
