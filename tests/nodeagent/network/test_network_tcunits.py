"""tc units: what users write parses as tc would; printing gives one canonical spelling."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodeagent.mechanisms import tcunits


@pytest.mark.parametrize(
    ("text", "bytes_per_second"),
    [
        ("10mbit", 1_250_000),
        ("10Mbit", 1_250_000),
        ("512kbit", 64_000),
        ("1gbit", 125_000_000),
        ("1000000bps", 1_000_000),  # tc: bps is BYTES per second
        ("8000", 1_000),  # tc: a bare number is bits per second
        ("1.5mbit", 187_500),
        ("1kibit", 128),
        ("2tbit", 250_000_000_000),
        ("1mibps", 1_048_576),
        ("1001bit", 125),  # sub-byte remainder truncated, as tc does
    ],
)
def test_rates_parse_like_tc(text: str, bytes_per_second: int) -> None:
    assert tcunits.parse_rate(text) == bytes_per_second


@pytest.mark.parametrize(
    ("text", "size"),
    [("32kb", 32768), ("32k", 32768), ("1500", 1500), ("1500b", 1500), ("1mb", 2**20), ("8kbit", 1024)],
)
def test_sizes_are_binary_bytes(text: str, size: int) -> None:
    assert tcunits.parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "micros"), [("50ms", 50_000), ("1s", 10**6), ("2secs", 2 * 10**6), ("700us", 700), ("400", 400)]
)
def test_times_are_microseconds(text: str, micros: int) -> None:
    assert tcunits.parse_time(text) == micros


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1_250_000, "10mbit"),
        (125_000_000, "1gbit"),
        (64_000, "512kbit"),
        (125, "1kbit"),
        (1, "8bit"),
        (0, "0bit"),
    ],
)
def test_rates_print_in_the_largest_exact_si_unit(value: int, text: str) -> None:
    assert tcunits.format_rate(value) == text


def test_sizes_and_times_print_canonically() -> None:
    assert [tcunits.format_size(v) for v in (32768, 1500, 2**20, 3 * 2**30)] == [
        "32kb",
        "1500b",
        "1mb",
        "3gb",
    ]
    assert [tcunits.format_time(v) for v in (50_000, 10**6, 1500, 7)] == ["50ms", "1s", "1500us", "7us"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("10 mbit", "whitespace"),
        ("-1kbit", "negative"),
        ("fast", "not a rate"),
        ("10mbits", "unknown unit"),
        ("10%", "not a rate"),
        ("", "empty"),
        ("1" * 40, "too long"),
        ("1.2.3mbit", "not a rate"),
    ],
)
def test_malformed_rates_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        tcunits.parse_rate(text)


def test_non_strings_are_rejected_with_their_type() -> None:
    with pytest.raises(ValueError, match="not int"):
        tcunits.parse_rate(10)
    with pytest.raises(ValueError, match="unknown unit"):
        tcunits.parse_size("32kib")
    with pytest.raises(ValueError, match="unknown unit"):
        tcunits.parse_time("5min")


@settings(derandomize=True, deadline=None)
@given(st.integers(min_value=0, max_value=10**13))
def test_rate_round_trip(value: int) -> None:
    text = tcunits.format_rate(value)
    assert tcunits.parse_rate(text) == value
    assert tcunits.format_rate(tcunits.parse_rate(text)) == text


@settings(derandomize=True, deadline=None)
@given(st.integers(min_value=0, max_value=2**40))
def test_size_round_trip(value: int) -> None:
    assert tcunits.parse_size(tcunits.format_size(value)) == value


@settings(derandomize=True, deadline=None)
@given(st.integers(min_value=0, max_value=10**10))
def test_time_round_trip(value: int) -> None:
    assert tcunits.parse_time(tcunits.format_time(value)) == value


@settings(derandomize=True, deadline=None)
@given(
    st.integers(min_value=1, max_value=10**6),
    st.sampled_from(["bit", "kbit", "mbit", "gbit", "kibit", "bps", "kbps", "mibps"]),
)
def test_any_spelling_canonicalises_to_a_fixed_point(number: int, unit: str) -> None:
    canonical = tcunits.format_rate(tcunits.parse_rate(f"{number}{unit}"))
    assert tcunits.format_rate(tcunits.parse_rate(canonical)) == canonical
    assert tcunits.parse_rate(canonical.upper()) == tcunits.parse_rate(canonical)
