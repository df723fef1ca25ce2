"""What every `edge-console` subcommand shares: its data dir, printing text or JSON, and long
work that ctrl-c can stop."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from registry_core.datadir import DataDir, default_data_dir
from registry_core.errors import ConfigError

if TYPE_CHECKING:
    from registry_core.registry import Registry

T = TypeVar("T")


def data_dir_of(args: argparse.Namespace) -> DataDir:
    """The data dir --data-dir names (else the default); an empty --data-dir is refused
    rather than taken for the current directory."""
    given = getattr(args, "data_dir", None)
    if given is not None and (str(given) == "" or (str(given) == "." and _empty_in_argv())):
        raise ConfigError("--data-dir is empty: name a data directory")
    root = given if given is not None else default_data_dir()
    return DataDir(Path(root).expanduser().resolve())


def _empty_in_argv() -> bool:
    """Whether this process's command line gave --data-dir an empty value: argparse's
    Path('') is Path('.'), which cannot tell it from an explicit `--data-dir .`."""
    words = sys.argv[1:]
    return "--data-dir=" in words or any(
        word == "--data-dir" and value == "" for word, value in itertools.pairwise(words))


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def emit(args: argparse.Namespace, text: str, payload: dict[str, Any]) -> None:
    """Print human text, or the JSON payload with --json."""
    if wants_json(args):
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))
    else:
        print(text)


def fail(message: str) -> int:
    print(f"edge-console: error: {message}", file=sys.stderr)
    return 1


def run_interruptibly(work: Callable[[], T], on_interrupt: Callable[[], None],
                      name: str) -> T:
    """`work()` in a thread, so that ctrl-c reaches us: it calls `on_interrupt` (ask the
    work to stop) and waits for the work to end. Returns its result, or raises its error."""
    result: list[T] = []
    error: list[BaseException] = []
    done = threading.Event()

    def body() -> None:
        try:
            result.append(work())
        except BaseException as exc:
            error.append(exc)
        finally:
            done.set()

    # Waited on an Event, not Thread.join: on Python 3.11 a ctrl-c inside join() can mark a
    # thread that is still running as stopped, and the next join() returns at once.
    threading.Thread(target=body, name=name, daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        on_interrupt()
        done.wait()
    if error:
        raise error[0]
    return result[0]


def open_registry(args: argparse.Namespace, create: bool = False) -> Registry:
    """The data dir's registry; `create`: make its store when the data dir is enabled but has
    never been served (commands that fill it, such as `sync run` and `stage`)."""
    from registry_core.registry import Registry  # the core: only for commands that open it

    datadir = data_dir_of(args)
    if not datadir.database.exists() and not (create and datadir.is_enabled()):
        raise ConfigError(f"no registry in {datadir.root} (registry.db is missing)")
    return Registry(datadir)
