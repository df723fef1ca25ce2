"""Garbage collection: edge-console's online GC vs. the reference registry's offline one.

    .venv/bin/python bench/bench_gc.py [--repos 100] [--per-repo 100] [--layers 4] [--no-doc]

The same content goes into both registries: R repositories x M Docker schema-2 images, each
with a unique config and L unique small layers (defaults: 10,000 manifests and 50,000 blobs
across 100 repositories). Loading is not measured: the reference's filesystem layout and
edge-console's data dir are written directly (the same files and rows their push paths write).
Then, with both registries serving, half of the manifests are deleted by digest through the
HTTP API (`DELETE /v2/<name>/manifests/<digest>`), and:

* reference: stop the registry, `docker-registry garbage-collect` (offline: distribution's GC
  is not safe against pushes), restart it: the downtime is stop + GC + restart;
* edge: `edge-console gc --grace-period 0 --json` while the registry keeps serving, with pull
  traffic (GET manifest + GET blob) running throughout; no downtime;
* usage: `usage_report` in-process and `edge-console usage --json` (process start included).

Figures go to this script's section of docs/benchmarks.md (between the bench_gc markers).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import targets  # noqa: E402
from doc import cpu_model, write_section  # noqa: E402
from targets import Target  # noqa: E402

DOC_PATH = REPO_ROOT / "docs" / "benchmarks.md"
DEFAULT_WORKDIR = REPO_ROOT / "bench" / "work" / "bench_gc"
SECTION = "bench_gc"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    repo: str
    tag: str
    digest: str  # hex
    body: bytes
    blobs: list[tuple[str, bytes]]  # (hex, data), config first


@dataclass
class Content:
    images: list[Image]
    layer_bytes: int

    @property
    def blob_count(self) -> int:
        return sum(len(i.blobs) for i in self.images)


def make_content(repos: int, per_repo: int, layers: int, layer_size: int, seed: int) -> Content:
    rng = random.Random(seed)
    images: list[Image] = []
    for r in range(repos):
        repo = f"bench/repo{r:03d}"
        for m in range(per_repo):
            config = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "repo": repo,
                    "n": m,
                    "rootfs": {"type": "layers", "diff_ids": []},
                }
            ).encode()
            blobs = [(sha(config), config)]
            for _ in range(layers):
                data = rng.randbytes(layer_size)
                blobs.append((sha(data), data))
            doc = {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {
                    "mediaType": DOCKER_CONFIG,
                    "size": len(config),
                    "digest": f"sha256:{blobs[0][0]}",
                },
                "layers": [
                    {"mediaType": DOCKER_LAYER, "size": len(d), "digest": f"sha256:{h}"}
                    for h, d in blobs[1:]
                ],
            }
            body = json.dumps(doc, indent=3).encode()
            images.append(Image(repo, f"v{m}", sha(body), body, blobs))
    return Content(images, layers * layer_size)


# ---- loading --------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def load_reference(storage: Path, content: Content) -> None:
    """distribution's filesystem layout: blobs/…/data and the repositories' link files."""
    v2 = storage / "docker" / "registry" / "v2"
    for img in content.images:
        repo = v2 / "repositories" / img.repo
        for h, data in [*img.blobs, (img.digest, img.body)]:
            _write(v2 / "blobs" / "sha256" / h[:2] / h / "data", data)
        for h, _ in img.blobs:
            _write(repo / "_layers" / "sha256" / h / "link", f"sha256:{h}".encode())
        link = f"sha256:{img.digest}".encode()
        _write(repo / "_manifests" / "revisions" / "sha256" / img.digest / "link", link)
        tag = repo / "_manifests" / "tags" / img.tag
        _write(tag / "current" / "link", link)
        _write(tag / "index" / "sha256" / img.digest / "link", link)


def load_edge(data_dir: Path, content: Content) -> None:
    """The files and rows Registry.finish_upload / put_manifest write, in one transaction."""
    t = time.time() - 7200
    blobs_root = data_dir / "blobs" / "sha256"
    conn = sqlite3.connect(data_dir / "registry.db", timeout=60, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("BEGIN IMMEDIATE")
    repo_ids: dict[str, int] = {}
    for img in content.images:
        if img.repo not in repo_ids:
            cur = conn.execute(
                "INSERT INTO repositories(name, created_at) VALUES (?, ?)", (img.repo, t)
            )
            repo_ids[img.repo] = int(cur.lastrowid or 0)
        rid = repo_ids[img.repo]
        for h, data in [*img.blobs, (img.digest, img.body)]:
            _write(blobs_root / h[:2] / h, data)
            conn.execute(
                "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)", (f"sha256:{h}", len(data), t, t)
            )
            conn.execute(
                "INSERT OR IGNORE INTO repository_blobs VALUES (?, ?, ?)", (rid, f"sha256:{h}", t)
            )
        cur = conn.execute(
            "INSERT INTO manifests(repository_id, digest, media_type, size, content_size, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                rid,
                f"sha256:{img.digest}",
                DOCKER_MANIFEST,
                len(img.body),
                sum(len(d) for _, d in img.blobs),
                t,
            ),
        )
        mid = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO manifest_blobs VALUES (?, ?, ?, ?, ?)",
            [
                (mid, f"sha256:{h}", "config" if i == 0 else "layer", len(d), i)
                for i, (h, d) in enumerate(img.blobs)
            ],
        )
        conn.execute("INSERT INTO tags VALUES (?, ?, ?, ?)", (rid, img.tag, mid, t))
    conn.execute("COMMIT")
    conn.close()


# ---- traffic --------------------------------------------------------------------------------


def client_for(target: Target) -> httpx.Client:
    return httpx.Client(
        base_url=target.base_url,
        verify=target.ssl_context(),
        auth=(target.username, target.password),
        timeout=60,
    )


def delete_half(target: Target, victims: list[Image], workers: int = 8) -> float:
    """DELETE by digest through the API; returns seconds."""
    local = threading.local()

    def one(img: Image) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = client_for(target)
        r = client.delete(f"/v2/{img.repo}/manifests/sha256:{img.digest}")
        if r.status_code != 202:
            raise RuntimeError(
                f"{target.name}: DELETE {img.repo}@{img.digest}: {r.status_code} {r.text[:200]}"
            )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, victims))
    return time.perf_counter() - t0


@dataclass
class Traffic:
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def pull_loop(target: Target, keep: list[Image], stop: threading.Event, out: Traffic) -> None:
    rng = random.Random(1)
    with client_for(target) as client:
        while not stop.is_set():
            img = rng.choice(keep)
            t0 = time.perf_counter()
            try:
                r = client.get(
                    f"/v2/{img.repo}/manifests/{img.tag}", headers={"accept": DOCKER_MANIFEST}
                )
                h, data = rng.choice(img.blobs)
                b = client.get(f"/v2/{img.repo}/blobs/sha256:{h}")
                if r.status_code != 200 or sha(r.content) != img.digest:
                    out.errors.append(f"manifest {img.repo}:{img.tag}: {r.status_code}")
                elif b.status_code != 200 or b.content != data:
                    out.errors.append(f"blob {img.repo}@{h}: {b.status_code}")
                else:
                    out.ok += 1
                    out.latencies.append(time.perf_counter() - t0)
            except httpx.HTTPError as exc:
                out.errors.append(repr(exc))


def verify_pulls(target: Target, keep: list[Image], sample: int = 200) -> int:
    rng = random.Random(2)
    checked = 0
    with client_for(target) as client:
        for img in rng.sample(keep, min(sample, len(keep))):
            r = client.get(
                f"/v2/{img.repo}/manifests/{img.tag}", headers={"accept": DOCKER_MANIFEST}
            )
            assert r.status_code == 200 and sha(r.content) == img.digest, (target.name, img.tag)
            for h, data in img.blobs:
                b = client.get(f"/v2/{img.repo}/blobs/sha256:{h}")
                assert b.status_code == 200 and b.content == data, (target.name, h)
            checked += 1
    return checked


def edge_cli(data_dir: Path, *args: str) -> tuple[float, dict[str, object]]:
    cmd = [*targets.edge_command(), "--data-dir", str(data_dir), *args, "--json"]
    t0 = time.perf_counter()
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=3600, check=False, cwd=REPO_ROOT
    )
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr[-2000:]}")
    data: dict[str, object] = json.loads(res.stdout)
    return elapsed, data


def dir_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


# ---- the two runs ---------------------------------------------------------------------------


def run_reference(
    workdir: Path, content: Content, victims: list[Image], keep: list[Image]
) -> dict[str, float]:
    ref_dir = workdir / "reference"
    if ref_dir.exists():
        subprocess.run(["rm", "-rf", str(ref_dir)], check=True)
    log("reference: writing the storage layout")
    load_reference(ref_dir / "storage", content)
    res: dict[str, float] = {}
    with targets.reference_registry(ref_dir) as target:
        log(f"reference: serving on {target.url_host_port}; deleting {len(victims)} manifests")
        res["delete_s"] = delete_half(target, victims)
        config = target.config_path
        before = dir_bytes(ref_dir / "storage")
        t_stop = time.perf_counter()
    res["stop_s"] = time.perf_counter() - t_stop
    assert config is not None
    log("reference: offline garbage-collect")
    gc_s, output = targets.reference_garbage_collect(config)
    res["gc_s"] = gc_s
    eligible = re.search(r"(\d+) blobs and (\d+) manifests eligible for deletion", output)
    res["blobs_deleted"] = float(eligible.group(1)) if eligible else float("nan")
    res["bytes_freed"] = float(before - dir_bytes(ref_dir / "storage"))
    t_start = time.perf_counter()
    with targets.reference_registry(ref_dir) as target:
        res["restart_s"] = time.perf_counter() - t_start
        res["verified"] = float(verify_pulls(target, keep))
    res["downtime_s"] = res["stop_s"] + res["gc_s"] + res["restart_s"]
    log(f"reference: {res}")
    return res


def run_edge(
    workdir: Path, content: Content, victims: list[Image], keep: list[Image], pullers: int
) -> dict[str, float]:
    edge_dir = workdir / "edge"
    res: dict[str, float] = {}
    with targets.edge_registry(edge_dir) as target:
        assert target.data_dir is not None
        data_dir = target.data_dir
        log("edge: loading the data dir")
        load_edge(data_dir, content)
        log(f"edge: serving on {target.url_host_port}; deleting {len(victims)} manifests")
        res["delete_s"] = delete_half(target, victims)

        sys.path.insert(0, str(REPO_ROOT))
        from registry_core.datadir import DataDir
        from registry_core.registry import Registry
        from registry_core.usage import usage_report

        registry = Registry(DataDir(data_dir))
        try:
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                report = usage_report(registry)
                times.append(time.perf_counter() - t0)
            res["usage_s"] = statistics.median(times)
            reclaimable = report.reclaimable_bytes
            used_before = report.used_bytes
        finally:
            registry.close()
        res["usage_cli_s"], _ = edge_cli(data_dir, "usage")

        # Baseline pull rate, then the same traffic during the GC run.
        base = Traffic()
        stop = threading.Event()
        threads = [
            threading.Thread(target=pull_loop, args=(target, keep, stop, base))
            for _ in range(pullers)
        ]
        for t in threads:
            t.start()
        time.sleep(5)
        stop.set()
        for t in threads:
            t.join()
        res["pulls_per_s_idle"] = base.ok / 5.0

        during = Traffic()
        stop = threading.Event()
        threads = [
            threading.Thread(target=pull_loop, args=(target, keep, stop, during))
            for _ in range(pullers)
        ]
        for t in threads:
            t.start()
        log("edge: online gc with pull traffic")
        wall, record = edge_cli(data_dir, "gc", "--grace-period", "0")
        stop.set()
        for t in threads:
            t.join()
        res["gc_wall_s"] = wall
        res["gc_s"] = float(record["duration_seconds"])  # type: ignore[arg-type]
        res["bytes_freed"] = float(record["bytes_freed"])  # type: ignore[arg-type]
        res["blobs_deleted"] = float(record["blobs_deleted"])  # type: ignore[arg-type]
        res["reclaimable_before"] = float(reclaimable)
        res["pulls_ok"] = float(during.ok)
        res["pull_errors"] = float(len(during.errors))
        res["pulls_per_s_gc"] = during.ok / wall
        if during.latencies:
            lat = sorted(during.latencies)
            res["pull_p50_ms"] = 1000 * lat[len(lat) // 2]
            res["pull_p99_ms"] = 1000 * lat[int(len(lat) * 0.99)]
        registry = Registry(DataDir(data_dir))
        try:
            after = usage_report(registry)
            res["used_drop"] = float(used_before - after.used_bytes)
        finally:
            registry.close()
        res["verified"] = float(verify_pulls(target, keep))
        if during.errors:
            log(f"edge: pull errors during gc: {during.errors[:5]}")
    log(f"edge: {res}")
    return res


# ---- report ---------------------------------------------------------------------------------


def sh(cmd: list[str]) -> str:
    try:
        return (
            subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            .stdout.strip()
            .splitlines()[0]
        )
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def render(
    args: argparse.Namespace, content: Content, ref: dict[str, float], edge: dict[str, float]
) -> str:
    manifests = len(content.images)
    ratio = ref["downtime_s"] / edge["gc_wall_s"] if edge["gc_wall_s"] else 0.0
    gc_ratio = ref["gc_s"] / edge["gc_wall_s"] if edge["gc_wall_s"] else 0.0
    ok = edge["gc_wall_s"] <= ref["gc_s"]
    cpu = cpu_model()
    commit = sh(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    lines = [
        f"<!-- {SECTION}:start -->",
        "## Garbage collection and usage (`bench/bench_gc.py`)",
        "",
        f"Run `.venv/bin/python bench/bench_gc.py {' '.join(sys.argv[1:])}`".rstrip()
        + f" on {sh(['date', '-u'])}.",
        "",
        f"- Machine: `{sh(['uname', '-srm'])}`, {cpu}, {os.cpu_count()} logical CPUs",
        f"- edge-console tree at {commit}; reference: "
        f"`{sh([targets.DOCKER_REGISTRY_BIN, '--version'])}`; Python "
        f"{platform.python_version()}",
        "",
        f"Content: {args.repos} repositories x {args.per_repo} images = {manifests:,} "
        f"manifests (Docker schema 2), {content.blob_count:,} blobs (a unique config and "
        f"{args.layers} unique {args.layer_size}-byte layers each); {len(content.images) // 2:,} "
        "manifests deleted by digest through the API before the GC. Both registries on "
        "127.0.0.1 with TLS and Basic auth. Edge GC: `edge-console gc --grace-period 0 --json` "
        f"as a separate process while the registry serves and {args.pullers} clients pull "
        "(GET manifest + GET blob, checked byte for byte) all the time. Reference GC: "
        "`docker-registry garbage-collect` with the registry stopped (it is not safe online).",
        "",
        "| measure | reference (offline) | edge (online) |",
        "| --- | --- | --- |",
        f"| GC time, s | {ref['gc_s']:.2f} | {edge['gc_wall_s']:.2f} (run record: "
        f"{edge['gc_s']:.2f}) |",
        f"| stop + restart around the GC, s | {ref['stop_s']:.2f} + {ref['restart_s']:.2f} | "
        "0 (keeps serving) |",
        f"| registry unavailable, s | {ref['downtime_s']:.2f} | 0 |",
        f"| blobs deleted | {ref['blobs_deleted']:,.0f} | {edge['blobs_deleted']:,.0f} |",
        f"| bytes freed | {ref['bytes_freed']:,.0f} (files, du) | {edge['bytes_freed']:,.0f} |",
        f"| pulls served during the GC | 0 | {edge['pulls_ok']:,.0f} "
        f"({edge['pulls_per_s_gc']:.0f}/s; idle {edge['pulls_per_s_idle']:.0f}/s; "
        f"{edge['pull_errors']:.0f} errors) |",
        f"| pull latency during GC, p50 / p99 ms | n/a | {edge.get('pull_p50_ms', 0):.1f} / "
        f"{edge.get('pull_p99_ms', 0):.1f} |",
        f"| 200 kept images verified after the GC | {ref['verified']:.0f} | "
        f"{edge['verified']:.0f} |",
        f"| 5,000 DELETEs through the API, s | {ref['delete_s']:.2f} | {edge['delete_s']:.2f} |",
        "",
        f"- Usage report (`usage_report`, in process, median of 3): **{edge['usage_s']:.3f} s**; "
        f"`edge-console usage --json` including process start: {edge['usage_cli_s']:.2f} s.",
        f"- Exactness: usage said {edge['reclaimable_before']:,.0f} bytes reclaimable; the GC "
        f"freed {edge['bytes_freed']:,.0f}; used bytes dropped by {edge['used_drop']:,.0f}.",
        f"- Edge online GC vs. the reference's offline GC alone: {gc_ratio:.2f}x as fast; vs. "
        f"its whole downtime (stop + GC + restart): {ratio:.2f}x. Target (no slower than the "
        f"offline run, while serving): **{'met' if ok else 'NOT met'}**.",
        "- The reference's bytes freed are measured on the storage directory (blob data files "
        "plus their link files); edge counts content bytes only (SQLite rows are not counted).",
        f"<!-- {SECTION}:end -->",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--repos", type=int, default=100)
    ap.add_argument("--per-repo", type=int, default=100)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--layer-size", type=int, default=512)
    ap.add_argument("--pullers", type=int, default=4)
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--no-doc", action="store_true", help="print, do not write the doc")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    content = make_content(args.repos, args.per_repo, args.layers, args.layer_size, seed=7)
    rng = random.Random(3)
    victims = rng.sample(content.images, len(content.images) // 2)
    victim_ids = {id(v) for v in victims}
    keep = [i for i in content.images if id(i) not in victim_ids]
    log(f"{len(content.images)} manifests, {content.blob_count} blobs, {len(victims)} to delete")
    ref = run_reference(args.workdir, content, victims, keep)
    edge = run_edge(args.workdir, content, victims, keep, args.pullers)
    section = render(args, content, ref, edge)
    print(section)
    if not args.no_doc:
        write_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
