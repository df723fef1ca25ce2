"""Manifest lookups served from memory while the database is unchanged.

Pulls ask for the same manifests over and over (every node of a cluster, every restart of
a pod). A lookup costs two queries and a file read; a hit costs one look at the registry's
`change_counter()`, which changes as soon as any other connection (another thread or
another process) commits, and empties the cache. Writes never go through the connection
that reads here (the HTTP face runs them in worker threads), so a hit is never stale.

Used from the server's event loop thread only.
"""

from __future__ import annotations

from collections import OrderedDict

from registry_core.http.negotiation import choose_manifest
from registry_core.registry import Registry, StoredManifest

MAX_BODY_BYTES = 64 << 10
MAX_TOTAL_BYTES = 32 << 20

Key = tuple[str, str, str]


class ManifestCache:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._version: int | None = None
        self._entries: OrderedDict[Key, tuple[StoredManifest, bytes]] = OrderedDict()
        self._bytes = 0

    def lookup(self, name: str, reference: str, accept: str) -> tuple[StoredManifest, bytes | None]:
        """The manifest a GET or HEAD should answer with, and its body when small."""
        version = self.registry.change_counter()
        if version != self._version:
            self._entries.clear()
            self._bytes = 0
            self._version = version
        key = (name, reference, accept)
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return hit
        stored = choose_manifest(self.registry, name, reference, accept)
        if stored.size > MAX_BODY_BYTES:
            return stored, None
        body = stored.body()
        self._remember(key, stored, body)
        return stored, body

    def _remember(self, key: Key, stored: StoredManifest, body: bytes) -> None:
        self._entries[key] = (stored, body)
        self._bytes += len(body)
        while self._bytes > MAX_TOTAL_BYTES and self._entries:
            _, (_, old) = self._entries.popitem(last=False)
            self._bytes -= len(old)
