"""The Access screen (8): client tokens through the dialogs and the confirmations, checked
against the ASGI app as served (the `api` fixture's app authenticates the passwords); the
audit log's virtual table over real rows, its filter, its paging and its refresh; the Device
screen's login line for a token."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import push_image
from console_helpers import make_app, wait_for
from test_migrations import unpack
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static, TextArea

from console.app import EdgeConsoleApp
from console.screens.access import AccessView, disable_body, rotate_body
from console.screens.access_audit import PAGE, AuditPanel, AuditTable
from console.screens.certificates import CertificatesView
from console.screens.cluster import ClusterView
from console.screens.device import DeviceView
from console.screens.gc import GCView
from console.screens.images import ImagesView
from console.screens.storage import StorageView
from console.screens.sync import SyncView
from console.widgets.confirm import ConfirmationModal
from console.widgets.password_modal import PasswordModal
from console.widgets.scope_dialog import ScopeDialog, read_scopes
from console.widgets.snippet import Snippet
from console.widgets.snippet_modal import SnippetModal
from console.widgets.token_dialog import TokenDialog, read_request
from console.widgets.virtual_table import VirtualTable
from registry_core.access.audit import AuditFilter
from registry_core.access.scopes import parse_scopes
from registry_core.access.tokens import TokenAdmin
from registry_core.identity import CONSOLE, Identity
from registry_core.registry import Registry

SIZE = (100, 30)


def real_clock(registry: Registry, **options: Any) -> EdgeConsoleApp:
    """A console whose clock is the real one (expiry is judged against it)."""
    return make_app(registry, clock=time.time, **options)


async def open_access(pilot: Pilot[Any]) -> AccessView:
    await pilot.press("8")
    view = pilot.app.query_one(AccessView)
    await wait_for(pilot, lambda: view.picture is not None, what="the tokens")
    return view


async def logs_in(api: httpx.AsyncClient, name: str, password: str) -> bool:
    """Whether the registry as served accepts these credentials (GET /v2/)."""
    reply = await api.get("/v2/", auth=(name, password))
    assert reply.status_code in (200, 401), reply.text
    return reply.status_code == 200


def screen_text(app: EdgeConsoleApp) -> str:
    return app.export_screenshot()


async def confirm(pilot: Pilot[Any], key: str, says: str, *, accept: bool) -> None:
    """Press `key`, check the confirmation says `says`, then accept or cancel it."""
    app = pilot.app
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal),
                   what="the confirmation")
    modal = app.screen
    assert isinstance(modal, ConfirmationModal)
    assert says in modal.body, modal.body
    if accept:
        await pilot.click("#confirm-ok")
    else:
        await pilot.press("escape")
    await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmationModal))


async def take_password(pilot: Pilot[Any]) -> str:
    """The password the modal shows once: copied (c), then the modal closed."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, PasswordModal), what="the password")
    modal = app.screen
    assert isinstance(modal, PasswordModal)
    password = modal.shown.password
    await pilot.press("c")
    assert app.clipboard == password
    await pilot.press("escape")
    await wait_for(pilot, lambda: not isinstance(app.screen, PasswordModal))
    return password


def make_token(registry: Registry, name: str, *scopes: str) -> str:
    return TokenAdmin(registry).create(name, parse_scopes(scopes), who=CONSOLE).password


# ---- tokens -------------------------------------------------------------------------------


