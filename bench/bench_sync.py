"""Connected-registry sync: `edge-console sync run` vs. `skopeo sync`, same machine, same run.

    .venv/bin/python bench/bench_sync.py [--quick] [--repeat N] [--parents basic,token]
                                         [--no-doc] [--keep]

Two parents, both the reference registry (CNCF distribution, Debian's `docker-registry`) on
127.0.0.1 with TLS:

* `basic`: bench/targets.py's `reference_registry`, htpasswd (bcrypt) Basic auth, so the
  parent checks a bcrypt hash on every request. It holds one big image (one uncompressed
  random layer, 256 MiB) and N small distinct images (~5 KiB each).
* `token`: tests/parents.py's `start_reference(token=True)`, token auth (what cloud parents
  use): the realm is a TokenIssuer run in this process (HTTPS, Basic-checked credentials,
  ES256 JWTs). It holds the same N small images.

Everything is pushed once with skopeo. Then, for each repetition, with the order of the two
tools alternating between repetitions and fresh destinations every time:

* `edge-console sync run --json --ignore-window` (a subprocess) into a fresh data dir,
  configured beforehand with `sync configure --connection-string-file -` (string on stdin),
  `--parent-ca` and `--repository`; and
* `skopeo sync --src docker --dest dir --all 127.0.0.1:PORT/<repo> <fresh dir>`,

for the big repository (MB/s, Basic parent only) and for the small one (images/s); then a
second `edge-console sync run` on the small data dir with nothing changed (seconds). The disk
is flushed (`sync`) before every measurement. Around every sync the script also reads the
CPU time used by the parent process (/proc/PID/stat), by the sync tool (RUSAGE_CHILDREN) and
by this process (time.process_time: the token issuer's threads), and derives the rate the
machine's cores would allow if CPU were the only limit. Figures are medians over the
repetitions, compared with the issue's targets; they are printed and written into this
script's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import images
import targets
from bench_blob_get import children_cpu, cpu_seconds
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
CORES = len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Params:
    repeat: int
    big_mib: int
    small_count: int
    push_parallel: int


FULL = Params(repeat=3, big_mib=256, small_count=200, push_parallel=4)
QUICK = Params(repeat=1, big_mib=64, small_count=50, push_parallel=4)


@dataclass(frozen=True)
class ParentKind:
    name: str  # as given to --parents
    prefix: str  # of its measure keys
    suffix: str  # of its labels
    description: str


BASIC = ParentKind(
    "basic",
    "",
    "",
    "the reference registry with htpasswd Basic auth (bench/targets.py), bcrypt cost "
    f"{targets.HTPASSWD_BCRYPT_COST}: one bcrypt check on every request",
)
TOKEN = ParentKind(
    "token",
    "token:",
    " (token-auth parent)",
    "the reference registry with token auth (tests/parents.py `start_reference(token=True)`): "
    "clients get an ES256 JWT from a token issuer (HTTPS, Basic-checked, run in this bench "
    "process) and send it as a Bearer token; the registry checks the JWT's signature",
)
PARENTS = {k.name: k for k in (BASIC, TOKEN)}


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    unit: str
    target: str  # text for the table
    higher_is_better: bool = True

    @property
    def base(self) -> str:
        """big | small | nochange, whatever the parent."""
        return self.key.rpartition(":")[2]


BASE_MEASURES: tuple[Measure, ...] = (
    Measure("big", "sync one big image", "MB/s", ">= 1.0x skopeo"),
    Measure("small", "sync small images", "images/s", ">= 3.0x skopeo"),
    Measure("nochange", "second edge sync, nothing changed", "s", "< 2 s", False),
)
TARGET_RATIO = {"big": 1.0, "small": 3.0}
NOCHANGE_LIMIT_S = 2.0


def measures_for(kinds: list[ParentKind]) -> list[Measure]:
    """The basic parent's three measures (as before), then the token parent's small ones."""
    out = []
    for kind in kinds:
        for m in BASE_MEASURES:
            if kind is TOKEN and m.key == "big":
                continue
            out.append(
                Measure(
                    kind.prefix + m.key, m.label + kind.suffix, m.unit, m.target, m.higher_is_better
                )
            )
    return out


# --------------------------------------------------------------------------------------------
# CPU accounting


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used during one sync: by the parent registry process, by the sync tool (a
    child of this process) and by this process (the token issuer's threads, if any)."""

    parent: float
    client: float
    bench: float
    tokens: int = 0  # tokens the in-process issuer handed out

    def __sub__(self, other: CpuUse) -> CpuUse:
        return CpuUse(
            self.parent - other.parent,
            self.client - other.client,
            self.bench - other.bench,
            self.tokens - other.tokens,
        )


