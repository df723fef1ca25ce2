"""The connected registry's configuration: the connection string, the schedule and window,
`[sync]` in config.toml, and `sync configure` / `sync status` through the real CLI."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.config import Config, SyncConfig, load_config, save_config
from registry_core.datadir import DataDir
from registry_core.errors import ConfigError, SyncConfigError
from registry_core.store import Store
from registry_core.store.sync_runs import SyncRunRecord
from registry_core.sync.connection import (
    ConnectionString,
    connection_path,
    load_connection,
    parent_ca_path,
    parse_connection_string,
    save_connection,
    save_parent_ca,
)
from registry_core.sync.schedule import SyncSchedule, check_cron, format_window, parse_window
from registry_core.sync.settings import SyncNotConfigured, configure, load_settings
from registry_core.sync.status import derive_state

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Zm9v+YmFy/c2VjcmV0==Q"
"""Base64-like, with '=' inside and at the end, as the parent generates them."""
GOOD = (
    "ConnectedRegistryName=site7-edge;SyncTokenName=site7-edge-sync-token;"
    f"SyncTokenPassword={PASSWORD};ParentGatewayEndpoint=myacr.westus2.data.azurecr.io;"
    "ParentEndpointProtocol=https"
)
EXPECTED = ConnectionString("site7-edge", "site7-edge-sync-token", PASSWORD,
                            "myacr.westus2.data.azurecr.io", "https")


def with_field(key: str, value: str | None) -> str:
    """GOOD with one field's value replaced (None: the field left out)."""
    parts = []
    for part in GOOD.split(";"):
        k, _, _v = part.partition("=")
        if k != key:
            parts.append(part)
        elif value is not None:
            parts.append(f"{k}={value}")
    return ";".join(parts)


# ---- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    GOOD,
    GOOD + ";",
    f"\ufeff{GOOD};\r\n",
    f"  \r\n{GOOD}\r\n\r\n",
    GOOD.replace(";", " ; "),
    GOOD.replace("ConnectedRegistryName", "connectedregistryname").replace(
        "ParentEndpointProtocol=https", "PARENTENDPOINTPROTOCOL=HTTPS"),
    ";".join(reversed(GOOD.split(";"))),
    f'"{GOOD}"\n',
    json.dumps({"connectionString": GOOD}) + "\n",
    "\ufeff" + json.dumps({"connectionString": GOOD + "\r"}, indent=2) + "\r\n",
], ids=lambda v: repr(v)[:30])
def test_good_connection_strings(text: str) -> None:
    assert parse_connection_string(text) == EXPECTED


@pytest.mark.parametrize("endpoint", [
    "myacr.azurecr.io:443", "10.0.0.5:5000", "localhost", "[::1]:5000", "[fe80::1]",
    "parent.example.", "a-b.c-d.example:65535",
])
def test_good_endpoints(endpoint: str) -> None:
    assert parse_connection_string(with_field("ParentGatewayEndpoint", endpoint)) \
        .parent_endpoint == endpoint


def test_password_keeps_every_equals_sign() -> None:
    for password in ("a=b=c", "==", "x=", "=x", "p+/9=="):
        parsed = parse_connection_string(with_field("SyncTokenPassword", password))
        assert parsed.token_password == password


