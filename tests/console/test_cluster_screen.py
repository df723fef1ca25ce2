"""The Cluster screen against a real kube-apiserver (tests/kubebed.py): namespaces and their
pull-secret states, apply / repair with the confirmation, a pod's image in use with its
snippet, the Images screen's "In use" column and delete warning; and, without the test bed,
no cluster and an unreachable one (the rest of the console keeps working; quitting does not
wait for a cluster that does not answer)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
from console_helpers import make_app, open_tags, push_image, settle, wait_for
from kubebed import KubeBed, container_status, write_pod_status
from support import free_port
from textual.widgets import DataTable, Static

from console.app import EdgeConsoleApp
from console.screens.cluster import ClusterPicture, ClusterView, applied_summary
from console.screens.images import ImagesView
from console.widgets.cluster_link import labels_by_manifest, users_label
from console.widgets.confirm import ConfirmationModal
from console.widgets.snippet_modal import SnippetModal
from console.widgets.status import ServerStatus
from console.widgets.virtual_table import VirtualTable
from registry_core.access.credentials import read_credentials
from registry_core.browse import ManifestGraph
from registry_core.config import load_config, save_config
from registry_core.datadir import DataDir
from registry_core.kube import (
    Applied,
    ClusterStatus,
    ImageUse,
    InUse,
    KeeperState,
    SecretState,
)
from registry_core.kube.pull_secrets import MANAGED_LABEL, Credentials, dockerconfigjson
from registry_core.registry import Registry
from registry_core.service import RegistryService

SIZE = (120, 36)
SECRET = "ase-ecr-credentials"
QUIT_GUARD = 10.0
"""Hang guard only: quitting while the cluster does not answer must not wait for its
30-second read timeout."""


# ---- helpers ---------------------------------------------------------------------------------

FIXED_SERVER = "https://10.0.0.1:6443"
FIXED_ENDPOINT = "ecr.edge.test:31001"
FIXED_DIGEST = "sha256:" + "3f" * 32


def fixed_picture() -> ClusterPicture:
    """A stand-in cluster for snapshots (a real server's namespaces vary): five namespaces
    in every state, four images in use (one tag not in the registry)."""
    stale = f"credentials for {FIXED_ENDPOINT} are not the current ones"
    namespaces = (
        SecretState("default", "ok", "", True),
        SecretState("kube-system", "skipped", "on the skip list"),
        SecretState("shop", "ok", "", True),
        SecretState("staging", "missing"),
        SecretState("tools", "stale", stale, False),
    )
    uses = (
        ImageUse("Pod", "shop", "web-7d4b9c-x2k", "web", f"{FIXED_ENDPOINT}/nginx:2.0",
                 "nginx", "2.0", FIXED_DIGEST, "imageID", "Running"),
        ImageUse("Deployment", "shop", "web", "web", f"{FIXED_ENDPOINT}/nginx:2.0", "nginx",
                 "2.0", FIXED_DIGEST, "tag", "template"),
        ImageUse("Pod", "tools", "backup-28911", "backup",
                 f"{FIXED_ENDPOINT}/team/app@{FIXED_DIGEST}", "team/app", None, FIXED_DIGEST,
                 "digest", "Waiting (ImagePullBackOff)"),
        ImageUse("CronJob", "tools", "nightly", "job", f"{FIXED_ENDPOINT}/library/alpine:3.19",
                 "library/alpine", "3.19", None, "", "template"),
    )
    in_use = InUse(uses, ManifestGraph({}, {}, {}), objects=9, taken_at=0.0)
    status = ClusterStatus(True, FIXED_SERVER, "edge", "config.toml", "", namespaces, in_use)
    return ClusterPicture(status, "/etc/edge/kubeconfig (from config.toml)",
                          "ase-ecr-credentials")


def unreachable_picture() -> ClusterPicture:
    error = f"cluster not reachable: {FIXED_SERVER}: connection refused"
    status = ClusterStatus(False, FIXED_SERVER, "edge", "config.toml", error, (), None)
    return ClusterPicture(status, "/etc/edge/kubeconfig (from config.toml)",
                          "ase-ecr-credentials")



@pytest.fixture
def core(kube_client: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(kube_client)


@pytest.fixture
def make_namespace(core: k8s.CoreV1Api) -> Iterator[Callable[[str], str]]:
    """Fresh namespaces for one test, deleted afterwards (without waiting)."""
    made: list[str] = []

    def make(role: str) -> str:
        name = f"edge-ui-{role}-{uuid.uuid4().hex[:8]}"
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
        made.append(name)
        return name

    yield make
    for name in made:
        with contextlib.suppress(k8s.ApiException):
            core.delete_namespace(name, propagation_policy="Background")


def point_at(datadir: DataDir, kubeconfig: Path, ours: list[str] | None = None,
             core: k8s.CoreV1Api | None = None) -> None:
    """config.toml names `kubeconfig`; with `ours`, every other namespace of the shared test
    bed is on the skip list, so that applying touches only this test's namespaces."""
    config = load_config(datadir.config)
    config.kubernetes.kubeconfig = str(kubeconfig)
    if ours is not None and core is not None:
        everything = [ns.metadata.name for ns in core.list_namespace().items]
        config.kubernetes.skip_namespaces = [n for n in everything if n not in ours]
    save_config(config, datadir.config)


def write_stale_secret(core: k8s.CoreV1Api, namespace: str, endpoint: str) -> None:
    old = Credentials(endpoint, "admin", "an-old-password")
    core.create_namespaced_secret(namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=SECRET, annotations={"note": "made by hand"}),
        type="kubernetes.io/dockerconfigjson",
        data={".dockerconfigjson": base64.b64encode(dockerconfigjson(old)).decode()},
    ))


