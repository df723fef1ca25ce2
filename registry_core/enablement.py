"""The registry add-on: the equivalent of the appliance's Set-HcsKubernetesContainerRegistry.

Idempotent: running it again keeps the CA and the password; only a changed option re-issues
the server certificate.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
from collections.abc import Callable

from registry_core.access.audit import record_config_change
from registry_core.access.credentials import (
    ensure_credentials,
    restore_users,
    rotate_credentials,
)
from registry_core.certs import ensure_certificates
from registry_core.config import Config, check_config, load_config, save_config
from registry_core.datadir import DataDir
from registry_core.errors import ConfigError
from registry_core.store.migrations import refuse_newer

Progress = Callable[[str], None]

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PROBE_ADDRESS = ("192.0.2.1", 9)
"""TEST-NET-1: connecting a UDP socket there picks a route but sends nothing."""


def enable(
    datadir: DataDir,
    *,
    device_name: str | None = None,
    dns_domain: str | None = None,
    node_ip: str | None = None,
    port: int | None = None,
    progress: Progress | None = None,
) -> Config:
    """Write config, certificates and credentials; keep what exists unless overridden."""
    say = progress or (lambda _line: None)
    if datadir.root.exists() and not datadir.root.is_dir():
        raise ConfigError(f"{datadir.root} is a file, not a data directory")
    refuse_newer(datadir.database)  # a newer release's config would lose what we don't know
    datadir.ensure()
    fresh = not datadir.config.exists()
    old = load_config(datadir.config, checked=False)  # a value given here may repair it
    config = dataclasses.replace(
        old,
        device_name=_device_name(device_name, old.device_name if not fresh else None),
        dns_domain=_dns_domain(dns_domain if dns_domain is not None else old.dns_domain),
        node_ip=_node_ip(node_ip, old.node_ip if not fresh else None),
        port=_port(port if port is not None else old.port),
    )
    check_config(config, datadir.config)
    # Credentials and certificates first, the config last: a refusal or failure on the way
    # leaves the config as it was, never one that the certificates do not match.
    if restore_users(datadir, config.username):
        say(f"Restored {datadir.users} from {datadir.secrets} (the password is unchanged)")
    if ensure_credentials(datadir, config.username):
        say(f"Created credentials for user {config.username}")
    for line in ensure_certificates(datadir, config):
        say(line)
    if fresh or config != old:
        save_config(config, datadir.config)
        say(f"Saved configuration {datadir.config}")
        record_config_change(datadir, "config.enable", _changes(old, config))
    return config


def rotate_password(datadir: DataDir, progress: Progress | None = None) -> str:
    """A new admin password (generated as `enable` does), in secrets.json and users.json;
    return it. A running server stops accepting the old one within auth.RELOAD_INTERVAL;
    pull secrets in the cluster keep the old one until they are applied again."""
    config = load_config(datadir.config)
    password = rotate_credentials(datadir, config.username)
    record_config_change(datadir, "config.rotate_password", {"username": config.username})
    (progress or (lambda _line: None))(f"Rotated the password of user {config.username}")
    return password


def _changes(old: Config, new: Config) -> dict[str, list[object]]:
    """The settings `enable` changed: name -> [before, after]."""
    return {name: [getattr(old, name), getattr(new, name)] for name in _ENABLE_SETTINGS
            if getattr(old, name) != getattr(new, name)}


_ENABLE_SETTINGS = ("device_name", "dns_domain", "node_ip", "port")


def default_device_name() -> str:
    """This machine's short host name as a DNS label, or "edge"."""
    short = socket.gethostname().split(".")[0].lower()
    label = re.sub(r"[^a-z0-9-]+", "-", short).strip("-")[:63].strip("-")
    return label if _LABEL.match(label) else "edge"


def detect_node_ip() -> str:
    """The IPv4 address of the interface holding the default route, without sending a packet."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(_PROBE_ADDRESS)
            address = str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    return address if address != "0.0.0.0" else "127.0.0.1"


def _device_name(given: str | None, current: str | None) -> str:
    if given is None:
        return current if current is not None else default_device_name()
    name = given.strip().lower()
    if not _LABEL.match(name):
        raise ConfigError(
            f"invalid device name {given!r}: use 1-63 letters, digits or '-', "
            "not starting or ending with '-'"
        )
    return name


def _dns_domain(given: str) -> str:
    domain = given.strip().lower().rstrip(".")
    labels = domain.split(".")
    if not domain or len(domain) > 240 or not all(_LABEL.match(label) for label in labels):
        raise ConfigError(
            f"invalid DNS domain {given!r}: use dot-separated labels of letters, digits or '-'"
        )
    return domain


def _node_ip(given: str | None, current: str | None) -> str:
    if given is None:
        return current if current is not None else detect_node_ip()
    try:
        address = ipaddress.ip_address(given.strip())
    except ValueError as exc:
        raise ConfigError(f"invalid node IP {given!r}: not an IPv4 or IPv6 address") from exc
    if address.is_unspecified or address.is_multicast:
        raise ConfigError(f"invalid node IP {given!r}: clients cannot connect to it")
    return str(address)


def _port(given: int) -> int:
    if not 1 <= given <= 65535:
        raise ConfigError(f"invalid port {given}: use 1-65535")
    return given
