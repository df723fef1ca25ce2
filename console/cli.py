"""The `edge-console` command: argument parsing and dispatch to console/commands/*.

Every subcommand takes --data-dir and --json, prints human text by default and one JSON
object with --json, and exits non-zero with a one-line error on failure: 2 for a command line
it cannot parse, 1 for everything else (an internal error too). Tracebacks only with
EDGE_CONSOLE_DEBUG=1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from console.cli_support import fail
from console.commands.tui import add_tui_options
from registry_core.errors import EdgeError

# Each module in console/commands registers its subcommand(s) with `register(subparsers)`.
COMMAND_MODULES = (
    "enable", "info", "serve", "gc", "usage", "cert", "hosts_entry", "images", "delete", "kube",
    "sync", "stage", "token", "audit", "web", "transfer",
)

Handler = Callable[[argparse.Namespace], int]

DEBUG_VARIABLE = "EDGE_CONSOLE_DEBUG"
EPILOG = f"Set {DEBUG_VARIABLE}=1 to print the traceback of an internal error or a logged one."


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def one_line(text: str) -> str:
    return " ".join(text.split())


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (not the usage block) and exit status 2.
    Subparsers are made of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


class OneLineHandler(logging.Handler):
    """What a command logs (warnings and errors: no command configures logging) as one line
    on stderr, `edge-console: warning: ...`; the traceback of a logged exception only when
    debugging. Installed as logging's last resort, so that `serve`, `web` and the TUI, which
    configure their own logging, keep theirs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.render(record) + "\n")
            sys.stderr.flush()
        except Exception:  # a logging failure must not end the command
            self.handleError(record)

    def render(self, record: logging.LogRecord) -> str:
        line = f"edge-console: {record.levelname.lower()}: {one_line(record.getMessage())}"
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return line
        if debugging():
            return line + "\n" + "".join(traceback.format_exception(error)).rstrip()
        return f"{line} ({type(error).__name__}: {one_line(str(error))})"


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
    parser = Parser(
        prog="edge-console",
        description="Edge Console: the edge registry and its terminal console.",
        epilog=EPILOG,
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


def chosen_parser(parser: argparse.ArgumentParser,
                  args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the innermost subcommand `args` went through."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return chosen_parser(chosen, args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    skip_httpx_cli()
    logging.lastResort = OneLineHandler()
    words = sys.argv[1:] if argv is None else list(argv)
    try:
        return dispatch(words)
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
    except Exception as exc:  # a bug of ours: one line, the traceback only when debugging
        if debugging():
            traceback.print_exc()
        return fail(f"internal error: {type(exc).__name__}: {one_line(str(exc))}")


def dispatch(words: list[str]) -> int:
    parser = build_parser(command_module(words))
    args, extra = parser.parse_known_args(words)
    if extra:  # named by the (sub)command they were given to, not by the top parser
        chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        from console.commands.tui import run_tui

        return run_tui(args)
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