@dataclass
class Meter:
    """What the CPU accounting needs of a parent: its pid, and the issuer's token count."""

    pid: int
    tokens: Callable[[], int] = lambda: 0

    def now(self) -> CpuUse:
        return CpuUse(cpu_seconds(self.pid), children_cpu(), time.process_time(), self.tokens())

    @contextmanager
    def measure(self) -> Iterator[list[CpuUse]]:
        """Yields a list that holds the CPU used inside the block once it exits normally."""
        before, box = self.now(), list[CpuUse]()
        yield box
        box.append(self.now() - before)


@dataclass
class SyncResults(Results):
    """bench_registry's results, plus edge's own run durations (from its run records, to
    tell process start from the run), the product files changed while it ran, and the CPU
    used by each sync."""

    edge_inner: dict[str, list[float]] = field(default_factory=dict)
    dirty: str = ""
    cpu: dict[str, dict[str, list[CpuUse]]] = field(default_factory=dict)

    def add_cpu(self, tool: str, key: str, use: CpuUse) -> None:
        self.cpu.setdefault(tool, {}).setdefault(key, []).append(use)

    def cpu_median(self, tool: str, key: str) -> CpuUse | None:
        uses = self.cpu.get(tool, {}).get(key)
        if not uses:
            return None
        return CpuUse(
            statistics.median(u.parent for u in uses),
            statistics.median(u.client for u in uses),
            statistics.median(u.bench for u in uses),
            round(statistics.median(u.tokens for u in uses)),
        )


# --------------------------------------------------------------------------------------------
# the parents: start them, push the set once


@dataclass
class Parent:
    kind: ParentKind
    target: Target
    meter: Meter


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


def push_small(t: Target, small: list[images.BuiltImage], parallel: int) -> None:
    log(f"pushing {len(small)} small images to {t.url_host_port}/{SMALL_REPO} ...")
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futs = [pool.submit(push, t, img, f"{SMALL_REPO}:{img.tag}") for img in small]
        for fut in futs:
            fut.result()


def push_big(t: Target, p: Params, workdir: Path) -> images.BuiltImage:
    payload = images.ensure_random_file(CACHE_DIR / f"random-{p.big_mib}MiB.bin", p.big_mib * MiB)
    big = images.build_big_image(workdir / "src-big", payload)
    log(f"pushing the big image ({big.total_bytes / MB:,.0f} MB) to {BIG_REPO} ...")
    push(t, big, f"{BIG_REPO}:1")
    shutil.rmtree(workdir / "src-big", ignore_errors=True)
    return big


def start_basic(stack: ExitStack, workdir: Path) -> Parent:
    t = stack.enter_context(targets.reference_registry(workdir / "reference"))
    log(f"reference registry (Basic auth) on {t.url_host_port}")
    assert t.pid is not None
    return Parent(BASIC, t, Meter(t.pid))


def start_token(stack: ExitStack, workdir: Path) -> Parent:
    """tests/parents.py's token-auth reference registry, seen as a bench Target."""
    sys.path.insert(1, str(REPO_ROOT / "tests"))
    from parents import start_reference  # type: ignore[import-not-found]  # tests/, on demand

    parent = stack.enter_context(start_reference(workdir / "reference-token", token=True))
    assert parent.process is not None and parent.issuer is not None
    issuer = parent.issuer
    t = Target(
        name="reference-token",
        url_host_port=parent.address,
        username=parent.username,
        password=parent.password,
        ca_cert_path=parent.ca_file,
        cert_dir=parent.cert_dir,
        config_path=parent.config,
        data_dir=parent.storage,
        log_path=parent.process.log,
        pid=parent.process.popen.pid,
    )
    log(f"reference registry (token auth, issuer {issuer.realm}) on {t.url_host_port}")
    return Parent(TOKEN, t, Meter(t.pid or 0, lambda: len(issuer.granted())))


