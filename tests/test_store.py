"""The store's boundary: a database locked by another process is StoreBusy (503 with
Retry-After on the API), never a sqlite3 error; the change counter moves on commits; the mark
and the sweep's re-check apply one liveness rule."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import push_image
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.errors import StoreBusy
from registry_core.registry import Registry
from registry_core.store import Store, metadata
from registry_core.store.manifests import ChildRef, NewManifest


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


# ---- one liveness rule: the whole-store mark and the sweep's one-manifest verdict ------------


@st.composite
def manifest_graphs(draw: st.DrawFn) -> dict[str, Any]:
    """Up to 8 manifests in one repository; holders always come first (content addressing
    makes a cycle impossible): index i lists children j > i, a referrer i has subject j < i."""
    n = draw(st.integers(1, 8))
    later = [st.lists(st.integers(i + 1, n - 1), unique=True, max_size=3) if i < n - 1
             else st.just([]) for i in range(n)]
    return {
        "n": n,
        "children": [draw(s) for s in later],
        "subject": [draw(st.none() | st.integers(0, i - 1)) if i else None for i in range(n)],
        "tagged": draw(st.sets(st.integers(0, n - 1))),
        "young": draw(st.sets(st.integers(0, n - 1))),
        "grace": draw(st.booleans()),
        "delete_untagged": draw(st.booleans()),
    }


def store_graph(store: Store, graph: dict[str, Any]) -> tuple[list[int], float]:
    """The graph as rows; the manifests' ids and the cutoff to use."""
    digest = [f"sha256:{i:064x}" for i in range(graph["n"])]
    with store.exclusive():
        repo = store.catalog.ensure_repository("g/app")
        ids = [
            store.manifests.insert(
                NewManifest(
                    repository_id=repo, digest=digest[i], media_type="x", artifact_type=None,
                    size=1, image_created=None, annotations=None, platforms=None, blobs=(),
                    subject=None if graph["subject"][i] is None else digest[graph["subject"][i]],
                    children=tuple(ChildRef(digest[j], None) for j in graph["children"][i]),
                )
            )
            for i in range(graph["n"])
        ]
        for i in graph["tagged"]:
            store.catalog.set_tag(repo, f"t{i}", ids[i])
    t = time.time()
    old = [ids[i] for i in range(graph["n"]) if not (graph["grace"] and i in graph["young"])]
    conn = store.metadata.conn
    conn.executemany("UPDATE manifests SET created_at = ? WHERE id = ?", [(t - 1000, m)
                                                                        for m in old])
    return ids, t - 500


@settings(max_examples=80, deadline=None)
@given(manifest_graphs())
def test_the_sweep_deletes_exactly_what_the_mark_finds_dead(graph: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "registry.db")
        try:
            ids, cutoff = store_graph(store, graph)
            du = graph["delete_untagged"]
            with store.snapshot():
                store.reachability.mark(delete_untagged=du, cutoff=cutoff)
                dead = store.reachability.dead_ids()
            for m in set(ids) - dead:
                assert store.reachability.verdict(m, delete_untagged=du, cutoff=cutoff) != "delete"
            deleted, pending = set(), sorted(dead)
            while pending:  # as the GC sweeps: holders first, the held on a later pass
                deferred = []
                for m in pending:
                    verdict = store.reachability.verdict(m, delete_untagged=du, cutoff=cutoff)
                    assert verdict != "keep", f"manifest {m} is dead to the mark but a root"
                    if verdict == "blocked":
                        deferred.append(m)
                    else:
                        with store.exclusive():
                            store.manifests.delete(m)
                        deleted.add(m)
                assert len(deferred) < len(pending), "the sweep is stuck"
                pending = deferred
            assert deleted == dead
        finally:
            store.close()
