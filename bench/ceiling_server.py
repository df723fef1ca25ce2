"""The ceiling for blob reads: the registry's own server stack serving one file, no registry.

    python bench/ceiling_server.py --data-dir DIR --file BLOB --static-dir DIR --port N

Runs `registry_core.server.RegistryServer` (granian, the same settings, certificate and
TLS as `edge-console serve` on that data dir) with a minimal ASGI app and granian's own
static file route, so that bench_blob_get.py can compare the registry's `GET` with what
the same stack delivers for the same file:

* `/pathsend`: the app answers with only the ASGI `http.response.pathsend` message;
* `/static/<name>`: granian's static route (`static_path_mount`), no Python at all;
* `/chunked/<bytes>`: the app reads the file in chunks of that size in the default
  executor and sends each as a body message (the path a server without pathsend takes).

Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import signal
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry_core.config import load_config
from registry_core.datadir import DataDir
from registry_core.server import ListenAddress, RegistryServer


class FileApp:
    """ASGI app serving one file; `registry.config` is what RegistryServer reads its limits from."""

    def __init__(self, path: Path, datadir: DataDir) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.registry = SimpleNamespace(config=load_config(datadir.config))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [
            (b"content-length", str(self.size).encode()),
            (b"content-type", b"application/octet-stream"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        route = scope["path"]
        if route.startswith("/chunked/"):
            await self._chunked(send, int(route.rsplit("/", 1)[1]))
        else:
            await send({"type": "http.response.pathsend", "path": str(self.path)})

    async def _chunked(self, send: Any, chunk: int) -> None:
        loop = asyncio.get_running_loop()
        with open(self.path, "rb") as f:
            while data := await loop.run_in_executor(None, f.read, chunk):
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--file", type=Path, required=True)
    ap.add_argument("--static-dir", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    datadir = DataDir(args.data_dir.resolve())
    # The registry's server, with granian's static route added to its settings.
    import granian.server.embed as embed

    embed.Server = functools.partial(  # type: ignore[misc]
        embed.Server,
        static_path_route=["/static"],
        static_path_mount=[args.static_dir.resolve()],
    )
    app = FileApp(args.file.resolve(), datadir)
    server = RegistryServer(
        app,  # type: ignore[arg-type]
        ListenAddress("127.0.0.1", args.port),
        datadir.server_cert,
        datadir.server_key,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print("ready", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