def start_parents(
    stack: ExitStack, kinds: list[ParentKind], p: Params, workdir: Path
) -> tuple[list[Parent], images.BuiltImage | None]:
    """Start the parents asked for and push the set into each; (parents, big image)."""
    small = images.build_small_images(workdir / "src-small", p.small_count, nonce=str(os.getpid()))
    parents, big = [], None
    for kind in kinds:
        parent = start_basic(stack, workdir) if kind is BASIC else start_token(stack, workdir)
        if kind is BASIC:
            big = push_big(parent.target, p, workdir)
        push_small(parent.target, small, p.push_parallel)
        parents.append(parent)
    shutil.rmtree(workdir / "src-small", ignore_errors=True)
    return parents, big


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


@dataclass
class Rep:
    """One repetition against one parent: each sync is a method returning its figure."""

    parent: Parent
    rep: int
    p: Params
    res: SyncResults
    big: images.BuiltImage | None
    workdir: Path

    @property
    def t(self) -> Target:
        return self.parent.target

    def key(self, base: str) -> str:
        return self.parent.kind.prefix + base

    def step(self, tool: str, base: str, fn: Callable[[], float]) -> float | None:
        key, name = self.key(base), f"rep {self.rep + 1}: {tool} {self.key(base)}"
        log(f"{name} ...")
        os.sync()  # every measurement starts from a clean disk
        try:
            value = fn()
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
            log(f"{name} FAILED: {exc}")
            self.res.fail(tool, key, short(str(exc), 200))
            return None
        log(f"{name} = {value:,.3f}")
        self.res.add(tool, key, value)
        return float(value)

    def edge_synced(self, base: str, data: Path) -> tuple[float, dict[str, object]]:
        """`sync run` on a configured data dir, its CPU recorded under `base`."""
        with self.parent.meter.measure() as used:
            elapsed, record = edge_run(data)
        self.res.add_cpu("edge", self.key(base), used[0])
        inner = float(record.get("duration_seconds", 0))  # type: ignore[arg-type]
        self.res.edge_inner.setdefault(self.key(base), []).append(inner)
        return elapsed, record

    def skopeo_synced(self, base: str, repo: str, dest: Path) -> float:
        with self.parent.meter.measure() as used:
            elapsed = skopeo_sync(self.t, repo, dest)
        self.res.add_cpu("skopeo", self.key(base), used[0])
        return elapsed

    @property
    def small_data(self) -> Path:
        return self.workdir / f"edge-small-{self.parent.kind.name}-r{self.rep}"

    def edge_big(self) -> float:
        assert self.big is not None
        data = self.workdir / f"edge-big-r{self.rep}"
        edge_configure(self.t, data, BIG_REPO)
        os.sync()
        elapsed, record = self.edge_synced("big", data)
        copied = int(record.get("bytes_copied", 0))  # type: ignore[call-overload]
        if copied < self.big.total_bytes * 0.99:
            raise RuntimeError(f"edge copied {copied} bytes, expected about {self.big.total_bytes}")
        shutil.rmtree(data, ignore_errors=True)
        return self.big.total_bytes / elapsed / MB

    def skopeo_big(self) -> float:
        assert self.big is not None
        dest = self.workdir / f"skopeo-big-r{self.rep}"
        elapsed = self.skopeo_synced("big", BIG_REPO, dest)
        got = tree_bytes(dest)
        shutil.rmtree(dest, ignore_errors=True)
        if got < self.big.total_bytes * 0.99:
            raise RuntimeError(f"skopeo wrote {got} bytes, expected about {self.big.total_bytes}")
        return self.big.total_bytes / elapsed / MB

    def edge_small(self) -> float:
        edge_configure(self.t, self.small_data, SMALL_REPO)
        os.sync()
        elapsed, record = self.edge_synced("small", self.small_data)
        n = int(record.get("manifests_copied", 0))  # type: ignore[call-overload]
        if n < self.p.small_count:
            raise RuntimeError(f"edge copied {n} manifests, expected {self.p.small_count}")
        return self.p.small_count / elapsed

    def edge_nochange(self) -> float:
        elapsed, record = self.edge_synced("nochange", self.small_data)
        n = int(record.get("manifests_copied", 0))  # type: ignore[call-overload]
        if n != 0:
            raise RuntimeError(f"second run copied {n} manifests, expected 0")
        return elapsed

    def skopeo_small(self) -> float:
        dest = self.workdir / f"skopeo-small-{self.parent.kind.name}-r{self.rep}"
        elapsed = self.skopeo_synced("small", SMALL_REPO, dest)
        n = manifests_in(dest)
        shutil.rmtree(dest, ignore_errors=True)
        if n < self.p.small_count:
            raise RuntimeError(f"skopeo wrote {n} manifests, expected {self.p.small_count}")
        return self.p.small_count / elapsed

    def run(self) -> None:
        edge_first = self.rep % 2 == 0
        if self.big is not None:
            self.pair(("big", self.edge_big), ("big", self.skopeo_big), edge_first)
        small_ok = self.pair(("small", self.edge_small), ("small", self.skopeo_small), edge_first)
        if small_ok:
            self.step("edge", "nochange", self.edge_nochange)
        else:
            self.res.fail("edge", self.key("nochange"), "skipped: first small sync failed")
        shutil.rmtree(self.small_data, ignore_errors=True)

    def pair(
        self,
        edge_step: tuple[str, Callable[[], float]],
        skopeo_step: tuple[str, Callable[[], float]],
        edge_first: bool,
    ) -> bool:
        """Both tools, in the given order; True when edge's sync succeeded."""
        steps = [("edge", *edge_step), ("skopeo", *skopeo_step)]
        if not edge_first:
            steps.reverse()
        edge_ok = False
        for tool, base, fn in steps:
            got = self.step(tool, base, fn)
            if tool == "edge":
                edge_ok = got is not None
        return edge_ok


