"""podman against the real TLS server (in-process `live_server`) and the offline transfer.

Images are built on disk by tests/imagebuilder.py and brought into podman with `podman pull
oci:DIR:TAG` / `dir:DIR` (no network, no daemon). Every podman here is hermetic: its own
storage root, temp dirs, HOME, containers.conf, registries.conf, storage.conf and auth file
under the test's tmp dir, and its own run root, a short directory in /tmp (vfs storage,
cgroupfs, no events; the CNI network backend, with its lock in --network-config-dir, where
netavark's would make /run/containers/networks). The one thing podman 4.3 still shares as
root is containers/image's blob-info cache in /var/lib/containers/cache (skopeo uses the same
file): hints about where blobs are, never images.

What podman does to an image on its way: a push recompresses the layers (Go's gzip), so the
manifest digest pushed differs from the source's while the config, and so the image ID, stays;
`podman load` reads an archive as an OCI archive first (index.json) and as a docker-archive
only when that fails (more than one image); a docker-archive's manifest is one podman
generates (plain layers, digest = diff_id).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from imagebuilder import (
    BuiltImage,
    ImageSpec,
    write_docker_dir,
    write_oci_image,
    write_oci_index,
)
from support import LiveServer, require_tool, wait_until
from test_cli_basics import cli_json

from registry_core.datadir import DataDir
from registry_core.manifests import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

pytestmark = [pytest.mark.socket]

TIMEOUT = 300.0
"""Hang guard for one podman command."""
ENV_DROPPED = ("CONTAINERS_", "REGISTRY_AUTH_FILE", "DOCKER_", "XDG_", "BUILDAH_", "PODMAN_")
CONTAINERS_CONF = """\
[engine]
events_logger = "none"
cgroup_manager = "cgroupfs"
[network]
network_backend = "cni"
"""


# ---- a hermetic podman ----------------------------------------------------------------------


@dataclass(frozen=True)
class Podman:
    """One podman with its own storage and configuration under `home`."""

    binary: str
    home: Path
    run_root: Path
    """A short directory in /tmp: podman refuses a run root longer than 50 characters."""

    @classmethod
    def create(cls, binary: str, home: Path, run_root: Path) -> Podman:
        for sub in ("root", "tmp", "net"):
            (home / sub).mkdir(parents=True)
        (home / "containers.conf").write_text(CONTAINERS_CONF)
        (home / "registries.conf").write_text("unqualified-search-registries = []\n")
        (home / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{home / "root"}"\n'
            f'runroot = "{run_root}"\n')
        (home / "auth.json").write_text("{}")
        return cls(binary, home, run_root)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_DROPPED)}
        return env | {
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            "CONTAINERS_CONF": str(self.home / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.home / "registries.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.home / "storage.conf"),
            "REGISTRY_AUTH_FILE": str(self.home / "auth.json"),
        }

    def _call(self, args: tuple[str, ...], stdin: str) -> subprocess.CompletedProcess[str]:
        home = self.home
        command = [
            self.binary, "--root", str(home / "root"), "--runroot", str(self.run_root),
            "--storage-driver", "vfs", "--tmpdir", str(home / "tmp"),
            "--network-config-dir", str(home / "net"), "--events-backend", "none",
            "--cgroup-manager", "cgroupfs", *args,
        ]
        return subprocess.run(command, input=stdin, capture_output=True, text=True,
                              env=self._env(), cwd=home, timeout=TIMEOUT)

    def run(self, *args: str, stdin: str = "") -> str:
        """Run podman; on failure the assertion shows its stderr. Returns stdout."""
        proc = self._call(args, stdin)
        assert proc.returncode == 0, f"podman {' '.join(args)} failed: {proc.stderr.strip()}"
        return proc.stdout

    def fails(self, *args: str) -> str:
        """Run podman expecting failure; returns its stderr."""
        proc = self._call(args, "")
        assert proc.returncode != 0, f"podman {' '.join(args)} unexpectedly succeeded"
        return proc.stderr

    def inspect(self, ref: str) -> dict[str, Any]:
        found = json.loads(self.run("image", "inspect", ref))
        assert len(found) == 1, found
        assert isinstance(found[0], dict)
        return found[0]

    def bring_in(self, image: BuiltImage, name: str) -> str:
        """An image built on disk pulled into this podman's storage and tagged `name`; its ID."""
        image_id = self.run("pull", "-q", image.reference).strip()
        self.run("tag", image_id, name)
        return image_id


