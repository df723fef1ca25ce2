"""Reading an image layout or archive: a directory, or a tar (plain or gzip) of one.

A source is read in two passes at most: one to list it (a tar's headers, with the small JSON
documents it holds kept in memory: index.json, manifests, configs), one to stream the blobs
an import needs, in the order they lie in the file, so that a gzip stream is decompressed
forwards only. Every failure to read becomes one SourceInvalid naming the file or member.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import posixpath
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from registry_core.transfer.errors import SourceInvalid

CHUNK = 1 << 20
JSON_CACHE_MEMBER = 4 << 20
"""Members up to this size that look like JSON are kept in memory while listing a tar."""
JSON_CACHE_TOTAL = 128 << 20
MAX_LINK_HOPS = 8
MARKERS = ("oci-layout", "index.json", "manifest.json")
"""Files at the root of a layout or a docker-archive."""
HEAD_BYTES = 8
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
T = TypeVar("T")
READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError)


class Source(Protocol):
    """Files of a layout or archive, by their path inside it (`blobs/sha256/<hex>`)."""

    path: Path

    def size(self, name: str) -> int | None:
        """The member's size, None when it is not there."""
        ...

    def read_small(self, name: str, limit: int) -> bytes:
        """A whole member held in memory (a JSON document); SourceInvalid when it is missing
        or larger than `limit`."""
        ...

    def head(self, name: str, count: int) -> bytes:
        """The member's first bytes (to recognise compressed content)."""
        ...

    def absent(self, name: str) -> str:
        """Why the member cannot be read (`is missing`, `is a directory, not a file`...)."""
        ...

    def stream(self, names: Sequence[str]) -> Iterator[tuple[str, Iterator[bytes]]]:
        """Each member's content in chunks, in the order cheapest to read."""
        ...

    def close(self) -> None: ...


