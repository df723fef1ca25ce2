"""A TCP proxy that can cut every connection through it: a dropped uplink, for real.

Bytes pass unchanged (TLS included), so the client and the server are the real ones; only
the wire between them breaks when the test says so: `cut()` drops every open connection now;
with `cut_after` set, each connection is dropped once that many bytes have come from upstream
on it (a link that keeps failing mid-transfer); `cut_upstream_after` does the same for the bytes
going up (an upload cut mid-body). `bytes_to_upstream` counts what went up: an upload shows
there, a blob mounted by the parent does not.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

from support import free_port


class CuttingProxy:
    def __init__(self, upstream: tuple[str, int], cut_after: int | None = None,
                 cut_upstream_after: int | None = None) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.connections = 0
        """Connections accepted so far."""
        self.cut_after = cut_after
        """Drop each connection after this many bytes from upstream (None: never); read when
        a connection opens, so a test may change it between connections."""
        self.bytes_from_upstream = 0
        """Bytes passed from upstream to clients so far, over every connection."""
        self.cut_upstream_after = cut_upstream_after
        """Drop each connection after this many bytes towards upstream (None: never); read
        when a connection opens, like `cut_after`."""
        self.bytes_to_upstream = 0
        """Bytes passed from clients to upstream so far, over every connection."""
        self.upstream_cuts = 0
        """Connections dropped by `cut_upstream_after`."""
        self.upstream_cuts_left: int | None = None
        """How many more connections `cut_upstream_after` may drop (None: no bound); past
        that, the link holds (a single drop)."""
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.down = threading.Event()
        """While set, new connections are accepted and closed at once (the link is down)."""
        threading.Thread(target=self._accept, name="cutting-proxy", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Drop every open connection (both sides see a reset); returns how many."""
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _close(sock)
        return len(sockets) // 2

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        self.cut()

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down.is_set():
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, server))
                self.connections += 1
            limit, up_limit = self.cut_after, self.cut_upstream_after
            threading.Thread(
                target=self._pump, args=(client, server, False, up_limit), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, True, limit), daemon=True
            ).start()

    def _pump(self, source: socket.socket, target: socket.socket, downstream: bool = False,
              limit: int | None = None) -> None:
        """Copy until either side closes, or (if `limit`) until `limit` bytes have passed."""
        passed = 0
        try:
            while data := source.recv(65536):
                if (limit is not None and passed + len(data) >= limit
                        and not self._may_cut(downstream)):
                    limit = None
                if limit is not None:
                    data = data[: limit - passed]
                target.sendall(data)
                passed += len(data)
                with self._lock:
                    if downstream:
                        self.bytes_from_upstream += len(data)
                    else:
                        self.bytes_to_upstream += len(data)
                if limit is not None and passed >= limit:
                    break
        except OSError:
            pass
        finally:
            _close(source)
            _close(target)

    def _may_cut(self, downstream: bool) -> bool:
        """Whether a connection at its limit is dropped (counted against the budget)."""
        if downstream:
            return True
        with self._lock:
            if self.upstream_cuts_left is not None:
                if self.upstream_cuts_left <= 0:
                    return False
                self.upstream_cuts_left -= 1
            self.upstream_cuts += 1
            return True


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