NewPodman = Callable[[str], Podman]


@pytest.fixture
def new_podman(tmp_path: Path) -> Iterator[NewPodman]:
    """Makes a hermetic podman (a fresh, empty storage) per name."""
    binary = require_tool("podman")
    run_roots: list[Path] = []

    def make(name: str) -> Podman:
        run_roots.append(Path(tempfile.mkdtemp(prefix="podman-run-", dir="/tmp")))
        return Podman.create(binary, tmp_path / "podman" / name, run_roots[-1])

    yield make
    for run_root in run_roots:
        shutil.rmtree(run_root, ignore_errors=True)


def tls_auth(server: LiveServer) -> list[str]:
    return ["--cert-dir", str(server.cert_dir), "--creds", server.creds]


def config_id(image: BuiltImage) -> str:
    """podman's image ID: the hex of the config digest."""
    return image.manifests[0].config.digest.hex


def diff_ids(spec: ImageSpec) -> list[str]:
    return [str(layer.diff_id) for layer in spec.layer_list()]


def served(server: LiveServer, repository: str, reference: str) -> tuple[str, str, Any]:
    """(Docker-Content-Digest, Content-Type, manifest) as the registry serves them."""
    with server.client() as client:
        got = client.get(f"/v2/{repository}/manifests/{reference}")
    assert got.status_code == 200, got.text
    return got.headers["docker-content-digest"], got.headers["content-type"], got.json()


def loaded_names(output: str) -> list[str]:
    return [line.removeprefix("Loaded image: ") for line in output.splitlines()
            if line.startswith("Loaded image: ")]


# ---- push and pull ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pushed:
    spec: ImageSpec
    image: BuiltImage
    repository: str
    tag: str
    digest: str


def push_with_podman(podman: Podman, server: LiveServer, tmp_path: Path) -> list[Pushed]:
    """An OCI image pushed as OCI, a Docker-format one as v2s2 (they share the base layer)."""
    oci_spec, docker_spec = ImageSpec(tag="v1"), ImageSpec(tag="docker")
    sources = (
        (oci_spec, write_oci_image(tmp_path / "src-oci", oci_spec), "e2e/app", "v1", "oci"),
        (docker_spec, write_docker_dir(tmp_path / "src-docker", docker_spec), "e2e/docker",
         "1", "v2s2"),
    )
    pushed = []
    for spec, image, repository, tag, fmt in sources:
        image_id = podman.run("pull", "-q", image.reference).strip()
        assert image_id == config_id(image)
        digest_file = tmp_path / f"{tag}.digest"
        podman.run("push", "--format", fmt, *tls_auth(server), "--digestfile", str(digest_file),
                   image_id, f"{server.address}/{repository}:{tag}")
        pushed.append(Pushed(spec, image, repository, tag, digest_file.read_text().strip()))
    return pushed


def test_podman_pushes_and_pulls_back_by_tag_and_by_digest(
    new_podman: NewPodman, live_server: LiveServer, tmp_path: Path
) -> None:
    server = live_server
    pushed = push_with_podman(new_podman("pusher"), server, tmp_path)
    for item, media_type in zip(pushed, (OCI_MANIFEST, DOCKER_MANIFEST), strict=True):
        digest, content_type, manifest = served(server, item.repository, item.tag)
        assert digest == item.digest  # what podman pushed is what the registry names
        assert content_type == media_type
        assert manifest["config"]["digest"] == str(item.image.manifests[0].config.digest)
        assert len(manifest["layers"]) == len(item.image.manifests[0].layers)
        name = f"{server.address}/{item.repository}"
        for how, ref in (("tag", f"{name}:{item.tag}"), ("digest", f"{name}@{item.digest}")):
            fresh = new_podman(f"{item.tag}-by-{how}")
            fresh.run("pull", "-q", *tls_auth(server), ref)
            info = fresh.inspect(ref)
            assert info["Id"] == config_id(item.image), ref
            assert info["Digest"] == item.digest, ref
            assert f"{name}@{item.digest}" in info["RepoDigests"], ref
            assert info["RootFS"]["Layers"] == diff_ids(item.spec), ref


