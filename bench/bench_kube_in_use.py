"""Time to list the images in use by 2,000 pods (plus their Deployments) on the Kubernetes
test bed (tests/kubebed.py: etcd + kube-apiserver built by .ci/build-kube-testbed), next to
the official client's typed listing of the same pods and `kubectl get pods -A -o json`.
Medians of several rounds.

    .venv/bin/python bench/bench_kube_in_use.py [--pods 2000] [--no-doc]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import kubernetes.client as k8s  # noqa: E402
from doc import cpu_model, write_section  # noqa: E402
from kubebed import container_status, start_bed, stop_all, write_pod_status  # noqa: E402

from registry_core.browse import manifest_graph  # noqa: E402
from registry_core.datadir import DataDir  # noqa: E402
from registry_core.enablement import enable  # noqa: E402
from registry_core.kube.api import KubeApi  # noqa: E402
from registry_core.kube.images import Endpoint  # noqa: E402
from registry_core.kube.in_use import collect  # noqa: E402
from registry_core.kube.settings import KubeSettings  # noqa: E402
from registry_core.registry import Registry  # noqa: E402

SECTION = "bench_kube_in_use"
ROUNDS = 5
NAMESPACES = 20
DIGEST = "sha256:" + "ab" * 32


def populate(api: k8s.ApiClient, endpoint: str, pods: int) -> None:
    core = k8s.CoreV1Api(api)
    per_namespace = pods // NAMESPACES
    names = [f"bench-{i:02d}" for i in range(NAMESPACES)]
    for name in names:
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))

    def one(index: int) -> None:
        namespace, name = names[index % NAMESPACES], f"pod-{index:05d}"
        image = f"{endpoint}/team{index % 50}/app:v{index % 7}"
        core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name,
                                                            "labels": {"app": "bench"}},
            "spec": {"containers": [
                {"name": "main", "image": image},
                {"name": "sidecar", "image": "docker.io/library/envoy:1.30"},
            ], "imagePullSecrets": [{"name": "ase-ecr-credentials"}]},
        })
        write_pod_status(api, namespace, name, [
            container_status("main", image, f"{endpoint}/team{index % 50}/app@{DIGEST}"),
            container_status("sidecar", "docker.io/library/envoy:1.30",
                             f"docker.io/library/envoy@{DIGEST}"),
        ])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(per_namespace * NAMESPACES)))


def typed_pods(api: k8s.ApiClient) -> int:
    """Every pod through the client's generated models, 500 a page (what we do raw)."""
    core, token, count = k8s.CoreV1Api(api), None, 0
    while True:
        page = core.list_pod_for_all_namespaces(limit=500, _continue=token)
        count += len(page.items)
        token = page.metadata._continue if page.metadata else None
        if not token:
            return count


def median_seconds(action: Callable[[], object], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(pods: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-kube-") as tmp:
        bed, processes = start_bed(Path(tmp))
        try:
            datadir = DataDir(Path(tmp) / "data")
            enable(datadir, node_ip="127.0.0.1", port=31001)
            registry = Registry(datadir)
            official = bed.api_client()
            populate(official, registry.config.endpoint, pods)
            settings = KubeSettings(bed.kubeconfig, bed.context, "--kubeconfig")
            ours = KubeApi.connect(settings)
            graph = manifest_graph(registry)
            config = registry.config
            endpoint = Endpoint(frozenset({config.endpoint_host, config.node_ip}), config.port)
            found = collect(ours, endpoint, graph)
            assert sum(u.kind == "Pod" for u in found.uses) == pods // NAMESPACES * NAMESPACES
            results = {
                "edge-console in use (pods + 6 workload kinds)":
                    median_seconds(lambda: collect(ours, endpoint, graph)),
                "official client, typed models (pods only)": median_seconds(
                    lambda: typed_pods(official), rounds=3),
            }
            kubectl = shutil.which("kubectl")
            if kubectl:
                results["kubectl get pods -A -o json"] = median_seconds(lambda: subprocess.run(
                    [kubectl, "--kubeconfig", str(bed.kubeconfig), "get", "pods", "-A",
                     "-o", "json"], check=True, capture_output=True), rounds=3)
            ours.close()
            official.close()  # type: ignore[no-untyped-call]
            registry.close()
            return results
        finally:
            stop_all(processes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    results = run(args.pods)
    ours = next(iter(results.values()))
    rows = [f"| {label} | {seconds * 1000:.0f} ms | {seconds / ours:.2f}x |"
            for label, seconds in results.items()]
    section = "\n".join([
        f"<!-- {SECTION}:start -->",
        "## Images in use by the cluster (`bench/bench_kube_in_use.py`)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {cpu_model()}; "
        f"{args.pods:,} pods (two containers each, statuses written as a kubelet would) in "
        f"{NAMESPACES} namespaces on the test bed's kube-apiserver 1.20 (etcd 3.5, same "
        "machine); median of the rounds. Target: under 1 s for 2,000 pods.",
        "",
        "| listing | time | vs ours |",
        "|---|---:|---:|",
        *rows,
        f"<!-- {SECTION}:end -->",
    ])
    print(section)
    if not args.no_doc:
        write_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
