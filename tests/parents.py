"""Real parent registries for the sync tests (registered in conftest.py with `pytest_plugins`).

The parent is the reference registry, CNCF distribution 2.8 from the Debian package
`docker-registry`, on 127.0.0.1 with TLS (its own CA, made here), deletes enabled. Without
the binary the tests that use these fixtures skip, except under CI (CI set), where they fail.

Fixtures:
- ``reference_parent`` (module): htpasswd (bcrypt) Basic auth -> `Parent`.
- ``token_parent`` (module): `auth: token` whose realm is a `TokenIssuer` run in this
  process: HTTPS, Basic-checked credentials, ES256 JWTs with an `x5c` header that chains to
  the registry's `rootcertbundle` -> `Parent` with `.issuer`.

`start_reference(workdir, ...)` starts another one (a variant: storage redirects to a plain
file server, say). Images go in with skopeo, `Parent.push`, from layouts built by
imagebuilder.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from kubebed import Process, certificate, eventually, pem_key
from support import Endpoint, basic_auth_header, free_port, require_tool, run_skopeo

REGISTRY_TOOL = "docker-registry"
SERVICE = "edge-test-parent"
ISSUER = "edge-test-issuer"
BCRYPT_ROUNDS = 5
"""What `htpasswd -B` writes by default; a higher cost slows every request."""


# ---- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TestCA:
    """A CA and what it signed: the serving certificate for 127.0.0.1 and localhost (used by
    the registry and the token issuer alike) and the token-signing key and certificate."""

    __test__ = False  # not a test class, for pytest

    directory: Path
    cert: Path
    server_cert: Path
    server_key: Path
    signing_key: ec.EllipticCurvePrivateKey
    signing_cert: x509.Certificate

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


def make_ca(directory: Path) -> TestCA:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = ("edge-test-parent-ca", ca_key)
    ca = certificate(issuer[0], ca_key.public_key(), issuer, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
    server = certificate("127.0.0.1", server_key.public_key(), issuer, ca=False, sans=names)
    signing_key = ec.generate_private_key(ec.SECP256R1())
    signing = certificate("edge-test-token-signer", signing_key.public_key(), issuer, ca=False)
    paths = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(pem_key(server_key))
    paths[2].chmod(0o600)
    return TestCA(directory, *paths, signing_key, signing)


# ---- the token issuer (distribution's token specification) ------------------------------------


@dataclass
class TokenRequest:
    service: str
    scopes: list[str]
    granted: bool
    """The credentials were right (a token was issued)."""


@dataclass
class TokenIssuer:
    """The realm of a token-auth registry, in a thread: GET /token?service=&scope= with
    Basic credentials answers {"token", "access_token", "expires_in", "issued_at"}."""

    ca: TestCA
    username: str
    password: str
    expires_in: int = 300
    issued_age: float = 0.0
    """Seconds by which `issued_at` lies in the past: a client must count them."""
    refuse_next: int = 0
    """How many of the next tokens the registry will refuse (their JWT expired long ago)."""
    actions: set[str] | None = None
    """The repository actions granted (None: whatever is asked)."""
    requests: list[TokenRequest] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        issuer = self
        handler = type("Handler", (_TokenHandler,), {"issuer": issuer})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self._server.socket = self.ca.server_context().wrap_socket(
            self._server.socket, server_side=True
        )
        threading.Thread(target=self._server.serve_forever, name="token-issuer",
                         daemon=True).start()

    @property
    def realm(self) -> str:
        return f"https://127.0.0.1:{self.port}/token"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def granted(self) -> list[TokenRequest]:
        with self._lock:
            return [r for r in self.requests if r.granted]

    def answer(self, query: dict[str, list[str]], authorization: str | None) -> tuple[int, Any]:
        scopes = query.get("scope", [])
        good = authorization == basic_auth_header(self.username, self.password)
        with self._lock:
            self.requests.append(TokenRequest(query.get("service", [""])[0], scopes, good))
            expired = good and self.refuse_next > 0
            if expired:
                self.refuse_next -= 1
        if not good:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
        now = time.time()
        # Expired three minutes ago: past distribution's 60 s leeway for clock skew.
        lifetime = -180 if expired else self.expires_in
        token = self.sign(scopes, now, lifetime)
        issued = dt.datetime.fromtimestamp(now - self.issued_age, dt.UTC)
        return 200, {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": issued.isoformat().replace("+00:00", "Z"),
        }

    def sign(self, scopes: list[str], now: float, lifetime: float) -> str:
        """An ES256 JWT as distribution 2.8 verifies it: x5c chains to rootcertbundle."""
        der = self.ca.signing_cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        claims = {
            "iss": ISSUER,
            "sub": self.username,
            "aud": SERVICE,
            "exp": int(now + lifetime),
            "nbf": int(now - 10),
            "iat": int(now),
            "jti": uuid.uuid4().hex,
            "access": [_access(scope, self.actions) for scope in scopes],
        }
        signing_input = f"{_b64url(json.dumps(header))}.{_b64url(json.dumps(claims))}"
        der_sig = self.ca.signing_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der_sig)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{_b64url(signature)}"


def _b64url(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _access(scope: str, allowed: set[str] | None) -> dict[str, Any]:
    """`repository:app/x:pull,push` -> the JWT's access entry: what is asked and allowed."""
    kind, _, rest = scope.partition(":")
    name, _, asked = rest.rpartition(":")
    actions = [a for a in asked.split(",") if allowed is None or a in allowed]
    return {"type": kind, "name": name, "actions": actions}


