"""The process behind one browser session: the console attached to the data dir (never a
server of its own), run by the web face with Textual's web driver.

`python -m console.web.app_process DATA_DIR`. It asks the kernel for SIGTERM when the web
face's server thread goes (PR_SET_PDEATHSIG), so that no console outlives the web face.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

PARENT_ENV = "EDGE_CONSOLE_WEB_PARENT"
"""The web face's pid: if it is already gone when this process starts, stop at once."""
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGTERM when the parent goes; exit now if it is gone already (it may have gone
    before the request was made)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    expected = os.environ.get(PARENT_ENV)
    if expected is not None and str(os.getppid()) != expected:
        sys.exit(0)


def main(argv: list[str]) -> int:
    die_with_parent()
    if len(argv) != 1:
        print("usage: python -m console.web.app_process DATA_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.CRITICAL)
    from console.app import EdgeConsoleApp
    from registry_core.datadir import DataDir
    from registry_core.registry import Registry
    from registry_core.server import read_server_state

    datadir = DataDir(Path(argv[0]))
    registry = Registry(datadir)
    try:
        EdgeConsoleApp(registry=registry, attached=read_server_state(datadir)).run()
    finally:
        registry.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
