"""The audit log: who did what, from where, with what result."""

from __future__ import annotations

from registry_core.store.base import Queries


class AuditRows(Queries):
    pass
