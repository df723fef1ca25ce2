"""The liveness rule, written once as SQL, for the whole-store mark and for the one-manifest
re-check of the sweep (store/reachability.py) and for "which index lists this manifest".

Edges run from a holder to what it holds, always inside one repository:

* index -> child manifest (`manifest_children`), and
* subject -> referrer (OCI 1.1 `subject`).

Roots are tagged manifests, manifests pinned by a stage (stages.py), manifests the sync keeps
after a conflict (kept.py) and, when untagged manifests are kept, every untagged manifest that
is not a referrer; with a grace period, manifests created at or after the cutoff too. Each
fragment is filtered with `{where}` (over `p`/`c` for index edges, `s`/`r` for subject edges,
`m` for roots) and takes named parameters (`:now` is the time pins are judged at).
"""

from __future__ import annotations

from registry_core.store.stages import ACTIVE_PIN

# The unary + keeps SQLite from reaching `p` through its repository index (a scan of the
# whole repository) when one child is asked for: `p` comes from `mc.parent_id`.
INDEX_EDGES = (
    "SELECT p.id AS src, c.id AS dst FROM manifest_children mc "
    "JOIN manifests p ON p.id = mc.parent_id "
    "JOIN manifests c ON c.repository_id = +p.repository_id AND c.digest = mc.child_digest "
    "WHERE {where}"
)
SUBJECT_EDGES = (
    "SELECT s.id AS src, r.id AS dst FROM manifests r "
    "JOIN manifests s ON s.repository_id = r.repository_id AND s.digest = r.subject "
    "WHERE r.subject IS NOT NULL AND {where}"
)
PINNED = (
    "EXISTS (SELECT 1 FROM stage_items s JOIN repositories sr ON sr.name = s.repository "
    f"WHERE s.digest = m.digest AND sr.id = m.repository_id AND {ACTIVE_PIN})"
)
"""Pinned by a stage: a staged item names it, neither released nor expired."""
KEPT = "EXISTS (SELECT 1 FROM kept_manifests k WHERE k.manifest_id = m.id)"
"""Kept by the sync: a local manifest that lost its tag in a conflict (kept.py)."""
ROOT = (
    "(EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id) "
    f"OR (:keep_untagged AND m.subject IS NULL) OR {PINNED} OR {KEPT})"
)
"""Kept with no grace period: tagged, pinned, kept by the sync, or an untagged non-referrer
while untagged are kept."""
YOUNG = "(:cutoff IS NOT NULL AND m.created_at >= :cutoff)"
"""Kept by the grace period."""


def edges(index_where: str, subject_where: str) -> str:
    return (
        INDEX_EDGES.format(where=index_where)
        + " UNION ALL "
        + SUBJECT_EDGES.format(where=subject_where)
    )
