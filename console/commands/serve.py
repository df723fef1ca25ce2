"""`edge-console serve`: the registry alone, TLS on, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from console.cli_support import data_dir_of
from registry_core.config import load_config
from registry_core.kube.settings import resolve
from registry_core.service import RegistryService


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "serve", parents=[common], help="serve the registry (TLS, Basic auth) until stopped"
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to bind (default: config)")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    parser.add_argument("--kubeconfig", type=Path, metavar="F",
                        help="the cluster whose pull secrets to keep (default: config.toml's, "
                             "$KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context to use")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    datadir = data_dir_of(args)
    kube = None
    if args.kubeconfig is not None or args.context is not None:
        kube = resolve(load_config(datadir.config).kubernetes, args.kubeconfig, args.context)
    service = RegistryService(datadir, access_logging=not args.quiet, kube=kube)
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
