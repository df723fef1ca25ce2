"""Access: the client tokens (scope, status, password expiry; create, change the scopes of,
disable, enable, rotate a password, delete) and the audit log (console/screens/access_audit.py).

A password is shown once, in a modal with a copy action, when a token is made or a password
replaced; the data dir keeps only its hash. Disabling, rotating and deleting take access
away, so each asks first and says exactly what stops working. Every operation runs in a
worker (hashing a password is slow on purpose) and ends with a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable, Static

from console.screens.access_audit import AuditPanel
from console.screens.base import View
from console.widgets.confirm import ConfirmationModal
from console.widgets.format import when
from console.widgets.password_modal import PasswordModal, ShownPassword
from console.widgets.scope_dialog import ScopeDialog
from console.widgets.token_dialog import TokenDialog, TokenRequest
from registry_core.access.scopes import Rule
from registry_core.access.tokens import (
    DAY,
    IssuedPassword,
    PasswordInfo,
    ScopeChange,
    TokenAdmin,
    TokenInfo,
)
from registry_core.errors import EdgeError
from registry_core.identity import CONSOLE

Operation = Literal["disable", "enable", "rotate", "delete"]
SHORT_ACTIONS = {
    "content/read": "read",
    "content/write": "write",
    "content/delete": "delete",
    "metadata/read": "meta-read",
    "metadata/write": "meta-write",
    "metrics/read": "metrics",
}
SCOPE_WIDTH = (12, 60)
"""The scope column's narrowest and widest: between, it takes the width the table has."""
NO_TOKENS = "No client tokens yet: N makes one (a name, its scopes, an optional expiry)."


def short_rule(rule: Rule) -> str:
    """`app/*: read,meta-read` (the seeds' action names shortened)."""
    return f"{rule.pattern}: " + ",".join(
        SHORT_ACTIONS.get(a, a) for a in SHORT_ACTIONS if a in rule.actions)


def short_scope(token: TokenInfo, width: int) -> str:
    text = "; ".join(short_rule(rule) for rule in token.scope_map.rules)
    return text if len(text) <= width else text[: width - 1] + "…"


def slot_of(token: TokenInfo, slot: int) -> PasswordInfo | None:
    return next((p for p in token.passwords if p.slot == slot), None)


def expiry_text(password: PasswordInfo | None, now: float) -> str:
    if password is None:
        return "-"
    if password.expires_at is None:
        return "never"
    if password.expired(now):
        return "expired"
    return when(password.expires_at)[:10]


def until_text(password: PasswordInfo) -> str:
    if password.expires_at is None:
        return "it never expires"
    return f"until {when(password.expires_at)} UTC"


def lifetime_days(password: PasswordInfo | None) -> float | None:
    """The lifetime the password was given (a rotation gives the new one the same)."""
    if password is None or password.expires_at is None:
        return None
    return max((password.expires_at - password.created_at) / DAY, 1 / 24)


def working(password: PasswordInfo | None, now: float) -> bool:
    return password is not None and not password.expired(now)


def rotate_body(token: TokenInfo, slot: int, now: float) -> tuple[str, bool]:
    """What replacing password `slot` does, and whether it takes access away."""
    other = 2 if slot == 1 else 1
    mine, theirs = slot_of(token, slot), slot_of(token, other)
    name = token.name
    if theirs is None:
        kept = (f"password {other} is not set: clients using {name} fail until they get the "
                "new password.")
    elif theirs.expired(now):
        kept = (f"password {other} has expired: clients using {name} fail until they get "
                "the new password.")
    else:
        kept = f"password {other} keeps working ({until_text(theirs)})."
    if mine is None:
        lines = [f"{name} gets a password {slot}; {kept}"]
    else:
        lines = [f"{name}'s password {slot} stops working at once; {kept}"]
    days = lifetime_days(mine)
    lines.append("The new password never expires." if days is None else
                 f"The new password expires in {round(days, 2):g} days, like the one it "
                 "replaces.")
    if not token.enabled:
        lines.append(f"{name} is disabled: no password works until it is enabled again (E).")
    lines.append("It is shown once, next: copy it then.")
    return "\n".join(lines), mine is not None and working(mine, now)


