"""The `edge-console` command: argument parsing and dispatch to console/commands/*.

Every subcommand takes --data-dir and --json, prints human text by default and one JSON
object with --json, and exits non-zero with a one-line error on failure.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from console.cli_support import fail
from console.commands.tui import add_tui_options
from registry_core.errors import EdgeError

# Each module in console/commands registers its subcommand(s) with `register(subparsers)`.
COMMAND_MODULES = (
    "enable", "info", "serve", "gc", "usage", "cert", "hosts_entry", "images", "delete", "kube",
    "sync", "stage", "token", "audit", "web", "transfer",
)

Handler = Callable[[argparse.Namespace], int]


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand accepts (given before or after the subcommand)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="data directory (default: $EDGE_CONSOLE_DATA, else a per-user dir)",
    )
    parent.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object"
    )
    return parent


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (`only`) just one subcommand's module: each module imports
    what its command needs, and a command should not pay for the others' imports."""
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="edge-console",
        description="Edge Console: the edge registry and its terminal console.",
        parents=[common],
    )
    add_tui_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if only is None else (only,):
        module = importlib.import_module(f"console.commands.{name}")
        module.register(subparsers, common)
    return parser


def command_module(argv: Sequence[str]) -> str | None:
    """The module of the subcommand `argv` names (the first word that is not an option or
    the value of --data-dir), or None (no subcommand, or not one we know)."""
    modules = {name.replace("_", "-"): name for name in COMMAND_MODULES}
    modules |= {"import": "transfer", "export": "transfer"}  # one module, two commands
    after_data_dir = False
    for word in argv:
        if after_data_dir:
            after_data_dir = False
        elif word == "--data-dir":
            after_data_dir = True
        elif not word.startswith("-"):
            return modules.get(word)
    return None


def skip_httpx_cli() -> None:
    """httpx imports its own command line (click, rich, pygments: a quarter of a second) when
    those are installed, as they are here; this process never runs it. A None in sys.modules
    makes that import fail, and httpx falls back to a stub `main`."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    skip_httpx_cli()
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_module(words))
    args = parser.parse_args(words)
    handler: Handler | None = getattr(args, "handler", None)
    try:
        if handler is None:
            from console.commands.tui import run_tui

            return run_tui(args)
        return handler(args)
    except EdgeError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted")
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours; silence the final flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        return fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))


if __name__ == "__main__":
    sys.exit(main())