class _TokenHandler(BaseHTTPRequestHandler):
    issuer: TokenIssuer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/token":
            self._send(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            return
        status, doc = self.issuer.answer(parse_qs(url.query), self.headers.get("Authorization"))
        self._send(status, doc)

    def _send(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ---- a plain file server: where a redirecting registry sends blob GETs ------------------------


class FileServer:
    """Serves a directory over plain HTTP and records each request's Authorization header."""

    def __init__(self, root: Path) -> None:
        self.authorizations: list[str | None] = []
        owner = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                owner.authorizations.append(self.headers.get("Authorization"))
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="file-server",
                         daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---- the reference registry -------------------------------------------------------------------


@dataclass
class Parent(Endpoint):
    """A running reference registry (Endpoint: address, creds, cert_dir for skopeo)."""

    storage: Path = Path()
    config: Path = Path()
    process: Process | None = None
    issuer: TokenIssuer | None = None

    @property
    def ca_file(self) -> Path:
        return self.ca_cert

    def push(self, source: str, dest: str) -> None:
        """skopeo copy --all `source` (oci:DIR:TAG, dir:DIR) to `dest` (repo:tag) here."""
        skopeo = require_tool("skopeo")
        run_skopeo(skopeo, "copy", "--all", "--dest-creds", self.creds, "--dest-cert-dir",
                   str(self.cert_dir), source, f"docker://{self.address}/{dest}")

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (tests corrupt it on purpose)."""
        algorithm, _, hexa = digest.partition(":")
        return self.storage / "docker/registry/v2/blobs" / algorithm / hexa[:2] / hexa / "data"

    def log_tail(self) -> str:
        return self.process.tail() if self.process else ""


def _config(storage: Path, port: int, ca: TestCA, auth: dict[str, Any],
            redirect_to: str | None) -> dict[str, Any]:
    """config.yml (written as JSON, which YAML reads)."""
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            "secret": secrets.token_hex(8),
            "tls": {"certificate": str(ca.server_cert), "key": str(ca.server_key)},
        },
        "health": {"storagedriver": {"enabled": False}},
        "auth": auth,
    }
    if redirect_to is not None:
        config["middleware"] = {
            "storage": [{"name": "redirect", "options": {"baseurl": redirect_to}}]
        }
    return config


def _htpasswd_auth(workdir: Path, username: str, password: str) -> dict[str, Any]:
    import bcrypt  # the test extra's; imported here so that only these fixtures need it

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS, prefix=b"2a"))
    path = workdir / "htpasswd"
    path.write_text(f"{username}:{hashed.decode()}\n")
    return {"htpasswd": {"realm": "edge-test", "path": str(path)}}


def _token_auth(ca: TestCA, issuer: TokenIssuer) -> dict[str, Any]:
    return {"token": {"realm": issuer.realm, "service": SERVICE, "issuer": ISSUER,
                      "rootcertbundle": str(ca.cert)}}


@contextmanager
def start_reference(workdir: Path, *, token: bool = False, redirect_to: str | None = None,
                    storage: Path | None = None) -> Iterator[Parent]:
    """docker-registry serve on a free port: htpasswd auth, or token auth with a TokenIssuer
    (`token`); `redirect_to`: blob GETs answered 307 to that base URL (distribution's redirect
    storage middleware); `storage`: share another registry's storage root."""
    binary = require_tool(REGISTRY_TOOL)
    workdir.mkdir(parents=True, exist_ok=True)
    ca = make_ca(workdir / "certs")
    username, password = "sync", secrets.token_urlsafe(12)
    issuer = TokenIssuer(ca, username, password) if token else None
    auth = _token_auth(ca, issuer) if issuer else _htpasswd_auth(workdir, username, password)
    port = free_port()
    root = storage or workdir / "storage"
    config = workdir / "config.yml"
    config.write_text(json.dumps(_config(root, port, ca, auth, redirect_to), indent=2))
    process = Process.start("docker-registry", [binary, "serve", config], workdir / "log")
    cert_dir = workdir / "client-certs"
    cert_dir.mkdir(exist_ok=True)
    shutil.copy(ca.cert, cert_dir / "ca.crt")
    parent = Parent("127.0.0.1", port, username, password, cert_dir, root, config, process,
                    issuer)
    try:
        _wait_ready(parent, process)
        yield parent
    finally:
        process.stop()
        if issuer is not None:
            issuer.close()


def _wait_ready(parent: Parent, process: Process) -> None:
    context = parent.ssl_context()

    def answers() -> bool:
        try:
            return httpx.get(f"{parent.url}/v2/", verify=context, timeout=2).status_code == 401
        except httpx.HTTPError:
            return False

    try:
        eventually(answers, what="docker-registry to answer", timeout=30, watch=[process])
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{process.tail()}") from exc


@pytest.fixture(scope="module")
def reference_parent() -> Iterator[Parent]:
    """distribution 2.8 with htpasswd Basic auth, for one test module."""
    with tempfile.TemporaryDirectory(prefix="edge-parent-") as tmp, \
            start_reference(Path(tmp)) as parent:
        yield parent


@pytest.fixture(scope="module")
def token_parent() -> Iterator[Parent]:
    """distribution 2.8 with token auth and its TokenIssuer (`parent.issuer`)."""
    with tempfile.TemporaryDirectory(prefix="edge-token-parent-") as tmp, \
            start_reference(Path(tmp), token=True) as parent:
        yield parent
