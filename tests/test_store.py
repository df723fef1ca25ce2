"""The store's boundary: a database locked by another process is StoreBusy (503 with
Retry-After on the API), never a sqlite3 error; the change counter moves on commits."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from api_helpers import push_image

from registry_core.errors import StoreBusy
from registry_core.registry import Registry
from registry_core.store import Store, metadata


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process's view: a separate connection holding the database's write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata, "BUSY_TIMEOUT_SECONDS", 0.05)


def test_locked_database_is_store_busy(tmp_path: Path, short_busy_timeout: None) -> None:
    store = Store(tmp_path / "registry.db")
    try:
        with (
            write_lock_held(store.metadata.path),
            pytest.raises(StoreBusy) as err,
            store.exclusive(),
        ):
            store.meta.count_low_space_refusal()
        assert err.value.status == 503 and err.value.code == "UNAVAILABLE"
        assert err.value.headers == {"Retry-After": "1"}
        assert store.meta.low_space_refusals() == (0, None)
        with store.exclusive():  # the lock is gone: the same write goes through
            store.meta.count_low_space_refusal()
        assert store.meta.low_space_refusals()[0] == 1
    finally:
        store.close()


def test_change_counter_moves_when_another_connection_commits(tmp_path: Path) -> None:
    store = Store(tmp_path / "registry.db")
    try:
        before = store.change_counter()
        assert store.change_counter() == before
        with write_lock_held(store.metadata.path):
            pass  # rolled back: no change
        other = sqlite3.connect(store.metadata.path, isolation_level=None)
        other.execute("INSERT INTO meta(key, value) VALUES ('x', 'y')")
        other.close()
        assert store.change_counter() != before
    finally:
        store.close()


async def test_api_answers_503_with_retry_after_while_locked(
    registry: Registry, api: httpx.AsyncClient, short_busy_timeout: None
) -> None:
    pushed = await push_image(api, "busy/app", "v1")
    with write_lock_held(registry.datadir.database):
        resp = await api.post("/v2/busy/app/blobs/uploads/")
        # UNAVAILABLE: not in the distribution spec, the reference registry's code for 503.
        assert resp.status_code == 503, resp.text
        assert resp.headers["retry-after"] == "1"
        (error,) = resp.json()["errors"]
        assert error["code"] == "UNAVAILABLE" and error["message"]
        # Reads go on while another process writes (WAL).
        resp = await api.get(f"/v2/busy/app/manifests/{pushed.digest}")
        assert resp.status_code == 200
    assert list(registry.files.uploads_root.iterdir()) == []  # the refused upload left nothing
    resp = await api.post("/v2/busy/app/blobs/uploads/")
    assert resp.status_code == 202
