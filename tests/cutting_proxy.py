"""A TCP proxy that can cut every connection through it: a dropped uplink, for real.

Bytes pass unchanged (TLS included), so the client and the server are the real ones; only
the wire between them breaks when the test says so: `cut()` drops every open connection now;
with `cut_after` set, each connection is dropped once that many bytes have come from upstream
on it (a link that keeps failing mid-transfer); `cut_upstream_after` does the same for the bytes
going up (an upload cut mid-body). `bytes_to_upstream` counts what went up: an upload shows
there, a blob mounted by the parent does not.

With `http=True` the link carries plain HTTP/1.1 (a parent served without TLS) and the proxy
reads the requests going up, one after the other: each is recorded in `requests` (arrival
time, method, path), and `answer_next(method, status, headers)` has the next request of that
method answered by the proxy itself (its body read, then the connection closed), as a parent
that is busy answers: the case a real parent does not produce on demand (429 or 503 with
Retry-After in the middle of an upload). `cut_upstream_after` does not apply then.

A blackholed uplink (a radio link gone, a NAT entry timed out) drops nothing: connections stay
open and no byte comes. `flowing` cleared is that, from now on; `stall_after` is that once so
many bytes have come down in all (mid-blob, say); `resume()` has the link flow again.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http import HTTPStatus
from types import TracebackType

from support import free_port


class CuttingProxy:
    def __init__(self, upstream: tuple[str, int], cut_after: int | None = None,
                 cut_upstream_after: int | None = None, http: bool = False) -> None:
        self.upstream = upstream
        self.http = http
        self.requests: list[tuple[float, str, str]] = []
        """(time.monotonic() at arrival, method, path) of each request gone through or
        answered here, in order (`http` only)."""
        self._answers: list[tuple[str, bytes]] = []
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
        self.refused = 0
        """Connections accepted and closed at once while `down` (tries to reach the parent)."""
        self.flowing = threading.Event()
        """While clear, bytes from upstream wait here (a stalled uplink: the client's read
        blocks); set again, they go on."""
        self.flowing.set()
        self.stall_after: int | None = None
        """When `bytes_from_upstream` reaches this, `flowing` is cleared: the link goes
        silent, every connection left open (None: never); `resume()` ends the silence."""
        threading.Thread(target=self._accept, name="cutting-proxy", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer_next(self, method: str, status: int, headers: dict[str, str]) -> None:
        """Answer the next `method` request here with `status` (an OCI error body) and
        `headers`, instead of passing it up (`http` only); queued, one per request."""
        assert self.http, "answer_next needs a plain HTTP link (http=True)"
        with self._lock:
            self._answers.append((method, _answer(status, headers)))

    def cut(self) -> int:
        """Drop every open connection (both sides see a reset); returns how many."""
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _close(sock)
        return len(sockets) // 2

    def resume(self) -> None:
        """The link flows again, with no stall ahead (`stall_after` None)."""
        with self._lock:
            self.stall_after = None
            self.flowing.set()

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        self.cut()
        self.flowing.set()  # bytes held by a stall: their connections are gone, they end

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
                with self._lock:  # counted before the close: the client may look at once
                    self.refused += 1
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
            up = (self._pump_requests, (client, server)) if self.http else (
                self._pump, (client, server, False, up_limit))
            threading.Thread(target=up[0], args=up[1], daemon=True).start()
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
                if downstream:
                    self._down(target, data)
                else:
                    self._up(target, data)
                passed += len(data)
                if limit is not None and passed >= limit:
                    break
        except OSError:
            pass
        finally:
            _close(source)
            _close(target)

    def _pump_requests(self, client: socket.socket, server: socket.socket) -> None:
        """Client to upstream, request by request: HTTP/1.1 without pipelining, bodies sized
        by Content-Length (as the sync client sends them)."""
        pending, body_left = b"", 0
        answer: bytes | None = None
        try:
            while data := client.recv(65536):
                pending += data
                while pending:
                    if body_left:
                        part, pending = pending[:body_left], pending[body_left:]
                        body_left -= len(part)
                        if answer is None:
                            self._up(server, part)
                        elif not body_left:
                            client.sendall(answer)
                            return
                        continue
                    end = pending.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, pending = pending[:end + 4], pending[end + 4:]
                    method, path, body_left = _request_head(head)
                    answer = self._take_answer(method)
                    with self._lock:
                        self.requests.append((time.monotonic(), method, path))
                    if answer is None:
                        self._up(server, head)
                    elif not body_left:
                        client.sendall(answer)
                        return
        except OSError:
            pass
        finally:
            _close(client)
            _close(server)

    def _down(self, client: socket.socket, data: bytes) -> None:
        """Pass `data` to the client while the link flows; past `stall_after` bytes in all,
        the link goes silent and the rest waits (the connection stays open)."""
        while data:
            self.flowing.wait()
            if self._closed:
                raise OSError("the proxy is closed")
            with self._lock:
                room = len(data) if self.stall_after is None else (
                    self.stall_after - self.bytes_from_upstream)
                if room <= 0:
                    self.flowing.clear()
                    continue
                part, data = data[:room], data[room:]
                self.bytes_from_upstream += len(part)
            client.sendall(part)

    def _up(self, server: socket.socket, data: bytes) -> None:
        server.sendall(data)
        with self._lock:
            self.bytes_to_upstream += len(data)

    def _take_answer(self, method: str) -> bytes | None:
        with self._lock:
            for index, (wanted, answer) in enumerate(self._answers):
                if wanted == method:
                    del self._answers[index]
                    return answer
        return None

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


def _request_head(head: bytes) -> tuple[str, str, int]:
    """(method, path, Content-Length) of a request's head."""
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return method, path.split("?", 1)[0], length


def _answer(status: int, headers: dict[str, str]) -> bytes:
    """A whole HTTP/1.1 answer with an OCI error body, closing the connection."""
    reason = HTTPStatus(status).phrase
    code = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}.get(status, "UNKNOWN")
    body = json.dumps({"errors": [{"code": code, "message": reason.lower()}]}).encode()
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body)),
              "Docker-Distribution-Api-Version": "registry/2.0", "Connection": "close",
              **headers}
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"HTTP/1.1 {status} {reason}\r\n{head}\r\n".encode("latin-1") + body