def open_source(path: Path) -> Source:
    """A directory or a tar file (plain or gzip); SourceInvalid when it is neither (a pipe
    or a device is refused before it is opened: reading one could wait forever)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SourceInvalid(f"{path} does not exist") from None
    except OSError as exc:
        raise SourceInvalid(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        return DirSource(path)
    if not stat.S_ISREG(mode):
        raise SourceInvalid(f"{path} is {_kind(mode)}, not a layout directory or an "
                            "archive file")
    return TarSource(path)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"


def clean_name(name: str) -> str:
    """A member path as written in an archive or a manifest.json, normalised; SourceInvalid
    for one that leaves the archive."""
    norm = posixpath.normpath(name.lstrip("/")) if name else ""
    if not norm or norm == "." or norm.startswith("../") or norm == "..":
        raise SourceInvalid(f"invalid path {name[:200]!r} in the archive")
    return norm


class DirSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._root = path.resolve()

    def _file(self, name: str) -> Path | None:
        target = (self._root / clean_name(name)).resolve()
        if not target.is_relative_to(self._root) or not target.is_file():
            return None
        return target

    def size(self, name: str) -> int | None:
        target = self._file(name)
        return None if target is None else target.stat().st_size

    def read_small(self, name: str, limit: int) -> bytes:
        target = self._required(name)
        if target.stat().st_size > limit:
            raise SourceInvalid(f"{self.path / name}: larger than {limit} bytes")
        return _reading(self.path / name, target.read_bytes)

    def head(self, name: str, count: int) -> bytes:
        with open(self._required(name), "rb") as file:
            return file.read(count)

    def stream(self, names: Sequence[str]) -> Iterator[tuple[str, Iterator[bytes]]]:
        for name in names:
            yield name, self._chunks(name)

    def _chunks(self, name: str) -> Iterator[bytes]:
        with open(self._required(name), "rb") as file:
            while chunk := _reading(self.path / name, lambda: file.read(CHUNK)):
                yield chunk

    def _required(self, name: str) -> Path:
        target = self._file(name)
        if target is None:
            raise SourceInvalid(f"{self.path / name} {self.absent(name)}")
        return target

    def absent(self, name: str) -> str:
        path = self._root / clean_name(name)
        if not path.exists():
            return "is a broken symbolic link" if path.is_symlink() else "is missing"
        target = path.resolve()
        if not target.is_relative_to(self._root):
            return "is a symbolic link leading out of the layout"
        if target.is_dir():
            return "is a directory, not a file"
        return "is not a regular file" if not target.is_file() else "is missing"

    def close(self) -> None:
        pass


class TarSource:
    """A tar file, plain or gzip-compressed, listed once when opened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._members: dict[str, tarfile.TarInfo] = {}
        self._links: dict[str, str] = {}
        self._cache: dict[str, bytes] = {}
        self._heads: dict[str, bytes] = {}
        self._others: dict[str, str] = {}
        """Members that are neither files nor links: name -> what they are."""
        self._tar = self._open()
        try:
            self._list()
        except BaseException:
            self._tar.close()
            raise

    def _open(self) -> tarfile.TarFile:
        with open(self.path, "rb") as file:
            magic = file.read(4)
        if magic.startswith(ZSTD_MAGIC):
            raise SourceInvalid(f"{self.path}: zstd-compressed archives are not supported "
                                "(decompress it first)")
        try:
            if magic.startswith(GZIP_MAGIC):
                return tarfile.open(self.path, "r:gz")
            return tarfile.open(self.path, "r:")
        except READ_ERRORS as exc:
            raise SourceInvalid(f"{self.path}: not a readable tar archive ({exc})") from None

    def _list(self) -> None:
        budget = JSON_CACHE_TOTAL
        name = ""
        try:
            for info in self._tar:
                if not (info.isfile() or info.issym() or info.islnk()):
                    self._note_other(info)  # directories and the like: nothing to read
                    continue
                name = clean_name(info.name)
                if info.isfile():
                    self._members[name] = info
                    self._heads[name] = self._head(name, info)
                    if info.size <= min(JSON_CACHE_MEMBER, budget) \
                            and self._heads[name][:1] in (b"{", b"["):
                        self._cache[name] = self._read(name, info)
                        budget -= info.size
                elif info.issym():
                    target = posixpath.join(posixpath.dirname(name), info.linkname)
                    self._links[name] = clean_name(target)
                elif info.islnk():
                    self._links[name] = clean_name(info.linkname)
        except READ_ERRORS as exc:
            where = f", at or after {name}" if name else ""
            raise SourceInvalid(f"{self.path}: truncated or damaged archive ({exc}{where})") \
                from None
        self._check_not_cut()
        self._strip_top_folder()

    def _note_other(self, info: tarfile.TarInfo) -> None:
        norm = posixpath.normpath(info.name.lstrip("/"))
        if norm not in (".", "..") and not norm.startswith("../"):
            self._others[norm] = "a directory" if info.isdir() else "not a regular file"

    def _strip_top_folder(self) -> None:
        """A tar of the folder rather than of its content (`tar cf x.tar layout/`): its
        members are read as if the folder were the root."""
        if any(m in self._members for m in MARKERS):
            return
        tops = {n.split("/", 1)[0] for n in self._members if "/" in n}
        found = [t for t in tops if any(f"{t}/{m}" in self._members for m in MARKERS)]
        if len(found) != 1:
            return
        prefix = found[0] + "/"

        def strip(names: dict[str, T]) -> dict[str, T]:
            return {n.removeprefix(prefix): v for n, v in names.items()}

        self._members, self._cache, self._heads, self._others = (
            strip(self._members), strip(self._cache), strip(self._heads), strip(self._others))
        self._links = {n.removeprefix(prefix): t.removeprefix(prefix)
                       for n, t in self._links.items()}

    def _check_not_cut(self) -> None:
        """A plain tar cut short inside a member lists without complaint: compare the
        members' extent with the file's size."""
        if self._tar.fileobj is None or isinstance(self._tar.fileobj, gzip.GzipFile):
            return
        length = os.stat(self.path).st_size
        for name, info in self._members.items():
            if info.offset_data + info.size > length:
                raise SourceInvalid(f"{self.path}: truncated archive ({name} is cut short)")
        self._check_end(length)

    def _check_end(self, length: int) -> None:
        """The listing stops quietly at a header cut short or unreadable, and at the end
        of the file: tar's end marker (a zero block) is where it should stop."""
        end = self._tar.offset
        if length - end >= tarfile.BLOCKSIZE:
            with open(self.path, "rb") as file:
                file.seek(end)
                if file.read(tarfile.BLOCKSIZE).strip(b"\0"):
                    raise SourceInvalid(f"{self.path}: damaged archive (an unreadable tar "
                                        f"header at byte {end})")
        elif length > end:
            raise SourceInvalid(f"{self.path}: truncated archive (it ends inside a tar "
                                f"header, at byte {length})")
        elif not any(n.rsplit("/", 1)[-1] in ("index.json", "manifest.json")
                     for n in self._members):
            raise SourceInvalid(f"{self.path}: truncated archive (it ends at byte {length} "
                                "without tar's end marker, before its index.json or "
                                "manifest.json)")

    def _head(self, name: str, info: tarfile.TarInfo) -> bytes:
        """The first bytes of each member, read as the listing passes them (a gzip stream is
        then never rewound to recognise a compressed layer)."""
        file = self._tar.extractfile(info)
        assert file is not None
        return _reading(self.path, lambda: file.read(HEAD_BYTES), name)

    def _read(self, name: str, info: tarfile.TarInfo) -> bytes:
        file = self._tar.extractfile(info)
        if file is None:
            raise SourceInvalid(f"{self.path}: {name} is not a regular file")
        return _reading(self.path, file.read, name)

    def _key(self, name: str) -> str | None:
        """The member a name stands for, through links; None when there is none."""
        name = clean_name(name)
        for _ in range(MAX_LINK_HOPS):
            if name not in self._links:
                return name if name in self._members else None
            name = self._links[name]
        return None

    def _required(self, name: str) -> tuple[str, tarfile.TarInfo]:
        key = self._key(name)
        if key is None:
            raise SourceInvalid(f"{self.path}: {name} {self.absent(name)}")
        return key, self._members[key]

    def absent(self, name: str) -> str:
        name = clean_name(name)
        if name in self._others:
            return f"is {self._others[name]} in the archive, not a file"
        if name in self._links:
            return "is a link to nothing in the archive"
        return "is missing from the archive"

    def size(self, name: str) -> int | None:
        key = self._key(name)
        return None if key is None else self._members[key].size

    def read_small(self, name: str, limit: int) -> bytes:
        key, info = self._required(name)
        if info.size > limit:
            raise SourceInvalid(f"{self.path}: {name} is larger than {limit} bytes")
        cached = self._cache.get(key)
        return cached if cached is not None else self._read(name, info)

    def head(self, name: str, count: int) -> bytes:
        key, info = self._required(name)
        if count <= HEAD_BYTES:
            return self._heads[key][:count]
        file = self._tar.extractfile(info)
        assert file is not None
        return _reading(self.path, lambda: file.read(count), name)

    def stream(self, names: Sequence[str]) -> Iterator[tuple[str, Iterator[bytes]]]:
        infos = sorted(((self._required(n)[1], n) for n in names),
                       key=lambda p: p[0].offset_data)
        for info, name in infos:
            yield name, self._chunks(name, info)

    def _chunks(self, name: str, info: tarfile.TarInfo) -> Iterator[bytes]:
        file = self._tar.extractfile(info)
        assert file is not None
        while chunk := _reading(self.path, lambda: file.read(CHUNK), name):
            yield chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._tar.close()


def _reading(path: Path, read: Callable[[], bytes], member: str | None = None) -> bytes:
    where = f"{path}: {member}" if member else str(path)
    try:
        return read()
    except READ_ERRORS as exc:
        raise SourceInvalid(f"{where}: cannot be read, truncated or damaged ({exc})") from None
