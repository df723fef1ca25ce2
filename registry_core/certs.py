"""The registry's certificate authority and TLS server certificate.

The CA lives as long as the appliance (10 years) and is what clients trust; the server
certificate is re-issued from it whenever the endpoint name or node IP changes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from registry_core.atomic_file import write_atomic
from registry_core.config import Config
from registry_core.datadir import DataDir
from registry_core.errors import ConfigError, EdgeError, NotEnabledError

CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=825)
RENEW_BEFORE = dt.timedelta(days=30)
CLOCK_SKEW = dt.timedelta(minutes=5)
"""Certificates start a little in the past so that clients with a slow clock accept them."""

CA_PEM_NAME = "edge-registry-ca.crt"
CA_DER_NAME = "edge-registry-ca.cer"

ExportFormat = Literal["pem", "der"]


class ExportError(EdgeError):
    """The CA certificate could not be written where asked."""


class ExportTargetExists(ExportError):
    """A regular file is where the CA certificate would go: written only when forced."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} exists (--force overwrites it)")
        self.path = path


@dataclass(frozen=True)
class CertificateInfo:
    role: str
    path: Path
    subject: str
    issuer: str
    sans: list[str]
    not_before: dt.datetime
    not_after: dt.datetime
    sha256_fingerprint: str
    serial: str


def create_ca(datadir: DataDir, common_name: str) -> None:
    """Make a new CA key and self-signed certificate (replacing any existing ones)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Edge Console"),
        ]
    )
    start = _now() - CLOCK_SKEW
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    datadir.certs.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(datadir.ca_key, _key_pem(key), 0o600)
    write_atomic(datadir.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def create_server_certificate(datadir: DataDir, config: Config) -> None:
    """Issue a new server key and certificate from the CA for the configured endpoint."""
    ca_cert, ca_key = _load_ca(datadir)
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now() - CLOCK_SKEW
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, config.endpoint_host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + SERVER_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_server_sans(config)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_atomic(datadir.server_key, _key_pem(key), 0o600)
    write_atomic(datadir.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def server_needs_renewal(datadir: DataDir, config: Config) -> bool:
    """True if the server certificate is missing, names the wrong endpoint or IP, was not
    issued by the current CA, or expires within 30 days."""
    if not (datadir.server_cert.exists() and datadir.server_key.exists()):
        return True
    try:
        cert = _read_cert(datadir.server_cert)
        ca_cert = _read_cert(datadir.ca_cert)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        cert.verify_directly_issued_by(ca_cert)
    except (EdgeError, ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return True
    if set(_describe_sans(list(sans))) != set(_describe_sans(_server_sans(config))):
        return True
    return cert.not_valid_after_utc - _now() < RENEW_BEFORE


def ensure_certificates(datadir: DataDir, config: Config) -> list[str]:
    """Create what is missing; re-issue the server certificate if it no longer fits the config.

    The CA is kept whenever it exists, so clients that trust it keep working. Returns one
    line per action taken (empty when nothing changed).
    """
    actions: list[str] = []
    _refuse_half_ca(datadir)
    if not datadir.ca_cert.exists():
        create_ca(datadir, f"Edge Registry CA {config.device_name}")
        actions.append(f"Created certificate authority {datadir.ca_cert}")
    if server_needs_renewal(datadir, config):
        create_server_certificate(datadir, config)
        actions.append(f"Issued server certificate for {config.endpoint_host} ({config.node_ip})")
    return actions


def _refuse_half_ca(datadir: DataDir) -> None:
    """A CA certificate without its key (or the reverse) is never replaced silently: every
    client that trusts the old CA would stop trusting this registry."""
    has_cert, has_key = datadir.ca_cert.exists(), datadir.ca_key.exists()
    if has_cert == has_key:
        return
    there, missing = (datadir.ca_cert, datadir.ca_key) if has_cert else (
        datadir.ca_key, datadir.ca_cert)
    raise ConfigError(
        f"{missing} is missing but {there} exists: restore it from a backup, or remove "
        f"{there} too to make a new CA (every client must then trust the new one)"
    )


def describe_certificates(datadir: DataDir) -> list[CertificateInfo]:
    """The CA and server certificates that exist, CA first."""
    found = [("CA", datadir.ca_cert), ("Server", datadir.server_cert)]
    return [_describe(role, path) for role, path in found if path.exists()]


def ca_certificate_info(datadir: DataDir) -> CertificateInfo:
    """The CA certificate's description; NotEnabledError if there is none yet."""
    if not datadir.ca_cert.exists():
        raise _not_enabled(datadir)
    return _describe("CA", datadir.ca_cert)


