"""The connected registry against the reference registry (distribution 2.8, tests/parents.py)
as its parent, through the command line as a technician runs it: configure from a
connection string on standard input, run, pull what came with skopeo, run again."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from cutting_proxy import CuttingProxy
from imagebuilder import ImageSpec, make_layer, write_oci_image, write_oci_index
from parents import FileServer, Parent, start_reference
from support import free_port, run_skopeo, start_live_server
from test_sync_push import requests_logged

from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.registry import Registry
from registry_core.sync.client import ParentClient
from registry_core.sync.engine import Scope
from registry_core.sync.runner import SyncRunner

pytestmark = [pytest.mark.socket, pytest.mark.skopeo]

ROOT = Path(__file__).resolve().parent.parent


def cli(data: DataDir, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", "--data-dir", str(data.root), *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def cli_json(data: DataDir, *args: str, stdin: str | None = None) -> Any:
    result = cli(data, *args, "--json", stdin=stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def connection_string(parent: Parent) -> str:
    return (f"ConnectedRegistryName=edgesite1;SyncTokenName={parent.username};"
            f"SyncTokenPassword={parent.password};ParentGatewayEndpoint={parent.address};"
            "ParentEndpointProtocol=https\r\n")


def parent_digest(parent: Parent, skopeo: str, ref: str) -> str:
    out = run_skopeo(skopeo, "inspect", "--raw", "--creds", parent.creds, "--cert-dir",
                     str(parent.cert_dir), f"docker://{parent.address}/{ref}")
    return "sha256:" + hashlib.sha256(out.encode()).hexdigest()


def test_configure_run_pull_and_run_again(reference_parent: Parent, skopeo: str,
                                          tmp_path: Path) -> None:
    parent = reference_parent
    parent.push(f"oci:{write_oci_index(tmp_path / 'multi').path}:multi", "shop/multi:v1")
    plain = write_oci_image(tmp_path / "plain", ImageSpec(tag="v1"))
    parent.push(f"oci:{plain.path}:v1", "shop/web:v1")
    parent.push(f"oci:{plain.path}:v1", "shop/web:stable")
    parent.push(f"oci:{plain.path}:v1", "other/skip:v1")
    site = DataDir(tmp_path / "site")
    enable(site, device_name="site", dns_domain="test", node_ip="127.0.0.1", port=free_port())
    Registry(site).close()

    configured = cli_json(site, "sync", "configure", "--connection-string-file", "-",
                          "--parent-ca", str(parent.ca_cert), "--repository", "shop/*",
                          stdin=connection_string(parent))
    assert configured["parent_endpoint"] == parent.address
    assert parent.password not in json.dumps(configured)

    first = cli_json(site, "sync", "run")
    assert first["status"] == "succeeded", first["errors"]
    assert first["details"]["tags_changed"] == 3
    status = cli_json(site, "sync", "status")
    assert status["state"] == "Online" and status["last_sync"] is not None

    pulled = tmp_path / "pulled"
    pulled.mkdir()
    served = start_live_server(site, tmp_path / "site-certs")
    try:
        for ref in ("shop/multi:v1", "shop/web:v1", "shop/web:stable"):
            local = run_skopeo(skopeo, "inspect", "--raw", "--creds", served.creds,
                               "--cert-dir", str(served.cert_dir),
                               f"docker://{served.address}/{ref}")
            assert "sha256:" + hashlib.sha256(local.encode()).hexdigest() == parent_digest(
                parent, skopeo, ref)
            run_skopeo(skopeo, "copy", "--all", "--src-creds", served.creds, "--src-cert-dir",
                       str(served.cert_dir), f"docker://{served.address}/{ref}",
                       f"dir:{pulled / ref.replace('/', '_').replace(':', '-')}")
        with served.client() as client:
            assert client.get("/v2/_catalog").json()["repositories"] == ["shop/multi",
                                                                          "shop/web"]
    finally:
        served.service.close()

    second = cli_json(site, "sync", "run")
    assert second["status"] == "succeeded"
    assert (second["details"]["tags_changed"], second["blobs_copied"],
            second["manifests_copied"]) == (0, 0, 0)


def test_a_parent_with_token_auth(token_parent: Parent, skopeo: str, tmp_path: Path) -> None:
    """Bearer tokens per the distribution token specification, fetched once per scope."""
    parent = token_parent
    image = write_oci_image(tmp_path / "app", ImageSpec(tag="v1"))
    parent.push(f"oci:{image.path}:v1", "tokened/app:v1")
    parent.push(f"oci:{image.path}:v1", "tokened/app:v2")
    site = DataDir(tmp_path / "site")
    enable(site, device_name="site", dns_domain="test", node_ip="127.0.0.1", port=free_port())
    cli_json(site, "sync", "configure", "--connection-string-file", "-", "--parent-ca",
             str(parent.ca_cert), "--repository", "tokened/app",
             stdin=connection_string(parent))
    assert parent.issuer is not None
    before = len(parent.issuer.granted())

    record = cli_json(site, "sync", "run")

    assert record["status"] == "succeeded", record["errors"]
    assert record["details"]["tags_changed"] == 2
    scopes = [s for r in parent.issuer.granted()[before:] for s in r.scopes]
    assert scopes.count("repository:tokened/app:pull") == 1  # cached for the whole run
    registry = Registry(site)
    try:
        assert registry.get_manifest("tokened/app", "v2").digest == image.digest
    finally:
        registry.close()


def test_a_parent_without_the_referrers_api_costs_no_request_for_unchanged_tags(
    reference_parent: Parent, tmp_path: Path
) -> None:
    """Distribution 2.8 has no referrers API: the first run learns it (a 404) and keeps it in
    its record; a run with nothing changed then costs one HEAD per tag and nothing else: no
    manifest GET (the `sha256-<hex>` fallback tag is one). Distribution does not log a
    request to a route it lacks, so the API request itself cannot be counted here; the
    record says the run knew not to ask."""
    parent = reference_parent
    image = write_oci_image(tmp_path / "app", ImageSpec(tag="v1"))
    parent.push(f"oci:{image.path}:v1", "refs/app:v1")
    parent.push(f"oci:{image.path}:v1", "refs/app:v2")
    site = DataDir(tmp_path / "site")
    enable(site, device_name="site", dns_domain="test", node_ip="127.0.0.1", port=free_port())
    registry = Registry(site)

    def connect() -> ParentClient:
        return ParentClient(parent.address, parent.username, parent.password,
                            ca_file=parent.ca_cert)

    def manifest_requests() -> tuple[int, int]:
        path = "/v2/refs/app/manifests/"
        return requests_logged(parent, "HEAD", path), requests_logged(parent, "GET", path)

    sync = SyncRunner(registry, connect, Scope(("refs/app",)))
    try:
        first = sync.run()
        assert first.status == "succeeded", first.errors
        assert first.details["referrers_api"] is False
        heads, gets = manifest_requests()
        second = sync.run()
        assert second.status == "succeeded", second.errors
        assert second.details["tags_changed"] == 0
        assert second.details["referrers_api"] is False
        assert manifest_requests() == (heads + 2, gets)
    finally:
        sync.close()
        registry.close()


# ---- the bound on parallel transfers ---------------------------------------------------------


class GetsUnderWay(CuttingProxy):
    """In front of a plain-HTTP file server that answers one GET per connection (HTTP/1.0):
    counts the GETs under way at once, each from its connection until the last byte of its
    answer (by Content-Length), counted down before that byte is passed on, so that the
    client cannot have begun its next GET yet."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.under_way = 0
        self.most = 0
        self._count_lock = threading.Lock()
        super().__init__(upstream)

    def _count(self, step: int) -> None:
        with self._count_lock:
            self.under_way += step
            self.most = max(self.most, self.under_way)

    def _pump(self, source: socket.socket, target: socket.socket, downstream: bool = False,
              limit: int | None = None) -> None:
        if not downstream:
            super()._pump(source, target, downstream, limit)
            return
        self._count(1)
        counted, head, left = False, b"", -1
        try:
            while data := source.recv(65536):
                if left < 0:
                    head += data
                    if b"\r\n\r\n" not in head:
                        continue
                    headers, _, body = head.partition(b"\r\n\r\n")
                    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", headers)
                    left, data = (int(length.group(1)) if length else 0) - len(body), head
                else:
                    left -= len(data)
                if left <= 0 and not counted:
                    counted = True
                    self._count(-1)
                target.sendall(data)
        except OSError:
            pass
        finally:
            if not counted:
                self._count(-1)
            source.close()
            target.close()


