"""`edge-console serve`: the registry alone, TLS on, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from console.cli_support import data_dir_of
from registry_core.service import RegistryService


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "serve", parents=[common], help="serve the registry (TLS, Basic auth) until stopped"
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to bind (default: config)")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    service = RegistryService(data_dir_of(args), access_logging=not args.quiet)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    address = service.start(args.listen)
    print(
        f"Serving the registry on https://{address} (data dir {service.datadir.root})", flush=True
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        service.close()
        print("Registry stopped.", flush=True)
    return 0
