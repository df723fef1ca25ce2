"""The metadata store's connections: one per thread, closed when the thread has ended."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from registry_core.store.metadata import Metadata


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    db = Metadata(tmp_path / "registry.db")

    def work() -> None:
        db.conn.execute("SELECT COUNT(*) FROM blobs").fetchone()

    for _ in range(50):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    db.conn.execute("SELECT 1")  # this thread's connection prunes the dead ones
    assert db.open_connections() <= 2
    db.close()
    assert db.open_connections() == 0


def test_a_live_thread_keeps_its_connection(tmp_path: Path) -> None:
    db = Metadata(tmp_path / "registry.db")
    ready, done = threading.Event(), threading.Event()
    seen: list[object] = []

    def work() -> None:
        seen.append(db.conn)
        ready.set()
        done.wait(10)
        seen.append(db.conn)
        try:
            seen.append(db.conn.execute("SELECT 1").fetchone()[0])
        except sqlite3.Error as exc:  # closed under it: said by the assert below
            seen.append(exc)

    t = threading.Thread(target=work)
    t.start()
    try:
        assert ready.wait(10)
        ended = [threading.Thread(target=lambda: db.conn.execute("SELECT 1")) for _ in range(5)]
        for e in ended:
            e.start()
        for e in ended:
            e.join()
        db.conn.execute("SELECT 1")  # prunes the ended threads' connections, not the live one
        assert db.open_connections() == 2  # the live thread's and this one's
    finally:
        done.set()
        t.join()
    assert seen[0] is seen[1] and seen[2] == 1
    db.close()
