"""Write a small file whole or not at all (keys, certificates, credentials, settings), and
make a directory entry outlive a power cut."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a temp file created with `mode` beside `path`, then rename it over.

    The mode is set on the empty file before any byte is written, so a private key is never
    readable by others, not even for a moment. On failure the temp file is removed.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits we want (0644 certs)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that an entry made or renamed in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