async def test_create_through_the_dialog_shows_the_password_once(
    registry: Registry, api: httpx.AsyncClient
) -> None:
    app = real_clock(registry)
    admin = TokenAdmin(registry)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_access(pilot)
        assert "No client tokens yet" in str(app.query_one("#tokens-title", Static).render())
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, TokenDialog), what="the dialog")
        dialog = app.screen
        await pilot.press(*"ci-runner", "tab", *"app/*:content/reed")
        await pilot.press("enter")
        error = dialog.query_one("#token-error", Static)
        assert "unknown action 'content/reed'" in str(error.render())
        assert app.screen is dialog and admin.list() == []  # said in the dialog, nothing made
        dialog.query_one("#token-scopes", Input).value = "app/*:content/read,metadata/read"
        dialog.query_one("#token-expires", Input).value = "30"
        await pilot.press("enter")
        modal_password = await take_password(pilot)
        token = admin.get("ci-runner")
        assert token.scopes == ["app/*:content/read,metadata/read"]
        assert token.passwords[0].expires_at is not None
        assert await logs_in(api, "ci-runner", modal_password)
        assert not await logs_in(api, "ci-runner", modal_password + "x")
        # Shown once: nowhere on screen once the modal is closed, and no modal comes back.
        await wait_for(pilot, lambda: view.picture is not None and len(view.picture.tokens) == 1)
        assert modal_password not in screen_text(app)
        assert not isinstance(app.screen, PasswordModal)
        assert "ci-runner" in screen_text(app)


async def test_a_name_taken_is_said_in_the_dialog(registry: Registry) -> None:
    make_token(registry, "ci-runner", "app/*:content/read")
    app = real_clock(registry)
    async with app.run_test(size=SIZE) as pilot:
        await open_access(pilot)
        await pilot.press("N")
        await wait_for(pilot, lambda: isinstance(app.screen, TokenDialog))
        dialog = app.screen
        dialog.query_one("#token-name", Input).value = "ci-runner"
        dialog.query_one("#token-scopes", Input).value = "*:content/read"
        await pilot.press("enter")
        error = dialog.query_one("#token-error", Static)
        await wait_for(pilot, lambda: "already exists" in str(error.render()),
                       what="the core's refusal in the dialog")
        assert app.screen is dialog
        assert TokenAdmin(registry).get("ci-runner").scopes == ["app/*:content/read"]
        await pilot.press("escape")
        assert not isinstance(app.screen, TokenDialog)


async def test_disable_asks_first_and_enable_brings_it_back(
    registry: Registry, api: httpx.AsyncClient
) -> None:
    password = make_token(registry, "ci-runner", "app/*:content/read")
    app = real_clock(registry)
    admin = TokenAdmin(registry)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_access(pilot)
        await wait_for(pilot, lambda: view.current_token() is not None)
        assert await logs_in(api, "ci-runner", password)
        await confirm(pilot, "E", "ci-runner's password 1 stops working at once", accept=False)
        assert admin.get("ci-runner").enabled  # cancelled: nothing changed
        await confirm(pilot, "E", "refused until you enable it again", accept=True)
        await wait_for(pilot, lambda: not admin.get("ci-runner").enabled, what="disabled")
        assert not await logs_in(api, "ci-runner", password)
        await wait_for(pilot, lambda: str(view.tokens_table.get_row("ci-runner")[2])
                       == "disabled", what="the status shown")
        # Enabling gives access back: no question asked.
        await pilot.press("E")
        await wait_for(pilot, lambda: admin.get("ci-runner").enabled, what="enabled")
        assert not isinstance(app.screen, ConfirmationModal)
        assert await logs_in(api, "ci-runner", password)


async def test_rotate_shows_the_new_password_and_the_other_slot_keeps_working(
    registry: Registry, api: httpx.AsyncClient
) -> None:
    first = make_token(registry, "ci-runner", "app/*:content/read")
    second = TokenAdmin(registry).rotate("ci-runner", 2, who=CONSOLE).password
    app = real_clock(registry)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_access(pilot)
        await wait_for(pilot, lambda: view.current_token() is not None)
        await confirm(pilot, "w", "ci-runner's password 1 stops working at once; password 2 "
                      "keeps working", accept=False)
        assert await logs_in(api, "ci-runner", first)
        await confirm(pilot, "w", "password 2 keeps working", accept=True)
        fresh = await take_password(pilot)
        assert fresh not in (first, second)
        assert await logs_in(api, "ci-runner", fresh)
        assert await logs_in(api, "ci-runner", second)
        assert not await logs_in(api, "ci-runner", first)


