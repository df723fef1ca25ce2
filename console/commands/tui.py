"""`edge-console` with no subcommand: the console, with the registry served in-process."""

from __future__ import annotations

import argparse
import logging

from console.cli_support import data_dir_of
from registry_core.enablement import enable
from registry_core.registry import Registry
from registry_core.server import read_server_state
from registry_core.service import RegistryService


def run_tui(args: argparse.Namespace) -> int:
    """Enable the data dir on first run; attach to a live server of the data dir, or serve
    it here; run the console; on exit stop the server gracefully."""
    from console.app import EdgeConsoleApp

    datadir = data_dir_of(args)
    if not datadir.is_enabled():
        print(f"First run: enabling the container registry in {datadir.root} ...", flush=True)
        enable(datadir, progress=lambda line: print(f"  {line}", flush=True))
    # The server's log would write over the screen: keep only errors, and not on the TTY.
    logging.basicConfig(level=logging.CRITICAL)
    state = read_server_state(datadir)
    if state is not None:
        registry = Registry(datadir)
        try:
            EdgeConsoleApp(registry=registry, attached=state).run()
        finally:
            registry.close()
        return 0
    service = RegistryService(datadir)
    try:
        EdgeConsoleApp(service).run()
    finally:
        service.close()
    return 0
