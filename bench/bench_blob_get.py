"""Blob reads and small requests: edge vs. the reference registry vs. the ceiling, one run.

    .venv/bin/python bench/bench_blob_get.py [--repeat 5] [--profile] [--no-doc]

Starts the reference registry and `edge-console serve` (bench/targets.py), pushes one
256 MiB random blob and one small image to each, and starts bench/ceiling_server.py: the
registry's own server stack (granian, same settings, edge's certificate) serving edge's
stored copy of that blob with no registry behind it. Then, in each repetition, in an order
that rotates between repetitions:

* `curl --http1.1` GET of the whole blob from each source: reference, edge, edge with
  `Range: bytes=0-` (the app's chunked-read path), the ceiling via `pathsend`, via
  granian's static route, and via chunked reads of 128 KiB and 1 MiB; MB/s, and the CPU
  time the server process and curl spent on it;
* `wrk -t2` at 16 and 32 connections on authenticated `GET /v2/` and manifest `GET`,
  reference and edge back to back; req/s and server CPU per request.

`--profile` adds a `perf record` of the edge process during blob GETs (per thread and
library) and a py-spy sample of its event-loop thread under wrk, when the tools exist.
Writes the `bench_blob_get` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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
CACHE_DIR = REPO_ROOT / "bench" / ".cache"
DEFAULT_WORKDIR = REPO_ROOT / "bench" / "work" / "bench_blob_get"
SECTION = "bench_blob_get"
MB = 1_000_000
MiB = 1 << 20
REPO = "bench/blob"
TAG = "v1"
CURL_TIMEOUT_S = 300

GET_SOURCES = (
    "reference",
    "edge",
    "edge-range",
    "edge-aes128",
    "ceiling-pathsend",
    "ceiling-static",
    "ceiling-chunked-128K",
    "ceiling-chunked-1M",
)
WRK_PATHS = ("v2", "manifest")
MANIFEST_LUA = """\
wrk.method = "GET"
wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json"
"""


@dataclass
class Samples:
    values: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))

    def add(self, key: str, value: float) -> None:
        self.values[key].append(value)

    def median(self, key: str) -> float | None:
        vals = self.values.get(key)
        return statistics.median(vals) if vals else None


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- processes and CPU accounting ---------------------------------------------------------


def pid_of(needle: str) -> int:
    """The pid of the one process whose command line contains `needle`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmd and "ceiling_server" not in cmd:
            return int(entry.name)
    raise RuntimeError(f"no process with {needle!r} in its command line")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass(frozen=True)
class Source:
    url: str
    ca: Path
    pid: int
    creds: str | None = None
    curl_args: tuple[str, ...] = ()


# ---- setup ---------------------------------------------------------------------------------


def push_blob(c: httpx.Client, t: Target, data_path: Path | None, data: bytes | None) -> str:
    """Monolithic upload; returns the digest."""
    body = data if data is not None else data_path.read_bytes()  # type: ignore[union-attr]
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    r = c.post(f"{t.base_url}/v2/{REPO}/blobs/uploads/")
    location = urljoin(f"{t.base_url}/v2/{REPO}/blobs/uploads/", r.headers["location"])
    sep = "&" if "?" in location else "?"
    r = c.put(
        f"{location}{sep}digest={digest}",
        content=body,
        headers={"Content-Type": "application/octet-stream"},
    )
    if r.status_code != 201:
        raise RuntimeError(f"{t.name}: blob PUT -> {r.status_code} {r.text[:200]}")
    return digest


def seed(t: Target, payload: Path) -> str:
    """The big blob and a small image (tag v1) in REPO; returns the big blob's digest."""
    with httpx.Client(verify=t.ssl_context(), auth=(t.username, t.password), timeout=300) as c:
        digest = push_blob(c, t, payload, None)
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        layer = b"x" * 1000
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": push_blob(c, t, None, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": push_blob(c, t, None, layer),
                    "size": len(layer),
                }
            ],
        }
        r = c.put(
            f"{t.base_url}/v2/{REPO}/manifests/{TAG}",
            content=json.dumps(manifest).encode(),
            headers={"Content-Type": manifest["mediaType"]},  # type: ignore[dict-item]
        )
        if r.status_code != 201:
            raise RuntimeError(f"{t.name}: manifest PUT -> {r.status_code} {r.text[:200]}")
    return digest


