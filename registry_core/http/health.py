"""`GET /healthz` (and HEAD), without credentials: 200 `{"status": "ok"}` when the registry can
work, 503 `{"status": "unavailable", "reason": ...}` otherwise (registry_core/health.py says
what is checked: about a millisecond, in a worker thread).

Probes that arrive while a check runs share it, so a stalled disk holds one worker thread,
not one per probe; a check that takes longer than CHECK_TIMEOUT_SECONDS is an answer too.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.types import Receive, Scope, Send

from registry_core.health import problem
from registry_core.http.common import in_thread
from registry_core.registry import Registry

log = logging.getLogger("edge_registry.health")

CHECK_TIMEOUT_SECONDS = 5.0


class HealthEndpoint:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._running: asyncio.Future[str | None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _send(send, 405, {"status": "unavailable", "reason": "use GET or HEAD"},
                        method == "HEAD", [(b"allow", b"GET, HEAD")])
            return
        reason = await self.check()
        if reason is None:
            await _send(send, 200, {"status": "ok"}, method == "HEAD")
        else:
            await _send(send, 503, {"status": "unavailable", "reason": reason}, method == "HEAD")

    async def check(self) -> str | None:
        """Why the registry cannot work, or None."""
        if self._running is None:
            running = asyncio.ensure_future(in_thread(problem, self.registry))
            running.add_done_callback(self._finished)
            self._running = running
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), CHECK_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"the health check did not finish within {CHECK_TIMEOUT_SECONDS:g} s"
        except Exception as exc:  # logged by _finished
            return f"the health check failed: {exc}"

    def _finished(self, done: asyncio.Future[str | None]) -> None:
        self._running = None
        if not done.cancelled() and done.exception() is not None:
            log.error("the health check failed", exc_info=done.exception())


async def _send(
    send: Send, status: int, body: dict[str, str], head: bool,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else data})