CONNECTION_ERRORS = [
    ("", ["empty"]),
    ("\ufeff \r\n", ["empty"]),
    (with_field("SyncTokenName", None), ["SyncTokenName is missing"]),
    (with_field("SyncTokenPassword", None), ["SyncTokenPassword is missing"]),
    ("ConnectedRegistryName=site7-edge", ["SyncTokenName, SyncTokenPassword, "
                                          "ParentGatewayEndpoint, ParentEndpointProtocol",
                                          "missing"]),
    (with_field("ConnectedRegistryName", ""), ["ConnectedRegistryName is empty"]),
    (with_field("SyncTokenPassword", ""), ["SyncTokenPassword is empty"]),
    (with_field("ParentGatewayEndpoint", " "), ["ParentGatewayEndpoint is empty"]),
    (GOOD + ";SyncTokenName=other", ["SyncTokenName is given twice"]),
    (GOOD + ";synctokenname=other", ["SyncTokenName is given twice"]),
    ("ParentEndpoint=x;" + GOOD, ["unknown key 'ParentEndpoint'"]),
    ("garbage;" + GOOD, ["part 1 is not Key=Value"]),
    (with_field("ParentEndpointProtocol", "http"), ["ParentEndpointProtocol must be https",
                                                    "'http'"]),
    (with_field("ParentGatewayEndpoint", "https://myacr.azurecr.io"),
     ["ParentGatewayEndpoint", "without a scheme"]),
    (with_field("ParentGatewayEndpoint", "myacr.azurecr.io/v2"), ["without a scheme or a path"]),
    (with_field("ParentGatewayEndpoint", "myacr.azurecr.io:0"), ["port", "1-65535"]),
    (with_field("ParentGatewayEndpoint", "myacr.azurecr.io:65536"), ["port", "1-65535"]),
    (with_field("ParentGatewayEndpoint", "myacr.azurecr.io:https"), ["port", "1-65535"]),
    (with_field("ParentGatewayEndpoint", "myacr.azurecr.io:"), ["port", "1-65535"]),
    (with_field("ParentGatewayEndpoint", "my_acr.azurecr.io"), ["not a host name"]),
    (with_field("ParentGatewayEndpoint", "-acr.example"), ["not a host name"]),
    (with_field("ParentGatewayEndpoint", "a..b"), ["not a host name"]),
    (with_field("ParentGatewayEndpoint", "1.2.3"), ["not a host name"]),
    (with_field("ParentGatewayEndpoint", "[::zz]:5000"), ["not an IPv6 address"]),
    (with_field("ParentGatewayEndpoint", "[::1]5000"), ["[address]:port"]),
    (with_field("ConnectedRegistryName", "edge"), ["ConnectedRegistryName 'edge'", "5-40"]),
    (with_field("ConnectedRegistryName", "7site"), ["ConnectedRegistryName", "a letter"]),
    (with_field("ConnectedRegistryName", "site 7"), ["ConnectedRegistryName"]),
    (with_field("ConnectedRegistryName", "s" * 41), ["ConnectedRegistryName", "5-40"]),
    (with_field("SyncTokenName", "-token"), ["SyncTokenName '-token'", "1-64"]),
    (with_field("SyncTokenName", "tok:en"), ["SyncTokenName"]),
    (with_field("SyncTokenPassword", "two words"), ["SyncTokenPassword contains blanks"]),
    (with_field("SyncTokenPassword", "x" * 1025), ["SyncTokenPassword is longer"]),
    ('{"connectionString": 5}', ["JSON without a \"connectionString\""]),
    ('{"connectionString": ', ["not valid JSON"]),
]


@pytest.mark.parametrize(("text", "words"), CONNECTION_ERRORS,
                         ids=[words[-1] for _text, words in CONNECTION_ERRORS])
def test_connection_string_errors(text: str, words: list[str]) -> None:
    with pytest.raises(SyncConfigError) as caught:
        parse_connection_string(text)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("connection string") or "JSON" in message
    for word in words:
        assert word in message
    assert PASSWORD not in message


@pytest.mark.parametrize("password", [
    "Pw1;Pw2", "Pw1;Pw2=Pw3", "Pw1;ParentGatewayEndpoint", "Pw1;ParentGatewayEndpoint=Pw3",
    "Pw1;;Pw2",
])
def test_a_semicolon_in_a_password_is_refused_without_showing_it(password: str) -> None:
    # values end at ';' (the format has no quoting; generated passwords never hold one)
    last = GOOD.replace(f"SyncTokenPassword={PASSWORD};", "") + f";SyncTokenPassword={password}"
    for text in (with_field("SyncTokenPassword", password), last):
        with pytest.raises(SyncConfigError) as caught:
            parse_connection_string(text)
        assert "Pw" not in str(caught.value)


passwords = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=";"),
    min_size=1, max_size=200)


