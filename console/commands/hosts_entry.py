"""`edge-console hosts-entry`: the hosts-file line a client needs, and how to add it."""

from __future__ import annotations

import argparse
import sys
from typing import Any, cast

from console.cli_support import data_dir_of, emit
from registry_core.device import (
    CLIENT_OSES,
    ClientOS,
    device_info,
    hosts_add_command,
    hosts_file_path,
    hosts_line,
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "hosts-entry",
        parents=[common],
        help="print the hosts-file line clients need",
        description="Print the hosts-file line that maps the registry endpoint to the node IP.",
    )
    parser.add_argument(
        "--os",
        choices=CLIENT_OSES,
        default=current_os(),
        help="the client's operating system (default: this one)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    client_os = cast(ClientOS, args.os)
    info = device_info(data_dir_of(args))
    line = hosts_line(info)
    path = hosts_file_path(client_os)
    command = hosts_add_command(info, client_os)
    how = "in PowerShell as administrator" if client_os == "windows" else "in a shell"
    text = f"{line}\n\nAdd this line to {path}, for example {how}:\n  {command}"
    emit(args, text, {"line": line, "file": path, "command": command, "os": client_os})
    return 0


def current_os() -> ClientOS:
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux"
