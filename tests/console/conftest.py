"""Console test fixtures: an enabled data dir with images pushed through the core API.

The shared fixtures of tests/conftest.py (datadir, registry) are reused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import FIXED_PUSH, Image, backdate, seed

from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.registry import Registry


@pytest.fixture
def seeded(datadir: DataDir) -> Iterator[tuple[Registry, dict[str, Image]]]:
    """The shared enabled data dir (free port), with the fixed images pushed."""
    registry = Registry(datadir)
    images = seed(registry)
    yield registry, images
    registry.close()


@pytest.fixture
def snapshot_datadir(tmp_path: Path) -> DataDir:
    """A data dir whose every shown value is fixed: name, IP, port, images, dates."""
    datadir = DataDir(tmp_path / "data")
    enable(datadir, device_name="edge", dns_domain="test", node_ip="10.0.0.5", port=31001)
    registry = Registry(datadir)
    seed(registry)
    backdate(registry, FIXED_PUSH)
    registry.close()
    return datadir