def secret_credentials(core: k8s.CoreV1Api, namespace: str, endpoint: str) -> tuple[str, str]:
    secret = core.read_namespaced_secret(SECRET, namespace)
    assert secret.type == "kubernetes.io/dockerconfigjson"
    assert secret.metadata.labels[MANAGED_LABEL] == "edge-console"
    config = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))
    entry = config["auths"][endpoint]
    return entry["username"], entry["password"]


def states_of(view: ClusterView) -> dict[str, SecretState]:
    picture = view.picture
    assert picture is not None
    return {s.namespace: s for s in picture.status.namespaces}


async def cluster_shown(pilot: Any, view: ClusterView) -> None:
    await pilot.press("6")
    await wait_for(pilot, lambda: view.picture is not None and not view.loading,
                   what="the cluster's picture", timeout=60)


def messages(app: EdgeConsoleApp) -> list[str]:
    return [n.message for n in app._notifications]


def text_of(app: EdgeConsoleApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


# ---- against the test bed --------------------------------------------------------------------


@pytest.mark.kube
async def test_namespaces_show_their_states_and_apply_all_repairs_them(
    datadir: DataDir, kube_apiserver: KubeBed, core: k8s.CoreV1Api,
    make_namespace: Callable[[str], str],
) -> None:
    endpoint = load_config(datadir.config).endpoint
    missing, stale = make_namespace("missing"), make_namespace("stale")
    write_stale_secret(core, stale, endpoint)
    point_at(datadir, kube_apiserver.kubeconfig, [missing, stale], core)
    registry = Registry(datadir)
    app = make_app(registry)
    try:
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(ClusterView)
            await cluster_shown(pilot, view)
            assert view.picture is not None and view.picture.status.reachable
            assert view.picture.status.server == kube_apiserver.server
            assert "config.toml" in view.picture.config
            states = states_of(view)
            assert states[missing].state == "missing"
            assert states[stale].state == "stale" and not states[stale].managed
            assert "not the current ones" in states[stale].reason
            assert states["kube-system"].state == "skipped"
            table = app.query_one("#cluster-namespaces", DataTable)
            rows = {str(table.get_row_at(i)[0]): str(table.get_row_at(i)[1])
                    for i in range(table.row_count)}
            assert rows[missing] == "missing" and rows[stale] == "stale"

            await pilot.press("A")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal),
                           what="the confirmation")
            modal = app.screen
            assert isinstance(modal, ConfirmationModal)
            assert f"created in 1: {missing}" in modal.body
            assert f"repaired in 1:\n    {stale}: credentials" in modal.body
            assert f"Not made by edge-console: {stale}" in modal.body
            assert app.focused is not None and app.focused.id == "confirm-cancel"
            await pilot.press("tab", "enter")
            await wait_for(pilot, lambda: not view.applying and not view.loading
                           and states_of(view)[missing].state == "ok", what="the apply")
            assert states_of(view)[stale].state == "ok"
            assert f"Created in {missing}; repaired in {stale}." in messages(app)
    finally:
        registry.close()
    expected = read_credentials(datadir)
    assert secret_credentials(core, missing, endpoint) == expected
    assert secret_credentials(core, stale, endpoint) == expected
    kept = core.read_namespaced_secret(SECRET, stale)
    assert kept.metadata.annotations == {"note": "made by hand"}