async def test_adding_password_2_takes_nothing_away(registry: Registry,
                                                    api: httpx.AsyncClient) -> None:
    first = make_token(registry, "ci-runner", "app/*:content/read")
    app = real_clock(registry)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_access(pilot)
        await wait_for(pilot, lambda: view.current_token() is not None)
        await confirm(pilot, "W", "ci-runner gets a password 2; password 1 keeps working",
                      accept=True)
        second = await take_password(pilot)
        assert await logs_in(api, "ci-runner", first)
        assert await logs_in(api, "ci-runner", second)


async def test_delete_asks_first(registry: Registry, api: httpx.AsyncClient) -> None:
    password = make_token(registry, "ci-runner", "app/*:content/read,metadata/read")
    make_token(registry, "kubelet", "*:content/read")
    app = real_clock(registry)
    admin = TokenAdmin(registry)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_access(pilot)
        await wait_for(pilot, lambda: view.current_token() is not None)
        assert view.current_token().name == "ci-runner"  # type: ignore[union-attr]
        await confirm(pilot, "d", "app/*: read,meta-read", accept=False)
        assert len(admin.list()) == 2
        await confirm(pilot, "d", "ci-runner's password 1 stops working at once", accept=True)
        await wait_for(pilot, lambda: [t.name for t in admin.list()] == ["kubelet"],
                       what="the delete")
        assert not await logs_in(api, "ci-runner", password)
        await wait_for(pilot, lambda: view.picture is not None
                       and [t.name for t in view.picture.tokens] == ["kubelet"])


async def tags_status(api: httpx.AsyncClient, name: str, password: str, repository: str
                      ) -> int:
    """What the registry as served answers the token for a repository's tags (404: allowed
    and empty, 403: not granted)."""
    return (await api.get(f"/v2/{repository}/tags/list", auth=(name, password))).status_code


async def test_scopes_are_changed_in_place_through_the_dialog(
    registry: Registry, api: httpx.AsyncClient
) -> None:
    password = make_token(registry, "ci-runner", "app/*:metadata/read", "lib/base:content/read")
    app = real_clock(registry)
    admin = TokenAdmin(registry)
    before = admin.get("ci-runner")
    async with app.run_test(size=SIZE) as pilot:
        view = await open_access(pilot)
        await wait_for(pilot, lambda: view.current_token() is not None)
        assert await tags_status(api, "ci-runner", password, "app/web") == 404
        await pilot.press("M")
        await wait_for(pilot, lambda: isinstance(app.screen, ScopeDialog), what="the dialog")
        dialog = app.screen
        area = dialog.query_one("#scope-rules", TextArea)
        assert area.text == "app/*:metadata/read\nlib/base:content/read"  # one a line
        assert not dialog.query("#scope-shared")  # its own map: nothing else changes
        area.text = "lib/base:content/read,metadata/read\napp/*:content/reed"
        await pilot.press("ctrl+s")
        error = dialog.query_one("#token-error", Static)
        assert "line 2: scope 'app/*': unknown action 'content/reed'" in str(error.render())
        area.text = "  \n"
        await pilot.press("ctrl+s")
        assert "give at least one scope" in str(error.render())
        assert app.screen is dialog and admin.get("ci-runner") == before  # nothing changed
        area.text = "lib/base:content/read,metadata/read\n\n"
        await pilot.click("#scope-ok")
        await wait_for(pilot, lambda: not isinstance(app.screen, ScopeDialog), what="saved")
        after = admin.get("ci-runner")
        assert after.scopes == ["lib/base:content/read,metadata/read"]
        assert after.passwords == before.passwords and after.enabled
        assert any(n.title == "Access" and n.message ==
                   "Scopes of ci-runner replaced: lib/base: read,meta-read."
                   for n in app._notifications)
        await wait_for(pilot, lambda: str(view.tokens_table.get_row("ci-runner")[1])
                       == "lib/base: read,meta-read", what="the table refreshed")
        # The same password, the new scopes.
        assert await tags_status(api, "ci-runner", password, "app/web") == 403
        assert await tags_status(api, "ci-runner", password, "lib/base") == 404
        # Cancelled: nothing changes, nothing on record.
        await pilot.press("M")
        await wait_for(pilot, lambda: isinstance(app.screen, ScopeDialog), what="the dialog")
        app.screen.query_one("#scope-rules", TextArea).text = "*:content/read"
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ScopeDialog))
        assert admin.get("ci-runner") == after
        assert len(registry.audit.query(AuditFilter(action="token.scope"), limit=5)) == 1


