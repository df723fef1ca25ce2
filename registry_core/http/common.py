"""What the route groups share: the request counters, who is asking, and the hop to a worker
thread."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from starlette.requests import Request

from registry_core.identity import Identity

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Stats:
    """Counters the console shows; updated on the server's loop only."""

    requests: int = 0
    errors: int = 0
    bytes_in: int = 0
    started_at: float = field(default_factory=time.time)


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking core operation in a worker thread."""
    call = functools.partial(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(None, call)


def who(request: Request) -> Identity:
    """The identity the app authenticated for this request (app.py puts it in the scope)."""
    identity = request.scope["identity"]
    assert isinstance(identity, Identity)
    return identity