@pytest.mark.kube
async def test_enter_on_a_namespace_applies_only_there(
    datadir: DataDir, kube_apiserver: KubeBed, core: k8s.CoreV1Api,
    make_namespace: Callable[[str], str],
) -> None:
    endpoint = load_config(datadir.config).endpoint
    chosen, other = make_namespace("chosen"), make_namespace("other")
    point_at(datadir, kube_apiserver.kubeconfig, [chosen, other], core)
    registry = Registry(datadir)
    app = make_app(registry)
    try:
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(ClusterView)
            await cluster_shown(pilot, view)
            table = app.query_one("#cluster-namespaces", DataTable)
            position = next(i for i in range(table.row_count)
                            if str(table.get_row_at(i)[0]) == chosen)
            table.focus()
            table.move_cursor(row=position)
            await pilot.press("enter")
            await wait_for(pilot, lambda: not view.applying and not view.loading
                           and states_of(view)[chosen].state == "ok", what="the apply")
            assert states_of(view)[other].state == "missing"
            assert f"Created in {chosen}." in messages(app)
    finally:
        registry.close()
    assert secret_credentials(core, chosen, endpoint) == read_credentials(datadir)
    assert not core.list_namespaced_secret(other).items


@pytest.mark.kube
async def test_a_pod_using_an_image_shows_with_its_snippet_and_in_the_images_screen(
    datadir: DataDir, kube_apiserver: KubeBed, kube_client: k8s.ApiClient,
    core: k8s.CoreV1Api, kube_namespace: str,
) -> None:
    endpoint = load_config(datadir.config).endpoint
    point_at(datadir, kube_apiserver.kubeconfig)
    registry = Registry(datadir)
    image = push_image(registry, "app", ["v1"], [b"app layer " * 100])
    spec = f"{endpoint}/app:v1"
    core.create_namespaced_pod(kube_namespace, k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="web"),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="app", image=spec)]),
    ))
    write_pod_status(kube_client, kube_namespace, "web",
                     [container_status("app", spec, f"{endpoint}/app@{image.digest}")])
    app = make_app(registry)
    try:
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(ClusterView)
            await cluster_shown(pilot, view)
            table = app.query_one("#cluster-images", DataTable)
            position = next(i for i, u in enumerate(view._uses)
                            if u.namespace == kube_namespace)
            use = view._uses[position]
            assert (use.kind, use.name, use.container, use.digest, use.state) == (
                "Pod", "web", "app", image.digest, "Running")
            row = [str(cell) for cell in table.get_row_at(position)]
            assert row == ["app", "v1", f"pod {kube_namespace}/web", "app", "Running"]

            # enter on the row: the snippet, and its copy button.
            table.focus()
            table.move_cursor(row=position)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, SnippetModal),
                           what="the snippet")
            modal = app.screen
            assert isinstance(modal, SnippetModal)
            assert f"image: {spec}" in modal.text
            assert f"namespace: {kube_namespace}" in modal.text
            assert f"imagePullSecrets:\n    - name: {SECRET}" in modal.text
            await pilot.press("c")
            await wait_for(pilot, lambda: not isinstance(app.screen, SnippetModal))
            assert app.clipboard == modal.text + "\n"
            assert any(n.title == "Copied pod snippet" for n in app._notifications)
            app.copy_to_clipboard("")
            await pilot.press("c")  # straight from the screen
            assert app.clipboard == modal.text + "\n"

            # The Images screen: the "In use" column, and the delete warning names the pod.
            await pilot.press("3")
            images = app.query_one(ImagesView)
            tags = app.query_one("#images-table", VirtualTable)
            await wait_for(pilot, lambda: tags.total_count == 1, what="repositories")
            images.open_repository("app")
            await wait_for(pilot, lambda: images.table_level == "tags"
                           and images.in_use is not None, what="the in-use column")
            assert " pod/web " in tags.format_row(tags.view_rows()[0])
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
            confirm = app.screen
            assert isinstance(confirm, ConfirmationModal)
            assert "The cluster uses it." in confirm.title_text
            assert "WARNING: the cluster uses this image (1)" in confirm.body
            assert f"pod {kube_namespace}/web (container app, Running)" in confirm.body
            await pilot.press("escape")
            # Untag: the pod names the tag, so the dialog warns too.
            await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmationModal))
            await pilot.press("u")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
            untag = app.screen
            assert isinstance(untag, ConfirmationModal)
            assert untag.title_text == "Remove the tag app:v1? The cluster uses it."
            assert "WARNING: the cluster names this tag (1)" in untag.body
            assert f"pod {kube_namespace}/web" in untag.body
            await pilot.press("escape")
    finally:
        registry.close()


