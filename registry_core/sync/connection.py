"""The connection string that ties this registry to its parent, and where it is kept.

    ConnectedRegistryName=<name>;SyncTokenName=<token>;SyncTokenPassword=<password>;
    ParentGatewayEndpoint=<host[:port]>;ParentEndpointProtocol=https

It comes from a file or standard input (never the command line, where `ps` shows it), as the
appliance's own tools produce it: possibly with a UTF-8 BOM, CR/LF line ends, a trailing `;`,
in double quotes, or inside the `{"connectionString": "..."}` JSON file the seeds write. It is
kept 0600 at `<datadir>/sync/connection`; the parent's CA, when it has a private one, at
`<datadir>/sync/parent-ca.pem`.

No message and no repr ever carries the password.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from registry_core.atomic_file import write_atomic
from registry_core.datadir import DataDir
from registry_core.errors import SyncConfigError

if TYPE_CHECKING:
    from cryptography import x509

NAME = "ConnectedRegistryName"
TOKEN = "SyncTokenName"
PASSWORD = "SyncTokenPassword"
ENDPOINT = "ParentGatewayEndpoint"
PROTOCOL = "ParentEndpointProtocol"
KEYS = (NAME, TOKEN, PASSWORD, ENDPOINT, PROTOCOL)
"""In the order they are written."""

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{4,39}")
"""A connected registry's name: 5-40 characters, a letter first, then letters, digits, '-'
and '_' (the rule `az acr connected-registry create --name` enforces)."""
TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""The sync token's name: the user name the parent knows. ACR names it `<name>-sync-token`
(up to 51 characters); any other parent's user (an htpasswd entry) may be short."""
MAX_PASSWORD = 1024
MAX_TEXT = 64 * 1024
"""A connection string file larger than this is not one."""

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_BOM = "\ufeff"


@dataclass(frozen=True)
class ConnectionString:
    """A parsed, valid connection string. `token_password` stays out of repr()."""

    name: str
    token_name: str
    token_password: str = field(repr=False)
    parent_endpoint: str
    protocol: str = "https"

    @property
    def parent_url(self) -> str:
        return f"{self.protocol}://{self.parent_endpoint}"

    def to_text(self) -> str:
        """The canonical one-line form (with the password: for the 0600 file only)."""
        values = (self.name, self.token_name, self.token_password, self.parent_endpoint,
                  self.protocol)
        return ";".join(f"{k}={v}" for k, v in zip(KEYS, values, strict=True))

    def to_json(self) -> dict[str, str]:
        """Everything but the password."""
        return {"connected_registry": self.name, "token_name": self.token_name,
                "parent_endpoint": self.parent_endpoint, "protocol": self.protocol}


# ---- parsing -------------------------------------------------------------------------------


def parse_connection_string(text: str) -> ConnectionString:
    """Parse and check a connection string, field by field; SyncConfigError names the field
    and what is wrong, in one line, and never shows the password."""
    fields = _fields(_unwrap(text))
    missing = [k for k in KEYS if k not in fields]
    if missing:
        raise SyncConfigError(f"connection string: {', '.join(missing)} is missing")
    return ConnectionString(
        name=_check_name(fields[NAME]),
        token_name=_check_token(fields[TOKEN]),
        token_password=_check_password(fields[PASSWORD]),
        parent_endpoint=check_endpoint(fields[ENDPOINT]),
        protocol=_check_protocol(fields[PROTOCOL]),
    )


def _unwrap(text: str) -> str:
    """The bare string from what a file holds: BOM, blanks, quotes or the JSON wrapper off."""
    text = text.lstrip(_BOM).strip()
    if text.startswith("{"):
        text = _from_json(text)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    if not text:
        raise SyncConfigError("connection string is empty")
    return text


def _from_json(text: str) -> str:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc's message quotes no content, only a position
        raise SyncConfigError(f"connection string file is not valid JSON: {exc.msg}") from None
    value = data.get("connectionString") if isinstance(data, dict) else None
    if not isinstance(value, str):
        raise SyncConfigError(
            "connection string file is JSON without a \"connectionString\" string")
    return value.lstrip(_BOM).strip()


def _fields(text: str) -> dict[str, str]:
    """Key=Value pairs split on ';', keys matched case-insensitively, values kept verbatim
    but for surrounding blanks. A value ends at the next ';' (passwords never hold one: the
    parent generates them base64-like) and may hold '=' (split on the first '=' only)."""
    canonical = {k.lower(): k for k in KEYS}
    fields: dict[str, str] = {}
    after_password = False
    for number, segment in enumerate(text.split(";"), start=1):
        if not segment.strip():
            continue
        key, eq, value = segment.partition("=")
        known = canonical.get(key.strip().lower())
        if known is None or not eq:
            raise SyncConfigError(_bad_segment(number, key, eq, after_password))
        if known in fields:
            raise SyncConfigError(f"connection string: {known} is given twice")
        fields[known] = value.strip()
        after_password = known == PASSWORD
    return fields


def _bad_segment(number: int, key: str, eq: str, after_password: bool) -> str:
    if after_password:
        # this segment may be the rest of a password that held a ';': show none of it
        return (f"connection string: part {number}, after {PASSWORD}, is not one of "
                f"{', '.join(KEYS)} (a password cannot contain ';')")
    if not eq:
        return f"connection string: part {number} is not Key=Value"
    shown = key.strip()[:40]
    return f"connection string: unknown key {shown!r} (the keys are {', '.join(KEYS)})"


def _check_name(value: str) -> str:
    if not value:
        raise SyncConfigError(f"connection string: {NAME} is empty")
    if not NAME_RE.fullmatch(value):
        raise SyncConfigError(
            f"connection string: {NAME} {value[:60]!r} must be 5-40 characters: a letter, "
            "then letters, digits, '-' or '_'")
    return value


