"""`edge-console sync run` as a technician sees it, against a real parent (a second edge
registry served over TLS in this process): progress on standard error that names each
repository (stdout stays one JSON object with --json), ReadWrite conflicts said in the
summary, and a run outside the sync window refused with when the next one opens."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cutting_proxy import CuttingProxy
from imagebuilder import ImageSpec, write_oci_image
from support import HANG_GUARD, LiveServer, free_port, put_on_parent, wait_until
from test_sync_reference import ROOT, cli

from console.commands.sync import WINDOW_CLOSED_EXIT, ProgressPrinter, conflict_text
from registry_core.datadir import DataDir
from registry_core.enablement import enable
from registry_core.events import RepositoryProgress, SyncFinished, SyncProgress
from registry_core.registry import Registry

pytestmark = pytest.mark.socket



@pytest.fixture
def site(tmp_path: Path) -> DataDir:
    """An enabled data dir with its store (the connected registry), not configured yet."""
    data = DataDir(tmp_path / "site")
    enable(data, device_name="site", dns_domain="test", node_ip="127.0.0.1", port=free_port())
    Registry(data).close()
    return data


def configure(site: DataDir, parent: LiveServer, *options: str,
              endpoint: str | None = None) -> None:
    text = (f"ConnectedRegistryName=site-01;SyncTokenName={parent.username};"
            f"SyncTokenPassword={parent.password};"
            f"ParentGatewayEndpoint={endpoint or f'127.0.0.1:{parent.port}'};"
            "ParentEndpointProtocol=https\n")
    result = cli(site, "sync", "configure", "--connection-string-file", "-", "--parent-ca",
                 str(parent.cert_dir / "ca.crt"), "--repository", "shop/*", *options,
                 stdin=text)
    assert result.returncode == 0, result.stderr


def test_run_names_each_repository_on_stderr_and_json_stays_alone_on_stdout(
    live_server: LiveServer, site: DataDir, tmp_path: Path
) -> None:
    parent = live_server.service.registry
    image = write_oci_image(tmp_path / "plain", ImageSpec(tag="v1"))
    for repository in ("shop/web", "shop/db", "shop/cache"):
        put_on_parent(parent, repository, image, "v1")
    configure(site, live_server)

    result = cli(site, "sync", "run", "--json")

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)  # one JSON object, nothing else
    assert record["status"] == "succeeded", record["errors"]
    lines = result.stderr.splitlines()
    for repository in ("shop/web", "shop/db", "shop/cache"):
        ended = [line for line in lines if line.startswith(f"{repository}: done")]
        assert len(ended) == 1, result.stderr  # one line as it ends, not one per event
        assert "1 of 1 tags changed" in ended[0]
    assert lines[-1] == f"sync run {record['id']}: succeeded"
    assert "\r" not in result.stderr  # not a terminal: no line rewritten in place


def test_stage_names_each_repository_it_pulls_on_stderr(
    live_server: LiveServer, site: DataDir, tmp_path: Path
) -> None:
    image = write_oci_image(tmp_path / "plain", ImageSpec(tag="v1"))
    for repository in ("shop/web", "shop/db"):
        put_on_parent(live_server.service.registry, repository, image, "v1")
    configure(site, live_server)

    result = cli(site, "stage", "shop/web:v1", "shop/db:v1", "--json")

    assert result.returncode == 0, result.stderr
    staged = json.loads(result.stdout)  # one JSON object, nothing else
    assert [i["status"] for i in staged["items"]] == ["staged", "staged"]
    lines = result.stderr.splitlines()
    for repository in ("shop/web", "shop/db"):
        assert [line for line in lines if line.startswith(f"{repository}: done, 1 of 1 tags")]
    assert lines[-1] == f"sync run {staged['run']['id']}: succeeded"


def test_a_read_write_conflict_is_said_in_the_summary(
    live_server: LiveServer, site: DataDir, tmp_path: Path
) -> None:
    theirs = write_oci_image(tmp_path / "theirs", ImageSpec(tag="theirs"))
    ours = write_oci_image(tmp_path / "ours", ImageSpec(tag="ours"))
    put_on_parent(live_server.service.registry, "shop/app", theirs, "v1")
    local = Registry(site)
    try:
        put_on_parent(local, "shop/app", ours, "v1")  # moved here, never agreed: a conflict
    finally:
        local.close()
    configure(site, live_server, "--mode", "ReadWrite")

    result = cli(site, "sync", "run")

    assert result.returncode == 0, result.stderr
    summary = result.stdout.splitlines()
    assert " succeeded with 1 conflict in " in summary[0]
    ours_hex, theirs_hex = ours.digest.hex[:12], theirs.digest.hex[:12]
    assert (f"  conflict: shop/app:v1 moved here (sha256:{ours_hex}…) and on the parent "
            f"(sha256:{theirs_hex}…): the parent's kept; the local manifest stays by "
            "digest") in summary
    status = cli(site, "sync", "status").stdout
    assert " succeeded with 1 conflict at " in status
    assert f"    conflict: shop/app:v1 moved here (sha256:{ours_hex}…)" in status


def closed_schedule() -> str:
    """A daily cron whose one-hour window opened about twelve hours ago: closed now, and for
    hours either side of now."""
    opens = time.localtime(time.time() + 12 * 3600)
    return f"{opens.tm_min} {opens.tm_hour} * * *"


def test_run_outside_the_window_says_when_it_opens_and_exits_non_zero(
    live_server: LiveServer, site: DataDir, tmp_path: Path
) -> None:
    image = write_oci_image(tmp_path / "plain", ImageSpec(tag="v1"))
    put_on_parent(live_server.service.registry, "shop/web", image, "v1")
    configure(site, live_server, "--schedule", closed_schedule(), "--window", "PT1H")

    refused = cli(site, "sync", "run", "--json")

    assert refused.returncode == WINDOW_CLOSED_EXIT != 1
    assert refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert "the sync window is closed (the next opens at " in line
    assert " local, in 11 h " in line or " local, in 12 h " in line, line
    assert line.endswith("; --ignore-window syncs now")
    registry = Registry(site)
    try:
        assert registry.store.sync_runs.recent(5) == []  # nothing ran
    finally:
        registry.close()

    forced = cli(site, "sync", "run", "--json", "--ignore-window")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["status"] == "succeeded"


def test_help_says_the_exit_status_outside_the_window(site: DataDir) -> None:
    result = cli(site, "sync", "run", "--help")
    assert result.returncode == 0
    assert f"exit status is {WINDOW_CLOSED_EXIT}" in " ".join(result.stdout.split())


class Terminal(io.StringIO):
    """Standard error on a terminal (a stand-in: the real CLI's stderr is a pipe in these
    tests); `screen()` is what stays visible once carriage returns overwrote their line."""

    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        shown = []
        for line in self.getvalue().split("\n"):
            cells: list[str] = []
            column = 0
            for part in line.split("\r"):
                cells[column:column + len(part)] = part
                column = 0
            shown.append("".join(cells).rstrip())
        return shown


def progress(run_id: int, *repositories: RepositoryProgress) -> SyncProgress:
    return SyncProgress(identity="sync", run_id=run_id, repositories=repositories,
                        bytes_copied=sum(r.bytes_copied for r in repositories))


WEB = RepositoryProgress(repository="shop/web", state="syncing", tags_total=4, tags_checked=1)
WEB_DONE = RepositoryProgress(repository="shop/web", state="done", tags_total=4,
                              tags_checked=4, tags_changed=2, manifests_copied=2,
                              blobs_copied=5, bytes_copied=3 << 20)
DB = RepositoryProgress(repository="shop/db", state="syncing", tags_total=9, tags_checked=3,
                        tags_changed=1, manifests_copied=1, blobs_copied=2,
                        bytes_copied=1 << 20)


def test_on_a_terminal_one_line_updates_in_place_and_each_ended_repository_stays() -> None:
    terminal = Terminal()
    printer = ProgressPrinter(terminal)
    printer(progress(3, WEB))
    assert terminal.screen() == ["sync run 3 · shop/web 1/4 tags · 0 of 1 repositories ended "
                                 "· 0 Bytes"]
    printer(progress(3, WEB_DONE, DB))
    printer(progress(3, WEB_DONE, DB))  # the same again: said once
    printer(SyncFinished(identity="sync", run_id=3, status="cancelled"))
    printer.clear()
    assert terminal.screen() == [
        "shop/web: done, 2 of 4 tags changed, 2 manifests, 5 blobs (3.0 MiB) copied",
        "shop/db: cancelled while syncing, 1 of 9 tags changed (3 checked), 1 manifest, "
        "2 blobs (1.0 MiB) copied",
        "sync run 3: cancelled",
        "",
    ]


def test_into_a_file_only_a_line_per_repository_as_it_ends() -> None:
    log = io.StringIO()
    printer = ProgressPrinter(log)
    for _ in range(50):  # bytes arriving: nothing to say yet
        printer(progress(4, WEB))
    printer(progress(4, WEB_DONE))
    printer(SyncFinished(identity="sync", run_id=4, status="succeeded"))
    assert log.getvalue().splitlines() == [
        "shop/web: done, 2 of 4 tags changed, 2 manifests, 5 blobs (3.0 MiB) copied",
        "sync run 4: succeeded",
    ]


def test_the_line_in_place_never_wraps() -> None:
    """A wrapped line would leave its first part behind at each rewrite."""
    terminal = Terminal()  # no size known: 80 columns
    printer = ProgressPrinter(terminal)
    long_name = "shop/" + "deep-path/" * 12 + "web"
    printer(progress(6, RepositoryProgress(repository=long_name, state="syncing")))
    [line] = terminal.screen()
    assert line.startswith(f"sync run 6 · {long_name[:20]}") and len(line) == 79


@pytest.mark.parametrize(
    ("conflict", "said"),
    [
        ({"repository": "app", "tag": "v1", "local": "sha256:" + "a" * 64,
          "parent": "sha256:" + "d" * 64, "kept": "parent"},
         "app:v1 moved here (sha256:aaaaaaaaaaaa…) and on the parent (sha256:dddddddddddd…): "
         "the parent's kept; the local manifest stays by digest"),
        ({"repository": "app", "tag": "v1", "local": "sha256:" + "a" * 64, "parent": "",
          "kept": "parent"},
         "app:v1 deleted on the parent: untagged here; sha256:aaaaaaaaaaaa… stays by digest"),
        ({"repository": "app", "tag": "v1", "local": "sha256:" + "a" * 64, "parent": "",
          "kept": "local", "reason": "pinned by stage release-7"},
         "app:v1 deleted on the parent, kept here (sha256:aaaaaaaaaaaa…): pinned by stage "
         "release-7"),
    ],
)
def test_each_kind_of_conflict_reads_plainly(conflict: dict[str, str], said: str) -> None:
    """The entries the run record holds (registry_core/sync/engine.py and reconcile.py)."""
    assert conflict_text(conflict) == said


@pytest.mark.parametrize("command", [["sync", "run", "--json"], ["stage", "shop/web:v1", "--json"]])
def test_ctrl_c_cancels_at_the_next_blob_boundary(
    live_server: LiveServer, site: DataDir, tmp_path: Path, command: list[str]
) -> None:
    put_on_parent(live_server.service.registry, "shop/web",
                  write_oci_image(tmp_path / "plain", ImageSpec(tag="v1")), "v1")
    with CuttingProxy(("127.0.0.1", live_server.port)) as link:
        configure(site, live_server, endpoint=link.address)
        link.flowing.clear()  # the parent's answers wait: the run is under way, stalled
        process = subprocess.Popen(
            [sys.executable, "-m", "console", "--data-dir", str(site.root), *command],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        said: list[str] = []
        reader = threading.Thread(target=lambda: said.extend(process.stderr or ()))
        reader.start()
        try:
            wait_until(lambda: link.bytes_to_upstream > 0, "a request to the parent")
            process.send_signal(signal.SIGINT)
            wait_until(lambda: any("cancelling" in line for line in said), "the cancel")
            link.flowing.set()
            out = process.stdout.read() if process.stdout else ""
            process.wait(timeout=HANG_GUARD)
        finally:
            link.flowing.set()
            process.kill()
            reader.join()
    assert process.returncode == 1, "".join(said)
    assert out.strip(), "".join(said)
    shown = json.loads(out)
    record = shown if command[0] == "sync" else shown["run"]
    assert record["status"] == "cancelled"
    registry = Registry(site)
    try:
        assert "shop/web" not in registry.catalog().items  # nothing half-synced is visible
    finally:
        registry.close()
