"""Client set-up text: hosts line, commands and snippets per OS."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_core.datadir import DataDir
from registry_core.device import (
    CLIENT_OSES,
    ClientOS,
    DeviceInfo,
    client_setup_snippets,
    device_info,
    hosts_add_command,
    hosts_file_path,
    hosts_line,
)
from registry_core.enablement import enable
from registry_core.errors import NotEnabledError


@pytest.fixture
def info(tmp_path: Path) -> DeviceInfo:
    datadir = DataDir(tmp_path / "data")
    enable(datadir, device_name="dbe", dns_domain="contoso.com", node_ip="10.128.44.4")
    return device_info(datadir)


def test_device_info(info: DeviceInfo, tmp_path: Path) -> None:
    assert info.endpoint_host == "ecr.dbe.contoso.com"
    assert info.endpoint == "ecr.dbe.contoso.com:31001"
    assert info.port == 31001
    assert info.username == "ase-ecr-user"
    assert len(info.password) >= 15
    assert info.ca_certificate == tmp_path / "data" / "certs" / "ca.crt"
    assert info.ca_certificate.exists()


def test_device_info_not_enabled(tmp_path: Path) -> None:
    with pytest.raises(NotEnabledError, match="edge-console enable"):
        device_info(DataDir(tmp_path))


def test_hosts(info: DeviceInfo) -> None:
    assert hosts_line(info) == "10.128.44.4  ecr.dbe.contoso.com"
    assert hosts_file_path("windows") == r"C:\Windows\System32\Drivers\etc\hosts"
    assert hosts_file_path("linux") == hosts_file_path("macos") == "/etc/hosts"
    assert hosts_add_command(info, "windows") == (
        r'Add-Content -Path "C:\Windows\System32\Drivers\etc\hosts" '
        '-Value "10.128.44.4  ecr.dbe.contoso.com"'
    )
    assert hosts_add_command(info, "linux") == (
        "echo '10.128.44.4  ecr.dbe.contoso.com' | sudo tee -a /etc/hosts"
    )
    assert hosts_add_command(info, "macos") == hosts_add_command(info, "linux")


def test_linux_snippets(info: DeviceInfo) -> None:
    snippets = client_setup_snippets(info, "linux")
    text = "\n".join(s.text for s in snippets[:4])
    host = "ecr.dbe.contoso.com:31001"
    assert (
        f"sudo mkdir -p /etc/docker/certs.d/{host} && "
        f"sudo cp edge-registry-ca.crt /etc/docker/certs.d/{host}/ca.crt"
    ) in text
    assert f"/etc/containers/certs.d/{host}/ca.crt" in text
    assert f'server = "https://{host}"' in text
    assert f'[host."https://{host}"]' in text
    assert f'ca = "/etc/containerd/certs.d/{host}/ca.crt"' in text
    assert f"docker login {host} -u ase-ecr-user --password-stdin" in text
    assert info.password not in "\n".join(s.text + s.title for s in snippets)


@pytest.mark.parametrize("client_os", CLIENT_OSES)
def test_relevant_snippets_first(info: DeviceInfo, client_os: ClientOS) -> None:
    snippets = client_setup_snippets(info, client_os)
    first = snippets[0].text
    expected = {
        "windows": r"Import-Certificate -FilePath .\edge-registry-ca.cer "
        r"-CertStoreLocation Cert:\LocalMachine\Root",
        "macos": "sudo security add-trusted-cert -d -r trustRoot "
        "-k /Library/Keychains/System.keychain edge-registry-ca.crt",
        "linux": "/etc/docker/certs.d/",
    }[client_os]
    assert expected in first
    assert len({s.title for s in snippets}) == len(snippets) == 6
