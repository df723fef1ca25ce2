"""The add-on: validation, defaults and idempotence, over a real data dir."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from registry_core.access.credentials import read_credentials
from registry_core.config import load_config
from registry_core.datadir import DataDir
from registry_core.enablement import default_device_name, detect_node_ip, enable
from registry_core.errors import ConfigError


def snapshot(datadir: DataDir) -> dict[str, bytes]:
    files = [datadir.config, datadir.secrets, datadir.users, *datadir.certs.iterdir()]
    return {p.name: p.read_bytes() for p in files}


def test_defaults(tmp_path: Path) -> None:
    datadir = DataDir(tmp_path / "d")
    config = enable(datadir)
    assert datadir.is_enabled()
    assert config.device_name == default_device_name()
    assert config.dns_domain == "local"
    assert config.port == 31001
    assert config.node_ip == detect_node_ip()
    ipaddress.ip_address(config.node_ip)
    assert load_config(datadir.config) == config


def test_idempotent(tmp_path: Path) -> None:
    datadir = DataDir(tmp_path / "d")
    enable(datadir, device_name="box", node_ip="192.168.1.5")
    before = snapshot(datadir)
    enable(datadir)
    enable(datadir, device_name="box")
    assert snapshot(datadir) == before


def test_enable_repairs_the_value_it_is_given_and_refuses_the_others(tmp_path: Path) -> None:
    """A config.toml with a value out of range (hand-edited): `enable --port` repairs the
    port; a bad value it is not given is refused in one line, the file left as it was."""
    datadir = DataDir(tmp_path / "d")
    enable(datadir, device_name="box", node_ip="192.168.1.5")
    text = datadir.config.read_text()
    datadir.config.write_text(text.replace("port = 31001", "port = -5"))
    with pytest.raises(ConfigError, match="port"):
        load_config(datadir.config)
    with pytest.raises(ConfigError, match="port"):
        enable(datadir)
    assert enable(datadir, port=31002).port == 31002
    assert load_config(datadir.config).port == 31002

    broken = datadir.config.read_text().replace("upload_max_age_seconds = 86400",
                                                "upload_max_age_seconds = 0")
    assert broken != datadir.config.read_text()
    datadir.config.write_text(broken)
    with pytest.raises(ConfigError, match=r"gc\.upload_max_age_seconds"):
        enable(datadir, port=31003)
    assert datadir.config.read_text() == broken


def test_change_keeps_ca_and_password(tmp_path: Path) -> None:
    datadir = DataDir(tmp_path / "d")
    enable(datadir, device_name="box", node_ip="192.168.1.5")
    before = snapshot(datadir)
    config = enable(datadir, node_ip="192.168.1.6", port=5000)
    after = snapshot(datadir)
    assert config.device_name == "box" and config.port == 5000
    for name in ("ca.crt", "ca.key", "secrets.json", "users.json"):
        assert after[name] == before[name]
    assert after["server.crt"] != before["server.crt"]
    assert read_credentials(datadir)[0] == "ase-ecr-user"


def test_progress_lines(tmp_path: Path) -> None:
    lines: list[str] = []
    enable(DataDir(tmp_path), node_ip="10.0.0.1", progress=lines.append)
    assert any("certificate authority" in line for line in lines)
    assert any("credentials" in line for line in lines)
    lines.clear()
    enable(DataDir(tmp_path), progress=lines.append)
    assert lines == []


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("device_name", "bad_name", "invalid device name"),
        ("device_name", "-box", "invalid device name"),
        ("device_name", "a" * 64, "invalid device name"),
        ("dns_domain", "con toso.com", "invalid DNS domain"),
        ("dns_domain", "a..b", "invalid DNS domain"),
        ("node_ip", "10.0.0.300", "invalid node IP"),
        ("node_ip", "0.0.0.0", "invalid node IP"),
        ("port", 0, "invalid port"),
        ("port", 70000, "invalid port"),
    ],
)
def test_validation(tmp_path: Path, option: str, value: object, message: str) -> None:
    datadir = DataDir(tmp_path / "d")
    with pytest.raises(ConfigError, match=message) as caught:
        enable(datadir, **{option: value})  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    assert not datadir.config.exists()


def test_names_are_normalised(tmp_path: Path) -> None:
    config = enable(
        DataDir(tmp_path), device_name="Box1", dns_domain="Contoso.COM.", node_ip="fe80::1"
    )
    assert config.endpoint_host == "ecr.box1.contoso.com"
    assert config.node_ip == "fe80::1"


def test_default_device_name_is_a_label() -> None:
    name = default_device_name()
    assert 1 <= len(name) <= 63 and name == name.lower()
    assert name.replace("-", "").isalnum()
