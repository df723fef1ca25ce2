"""What every `edge-console` subcommand shares: its data dir, and printing text or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from registry_core.datadir import DataDir, default_data_dir


def data_dir_of(args: argparse.Namespace) -> DataDir:
    root = getattr(args, "data_dir", None) or default_data_dir()
    return DataDir(Path(root).expanduser().resolve())


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
