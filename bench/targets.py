"""Registries to benchmark: start/stop helpers that yield a `Target`.

Two targets, both TLS + Basic auth on 127.0.0.1 only:

* `reference_registry(workdir)`: the CNCF distribution registry from the Debian package
  `docker-registry`, with its own CA, server certificate and bcrypt htpasswd file.
* `edge_registry(workdir)`: `edge-console enable` + `edge-console serve` on a fresh data dir.

Each context manager waits until `GET /v2/` answers (401 without credentials), yields, and stops
the process (SIGTERM, then SIGKILL after a bounded wait) when the block exits.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKER_REGISTRY_BIN = "/usr/bin/docker-registry"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
# Cost of the reference registry's htpasswd entry. 5 is what `htpasswd -B` (Apache) writes by
# default and what the distribution docs' recipe produces; a higher cost slows every request.
HTPASSWD_BCRYPT_COST = 5


@dataclass(frozen=True)
class Target:
    """A running registry under test."""

    name: str
    url_host_port: str  # "127.0.0.1:PORT"
    username: str
    password: str
    ca_cert_path: Path
    cert_dir: Path  # holds only ca.crt, for skopeo --dest-cert-dir / --src-cert-dir
    config_path: Path | None = None  # reference: config.yml (for garbage-collect)
    data_dir: Path | None = None  # reference: storage root; edge: --data-dir
    log_path: Path | None = None
    pid: int | None = None  # the registry's process, for CPU accounting from /proc

    @property
    def base_url(self) -> str:
        return f"https://{self.url_host_port}"

    @property
    def creds(self) -> str:
        return f"{self.username}:{self.password}"

    @property
    def basic_auth_header(self) -> str:
        token = base64.b64encode(self.creds.encode()).decode()
        return f"Basic {token}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert_path))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------------
# certificates and credentials for the reference registry


def make_ca_and_server_cert(cert_dir: Path) -> tuple[Path, Path, Path]:
    """Write ca.crt, server.crt, server.key (SANs 127.0.0.1, localhost). Returns their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench reference CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = cert_dir / "ca.crt"
    crt_path = cert_dir / "server.crt"
    key_path = cert_dir / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    # Full chain is not needed (clients trust the CA directly); leaf only, like most set-ups.
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, crt_path, key_path


def write_htpasswd(path: Path, username: str, password: str) -> None:
    """A bcrypt htpasswd line (the only hash the distribution registry accepts)."""
    import bcrypt  # bench-only dependency: .venv/bin/pip install bcrypt

    hashed = bcrypt.hashpw(
        password.encode(), bcrypt.gensalt(rounds=HTPASSWD_BCRYPT_COST, prefix=b"2a")
    )
    path.write_text(f"{username}:{hashed.decode()}\n")


def make_cert_dir(ca_cert: Path, cert_dir: Path) -> Path:
    """A directory holding only ca.crt (what skopeo's --*-cert-dir wants)."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    for child in cert_dir.iterdir():
        child.unlink()
    shutil.copyfile(ca_cert, cert_dir / "ca.crt")
    return cert_dir


# --------------------------------------------------------------------------------------------
# process handling


def wait_ready(
    host_port: str, ca_cert: Path, proc: subprocess.Popen[bytes], log_path: Path
) -> None:
    """Poll `GET /v2/` until it answers 401 (or 200); fail if the process dies or time runs out."""
    ctx = ssl.create_default_context(cafile=str(ca_cert))
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"registry exited with {proc.returncode} before it was ready; log:\n"
                + tail(log_path)
            )
        try:
            r = httpx.get(f"https://{host_port}/v2/", verify=ctx, timeout=2.0)
            if r.status_code in (200, 401):
                return
            last_error = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last_error = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(
        f"registry on {host_port} not ready after {READY_TIMEOUT_S}s ({last_error}); log:\n"
        + tail(log_path)
    )


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait, then SIGKILL: only the process we started."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------
# reference registry (CNCF distribution from Debian's docker-registry)


REFERENCE_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: bench-not-a-secret
  tls:
    certificate: {crt}
    key: {key}
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: bench-registry
    path: {htpasswd}
health:
  storagedriver:
    enabled: false
"""


def write_reference_config(workdir: Path, port: int, username: str, password: str) -> Path:
    """Certificates, htpasswd and config.yml for the reference registry under `workdir`."""
    certs = workdir / "certs"
    _ca, crt, key = make_ca_and_server_cert(certs)
    htpasswd = workdir / "htpasswd"
    write_htpasswd(htpasswd, username, password)
    root = workdir / "storage"
    root.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(
        REFERENCE_CONFIG.format(root=root, port=port, crt=crt, key=key, htpasswd=htpasswd)
    )
    return config


