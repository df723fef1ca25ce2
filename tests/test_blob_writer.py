"""store.blobs.BlockWriter: blocks written one behind the reader land in order, hashed, and
a failed write is raised, not lost."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from registry_core.store.blobs import PARALLEL_HASH_MIN, BlockWriter


def test_blocks_land_in_order_and_are_hashed(tmp_path: Path) -> None:
    sizes = [PARALLEL_HASH_MIN * 4, 100, PARALLEL_HASH_MIN, PARALLEL_HASH_MIN * 3 + 7, 1]
    blocks = [os.urandom(n) for n in sizes]
    target = tmp_path / "blob"
    hasher = hashlib.sha256()
    with target.open("ab", buffering=0) as file:
        writer = BlockWriter(file)
        offset = 0
        for block in blocks:
            writer.write(hasher, block, offset)
            offset += len(block)
        writer.wait()
    whole = b"".join(blocks)
    assert target.read_bytes() == whole
    assert hasher.hexdigest() == hashlib.sha256(whole).hexdigest()


def test_a_failed_write_is_raised_by_the_next_call(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    target.write_bytes(b"")
    with target.open("rb", buffering=0) as read_only:  # every write fails: EBADF
        writer = BlockWriter(read_only)
        writer.write(hashlib.sha256(), bytes(PARALLEL_HASH_MIN), 0)
        with pytest.raises(OSError):
            writer.wait()
        writer.wait()  # raised once; nothing left in flight
