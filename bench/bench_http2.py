"""HTTP/1.1 only vs HTTP/2 offered: skopeo push and pull of one 256 MiB layer.

Go clients (skopeo, containerd) negotiate HTTP/2 whenever the server offers it, so the
server's default must be the faster of the two for them. Two `edge-console serve` processes
run at once, one per mode (EDGE_CONSOLE_HTTP=1 or auto), measured in turn with the order
alternating; medians of --repeat repetitions.

    .venv/bin/python bench/bench_http2.py [--repeat 3] [--big-mib 256] [--no-doc]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import images
from bench_registry import CACHE_DIR, measure_pull_big, measure_push_big
from doc import write_section
from targets import Target, edge_registry

SECTION = "bench_http2"
WORKDIR = Path(__file__).resolve().parent / "work" / "bench_http2"
MODES = ("1", "auto")


@contextmanager
def edge_in_mode(mode: str, workdir: Path) -> Iterator[Target]:
    saved = os.environ.get("EDGE_CONSOLE_HTTP")
    os.environ["EDGE_CONSOLE_HTTP"] = mode
    try:
        with edge_registry(workdir) as target:
            yield target
    finally:
        if saved is None:
            os.environ.pop("EDGE_CONSOLE_HTTP", None)
        else:
            os.environ["EDGE_CONSOLE_HTTP"] = saved


def negotiated(target: Target) -> str:
    """The protocol curl gets when it offers HTTP/2 (as Go clients do)."""
    out = subprocess.run(
        [
            "curl",
            "-s",
            "--http2",
            "--cacert",
            str(target.ca_cert_path),
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            f"https://{target.url_host_port}/v2/",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "HTTP/" + out.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    payload = images.ensure_random_file(
        CACHE_DIR / f"random-{args.big_mib}MiB.bin", args.big_mib << 20
    )
    results: dict[tuple[str, str], list[float]] = {}
    protocols: dict[str, str] = {}
    with ExitStack() as stack:
        targets = {m: stack.enter_context(edge_in_mode(m, WORKDIR / m)) for m in MODES}
        protocols = {m: negotiated(t) for m, t in targets.items()}
        for rep in range(args.repeat):
            order = MODES if rep % 2 == 0 else MODES[::-1]
            for mode in order:
                t = targets[mode]
                img = images.build_big_image(WORKDIR / f"img-{mode}-{rep}", payload)
                repo = f"bench/h2-{rep}"
                push = measure_push_big(t, img, repo)
                pull = measure_pull_big(t, img, repo, WORKDIR / f"pull-{mode}")
                results.setdefault((mode, "push"), []).append(push)
                results.setdefault((mode, "pull"), []).append(pull)
                print(
                    f"rep {rep} mode {mode}: push {push:.0f} MB/s, pull {pull:.0f} MB/s", flush=True
                )
    section = render(args, results, protocols)
    print(section)
    if not args.no_doc:
        write_section(SECTION, section)
    return 0


def render(
    args: argparse.Namespace,
    results: dict[tuple[str, str], list[float]],
    protocols: dict[str, str],
) -> str:
    def med(mode: str, op: str) -> float:
        return statistics.median(results[(mode, op)])

    rows = []
    for op in ("push", "pull"):
        h1, h2 = med("1", op), med("auto", op)
        runs = ", ".join(f"{v:.0f}" for v in results[("1", op)])
        runs2 = ", ".join(f"{v:.0f}" for v in results[("auto", op)])
        rows.append(
            f"| skopeo {op}, {args.big_mib} MiB | {h1:.0f} ({runs}) | "
            f"{h2:.0f} ({runs2}) | {h2 / h1:.2f}x |"
        )
    return "\n".join(
        [
            f"<!-- {SECTION}:start -->",
            "## HTTP/1.1 only vs HTTP/2 offered (`bench/bench_http2.py`)",
            "",
            f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
            f"medians of {args.repeat}, MB/s (runs in brackets). Negotiated with a client that "
            f"offers HTTP/2: default mode {protocols.get('1')}, auto mode {protocols.get('auto')}.",
            "",
            "| benchmark | HTTP/1.1 only (default) | HTTP/2 offered | h2/h1 |",
            "| --- | --- | --- | --- |",
            *rows,
            f"<!-- {SECTION}:end -->",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
