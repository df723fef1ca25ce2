"""Client tokens on the real TLS server: made and changed by `edge-console token` in another
process while the server runs (it honours each change without a restart), and used by
skopeo with a token scoped to `app/*`."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from imagebuilder import ImageSpec, write_oci_layout
from support import LiveServer, remote, run_skopeo, skopeo_auth
from test_cli_basics import assert_one_line_error, cli, cli_json
from test_e2e_skopeo import skopeo_fails

pytestmark = pytest.mark.socket

HANG_GUARD = 60.0


def tags_status(server: LiveServer, auth: tuple[str, str]) -> int:
    with httpx.Client(base_url=server.url, verify=server.ssl_context(), auth=auth) as client:
        return client.get("/v2/app/web/tags/list").status_code


def until_status(server: LiveServer, auth: tuple[str, str], wanted: int) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while (got := tags_status(server, auth)) != wanted:
        assert time.monotonic() < deadline, f"still {got}, waiting for {wanted}"
        time.sleep(0.05)


def test_token_commands_reach_a_running_server(live_server: LiveServer) -> None:
    data = live_server.service.datadir.root
    created = cli_json(data, "token", "create", "ci", "--scope", "app/*:metadata/read",
                       "--expires", "30")
    assert created["name"] == "ci" and created["slot"] == 1
    assert created["scopes"] == [{"pattern": "app/*", "actions": ["metadata/read"]}]
    first = ("ci", created["password"])
    assert tags_status(live_server, first) == 404  # allowed: app/web holds nothing yet
    disabled = cli_json(data, "token", "disable", "ci")
    assert disabled["token"]["enabled"] is False
    until_status(live_server, first, 401)
    cli_json(data, "token", "enable", "ci")
    until_status(live_server, first, 404)
    second = ("ci", cli_json(data, "token", "rotate", "ci", "--password", "2")["password"])
    assert tags_status(live_server, second) == 404
    assert tags_status(live_server, first) == 404  # the other password keeps working
    listed = cli_json(data, "token", "list")["tokens"]
    assert [(t["name"], [p["slot"] for p in t["passwords"]]) for t in listed] == [
        ("ci", [1, 2])]
    assert created["password"] not in str(listed)
    deleted = cli_json(data, "token", "delete", "ci")
    assert deleted["deleted"] is True and deleted["token"]["name"] == "ci"
    until_status(live_server, second, 401)
    assert tags_status(live_server, first) == 401


def test_token_commands_say_what_went_and_fail_in_one_line(tmp_path: Path,
                                                           live_server: LiveServer) -> None:
    data = live_server.service.datadir.root
    made = cli(data, "token", "create", "ci", "--scope", "app/*:content/read")
    assert made.returncode == 0, made.stderr
    assert "Password 1: " in made.stdout and "shown only now" in made.stdout
    gone = cli(data, "token", "delete", "ci")
    assert gone.returncode == 0
    assert "Deleted token ci" in gone.stdout and "app/*:content/read" in gone.stdout
    assert_one_line_error(cli(data, "token", "delete", "ci"), "no token named 'ci'")
    assert_one_line_error(cli(data, "token", "create", "x", "--scope", "app:content/reed"),
                          "unknown action 'content/reed'")
    assert_one_line_error(cli(data, "token", "rotate", "nobody"), "no token named 'nobody'")


@pytest.mark.skopeo
def test_skopeo_with_a_read_only_token(
    skopeo: str, live_server: LiveServer, tmp_path: Path
) -> None:
    (image,) = write_oci_layout(tmp_path / "layout", [ImageSpec(tag="v1")])
    for ref in ("app/web:v1", "other/x:v1"):
        run_skopeo(skopeo, "copy", *skopeo_auth(live_server, "dest-"), image.reference,
                   remote(live_server, ref))
    created = cli_json(live_server.service.datadir.root, "token", "create", "puller",
                       "--scope", "app/*:content/read,metadata/read")
    reader = [f"--src-creds=puller:{created['password']}",
              f"--src-cert-dir={live_server.cert_dir}"]
    writer = [f"--dest-creds=puller:{created['password']}",
              f"--dest-cert-dir={live_server.cert_dir}"]

    run_skopeo(skopeo, "copy", *reader, remote(live_server, "app/web:v1"),
               f"oci:{tmp_path / 'pulled'}:v1")
    assert (tmp_path / "pulled" / "index.json").exists()
    refused_push = skopeo_fails(skopeo, "copy", *writer, image.reference,
                                remote(live_server, "app/web:v2"))
    assert "denied" in refused_push.lower()
    refused_pull = skopeo_fails(skopeo, "copy", *reader, remote(live_server, "other/x:v1"),
                                f"oci:{tmp_path / 'other'}:v1")
    assert "denied" in refused_pull.lower()
    assert live_server.service.registry.tags("app/web").items == ["v1"]

    # The refused push is in the audit log under the token's name (written by a background
    # flush: poll for it).
    deadline = time.monotonic() + HANG_GUARD
    while not (denied := [
        e for e in cli_json(live_server.service.datadir.root, "audit", "--principal",
                            "puller")["entries"]
        if e["result"] == "denied" and e["action"] in ("blob.upload", "manifest.push")
    ]):
        assert time.monotonic() < deadline, "the refused push never reached the audit log"
        time.sleep(0.2)
    assert denied[0]["principal_kind"] == "token"
    assert denied[0]["repository"] == "app/web"
