"""Client tokens on the real TLS server: made and changed by `edge-console token` in another
process while the server runs (it honours each change without a restart), a scope changed in
this process enforced on the very next request, and skopeo with a token scoped to `app/*`."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from imagebuilder import ImageSpec, write_oci_layout
from support import LiveServer, remote, run_skopeo, skopeo_auth
from test_cli_basics import assert_one_line_error, cli, cli_json
from test_e2e_skopeo import skopeo_fails

from registry_core.access.credentials import Authenticator
from registry_core.access.scopes import parse_scopes
from registry_core.access.tokens import TokenAdmin
from registry_core.identity import CONSOLE

pytestmark = pytest.mark.socket

HANG_GUARD = 60.0


def tags_status(server: LiveServer, auth: tuple[str, str]) -> int:
    with httpx.Client(base_url=server.url, verify=server.ssl_context(), auth=auth,
                      timeout=HANG_GUARD) as client:
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


def test_a_narrowed_scope_is_refused_on_the_next_request(live_server: LiveServer) -> None:
    """Changed in this process (as the console does, which serves the registry): the very
    next request of a client whose header was accepted, and cached, a moment before is
    judged by the new scopes; its password keeps working for what they still grant."""
    tokens = TokenAdmin(live_server.service.registry)
    issued = tokens.create("ci", parse_scopes(["app/*:metadata/read", "lib/base:metadata/read"]),
                           who=CONSOLE)
    authenticator = live_server.service.app.authenticator
    assert isinstance(authenticator, Authenticator)
    with httpx.Client(base_url=live_server.url, verify=live_server.ssl_context(),
                      auth=("ci", issued.password), timeout=HANG_GUARD) as client:
        assert client.get("/v2/app/web/tags/list").status_code == 404  # allowed, empty
        checks = authenticator.password_checks
        assert client.get("/v2/app/web/tags/list").status_code == 404
        assert authenticator.password_checks == checks  # accepted from the cache
        tokens.set_scopes("ci", parse_scopes(["lib/base:metadata/read"]), who=CONSOLE)
        refused = client.get("/v2/app/web/tags/list")
        assert refused.status_code == 403, refused.text
        assert refused.json()["errors"][0]["code"] == "DENIED"
        assert client.get("/v2/lib/base/tags/list").status_code == 404
        tokens.set_scopes("ci", parse_scopes(["app/*:metadata/read"]), who=CONSOLE)
        assert client.get("/v2/app/web/tags/list").status_code == 404  # widened: at once too
        assert client.get("/v2/lib/base/tags/list").status_code == 403


def test_token_scope_from_the_cli_reaches_a_running_server(live_server: LiveServer) -> None:
    data = live_server.service.datadir.root
    created = cli_json(data, "token", "create", "ci", "--scope", "app/*:metadata/read",
                       "--expires", "30")
    auth = ("ci", created["password"])
    assert tags_status(live_server, auth) == 404
    changed = cli_json(data, "token", "scope", "ci", "--scope", "lib/base:metadata/read",
                       "--scope", "other/*:content/read,metadata/read")
    assert changed["changed"] is True and changed["shared_with"] == []
    assert changed["scopes"] == [
        {"pattern": "lib/base", "actions": ["metadata/read"]},
        {"pattern": "other/*", "actions": ["content/read", "metadata/read"]}]
    assert changed["old_scopes"] == [{"pattern": "app/*", "actions": ["metadata/read"]}]
    assert changed["passwords"] == created["passwords"]  # slot, creation, expiry: kept
    assert "password" not in changed
    until_status(live_server, auth, 403)  # another process: within RECHECK_INTERVAL
    text = cli(data, "token", "scope", "ci", "--scope", "app/*:metadata/read")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        "Scopes of token ci replaced (its passwords keep working).",
        "Scopes:   app/*:metadata/read",
        "Before:   lib/base:metadata/read, other/*:content/read,metadata/read"]
    until_status(live_server, auth, 404)
    same = cli(data, "token", "scope", "ci", "--scope", "app/*:metadata/read")
    assert same.stdout.strip() == "Scopes of token ci unchanged: app/*:metadata/read."
    assert_one_line_error(cli(data, "token", "scope", "nobody", "--scope", "*:content/read"),
                          "no token named 'nobody'")
    assert_one_line_error(cli(data, "token", "scope", "ci", "--scope", "app:content/reed"),
                          "unknown action 'content/reed'")
    assert_one_line_error(cli(data, "token", "scope", "ci", "--scope", "app/*:metrics/read"),
                          "metrics/read is registry-wide")
    missing = cli(data, "token", "scope", "ci")
    assert missing.returncode == 2 and "--scope" in missing.stderr  # argparse's usage error
    assert [t["scopes"] for t in cli_json(data, "token", "list")["tokens"]] == [
        [{"pattern": "app/*", "actions": ["metadata/read"]}]]  # nothing changed by the errors
    assert tags_status(live_server, auth) == 404


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
