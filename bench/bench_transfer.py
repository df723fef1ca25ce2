"""Offline transfer: `edge-console import` / `export` vs. skopeo into and out of the running
registry, same machine, same run.

    .venv/bin/python bench/bench_transfer.py [--quick] [--repeat N] [--no-doc] [--keep]

One registry: bench/targets.py's `edge_registry` (`edge-console serve`, TLS, Basic auth) on a
fresh data dir. Two data sets: one big image (one uncompressed random layer, 256 MiB) and N
small distinct images (~5 KiB each) in one OCI layout (bench/images.py). Every repetition
builds fresh layouts (a new nonce, so new digests) for each tool, so that nothing is ever
"already there"; the order of the two tools alternates between repetitions, and the disk is
flushed (`sync`) before every measurement.

* import: `edge-console import LAYOUT --repository R --json` (a process of its own, writing
  into the data dir the server serves) against `skopeo copy oci:LAYOUT:TAG docker://...` into
  the same server (one skopeo per image, 4 at a time for the small set);
* export: `edge-console export R:TAG DIR --json` (an OCI layout directory) against `skopeo
  copy docker://... oci:DIR:TAG` (big), and `edge-console export R DIR` against `skopeo sync
  --src docker --dest dir --all` of the repository (small).

Rates are bytes moved (manifests, configs and layers) over the wall time of the command,
process start included; medians over the repetitions; written into this script's section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import images
import targets
from bench_registry import fmt, loadavg, log, machine_lines, missing_tools, sh, short, skopeo
from doc import write_section
from targets import Target

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / "bench" / ".cache"
DEFAULT_WORKDIR = REPO_ROOT / "bench" / "work" / "bench_transfer"
SECTION = "bench_transfer"
MB = 1_000_000
MiB = 1 << 20
TIMEOUT_S = 1200.0
PARALLEL = 4


@dataclass(frozen=True)
class Params:
    repeat: int
    big_mib: int
    small_count: int


FULL = Params(repeat=3, big_mib=256, small_count=200)
QUICK = Params(repeat=1, big_mib=64, small_count=40)


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    unit: str


MEASURES = (
    Measure("import-big", "import one big image", "MB/s"),
    Measure("export-big", "export one big image", "MB/s"),
    Measure("import-small", "import small images", "images/s"),
    Measure("export-small", "export small images", "images/s"),
)


@dataclass
class Results:
    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, tool: str, key: str, value: float) -> None:
        self.values.setdefault((tool, key), []).append(value)

    def median(self, tool: str, key: str) -> float | None:
        found = self.values.get((tool, key))
        return statistics.median(found) if found else None


def edge(data_dir: Path, *args: str) -> tuple[float, dict[str, object]]:
    """edge-console on the data dir with --json: (wall seconds, its JSON)."""
    cmd = [*targets.edge_command(), "--data-dir", str(data_dir), *args, "--json"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
                         cwd=REPO_ROOT)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"edge-console {args[0]} failed: {short(res.stderr or res.stdout)}")
    doc = json.loads(res.stdout)
    assert isinstance(doc, dict)
    return elapsed, doc


def auth(t: Target, prefix: str) -> list[str]:
    return [f"--{prefix}cert-dir", str(t.cert_dir), f"--{prefix}creds", t.creds]


def fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


@dataclass
class Bench:
    t: Target
    p: Params
    workdir: Path
    payload: Path
    res: Results = field(default_factory=Results)
    big_bytes: int = 0

    @property
    def data(self) -> Path:
        assert self.t.data_dir is not None
        return self.t.data_dir

    def step(self, tool: str, key: str, fn: Callable[[], float]) -> None:
        log(f"{tool} {key} ...")
        os.sync()
        try:
            value = fn()
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
            log(f"{tool} {key} FAILED: {exc}")
            self.res.failures.append(f"{tool} {key}: {short(str(exc), 200)}")
            return
        log(f"{tool} {key} = {value:,.2f}")
        self.res.add(tool, key, value)

    def big_layout(self, name: str) -> images.BuiltImage:
        built = images.build_big_image(fresh(self.workdir / name), self.payload)
        self.big_bytes = built.total_bytes
        return built

    def small_layout(self, name: str) -> list[images.BuiltImage]:
        return images.build_small_images(fresh(self.workdir / name), self.p.small_count,
                                         nonce=f"{name}-{os.getpid()}-{time.time_ns()}")

    # ---- the measurements ---------------------------------------------------------------

    def edge_import_big(self, rep: int) -> float:
        built = self.big_layout(f"src-big-edge-{rep}")
        elapsed, _ = edge(self.data, "import", str(built.layout), "--repository",
                          f"bench/big-edge-{rep}")
        shutil.rmtree(built.layout)
        return built.total_bytes / MB / elapsed

    def skopeo_import_big(self, rep: int) -> float:
        built = self.big_layout(f"src-big-skopeo-{rep}")
        elapsed = skopeo(["copy", "--quiet", *auth(self.t, "dest-"), f"oci:{built.layout}:big",
                          f"docker://{self.t.url_host_port}/bench/big-skopeo-{rep}:big"],
                         TIMEOUT_S)
        shutil.rmtree(built.layout)
        return built.total_bytes / MB / elapsed

    def edge_export_big(self, rep: int) -> float:
        out = fresh(self.workdir / "out-edge")
        elapsed, doc = edge(self.data, "export", f"bench/big-edge-{rep}:big", str(out))
        shutil.rmtree(out)
        return float(str(doc["bytes"])) / MB / elapsed

    def skopeo_export_big(self, rep: int) -> float:
        out = fresh(self.workdir / "out-skopeo")
        elapsed = skopeo(["copy", "--quiet", *auth(self.t, "src-"),
                          f"docker://{self.t.url_host_port}/bench/big-edge-{rep}:big",
                          f"oci:{out}:big"], TIMEOUT_S)
        shutil.rmtree(out)
        return self.big_bytes / MB / elapsed

    def edge_import_small(self, rep: int) -> float:
        built = self.small_layout(f"src-small-edge-{rep}")
        elapsed, doc = edge(self.data, "import", str(built[0].layout), "--repository",
                            f"bench/small-edge-{rep}")
        images_done = doc["images"]
        assert isinstance(images_done, list) and len(images_done) == len(built)
        shutil.rmtree(built[0].layout)
        return len(built) / elapsed

    def skopeo_import_small(self, rep: int) -> float:
        built = self.small_layout(f"src-small-skopeo-{rep}")

        def push(image: images.BuiltImage) -> float:
            return skopeo(["copy", "--quiet", *auth(self.t, "dest-"),
                           f"oci:{image.layout}:{image.tag}",
                           f"docker://{self.t.url_host_port}/bench/small-skopeo-{rep}:"
                           f"{image.tag}"], TIMEOUT_S)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(push, built))
        elapsed = time.perf_counter() - t0
        shutil.rmtree(built[0].layout)
        return len(built) / elapsed

    def edge_export_small(self, rep: int) -> float:
        out = fresh(self.workdir / "out-edge")
        elapsed, doc = edge(self.data, "export", f"bench/small-edge-{rep}", str(out))
        shutil.rmtree(out)
        exported = doc["images"]
        assert isinstance(exported, list)
        return len(exported) / elapsed

    def skopeo_export_small(self, rep: int) -> float:
        out = fresh(self.workdir / "out-skopeo")
        out.mkdir()
        elapsed = skopeo(["sync", "--src", "docker", "--dest", "dir", "--all",
                          *auth(self.t, "src-"),
                          f"{self.t.url_host_port}/bench/small-edge-{rep}", str(out)],
                         TIMEOUT_S)
        shutil.rmtree(out)
        return self.p.small_count / elapsed

    def run(self) -> None:
        for rep in range(self.p.repeat):
            log(f"repetition {rep + 1} of {self.p.repeat}")
            for key in ("import-big", "export-big", "import-small", "export-small"):
                name = key.replace("-", "_")
                tools = ["edge", "skopeo"] if rep % 2 == 0 else ["skopeo", "edge"]
                for tool in tools:
                    method: Callable[[int], float] = getattr(self, f"{tool}_{name}")
                    self.step(tool, key, functools.partial(method, rep))


def section(b: Bench, started: str, load_before: str, load_after: str) -> str:
    lines = [
        f"<!-- {SECTION}:start -->",
        "## Offline transfer: `edge-console import` / `export` vs. skopeo "
        "(`bench/bench_transfer.py`)",
        "",
        f"Run {started}; load average before {load_before}, after {load_after} "
        "(1, 5, 15 min; the machine is shared).",
        *machine_lines(),
        f"- `{sh(['skopeo', '--version'])}`; edge-console tree at "
        f"{sh(['git', '-C', str(REPO_ROOT), 'rev-parse', '--short', 'HEAD'])}",
        f"- Data: one image of {b.big_bytes / MB:,.0f} MB (one uncompressed random layer) and "
        f"{b.p.small_count} small images (~5 KiB each) in one OCI layout; fresh digests for "
        f"each tool and repetition; {b.p.repeat} repetitions, order alternating, medians.",
        "- import: `edge-console import LAYOUT` (its own process, into the served data dir) "
        "vs. `skopeo copy oci:LAYOUT:TAG docker://...` into the same running registry "
        f"(small set: one skopeo per image, {PARALLEL} at a time); export: `edge-console "
        "export` to an OCI layout directory vs. `skopeo copy docker://... oci:DIR:TAG` (big) "
        "and `skopeo sync --src docker --dest dir --all` (small). Wall time of each "
        "command, process start included.",
        "- What is compared is the way in and out, not two copies of one path: the import "
        "writes into the data dir directly (blobs hashed as they stream, one transaction "
        "per 64 images), skopeo goes through the registry's HTTPS API (TLS, Basic auth, "
        "requests per blob); the export reads the blob files, skopeo pulls over HTTPS.",
        "",
        "| measure | unit | edge-console | skopeo | edge / skopeo | edge runs | skopeo runs |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for m in MEASURES:
        e, s = b.res.median("edge", m.key), b.res.median("skopeo", m.key)
        ratio = f"{e / s:.2f}x" if e is not None and s else "n/a"
        runs = [", ".join(f"{v:,.1f}" for v in b.res.values.get((t, m.key), []))
                for t in ("edge", "skopeo")]
        lines.append(f"| {m.label} | {m.unit} | {fmt(e)} | {fmt(s)} | {ratio} | {runs[0]} "
                     f"| {runs[1]} |")
    lines += [f"- FAILED: {f}" for f in b.res.failures]
    lines.append(f"<!-- {SECTION}:end -->")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="one small repetition, printed")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    if missing_tools(("skopeo",), "skopeo"):
        return 2
    p = QUICK if args.quick else FULL
    if args.repeat:
        p = Params(args.repeat, p.big_mib, p.small_count)
    started, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), loadavg()
    workdir = fresh(args.workdir.resolve())
    workdir.mkdir(parents=True)
    payload = images.ensure_random_file(CACHE_DIR / f"random-{p.big_mib}MiB.bin",
                                        p.big_mib * MiB)
    try:
        with targets.edge_registry(workdir / "edge") as t:
            log(f"edge registry on {t.url_host_port}")
            bench = Bench(t, p, workdir, payload)
            bench.run()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    text = section(bench, started, load_before, loadavg())
    print(text)
    if not (args.quick or args.no_doc):
        write_section(SECTION, text)
    return 1 if bench.res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
