"""`edge-console web`: the console in a browser, over HTTPS, behind a login."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

from console.cli_support import data_dir_of, emit
from registry_core.datadir import DataDir
from registry_core.errors import ConfigError

if TYPE_CHECKING:
    from console.web.server import WebSettings


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = subparsers.add_parser(
        "web", parents=[common],
        help="serve the console to browsers (HTTPS, login with the registry's credentials)",
    )
    add_web_options(parser, "--listen")
    parser.set_defaults(handler=run)


def add_web_options(parser: argparse.ArgumentParser, listen_flag: str) -> None:
    parser.add_argument(listen_flag, dest="web_listen", metavar="HOST:PORT",
                        help="address of the web console (default: the registry's host, "
                             "port 31002)")
    parser.add_argument("--max-sessions", type=int, default=4, metavar="N",
                        help="browser sessions with a live console at once (default 4)")


def web_settings(args: argparse.Namespace) -> WebSettings:
    from console.web.server import WebSettings

    if args.max_sessions < 1:
        raise ConfigError("--max-sessions must be at least 1")
    return WebSettings(max_sessions=args.max_sessions)


def ensure_enabled(datadir: DataDir) -> None:
    from registry_core.enablement import enable  # certificates: only when enabling

    if not datadir.is_enabled():
        print(f"First run: enabling the container registry in {datadir.root} ...", flush=True)
        enable(datadir, progress=lambda line: print(f"  {line}", flush=True))


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; every console process ends with it."""
    from console.web.server import WebConsole
    from console.web.state import clear_web_state, write_web_state
    from registry_core.access.credentials import Authenticator
    from registry_core.registry import Registry
    from registry_core.server import read_server_state

    settings = web_settings(args)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    datadir = data_dir_of(args)
    ensure_enabled(datadir)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    registry = Registry(datadir)
    authenticator = Authenticator(datadir)
    authenticator.attach_store(registry.store)
    web = WebConsole(registry, authenticator, args.web_listen,
                     settings=settings)
    try:
        url = web.start()
        write_web_state(datadir, url)
        served = read_server_state(datadir)
        note = (f"attached to the registry served at {served.get('listen')}" if served
                else "no registry serves this data dir now: the consoles browse it")
        emit(args, f"Serving the console on {url} (data dir {datadir.root}; {note})",
             {"url": url, "listen": str(web.listen), "data_dir": str(datadir.root),
              "registry_served": served is not None})
        sys.stdout.flush()
        while not stop.wait(1.0):
            pass
    finally:
        web.stop()
        clear_web_state(datadir)
        authenticator.close()
        registry.close()
    if not getattr(args, "json", False):
        print("Web console stopped.", flush=True)
    return 0
