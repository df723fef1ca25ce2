"""Where everything of one registry lives: the layout of a data directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

ENV_VAR = "EDGE_CONSOLE_DATA"


def default_data_dir() -> Path:
    """The data dir used when none is given: $EDGE_CONSOLE_DATA, else a per-user dir."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("edge-console", appauthor=False))


@dataclass(frozen=True)
class DataDir:
    """Paths inside one data directory. Creating the object touches nothing on disk."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def database(self) -> Path:
        return self.root / "registry.db"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def ca_cert(self) -> Path:
        return self.certs / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.certs / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.certs / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.certs / "server.key"

    @property
    def secrets(self) -> Path:
        """0600 file holding the registry password in clear, so that `info` can print it."""
        return self.root / "secrets.json"

    @property
    def users(self) -> Path:
        """0600 file holding the password hashes that requests are checked against."""
        return self.root / "users.json"

    @property
    def server_state(self) -> Path:
        """Written by a running server (pid, listen address); removed on graceful stop."""
        return self.root / "server.json"

    def ensure(self) -> None:
        """Create the directory tree (0700 root) if missing."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in (self.blobs, self.uploads, self.certs):
            sub.mkdir(exist_ok=True, mode=0o700)

    def is_enabled(self) -> bool:
        """True once `enable` has written config, certificates and credentials."""
        return all(p.exists() for p in (self.config, self.ca_cert, self.server_cert, self.secrets))
