"""Where a GC run spends its time: build a store in-process, delete half the images through
the core, then profile one GC (grace 0) with cProfile. No network, no reference registry;
for comparing two trees (run it with PYTHONPATH set to the other tree's root).

    .venv/bin/python bench/gc_profile.py [--images N] [--top K]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import time
from pathlib import Path

from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.gc import GarbageCollector
from registry_core.identity import CONSOLE
from registry_core.manifests import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST
from registry_core.registry import Registry


def push(reg: Registry, repo: str, tag: str, i: int) -> str:
    layers = []
    for _ in range(4):
        info = reg.put_blob(repo, os.urandom(512), who=CONSOLE)
        layers.append({"mediaType": DOCKER_LAYER, "digest": str(info.digest), "size": 512})
    config = json.dumps({"architecture": "amd64", "i": i}).encode()
    cfg = reg.put_blob(repo, config, who=CONSOLE)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": str(cfg.digest), "size": len(config)},
            "layers": layers,
        }
    ).encode()
    return str(reg.put_manifest(repo, tag, body, DOCKER_MANIFEST, who=CONSOLE).digest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        datadir = DataDir(Path(tmp) / "data")
        enable(datadir, device_name="edge", dns_domain="test", node_ip="127.0.0.1", port=31999)
        reg = Registry(datadir)
        started = time.perf_counter()
        pushed = [
            (f"r{i % 20}/app", push(reg, f"r{i % 20}/app", f"t{i}", i)) for i in range(args.images)
        ]
        print(f"built {args.images} images in {time.perf_counter() - started:.1f} s")
        for repo, digest in pushed[::2]:
            reg.delete_manifest(repo, digest, who=CONSOLE)
        collector = GarbageCollector(reg)
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        record = collector.run(grace_period=0)
        profile.disable()
        took = time.perf_counter() - started
        print(f"gc {took:.2f} s, {record.status}, {record.blobs_deleted} blobs deleted")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
        collector.close()
        reg.close()


if __name__ == "__main__":
    main()