def test_podman_pushes_a_manifest_list_and_pulls_this_machines_platform(
    new_podman: NewPodman, live_server: LiveServer, tmp_path: Path
) -> None:
    server = live_server
    multi = write_oci_index(tmp_path / "src", tag="multi")
    podman = new_podman("lists")
    podman.run("manifest", "create", "localhost/list:1")
    podman.run("manifest", "add", "--all", "localhost/list:1", multi.reference)
    digest_file = tmp_path / "list.digest"
    podman.run("manifest", "push", "--all", *tls_auth(server), "--digestfile", str(digest_file),
               "localhost/list:1", f"docker://{server.address}/e2e/list:1")
    digest = digest_file.read_text().strip()

    served_digest, content_type, index = served(server, "e2e/list", "1")
    assert served_digest == digest
    assert content_type == OCI_INDEX  # podman writes its list of OCI images as an OCI index
    configs = {}
    for entry in index["manifests"]:
        plat = entry["platform"]
        _, _, child = served(server, "e2e/list", entry["digest"])
        key = "/".join(filter(None, (plat["os"], plat["architecture"], plat.get("variant"))))
        configs[key] = child["config"]["digest"]
    assert configs == {m.platform: str(m.config.digest) for m in multi.manifests}

    arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    native = next(m for m in multi.manifests if (m.platform or "").startswith(f"linux/{arch}"))
    fresh = new_podman("list-by-digest")
    ref = f"{server.address}/e2e/list@{digest}"
    fresh.run("pull", "-q", *tls_auth(server), ref)
    assert fresh.inspect(ref)["Id"] == native.config.digest.hex


# ---- login --------------------------------------------------------------------------------


def base_401s(server: LiveServer) -> int:
    return server.service.asgi.counts.routes["base"].codes.get(401, 0)


def test_podman_login_refuses_a_wrong_password_and_stores_the_right_one(
    new_podman: NewPodman, live_server: LiveServer, tmp_path: Path
) -> None:
    server = live_server
    podman = new_podman("login")
    authfile = tmp_path / "login" / "auth.json"
    authfile.parent.mkdir()
    login = ["login", "--authfile", str(authfile), "--cert-dir", str(server.cert_dir),
             "--username", server.username]

    refused = podman.fails(*login, "--password", "not-" + server.password, server.address)
    assert f'logging into "{server.address}": invalid username/password' in refused
    wait_until(lambda: base_401s(server) > 0, "the registry's 401 on /v2/")
    assert not authfile.exists()

    out = podman.run(*login, "--password-stdin", server.address, stdin=server.password + "\n")
    assert "Login Succeeded" in out
    token = base64.b64encode(server.creds.encode()).decode()
    assert json.loads(authfile.read_text()) == {"auths": {server.address: {"auth": token}}}

    # The stored login is what a push and a pull use; after logout the pull is refused.
    image = write_oci_image(tmp_path / "src", ImageSpec(tag="v1"))
    ref = f"{server.address}/e2e/login:v1"
    podman.bring_in(image, ref)
    with_authfile = ["--authfile", str(authfile), "--cert-dir", str(server.cert_dir)]
    podman.run("push", *with_authfile, ref)
    podman.run("pull", "-q", *with_authfile, ref)
    podman.run("logout", "--authfile", str(authfile), server.address)
    assert json.loads(authfile.read_text()) == {"auths": {}}
    assert "unauthorized" in podman.fails("pull", *with_authfile, ref)


# ---- offline transfer: edge-console export -> podman ---------------------------------------