@contextmanager
def reference_registry(workdir: Path) -> Iterator[Target]:
    """Run `docker-registry serve` on a free 127.0.0.1 port with TLS and htpasswd auth."""
    if not Path(DOCKER_REGISTRY_BIN).exists():
        raise RuntimeError(f"{DOCKER_REGISTRY_BIN} missing: apt-get install -y docker-registry")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    username, password = "bench", base64.urlsafe_b64encode(os.urandom(12)).decode()
    port = free_port()
    config = write_reference_config(workdir, port, username, password)
    ca = workdir / "certs" / "ca.crt"
    cert_dir = make_cert_dir(ca, workdir / "client-certs")
    log_path = workdir / "registry.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [DOCKER_REGISTRY_BIN, "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
    try:
        host_port = f"127.0.0.1:{port}"
        wait_ready(host_port, ca, proc, log_path)
        yield Target(
            name="reference",
            url_host_port=host_port,
            username=username,
            password=password,
            ca_cert_path=ca,
            cert_dir=cert_dir,
            config_path=config,
            data_dir=workdir / "storage",
            log_path=log_path,
            pid=proc.pid,
        )
    finally:
        stop_process(proc)


def reference_garbage_collect(
    config_path: Path,
    *,
    delete_untagged: bool = False,
    dry_run: bool = False,
    timeout: float = 1800.0,
) -> tuple[float, str]:
    """Offline `docker-registry garbage-collect`; returns (seconds, combined output).

    The registry should be stopped (or read-only) while this runs: distribution's GC is not
    safe against concurrent pushes.
    """
    cmd = [
        DOCKER_REGISTRY_BIN,
        "garbage-collect",
        f"--delete-untagged={str(delete_untagged).lower()}",
    ]
    if dry_run:
        cmd.append("--dry-run")
    cmd.append(str(config_path))
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.perf_counter() - t0
    empty = "Path not found: /docker/registry/v2/repositories" in res.stderr
    if res.returncode != 0 and not empty:  # an empty storage root is not an error for us
        raise RuntimeError(f"garbage-collect failed ({res.returncode}): {res.stderr[-2000:]}")
    return elapsed, res.stdout + res.stderr


# --------------------------------------------------------------------------------------------
# edge-console


def edge_command() -> list[str]:
    """How to invoke edge-console: the venv's script, else `python -m console`."""
    use_bytecode()
    script = REPO_ROOT / ".venv" / "bin" / "edge-console"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "console"]


@functools.cache
def use_bytecode() -> None:
    """Start edge-console from compiled bytecode, as an installed copy does (pip compiles at
    install). With PYTHONDONTWRITEBYTECODE set, as on some CI images, every start of the
    editable checkout would compile our ~200 modules from source again (~0.15 s a start):
    the bytecode goes to bench/work/pycache instead, compiled once here."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(REPO_ROOT / "bench" / "work" / "pycache")
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    subprocess.run(
        [python, "-m", "compileall", "-q", "registry_core", "console"],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )


def _run_edge(args: list[str], data_dir: Path, timeout: float = 120.0) -> str:
    cmd = [*edge_command(), "--data-dir", str(data_dir), *args]
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO_ROOT
    )
    if res.returncode != 0:
        last = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise RuntimeError(
            f"edge-console {' '.join(args)} failed ({res.returncode}): {' | '.join(last)}"
        )
    return res.stdout


@contextmanager
def edge_registry(workdir: Path) -> Iterator[Target]:
    """`edge-console enable` + `serve` on a fresh data dir and a free port; SIGTERM at exit."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    port = free_port()
    _run_edge(["enable", "--node-ip", "127.0.0.1", "--port", str(port)], data_dir)
    info = json.loads(_run_edge(["info", "--json"], data_dir))
    ca = Path(info["ca_certificate"])
    if not ca.is_absolute():
        ca = (data_dir / ca).resolve()
    cert_dir = make_cert_dir(ca, workdir / "client-certs")
    log_path = workdir / "serve.log"
    host_port = f"127.0.0.1:{port}"
    serve = [*edge_command(), "--data-dir", str(data_dir), "serve", "--listen", host_port]
    # Access log off, like the reference's config, when this build of serve offers it.
    if "--quiet" in _run_edge(["serve", "--help"], data_dir, timeout=60):
        serve.append("--quiet")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            serve,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
        )
    try:
        wait_ready(host_port, ca, proc, log_path)
        yield Target(
            name="edge",
            url_host_port=host_port,
            username=str(info["username"]),
            password=str(info["password"]),
            ca_cert_path=ca,
            cert_dir=cert_dir,
            data_dir=data_dir,
            log_path=log_path,
            pid=proc.pid,
        )
    finally:
        stop_process(proc)