def test_at_most_parallel_blob_transfers_at_once(reference_parent: Parent,
                                                 tmp_path: Path) -> None:
    """Blob GETs redirected (distribution's redirect middleware) to a file server behind a
    proxy that counts them: six blobs of two images, `parallel=2`: never more than two."""
    layers = tuple(make_layer(os.urandom(1 << 20)) for _ in range(4))
    for tag, chosen in (("v1", layers[:2]), ("v2", layers[2:])):
        image = write_oci_image(tmp_path / tag, ImageSpec(tag=tag, layers=chosen))
        reference_parent.push(f"oci:{image.path}:{tag}", f"wide/app:{tag}")
    files = FileServer(reference_parent.storage)
    site = DataDir(tmp_path / "site")
    enable(site, device_name="site", dns_domain="test", node_ip="127.0.0.1", port=free_port())
    registry = Registry(site)
    try:
        proxy = GetsUnderWay(("127.0.0.1", files.port))
        with proxy, start_reference(tmp_path / "redirecting", redirect_to=f"http://{proxy.address}",
                                storage=reference_parent.storage) as redirecting:

            def connect() -> ParentClient:
                return ParentClient(redirecting.address, redirecting.username,
                                    redirecting.password, ca_file=redirecting.ca_cert)

            sync = SyncRunner(registry, connect, Scope(("wide/app",)), parallel=2)
            record = sync.run()
            sync.close()
    finally:
        registry.close()
        files.close()
    assert record.status == "succeeded", record.errors
    assert proxy.connections == record.blobs_copied == 6  # 4 layers and 2 configs
    assert 1 <= proxy.most <= 2
