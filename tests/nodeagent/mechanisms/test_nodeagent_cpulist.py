"""The kernel's cpu-list notation: parsed like bitmap_parselist(), printed like %*pbl."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodeagent.host import cpulist


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("", set()),
        ("  \n", set()),
        ("0", {0}),
        ("0-3,6", {0, 1, 2, 3, 6}),
        ("6, 0-1", {0, 1, 6}),
        ("0-7:2/4", {0, 1, 4, 5}),  # the first 2 of every group of 4
        ("3-3", {3}),
        ("1,1,1", {1}),
    ],
)
def test_parse_accepts_what_the_kernel_accepts(text: str, ids: set[int]) -> None:
    assert cpulist.parse(text) == ids


@pytest.mark.parametrize("text", ["a", "1-", "-1", "3-1", "0-7:0/4", "0-7:5/4", "1;2", "0x1", "1 2"])
def test_parse_refuses_malformed_lists(text: str) -> None:
    with pytest.raises(cpulist.CpuListError):
        cpulist.parse(text)


def test_parse_refuses_ids_beyond_the_limit() -> None:
    with pytest.raises(cpulist.CpuListError, match="out of range"):
        cpulist.parse("0-100000")
    with pytest.raises(cpulist.CpuListError):
        cpulist.parse("4", limit=4)


@pytest.mark.parametrize(
    ("ids", "text"),
    [(set(), ""), ({0}, "0"), ({0, 1}, "0-1"), ({0, 1, 2, 5, 7, 8}, "0-2,5,7-8"), ({3, 1}, "1,3")],
)
def test_format_prints_like_the_kernel(ids: set[int], text: str) -> None:
    assert cpulist.format(ids) == text


def test_canonical_normalises_spelling() -> None:
    assert cpulist.canonical("3,0-2, 1") == "0-3"


def test_parse_words_reads_affected_cpus() -> None:
    assert cpulist.parse_words("0 1 2 3") == {0, 1, 2, 3}
    with pytest.raises(cpulist.CpuListError):
        cpulist.parse_words("0 x")


@given(st.frozensets(st.integers(min_value=0, max_value=cpulist.MAX_CPUS - 1), max_size=64))
def test_format_then_parse_round_trips(ids: frozenset[int]) -> None:
    assert cpulist.parse(cpulist.format(ids)) == ids


@given(st.frozensets(st.integers(min_value=0, max_value=255), max_size=64))
def test_canonical_is_a_fixed_point(ids: frozenset[int]) -> None:
    text = ",".join(str(i) for i in sorted(ids, reverse=True))  # any spelling of the set
    once = cpulist.canonical(text)
    assert cpulist.canonical(once) == once
    assert cpulist.parse(once) == ids
