"""Per-request cost inside the HTTP app (no network, no TLS): what Python spends on one
authenticated `GET /v2/` and one manifest `GET` (served from the in-memory cache after the
first), as a check on the hot path; each through the bare RegistryApp and through the app as
served (http/observability.py: counted for /metrics), and the wrapper alone around an app
that only answers. Medians of several rounds, the variants interleaved.

    .venv/bin/python bench/bench_app.py [--no-doc]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from doc import cpu_model, write_section  # noqa: E402

from registry_core.access.credentials import Authenticator, read_credentials  # noqa: E402
from registry_core.datadir import DataDir  # noqa: E402
from registry_core.enablement import enable  # noqa: E402
from registry_core.http.app import RegistryApp  # noqa: E402
from registry_core.http.observability import ObservedApp  # noqa: E402
from registry_core.identity import CONSOLE  # noqa: E402
from registry_core.manifests import OCI_CONFIG, OCI_MANIFEST  # noqa: E402
from registry_core.registry import Registry  # noqa: E402

SECTION = "bench_app"
CALLS = 20_000
ROUNDS = 5


def seed(registry: Registry) -> None:
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"x" * 1000
    c = registry.put_blob("bench/app", config, who=CONSOLE)
    layer_info = registry.put_blob("bench/app", layer, who=CONSOLE)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": str(c.digest), "size": len(config)},
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": str(layer_info.digest),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    registry.put_manifest("bench/app", "v1", body, OCI_MANIFEST, who=CONSOLE)


def scope(path: str, authorization: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "https",
        "http_version": "1.1",
        "headers": [
            (b"host", b"bench"),
            (b"authorization", authorization),
            (b"accept", OCI_MANIFEST.encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 443),
    }


class AnsweringApp:
    """An app that only answers 200 with a two-byte body: what the wrapper alone costs is the
    difference with it wrapped."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def per_call_us(app: Any, request: dict[str, Any]) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(request, receive, send)
    start = time.perf_counter()
    for _ in range(CALLS):
        await app(request, receive, send)
    return (time.perf_counter() - start) / CALLS * 1e6


async def interleaved(apps: dict[str, Any], request: dict[str, Any]) -> dict[str, float]:
    """Median per app, and the best round's (`<name> best`): on a shared machine the best is
    the steadier figure for a cost this small."""
    rounds: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(ROUNDS):
        for name, app in apps.items():
            rounds[name].append(await per_call_us(app, request))
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    return {**medians, **{f"{name} best": min(values) for name, values in rounds.items()}}


async def run() -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        datadir = DataDir(Path(tmp) / "data")
        enable(datadir, node_ip="127.0.0.1", port=31001)
        registry = Registry(datadir)
        seed(registry)
        app = RegistryApp(registry, Authenticator(datadir))
        served = ObservedApp(app)
        user, password = read_credentials(datadir)
        auth = b"Basic " + base64.b64encode(f"{user}:{password}".encode())
        results = {}
        for label, path in (("GET /v2/", "/v2/"), ("GET manifest", "/v2/bench/app/manifests/v1")):
            results[label] = await interleaved({"app": app, "served": served},
                                               scope(path, auth))
        answering = AnsweringApp(registry)
        wrapped = ObservedApp(answering)  # type: ignore[arg-type]  # only .registry is used
        results["answer only"] = await interleaved(
            {"app": answering, "served": wrapped}, scope("/v2/bench/app/manifests/v1", auth))
        registry.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run())
    rows = [
        f"| {label} | {r['app']:.1f} µs | {r['served']:.1f} µs | {r['served'] - r['app']:+.1f} µs "
        f"| {r['served best'] - r['app best']:+.1f} µs |"
        for label, r in results.items()
    ]
    section = "\n".join(
        [
            f"<!-- {SECTION}:start -->",
            "## Per-request cost inside the app (`bench/bench_app.py`)",
            "",
            f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {cpu_model()}; "
            f"median of {ROUNDS} rounds of {CALLS:,} calls straight into the ASGI app "
            "(authenticated; no network or TLS, which granian handles in Rust). `app`: the "
            "bare RegistryApp; `served`: wrapped as the server runs it, each request counted "
            "for /metrics (http/observability.py); `answer only`: an app that only answers, "
            "bare and wrapped (the wrapper's own cost).",
            "",
            "| request | app | served | added | added, best rounds |",
            "|---|---:|---:|---:|---:|",
            *rows,
            f"<!-- {SECTION}:end -->",
        ]
    )
    print(section)
    if not args.no_doc:
        write_section(SECTION, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