async def test_the_dialog_says_a_shared_scope_map_changes_for_every_token_on_it(
    tmp_path: Path,
) -> None:
    """The v4 fixture's `ci` and `ci-spare` share the map `ci`."""
    registry = Registry(unpack(4, tmp_path))
    try:
        app = real_clock(registry)
        async with app.run_test(size=SIZE) as pilot:
            view = await open_access(pilot)
            await wait_for(pilot, lambda: view.current_token() is not None)
            assert view.current_token().name == "ci"  # type: ignore[union-attr]
            await pilot.press("M")
            await wait_for(pilot, lambda: isinstance(app.screen, ScopeDialog))
            dialog = app.screen
            note = str(dialog.query_one("#scope-shared", Static).render())
            assert note == "Scope map ci is shared: token(s) ci-spare get these scopes too."
            dialog.query_one("#scope-rules", TextArea).text = "edge/ci:content/read"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: not isinstance(app.screen, ScopeDialog))
            assert any(n.message.endswith("Scope map ci is shared: ci-spare got them too.")
                       for n in app._notifications)
            scopes = {t.name: t.scopes for t in TokenAdmin(registry).list()}
            assert scopes["ci"] == scopes["ci-spare"] == ["edge/ci:content/read"]
    finally:
        registry.close()


async def test_an_expired_password_is_shown_as_such(registry: Registry) -> None:
    make_token(registry, "old", "*:content/read")
    with registry.db.write() as conn:
        conn.execute("UPDATE token_passwords SET expires_at = ?", (time.time() - 60,))
    app = real_clock(registry)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_access(pilot)
        await wait_for(pilot, lambda: view.current_token() is not None)
        row = view.tokens_table.get_row("old")
        assert str(row[3]) == "expired"


# ---- the audit log ------------------------------------------------------------------------


async def test_the_audit_log_shows_real_operations_and_filters(
    registry: Registry, api: httpx.AsyncClient
) -> None:
    await push_image(api, "app/web", "v1")
    make_token(registry, "ci-runner", "app/*:content/read")
    app = real_clock(registry)
    async with app.run_test(size=SIZE) as pilot:
        await open_access(pilot)
        table = app.query_one(AuditTable)
        panel = app.query_one(AuditPanel)
        await wait_for(pilot, lambda: table.total_count > 0, what="audit rows")
        rows = table.rows
        assert rows[0][4] == "token.create" and rows[0][6] == "ci-runner"  # newest first
        pushes = [r for r in rows if r[4] == "manifest.push"]
        assert pushes and pushes[0][5] == "app/web"
        assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)
        everything = panel.count
        # `/` filters in the store: by action text, then by repository text.
        await pilot.press("slash", *"push")
        await wait_for(pilot, lambda: panel.needle == "push" and table.rows
                       and all(r[4] == "manifest.push" for r in table.rows),
                       what="the filtered rows")
        assert panel.count is not None and panel.count < (everything or 0)
        app.query_one("#audit-filter", Input).value = "APP/W"
        await wait_for(pilot, lambda: panel.needle == "APP/W" and table.rows
                       and all(r[5] == "app/web" for r in table.rows), what="by repository")
        app.query_one("#audit-filter", Input).value = "nobody-at-all"
        await wait_for(pilot, lambda: panel.count == 0 and table.total_count == 0)
        await pilot.press("escape")
        await wait_for(pilot, lambda: panel.count == everything, what="the filter cleared")
        # Enter opens an entry in full.
        table.focus()
        await pilot.press("home", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SnippetModal))
        assert "token.create" in app.screen.text  # type: ignore[attr-defined]
        await pilot.press("escape")


