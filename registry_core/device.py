"""What a client machine needs to reach the registry: endpoint, hosts line, set-up text.

Pure text helpers, shared by the CLI and the console's Device screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from registry_core.access.credentials import read_credentials
from registry_core.certs import CA_DER_NAME, CA_PEM_NAME
from registry_core.config import load_config
from registry_core.datadir import DataDir
from registry_core.errors import NotEnabledError

ClientOS = Literal["windows", "linux", "macos"]
CLIENT_OSES: tuple[ClientOS, ...] = ("windows", "linux", "macos")

WINDOWS_HOSTS = r"C:\Windows\System32\Drivers\etc\hosts"
UNIX_HOSTS = "/etc/hosts"


@dataclass
class DeviceInfo:
    device_name: str
    dns_domain: str
    node_ip: str
    endpoint: str
    endpoint_host: str
    port: int
    listen: str
    username: str
    password: str
    ca_certificate: Path


@dataclass
class Snippet:
    title: str
    text: str


def device_info(datadir: DataDir) -> DeviceInfo:
    """The endpoint and credentials of an enabled data dir."""
    if not datadir.is_enabled():
        raise NotEnabledError(
            f"the registry is not enabled in {datadir.root}: run `edge-console enable` first"
        )
    config = load_config(datadir.config)
    username, password = read_credentials(datadir)
    return DeviceInfo(
        device_name=config.device_name,
        dns_domain=config.dns_domain,
        node_ip=config.node_ip,
        endpoint=config.endpoint,
        endpoint_host=config.endpoint_host,
        port=config.port,
        listen=config.listen_address,
        username=username,
        password=password,
        ca_certificate=datadir.ca_cert,
    )


def hosts_file_path(client_os: ClientOS) -> str:
    return WINDOWS_HOSTS if client_os == "windows" else UNIX_HOSTS


def hosts_line(info: DeviceInfo) -> str:
    """`<node ip>  <endpoint host>`: two spaces, as in the appliance's guidance."""
    return f"{info.node_ip}  {info.endpoint_host}"


def hosts_add_command(info: DeviceInfo, client_os: ClientOS) -> str:
    """A one-line command that appends the hosts line (run it as administrator / with sudo)."""
    line = hosts_line(info)
    if client_os == "windows":
        return f'Add-Content -Path "{WINDOWS_HOSTS}" -Value "{line}"'
    return f"echo '{line}' | sudo tee -a {UNIX_HOSTS}"


def client_setup_snippets(info: DeviceInfo, client_os: ClientOS) -> list[Snippet]:
    """Every way to trust the CA and log in, those for `client_os` first."""
    by_os: dict[ClientOS, list[Snippet]] = {
        "linux": [_docker(info), _podman(info), _containerd(info)],
        "windows": [_windows_root()],
        "macos": [_macos_keychain()],
    }
    ordered = by_os[client_os] + [_login(info)]
    for other in CLIENT_OSES:
        if other != client_os:
            ordered += by_os[other]
    return ordered


def _docker(info: DeviceInfo) -> Snippet:
    directory = f"/etc/docker/certs.d/{info.endpoint}"
    return Snippet(
        "Docker (Linux): trust the registry CA",
        f"sudo mkdir -p {directory} && sudo cp {CA_PEM_NAME} {directory}/ca.crt",
    )


def _podman(info: DeviceInfo) -> Snippet:
    directory = f"/etc/containers/certs.d/{info.endpoint}"
    return Snippet(
        "Podman / skopeo / buildah (Linux): trust the registry CA",
        f"sudo mkdir -p {directory} && sudo cp {CA_PEM_NAME} {directory}/ca.crt",
    )


def _containerd(info: DeviceInfo) -> Snippet:
    directory = f"/etc/containerd/certs.d/{info.endpoint}"
    hosts_toml = (
        f'server = "https://{info.endpoint}"\n'
        f"\n"
        f'[host."https://{info.endpoint}"]\n'
        f'  capabilities = ["pull", "resolve", "push"]\n'
        f'  ca = "{directory}/ca.crt"\n'
    )
    return Snippet(
        "containerd (Kubernetes nodes): trust the registry CA",
        f"sudo mkdir -p {directory} && sudo cp {CA_PEM_NAME} {directory}/ca.crt\n"
        f"# then write {directory}/hosts.toml:\n{hosts_toml}",
    )


def _windows_root() -> Snippet:
    return Snippet(
        "Windows: trust the registry CA (PowerShell as administrator), then restart Docker",
        f"Import-Certificate -FilePath .\\{CA_DER_NAME} "
        f"-CertStoreLocation Cert:\\LocalMachine\\Root\n"
        "# then restart Docker Desktop",
    )


def _macos_keychain() -> Snippet:
    return Snippet(
        "macOS: trust the registry CA, then restart Docker",
        "sudo security add-trusted-cert -d -r trustRoot "
        f"-k /Library/Keychains/System.keychain {CA_PEM_NAME}\n"
        "# then restart Docker Desktop",
    )


def _login(info: DeviceInfo) -> Snippet:
    return Snippet(
        "Log in (type the password shown by `edge-console info`, then end input)",
        f"docker login {info.endpoint} -u {info.username} --password-stdin",
    )
