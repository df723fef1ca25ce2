"""A process that opens the database a second time (another Store, as a config change's
audit row or a second Registry does) still sees what other processes commit: the token
changes of `edge-console token` reach a server that did so.

Closing any descriptor of a file drops every POSIX lock the process holds on it; a plain
open() of registry.db (to read its header) once did that, another process then found no
reader, reset the WAL on its close, and this process's connections read a stale database
from then on (and could have written into a WAL nobody else read)."""

from __future__ import annotations

from test_cli_basics import cli_json

from registry_core.datadir import DataDir
from registry_core.registry import Registry
from registry_core.store import Store


def test_a_second_store_in_the_process_keeps_the_first_one_current(
    datadir: DataDir, registry: Registry
) -> None:
    before = registry.store.tokens.generation()  # this thread's connection, open
    Store(datadir.database).close()
    cli_json(datadir.root, "token", "create", "ci", "--scope", "app/*:content/read")
    assert registry.store.tokens.generation() > before
    assert [t.name for t in registry.store.tokens.all()] == ["ci"]
    cli_json(datadir.root, "token", "delete", "ci")
    assert registry.store.tokens.all() == []
