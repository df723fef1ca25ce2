"""The readiness check (`stage --check`) when the uplink is down during the maintenance window:
it asks the parent once, not with the sync's retries (5 tries with backoff for each image:
8 to 15 s each against a refused connection, minutes against a blackholed one), and says the
images here could not be verified, with why. The parent is a second edge registry over TLS,
behind the cutting proxy, which counts the connections it refuses while the link is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cutting_proxy import CuttingProxy
from imagebuilder import ImageSpec, write_oci_image
from support import LiveServer, connected_site, put_on_parent
from test_sync_staging import as_json, cli

from registry_core.identity import CONSOLE
from registry_core.registry import Registry
from registry_core.sync import staging
from registry_core.sync.runner import open_runner

pytestmark = pytest.mark.socket


@pytest.fixture
def link(live_server: LiveServer) -> Iterator[CuttingProxy]:
    with CuttingProxy(("127.0.0.1", live_server.port)) as proxy:
        yield proxy


@pytest.fixture
def site(tmp_path: Path, live_server: LiveServer, link: CuttingProxy) -> Iterator[Registry]:
    """A connected registry that reaches the live server through `link`."""
    registry = Registry(connected_site(tmp_path / "site", live_server, link.address))
    yield registry
    registry.close()


def test_the_check_asks_a_parent_that_is_down_once(
    live_server: LiveServer, site: Registry, link: CuttingProxy, tmp_path: Path
) -> None:
    refs = ["shop/app:v1", "shop/app:v2"]
    for tag in ("v1", "v2"):
        image = write_oci_image(tmp_path / tag, ImageSpec(tag=tag))
        put_on_parent(live_server.service.registry, "shop/app", image, tag)
    runner = open_runner(site)
    try:
        _, items = staging.stage(site, runner, staging.parse_refs(refs), "window-7",
                                 who=CONSOLE)
    finally:
        runner.close()
    assert [i.status for i in items] == ["staged", "staged"]

    link.down.set()  # the uplink drops before the deployment
    result = cli(site.datadir, "stage", "--check", "--json", *refs)

    assert result.returncode == 0, result.stderr  # both here: ready to deploy, unverified
    images = as_json(result)["images"]
    assert [i["state"] for i in images] == ["unverified", "unverified"]
    for image in images:
        assert "the parent could not be asked" in image["message"]
        assert "unreachable" in image["message"] and "gave up after 1 try" in image["message"]
    assert link.refused == 1  # one try for the whole check