def export_ca(datadir: DataDir, destination: Path | str, fmt: ExportFormat, *,
              force: bool = False) -> Path:
    """Write the CA certificate for clients, as PEM or DER; returns the path written.

    `destination` is a file path or an existing directory (a trailing slash insists on a
    directory); in a directory the file is named edge-registry-ca.crt (PEM) or .cer (DER).
    Refused: a target inside the data dir, an existing path that is not a regular file
    (symlink, FIFO, device), and an existing file unless `force`.
    """
    if fmt not in ("pem", "der"):
        raise ExportError(f"unknown certificate format {fmt!r}: use pem or der")
    if not datadir.ca_cert.exists():
        raise _not_enabled(datadir)
    target = _export_target(datadir, destination, fmt, force)
    cert = _read_cert(datadir.ca_cert)
    encoding = serialization.Encoding.PEM if fmt == "pem" else serialization.Encoding.DER
    try:
        write_atomic(target, cert.public_bytes(encoding), 0o644)
    except PermissionError as exc:
        raise ExportError(f"cannot write {target}: permission denied") from exc
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target


def _export_target(datadir: DataDir, destination: Path | str, fmt: ExportFormat,
                   force: bool) -> Path:
    text = str(destination)
    if not text.strip():
        raise ExportError("no export path given: name a file or an existing directory")
    path = Path(destination).expanduser()
    if path.is_dir():
        path = path / (CA_PEM_NAME if fmt == "pem" else CA_DER_NAME)
    elif text.endswith(("/", os.sep)):
        raise ExportError(f"directory {path} does not exist")
    elif not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: directory {path.parent} does not exist")
    _refuse_inside(datadir, path)
    _refuse_existing(path, force)
    return path


def _refuse_inside(datadir: DataDir, path: Path) -> None:
    """The data dir's own files are never an export target (resolved: no symlink detour)."""
    where = path.parent.resolve() / path.name
    if where.is_relative_to(datadir.root.resolve()):
        raise ExportError(f"cannot write {path}: it is inside the data dir {datadir.root}")


def _refuse_existing(path: Path, force: bool) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):
        raise ExportError(f"cannot write {path}: it exists and is not a regular file")
    if not force:
        raise ExportTargetExists(path)


def _describe(role: str, path: Path) -> CertificateInfo:
    cert = _read_cert(path)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        san_text = _describe_sans(list(sans))
    except x509.ExtensionNotFound:
        san_text = []
    fingerprint = cert.fingerprint(hashes.SHA256()).hex().upper()
    return CertificateInfo(
        role=role,
        path=path,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=san_text,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256_fingerprint=":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2)),
        serial=format(cert.serial_number, "X"),
    )


def _server_sans(config: Config) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName(config.endpoint_host),
        x509.DNSName("localhost"),
    ]
    for ip in dict.fromkeys([config.node_ip, "127.0.0.1", "::1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as exc:
            raise ConfigError(f"node_ip {ip!r} is not an IP address") from exc
    return names


def _describe_sans(names: list[x509.GeneralName]) -> list[str]:
    out: list[str] = []
    for name in names:
        if isinstance(name, x509.DNSName):
            out.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            out.append(f"IP:{name.value}")
    return out


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ca(datadir: DataDir) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not (datadir.ca_cert.exists() and datadir.ca_key.exists()):
        raise _not_enabled(datadir)
    cert = _read_cert(datadir.ca_cert)
    try:
        key = serialization.load_pem_private_key(datadir.ca_key.read_bytes(), password=None)
    except ValueError as exc:
        raise ConfigError(f"{datadir.ca_key}: not a readable private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{datadir.ca_key}: expected an EC private key")
    return cert, key


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: certificate file is missing") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM certificate") from exc


def _not_enabled(datadir: DataDir) -> NotEnabledError:
    return NotEnabledError(
        f"the registry is not enabled in {datadir.root}: run `edge-console enable` first"
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
