"""`edge-console images` and `edge-console delete`, run as real subprocesses on a data dir
seeded through the core API."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from store_snapshot import take_snapshot
from test_cli_basics import assert_one_line_error, cli, cli_json
from test_gc import Pushed, assert_pulls, collect, manifest_exists, push_image, push_index, rand

from registry_core import browse
from registry_core.datadir import DataDir
from registry_core.errors import ManifestUnknown
from registry_core.identity import CONSOLE
from registry_core.preview import preview_delete
from registry_core.registry import Registry

TAG_KEYS = {
    "tag", "digest", "media_type", "size_bytes", "created", "platforms", "pushed_at", "in_use"
}


@dataclass
class Seeded:
    datadir: DataDir
    registry: Registry
    web: Pushed
    """web:1.0 and web:latest, sharing a base layer with `old`."""
    old: Pushed
    """web@digest, untagged."""
    amd: Pushed
    arm: Pushed
    index: Pushed
    """multi:v1, listing amd and arm (both untagged)."""
    signature: Pushed
    """An artifact in `web` whose subject is `web`."""


@pytest.fixture
def seeded(datadir: DataDir, registry: Registry) -> Seeded:
    base = rand(4000)
    web = push_image(registry, "web", "1.0", [base, rand(3000)])
    registry.put_manifest(
        "web", "latest", registry.get_manifest("web", web.digest).body(), web.media_type,
        who=CONSOLE,
    )
    old = push_image(registry, "web", None, [base, rand(2000)])
    signature = push_image(registry, "web", None, [rand(300)], subject=web,
                           artifact_type="application/vnd.example.signature")
    amd = push_image(registry, "multi", None, [rand(500)])
    arm = push_image(registry, "multi", None, [rand(600)])
    index = push_index(registry, "multi", "v1", [(amd, "amd64"), (arm, "arm64")])
    return Seeded(datadir, registry, web, old, amd, arm, index, signature)


def column(header: str, name: str) -> int:
    return header.index(name)


# ---- images -----------------------------------------------------------------------------------


def test_images_lists_repositories(seeded: Seeded) -> None:
    payload = cli_json(seeded.datadir.root, "images")
    expected = [
        {
            "name": r.name,
            "tag_count": r.tag_count,
            "manifest_count": r.manifest_count,
            "size_bytes": r.size_bytes,
            "last_push": r.last_push,
        }
        for r in browse.repositories(seeded.registry)
    ]
    assert payload == {"repositories": expected}
    assert [(r["name"], r["tag_count"], r["manifest_count"]) for r in expected] == [
        ("multi", 1, 3),
        ("web", 2, 3),
    ]

    result = cli(seeded.datadir.root, "images")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["REPOSITORY", "TAGS", "MANIFESTS", "SIZE"]
    assert [row.split()[:3] for row in rows] == [["multi", "1", "3"], ["web", "2", "3"]]
    end = column(header, "TAGS") + len("TAGS")  # right-aligned numbers end under the header
    assert all(row[end - 1] in "0123456789" and row[end] == " " for row in rows)


def test_images_of_a_repository(seeded: Seeded) -> None:
    payload = cli_json(seeded.datadir.root, "images", "web")
    assert set(payload) == {"repository", "tags", "untagged"}
    assert payload["repository"] == "web"
    assert [t["tag"] for t in payload["tags"]] == ["1.0", "latest"]
    for entry in payload["tags"]:
        assert set(entry) == TAG_KEYS
        assert entry["digest"] == seeded.web.digest
        assert entry["in_use"] == []
    rows = {t.tag: t for t in browse.tags(seeded.registry, "web")}
    assert payload["tags"][0]["size_bytes"] == rows["1.0"].size_bytes
    assert payload["tags"][0]["created"] == rows["1.0"].image_created
    assert {u["digest"] for u in payload["untagged"]} == {
        seeded.old.digest, seeded.signature.digest
    }
    assert all(set(u) == TAG_KEYS - {"tag"} and u["in_use"] == [] for u in payload["untagged"])

    result = cli(seeded.datadir.root, "images", "web")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["TAG", "DIGEST", "SIZE", "CREATED", "PLATFORMS", "IN", "USE"]
    assert len(lines) == 4
    at = column(header, "DIGEST")
    assert {line[at:].split()[0] for line in lines} == {
        seeded.web.digest, seeded.old.digest, seeded.signature.digest
    }
    assert [line.split()[0] for line in lines[:2]] == ["1.0", "latest"]
    assert all(line.split()[0] == "<untagged>" for line in lines[2:])
    assert all(line.rstrip().endswith(" -") for line in lines)  # in use: nothing yet


def test_images_platforms_of_an_index(seeded: Seeded) -> None:
    payload = cli_json(seeded.datadir.root, "images", "multi")
    assert payload["tags"][0]["platforms"] == "linux/amd64, linux/arm64"
    assert {u["digest"] for u in payload["untagged"]} == {seeded.amd.digest, seeded.arm.digest}


@pytest.mark.parametrize(("repository", "words"), [
    ("nothere", ["no repository 'nothere'"]),
    ("Bad_Name", ["invalid repository name"]),
])
def test_images_unknown_repository(seeded: Seeded, repository: str, words: list[str]) -> None:
    assert_one_line_error(cli(seeded.datadir.root, "images", repository), *words)
    assert_one_line_error(cli(seeded.datadir.root, "images", repository, "--json"), *words)


def test_images_on_an_enabled_data_dir_without_images(datadir: DataDir) -> None:
    assert cli_json(datadir.root, "images") == {"repositories": []}
    assert cli(datadir.root, "images").stdout.strip() == "No images yet."
    assert_one_line_error(cli(datadir.root, "images", "web"), "no repository 'web'")


# ---- delete -----------------------------------------------------------------------------------


def test_delete_by_digest(seeded: Seeded) -> None:
    reg = seeded.registry
    expected = preview_delete(reg, "web", seeded.web.digest)
    payload = cli_json(seeded.datadir.root, "delete", f"web@{seeded.web.digest}")
    assert payload["repository"] == "web"
    assert payload["digest"] == seeded.web.digest
    assert payload["tags"] == ["1.0", "latest"]
    assert payload["deleted"] is True and payload["dry_run"] is False
    assert payload["in_use_by"] == []
    assert payload["bytes_freed"] == expected.bytes_freed > 0
    assert [r["digest"] for r in payload["referrers"]] == [seeded.signature.digest]
    assert payload["referrers"][0]["fate"] == "deleted"
    assert not manifest_exists(reg, seeded.web)
    with pytest.raises(ManifestUnknown):
        reg.get_manifest("web", "latest")
    assert_pulls(reg, seeded.old)  # the shared base layer stays
    # what the preview promised is what a GC then frees
    assert collect(reg).bytes_freed == payload["gc_bytes_freed"]
    assert_pulls(reg, seeded.old)


def test_delete_text_shows_the_preview_first(seeded: Seeded) -> None:
    result = cli(seeded.datadir.root, "delete", f"web@{seeded.web.digest}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Delete web@{seeded.web.digest}"
    assert "tags deleted with it (2): 1.0, latest" in result.stdout
    assert seeded.signature.digest in result.stdout  # the referrer left dangling
    assert "A garbage collection will then free" in result.stdout
    assert lines[-1].startswith("Deleted web@") and "1.0, latest" in lines[-1]
    assert not manifest_exists(seeded.registry, seeded.web)


def test_delete_by_tag_deletes_the_manifest_with_every_tag(seeded: Seeded) -> None:
    payload = cli_json(seeded.datadir.root, "delete", "web:latest")
    assert payload["digest"] == seeded.web.digest
    assert payload["tags"] == ["1.0", "latest"]
    assert payload["deleted"] is True
    assert not manifest_exists(seeded.registry, seeded.web)
    assert browse.tags(seeded.registry, "web") == []
    assert manifest_exists(seeded.registry, seeded.old)


def test_untag_removes_only_that_tag(seeded: Seeded) -> None:
    payload = cli_json(seeded.datadir.root, "delete", "web:latest", "--untag")
    assert payload["untag"] is True and payload["deleted"] is True
    assert payload["repository"] == "web"
    assert payload["digest"] == seeded.web.digest
    assert payload["tags"] == ["latest"] and payload["other_tags"] == ["1.0"]
    assert payload["bytes_freed"] == 0 and payload["in_use_by"] == []
    assert [t.tag for t in browse.tags(seeded.registry, "web")] == ["1.0"]
    assert_pulls(seeded.registry, seeded.web)

    result = cli(seeded.datadir.root, "delete", "web:1.0", "--untag")
    assert result.returncode == 0, result.stderr
    assert "last tag" in result.stdout
    assert result.stdout.rstrip().endswith("Removed the tag web:1.0.")
    assert browse.tags(seeded.registry, "web") == []
    assert_pulls(seeded.registry, seeded.web)


def test_untag_needs_a_tag(seeded: Seeded) -> None:
    before = take_snapshot(seeded.datadir)
    result = cli(seeded.datadir.root, "delete", f"web@{seeded.web.digest}", "--untag")
    assert_one_line_error(result, "--untag", "REPO:TAG")
    assert before.diff(take_snapshot(seeded.datadir)) == []


@pytest.mark.parametrize("untag", [False, True])
def test_dry_run_deletes_nothing(seeded: Seeded, untag: bool) -> None:
    before = take_snapshot(seeded.datadir)
    extra = ["--untag"] if untag else []
    payload = cli_json(seeded.datadir.root, "delete", "web:latest", "--dry-run", *extra)
    assert payload["dry_run"] is True and payload["deleted"] is False
    assert payload["digest"] == seeded.web.digest
    assert payload["tags"] == (["latest"] if untag else ["1.0", "latest"])
    result = cli(seeded.datadir.root, "delete", "web:latest", "--dry-run", *extra)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("Dry run: nothing was deleted.")
    assert before.diff(take_snapshot(seeded.datadir)) == []


def test_dry_run_bytes_match_the_real_delete(seeded: Seeded) -> None:
    dry = cli_json(seeded.datadir.root, "delete", f"multi@{seeded.index.digest}", "--dry-run")
    real = cli_json(seeded.datadir.root, "delete", f"multi@{seeded.index.digest}")
    for key in ("tags", "bytes_freed", "blobs_freed", "children", "blocked_by"):
        assert dry[key] == real[key], key
    assert {c["digest"] for c in real["children"]} == {seeded.amd.digest, seeded.arm.digest}


@pytest.mark.parametrize("dry_run", [False, True])
def test_index_child_is_refused(seeded: Seeded, dry_run: bool) -> None:
    before = take_snapshot(seeded.datadir)
    args = ["delete", f"multi@{seeded.amd.digest}", *(["--dry-run"] if dry_run else [])]
    result = cli(seeded.datadir.root, *args)
    assert_one_line_error(result, seeded.index.digest, "index")
    assert_one_line_error(cli(seeded.datadir.root, *args, "--json"), seeded.index.digest)
    assert before.diff(take_snapshot(seeded.datadir)) == []


@pytest.mark.parametrize(("reference", "words"), [
    ("web", ["REPO@DIGEST or REPO:TAG"]),
    ("Web:1.0", ["invalid repository name"]),
    ("web:bad/tag", ["invalid tag"]),
    ("web@sha256:abc", ["invalid digest"]),
    ("web@md5:" + "0" * 32, ["not supported"]),
    ("@sha256:" + "0" * 64, ["repository name is empty"]),
    (":latest", ["repository name is empty"]),
])
def test_bad_reference(seeded: Seeded, reference: str, words: list[str]) -> None:
    before = take_snapshot(seeded.datadir)
    assert_one_line_error(cli(seeded.datadir.root, "delete", reference), "invalid reference",
                          *words)
    assert before.diff(take_snapshot(seeded.datadir)) == []


@pytest.mark.parametrize(("reference", "words"), [
    ("web@sha256:" + "0" * 64, ["no manifest web@sha256:000"]),
    ("nothere@sha256:" + "0" * 64, ["no manifest nothere@"]),
    ("web:nope", ["no tag web:nope"]),
    ("nothere:latest", ["no tag nothere:latest"]),
])
def test_unknown_manifest(seeded: Seeded, reference: str, words: list[str]) -> None:
    before = take_snapshot(seeded.datadir)
    assert_one_line_error(cli(seeded.datadir.root, "delete", reference), *words)
    assert_one_line_error(cli(seeded.datadir.root, "delete", reference, "--json"), *words)
    assert before.diff(take_snapshot(seeded.datadir)) == []


def test_delete_twice_fails_the_second_time(seeded: Seeded) -> None:
    cli_json(seeded.datadir.root, "delete", f"web@{seeded.old.digest}")
    result = cli(seeded.datadir.root, "delete", f"web@{seeded.old.digest}")
    assert_one_line_error(result, "no manifest", seeded.old.digest)


def test_force_is_accepted(seeded: Seeded) -> None:
    payload = cli_json(seeded.datadir.root, "delete", f"web@{seeded.old.digest}", "--force")
    assert payload["deleted"] is True and payload["in_use_by"] == []