def test_a_docker_archive_export_loads_in_podman(
    new_podman: NewPodman, datadir: DataDir, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    v1 = write_oci_image(layout, ImageSpec(tag="v1"))
    multi = write_oci_index(layout, tag="multi")
    cli_json(datadir.root, "import", str(layout), "--repository", "e2e/app")

    # One image: podman reads the archive's OCI index, so the manifest digest is the stored one.
    one = tmp_path / "one.tar"
    cli_json(datadir.root, "export", "e2e/app:v1", str(one), "--format", "docker-archive")
    podman = new_podman("load-one")
    assert loaded_names(podman.run("load", "-i", str(one))) == ["localhost/e2e/app:v1"]
    info = podman.inspect("localhost/e2e/app:v1")
    assert info["Id"] == config_id(v1)
    assert info["Digest"] == str(v1.digest)

    # The same archive through podman's docker-archive reader (manifest.json).
    podman = new_podman("pull-archive")
    podman.run("pull", "-q", f"docker-archive:{one}")
    assert podman.inspect("localhost/e2e/app:v1")["Id"] == config_id(v1)

    # Two images (one of them an index: the child of this machine's platform is written).
    two = tmp_path / "two.tar"
    exported = cli_json(datadir.root, "export", "e2e/app:v1", "e2e/app:multi", str(two),
                        "--format", "docker-archive")
    child = {i["reference"]: i["digest"] for i in exported["images"]}["e2e/app:multi"]
    native = next(m for m in multi.manifests if str(m.digest) == child)
    podman = new_podman("load-two")
    names = loaded_names(podman.run("load", "-i", str(two)))
    assert sorted(names) == ["localhost/e2e/app:multi", "localhost/e2e/app:v1"]
    assert podman.inspect("localhost/e2e/app:v1")["Id"] == config_id(v1)
    assert podman.inspect("localhost/e2e/app:multi")["Id"] == native.config.digest.hex


# ---- offline transfer: podman save -> edge-console import ----------------------------------


@dataclass(frozen=True)
class Saved:
    path: Path
    images: dict[str, str]
    """podman's name of each saved image -> its image ID."""


@pytest.fixture
def saved_images(new_podman: NewPodman, tmp_path: Path) -> Callable[[str], Saved]:
    podman = new_podman("saver")
    oci = write_oci_image(tmp_path / "src-oci", ImageSpec(tag="v1"))
    docker = write_docker_dir(tmp_path / "src-docker", ImageSpec(tag="docker"))
    ids = {"localhost/save/app:v1": podman.bring_in(oci, "localhost/save/app:v1"),
           "localhost/save/docker:1": podman.bring_in(docker, "localhost/save/docker:1")}

    def save(how: str) -> Saved:
        out = tmp_path / f"saved-{how}"
        if how == "two-images":
            podman.run("save", "-q", "--multi-image-archive", "-o", str(out), *ids)
            return Saved(out, ids)
        name = "localhost/save/app:v1"
        podman.run("save", "-q", "--format", how, "-o", str(out), name)
        return Saved(out, {name: ids[name]})

    return save


def podman_digests(podman: Podman, saved: Saved) -> dict[str, str]:
    """The manifest digest podman gives each image of the archive (or layout) it loads."""
    podman.run("load", "-q", "-i", str(saved.path))
    return {name: podman.inspect(image_id)["Digest"] for name, image_id in saved.images.items()}


@pytest.mark.parametrize("how", ["docker-archive", "oci-archive", "oci-dir", "two-images"])
def test_a_podman_save_imports_with_podmans_digests(
    how: str, saved_images: Callable[[str], Saved], new_podman: NewPodman,
    live_server: LiveServer, datadir: DataDir,
) -> None:
    server = live_server
    saved = saved_images(how)
    digests = podman_digests(new_podman(f"reader-{how}"), saved)
    imported = cli_json(datadir.root, "import", str(saved.path))["images"]
    assert sorted((i["repository"], i["tags"]) for i in imported) == sorted(
        (name.removeprefix("localhost/").split(":")[0], [name.split(":")[1]])
        for name in saved.images)
    for name, image_id in saved.images.items():
        repository, tag = name.removeprefix("localhost/").split(":")
        digest, _, manifest = served(server, repository, tag)
        assert digest == digests[name], name  # the digest podman itself gives the archive
        assert manifest["config"]["digest"] == f"sha256:{image_id}", name
        # And back: podman pulls what was imported, the same image.
        puller = new_podman(f"puller-{how}-{repository.replace('/', '-')}")
        ref = f"{server.address}/{repository}:{tag}"
        puller.run("pull", "-q", *tls_auth(server), ref)
        assert puller.inspect(ref)["Id"] == image_id, name
