"""`edge-console enable`: the registry add-on (Set-HcsKubernetesContainerRegistry)."""

from __future__ import annotations

import argparse
from typing import Any

from console.cli_support import data_dir_of, emit, wants_json
from console.commands.info import info_payload, info_text
from registry_core.device import device_info
from registry_core.enablement import enable, rotate_password

STALE_PULL_SECRETS = (
    "Pull secrets in the cluster still hold the old password: they are stale until applied "
    "(`edge-console kube apply-secrets`, or automatically while `edge-console serve` runs)."
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "enable",
        parents=[common],
        help="create the registry's certificates, credentials and configuration",
        description="Enable the registry: CA and server certificate, credentials, config. "
        "Safe to run again: existing CA and password are kept (--rotate-password: a new "
        "password).",
    )
    parser.add_argument("--device-name", metavar="N", help="device name (endpoint ecr.N.D)")
    parser.add_argument("--dns-domain", metavar="D", help="DNS domain (default: local)")
    parser.add_argument("--node-ip", metavar="IP", help="IP address clients connect to")
    parser.add_argument("--port", metavar="P", type=int, help="registry port (default: 31001)")
    parser.add_argument("--rotate-password", action="store_true",
                        help="replace the admin password with a new one (pull secrets in the "
                        "cluster are stale until applied again)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    datadir = data_dir_of(args)
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if not wants_json(args):
            print(line, flush=True)

    enable(
        datadir,
        device_name=args.device_name,
        dns_domain=args.dns_domain,
        node_ip=args.node_ip,
        port=args.port,
        progress=progress,
    )
    payload: dict[str, Any] = {"status": "enabled"}
    stale = ""
    if args.rotate_password:
        rotate_password(datadir, progress=progress)
        payload.update(password_rotated=True, pull_secrets="stale")
        stale = f"\n\n{STALE_PULL_SECRETS}"
    info = device_info(datadir)
    head = "" if lines else "The registry was already enabled; nothing changed.\n"
    text = f"{head}\n{info_text(info)}{stale}\n\nOperation completed successfully."
    emit(args, text, {**info_payload(info), **payload})
    return 0