@contextmanager
def ceiling_server(edge: Target, blob: Path, workdir: Path) -> Iterator[tuple[str, int]]:
    """bench/ceiling_server.py on edge's data dir and stored blob; yields (base URL, pid)."""
    assert edge.data_dir is not None
    static = workdir / "static"
    static.mkdir(parents=True, exist_ok=True)
    link = static / "blob.bin"
    link.unlink(missing_ok=True)
    os.link(blob, link)  # the same inode: the same page cache as edge's copy
    port = targets.free_port()
    log_path = workdir / "ceiling.log"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve().parent / "ceiling_server.py"),
        "--data-dir",
        str(edge.data_dir),
        "--file",
        str(blob),
        "--static-dir",
        str(static),
        "--port",
        str(port),
    ]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 30
        while b"ready" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ceiling server did not start:\n{targets.tail(log_path)}")
            time.sleep(0.1)
        yield f"https://127.0.0.1:{port}", proc.pid
    finally:
        targets.stop_process(proc)


def stored_blob(edge: Target, digest: str) -> Path:
    assert edge.data_dir is not None
    hexdigest = digest.split(":", 1)[1]
    for path in (edge.data_dir / "blobs").rglob(hexdigest):
        if path.is_file():
            return path
    raise RuntimeError(f"edge's copy of {digest} not found under {edge.data_dir}")


# ---- measurements ---------------------------------------------------------------------------


def curl_get(src: Source, size: int) -> tuple[float, float, float]:
    """One GET with curl; (MB/s, server CPU s, curl CPU s)."""
    cmd = ["curl", "-sS", "--http1.1", "--max-time", str(CURL_TIMEOUT_S), "--cacert", str(src.ca)]
    if src.creds:
        cmd += ["-u", src.creds]
    cmd += src.curl_args
    cmd += ["-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_download}", src.url]
    os.sync()
    server0, client0 = cpu_seconds(src.pid), children_cpu()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=CURL_TIMEOUT_S + 30)
    server1, client1 = cpu_seconds(src.pid), children_cpu()
    code, total, got = ([*res.stdout.split(), "", "", ""])[:3]
    if res.returncode != 0 or code not in ("200", "206") or int(float(got)) != size:
        raise RuntimeError(f"GET {src.url}: rc {res.returncode} HTTP {code} {got} bytes")
    return size / float(total) / MB, server1 - server0, client1 - client0


