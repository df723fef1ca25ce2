"""ISO-8601 durations (registry_core/durations.py): parsed and formatted, a bad one refused in
one line that names what it was for (the sync window, a stage's expiry, the audit's --since)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_cli_basics import assert_one_line_error, cli
from test_quality import import_graph

from registry_core.access.audit import parse_duration as parse_since
from registry_core.durations import format_duration, parse_duration
from registry_core.errors import ConfigError, SyncConfigError
from registry_core.registry import Registry
from registry_core.sync.schedule import parse_window


@pytest.mark.parametrize(("text", "seconds", "canonical"), [
    ("PT3H", 10800, "PT3H"), ("PT30M", 1800, "PT30M"), ("P1D", 86400, "P1D"),
    ("P1DT2H30M", 95400, "P1DT2H30M"), ("PT1H30M15S", 5415, "PT1H30M15S"),
    ("PT0.5S", 0.5, "PT0.5S"), ("PT1,5S", 1.5, "PT1.5S"), ("P3DT1S", 3 * 86400 + 1, "P3DT1S"),
    ("PT90M", 5400, "PT1H30M"), ("PT24H", 86400, "P1D"), ("P2W", 14 * 86400, "P14D"),
    (" pt1m\n", 60, "PT1M"),
])
def test_parse_and_format(text: str, seconds: float, canonical: str) -> None:
    assert parse_duration(text, "stage expiry") == seconds
    assert format_duration(seconds) == canonical
    assert parse_duration(canonical, "stage expiry") == seconds


@given(st.integers(min_value=1, max_value=10**9))
def test_whole_seconds_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds), "x") == seconds


@pytest.mark.parametrize(("text", "says"), [
    ("P1X", "'P1X' is not an ISO-8601 duration such as PT3H, PT30M, P1D or P1DT2H30M"),
    ("", "'' is not an ISO-8601 duration"), ("PT", "'PT' is not an ISO-8601 duration"),
    ("3H", "'3H' is not an ISO-8601 duration"), ("PT1.5H", "'PT1.5H' is not an ISO-8601"),
    ("00:00-06:00", "'00:00-06:00' is not an ISO-8601 duration such as PT3H, PT30M, P1D or "
                    "P1DT2H30M (a time range is not a duration)"),
    ("P1M", "'P1M': years and months have no fixed length; use days (P30D) or hours"),
    ("P1Y2D", "'P1Y2D': years and months"), ("-PT1H", "'-PT1H' is negative"),
    ("PT0S", "'PT0S' must be longer than zero"),
])
@pytest.mark.parametrize("what", ["stage expiry", "audit --since"])
def test_a_bad_duration_is_named_in_one_line(what: str, text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(text, what)
    assert str(caught.value).startswith(f"{what} {says}")
    assert "\n" not in str(caught.value) and "sync" not in str(caught.value)


def test_each_caller_names_its_own_duration() -> None:
    with pytest.raises(SyncConfigError, match=r"^sync window 'P1X' is not an ISO-8601"):
        parse_window("P1X")
    with pytest.raises(ConfigError, match=r"^audit --since 'P1M': years and months"):
        parse_since("P1M")
    with pytest.raises(ConfigError, match=r"^audit --since 'bogus' is not a duration such as "
                                          r"30m, 1h, 7d, 2w or PT3H$"):
        parse_since("bogus")


def test_access_does_not_import_sync() -> None:
    found = {(name, target) for name, targets in import_graph().items()
             if name.startswith("registry_core.access") for target in targets
             if target.startswith("registry_core.sync")}
    assert found == set()


def test_cli_stage_refuses_a_bad_expiry_in_one_line(registry: Registry) -> None:
    result = cli(registry.datadir.root, "stage", "--expires", "P1X", "shop/web:v1")
    assert_one_line_error(result, "stage --expires 'P1X' is not an ISO-8601 duration")
    assert "sync window" not in result.stderr
    assert registry.store.sync_runs.recent(5) == []  # refused before any work


def test_cli_audit_refuses_a_bad_since_in_one_line(registry: Registry) -> None:
    assert_one_line_error(cli(registry.datadir.root, "audit", "--since", "bogus"),
                          "audit --since 'bogus' is not a duration")
    assert_one_line_error(cli(registry.datadir.root, "audit", "--since", "P1M"),
                          "audit --since 'P1M': years and months have no fixed length")