def parse_parents(text: str) -> list[ParentKind]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PARENTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"--parents takes a comma-separated subset of {', '.join(PARENTS)}"
        )
    return [PARENTS[n] for n in PARENTS if n in names]


def run(args: argparse.Namespace) -> int:
    p = QUICK if args.quick else FULL
    p = Params(
        repeat=args.repeat or p.repeat,
        big_mib=args.big_mib or p.big_mib,
        small_count=args.small_count or p.small_count,
        push_parallel=p.push_parallel,
    )
    kinds: list[ParentKind] = args.parents
    workdir: Path = args.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    res = SyncResults(load_before=loadavg(), dirty=dirty_product_files())
    big_bytes = 0
    with ExitStack() as stack:
        parents, big = start_parents(stack, kinds, p, workdir)
        big_bytes = big.total_bytes if big else 0
        for rep in range(p.repeat):
            for parent in parents:
                parent_big = big if parent.kind is BASIC else None  # only there
                Rep(parent, rep, p, res, parent_big, workdir).run()
    res.load_after = loadavg()
    measures = measures_for(kinds)
    table, cpu = render_table(res, measures), render_cpu_table(res, measures, p, big_bytes)
    analysis = ceiling_lines(res, kinds, p)
    print()
    print(table)
    print()
    print(cpu)
    print()
    for line in [*analysis, "", *per_rep_lines(res, measures)]:
        print(line)
    for note in res.notes:
        print(f"note: {note}")
    if not args.no_doc:
        write_section(SECTION, render_section(p, kinds, res, table, cpu, analysis, measures))
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