async def test_paging_reads_only_pages(registry: Registry) -> None:
    who = Identity("ci-runner", "token", address="10.0.0.9")
    with registry.store.exclusive():
        for i in range(5000):
            registry.audit.record(who, "test.odd" if i % 2 else "test.even",
                                  repository=f"team/r{i % 7}", reference=f"v{i}")
    app = real_clock(registry)
    async with app.run_test(size=SIZE) as pilot:
        await open_access(pilot)
        table = app.query_one(AuditTable)
        panel = app.query_one(AuditPanel)
        await wait_for(pilot, lambda: panel.count is not None and table.total_count > 0)
        assert panel.count is not None and panel.count >= 5000
        assert table.total_count == PAGE and panel.pages_read == 1
        assert table.rows[0][6] == "v4999"  # newest first
        assert f"{PAGE:,} loaded" in str(app.query_one("#audit-count", Static).render())
        # Near the end of what is loaded, the next page (and only it) is read.
        table.focus()
        await pilot.press("end")
        await wait_for(pilot, lambda: table.total_count == 2 * PAGE, what="the next page")
        assert panel.pages_read == 2
        assert table.rows[PAGE][6] == f"v{4999 - PAGE}"  # contiguous: keyset paging
        await pilot.pause(0.2)
        assert table.total_count == 2 * PAGE  # nothing more until the cursor goes there
        # The filter is the store's, and paged too.
        await pilot.press("slash", *"odd")
        await wait_for(pilot, lambda: panel.count == 2500, what="the filtered count")
        assert table.total_count == PAGE
        assert all(r[4] == "test.odd" for r in table.rows)


