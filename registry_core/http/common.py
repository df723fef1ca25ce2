"""What the route groups share: the request counters and the hop to a worker thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    """Counters the console shows; updated on the server's loop only."""

    requests: int = 0
    errors: int = 0
    bytes_in: int = 0
    started_at: float = field(default_factory=time.time)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking core operation in a worker thread."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