def table_lines(rows: list[list[str]]) -> str:
    rows = [rows[0], ["---"] * len(rows[0]), *rows[1:]]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def render_table(res: SyncResults, measures: list[Measure]) -> str:
    rows = [["measure", "unit", "edge", "skopeo", "edge/skopeo", "target", "met?"]]
    for m in measures:
        e, s = res.median("edge", m.key), res.median("skopeo", m.key)
        e_cell = fmt(e) if e is not None or not res.errors.get("edge", {}).get(m.key) else "failed"
        if m.base == "nochange":
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
            met = "yes" if r >= TARGET_RATIO[m.base] else "NO"
        rows.append([m.label, m.unit, e_cell, s_cell, ratio, m.target, met])
    return table_lines(rows)


def counted(use: CpuUse, key: str) -> float:
    """CPU seconds charged to a sync: parent + client, plus this process (the token issuer)
    for the token parent. For the Basic parent this process only waits, so it is left out."""
    bench = use.bench if key.startswith(TOKEN.prefix) else 0.0
    return use.parent + use.client + bench


def ceiling(m: Measure, use: CpuUse, p: Params, big_bytes: int) -> str:
    """What the machine's cores allow if CPU were the only limit, in the measure's unit."""
    total = counted(use, m.key)
    if total <= 0:
        return "n/a"
    if m.base == "big":
        return f"{fmt(CORES * big_bytes / MB / total)} MB/s"
    if m.base == "small":
        return f"{fmt(CORES * p.small_count / total)} images/s"
    return f">= {total / CORES:.2f} s"


def cpu_row(m: Measure, tool: str, res: SyncResults, p: Params, big_bytes: int) -> list[str] | None:
    use, value = res.cpu_median(tool, m.key), res.median(tool, m.key)
    if use is None or value is None:
        return None
    n = 1 if m.base == "big" else p.small_count
    ms = [f"{1000 * x / n:.1f}" for x in (use.parent, use.client, use.bench)]
    total = counted(use, m.key)
    cap = ceiling(m, use, p, big_bytes)
    if m.base == "nochange":
        share = f"{100 * (total / CORES) / value:.0f}%" if value else "n/a"
        shown = f"{value:.2f} s"
    else:
        limit = CORES * (big_bytes / MB if m.base == "big" else n) / total if total else 0
        share = f"{100 * value / limit:.0f}%" if limit else "n/a"
        shown = f"{fmt(value)} {m.unit}"
    tokens = str(use.tokens) if m.key.startswith(TOKEN.prefix) else "-"
    return [m.label, tool, shown, *ms, f"{1000 * total / n:.1f}", tokens, cap, share]


def render_cpu_table(res: SyncResults, measures: list[Measure], p: Params, big_bytes: int) -> str:
    rows = [
        [
            "sync",
            "tool",
            "measured",
            "parent CPU ms/image",
            "client CPU ms/image",
            "bench process CPU ms/image",
            "counted CPU ms/image",
            "tokens issued",
            f"CPU-only limit on {CORES} cores",
            "measured / limit (= share of the cores' time used)",
        ]
    ]
    for m in measures:
        for tool in ("edge", "skopeo"):
            row = cpu_row(m, tool, res, p, big_bytes)
            if row is not None:
                rows.append(row)
    return table_lines(rows)


def ceiling_lines(res: SyncResults, kinds: list[ParentKind], p: Params) -> list[str]:
    """The small-image ceiling analysis, in sentences made of the measured medians."""
    lines = []
    for kind in kinds:
        key = kind.prefix + "small"
        e_use, s_use = res.cpu_median("edge", key), res.cpu_median("skopeo", key)
        e_rate, s_rate = res.median("edge", key), res.median("skopeo", key)
        if None in (e_use, s_use, e_rate, s_rate) or not s_rate:
            lines.append(f"- {kind.name} parent: not enough measurements for the analysis.")
            continue
        assert e_use is not None and s_use is not None and e_rate is not None
        lines.append(ceiling_sentence(kind, key, p.small_count, e_use, s_use, e_rate, s_rate))
        fixed = res.cpu_median("edge", kind.prefix + "nochange")
        if fixed is not None:
            lines.append(fixed_cost_sentence(kind, key, p.small_count, e_use, fixed, s_rate))
    return lines