async def test_new_rows_arrive_on_top_and_the_cursor_stays(registry: Registry) -> None:
    for i in range(5):
        registry.audit.record_now(CONSOLE, "test.before", reference=str(i))
    app = real_clock(registry, poll=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_access(pilot)
        table = app.query_one(AuditTable)
        await wait_for(pilot, lambda: table.total_count == 5)
        table.focus()
        await pilot.press("down", "down")
        kept = table.cursor_row
        await asyncio.to_thread(registry.audit.record_now, CONSOLE, "test.after",
                                reference="new")
        await wait_for(pilot, lambda: table.total_count == 6, what="the poller's refresh")
        assert table.rows[0][4] == "test.after"
        assert table.cursor_row is not None and kept is not None
        assert table.cursor_row[0] == kept[0]


# ---- keys and the Device screen -----------------------------------------------------------


def test_one_meaning_per_key_with_access() -> None:
    meanings: dict[str, set[str]] = {}
    for owner in (EdgeConsoleApp, DeviceView, CertificatesView, ImagesView, StorageView, GCView,
                  ClusterView, SyncView, AccessView, VirtualTable, AuditTable, Snippet):
        for binding in Binding.make_bindings(owner.BINDINGS):
            meanings.setdefault(binding.key, set()).add(binding.action)
    shared = {key: actions for key, actions in meanings.items() if len(actions) > 1}
    assert shared == {"enter": {"select", "copy"}}
    assert meanings["d"] == {"delete"} and meanings["8"] == {"show_tab('access')"}
    for binding in Binding.make_bindings(AccessView.BINDINGS):
        assert binding.id and binding.tooltip


async def test_help_lists_the_access_keys(registry: Registry) -> None:
    app = real_clock(registry)
    async with app.run_test(size=SIZE) as pilot:
        await open_access(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        sections = app.screen.sections  # type: ignore[attr-defined]
        texts = {line.text for section in sections for line in section.keys}
        for binding in AccessView.BINDINGS:
            assert isinstance(binding, Binding) and binding.tooltip in texts
        assert "sort by the next column" not in texts  # the log is always newest first


@pytest.mark.parametrize("via", ["choice", "palette"])
async def test_device_login_line_for_a_token(registry: Registry, via: str) -> None:
    make_token(registry, "ci-runner", "app/*:content/read")
    app = real_clock(registry)
    endpoint = registry.config.endpoint
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(DeviceView)
        await wait_for(pilot, lambda: view.info is not None and view.tokens == ("ci-runner",),
                       what="the tokens on the Device screen")
        await pilot.press("i")
        assert app.clipboard.startswith(f"docker login {endpoint} -u ")
        if via == "choice":
            app.query_one("#login-as", Select).value = "ci-runner"
        else:
            command = next(c for c in app.all_commands()
                           if c.title == "Log in as: token ci-runner")
            command.callback()
        await wait_for(pilot, lambda: view.login_as == "ci-runner")
        await pilot.press("i")
        assert app.clipboard == (f"echo '<password of ci-runner>' | docker login {endpoint} "
                                 "-u ci-runner --password-stdin")
        texts = [s.text for s in app.query(".setup-snippet")]  # type: ignore[attr-defined]
        assert any("-u ci-runner" in t for t in texts)
        # A token deleted meanwhile: back to the admin's line.
        TokenAdmin(registry).delete("ci-runner", who=CONSOLE)
        view.list_tokens()
        await wait_for(pilot, lambda: view.login_as != "ci-runner", what="the admin again")
        await pilot.press("i")
        assert "-u ci-runner" not in app.clipboard


# ---- the dialog's fields and what the confirmations say ------------------------------------


@pytest.mark.parametrize(("name", "scopes", "expires", "says"), [
    ("", "app:content/read", "", "name ''"),
    ("-x", "app:content/read", "", "name '-x'"),
    ("ci", "", "", "at least one --scope"),
    ("ci", "app", "", "expected PATTERN:ACTION"),
    ("ci", "app/*:metrics/read", "", "metrics/read is registry-wide"),
    ("ci", "app:content/read", "0", "expiry '0'"),
    ("ci", "app:content/read", "soon", "expiry 'soon'"),
    ("ci", "app:content/read", "99999999", "expiry '99999999'"),
])
def test_bad_fields_are_named(name: str, scopes: str, expires: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as caught:
        read_request(name, scopes, expires)
    assert "\n" not in str(caught.value)


def test_fields_read() -> None:
    request = read_request(" ci ", "app/*:content/read,metadata/read  lib/base:content/read",
                           "7.5")
    assert request.name == "ci" and request.expires_days == 7.5
    assert [str(r) for r in request.rules] == ["app/*:content/read,metadata/read",
                                               "lib/base:content/read"]
    assert read_request("ci", "*:content/read", " ").expires_days is None


def test_rotation_says_what_stops_working(registry: Registry) -> None:
    admin = TokenAdmin(registry)
    admin.create("ci", parse_scopes(["*:content/read"]), who=CONSOLE)
    now = time.time()
    body, takes_away = rotate_body(admin.get("ci"), 1, now)
    assert "ci's password 1 stops working at once; password 2 is not set" in body
    assert takes_away
    body, takes_away = rotate_body(admin.get("ci"), 2, now)
    assert body.startswith("ci gets a password 2; password 1 keeps working (it never expires)")
    assert not takes_away
    admin.rotate("ci", 2, expires_days=2, who=CONSOLE)
    body, _ = rotate_body(admin.get("ci"), 1, now + 3 * 86400)
    assert "password 2 has expired: clients using ci fail" in body
    body, _ = rotate_body(admin.get("ci"), 2, now)
    assert "The new password expires in 2 days, like the one it replaces." in body
    assert disable_body(admin.get("ci")).startswith(
        "ci's passwords 1 and 2 stop working at once: every client that logs in as ci")


@pytest.mark.parametrize(("text", "says"), [
    ("", "give at least one scope"),
    ("app/*:content/read\napp", "line 2: scope 'app': expected PATTERN:ACTION"),
    ("\n\nApp//x:content/read", "line 3: scope pattern 'App//x'"),
])
def test_bad_scope_lines_are_named(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as caught:
        read_scopes(text)
    assert "\n" not in str(caught.value)


def test_scope_lines_read() -> None:
    rules = read_scopes(" app/* : metadata/read , content/read \n\n*:metrics/read\n")
    assert [str(r) for r in rules] == ["app/*:content/read,metadata/read", "*:metrics/read"]
