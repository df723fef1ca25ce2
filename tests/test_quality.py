"""The house rules that a tool can check: ruff clean, mypy strict clean, the layering
(registry_core never imports console), SQL only in registry_core/store/, no import circles."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_clean() -> None:
    proc = run("ruff", "check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_clean() -> None:
    proc = run("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_registry_core_never_imports_console() -> None:
    offenders = []
    for path in (ROOT / "registry_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {n}"
                for n in names
                if n == "console" or n.startswith(("console.", "textual"))
            ]
    assert offenders == []


# ---- SQL only in registry_core/store/ ---------------------------------------------------------
# (tests and bench/ may still arrange and inspect rows directly)

SQL_START = re.compile(
    r"^\s*(SELECT\s|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|"
    r"CREATE\s|PRAGMA\s|BEGIN\b)"
)
DB_ATTRIBUTES = frozenset({"execute", "executemany", "executescript", "conn", "db"})
"""Attributes that only reach the database (a connection, `Registry.db`): store-only too."""


def python_files(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def sql_offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "sqlite3" for a in node.names
        ):
            found.append(f"line {node.lineno}: import sqlite3")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlite3":
            found.append(f"line {node.lineno}: from sqlite3 import")
        elif isinstance(node, ast.Attribute) and node.attr in DB_ATTRIBUTES:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL_START.match(node.value)
        ):
            found.append(f"line {node.lineno}: SQL {node.value.strip()[:40]!r}")
    return found


def test_sql_only_in_the_store() -> None:
    store = ROOT / "registry_core" / "store"
    offenders = []
    for path in python_files("registry_core", "console"):
        rel = path.relative_to(ROOT).as_posix()
        if path.is_relative_to(store):
            continue
        offenders += [f"{rel} {o}" for o in sql_offences(path)]
    assert offenders == [], "SQL or sqlite3 outside registry_core/store/:\n" + "\n".join(
        offenders
    )


def test_sql_gate_sees_sql() -> None:
    """The gate itself: it finds what it must (and a store module does have SQL)."""
    offences = sql_offences(ROOT / "registry_core" / "store" / "catalog.py")
    assert any("SELECT" in o for o in offences) and any("INSERT" in o for o in offences)
    assert SQL_START.match("DELETE FROM tags") and SQL_START.match("  PRAGMA data_version")
    assert not SQL_START.match("DELETE") and not SQL_START.match("Select a repository")
    assert any(".execute" in o for o in offences)
    assert any(".conn" in o for o in sql_offences(ROOT / "registry_core" / "store" / "base.py"))


# ---- no import circles --------------------------------------------------------------------------

CYCLE_PACKAGES = ("registry_core", "console")


def module_names() -> dict[str, Path]:
    names = {}
    for path in python_files(*CYCLE_PACKAGES):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Our modules that `name` imports anywhere in it (a function-level or TYPE_CHECKING
    import is a dependency too); `from x import y` is x.y when that is a module."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in known else base)
    return {t for t in targets if t in known and t != name}


def import_graph() -> dict[str, set[str]]:
    known = module_names()
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circles() -> None:
    found = cycles(import_graph())
    assert found == [], f"import circles (break them with a Protocol or a lower module): {found}"


def test_cycle_check_sees_circles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    assert "registry_core.store.base" in graph["registry_core.store.catalog"]
    assert "registry_core.usage" in graph["registry_core.gc"]


# ---- no class in registry_core over about 250 lines --------------------------------------------

CLASS_LINES_MAX = 250


def class_sizes(path: Path) -> dict[str, int]:
    return {
        f"{path.relative_to(ROOT).as_posix()}:{node.name}": (node.end_lineno or node.lineno)
        - node.lineno
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
    }


def test_no_big_class_in_the_core() -> None:
    sizes: dict[str, int] = {}
    for path in python_files("registry_core"):
        sizes.update(class_sizes(path))
    too_big = {name: lines for name, lines in sizes.items() if lines > CLASS_LINES_MAX}
    assert too_big == {}, "split these classes (uploads.py and gc_lock.py show how)"
    assert "registry_core/registry.py:Registry" in sizes  # the walk sees the core's classes
