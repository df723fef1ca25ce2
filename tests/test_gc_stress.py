"""GC while clients push, pull and delete over real sockets; and the issue's acceptance run.

* stress: several clients push images (sharing a base layer) over HTTPS in a loop, and delete
  some, while GC runs again and again with a zero grace period; afterwards every push that was
  acknowledged (201) and not deleted pulls back with identical digests.
* acceptance: images pushed with skopeo, some deleted by digest; `edge-console gc
  --grace-period 0 --json` frees exactly what `edge-console usage --json` called reclaimable,
  used bytes drop by that, and every remaining image pulls back intact with skopeo.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from imagebuilder import ImageSpec, make_layer, write_oci_index, write_oci_layout
from support import LiveServer, run_skopeo

from registry_core.errors import GCInProgressError
from registry_core.gc import GarbageCollector, RunRecord
from registry_core.manifests import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 4
PUSHES_PER_CLIENT = 25


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Acked:
    repository: str
    tag: str
    digest: str
    blobs: tuple[str, ...]


class PushFailed(Exception):
    pass


def push_over_http(client: httpx.Client, repo: str, tag: str, blobs: list[bytes]) -> Acked:
    """What docker does: HEAD each blob, upload the missing ones, then PUT the manifest."""
    for data in blobs:
        digest = sha(data)
        if client.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
            continue
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        r = client.put(r.headers["location"], params={"digest": digest}, content=data,
                       headers={"content-type": "application/octet-stream"})
        assert r.status_code == 201, r.text
    config, *layers = blobs
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha(x), "size": len(x)}
                   for x in layers],
    }
    body = json.dumps(doc).encode()
    r = client.put(f"/v2/{repo}/manifests/{tag}", content=body,
                   headers={"content-type": OCI_MANIFEST})
    if r.status_code != 201:
        # A blob the HEAD saw can be collected before the manifest commits (grace 0): the
        # registry says so and nothing is acknowledged; the client retries.
        assert r.status_code == 400 and "MANIFEST_BLOB_UNKNOWN" in r.text, r.text
        raise PushFailed(r.text)
    assert r.headers["docker-content-digest"] == sha(body)
    return Acked(repo, tag, sha(body), tuple(sha(b) for b in blobs))


def pull_and_check(client: httpx.Client, image: Acked) -> None:
    r = client.get(f"/v2/{image.repository}/manifests/{image.tag}",
                   headers={"accept": OCI_MANIFEST})
    assert r.status_code == 200, (image, r.text)
    assert sha(r.content) == image.digest
    doc = json.loads(r.content)
    named = [doc["config"]["digest"], *(x["digest"] for x in doc["layers"])]
    assert tuple(named) == image.blobs
    for digest in named:
        blob = client.get(f"/v2/{image.repository}/blobs/{digest}", follow_redirects=True)
        assert blob.status_code == 200, (image, digest, blob.text)
        assert sha(blob.content) == digest


@pytest.mark.socket
@pytest.mark.slow
def test_pushes_during_repeated_gc_all_pull_back(live_server: LiveServer) -> None:
    server = live_server
    base = os.urandom(20_000)  # shared by every image: the blob most exposed to the GC
    acked: list[Acked] = []
    deleted: set[tuple[str, str]] = set()
    lock = threading.Lock()
    errors: list[BaseException] = []
    retries = [0]
    stop_gc = threading.Event()
    runs: list[RunRecord] = []

    def client_loop(n: int) -> None:
        try:
            with server.client(timeout=60) as client:
                for i in range(PUSHES_PER_CLIENT):
                    repo = "stress/shared" if i % 3 == 0 else f"stress/c{n}"
                    tag = f"c{n}-{i}"
                    blobs = [json.dumps({"os": "linux", "n": n, "i": i}).encode(), base,
                             os.urandom(3000)]
                    for _attempt in range(100):
                        try:
                            image = push_over_http(client, repo, tag, blobs)
                            break
                        except PushFailed:
                            with lock:
                                retries[0] += 1
                    else:
                        raise AssertionError(f"push {repo}:{tag} never acknowledged")
                    with lock:
                        acked.append(image)
                    if i % 4 == 1:  # delete some by digest: their blobs become garbage
                        r = client.delete(f"/v2/{repo}/manifests/{image.digest}")
                        assert r.status_code == 202, r.text
                        with lock:
                            deleted.add((repo, image.digest))
        except BaseException as exc:
            errors.append(exc)

    def gc_loop() -> None:
        collector = GarbageCollector(server.service.registry)
        while not stop_gc.is_set():
            try:
                runs.append(collector.run(trigger="manual", grace_period=0,
                                          delete_untagged=True))
                # Back-to-back zero-grace runs can collect a client's fresh blobs before each
                # manifest PUT forever (that is what the grace period is for); a short pause
                # lets every client through while runs still overlap the pushes.
                time.sleep(random.uniform(0.0, 0.05))
            except GCInProgressError:
                time.sleep(0.01)
            except BaseException as exc:
                errors.append(exc)
                return

    gc_thread = threading.Thread(target=gc_loop)
    gc_thread.start()
    clients = [threading.Thread(target=client_loop, args=(n,)) for n in range(CLIENTS)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(300)
    stop_gc.set()
    gc_thread.join(60)
    assert not errors, errors
    assert len(acked) == CLIENTS * PUSHES_PER_CLIENT
    assert len(runs) >= 3, "GC should have run several times during the pushes"
    assert all(r.status == "succeeded" for r in runs)
    assert sum(r.blobs_deleted for r in runs) > 0
    # One more run to be sure nothing left is treated as garbage wrongly.
    final = GarbageCollector(server.service.registry).run(grace_period=0, delete_untagged=True)
    assert final.status == "succeeded"
    with server.client(timeout=60) as client:
        for image in acked:
            if (image.repository, image.digest) in deleted:
                continue
            pull_and_check(client, image)
    print(f"\n{len(runs)} GC runs, {sum(r.blobs_deleted for r in runs)} blobs collected, "
          f"{retries[0]} manifest pushes retried")


# ---- the acceptance run ----------------------------------------------------------------


def edge(server: LiveServer, *args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "console", "--data-dir", str(server.service.datadir.root),
         *args, "--json"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


@pytest.mark.socket
@pytest.mark.skopeo
def test_skopeo_push_delete_gc_matches_usage(
    skopeo: str, live_server: LiveServer, tmp_path: Path
) -> None:
    server = live_server
    dest = ["--dest-creds", server.creds, "--dest-cert-dir", str(server.cert_dir)]
    src = ["--src-creds", server.creds, "--src-cert-dir", str(server.cert_dir)]
    specs = [ImageSpec(tag=f"v{i}", layers=(make_layer(f"common {i % 2}"),
                                            make_layer(os.urandom(4000))))
             for i in range(4)]
    built = write_oci_layout(tmp_path / "src", specs)
    multi = write_oci_index(tmp_path / "multi", tag="multi")
    for image in built:
        run_skopeo(skopeo, "copy", "--preserve-digests", *dest, image.reference,
                   f"docker://{server.address}/accept/app:{image.tag}")
    run_skopeo(skopeo, "copy", "--all", "--preserve-digests", *dest, multi.reference,
               f"docker://{server.address}/accept/multi:latest")
    with server.client() as client:
        for image in (built[0], built[3]):
            r = client.delete(f"/v2/accept/app/manifests/{image.digest}")
            assert r.status_code == 202, r.text
        r = client.delete(f"/v2/accept/multi/manifests/{multi.digest}")
        assert r.status_code == 202, r.text

    before = edge(server, "usage")
    assert isinstance(before["reclaimable_bytes"], int) and before["reclaimable_bytes"] > 0
    record = edge(server, "gc", "--grace-period", "0")
    assert record["status"] == "succeeded"
    assert record["bytes_freed"] == before["reclaimable_bytes"]
    after = edge(server, "usage")
    assert after["used_bytes"] == before["used_bytes"] - record["bytes_freed"]  # type: ignore[operator]
    assert after["reclaimable_bytes"] == 0

    for image in (built[1], built[2]):
        out = tmp_path / f"pulled-{image.tag}"
        run_skopeo(skopeo, "copy", "--preserve-digests", *src,
                   f"docker://{server.address}/accept/app:{image.tag}", f"dir:{out}")
        assert sha((out / "manifest.json").read_bytes()) == str(image.digest)
        for digest in image.blob_digests:
            assert sha((out / digest.hex).read_bytes()) == str(digest)
    # The children of the deleted index stay (untagged manifests are kept by default).
    for child in multi.manifests:
        out = tmp_path / f"child-{child.digest.hex[:8]}"
        run_skopeo(skopeo, "copy", *src,
                   f"docker://{server.address}/accept/multi@{child.digest}", f"dir:{out}")
        assert sha((out / "manifest.json").read_bytes()) == str(child.digest)
