"""`edge-console` with no subcommand: the console, with the registry served in-process, and
with `--web` the console in a browser too (console/web/)."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from console.cli_support import data_dir_of

if TYPE_CHECKING:
    from registry_core.identity import Authenticates
    from registry_core.registry import Registry


def add_tui_options(parser: argparse.ArgumentParser) -> None:
    """The options of the console itself (no subcommand). Light: no heavy import here, the
    whole command line builds this parser."""
    from console.commands.web import add_web_options

    parser.add_argument("--web", action="store_true",
                        help="also serve the console to browsers (HTTPS, login), as "
                             "`edge-console web` does")
    add_web_options(parser, "--web-listen")


def run_tui(args: argparse.Namespace) -> int:
    """Enable the data dir on first run; attach to a live server of the data dir, or serve
    it here; run the console (and with --web its web face); on exit stop the web face, then
    the server, gracefully."""
    from console.app import EdgeConsoleApp
    from console.commands.web import ensure_enabled
    from registry_core.access.credentials import Authenticator
    from registry_core.registry import Registry
    from registry_core.server import read_server_state
    from registry_core.service import RegistryService

    datadir = data_dir_of(args)
    ensure_enabled(datadir)
    # The server's log would write over the screen: keep only errors, and not on the TTY.
    logging.basicConfig(level=logging.CRITICAL)
    state = read_server_state(datadir)
    if state is not None:
        registry = Registry(datadir)
        authenticator = Authenticator(datadir)
        authenticator.attach_store(registry.store)
        try:
            with web_face(args, registry, authenticator):
                EdgeConsoleApp(registry=registry, attached=state).run()
        finally:
            authenticator.close()
            registry.close()
        return 0
    service = RegistryService(datadir)
    try:
        with web_face(args, service.registry, service.app.authenticator):
            EdgeConsoleApp(service).run()
    finally:
        service.close()
    return 0


@contextlib.contextmanager
def web_face(args: argparse.Namespace, registry: Registry,
             authenticator: Authenticates) -> Iterator[None]:
    """With --web: the web face while the console runs (its URL in web.json, which the
    Device screen shows); stopped, with every browser's console, when the console quits."""
    if not getattr(args, "web", False):
        yield
        return
    from console.commands.web import web_settings
    from console.web.server import WebConsole
    from console.web.state import clear_web_state, write_web_state

    web = WebConsole(registry, authenticator, args.web_listen, settings=web_settings(args))
    url = web.start()
    write_web_state(registry.datadir, url)
    print(f"Serving the console to browsers on {url}", flush=True)
    try:
        yield
    finally:
        web.stop()
        clear_web_state(registry.datadir)