def wrk(
    url: str, auth: str, pid: int, connections: int, seconds: int, script: Path | None
) -> tuple[float, float]:
    """(req/s, server CPU µs per request)."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    cmd += ["-H", f"Authorization: {auth}"]
    if script is not None:
        cmd += ["-s", str(script)]
    cpu0 = cpu_seconds(pid)
    res = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60)
    cpu1 = cpu_seconds(pid)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", res.stdout)
    total = re.search(r"(\d+) requests in", res.stdout)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", res.stdout)
    if res.returncode != 0 or not rps or not total or int(total.group(1)) == 0:
        raise RuntimeError(f"wrk {url}: {res.stdout[-300:]} {res.stderr[-300:]}")
    if bad and int(bad.group(1)) > 0.01 * int(total.group(1)):
        raise RuntimeError(f"wrk {url}: {bad.group(1)} non-2xx responses")
    return float(rps.group(1)), (cpu1 - cpu0) / int(total.group(1)) * 1e6


# ---- profile ---------------------------------------------------------------------------------


def perf_profile(pid: int, src: Source, size: int, gets: int, workdir: Path) -> list[str]:
    """perf record of the edge process during `gets` blob GETs: share per thread and library."""
    if shutil.which("perf") is None:
        return ["(perf not installed: no profile)"]
    data = workdir / "perf.data"
    rec = subprocess.Popen(
        ["perf", "record", "-F", "999", "-p", str(pid), "-o", str(data), "--", "sleep", "600"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    rates = [curl_get(src, size)[0] for _ in range(gets)]
    rec.send_signal(2)
    rec.wait(timeout=60)
    out = subprocess.run(
        [
            "perf",
            "report",
            "-i",
            str(data),
            "--no-children",
            "-s",
            "comm,dso",
            "--stdio",
            "-g",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    lines = [f"perf, {gets} GETs at {statistics.median(rates):,.0f} MB/s (median):", ""]
    lines += ["| thread | library | share of the edge process's CPU samples |", "|---|---|---:|"]
    for row in out.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+(.+?)\s*$", row)
        if m and float(m.group(1)) >= 1.0:
            lines.append(f"| {m.group(2)} | `{m.group(3)}` | {m.group(1)}% |")
    syms = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "-s", "sym", "--stdio", "-g", "none"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    top = [
        f"`{m.group(2)}` {m.group(1)}%"
        for m in (re.match(r"\s+([\d.]+)%\s+\[[.k]\]\s+(\S+)", r) for r in syms.splitlines())
        if m
    ][:8]
    lines += ["", "Top symbols: " + ", ".join(top) + "."]
    return lines


def pyspy_profile(pid: int, url: str, auth: str, script: Path, workdir: Path) -> list[str]:
    """py-spy of the edge process's event-loop thread under wrk -c16 on manifest GET."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return ["(py-spy not installed: no Python profile)"]
    raw = workdir / "pyspy.txt"
    rec = subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            "6",
            "-r",
            "250",
            "-f",
            "raw",
            "-o",
            str(raw),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    rps, _ = wrk(url, auth, pid, 16, 5, script)
    rec.wait(timeout=60)
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f]
        if not any("RegistryServer._run" in f for f in frames):
            continue  # only the server's event-loop thread
        total += int(n)
        # By function, not line: the file may have changed since the server loaded it.
        for f in {re.sub(r" \((?:.*/)?([^/:]+):\d+\)", r" (\1)", f) for f in frames}:
            incl[f] += int(n)
    lines = [
        f"py-spy, event-loop thread, manifest GET under `wrk -c16` ({rps:,.0f} req/s), "
        "inclusive share of its samples:",
        "",
    ]
    keep = ("app.py", "auth.py", "responses.py", "_futures.py", "selectors.py", "base_events")
    for f, n in incl.most_common(60):
        if any(k in f for k in keep) and n / max(total, 1) >= 0.02:
            lines.append(f"- {n * 100 / max(total, 1):.1f}% `{f}`")
    return lines