def stops_working(token: TokenInfo) -> str:
    """`ci-runner's passwords 1 and 2 stop working at once` (or the one it has)."""
    slots = [str(p.slot) for p in token.passwords]
    if not slots:
        return f"{token.name} has no password set"
    if len(slots) == 1:
        return f"{token.name}'s password {slots[0]} stops working at once"
    return f"{token.name}'s passwords {' and '.join(slots)} stop working at once"


def disable_body(token: TokenInfo) -> str:
    return (
        f"{stops_working(token)}: every client that logs in as {token.name} (docker, "
        "podman, skopeo, a pull secret) is refused until you enable it again (E).\n"
        "Its scopes and passwords are kept: enabling it brings them back unchanged."
    )


def delete_body(token: TokenInfo) -> str:
    scopes = "; ".join(short_rule(rule) for rule in token.scope_map.rules)
    return (
        f"{stops_working(token)} and its scope map ({scopes}) is deleted with it: every "
        f"client that logs in as {token.name} is refused.\n"
        "This cannot be undone: a token made again under this name gets new passwords."
    )


def scope_change_text(change: ScopeChange) -> str:
    """The toast after a scope change."""
    token = change.token
    if not change.changed:
        return f"Scopes of {token.name} unchanged."
    text = (f"Scopes of {token.name} replaced: "
            + "; ".join(short_rule(rule) for rule in token.scope_map.rules) + ".")
    if change.shared_with:
        text += (f" Scope map {token.scope_map.name} is shared: "
                 f"{', '.join(change.shared_with)} got them too.")
    return text


def sharing(token: TokenInfo, tokens: list[TokenInfo]) -> tuple[str, ...]:
    """The other tokens bound to `token`'s scope map."""
    return tuple(t.name for t in tokens
                 if t.scope_map.name == token.scope_map.name and t.name != token.name)


@dataclass(frozen=True)
class TokensPicture:
    tokens: list[TokenInfo]
    error: str = ""


class TokensLoaded(Message):
    def __init__(self, picture: TokensPicture, number: int) -> None:
        super().__init__()
        self.picture = picture
        self.number = number


class TokenChanged(Message):
    """An operation ended: what to say, the password to show once, or the error."""

    def __init__(self, text: str, issued: IssuedPassword | None = None,
                 error: str = "", *, created: bool = False) -> None:
        super().__init__()
        self.text = text
        self.issued = issued
        self.error = error
        self.created = created