def fixed_cost_sentence(
    kind: ParentKind, key: str, n: int, e_use: CpuUse, fixed: CpuUse, s_rate: float
) -> str:
    """How much of edge's CPU is per run rather than per image: the no-change run starts the
    process, lists the tags and checks each one, and copies nothing."""
    per_image = counted(e_use, key) - counted(fixed, kind.prefix + "nochange")
    if per_image <= 0:
        return f"  - {kind.name} parent: the no-change run cost as much CPU as the sync."
    cap = CORES * n / per_image
    return (
        f"  - Of that, the no-change run right after (process start, listing, one check per "
        f"tag, nothing copied) cost {1000 * fixed.client:.0f} ms of edge CPU and "
        f"{1000 * (counted(fixed, kind.prefix + 'nochange') - fixed.client):.0f} ms of parent "
        "CPU in all. Taking that whole run as a per-run cost (an over-estimate: its checks "
        f"are per tag), copying cost at least {1000 * per_image / n:.1f} ms of CPU per image: "
        f"a limit of at most {fmt(cap)} images/s = {cap / s_rate:.2f}x skopeo's measured "
        "rate, which runs with many more images approach."
    )


def ceiling_sentence(
    kind: ParentKind,
    key: str,
    n: int,
    e_use: CpuUse,
    s_use: CpuUse,
    e_rate: float,
    s_rate: float,
) -> str:
    def ms(x: float) -> str:
        return f"{1000 * x / n:.1f} ms"

    e_total, s_total = counted(e_use, key), counted(s_use, key)
    e_cap, s_cap = CORES * n / e_total, CORES * n / s_total
    issuer = kind is TOKEN
    e_parent = e_use.parent + (e_use.bench if issuer else 0.0)
    s_parent = s_use.parent + (s_use.bench if issuer else 0.0)
    parent_only = CORES * n / e_parent if e_parent > 0 else float("inf")
    need = TARGET_RATIO["small"] * s_rate
    who = "registry + token issuer" if issuer else "registry"
    text = (
        f"- **{kind.name} parent, {n} small images.** edge cost the parent ({who}) "
        f"{ms(e_parent)} of CPU per image and itself {ms(e_use.client)} (process start "
        f"included): {ms(e_total)} per image, so {CORES} cores allow at most "
        f"{fmt(e_cap)} images/s; edge measured {fmt(e_rate)} images/s, "
        f"{100 * e_rate / e_cap:.0f}% of that (parent and edge kept that share of the cores' "
        f"time busy). skopeo cost the parent {ms(s_parent)} and itself {ms(s_use.client)} per "
        f"image (limit {fmt(s_cap)} images/s) and measured {fmt(s_rate)} images/s, "
        f"{100 * s_rate / s_cap:.0f}% of its limit: it copies one image at a time, one "
        "request after another. "
        f"The {TARGET_RATIO['small']:.1f}x target means {fmt(need)} images/s, i.e. at most "
        f"{1000 * CORES / need:.1f} ms of CPU per image for parent and client together; "
        f"the parent alone spends {ms(e_parent)} on each of edge's images, so even a client "
        f"using no CPU at all could reach {fmt(parent_only)} images/s = "
        f"{parent_only / s_rate:.2f}x skopeo's measured rate, and with edge's own CPU the "
        f"limit is {e_cap / s_rate:.2f}x."
    )
    if issuer:
        text += (
            f" The issuer handed out {e_use.tokens} token(s) to edge and {s_use.tokens} to "
            "skopeo during their syncs."
        )
    return text


