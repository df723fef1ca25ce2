"""The Range header as RFC 9110 section 14 reads it, against an oracle written independently."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.http.ranges import ByteRange, Unsatisfiable, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=2-", 10, (2, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=5-99", 10, (5, 9)),
        ("BYTES = 1-2", 10, (1, 2)),
        ("bytes=1-2,", 10, (1, 2)),
    ],
)
def test_single_ranges(header: str, size: int, expected: tuple[int, int]) -> None:
    assert parse_range(header, size) == ByteRange(*expected, size)


@pytest.mark.parametrize(
    "header", [None, "", "bytes", "bytes=", "bytes=5-2", "bytes=x-", "lines=0-1", "bytes=1-2,3"]
)
def test_malformed_is_ignored(header: str | None) -> None:
    assert parse_range(header, 10) is None


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=-0", "bytes=10-,-0"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable) as info:
        parse_range(header, 10)
    assert info.value.size == 10


def test_empty_blob_has_no_satisfiable_range() -> None:
    with pytest.raises(Unsatisfiable):
        parse_range("bytes=-5", 0)


def test_several_ranges_answer_the_whole_blob() -> None:
    assert parse_range("bytes=0-1,4-5", 10) is None
    assert parse_range("bytes=20-30,4-5", 10) is None


SPEC = st.one_of(
    st.tuples(st.integers(0, 40), st.none() | st.integers(0, 40)),
    st.tuples(st.none(), st.integers(0, 40)),
)


@given(spec=SPEC, size=st.integers(0, 30))
def test_against_the_rfc(spec: tuple[int | None, int | None], size: int) -> None:
    first, last = spec
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    if first is not None and last is not None and last < first:
        assert parse_range(header, size) is None  # invalid: ignored
        return
    if first is None:
        assert last is not None
        want = None if last == 0 or size == 0 else (max(size - last, 0), size - 1)
    else:
        want = None if first >= size else (first, size - 1 if last is None else min(last, size - 1))
    if want is None:
        with pytest.raises(Unsatisfiable):
            parse_range(header, size)
    else:
        got = parse_range(header, size)
        assert got is not None
        assert (got.first, got.last, got.length) == (*want, want[1] - want[0] + 1)
        assert got.content_range() == f"bytes {want[0]}-{want[1]}/{size}"
