"""tc's unit syntax for rates, sizes and times: parse what users write, print one canonical spelling.

Parsing follows iproute2's `get_rate`/`get_size`/`get_time` (case-insensitive suffixes, a bare
number means bits/s, bytes and microseconds respectively, decimals allowed) so a profile means
what `tc` would make of it. Formatting picks the largest unit that divides the value exactly, so
`format(parse(x))` is a fixed point and two spellings of one value ("1000kbit", "1mbit") compare
equal once canonical. Values are the kernel's units: rates in bytes/s (what netlink carries),
sizes in bytes, times in microseconds; fractions below one unit are truncated, as tc does.

Pure functions: errors are ValueError with a reason meant to follow a field path.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<unit>[A-Za-z]*)")
_MAX_TEXT = 32

# Multipliers to bits/s; tc: "bit"/SI "kbit".., IEC "kibit".., and "bps" meaning *bytes*/s.
_RATE_UNITS: dict[str, int] = {
    "": 1,
    "bit": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "tbit": 10**12,
    "kibit": 2**10,
    "mibit": 2**20,
    "gibit": 2**30,
    "tibit": 2**40,
    "bps": 8,
    "kbps": 8 * 10**3,
    "mbps": 8 * 10**6,
    "gbps": 8 * 10**9,
    "tbps": 8 * 10**12,
    "kibps": 8 * 2**10,
    "mibps": 8 * 2**20,
    "gibps": 8 * 2**30,
    "tibps": 8 * 2**40,
}
# Multipliers to bytes; tc sizes are binary ("32kb" = 32768 bytes), "kbit" is 1024 bits.
_SIZE_UNITS: dict[str, Fraction] = {
    "": Fraction(1),
    "b": Fraction(1),
    "k": Fraction(2**10),
    "kb": Fraction(2**10),
    "m": Fraction(2**20),
    "mb": Fraction(2**20),
    "g": Fraction(2**30),
    "gb": Fraction(2**30),
    "kbit": Fraction(2**10, 8),
    "mbit": Fraction(2**20, 8),
    "gbit": Fraction(2**30, 8),
}
# Multipliers to microseconds.
_TIME_UNITS: dict[str, int] = {
    "": 1,
    "us": 1,
    "usec": 1,
    "usecs": 1,
    "ms": 10**3,
    "msec": 10**3,
    "msecs": 10**3,
    "s": 10**6,
    "sec": 10**6,
    "secs": 10**6,
}

# Canonical spellings, largest first.
_RATE_OUT = (("tbit", 10**12), ("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3), ("bit", 1))
_SIZE_OUT = (("gb", 2**30), ("mb", 2**20), ("kb", 2**10), ("b", 1))
_TIME_OUT = (("s", 10**6), ("ms", 10**3), ("us", 1))
_EXAMPLES = {"rate": '"10mbit"', "size": '"32kb"', "time": '"50ms"'}


def _parse(text: object, units: dict[str, int] | dict[str, Fraction], what: str) -> Fraction:
    if not isinstance(text, str):
        raise ValueError(f"must be a string such as {_EXAMPLES[what]}, not {type(text).__name__}")
    if not text:
        raise ValueError(f"is empty; expected a {what} such as {_EXAMPLES[what]}")
    if len(text) > _MAX_TEXT:
        raise ValueError(f"is too long ({len(text)} characters) for a {what}")
    if text.startswith("-"):
        raise ValueError(f"{text!r} is negative; a {what} must be positive")
    if any(ch.isspace() for ch in text):
        raise ValueError(f"{text!r} contains whitespace; write the unit right after the number")
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a {what}; expected e.g. {_EXAMPLES[what]}")
    unit = match["unit"].lower()
    if unit not in units:
        known = ", ".join(sorted(u for u in units if u))
        raise ValueError(f"{text!r} has an unknown unit {match['unit']!r} (known: {known})")
    return Fraction(match["num"]) * units[unit]


def parse_rate(text: object) -> int:
    """A tc rate as whole bytes per second (the kernel's unit), e.g. "10mbit" -> 1250000."""
    return int(_parse(text, _RATE_UNITS, "rate") / 8)


def parse_size(text: object) -> int:
    """A tc size in bytes, e.g. "32kb" -> 32768."""
    return int(_parse(text, _SIZE_UNITS, "size"))


def parse_time(text: object) -> int:
    """A tc time in microseconds, e.g. "50ms" -> 50000."""
    return int(_parse(text, _TIME_UNITS, "time"))


def _format(value: int, table: tuple[tuple[str, int], ...]) -> str:
    if value < 0:
        raise ValueError(f"cannot format negative value {value}")
    for unit, scale in table:
        if value and value % scale == 0:
            return f"{value // scale}{unit}"
    return f"{value}{table[-1][0]}"


def format_rate(bytes_per_second: int) -> str:
    """Canonical tc spelling of a rate in bytes/s, in SI bits: 1250000 -> "10mbit"."""
    return _format(bytes_per_second * 8, _RATE_OUT)


def format_size(size_bytes: int) -> str:
    """Canonical tc spelling of a size: 32768 -> "32kb", 1500 -> "1500b"."""
    return _format(size_bytes, _SIZE_OUT)


def format_time(microseconds: int) -> str:
    """Canonical tc spelling of a time: 50000 -> "50ms"."""
    return _format(microseconds, _TIME_OUT)
