"""`edge-console token create|list|scope|disable|enable|rotate|delete`: client tokens, each
with a scope map of per-repository actions and one or two passwords.

A password is printed once, when it is made (create, rotate); the data dir keeps only its
hash. Nothing asks for confirmation (scripts use these), so each command says exactly what
changed. A registry serving the same data dir honours a change within a second or two.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, TypeVar

from console.cli_support import emit, open_registry
from registry_core.access.scopes import ACTIONS, parse_scopes
from registry_core.access.tokens import (
    IssuedPassword,
    PasswordInfo,
    ScopeChange,
    TokenAdmin,
    TokenInfo,
)
from registry_core.identity import CONSOLE

T = TypeVar("T")
SCOPE_HELP = (
    "PATTERN:ACTION[,ACTION...]; PATTERN is a repository, NAME/* (every repository under "
    f"NAME) or * (all, and the registry-wide metrics/read); actions: {', '.join(ACTIONS)}"
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "token", parents=[common], help="client tokens: credentials scoped to repositories",
        description="Client tokens: a name, a scope map of repository patterns and actions, "
                    "and one or two passwords (rotate one while the other keeps working).",
    )
    actions = parser.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", parents=[common],
                                help="a new token; its password is printed once")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--scope", action="append", required=True, metavar="PATTERN:ACTIONS",
                        help=SCOPE_HELP + "; repeat for more")
    _expires_option(create)
    create.set_defaults(handler=create_command)
    scope = actions.add_parser(
        "scope", parents=[common], help="replace the token's scopes; its passwords stay",
        description="Replace the scopes of a token: its passwords, status and expiry stay, so "
                    "its clients keep logging in and may do only what the new scopes grant. A "
                    "scope map shared with other tokens changes for them too (named in the "
                    "output).")
    scope.add_argument("name", metavar="NAME")
    scope.add_argument("--scope", action="append", required=True, metavar="PATTERN:ACTIONS",
                       help=SCOPE_HELP + "; repeat for more; the scopes given replace all "
                       "the token had")
    scope.set_defaults(handler=scope_command)
    listing = actions.add_parser("list", parents=[common],
                                 help="tokens, their scopes, status and expiry")
    listing.set_defaults(handler=list_command)
    for name, handler, what in (
        ("disable", disable_command, "refuse the token's passwords until enabled again"),
        ("enable", enable_command, "accept the token's passwords again"),
        ("delete", delete_command, "delete the token, its passwords and its scope map"),
    ):
        sub = actions.add_parser(name, parents=[common], help=what)
        sub.add_argument("name", metavar="NAME")
        sub.set_defaults(handler=handler)
    rotate = actions.add_parser("rotate", parents=[common],
                                help="a new password in one slot; the other keeps working")
    rotate.add_argument("name", metavar="NAME")
    rotate.add_argument("--password", type=int, choices=(1, 2), default=1, dest="slot",
                        help="which password to replace (default: 1)")
    _expires_option(rotate)
    rotate.set_defaults(handler=rotate_command)


def _expires_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--expires", type=float, metavar="DAYS",
                        help="the password stops working after this many days (default: never)")


def _with_admin(args: argparse.Namespace, op: Callable[[TokenAdmin], T]) -> T:
    """`op` on the data dir's tokens, the registry closed after."""
    registry = open_registry(args, create=True)
    try:
        return op(TokenAdmin(registry))
    finally:
        registry.close()


def create_command(args: argparse.Namespace) -> int:
    rules = parse_scopes(args.scope)
    issued = _with_admin(
        args, lambda admin: admin.create(args.name, rules, expires_days=args.expires, who=CONSOLE))
    emit(args, f"Token {issued.token.name} created.\n" + _issued_text(issued), issued.to_json())
    return 0


def rotate_command(args: argparse.Namespace) -> int:
    issued = _with_admin(
        args, lambda admin: admin.rotate(args.name, args.slot, expires_days=args.expires,
                                         who=CONSOLE))
    other = 2 if issued.slot == 1 else 1
    kept = any(p.slot == other and not p.expired() for p in issued.token.passwords)
    text = (f"Password {issued.slot} of token {issued.token.name} replaced (the old one no "
            f"longer works); password {other} "
            + ("keeps working." if kept else "is not set."))
    emit(args, text + "\n" + _issued_text(issued), issued.to_json())
    return 0


def scope_command(args: argparse.Namespace) -> int:
    rules = parse_scopes(args.scope)
    change = _with_admin(args, lambda admin: admin.set_scopes(args.name, rules, who=CONSOLE))
    emit(args, _scope_text(change), change.to_json())
    return 0


def list_command(args: argparse.Namespace) -> int:
    tokens = _with_admin(args, lambda admin: admin.list())
    lines = [_token_line(t) for t in tokens] or ["No client tokens."]
    emit(args, "\n".join(lines), {"tokens": [t.to_json() for t in tokens]})
    return 0


def disable_command(args: argparse.Namespace) -> int:
    token = _with_admin(args, lambda admin: admin.disable(args.name, who=CONSOLE))
    emit(args, f"Token {token.name} disabled: its passwords are refused until "
               "`token enable`.", {"token": token.to_json()})
    return 0


def enable_command(args: argparse.Namespace) -> int:
    token = _with_admin(args, lambda admin: admin.enable(args.name, who=CONSOLE))
    emit(args, f"Token {token.name} enabled: its current passwords work again.",
         {"token": token.to_json()})
    return 0


def delete_command(args: argparse.Namespace) -> int:
    token = _with_admin(args, lambda admin: admin.delete(args.name, who=CONSOLE))
    count = len(token.passwords)
    emit(args, f"Deleted token {token.name}: its {count} password(s) and its scope map "
               f"{token.scope_map.name} ({', '.join(token.scopes)}).",
         {"deleted": True, "token": token.to_json()})
    return 0


def _issued_text(issued: IssuedPassword) -> str:
    return "\n".join([
        f"Scopes:   {', '.join(issued.token.scopes)}",
        f"Username: {issued.token.name}",
        f"Password {issued.slot}: {issued.password}  ({_when(_slot(issued.token, issued.slot))})",
        "The password is shown only now: store it (the data dir keeps only its hash).",
    ])


def _scope_text(change: ScopeChange) -> str:
    token = change.token
    if not change.changed:
        return f"Scopes of token {token.name} unchanged: {', '.join(token.scopes)}."
    lines = [f"Scopes of token {token.name} replaced (its passwords keep working).",
             f"Scopes:   {', '.join(token.scopes)}",
             f"Before:   {', '.join(change.old_scopes)}"]
    if change.shared_with:
        lines.append(f"Scope map {token.scope_map.name} is shared: token(s) "
                     f"{', '.join(change.shared_with)} have these scopes now too.")
    return "\n".join(lines)


def _token_line(token: TokenInfo) -> str:
    status = "enabled" if token.enabled else "disabled"
    passwords = "; ".join(f"password {p.slot} {_when(p)}" for p in token.passwords) or "none"
    return f"{token.name}  {status}  {', '.join(token.scopes)}  ({passwords})"


def _slot(token: TokenInfo, slot: int) -> PasswordInfo | None:
    return next((p for p in token.passwords if p.slot == slot), None)


def _when(password: PasswordInfo | None) -> str:
    if password is None or password.expires_at is None:
        return "never expires"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(password.expires_at))
    return f"expired {stamp}" if password.expired() else f"expires {stamp}"