class AccessView(View):
    tab_id = "access"
    tab_title = "Access"
    can_filter = True
    help_notes = (
        "A client token logs in with its name and a password, and may do only what its\n"
        "scopes grant (PATTERN:ACTION; pattern a repository, NAME/* or *). A token has two\n"
        "password slots: replace one while clients move over, the other keeps working.\n"
        "Passwords are shown once; the data dir keeps only their hash. The Device screen\n"
        "(1) makes the login lines for a token too. M changes a token's scopes in place:\n"
        "its passwords keep working. / filters the audit log by principal, action or\n"
        "repository; enter opens an entry."
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("N", "create_token", "New", id="access.create",
                tooltip="new client token: name, scopes, expiry (its password shown once)"),
        Binding("M", "edit_scopes", "Scopes", id="access.scopes",
                tooltip="change the scopes of the highlighted token (its passwords keep "
                "working)"),
        Binding("E", "toggle_enabled", "On/off", id="access.toggle",
                tooltip="disable the highlighted token (asks first), or enable it again"),
        Binding("w", "rotate(1)", "Pw 1", id="access.rotate1",
                tooltip="replace password 1 of the highlighted token (asks first; "
                "password 2 keeps working)"),
        Binding("W", "rotate(2)", "Pw 2", id="access.rotate2",
                tooltip="replace (or add) password 2 of the highlighted token (asks first; "
                "password 1 keeps working)"),
        Binding("d,ctrl+d,delete", "delete", "Delete", id="access.delete",
                tooltip="delete the highlighted token and its scope map (asks first)"),
    ]

    picture: reactive[TokensPicture | None] = reactive(None, init=False)

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._reads = 0

    def compose(self) -> ComposeResult:
        yield Static("Client tokens", id="tokens-title", classes="section")
        table: DataTable[str | Text] = DataTable(id="tokens-table", cursor_type="row")
        yield table
        yield AuditPanel(id="audit-panel")

    @property
    def tokens_table(self) -> DataTable[str | Text]:
        return cast("DataTable[str | Text]", self.query_one("#tokens-table", DataTable))

    @property
    def audit(self) -> AuditPanel:
        return self.query_one(AuditPanel)

    def main_widget(self) -> Widget | None:
        return self.tokens_table

    def on_mount(self) -> None:
        super().on_mount()
        table = self.tokens_table
        for label, key in (("Name", "name"), ("Scope", "scope"), ("Status", "status"),
                           ("Password 1", "password1"), ("Password 2", "password2"),
                           ("Created", "created")):
            table.add_column(label, key=key)
        self.load()

    # ---- state -------------------------------------------------------------------------------

    def reload(self) -> None:
        self.load()
        self.audit.load()

    def data_changed(self) -> None:
        """Something committed (perhaps only audit rows): read the tokens, put new rows on
        top of the log, and keep the reader's place."""
        if self.edge.active_tab() != self.tab_id:
            self.stale = True
            return
        self.load()
        self.audit.newer()

    def load(self) -> None:
        self._reads += 1
        self.read_tokens(self._reads)

    @work(thread=True, exclusive=True, group="access-tokens", exit_on_error=False)
    def read_tokens(self, number: int) -> None:
        try:
            picture = TokensPicture(TokenAdmin(self.edge.registry).list())
        except (EdgeError, OSError) as exc:
            picture = TokensPicture([], f"Could not read the tokens: {exc}")
        self.post_message(TokensLoaded(picture, number))

    @on(TokensLoaded)
    def _loaded(self, message: TokensLoaded) -> None:
        if message.number == self._reads:
            self.picture = message.picture

    def watch_picture(self) -> None:
        picture = self.picture
        if picture is None:
            return
        title = self.query_one("#tokens-title", Static)
        if picture.error:
            title.update(Text(picture.error, style=self.style("error")))
        elif not picture.tokens:
            title.update(Text.assemble(("Client tokens  ", "bold"),
                                       (NO_TOKENS, self.style("muted"))))
        else:
            title.update(f"Client tokens ({len(picture.tokens)})")
        self.fill_tokens(picture.tokens)

    def repaint(self) -> None:
        self.watch_picture()

    def fill_tokens(self, tokens: list[TokenInfo]) -> None:
        table = self.tokens_table
        current = self.current_token()
        table.clear()
        now = self.edge.clock()
        width = self.scope_width(tokens)
        for token in tokens:
            status = Text("enabled", style=self.style("success")) if token.enabled \
                else Text("disabled", style=self.style("warning", bold=True))
            table.add_row(token.name, short_scope(token, width), status,
                          self.expiry_cell(slot_of(token, 1), now),
                          self.expiry_cell(slot_of(token, 2), now),
                          when(token.created_at)[:10], key=token.name)
        if current is not None and current.name in {t.name for t in tokens}:
            table.move_cursor(row=table.get_row_index(current.name))

    def scope_width(self, tokens: list[TokenInfo]) -> int:
        """What is left of the table's width for the scope (every cell has 2 of padding; 2
        more for a scroll bar)."""
        name = max((len(t.name) for t in tokens), default=4)
        others = max(name, 4) + len("disabled") + 3 * len("2026-01-01") + 6 * 2
        spare = (self.tokens_table.size.width or 78) - others - 2
        return max(SCOPE_WIDTH[0], min(SCOPE_WIDTH[1], spare))

    def on_resize(self) -> None:
        if self.picture is not None:
            self.fill_tokens(self.picture.tokens)

    def expiry_cell(self, password: PasswordInfo | None, now: float) -> Text:
        text = expiry_text(password, now)
        if password is not None and password.expired(now):
            return Text(text, style=self.style("error", bold=True))
        return Text(text, style=self.style("muted") if password is None else "")

    def current_token(self) -> TokenInfo | None:
        picture = self.picture
        table = self.tokens_table
        if picture is None or not picture.tokens or table.row_count == 0:
            return None
        row = table.cursor_row
        if not 0 <= row < len(picture.tokens):
            return None
        name = table.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value
        return next((t for t in picture.tokens if t.name == name), None)

    def chosen_token(self) -> TokenInfo | None:
        token = self.current_token()
        if token is None:
            self.edge.notify("Choose a token first (N makes one).", severity="warning")
        return token

    # ---- actions -----------------------------------------------------------------------------

    def start_filter(self) -> None:
        self.audit.start_filter()

    def action_create_token(self) -> None:
        def created(issued: IssuedPassword | None) -> None:
            if issued is not None:
                self.token_changed(TokenChanged(f"Token {issued.token.name} created.", issued,
                                                created=True))

        self.app.push_screen(TokenDialog(self.create_token), created)

    def create_token(self, request: TokenRequest) -> IssuedPassword:
        """In the dialog's worker."""
        return TokenAdmin(self.edge.registry).create(
            request.name, request.rules, expires_days=request.expires_days, who=CONSOLE)

    def action_edit_scopes(self) -> None:
        token = self.chosen_token()
        if token is None or self.picture is None:
            return

        def saved(change: ScopeChange | None) -> None:
            if change is not None:
                self.token_changed(TokenChanged(scope_change_text(change)))

        def apply(rules: tuple[Rule, ...]) -> ScopeChange:
            """In the dialog's worker."""
            return TokenAdmin(self.edge.registry).set_scopes(token.name, rules, who=CONSOLE)

        self.app.push_screen(ScopeDialog(token, sharing(token, self.picture.tokens), apply),
                             saved)

    def action_toggle_enabled(self) -> None:
        token = self.chosen_token()
        if token is None:
            return
        if not token.enabled:
            self.operate("enable", token.name)
            return
        self.confirm(f"Disable the token {token.name}?", disable_body(token), "Disable",
                     "disable", token.name)

    def action_rotate(self, slot: int) -> None:
        token = self.chosen_token()
        if token is None:
            return
        body, takes_away = rotate_body(token, slot, self.edge.clock())
        verb = "Replace" if slot_of(token, slot) is not None else "Add"
        self.confirm(f"{verb} password {slot} of {token.name}?", body,
                     f"{verb} password {slot}", "rotate", token.name, slot,
                     destructive=takes_away)

    def action_delete(self) -> None:
        token = self.chosen_token()
        if token is None:
            return
        self.confirm(f"Delete the token {token.name}?", delete_body(token), "Delete",
                     "delete", token.name)

    def confirm(self, title: str, body: str, label: str, operation: Operation, name: str,
                slot: int = 1, *, destructive: bool = True) -> None:
        def decided(confirmed: bool | None) -> None:
            if confirmed:
                self.operate(operation, name, slot)

        self.app.push_screen(
            ConfirmationModal(title, body, confirm_label=label, destructive=destructive),
            decided)

    @work(thread=True, group="access-change", exit_on_error=False)
    def operate(self, operation: Operation, name: str, slot: int = 1) -> None:
        admin = TokenAdmin(self.edge.registry)
        try:
            if operation == "rotate":
                old = slot_of(admin.get(name), slot)
                issued = admin.rotate(name, slot, expires_days=lifetime_days(old),
                                      who=CONSOLE)
                self.post_message(TokenChanged(f"Password {slot} of {name} replaced.", issued))
                return
            if operation == "disable":
                admin.disable(name, who=CONSOLE)
                text = f"Token {name} disabled: its passwords are refused until enabled (E)."
            elif operation == "enable":
                admin.enable(name, who=CONSOLE)
                text = f"Token {name} enabled: its passwords work again."
            else:
                admin.delete(name, who=CONSOLE)
                text = f"Token {name} deleted."
        except (EdgeError, OSError) as exc:
            self.post_message(TokenChanged("", error=f"Token {name}: {exc}"))
            return
        self.post_message(TokenChanged(text))

    @on(TokenChanged)
    def token_changed(self, message: TokenChanged) -> None:
        if message.error:
            self.edge.error(message.error)
        else:
            self.edge.notify(message.text, title="Access", markup=False)
        if message.issued is not None:
            self.show_password(message.issued, created=message.created)
        self.load()
        self.audit.newer()

    def show_password(self, issued: IssuedPassword, *, created: bool) -> None:
        token = issued.token
        title = (f"Token {token.name} created" if created
                 else f"New password {issued.slot} of {token.name}")
        endpoint = self.edge.config.endpoint
        self.app.push_screen(PasswordModal(ShownPassword(
            title=title, username=token.name, slot=issued.slot, password=issued.password,
            expires=expiry_text(slot_of(token, issued.slot), self.edge.clock()),
            login=f"docker login {endpoint} -u {token.name} --password-stdin",
        )))