# ---- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    payload = images.ensure_random_file(
        CACHE_DIR / f"random-{args.blob_mib}MiB.bin", args.blob_mib * MiB
    )
    size = payload.stat().st_size
    script = workdir / "manifest.lua"
    script.write_text(MANIFEST_LUA)
    get = Samples()
    server_cpu = Samples()
    client_cpu = Samples()
    rps = Samples()
    cpu_req = Samples()
    profile: list[str] = []
    with ExitStack() as stack:
        ref = stack.enter_context(targets.reference_registry(workdir / "reference"))
        edge = stack.enter_context(targets.edge_registry(workdir / "edge"))
        log(f"reference {ref.url_host_port}, edge {edge.url_host_port}; pushing ...")
        digest = seed(ref, payload)
        if seed(edge, payload) != digest:
            raise RuntimeError("digest mismatch")
        assert ref.config_path is not None
        pids = {"reference": pid_of(str(ref.config_path)), "edge": pid_of(edge.url_host_port)}
        ceil_url, ceil_pid = stack.enter_context(
            ceiling_server(edge, stored_blob(edge, digest), workdir)
        )
        blob_path = f"/v2/{REPO}/blobs/{digest}"
        edge_ca = edge.ca_cert_path
        sources = {
            "reference": Source(
                ref.base_url + blob_path, ref.ca_cert_path, pids["reference"], ref.creds
            ),
            "edge": Source(edge.base_url + blob_path, edge_ca, pids["edge"], edge.creds),
            "edge-range": Source(
                edge.base_url + blob_path,
                edge_ca,
                pids["edge"],
                edge.creds,
                ("-H", "Range: bytes=0-"),
            ),
            # The cipher the reference picks (Go prefers AES-128-GCM); rustls follows curl's
            # order and picks AES-256-GCM, which costs curl more per byte.
            "edge-aes128": Source(
                edge.base_url + blob_path,
                edge_ca,
                pids["edge"],
                edge.creds,
                ("--tls13-ciphers", "TLS_AES_128_GCM_SHA256"),
            ),
            "ceiling-pathsend": Source(f"{ceil_url}/pathsend", edge_ca, ceil_pid),
            "ceiling-static": Source(f"{ceil_url}/static/blob.bin", edge_ca, ceil_pid),
            "ceiling-chunked-128K": Source(f"{ceil_url}/chunked/{128 << 10}", edge_ca, ceil_pid),
            "ceiling-chunked-1M": Source(f"{ceil_url}/chunked/{1 << 20}", edge_ca, ceil_pid),
        }
        for name in GET_SOURCES:  # warm-up: page cache, connections, caches
            curl_get(sources[name], size)
        wrk_targets = {"reference": ref, "edge": edge}
        for t in wrk_targets.values():
            wrk(f"{t.base_url}/v2/", t.basic_auth_header, pids[t.name], 16, 1, None)
        for rep in range(args.repeat):
            shift = rep % len(GET_SOURCES)
            order = GET_SOURCES[shift:] + GET_SOURCES[:shift]
            for name in order:
                mbs, scpu, ccpu = curl_get(sources[name], size)
                get.add(name, mbs)
                server_cpu.add(name, scpu)
                client_cpu.add(name, ccpu)
            log(f"rep {rep + 1}: " + ", ".join(f"{n} {get.values[n][-1]:,.0f}" for n in order))
            if args.skip_wrk:
                continue
            names = ["reference", "edge"] if rep % 2 == 0 else ["edge", "reference"]
            for conns in (16, 32):
                for what in WRK_PATHS:
                    for name in names:
                        t = wrk_targets[name]
                        path = "/v2/" if what == "v2" else f"/v2/{REPO}/manifests/{TAG}"
                        value, us = wrk(
                            t.base_url + path,
                            t.basic_auth_header,
                            pids[name],
                            conns,
                            args.wrk_seconds,
                            None if what == "v2" else script,
                        )
                        key = f"{what}-c{conns}-{name}"
                        rps.add(key, value)
                        cpu_req.add(key, us)
                        log(f"rep {rep + 1}: wrk {key} {value:,.0f} req/s, {us:,.0f} us CPU/req")
        if args.profile:
            log("profiling ...")
            profile += perf_profile(pids["edge"], sources["edge"], size, 4, workdir)
            profile += [""]
            profile += pyspy_profile(
                pids["edge"],
                f"{edge.base_url}/v2/{REPO}/manifests/{TAG}",
                edge.basic_auth_header,
                script,
                workdir,
            )
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    section = render(
        args, get, server_cpu, client_cpu, rps, cpu_req, profile, load_before, load_after
    )
    print(section)
    if not args.no_doc:
        write_section(SECTION, section)
        log(f"wrote section {SECTION} of docs/benchmarks.md")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


# ---- report -------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def paired(s: Samples, a: str, b: str) -> str:
    va, vb = s.values.get(a, []), s.values.get(b, [])
    if not va or len(va) != len(vb):
        return "n/a"
    return f"{statistics.median(x / y for x, y in zip(va, vb, strict=True)):.2f}x"


