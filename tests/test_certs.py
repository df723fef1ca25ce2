"""Certificates: real files, real TLS handshakes against the exported CA."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import ssl
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from registry_core.certs import (
    CA_DER_NAME,
    CA_PEM_NAME,
    ExportError,
    create_ca,
    describe_certificates,
    ensure_certificates,
    export_ca,
    server_needs_renewal,
)
from registry_core.config import Config
from registry_core.datadir import DataDir
from registry_core.errors import ConfigError, NotEnabledError


@pytest.fixture
def config() -> Config:
    return Config(device_name="box1", dns_domain="example.test", node_ip="10.20.30.40")


@pytest.fixture
def datadir(tmp_path: Path, config: Config) -> DataDir:
    d = DataDir(tmp_path / "data")
    d.ensure()
    ensure_certificates(d, config)
    return d


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_modes(datadir: DataDir) -> None:
    assert _mode(datadir.ca_key) == 0o600
    assert _mode(datadir.server_key) == 0o600
    assert _mode(datadir.ca_cert) == 0o644
    assert _mode(datadir.server_cert) == 0o644
    assert not [p for p in datadir.certs.iterdir() if p.name.endswith(".tmp")]


def test_describe(datadir: DataDir) -> None:
    ca, server = describe_certificates(datadir)
    assert (ca.role, server.role) == ("CA", "Server")
    assert server.issuer == ca.subject
    assert server.subject == "CN=ecr.box1.example.test"
    assert set(server.sans) == {
        "DNS:ecr.box1.example.test",
        "DNS:localhost",
        "IP:10.20.30.40",
        "IP:127.0.0.1",
        "IP:::1",
    }
    assert ca.sans == []
    assert ca.not_after - ca.not_before == dt.timedelta(days=3650)
    assert server.not_after - server.not_before == dt.timedelta(days=825)
    now = dt.datetime.now(dt.UTC)
    assert server.not_before.tzinfo is not None and server.not_before < now < server.not_after
    parts = ca.sha256_fingerprint.split(":")
    assert len(parts) == 32 and all(len(p) == 2 and p == p.upper() for p in parts)


def test_extensions(datadir: DataDir) -> None:
    ca = x509.load_pem_x509_certificate(datadir.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(datadir.server_cert.read_bytes())
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = server.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ensure_is_idempotent(datadir: DataDir, config: Config) -> None:
    before = {p.name: p.read_bytes() for p in datadir.certs.iterdir()}
    assert ensure_certificates(datadir, config) == []
    assert {p.name: p.read_bytes() for p in datadir.certs.iterdir()} == before


def test_changed_ip_reissues_server_keeps_ca(datadir: DataDir, config: Config) -> None:
    ca_before = datadir.ca_cert.read_bytes()
    server_before = datadir.server_cert.read_bytes()
    changed = Config(device_name="box1", dns_domain="example.test", node_ip="10.0.0.9")
    assert server_needs_renewal(datadir, changed)
    ensure_certificates(datadir, changed)
    assert datadir.ca_cert.read_bytes() == ca_before
    assert datadir.server_cert.read_bytes() != server_before
    server = describe_certificates(datadir)[1]
    assert "IP:10.0.0.9" in server.sans and "IP:10.20.30.40" not in server.sans
    assert not server_needs_renewal(datadir, changed)


def test_new_ca_reissues_server(datadir: DataDir, config: Config) -> None:
    create_ca(datadir, "someone else")
    assert server_needs_renewal(datadir, config)
    ensure_certificates(datadir, config)
    assert not server_needs_renewal(datadir, config)


class TLSServer:
    """Accepts TLS connections on 127.0.0.1 with the server certificate, answers b"ok"."""

    def __init__(self, datadir: DataDir) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(datadir.server_cert, datadir.server_key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)  # so the accept loop notices `stop`
        self.stop = threading.Event()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass  # a client that rejected us; the test checks its side

    def fetch(self, client: ssl.SSLContext, server_hostname: str) -> bytes:
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            client.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            return tls.recv(2)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def tls_server(datadir: DataDir) -> Iterator[TLSServer]:
    server = TLSServer(datadir)
    yield server
    server.close()


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "ecr.box1.example.test"])
def test_tls_verifies_with_exported_pem(
    datadir: DataDir, tls_server: TLSServer, tmp_path: Path, name: str
) -> None:
    exported = export_ca(datadir, tmp_path, "pem")
    assert exported == tmp_path / CA_PEM_NAME
    client = ssl.create_default_context(cafile=str(exported))
    assert tls_server.fetch(client, name) == b"ok"


def test_tls_verifies_with_exported_der(
    datadir: DataDir, tls_server: TLSServer, tmp_path: Path
) -> None:
    exported = export_ca(datadir, tmp_path, "der")
    assert exported == tmp_path / CA_DER_NAME
    client = ssl.create_default_context(cadata=exported.read_bytes())
    assert tls_server.fetch(client, "localhost") == b"ok"


def test_tls_rejects_wrong_name_and_untrusted_ca(
    datadir: DataDir, tls_server: TLSServer, tmp_path: Path
) -> None:
    client = ssl.create_default_context(cafile=str(export_ca(datadir, tmp_path, "pem")))
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_server.fetch(client, "other.example.test")
    other = DataDir(tmp_path / "other")
    other.ensure()
    create_ca(other, "unrelated")
    stranger = ssl.create_default_context(cafile=str(other.ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_server.fetch(stranger, "localhost")


def test_export_to_file_path(datadir: DataDir, tmp_path: Path) -> None:
    target = tmp_path / "my-ca.pem"
    assert export_ca(datadir, target, "pem") == target
    assert target.read_bytes() == datadir.ca_cert.read_bytes()
    der = export_ca(datadir, tmp_path / "my-ca.der", "der")
    cert = x509.load_der_x509_certificate(der.read_bytes())
    assert cert == x509.load_pem_x509_certificate(datadir.ca_cert.read_bytes())


def test_export_errors_write_nothing(datadir: DataDir, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ExportError, match="does not exist"):
        export_ca(datadir, out / "missing" / "ca.crt", "pem")
    with pytest.raises(ExportError, match="does not exist"):
        export_ca(datadir, f"{out}/missing/", "pem")
    assert list(out.iterdir()) == []


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block as `nobody` when the tests run as root (as CI does): root ignores
    directory permissions, so only an unprivileged user can meet a permission error."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_export_permission_denied(datadir: DataDir) -> None:
    # A world-readable copy of the data dir's CA in a world-traversable place, so that
    # `nobody` can read it but not write into the locked directory.
    base = Path(tempfile.mkdtemp(prefix="edge-export-"))
    try:
        base.chmod(0o755)
        readable = DataDir(base / "data")
        readable.certs.mkdir(parents=True, mode=0o755)
        shutil.copy(datadir.ca_cert, readable.ca_cert)
        readable.ca_cert.chmod(0o644)
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        with unprivileged(), pytest.raises(ExportError, match="permission denied"):
            export_ca(readable, locked, "pem")
        assert list(locked.iterdir()) == []
    finally:
        shutil.rmtree(base)


def test_export_refuses_a_directory_in_the_way(datadir: DataDir, tmp_path: Path) -> None:
    target_dir = tmp_path / "dir"
    target_dir.mkdir()
    (target_dir / CA_PEM_NAME).mkdir()
    (target_dir / CA_PEM_NAME / "keep").write_text("x")
    with pytest.raises(ExportError, match="not a regular file"):
        export_ca(datadir, target_dir, "pem", force=True)
    assert sorted(p.name for p in target_dir.iterdir()) == [CA_PEM_NAME]
    assert (target_dir / CA_PEM_NAME / "keep").read_text() == "x"


def test_export_refuses_the_data_dir(datadir: DataDir) -> None:
    for target in (datadir.root, datadir.certs, datadir.ca_key, datadir.root / "new.pem"):
        before = datadir.ca_key.read_bytes()
        with pytest.raises(ExportError, match="inside the data dir"):
            export_ca(datadir, target, "pem", force=True)
        assert datadir.ca_key.read_bytes() == before
    assert not (datadir.root / "new.pem").exists()


def test_export_replaces_a_file_only_with_force(datadir: DataDir, tmp_path: Path) -> None:
    target = tmp_path / "ca.pem"
    target.write_text("older")
    with pytest.raises(ExportError, match="--force"):
        export_ca(datadir, target, "pem")
    assert target.read_text() == "older"
    assert export_ca(datadir, target, "pem", force=True) == target
    assert target.read_bytes() == datadir.ca_cert.read_bytes()


@pytest.mark.parametrize("missing", ["ca_cert", "ca_key"])
def test_half_a_ca_is_refused_not_replaced(datadir: DataDir, config: Config,
                                           missing: str) -> None:
    getattr(datadir, missing).unlink()
    kept = datadir.ca_key if missing == "ca_cert" else datadir.ca_cert
    before = kept.read_bytes()
    with pytest.raises(ConfigError, match="is missing but"):
        ensure_certificates(datadir, config)
    assert kept.read_bytes() == before
    assert not getattr(datadir, missing).exists()


def test_not_enabled(tmp_path: Path) -> None:
    with pytest.raises(NotEnabledError, match="edge-console enable"):
        export_ca(DataDir(tmp_path), tmp_path, "pem")
    assert describe_certificates(DataDir(tmp_path)) == []