@pytest.mark.kube
async def test_the_keeper_of_the_served_registry_shows(
    datadir: DataDir, kube_apiserver: KubeBed, core: k8s.CoreV1Api,
    make_namespace: Callable[[str], str],
) -> None:
    ours = make_namespace("kept")
    point_at(datadir, kube_apiserver.kubeconfig, [ours], core)
    service = RegistryService(datadir)
    app = EdgeConsoleApp(service, listen=f"127.0.0.1:{free_port()}", poll=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(ClusterView)
            await wait_for(pilot, lambda: app.server_status.mode == "serving", what="serving")
            await cluster_shown(pilot, view)
            await wait_for(pilot, lambda: "watching namespaces" in text_of(app, "#cluster-keeper"),
                           what="the keeper's state", timeout=60)
            assert app.query_one("#cluster-keeper").display
    finally:
        service.close()


# ---- without the test bed --------------------------------------------------------------------


async def test_no_cluster_is_a_state_and_the_rest_works(registry: Registry) -> None:
    push_image(registry, "app", ["v1"], [b"layer"])
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(ClusterView)
        await cluster_shown(pilot, view)
        assert view.picture is not None and not view.picture.status.reachable
        assert text_of(app, "#cluster-facts").startswith("no cluster configured")
        await pilot.press("A")
        assert not isinstance(app.screen, ConfirmationModal)
        images, tags = await open_tags(pilot, 1, "app", 1)
        await settle(pilot)
        assert images.in_use is None  # no cluster: no column, and no toast about it
        assert "In use" not in tags._header_text()
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
        confirm = app.screen
        assert isinstance(confirm, ConfirmationModal)
        assert "cluster" not in confirm.body
        errors = [n for n in app._notifications if n.severity == "error"]
        assert [n.message for n in errors] == ["no cluster configured: give --kubeconfig, set "
                                               "[kubernetes] kubeconfig in config.toml, set "
                                               "KUBECONFIG, or create ~/.kube/config"]


def closed_port_kubeconfig(path: Path, port: int) -> Path:
    """A kubeconfig whose server nothing listens on."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
        "current-context": "gone",
    }))
    return path


async def test_an_unreachable_cluster_is_a_state_and_the_rest_works(
    datadir: DataDir, tmp_path: Path
) -> None:
    port = free_port()
    point_at(datadir, closed_port_kubeconfig(tmp_path / "kubeconfig", port))
    registry = Registry(datadir)
    push_image(registry, "app", ["v1"], [b"layer"])
    app = make_app(registry)
    try:
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(ClusterView)
            await cluster_shown(pilot, view)
            assert view.picture is not None and not view.picture.status.reachable
            facts = text_of(app, "#cluster-facts")
            assert facts.startswith(f"cluster not reachable: https://127.0.0.1:{port}")
            assert "r tries again" in facts
            await pilot.press("r")
            await wait_for(pilot, lambda: not view.loading, what="the reload")
            assert text_of(app, "#cluster-facts").startswith("cluster not reachable")
            # Other tabs work; the delete confirmation says the cluster was not asked.
            await open_tags(pilot, 1, "app", 1)
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmationModal))
            confirm = app.screen
            assert isinstance(confirm, ConfirmationModal)
            assert "Not checked whether the cluster uses it: cluster not reachable" in confirm.body
            await pilot.press("escape")
    finally:
        registry.close()


async def test_quitting_does_not_wait_for_a_silent_cluster(
    datadir: DataDir, tmp_path: Path
) -> None:
    """A server that accepts the connection and never answers: the read would last 30 s;
    quitting walks away from it."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    point_at(datadir, closed_port_kubeconfig(tmp_path / "kubeconfig", silent.getsockname()[1]))
    registry = Registry(datadir)
    app = make_app(registry)
    try:
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one(ClusterView)
            await pilot.press("6")
            await wait_for(pilot, lambda: view.loading, what="the read to start")
            async with asyncio.timeout(QUIT_GUARD):  # hang guard
                await pilot.press("q")
                while app.return_code is None:
                    await asyncio.sleep(0.01)
        assert not any(worker.is_running for worker in app.workers)
        assert view.picture is None
    finally:
        registry.close()
        silent.close()


async def test_the_keeper_line_follows_the_state(registry: Registry) -> None:
    app = make_app(registry)
    state = KeeperState(watching=True, applied=2, error="", since=0.0)
    app.secret_keeper_state = lambda: state  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(ClusterView)
        await cluster_shown(pilot, view)
        line = app.query_one("#cluster-keeper")
        assert not line.display  # not serving here: nothing to say
        app.server_status = ServerStatus("serving", address="127.0.0.1:1")
        await wait_for(pilot, lambda: line.display, what="the keeper line")
        assert text_of(app, "#cluster-keeper") == (
            "Keeping secrets: watching namespaces · 2 created or repaired since the start"
        )
        state = KeeperState(watching=False, applied=2, error="cluster not reachable: x",
                            since=1.0)
        await wait_for(pilot, lambda: "error: cluster not reachable: x" in text_of(
            app, "#cluster-keeper"), what="the error")


async def test_filter_narrows_both_lists(registry: Registry) -> None:
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(ClusterView)
        await cluster_shown(pilot, view)
        view.picture = fixed_picture()
        await pilot.pause()
        namespaces = app.query_one("#cluster-namespaces", DataTable)
        images = app.query_one("#cluster-images", DataTable)
        assert (namespaces.row_count, images.row_count) == (5, 4)
        await pilot.press("slash", *"tools")
        assert (namespaces.row_count, images.row_count) == (1, 2)
        await pilot.press("escape")
        assert (namespaces.row_count, images.row_count) == (5, 4)
        assert view.filter_text == ""


# ---- pure helpers ----------------------------------------------------------------------------


def use(kind: str, name: str, digest: str | None, repository: str = "app") -> ImageUse:
    return ImageUse(kind, "ns", name, "c", f"{FIXED_ENDPOINT}/{repository}:v1", repository,
                    "v1", digest, "tag", "Running")


def test_in_use_labels_follow_users_of() -> None:
    """The Images column's labels say, for every manifest, what `InUse.users_of` says:
    an index's users show on its children and a child's on its index."""
    index, child, other = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64
    children = {("app", index): (child,)}
    parents = {("app", child): (index,)}
    uses = (use("Pod", "web-1", index), use("Pod", "web-2", index),
            use("Deployment", "web", index), use("Job", "once", other),
            use("Pod", "lost", None))
    labels = labels_by_manifest(uses, children, parents)
    in_use = InUse(uses, ManifestGraph({}, children, parents), objects=5, taken_at=0.0)
    for digest in (index, child, other):
        assert labels[("app", digest)] == users_label(in_use.users_of("app", digest))
    assert labels[("app", index)] == labels[("app", child)] == "2 pods +1"
    assert labels[("app", other)] == "job/once"
    assert len(labels) == 3
    assert users_label([use("Deployment", "a", other), use("StatefulSet", "b", other)]) == (
        "2 workloads")
    assert users_label([]) == ""


def test_applied_summary_names_what_changed_and_what_failed() -> None:
    changed, failed = applied_summary([
        Applied("a", "created"), Applied("b", "repaired", "stale"), Applied("c", "created"),
        Applied("d", "failed", "forbidden"), Applied("e", "unchanged"),
    ])
    assert changed == "created in a, c; repaired in b; unchanged in e"
    assert failed == "failed in d: forbidden"
    assert applied_summary([]) == ("", "")
