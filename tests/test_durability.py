"""What `edge-console serve` fsyncs, and in what order, seen from outside with strace.

The server runs under `strace -f -y` on the machine's real filesystem while a client makes an
upload session, sends a chunk, finishes the blob and puts a manifest (each into a fresh data
dir, so that the blob directories are new). The system calls must show what
docs/durability.md promises: a file's data before the rename that publishes it, the
directory after every new entry (new directories included, in their parent), and all of it
before the SQLite commit that acknowledges the request.
"""

from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import require_tool
from test_e2e_cli_serve import oci_manifest, start_serve

from registry_core.manifests import OCI_MANIFEST
from registry_core.reference import Digest, digest_bytes

pytestmark = [pytest.mark.socket]

TRACED = "fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat,openat"
CALL = re.compile(r"^\d+\s+(?P<name>\w+)\((?P<args>.*)")
FD_PATH = re.compile(r"^\d+<(?P<path>[^>]*)>")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Call:
    index: int
    name: str
    paths: tuple[str, ...]
    """fsync: the fd's path; rename: source and target; mkdir and openat: the path."""
    flags: str


def parse(log: Path) -> list[Call]:
    calls = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = CALL.match(line)
        if m is None or "resumed>" in line or (" = -1 " in line and m["name"] != "openat"):
            continue
        args = m["args"]
        if m["name"] in ("fsync", "fdatasync"):
            fd = FD_PATH.match(args)
            paths: tuple[str, ...] = (fd["path"],) if fd else ()
        else:
            paths = tuple(QUOTED.findall(args))
        if m["name"] == "openat" and ("O_CREAT" not in args or " = -1 " in line):
            continue
        calls.append(Call(len(calls), m["name"], paths, args))
    return calls


class Trace:
    def __init__(self, calls: list[Call]) -> None:
        self.calls = calls

    def first(self, name: str, path: str, after: int = -1) -> int:
        """Index of the first call `name` on `path` (the target, for a rename) after `after`."""
        for call in self.calls[after + 1 :]:
            if call.name.startswith(name) and call.paths and call.paths[-1] == path:
                return call.index
        raise AssertionError(f"no {name}({path}) after call {after}")

    def fsync(self, path: str, after: int = -1) -> int:
        for call in self.calls[after + 1 :]:
            if call.name in ("fsync", "fdatasync") and call.paths == (path,):
                return call.index
        raise AssertionError(f"no fsync of {path} after call {after}")


def blob_path(data: Path, digest: Digest) -> Path:
    return data / "blobs" / digest.algorithm / digest.hex[:2] / digest.hex


def test_fsyncs_publish_files_and_directories_before_the_commit(tmp_path: Path) -> None:
    strace = require_tool("strace")
    log = tmp_path / "strace.log"
    served = start_serve(
        tmp_path, prefix=(strace, "-f", "-qq", "-y", "-e", f"trace={TRACED}", "-o", str(log))
    )
    data = served.data.resolve()
    wal = str(data / "registry.db-wal")
    layer, config = os.urandom(300_000), json.dumps({"architecture": "arm64"}).encode()
    try:
        with served.client(timeout=60) as client:
            start = client.post("/v2/dur/app/blobs/uploads/")
            assert start.status_code == 202, start.text
            location = start.headers["location"]
            upload_id = location.rstrip("/").rsplit("/", 1)[-1]
            r = client.patch(
                location, content=layer, headers={"Content-Range": f"0-{len(layer) - 1}"}
            )
            assert r.status_code == 202, r.text
            r = client.put(location, params={"digest": str(digest_bytes(layer))})
            assert r.status_code == 201, r.text
            r = client.post(
                "/v2/dur/app/blobs/uploads/",
                params={"digest": str(digest_bytes(config))},
                content=config,
            )
            assert r.status_code == 201, r.text
            body = oci_manifest(config, [])
            r = client.put(
                "/v2/dur/app/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
            )
            assert r.status_code == 201, r.text
        # SIGTERM to the server itself (strace would detach): strace exits with its code.
        os.kill(json.loads(served.state_file.read_text())["pid"], signal.SIGTERM)
        assert served.proc.wait(30) == 0
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()
    trace = Trace(parse(log))
    uploads, blobs = str(data / "uploads"), str(data / "blobs")

    # The upload file: created, its directory fsynced, then the session row committed.
    upload_file = str(data / "uploads" / upload_id)
    created = trace.first("openat", upload_file)
    trace.fsync(wal, after=trace.fsync(uploads, after=created))

    # The chunk: the file's data fsynced before the row that acknowledges it.
    chunk_synced = trace.fsync(upload_file, after=created)
    trace.fsync(wal, after=chunk_synced)

    # The blob: new directories made and their parents fsynced, the rename, the directory
    # fsynced, then the commit. The data was fsynced before the rename.
    layer_path = blob_path(data, digest_bytes(layer))
    made_algo = trace.first("mkdir", str(layer_path.parent.parent))
    made_prefix = trace.first("mkdir", str(layer_path.parent), after=made_algo)
    assert trace.fsync(blobs, after=made_algo) < made_prefix
    renamed = trace.first("rename", str(layer_path), after=made_prefix)
    assert trace.fsync(str(layer_path.parent.parent), after=made_prefix) < renamed
    assert chunk_synced < renamed  # the closing PUT had no body: nothing more to sync
    trace.fsync(wal, after=trace.fsync(str(layer_path.parent), after=renamed))

    # The manifest body: a temporary file fsynced, renamed into place, directory, commit.
    for digest in (digest_bytes(config), digest_bytes(body)):
        target = blob_path(data, digest)
        renamed = trace.first("rename", str(target))
        source = trace.calls[renamed].paths[0]
        assert source.startswith(uploads + "/.tmp-"), source
        assert trace.fsync(source) < renamed
        trace.fsync(wal, after=trace.fsync(str(target.parent), after=renamed))
