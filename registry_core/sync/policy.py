"""What a connected registry in ReadOnly mode refuses: pushes to the repositories it syncs
(the parent owns them; a local push would be overwritten or diverge)."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import threading

from registry_core.config import Config, load_config
from registry_core.datadir import DataDir
from registry_core.errors import ConfigError


class WritePolicy:
    """Answers from config.toml's [sync], read again when the file changes (`sync configure`
    in another process takes effect without a restart)."""

    def __init__(self, datadir: DataDir, config: Config) -> None:
        self.datadir = datadir
        self._config = config
        self._stamp = self._file_stamp()
        self._lock = threading.Lock()

    def refusal(self, repository: str) -> str | None:
        """Why a push to `repository` is refused, or None."""
        sync = self._current().sync
        if not sync.enabled or sync.mode != "ReadOnly":
            return None
        if not any(fnmatch.fnmatchcase(repository, p) for p in sync.repositories):
            return None
        return (f"{repository} is synced from the parent registry and this connected "
                "registry is ReadOnly: push to the parent (or switch to ReadWrite with "
                "`edge-console sync configure --mode ReadWrite`)")

    def _current(self) -> Config:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            with self._lock:
                with contextlib.suppress(ConfigError):  # half edited: keep what we had
                    self._config = load_config(self.datadir.config)
                self._stamp = stamp
        return self._config

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.datadir.config)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size
