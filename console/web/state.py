"""Where the web face of a data dir can be opened: web.json in the data dir, written by the
running web face and read by the Device screen of any console on the same data dir."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from registry_core.datadir import DataDir

STATE_NAME = "web.json"


def state_path(datadir: DataDir) -> Path:
    return datadir.root / STATE_NAME


def write_web_state(datadir: DataDir, url: str) -> None:
    state = {"pid": os.getpid(), "url": url, "started_at": time.time()}
    path = state_path(datadir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


def clear_web_state(datadir: DataDir) -> None:
    path = state_path(datadir)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(state, dict) and state.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def read_web_url(datadir: DataDir) -> str | None:
    """The URL of the web face serving this data dir now, or None (a stale file: None)."""
    try:
        state = json.loads(state_path(datadir).read_text(encoding="utf-8"))
        pid, url = int(state["pid"]), str(state["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return url
