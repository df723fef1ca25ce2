"""`edge-console info`: the registry's endpoint and credentials, like the appliance's
Get-HcsKubernetesContainerRegistryInfo."""

from __future__ import annotations

import argparse
from typing import Any

from console.cli_support import data_dir_of, emit
from registry_core.device import DeviceInfo, device_info


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "info",
        parents=[common],
        help="show the registry endpoint, IP address and credentials",
        description="Show the registry endpoint, IP address, username and password.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    info = device_info(data_dir_of(args))
    emit(args, info_text(info), info_payload(info))
    return 0


def info_payload(info: DeviceInfo) -> dict[str, Any]:
    return {
        "endpoint": info.endpoint,
        "ip_address": info.node_ip,
        "username": info.username,
        "password": info.password,
        "ca_certificate": str(info.ca_certificate),
    }


def info_text(info: DeviceInfo) -> str:
    """A table shaped like the cmdlet's, then the CA path."""
    headers = ["Endpoint", "IPAddress", "Username", "Password"]
    values = [info.endpoint, info.node_ip, info.username, info.password]
    widths = [max(len(h), len(v)) for h, v in zip(headers, values, strict=True)]
    rows = [headers, ["-" * len(h) for h in headers], values]
    lines = [
        " ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines) + f"\n\nCA certificate: {info.ca_certificate}"
