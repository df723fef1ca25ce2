"""What one slow or abusive client may hold: a body that stops arriving, and upload slots.

The server (granian, hyper underneath) bounds the request head (header read timeout, buffer
size); it knows nothing of request bodies, so their idle timeout and the cap on concurrent
uploads are here, on the app's loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.types import Message, Receive, Scope

from registry_core.errors import BodyTimeout, TooManyRequests

RETRY_AFTER_SECONDS = 2
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def body_idle_receive(scope: Scope, receive: Receive, timeout: float) -> Receive:
    """`receive` that raises BodyTimeout when no body message arrives within `timeout`
    seconds. Only while the body lasts: after its last part, receive() (waiting for a
    disconnect during a long download) is left alone."""
    if scope.get("method") not in _BODY_METHODS or timeout <= 0:
        return receive
    body_done = False

    async def guarded() -> Message:
        nonlocal body_done
        if body_done:
            return await receive()
        try:
            async with asyncio.timeout(timeout):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout(
                f"no request body bytes for {timeout:g} s; an upload keeps the bytes "
                "acknowledged before this request",
                detail={"idle_timeout_seconds": timeout},
            ) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            body_done = True
        return message

    return guarded


class UploadSlots:
    """A cap on upload requests carrying a body at once. Used on the server's loop only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    @contextmanager
    def claim(self) -> Iterator[None]:
        if self.in_use >= self.limit:
            raise TooManyRequests(
                f"more than {self.limit} uploads at once; retry in {RETRY_AFTER_SECONDS} s",
                detail={"limit": self.limit},
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1


class HasUploadSlots(Protocol):
    upload_slots: UploadSlots


H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


def upload_slot(handler: H) -> H:
    """Decorates an upload handler: a request with a body holds one of the app's
    `upload_slots` while it runs, or is answered 429 when none is free."""

    @functools.wraps(handler)
    async def guarded(app: HasUploadSlots, request: Request, **params: str) -> Any:
        if not _has_body(request):
            return await handler(app, request, **params)
        with app.upload_slots.claim():
            return await handler(app, request, **params)

    return guarded  # type: ignore[return-value]


def _has_body(request: Request) -> bool:
    headers = request.headers
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (length is not None and length.strip() != "0")