def per_rep_lines(res: SyncResults, measures: list[Measure]) -> list[str]:
    lines = []
    for m in measures:
        for tool in ("edge", "skopeo"):
            if m.base == "nochange" and tool == "skopeo":
                continue
            vals = res.values.get(tool, {}).get(m.key, [])
            errs = res.errors.get(tool, {}).get(m.key, [])
            cell = ", ".join(f"{v:.2f}" if m.base == "nochange" else fmt(v) for v in vals)
            cell = cell or "none"
            if errs:
                cell += f"; errors: {'; '.join(errs[:2])}"
            lines.append(f"- {m.key} [{tool}] ({m.unit}): {cell}")
            uses = res.cpu.get(tool, {}).get(m.key, [])
            if uses:
                lines.append(
                    f"- {m.key} [{tool}] CPU s (parent / client / bench process): "
                    + ", ".join(f"{u.parent:.2f} / {u.client:.2f} / {u.bench:.2f}" for u in uses)
                )
    for key, vals in res.edge_inner.items():
        lines.append(
            f"- {key} [edge, run record `duration_seconds`] (s): "
            + ", ".join(f"{v:.2f}" for v in vals)
        )
    return lines


def render_section(
    p: Params,
    kinds: list[ParentKind],
    res: SyncResults,
    table: str,
    cpu: str,
    analysis: list[str],
    measures: list[Measure],
) -> str:
    now = sh(["date", "-u"])
    cmdline = " ".join(["bench/bench_sync.py", *sys.argv[1:]])
    parents = [
        f"- `{k.name}`: {k.description}."
        + (
            f" It holds one big image (one uncompressed layer of {p.big_mib} MiB random data) "
            f"in `{BIG_REPO}` and {p.small_count} distinct images of about 5 KiB in "
            f"`{SMALL_REPO}`."
            if k is BASIC
            else f" It holds the same {p.small_count} small images in `{SMALL_REPO}`."
        )
        for k in kinds
    ]
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
        f"Medians of {p.repeat} repetition(s). The parents are the reference registry "
        "(CNCF distribution, Debian's `docker-registry`) on 127.0.0.1 with TLS, the content "
        "pushed once with skopeo:",
        "",
        *parents,
        "",
        "Each repetition syncs each repository into a fresh destination with both tools, the "
        "order alternating between repetitions, the disk flushed (`sync`) before every "
        "measurement: edge is `edge-console sync run --json --ignore-window` as a subprocess "
        "(process start included) on a fresh data dir set up by `enable` and `sync configure "
        "--connection-string-file - --parent-ca ... --repository ...` (not timed); skopeo is "
        "`skopeo sync --src docker --dest dir --all --src-creds ... --src-cert-dir ...` "
        "(process start included). Edge fsyncs what it stores, skopeo's `dir:` does not. "
        "The no-change figure is a second `sync run` on the small data dir right after the "
        "first (wall time of the process). MB = 10^6 bytes.",
        "",
        table,
        "",
        "### Where the CPU goes",
        "",
        "Around every sync the script reads the parent registry's CPU time (utime + stime of "
        "the `docker-registry` process, `/proc/PID/stat`), the sync tool's (the finished "
        "subprocess, `RUSAGE_CHILDREN`) and its own (`time.process_time`, all its threads). "
        "Per image means divided by the number of images synced (the big sync is one image; "
        "the no-change run is divided by the images it checked). The bench process runs the "
        "token parent's issuer in threads and otherwise only waits for the subprocess: for "
        "the Basic parent its column is that waiting (not counted), for the token parent it "
        "is counted as parent CPU. The CPU-only limit is what the machine's "
        f"{CORES} cores would allow if CPU were the only limit: cores / (counted CPU seconds "
        "per image), in the measure's unit (for the no-change run: the shortest time). "
        "Measured / limit is also the share of the cores' time that parent and client kept "
        "busy during the sync; the rest was idle (waiting on round trips or the disk, or a "
        "single-threaded stretch such as process start) or used by other processes (see the "
        "load average above).",
        "",
        cpu,
        "",
        *analysis,
        "",
        "Per-repetition values (and edge's own `duration_seconds` from the run record, "
        "i.e. without process start):",
        "",
        *per_rep_lines(res, measures),
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
    ap.add_argument(
        "--parents",
        type=parse_parents,
        default=[BASIC, TOKEN],
        help="comma-separated: basic (htpasswd Basic auth), token (token auth); default both",
    )
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args(argv)
    if missing_tools(("skopeo", targets.DOCKER_REGISTRY_BIN), "docker-registry skopeo"):
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