@given(passwords)
def test_password_round_trip_and_never_in_repr(password: str) -> None:
    original = ConnectionString("site7-edge", "tok", password, "parent.example:5000")
    parsed = parse_connection_string(original.to_text())
    assert parsed == original
    assert repr(parsed) == ("ConnectionString(name='site7-edge', token_name='tok', "
                            "parent_endpoint='parent.example:5000', protocol='https')")
    assert set(parsed.to_json()) == {"connected_registry", "token_name", "parent_endpoint",
                                     "protocol"}


BREAKAGES = [
    ("ParentEndpointProtocol", "http"), ("ParentEndpointProtocol", None),
    ("ParentGatewayEndpoint", "x:99999"), ("ConnectedRegistryName", "no"),
    ("SyncTokenName", "bad name"), ("SyncTokenName", ""), ("Extra", "1"),
]


@given(passwords, st.sampled_from(BREAKAGES), st.booleans())
def test_the_password_is_in_no_error(tail: str, breakage: tuple[str, str | None],
                                     semicolon: bool) -> None:
    password = "Pw#" + tail + (";Pw#tail=x" if semicolon else "")
    fields: dict[str, str] = {
        "ConnectedRegistryName": "site7-edge", "SyncTokenName": "tok",
        "SyncTokenPassword": password, "ParentGatewayEndpoint": "parent.example",
        "ParentEndpointProtocol": "https",
    }
    key, value = breakage
    if value is None:
        del fields[key]
    else:
        fields[key] = value
    with pytest.raises(SyncConfigError) as caught:
        parse_connection_string(";".join(f"{k}={v}" for k, v in fields.items()))
    assert "Pw#" not in str(caught.value)


# ---- kept in the data dir --------------------------------------------------------------------


