"""Connected-registry sync: `edge-console sync run` vs. `skopeo sync`, same machine, same run.

    .venv/bin/python bench/bench_sync.py [--quick] [--repeat N] [--no-doc] [--keep]

The reference registry (bench/targets.py, TLS + htpasswd on 127.0.0.1) is the parent. One
big image (one uncompressed random layer, 256 MiB) and N small distinct images (~5 KiB each)
are pushed into it once with skopeo. Then, for each repetition, with the order of the two
tools alternating between repetitions and fresh destinations every time:

* `edge-console sync run --json --ignore-window` (a subprocess) into a fresh data dir,
  configured beforehand with `sync configure --connection-string-file -` (string on stdin),
  `--parent-ca` and `--repository`; and
* `skopeo sync --src docker --dest dir --all 127.0.0.1:PORT/<repo> <fresh dir>`,

for the big repository (MB/s) and for the small one (images/s); then a second
`edge-console sync run` on the small data dir with nothing changed (seconds). The disk is
flushed (`sync`) before every measurement. Figures are medians over the repetitions, compared
with the issue's targets; they are printed and written into this script's section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import images
import targets
from bench_registry import (
    Results,
    fmt,
    loadavg,
    log,
    machine_lines,
    missing_tools,
    sh,
    short,
    skopeo,
    version_lines,
)
from doc import write_section
from targets import Target

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / "bench" / ".cache"
DEFAULT_WORKDIR = REPO_ROOT / "bench" / "work" / "bench_sync"
SECTION = "bench_sync"
MB = 1_000_000
MiB = 1 << 20

BIG_REPO = "bench/big"
SMALL_REPO = "bench/small"
SITE = "benchsite"
PUSH_TIMEOUT_S = 600.0
SYNC_TIMEOUT_S = 1200.0
CREATE_DB = (
    "import sys; from pathlib import Path; from registry_core.datadir import DataDir; "
    "from registry_core.registry import Registry; Registry(DataDir(Path(sys.argv[1]))).close()"
)


@dataclass(frozen=True)
class Params:
    repeat: int
    big_mib: int
    small_count: int
    push_parallel: int


FULL = Params(repeat=3, big_mib=256, small_count=200, push_parallel=4)
QUICK = Params(repeat=1, big_mib=64, small_count=50, push_parallel=4)


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    unit: str
    target: str  # text for the table
    higher_is_better: bool = True


MEASURES: tuple[Measure, ...] = (
    Measure("big", "sync one big image", "MB/s", ">= 1.0x skopeo"),
    Measure("small", "sync small images", "images/s", ">= 3.0x skopeo"),
    Measure("nochange", "second edge sync, nothing changed", "s", "< 2 s", False),
)
TARGET_RATIO = {"big": 1.0, "small": 3.0}
NOCHANGE_LIMIT_S = 2.0


@dataclass
class SyncResults(Results):
    """bench_registry's results, plus edge's own run durations (from its run records, to
    tell process start from the run) and the product files changed while it ran."""

    edge_inner: dict[str, list[float]] = field(default_factory=dict)
    dirty: str = ""


# --------------------------------------------------------------------------------------------
# the parent: push the set once


def push(t: Target, img: images.BuiltImage, dest_ref: str) -> None:
    skopeo(
        [
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-cert-dir",
            str(t.cert_dir),
            "--dest-creds",
            t.creds,
            f"oci:{img.layout}:{img.tag}",
            f"docker://{t.url_host_port}/{dest_ref}",
        ],
        PUSH_TIMEOUT_S,
    )


def populate(t: Target, p: Params, workdir: Path) -> tuple[images.BuiltImage, int]:
    """Push the big image and the small ones; returns (big image, total bytes of small)."""
    payload = images.ensure_random_file(CACHE_DIR / f"random-{p.big_mib}MiB.bin", p.big_mib * MiB)
    big = images.build_big_image(workdir / "src-big", payload)
    small = images.build_small_images(workdir / "src-small", p.small_count, nonce=str(os.getpid()))
    log(f"pushing the big image ({big.total_bytes / MB:,.0f} MB) to {BIG_REPO} ...")
    push(t, big, f"{BIG_REPO}:1")
    log(f"pushing {len(small)} small images to {SMALL_REPO} ...")
    with ThreadPoolExecutor(max_workers=p.push_parallel) as pool:
        futs = [pool.submit(push, t, img, f"{SMALL_REPO}:{img.tag}") for img in small]
        for fut in futs:
            fut.result()
    small_bytes = sum(img.total_bytes for img in small)
    shutil.rmtree(workdir / "src-big", ignore_errors=True)
    shutil.rmtree(workdir / "src-small", ignore_errors=True)
    return big, small_bytes


# --------------------------------------------------------------------------------------------
# the two sync tools


def edge(data_dir: Path, args: list[str], stdin: str | None = None) -> tuple[float, str]:
    """Run edge-console on `data_dir`; (wall seconds, stdout)."""
    cmd = [*targets.edge_command(), "--data-dir", str(data_dir), *args]
    t0 = time.perf_counter()
    res = subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=SYNC_TIMEOUT_S,
        check=False,
        cwd=REPO_ROOT,
    )
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(
            f"edge-console {' '.join(args[:2])} failed ({res.returncode}): "
            + short(res.stderr or res.stdout)
        )
    return elapsed, res.stdout


def edge_configure(t: Target, data_dir: Path, repo: str) -> None:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    edge(data_dir, ["enable", "--node-ip", "127.0.0.1", "--port", str(targets.free_port())])
    # `enable` writes no registry.db and `sync run` does not create one (serve or the console
    # would, on first start): create it the way tests/test_sync_reference.py does.
    made = subprocess.run(
        [sys.executable, "-c", CREATE_DB, str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        timeout=120,
    )
    if made.returncode != 0:
        raise RuntimeError(f"creating registry.db failed: {short(made.stderr)}")
    conn = (
        f"ConnectedRegistryName={SITE};SyncTokenName={t.username};"
        f"SyncTokenPassword={t.password};ParentGatewayEndpoint={t.url_host_port};"
        "ParentEndpointProtocol=https"
    )
    edge(
        data_dir,
        [
            "sync",
            "configure",
            "--connection-string-file",
            "-",
            "--parent-ca",
            str(t.ca_cert_path),
            "--repository",
            repo,
        ],
        stdin=conn + "\n",
    )


def edge_run(data_dir: Path) -> tuple[float, dict[str, object]]:
    """`sync run --json --ignore-window`: (wall seconds, run record)."""
    elapsed, out = edge(data_dir, ["sync", "run", "--json", "--ignore-window"])
    try:
        record = json.loads(out)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"sync run printed no JSON: {short(out)}") from exc
    if record.get("status") != "succeeded" and record.get("errors"):
        raise RuntimeError(f"sync run {record.get('status')}: {short(str(record.get('errors')))}")
    return elapsed, record


def skopeo_sync(t: Target, repo: str, dest: Path) -> float:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    return skopeo(
        [
            "sync",
            "--src",
            "docker",
            "--dest",
            "dir",
            "--all",
            "--src-creds",
            t.creds,
            "--src-cert-dir",
            str(t.cert_dir),
            f"{t.url_host_port}/{repo}",
            str(dest),
        ],
        SYNC_TIMEOUT_S,
    )


def tree_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def manifests_in(root: Path) -> int:
    return sum(1 for _ in root.rglob("manifest.json"))


# --------------------------------------------------------------------------------------------
# the run


def run_rep(
    t: Target,
    rep: int,
    p: Params,
    res: SyncResults,
    big: images.BuiltImage,
    small_bytes: int,
    workdir: Path,
) -> None:
    def step(tool: str, key: str, fn: object) -> float | None:
        log(f"rep {rep + 1}: {tool} {key} ...")
        os.sync()  # every measurement starts from a clean disk
        try:
            value = fn()  # type: ignore[operator]
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
            log(f"rep {rep + 1}: {tool} {key} FAILED: {exc}")
            res.fail(tool, key, short(str(exc), 200))
            return None
        log(f"rep {rep + 1}: {tool} {key} = {value:,.3f}")
        res.add(tool, key, value)
        return float(value)

    def edge_big() -> float:
        data = workdir / f"edge-big-r{rep}"
        edge_configure(t, data, BIG_REPO)
        os.sync()
        elapsed, record = edge_run(data)
        copied = int(record.get("bytes_copied", 0))  # type: ignore[call-overload]
        if copied < big.total_bytes * 0.99:
            raise RuntimeError(f"edge copied {copied} bytes, expected about {big.total_bytes}")
        res.edge_inner.setdefault("big", []).append(float(record.get("duration_seconds", 0)))  # type: ignore[arg-type]
        shutil.rmtree(data, ignore_errors=True)
        return big.total_bytes / elapsed / MB

    def skopeo_big() -> float:
        dest = workdir / f"skopeo-big-r{rep}"
        elapsed = skopeo_sync(t, BIG_REPO, dest)
        got = tree_bytes(dest)
        shutil.rmtree(dest, ignore_errors=True)
        if got < big.total_bytes * 0.99:
            raise RuntimeError(f"skopeo wrote {got} bytes, expected about {big.total_bytes}")
        return big.total_bytes / elapsed / MB

    small_data = workdir / f"edge-small-r{rep}"

    def edge_small() -> float:
        edge_configure(t, small_data, SMALL_REPO)
        os.sync()
        elapsed, record = edge_run(small_data)
        n = int(record.get("manifests_copied", 0))  # type: ignore[call-overload]
        if n < p.small_count:
            raise RuntimeError(f"edge copied {n} manifests, expected {p.small_count}")
        res.edge_inner.setdefault("small", []).append(float(record.get("duration_seconds", 0)))  # type: ignore[arg-type]
        return p.small_count / elapsed

    def edge_nochange() -> float:
        elapsed, record = edge_run(small_data)
        n = int(record.get("manifests_copied", 0))  # type: ignore[call-overload]
        if n != 0:
            raise RuntimeError(f"second run copied {n} manifests, expected 0")
        res.edge_inner.setdefault("nochange", []).append(float(record.get("duration_seconds", 0)))  # type: ignore[arg-type]
        return elapsed

    def skopeo_small() -> float:
        dest = workdir / f"skopeo-small-r{rep}"
        elapsed = skopeo_sync(t, SMALL_REPO, dest)
        n = manifests_in(dest)
        shutil.rmtree(dest, ignore_errors=True)
        if n < p.small_count:
            raise RuntimeError(f"skopeo wrote {n} manifests, expected {p.small_count}")
        return p.small_count / elapsed

    edge_first = rep % 2 == 0
    pairs = [("edge", "big", edge_big), ("skopeo", "big", skopeo_big)]
    if not edge_first:
        pairs.reverse()
    for tool, key, fn in pairs:
        step(tool, key, fn)
    pairs = [("edge", "small", edge_small), ("skopeo", "small", skopeo_small)]
    if not edge_first:
        pairs.reverse()
    small_ok = False
    for tool, key, fn in pairs:
        got = step(tool, key, fn)
        if tool == "edge":
            small_ok = got is not None
    if small_ok:
        step("edge", "nochange", edge_nochange)
    else:
        res.fail("edge", "nochange", "skipped: first small sync failed")
    shutil.rmtree(small_data, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    p = QUICK if args.quick else FULL
    p = Params(
        repeat=args.repeat or p.repeat,
        big_mib=args.big_mib or p.big_mib,
        small_count=args.small_count or p.small_count,
        push_parallel=p.push_parallel,
    )
    workdir: Path = args.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    res = SyncResults(load_before=loadavg(), dirty=dirty_product_files())
    with targets.reference_registry(workdir / "reference") as t:
        log(f"reference registry on {t.url_host_port}")
        big, _small_bytes = populate(t, p, workdir)
        for rep in range(p.repeat):
            run_rep(t, rep, p, res, big, _small_bytes, workdir)
    res.load_after = loadavg()
    table = render_table(res)
    print()
    print(table)
    print()
    for line in per_rep_lines(res):
        print(line)
    for note in res.notes:
        print(f"note: {note}")
    if not args.no_doc:
        write_section(SECTION, render_section(p, res, table))
        log(f"wrote section '{SECTION}' of docs/benchmarks.md")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if res.values else 1


# --------------------------------------------------------------------------------------------
# report


def dirty_product_files() -> str:
    """Other engineers work in the same tree: say which product files differ from HEAD."""
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(REPO_ROOT),
                "status",
                "--porcelain",
                "--",
                "console",
                "registry_core",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    files = [line[3:] for line in out.splitlines() if line.strip()]
    if not files:
        return "none (tree as committed)"
    return f"{len(files)} file(s): " + ", ".join(f"`{f}`" for f in files[:8])


def render_table(res: SyncResults) -> str:
    header = ["measure", "unit", "edge", "skopeo", "edge/skopeo", "target", "met?"]
    rows = [header, ["---"] * len(header)]
    for m in MEASURES:
        e, s = res.median("edge", m.key), res.median("skopeo", m.key)
        e_cell = fmt(e) if e is not None or not res.errors.get("edge", {}).get(m.key) else "failed"
        if m.key == "nochange":
            e_cell = f"{e:.2f}" if e is not None else e_cell
            met = "n/a" if e is None else ("yes" if e < NOCHANGE_LIMIT_S else "NO")
            rows.append([m.label, m.unit, e_cell, "-", "-", m.target, met])
            continue
        s_cell = (
            fmt(s) if s is not None or not res.errors.get("skopeo", {}).get(m.key) else ("failed")
        )
        ratio, met = "n/a", "n/a"
        if e is not None and s:
            r = e / s
            ratio = f"{r:.2f}x"
            met = "yes" if r >= TARGET_RATIO[m.key] else "NO"
        rows.append([m.label, m.unit, e_cell, s_cell, ratio, m.target, met])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def per_rep_lines(res: SyncResults) -> list[str]:
    lines = []
    for m in MEASURES:
        for tool in ("edge", "skopeo"):
            if m.key == "nochange" and tool == "skopeo":
                continue
            vals = res.values.get(tool, {}).get(m.key, [])
            errs = res.errors.get(tool, {}).get(m.key, [])
            cell = ", ".join(f"{v:.2f}" if m.key == "nochange" else fmt(v) for v in vals)
            cell = cell or "none"
            if errs:
                cell += f"; errors: {'; '.join(errs[:2])}"
            lines.append(f"- {m.key} [{tool}] ({m.unit}): {cell}")
    for key, vals in res.edge_inner.items():
        lines.append(
            f"- {key} [edge, run record `duration_seconds`] (s): "
            + ", ".join(f"{v:.2f}" for v in vals)
        )
    return lines


def render_section(p: Params, res: SyncResults, table: str) -> str:
    now = sh(["date", "-u"])
    cmdline = " ".join(["bench/bench_sync.py", *sys.argv[1:]])
    lines = [
        f"<!-- {SECTION}:start -->",
        "## Connected-registry sync: `edge-console sync run` vs. `skopeo sync` "
        "(`bench/bench_sync.py`)",
        "",
        f"Run `.venv/bin/python {cmdline}` on {now}.",
        "",
        *machine_lines(),
        f"- Load average (1/5/15 min) before: {res.load_before}; after: {res.load_after}",
        *version_lines(),
        f"- Product code (`console/`, `registry_core/`) uncommitted at the start: {res.dirty}",
        "",
        f"Medians of {p.repeat} repetition(s). The parent is the reference registry on "
        "127.0.0.1 (TLS, Basic auth, bcrypt cost "
        f"{targets.HTPASSWD_BCRYPT_COST}), holding one big image (one uncompressed layer of "
        f"{p.big_mib} MiB random data) in `{BIG_REPO}` and {p.small_count} distinct images of "
        f"about 5 KiB in `{SMALL_REPO}`, pushed once with skopeo. Each repetition syncs each "
        "repository into a fresh destination with both tools, the order alternating between "
        "repetitions, the disk flushed (`sync`) before every measurement: edge is "
        "`edge-console sync run --json --ignore-window` as a subprocess (process start "
        "included) on a fresh data dir set up by `enable` and `sync configure "
        "--connection-string-file - --parent-ca ... --repository ...` (not timed); skopeo is "
        "`skopeo sync --src docker --dest dir --all --src-creds ... --src-cert-dir ...` "
        "(process start included). Edge fsyncs what it stores, skopeo's `dir:` does not. "
        "The no-change figure is a second `sync run` on the small data dir right after the "
        "first (wall time of the process). MB = 10^6 bytes.",
        "",
        table,
        "",
        "Per-repetition values (and edge's own `duration_seconds` from the run record, "
        "i.e. without process start):",
        "",
        *per_rep_lines(res),
    ]
    if res.notes:
        lines += ["", *[f"Note: {n}" for n in res.notes]]
    lines.append(f"<!-- {SECTION}:end -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="1 repetition, 64 MiB, 50 small images")
    ap.add_argument("--repeat", type=int, help="repetitions (default 3, --quick 1)")
    ap.add_argument("--big-mib", type=int, help="size of the big layer (MiB)")
    ap.add_argument("--small-count", type=int, help="number of small images")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args(argv)
    if missing_tools(("skopeo", targets.DOCKER_REGISTRY_BIN), "docker-registry skopeo"):
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