def _check_token(value: str) -> str:
    if not value:
        raise SyncConfigError(f"connection string: {TOKEN} is empty")
    if not TOKEN_RE.fullmatch(value):
        raise SyncConfigError(
            f"connection string: {TOKEN} {value[:80]!r} must be 1-64 characters: letters, "
            "digits, '-' or '_', not starting with '-' or '_'")
    return value


def _check_password(value: str) -> str:
    if not value:
        raise SyncConfigError(f"connection string: {PASSWORD} is empty")
    if len(value) > MAX_PASSWORD:
        raise SyncConfigError(
            f"connection string: {PASSWORD} is longer than {MAX_PASSWORD} characters")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise SyncConfigError(
            f"connection string: {PASSWORD} contains blanks or control characters")
    return value


def _check_protocol(value: str) -> str:
    if not value:
        raise SyncConfigError(f"connection string: {PROTOCOL} is empty")
    if value.lower() != "https":
        raise SyncConfigError(
            f"connection string: {PROTOCOL} must be https, not {value[:20]!r} (the sync "
            "token's password never travels in clear)")
    return "https"


def check_endpoint(value: str) -> str:
    """`host[:port]`: a DNS name, an IPv4 address or a bracketed IPv6 address, and a port in
    1-65535. Returned as given (the host's case is kept)."""
    label = f"connection string: {ENDPOINT}"
    if not value:
        raise SyncConfigError(f"{label} is empty")
    shown = value[:100]
    if "://" in value or "/" in value:
        raise SyncConfigError(
            f"{label} {shown!r} must be host[:port], without a scheme or a path "
            f"(the scheme is {PROTOCOL})")
    host, port = _split_host_port(value, label)
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise SyncConfigError(f"{label} {shown!r}: the port must be a number in 1-65535")
    if host is not None and not _valid_host(host):
        raise SyncConfigError(
            f"{label} {shown!r} must be host[:port]: {host[:100]!r} is not a host name or "
            "an IP address")
    return value


def _split_host_port(value: str, label: str) -> tuple[str | None, str | None]:
    """(host, port); host None for a bracketed IPv6 address, checked here."""
    if value.startswith("["):
        inner, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise SyncConfigError(f"{label} {value[:100]!r}: an IPv6 address is [address]:port")
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise SyncConfigError(
                f"{label} {value[:100]!r}: {inner[:60]!r} is not an IPv6 address") from None
        return None, (rest[1:] if rest else None)
    host, colon, port = value.partition(":")
    return host, (port if colon else None)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253 or name.replace(".", "").isdigit():
        return False
    return all(_LABEL.fullmatch(part) for part in name.split("."))


# ---- where it is kept ----------------------------------------------------------------------


def sync_dir(datadir: DataDir) -> Path:
    """`<datadir>/sync`: the connected registry's own files (0700)."""
    return datadir.root / "sync"


def connection_path(datadir: DataDir) -> Path:
    return sync_dir(datadir) / "connection"


def parent_ca_path(datadir: DataDir) -> Path:
    return sync_dir(datadir) / "parent-ca.pem"


def ensure_sync_dir(datadir: DataDir) -> Path:
    """Create `sync/` 0700 (and tighten it if it exists wider)."""
    path = sync_dir(datadir)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def save_connection(datadir: DataDir, connection: ConnectionString) -> Path:
    """Keep the connection string 0600 (written whole, then renamed over the old one)."""
    ensure_sync_dir(datadir)
    path = connection_path(datadir)
    write_atomic(path, (connection.to_text() + "\n").encode("utf-8"), 0o600)
    return path


def load_connection(datadir: DataDir) -> ConnectionString | None:
    """The stored connection string, or None when none was configured."""
    path = connection_path(datadir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SyncConfigError(f"{path}: cannot be read ({type(exc).__name__})") from None
    try:
        return parse_connection_string(text)
    except SyncConfigError as exc:
        raise SyncConfigError(f"{path}: {exc}") from None


def read_connection_text(path: Path) -> str:
    """A connection string file's text (UTF-8, a BOM allowed), size-checked."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_TEXT + 1)
    except OSError as exc:
        raise SyncConfigError(f"{path}: {exc.strerror or exc}") from None
    return decode_connection_bytes(data, str(path))


def decode_connection_bytes(data: bytes, source: str) -> str:
    if len(data) > MAX_TEXT:
        raise SyncConfigError(f"{source}: larger than {MAX_TEXT} bytes, not a connection string")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SyncConfigError(f"{source}: not UTF-8 text") from None


# ---- the parent's CA -----------------------------------------------------------------------


def check_parent_ca(data: bytes, source: str) -> list[x509.Certificate]:
    """One or more PEM X.509 certificates (a bundle is fine), else a one-line error."""
    from cryptography import x509  # ~40 ms to import; only `sync configure` needs it

    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise SyncConfigError(f"{source}: not a PEM X.509 certificate") from None
    if not certs:
        raise SyncConfigError(f"{source}: not a PEM X.509 certificate")
    return certs


def save_parent_ca(datadir: DataDir, source: Path) -> Path:
    """Copy a PEM CA certificate (checked) to `sync/parent-ca.pem`."""
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise SyncConfigError(f"{source}: {exc.strerror or exc}") from None
    check_parent_ca(data, str(source))
    ensure_sync_dir(datadir)
    path = parent_ca_path(datadir)
    write_atomic(path, data, 0o644)
    return path


def stored_parent_ca(datadir: DataDir) -> Path | None:
    path = parent_ca_path(datadir)
    return path if path.exists() else None