def test_saved_0600_in_a_0700_dir_and_loaded(tmp_path: Path) -> None:
    datadir = DataDir(tmp_path / "data")
    datadir.ensure()
    assert load_connection(datadir) is None
    path = save_connection(datadir, EXPECTED)
    assert path == connection_path(datadir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_connection(datadir) == EXPECTED
    other = ConnectionString("other-site", "t", "p=", "h:1")
    save_connection(datadir, other)
    assert load_connection(datadir) == other
    assert [p.name for p in path.parent.iterdir()] == ["connection"]  # no temp file left


def test_a_wider_sync_dir_is_tightened(tmp_path: Path) -> None:
    datadir = DataDir(tmp_path / "data")
    (datadir.root / "sync").mkdir(parents=True, mode=0o755)
    (datadir.root / "sync").chmod(0o755)
    save_connection(datadir, EXPECTED)
    assert stat.S_IMODE((datadir.root / "sync").stat().st_mode) == 0o700


def test_a_damaged_connection_file_names_the_file_not_the_password(tmp_path: Path) -> None:
    datadir = DataDir(tmp_path / "data")
    save_connection(datadir, EXPECTED)
    connection_path(datadir).write_text(with_field("ParentEndpointProtocol", "ftp"))
    with pytest.raises(SyncConfigError) as caught:
        load_connection(datadir)
    assert str(connection_path(datadir)) in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_parent_ca_checked_and_copied(tmp_path: Path, enabled_template: Path) -> None:
    datadir = DataDir(tmp_path / "data")
    ca = enabled_template / "certs" / "ca.crt"
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(ca.read_bytes() + (enabled_template / "certs" / "server.crt").read_bytes())
    assert save_parent_ca(datadir, bundle) == parent_ca_path(datadir)
    assert parent_ca_path(datadir).read_bytes() == bundle.read_bytes()
    for bad, content in (("key.pem", (enabled_template / "certs" / "ca.key").read_bytes()),
                         ("empty.pem", b""), ("text.pem", b"hello\n"),
                         ("cut.pem", ca.read_bytes()[:200])):
        path = tmp_path / bad
        path.write_bytes(content)
        with pytest.raises(SyncConfigError, match=r"not a PEM X\.509 certificate"):
            save_parent_ca(datadir, path)
    with pytest.raises(SyncConfigError, match=r"missing\.pem"):
        save_parent_ca(datadir, tmp_path / "missing.pem")
    assert parent_ca_path(datadir).read_bytes() == bundle.read_bytes()


# ---- schedule and window -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("PT3H", 10800), ("PT30M", 1800), ("P1D", 86400), ("P1DT2H30M", 95400),
    ("PT1H30M15S", 5415), ("PT24H", 86400), ("P2W", 14 * 86400), ("pt1m", 60),
    ("PT0.5S", 0.5), (" PT3H\n", 10800), ("PT90M", 5400),
])
def test_windows(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize(("text", "words"), [
    ("P1Y", ["years and months"]), ("P1M", ["years and months"]),
    ("P1Y2DT3H", ["years and months"]), ("-PT1H", ["negative"]),
    ("PT0S", ["longer than zero"]), ("P0D", ["longer than zero"]),
    ("P", ["not an ISO-8601 duration"]), ("PT", ["not an ISO-8601 duration"]),
    ("P1DT", ["not an ISO-8601 duration"]), ("3H", ["not an ISO-8601 duration"]),
    ("PT1.5H", ["not an ISO-8601 duration"]), ("PT-1H", ["not an ISO-8601 duration"]),
    ("", ["not an ISO-8601 duration"]), ("P1W2D", ["not an ISO-8601 duration"]),
    ("00:00:00-23:59:59", ["a time range is not a duration"]),
])
def test_bad_windows(text: str, words: list[str]) -> None:
    with pytest.raises(SyncConfigError) as caught:
        parse_window(text)
    assert "\n" not in str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_format_window() -> None:
    for text in ("PT3H", "P1D", "P1DT2H30M", "PT1H30M15S", "PT0.5S", "P3DT1S"):
        assert format_window(parse_window(text)) == text


@pytest.mark.parametrize(("cron", "words"), [
    ("* * * *", ["5 fields", "not 4"]), ("0 * * * * *", ["5 fields", "not 6"]),
    ("@daily", ["5 fields"]), ("61 * * * *", ["not a valid cron"]),
    ("0 0 31 2 *", ["never fires"]), ("", ["5 fields"]),
])
def test_bad_crons(cron: str, words: list[str]) -> None:
    with pytest.raises(SyncConfigError) as caught:
        check_cron(cron)
    for word in words:
        assert word in str(caught.value)


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def test_window_examples() -> None:
    nightly = SyncSchedule.parse("0 2 * * *", "PT3H", UTC)
    assert nightly.window_end(utc(2024, 5, 9, 1, 59)) is None
    assert nightly.window_end(utc(2024, 5, 9, 2, 0)) == utc(2024, 5, 9, 5, 0)
    assert nightly.window_end(utc(2024, 5, 9, 4, 59, 59)) == utc(2024, 5, 9, 5, 0)
    assert nightly.window_end(utc(2024, 5, 9, 5, 0)) is None
    assert nightly.next_start(utc(2024, 5, 9, 2, 0)) == utc(2024, 5, 10, 2, 0)
    assert nightly.next_start(utc(2024, 5, 9, 1, 0)) == utc(2024, 5, 9, 2, 0)
    chained = SyncSchedule.parse("0 */2 * * *", "PT2H", UTC)  # windows back to back
    assert chained.window_end(utc(2024, 5, 9, 3, 0)) == math.inf
    overlapping = SyncSchedule.parse("0 0,1 * * *", "PT90M", UTC)  # 00:00-02:30 as one
    assert overlapping.window_end(utc(2024, 5, 9, 0, 10)) == utc(2024, 5, 9, 2, 30)
    assert overlapping.window_end(utc(2024, 5, 9, 2, 30)) is None


def test_continuously() -> None:
    always = SyncSchedule.parse(" *  * * * * ", "PT1M", UTC)
    assert always.continuous and always.cron == "* * * * *"
    for at in (0.0, 1.5, utc(2024, 2, 29, 23, 59, 59)):
        assert always.window_end(at) == math.inf
        assert always.next_start(at) == (math.floor(at / 60) + 1) * 60


minute_fields = st.sampled_from(["0", "15", "*/10", "*/30", "5,35", "59"])
hour_fields = st.sampled_from(["*", "2", "*/3", "0,12", "23", "1-4"])
day_fields = st.sampled_from(["*", "1", "15", "*/7"])
weekday_fields = st.sampled_from(["*", "1-5", "0", "6"])
crons = st.builds(lambda m, h, d, w: f"{m} {h} {d} * {w}",
                  minute_fields, hour_fields, day_fields, weekday_fields)
schedules = st.builds(lambda cron, window: SyncSchedule(cron, window, UTC),
                      crons, st.integers(60, 3 * 86400).map(float))
instants = st.floats(1.6e9, 1.9e9, allow_nan=False)


def is_fire_time(schedule: SyncSchedule, at: float) -> bool:
    return at % 60 == 0 and bool(croniter.match(schedule.cron, datetime.fromtimestamp(at, UTC)))


@settings(deadline=None, max_examples=150)
@given(schedules, instants)
def test_next_start_is_the_next_fire_time(schedule: SyncSchedule, now: float) -> None:
    start = schedule.next_start(now)
    assert start > now
    assert is_fire_time(schedule, start)
    previous = croniter(schedule.cron, datetime.fromtimestamp(start, UTC)).get_prev(float)
    assert previous <= now  # no fire time in between


@settings(deadline=None, max_examples=150)
@given(schedules, instants)
def test_window_end_properties(schedule: SyncSchedule, now: float) -> None:
    end = schedule.window_end(now)
    if end is None:
        # outside: the last window closed by now, and the next start opens one
        start = schedule.next_start(now)
        assert schedule.window_end(start) is not None
        assert schedule.window_end((now + start) / 2) is None
        return
    assert now < end
    if end == math.inf:
        return
    assert schedule.window_end(end) is None  # the end itself is outside
    assert schedule.window_end((now + end) / 2) == end  # inside all along
    assert schedule.window_end(end - 0.001) == end


@settings(deadline=None, max_examples=100)
@given(schedules, instants, st.floats(0, 1))
def test_a_time_inside_a_window_is_before_its_end(
    schedule: SyncSchedule, now: float, fraction: float,
) -> None:
    opened = schedule.next_start(now)
    inside = opened + fraction * schedule.window_seconds * 0.999
    end = schedule.window_end(inside)
    assert end is not None and inside < end
    assert end >= opened + schedule.window_seconds


# ---- [sync] in config.toml -------------------------------------------------------------------


def test_sync_section_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = Config()
    assert config.sync == SyncConfig()
    assert (config.sync.mode, config.sync.schedule, config.sync.window) == \
        ("ReadOnly", "* * * * *", "PT24H")
    config.sync = SyncConfig(mode="ReadWrite", repositories=["app/*", "hello-world", "a?c"],
                             tag_filters=[r"v\d+\.\d+", 'q"uote'], schedule="0 2 * * 1-5",
                             window="P1DT2H30M", parallel_transfers=16, enabled=True)
    save_config(config, path)
    assert load_config(path) == config
    assert "[sync]" in path.read_text()


@pytest.mark.parametrize(("toml", "words"), [
    ('mode = "readonly"', ["sync.mode", "ReadOnly or ReadWrite", "'readonly'"]),
    ("mode = 1", ["sync.mode must be str"]),
    ('repositories = ["App"]', ["sync.repositories", "'App'"]),
    ('repositories = ["app/"]', ["sync.repositories", "'app/'"]),
    ('repositories = ["app/[ab]"]', ["sync.repositories"]),
    ('repositories = "app"', ["sync.repositories must be a list of strings"]),
    ('tag_filters = ["v(1"]', ["sync.tag_filters", "'v(1'", "not a regex"]),
    ('tag_filters = [""]', ["sync.tag_filters", "empty"]),
    ('schedule = "every night"', ["sync schedule 'every night'", "5 fields"]),
    ('schedule = "0 25 * * *"', ["not a valid cron"]),
    ('window = "P1M"', ["sync window 'P1M'", "years and months"]),
    ('window = "3h"', ["sync window '3h'"]),
    ("parallel_transfers = 0", ["sync.parallel_transfers must be 1-16, not 0"]),
    ("parallel_transfers = 17", ["sync.parallel_transfers must be 1-16, not 17"]),
    ('enabled = "yes"', ["sync.enabled must be bool"]),
    ("unknown = 1", ["unknown setting 'sync.unknown'"]),
])
def test_sync_section_errors(tmp_path: Path, toml: str, words: list[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[sync]\n{toml}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    for word in words:
        assert word in message


def test_settings_scope(tmp_path: Path, enabled_template: Path) -> None:
    datadir = DataDir(tmp_path / "data")
    shutil.copytree(enabled_template, datadir.root)
    with pytest.raises(SyncNotConfigured):
        load_settings(datadir)
    settings = configure(datadir, connection=EXPECTED, repositories=["app/*", "hello-world"],
                         tag_filters=[r"v1\..*", "latest"])
    assert settings == load_settings(datadir)
    assert "Zm9v" not in repr(settings)
    assert [settings.repository_in_scope(n) for n in
            ("app/web", "app/a/b", "hello-world", "hello-world2", "other")] == \
        [True, True, True, False, False]
    assert [settings.tag_in_scope(t) for t in ("v1.2", "latest", "v10", "xlatest")] == \
        [True, True, False, False]


def record(status: str, run_id: int = 1) -> SyncRunRecord:
    """'failed+' is a failed run that did reach the parent (errors on some tags)."""
    run = SyncRunRecord(id=run_id, trigger="manual", owner="test", started_at=0.0,
                        finished_at=1.0, heartbeat_at=1.0, status=status.rstrip("+"))
    if status.endswith("+"):
        run.details["parent_reachable"] = True
    return run


@pytest.mark.parametrize(("configured", "running", "statuses", "state"), [
    (False, False, ["succeeded"], "NotConfigured"),
    (True, True, ["failed"], "Syncing"),
    (True, False, [], "Offline"),
    (True, False, ["cancelled"], "Offline"),
    (True, False, ["succeeded", "failed", "failed", "failed"], "Online"),
    (True, False, ["stopped"], "Online"),
    (True, False, ["cancelled", "succeeded"], "Online"),
    (True, False, ["failed", "succeeded"], "Offline"),
    (True, False, ["failed", "failed", "succeeded"], "Offline"),
    (True, False, ["failed", "cancelled", "failed", "failed"], "Offline"),  # the uplink
    (True, False, ["failed+", "failed", "failed"], "Unhealthy"),
    (True, False, ["failed+", "succeeded"], "Online"),
    (True, False, ["failed+", "failed+", "failed+"], "Unhealthy"),
    (True, False, ["failed", "failed+", "succeeded"], "Offline"),
])
def test_state(configured: bool, running: bool, statuses: list[str], state: str) -> None:
    runs = [record(s, i) for i, s in enumerate(statuses)]
    assert derive_state(configured, running, runs) == state


# ---- the command line ------------------------------------------------------------------------


def cli(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EDGE_CONSOLE_DATA", None)
    return subprocess.run(
        [sys.executable, "-m", "console", *args, "--data-dir", str(data)],
        input=stdin if stdin is not None else "", capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edge-console: error: ")
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def enabled_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("sync-template") / "data"
    result = cli(data, "enable", "--device-name", "site7")
    assert result.returncode == 0, result.stderr
    return data


@pytest.fixture
def data(tmp_path: Path, enabled_template: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(enabled_template, target)
    return target


@pytest.fixture
def string_file(tmp_path: Path) -> Path:
    path = tmp_path / "protected-settings-extension.json"
    path.write_text("\ufeff" + json.dumps({"connectionString": GOOD}) + "\r\n", encoding="utf-8")
    return path


def no_password(*outputs: str) -> None:
    for output in outputs:
        assert PASSWORD not in output
        assert PASSWORD[:8] not in output


def run_json(data: Path, *args: str, stdin: str | None = None) -> dict[str, object]:
    result = cli(data, *args, "--json", stdin=stdin)
    assert result.returncode == 0, result.stderr
    no_password(result.stdout, result.stderr)
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return payload


def test_status_of_a_fresh_data_dir(tmp_path: Path, data: Path) -> None:
    payload = run_json(data, "sync", "status")
    assert payload["state"] == "NotConfigured" and payload["configured"] is False
    assert payload["mode"] == "ReadOnly" and payload["last_sync"] is None
    assert payload["next_run"] is None and payload["parent_endpoint"] is None
    # A data dir never enabled is refused as by every other command (not NotConfigured).
    text = cli(tmp_path / "never-enabled", "sync", "status")
    assert text.returncode == 1 and text.stdout == ""
    assert "run `edge-console enable` first" in text.stderr.strip().splitlines()[-1]


def test_configure_from_a_file_then_status(data: Path, string_file: Path,
                                           enabled_template: Path) -> None:
    shown = run_json(data, "sync", "configure", "--connection-string-file", str(string_file),
                     "--parent-ca", str(enabled_template / "certs" / "ca.crt"),
                     "--mode", "ReadWrite", "--repository", "app/*",
                     "--repository", "hello-world", "--schedule", "0 2 * * *",
                     "--window", "PT3H")
    assert shown["connected_registry"] == "site7-edge"
    assert shown["parent_endpoint"] == "myacr.westus2.data.azurecr.io"
    assert shown["token_name"] == "site7-edge-sync-token"
    assert shown["mode"] == "ReadWrite" and shown["repositories"] == ["app/*", "hello-world"]
    assert shown["parent_ca"] == str(data / "sync" / "parent-ca.pem")
    assert stat.S_IMODE((data / "sync" / "connection").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "sync").stat().st_mode) == 0o700
    status = run_json(data, "sync", "status")
    assert status["state"] == "Offline" and status["last_sync"] is None
    for key in ("mode", "state", "last_sync", "parent_endpoint", "connected_registry",
                "repositories", "schedule", "window", "next_run"):
        assert key in status
    assert status["schedule"] == "0 2 * * *" and status["window"] == "PT3H"
    next_run = datetime.fromisoformat(str(status["next_run"]))
    assert (next_run.minute, next_run.second) == (0, 0)
    text = cli(data, "sync", "status")
    assert text.returncode == 0 and "Offline (never synced)" in text.stdout
    assert "myacr.westus2.data.azurecr.io" in text.stdout
    no_password(text.stdout, text.stderr)


def test_configure_from_stdin_and_change_one_setting(data: Path) -> None:
    run_json(data, "sync", "configure", "--connection-string-file", "-",
             "--repository", "hello-world", stdin=f"\ufeff{GOOD};\r\n")
    changed = run_json(data, "sync", "configure", "--window", "pt30m")
    assert changed["window"] == "PT30M" and changed["repositories"] == ["hello-world"]
    assert changed["schedule"] == "* * * * *" and changed["continuous"] is True
    status = run_json(data, "sync", "status")
    assert status["in_window"] is True and status["window_end"] is None  # continuously
    text = cli(data, "sync", "configure", "--tag-filter", "v1.*")
    assert text.returncode == 0 and "v1.*" in text.stdout
    no_password(text.stdout, text.stderr, (data / "config.toml").read_text())


CONFIGURE_ERRORS = [
    (["--connection-string-file", "-"], GOOD.replace("https", "http"),
     ["ParentEndpointProtocol must be https"]),
    (["--connection-string-file", "-"], with_field("SyncTokenPassword", "ab;cd"),
     ["cannot contain ';'"]),
    (["--connection-string-file", "-"], "", ["connection string is empty"]),
    (["--connection-string-file", "-", "--window", "P1Y"], GOOD, ["years and months"]),
    (["--connection-string-file", "-", "--schedule", "0 0 31 2 *"], GOOD, ["never fires"]),
    (["--connection-string-file", "-", "--repository", "App/*"], GOOD,
     ["sync.repositories", "'App/*'"]),
    (["--connection-string-file", "-", "--tag-filter", "v(1"], GOOD, ["'v(1'"]),
    (["--connection-string-file", "-", "--parent-ca", "/nonexistent/ca.pem"], GOOD,
     ["/nonexistent/ca.pem"]),
    (["--connection-string-file", "/nonexistent/cs"], None, ["/nonexistent/cs"]),
    (["--window", "PT3H"], None, ["no connection string is configured yet"]),
    (["--connection-string", GOOD], None, ["never given on the command line"]),
    ([GOOD], None, ["never on the command line"]),
]


@pytest.mark.parametrize(("args", "stdin", "words"), CONFIGURE_ERRORS,
                         ids=[words[-1] for _args, _stdin, words in CONFIGURE_ERRORS])
def test_configure_errors(data: Path, args: list[str], stdin: str | None,
                          words: list[str]) -> None:
    before = (data / "config.toml").read_text()
    result = cli(data, "sync", "configure", *args, stdin=stdin)
    assert_one_line_error(result, *words)
    no_password(result.stderr)
    assert not (data / "sync" / "connection").exists()  # nothing written
    assert (data / "config.toml").read_text() == before


def test_parent_ca_must_be_a_certificate(data: Path, enabled_template: Path) -> None:
    result = cli(data, "sync", "configure", "--connection-string-file", "-", "--parent-ca",
                 str(enabled_template / "certs" / "ca.key"), stdin=GOOD)
    assert_one_line_error(result, "ca.key", "not a PEM X.509 certificate")
    assert not (data / "sync" / "parent-ca.pem").exists()


def test_configure_needs_an_enabled_registry(tmp_path: Path) -> None:
    result = cli(tmp_path / "nothing", "sync", "configure", "--connection-string-file", "-",
                 stdin=GOOD)
    assert_one_line_error(result, "not enabled", "edge-console enable")


def test_a_non_utf8_file_is_refused(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "utf16.txt"
    path.write_text(GOOD, encoding="utf-16")
    assert_one_line_error(cli(data, "sync", "configure", "--connection-string-file", str(path)),
                          "not UTF-8 text")


def add_runs(data: Path, *outcomes: tuple[str, list[str]]) -> None:
    """Finished runs in the real store, oldest first, as a sync would leave them ('failed+':
    failed with the parent answering, as `record` has it)."""
    store = Store(DataDir(data).database)
    try:
        for status, errors in outcomes:
            with store.exclusive():
                run = store.sync_runs.create("schedule", "test")
                run.status, run.errors, run.manifests_copied = status.rstrip("+"), errors, 3
                run.details["parent_reachable"] = status != "failed"
                store.sync_runs.save(run)
    finally:
        store.close()


def test_status_from_the_run_history(data: Path) -> None:
    run_json(data, "sync", "configure", "--connection-string-file", "-",
             "--repository", "app/*", stdin=GOOD)
    add_runs(data, ("succeeded", []))
    online = run_json(data, "sync", "status")
    assert online["state"] == "Online" and online["last_sync"] is not None
    last = online["last_run"]
    assert isinstance(last, dict) and last["status"] == "succeeded"
    assert last["manifests_copied"] == 3
    add_runs(data, ("failed", ["parent unreachable: connection refused"]))
    assert run_json(data, "sync", "status")["state"] == "Offline"
    add_runs(data, ("cancelled", []), ("failed+", ["x"]), ("failed+", ["y"]))
    unhealthy = run_json(data, "sync", "status")
    assert unhealthy["state"] == "Unhealthy"
    assert unhealthy["last_sync"] == online["last_sync"]
    text = cli(data, "sync", "status")
    assert "State: Unhealthy" in text.stdout and "error: y" in text.stdout
    store = Store(DataDir(data).database)
    try:
        with store.exclusive():
            store.sync_runs.create("manual", "test")
    finally:
        store.close()
    syncing = run_json(data, "sync", "status")
    assert syncing["state"] == "Syncing"
    running = syncing["running"]
    assert isinstance(running, dict) and running["status"] == "running"