def render(
    args: argparse.Namespace,
    get: Samples,
    server_cpu: Samples,
    client_cpu: Samples,
    rps: Samples,
    cpu_req: Samples,
    profile: list[str],
    load_before: list[str],
    load_after: list[str],
) -> str:
    commit = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    ref = get.median("reference")
    edge = get.median("edge")
    lines = [
        f"<!-- {SECTION}:start -->",
        "## Blob GET, its ceiling, and small requests (`bench/bench_blob_get.py`)",
        "",
        f"Run `.venv/bin/python bench/bench_blob_get.py {' '.join(sys.argv[1:])}`".rstrip()
        + f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, tree at {commit}; "
        f"{cpu_model()}, {os.cpu_count()} CPUs; load average before "
        f"{' '.join(load_before)}, after {' '.join(load_after)} (other work was running).",
        "",
        f"Blob: {args.blob_mib} MiB of random data, `curl --http1.1 -o /dev/null` over TLS, "
        f"medians of {args.repeat} repetitions, sources in an order rotating between "
        "repetitions, disk flushed before each GET. *Ceiling*: the same granian server, "
        "settings and certificate as `edge-console serve`, serving edge's stored file "
        "(same inode) with no registry (bench/ceiling_server.py): `pathsend` from a minimal "
        "app, granian's `static` route, or `chunked-N` reads of N bytes in Python. "
        "`edge-range`: edge with `Range: bytes=0-` (206 through the app's own 1 MiB reads); "
        "`edge-aes128`: edge with curl limited to TLS_AES_128_GCM_SHA256, the cipher the "
        "reference's server picks (rustls follows curl's order: AES-256-GCM). CPU columns: "
        "CPU time of the server process and of curl for one GET (median). MB = 10^6 bytes.",
        "",
        "| source | MB/s | vs reference | paired | server CPU ms | curl CPU ms | both, ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in GET_SOURCES:
        med = get.median(name)
        scpu, ccpu = server_cpu.median(name), client_cpu.median(name)
        lines.append(
            f"| {name} | {med:,.0f} | {ratio(med, ref)} | {paired(get, name, 'reference')} | "
            f"{(scpu or 0) * 1000:,.0f} | {(ccpu or 0) * 1000:,.0f} | "
            f"{((scpu or 0) + (ccpu or 0)) * 1000:,.0f} |"
        )
    ceil_p, ceil_s = get.median("ceiling-pathsend"), get.median("ceiling-static")
    lines += [
        "",
        f"- edge / reference: **{ratio(edge, ref)}** (paired {paired(get, 'edge', 'reference')}; "
        "target >= 1.2x)",
        f"- edge / ceiling: **{ratio(edge, ceil_p)}** of pathsend-only, "
        f"**{ratio(edge, ceil_s)}** of granian's static route (target >= 0.70)",
        "",
        "Per-repetition MB/s:",
        "",
    ]
    for name in GET_SOURCES:
        lines.append(f"- {name}: " + ", ".join(f"{v:,.0f}" for v in get.values.get(name, [])))
    if rps.values:
        lines += [
            "",
            f"Small requests: `wrk -t2 -cN -d{args.wrk_seconds}s` with `Authorization: Basic`, "
            "reference and edge back to back, alternating which goes first; medians of "
            f"{args.repeat}. CPU per request: the server process's CPU time over the run "
            "divided by the requests served.",
            "",
            "| request | conns | reference req/s | edge req/s | edge/ref | paired | "
            "ref CPU µs/req | edge CPU µs/req |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for what in WRK_PATHS:
            for conns in (16, 32):
                r, e = f"{what}-c{conns}-reference", f"{what}-c{conns}-edge"
                label = "`GET /v2/`" if what == "v2" else "manifest `GET`"
                ref_rps, edge_rps = rps.median(r), rps.median(e)
                lines.append(
                    f"| {label} | {conns} | {ref_rps or 0:,.0f} | {edge_rps or 0:,.0f} | "
                    f"**{ratio(edge_rps, ref_rps)}** | {paired(rps, e, r)} | "
                    f"{cpu_req.median(r) or 0:,.0f} | {cpu_req.median(e) or 0:,.0f} |"
                )
        lines += ["", "Per-repetition req/s:", ""]
        for key, vals in sorted(rps.values.items()):
            lines.append(f"- {key}: " + ", ".join(f"{v:,.0f}" for v in vals))
    if profile:
        lines += ["", "### Profile of edge", "", *profile]
    lines.append(f"<!-- {SECTION}:end -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--blob-mib", type=int, default=256)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--skip-wrk", action="store_true", help="blob GETs only")
    ap.add_argument("--profile", action="store_true", help="perf and py-spy profiles of edge")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args(argv)
    for tool in ("wrk", "curl", targets.DOCKER_REGISTRY_BIN):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found", file=sys.stderr)
            return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
