"""Registry throughput: edge-console vs. the reference registry, same machine, same run.

    .venv/bin/python bench/bench_registry.py [--quick] [--only reference|edge] [--repeat N]

Both registries run on 127.0.0.1 with TLS and Basic auth (see bench/targets.py). For each
repetition, each target gets the same measurements, with the order of targets alternating
between repetitions:

* skopeo push of a one-layer image (uncompressed random layer, 256 MiB), MB/s
* skopeo pull of it to a fresh `dir:`, MB/s
* skopeo push of N small distinct images (one `skopeo copy` each, P at a time), images/s
* raw monolithic blob PUT and blob GET with curl (HTTP/1.1, 256 MiB), MB/s
* small authenticated requests with wrk: `GET /v2/` and `GET /v2/<name>/manifests/<tag>`, req/s

Figures are medians over the repetitions; the edge/reference ratio is compared with the
targets of the performance issue. Results are printed and written into this script's section
of docs/benchmarks.md (between the bench_registry markers; other sections are left alone).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import images
import targets
from doc import cpu_model, write_section
from targets import Target

REPO_ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = REPO_ROOT / "docs" / "benchmarks.md"
CACHE_DIR = REPO_ROOT / "bench" / ".cache"
DEFAULT_WORKDIR = REPO_ROOT / "bench" / "work" / "bench_registry"
SECTION = "bench_registry"
MB = 1_000_000
MiB = 1 << 20

SKOPEO_TIMEOUT_S = 600.0
SMALL_COPY_TIMEOUT_S = 120.0
CURL_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Params:
    repeat: int
    big_mib: int
    small_count: int
    small_parallel: int
    wrk_seconds: int
    wrk_threads: int
    wrk_connections: int


FULL = Params(
    repeat=3,
    big_mib=256,
    small_count=200,
    small_parallel=4,
    wrk_seconds=10,
    wrk_threads=2,
    wrk_connections=32,
)
QUICK = Params(
    repeat=1,
    big_mib=64,
    small_count=50,
    small_parallel=4,
    wrk_seconds=5,
    wrk_threads=2,
    wrk_connections=32,
)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    target_ratio: float | None


METRICS: tuple[Metric, ...] = (
    Metric("skopeo_push_big", "skopeo push, one big layer", "MB/s", 1.0),
    Metric("skopeo_pull_big", "skopeo pull, one big layer", "MB/s", 1.0),
    Metric("skopeo_push_small", "skopeo push, small images", "images/s", 2.0),
    Metric("raw_put", "raw blob PUT (monolithic, curl)", "MB/s", 1.8),
    Metric("raw_get", "raw blob GET (curl)", "MB/s", 1.2),
    Metric("wrk_v2", "authenticated GET /v2/ (wrk)", "req/s", 20.0),
    Metric("wrk_get_manifest", "authenticated GET manifest (wrk)", "req/s", 20.0),
)


@dataclass
class Results:
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""

    def add(self, target: str, key: str, value: float) -> None:
        self.values.setdefault(target, {}).setdefault(key, []).append(value)

    def fail(self, target: str, key: str, message: str) -> None:
        self.errors.setdefault(target, {}).setdefault(key, []).append(message)

    def median(self, target: str, key: str) -> float | None:
        vals = self.values.get(target, {}).get(key)
        return statistics.median(vals) if vals else None


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# measurements


def skopeo(args: list[str], timeout: float) -> float:
    """Run skopeo (policy checks off, quiet) and return its wall time in seconds."""
    cmd = ["skopeo", "--insecure-policy", *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"skopeo {args[0]} failed: {short(res.stderr or res.stdout)}")
    return elapsed


def push_args(t: Target, src: str, dest_ref: str) -> list[str]:
    return [
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-cert-dir",
        str(t.cert_dir),
        "--dest-creds",
        t.creds,
        src,
        f"docker://{t.url_host_port}/{dest_ref}",
    ]


def measure_push_big(t: Target, img: images.BuiltImage, repo: str) -> float:
    elapsed = skopeo(push_args(t, f"oci:{img.layout}:{img.tag}", f"{repo}:1"), SKOPEO_TIMEOUT_S)
    return img.total_bytes / elapsed / MB


def measure_pull_big(t: Target, img: images.BuiltImage, repo: str, dest: Path) -> float:
    if dest.exists():
        shutil.rmtree(dest)
    args = [
        "copy",
        "--quiet",
        "--src-cert-dir",
        str(t.cert_dir),
        "--src-creds",
        t.creds,
        f"docker://{t.url_host_port}/{repo}:1",
        f"dir:{dest}",
    ]
    try:
        elapsed = skopeo(args, SKOPEO_TIMEOUT_S)
        got = sum(f.stat().st_size for f in dest.iterdir() if f.name != "version")
        if got < img.total_bytes * 0.99:
            raise RuntimeError(f"pull wrote {got} bytes, expected about {img.total_bytes}")
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return img.total_bytes / elapsed / MB


def measure_push_small(
    t: Target, built: list[images.BuiltImage], repo: str, parallel: int
) -> float:
    def one(img: images.BuiltImage) -> None:
        skopeo(
            push_args(t, f"oci:{img.layout}:{img.tag}", f"{repo}:{img.tag}"), SMALL_COPY_TIMEOUT_S
        )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for fut in [pool.submit(one, img) for img in built]:
            fut.result()  # re-raises the first failure
    elapsed = time.perf_counter() - t0
    return len(built) / elapsed


def curl(args: list[str]) -> list[str]:
    cmd = ["curl", "-sS", "--http1.1", "--max-time", str(int(CURL_TIMEOUT_S)), *args]
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=CURL_TIMEOUT_S + 30, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"curl failed ({res.returncode}): {short(res.stderr)}")
    return res.stdout.split()


def measure_raw_put(t: Target, blob: Path, digest: str, repo: str) -> float:
    with httpx.Client(verify=t.ssl_context(), auth=(t.username, t.password), timeout=30) as c:
        r = c.post(f"{t.base_url}/v2/{repo}/blobs/uploads/")
        if r.status_code != 202 or "location" not in r.headers:
            raise RuntimeError(f"POST blobs/uploads/ -> {r.status_code} {short(r.text)}")
        location = urljoin(f"{t.base_url}/v2/{repo}/blobs/uploads/", r.headers["location"])
    sep = "&" if "?" in location else "?"
    code, total, _speed, size = curl(
        [
            "--cacert",
            str(t.ca_cert_path),
            "-u",
            t.creds,
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "-H",
            "Expect:",  # no 100-continue round trip (curl waits 1 s if unsupported)
            "--data-binary",
            f"@{blob}",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total} %{speed_upload} %{size_upload}",
            f"{location}{sep}digest={digest}",
        ]
    )
    if code != "201":
        raise RuntimeError(f"PUT upload -> HTTP {code}")
    if int(float(size)) != blob.stat().st_size:
        raise RuntimeError(f"PUT sent {size} bytes, expected {blob.stat().st_size}")
    return blob.stat().st_size / float(total) / MB


def measure_raw_get(t: Target, size: int, digest: str, repo: str) -> float:
    code, total, _speed, got = curl(
        [
            "--cacert",
            str(t.ca_cert_path),
            "-u",
            t.creds,
            "-L",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total} %{speed_download} %{size_download}",
            f"{t.base_url}/v2/{repo}/blobs/{digest}",
        ]
    )
    if code != "200":
        raise RuntimeError(f"GET blob -> HTTP {code}")
    if int(float(got)) != size:
        raise RuntimeError(f"GET received {got} bytes, expected {size}")
    return size / float(total) / MB


# GET, not HEAD: wrk's response parser does not know a HEAD response has no body and then
# waits for Content-Length bytes that never come (0 completed requests).
MANIFEST_LUA = """\
wrk.method = "GET"
wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json"
"""


def measure_wrk(t: Target, path: str, p: Params, script: Path | None = None) -> float:
    cmd = [
        "wrk",
        f"-t{p.wrk_threads}",
        f"-c{p.wrk_connections}",
        f"-d{p.wrk_seconds}s",
        "--timeout",
        "10s",
        "-H",
        f"Authorization: {t.basic_auth_header}",
    ]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(f"{t.base_url}{path}")
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=p.wrk_seconds + 60, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed: {short(res.stderr or res.stdout)}")
    out = res.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rps or not total:
        raise RuntimeError(f"cannot parse wrk output: {short(out)}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    n_bad, n_total = (int(bad.group(1)) if bad else 0), int(total.group(1))
    if n_total == 0 or n_bad > 0.01 * n_total:
        raise RuntimeError(f"wrk: {n_bad} of {n_total} responses were not 2xx/3xx")
    return float(rps.group(1))


# --------------------------------------------------------------------------------------------
# the run


def run_rep(
    t: Target,
    rep: int,
    p: Params,
    res: Results,
    big: images.BuiltImage,
    small: list[images.BuiltImage],
    raw: Path,
    raw_digest: str,
    workdir: Path,
) -> None:
    name = t.name

    def step(key: str, fn: Callable[[], float]) -> bool:
        log(f"{name} rep {rep + 1}: {key} ...")
        # Every measurement starts from a clean disk: the reference never fsyncs, so its
        # writes would otherwise still be flushing during the next target's measurement
        # (and edge, which fsyncs what it acknowledges, would pay for them).
        os.sync()
        try:
            value = fn()
        except (RuntimeError, OSError, subprocess.TimeoutExpired, httpx.HTTPError) as exc:
            log(f"{name} rep {rep + 1}: {key} FAILED: {exc}")
            res.fail(name, key, short(str(exc), 200))
            return False
        log(f"{name} rep {rep + 1}: {key} = {value:,.2f}")
        res.add(name, key, value)
        return True

    big_repo, small_repo, raw_repo = f"bench/big-r{rep}", f"bench/small-r{rep}", f"bench/raw-r{rep}"
    if step("skopeo_push_big", lambda: measure_push_big(t, big, big_repo)):
        step(
            "skopeo_pull_big", lambda: measure_pull_big(t, big, big_repo, workdir / f"pull-{name}")
        )
    else:
        res.fail(name, "skopeo_pull_big", "skipped: push failed")
    pushed_small = step(
        "skopeo_push_small", lambda: measure_push_small(t, small, small_repo, p.small_parallel)
    )
    if step("raw_put", lambda: measure_raw_put(t, raw, raw_digest, raw_repo)):
        step("raw_get", lambda: measure_raw_get(t, raw.stat().st_size, raw_digest, raw_repo))
    else:
        res.fail(name, "raw_get", "skipped: PUT failed")
    step("wrk_v2", lambda: measure_wrk(t, "/v2/", p))
    if pushed_small:
        script = workdir / "manifest.lua"
        script.write_text(MANIFEST_LUA)
        path = f"/v2/{small_repo}/manifests/{small[0].tag}"
        step("wrk_get_manifest", lambda: measure_wrk(t, path, p, script))
    else:
        res.fail(name, "wrk_get_manifest", "skipped: small push failed")


def start_targets(stack: ExitStack, names: list[str], workdir: Path, res: Results) -> list[Target]:
    makers: dict[str, Callable[[Path], AbstractContextManager[Target]]] = {
        "reference": targets.reference_registry,
        "edge": targets.edge_registry,
    }
    started: list[Target] = []
    for name in names:
        log(f"starting {name} registry ...")
        try:
            started.append(stack.enter_context(makers[name](workdir / name)))
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
            log(f"{name}: could not start: {exc}")
            res.notes.append(f"{name} registry did not start: {short(str(exc), 400)}")
            continue
        log(f"{name} listening on {started[-1].url_host_port}")
    return started


def run(args: argparse.Namespace) -> int:
    p = QUICK if args.quick else FULL
    p = Params(
        repeat=args.repeat or p.repeat,
        big_mib=args.big_mib or p.big_mib,
        small_count=args.small_count or p.small_count,
        small_parallel=args.small_parallel or p.small_parallel,
        wrk_seconds=args.wrk_seconds or p.wrk_seconds,
        wrk_threads=p.wrk_threads,
        wrk_connections=p.wrk_connections,
    )
    names = [args.only] if args.only else ["reference", "edge"]
    workdir: Path = args.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    deadline = time.monotonic() + args.max_minutes * 60
    res = Results(load_before=loadavg())

    log(f"preparing {p.big_mib} MiB of random data (cached in {CACHE_DIR}) ...")
    payload = images.ensure_random_file(CACHE_DIR / f"random-{p.big_mib}MiB.bin", p.big_mib * MiB)
    raw_digest = images.sha256_file(payload)

    with ExitStack() as stack:
        started = start_targets(stack, names, workdir, res)
        for rep in range(p.repeat):
            if time.monotonic() > deadline:
                res.notes.append(f"stopped after {rep} repetitions: --max-minutes reached")
                break
            if not started:
                break
            log(f"repetition {rep + 1}/{p.repeat}: building images ...")
            big = images.build_big_image(workdir / f"big-r{rep}", payload)
            small = images.build_small_images(
                workdir / f"small-r{rep}", p.small_count, nonce=f"{os.getpid()}-{rep}"
            )
            order = started if rep % 2 == 0 else list(reversed(started))
            for t in order:
                run_rep(t, rep, p, res, big, small, payload, raw_digest, workdir)
            shutil.rmtree(big.layout, ignore_errors=True)
            shutil.rmtree(workdir / f"small-r{rep}", ignore_errors=True)

    res.load_after = loadavg()
    table = render_table(res, names)
    print()
    print(table)
    for note in res.notes:
        print(f"note: {note}")
    if not args.no_doc:
        write_section(SECTION, render_section(args, p, res, names, table))
        log(f"wrote section '{SECTION}' of {DOC_PATH}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if any(res.values.values()) else 1


# --------------------------------------------------------------------------------------------
# report


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}" if v >= 10 else f"{v:,.2f}"


def ratio_cells(res: Results, m: Metric) -> tuple[str, str, str]:
    """(ratio of the medians, median of the per-repetition ratios, status vs. the target)."""
    ref, edge = res.median("reference", m.key), res.median("edge", m.key)
    if ref is None or edge is None or ref == 0:
        return "n/a", "n/a", "n/a"
    ratio = edge / ref
    status = "" if m.target_ratio is None else ("met" if ratio >= m.target_ratio else "NOT met")
    # Repetitions pair up only when neither side lost one to an error.
    refs = res.values.get("reference", {}).get(m.key, [])
    edges = res.values.get("edge", {}).get(m.key, [])
    paired = "n/a"
    if len(refs) == len(edges) and all(refs):
        paired = f"{statistics.median(e / r for e, r in zip(edges, refs, strict=True)):.2f}x"
    return f"{ratio:.2f}x", paired, status


def render_table(res: Results, names: list[str]) -> str:
    header = [
        "benchmark",
        "unit",
        "reference",
        "edge",
        "edge/ref",
        "paired",
        "target",
        "status",
    ]
    rows = [header, ["---"] * len(header)]
    for m in METRICS:
        ratio, paired, status = ratio_cells(res, m)
        cells = [m.label, m.unit]
        for n in ("reference", "edge"):
            med = res.median(n, m.key)
            if med is None and n in names and res.errors.get(n, {}).get(m.key):
                cells.append("failed")
            else:
                cells.append(fmt(med))
        target = f">= {m.target_ratio:g}x" if m.target_ratio is not None else ""
        rows.append([*cells, ratio, paired, target, status])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def sh(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine_lines() -> Iterator[str]:
    cpu = cpu_model()
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
                break
    except OSError:
        pass
    yield f"- Machine: `{sh(['uname', '-a'])}`"
    yield f"- CPU: {cpu}, {os.cpu_count()} logical CPUs (`nproc` = {sh(['nproc'])}); memory {mem}"


def version_lines() -> Iterator[str]:
    try:
        edge_version = importlib.metadata.version("edge-console")
    except importlib.metadata.PackageNotFoundError:
        edge_version = "not installed"
    commit = sh(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    if not re.fullmatch(r"[0-9a-f]{4,40}", commit):
        commit = "no commit"
    yield f"- edge-console {edge_version} (tree at {commit})"
    yield f"- reference: `{sh([targets.DOCKER_REGISTRY_BIN, '--version'])}`"
    yield f"- `{sh(['skopeo', '--version'])}`, `{sh(['wrk', '-v'])}`".replace("  ", " ")
    yield f"- `{sh(['curl', '--version'])}`"
    yield f"- Python {platform.python_version()} ({sys.executable})"


def render_section(
    args: argparse.Namespace, p: Params, res: Results, names: list[str], table: str
) -> str:
    now = sh(["date", "-u"])
    cmdline = " ".join(["bench/bench_registry.py", *sys.argv[1:]])
    lines = [
        f"<!-- {SECTION}:start -->",
        "## Registry throughput: edge-console vs. reference registry (`bench/bench_registry.py`)",
        "",
        f"Run `.venv/bin/python {cmdline}` on {now}; targets: {', '.join(names)}.",
        "",
        *machine_lines(),
        f"- Load average (1/5/15 min) before: {res.load_before}; after: {res.load_after}",
        *version_lines(),
        "",
        f"Medians of {p.repeat} repetition(s). "
        + (
            "Both registries ran at the same time on 127.0.0.1 (TLS, Basic auth), measured in "
            "turn with the order alternating between repetitions; the disk is flushed "
            "(`sync`) before every measurement. Edge fsyncs every blob and manifest before "
            "acknowledging it, the reference never does. "
            if len(names) > 1
            else f"Only the {names[0]} registry was run (127.0.0.1, TLS, Basic auth). "
        )
        + f"Big image: one uncompressed layer of {p.big_mib} MiB random data "
        "(`skopeo copy --preserve-digests`, so no recompression); "
        f"small images: {p.small_count} distinct images of about 5 KiB, one `skopeo copy` each, "
        f"{p.small_parallel} at a time (process start of skopeo included for both targets); "
        f"raw blob: {p.big_mib} MiB, monolithic `POST` + `PUT ?digest=` and `GET` with "
        "`curl --http1.1`; "
        f"small requests: `wrk -t{p.wrk_threads} -c{p.wrk_connections} -d{p.wrk_seconds}s` "
        "with an `Authorization: Basic` header. MB = 10^6 bytes. "
        f"Reference htpasswd: bcrypt cost {targets.HTPASSWD_BCRYPT_COST} "
        "(the `htpasswd -B` default); access log off.",
        "",
        table,
        "",
        "`edge/ref` is the ratio of the medians (compared with the target); `paired` is the "
        "median of the per-repetition ratios (each pair measured back to back), less sensitive "
        "to load that changes during the run.",
        "",
        "Per-repetition values:",
        "",
    ]
    for m in METRICS:
        for n in names:
            vals = res.values.get(n, {}).get(m.key, [])
            errs = res.errors.get(n, {}).get(m.key, [])
            cell = ", ".join(fmt(v) for v in vals) or "none"
            if errs:
                cell += f"; errors: {'; '.join(errs[:2])}"
            lines.append(f"- {m.key} [{n}]: {cell}")
    if res.notes:
        lines += ["", *[f"Note: {n}" for n in res.notes]]
    lines.append(f"<!-- {SECTION}:end -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--quick", action="store_true", help="1 repetition, 64 MiB, 50 small images, 5 s wrk"
    )
    ap.add_argument("--only", choices=["reference", "edge"], help="run one target only")
    ap.add_argument("--repeat", type=int, help="repetitions (default 3, --quick 1)")
    ap.add_argument("--big-mib", type=int, help="size of the big layer and raw blob (MiB)")
    ap.add_argument("--small-count", type=int, help="number of small images")
    ap.add_argument("--small-parallel", type=int, help="concurrent skopeo copies")
    ap.add_argument("--wrk-seconds", type=int, help="duration of each wrk run")
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=60.0,
        help="no new repetition starts after this (default 60)",
    )
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (registry storage)")
    ap.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args(argv)
    if missing_tools(("skopeo", "wrk", "curl", targets.DOCKER_REGISTRY_BIN),
                     "docker-registry skopeo wrk curl"):
        return 2
    return run(args)


def missing_tools(tools: tuple[str, ...], packages: str) -> bool:
    """Say which tool is missing (and the Debian packages to install); True if any is."""
    for tool in tools:
        if shutil.which(tool) is None:
            print(f"error: {tool} not found (apt-get install -y {packages})", file=sys.stderr)
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
