"""The kernel's cpu-list notation ("0-3,6", "0-15:2/4"), parsed and printed the kernel's way.

Used for CPU selections in profiles, cpuset.cpus/cpuset.mems (NUMA nodes use the same
notation), sysfs `online`/`possible` files and cpufreq's `affected_cpus` (space separated).
format() prints what the kernel prints (ascending, ranges collapsed, "" for the empty set), so a
value read back from cgroupfs compares equal to a value we validated: that is what makes a
second identical apply plan zero writes.

Pure (no I/O); it sits in the host layer because it is the kernel's own notation, shared by the
mechanisms that validate cpu lists and by the simulated kernel that enforces them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_CPUS = 8192
"""NR_CPUS upper bound of common distribution kernels; rejects typos like "0-100000" early."""

#: ASCII digits only: Arabic-Indic or full-width digits are not cpu ids (int() would read them).
_GROUP = re.compile(r"([0-9]+)(?:-([0-9]+)(?::([0-9]+)/([0-9]+))?)?", re.ASCII)


class CpuListError(ValueError):
    """A cpu list that the kernel's bitmap_parselist() would refuse (EINVAL/ERANGE)."""


def parse(text: str, limit: int = MAX_CPUS) -> frozenset[int]:
    """Parse "0-3,6" (also "0-7:2/4": the first 2 of every group of 4) into a set of ids.

    Whitespace around the list and around commas is tolerated, as the kernel strips it; the
    empty string is the empty set. Ids must be below `limit`. Groups are combined as ranges
    (bit masks), never expanded one id at a time: "0-8191" repeated thousands of times costs
    one mask operation each, and the set built at the end holds at most `limit` ids.
    """
    return frozenset(_ids(mask(text, limit)))


def mask(text: str, limit: int = MAX_CPUS) -> int:
    """The list as a bit mask (bit i set for cpu i); CpuListError as parse()."""
    text = text.strip(" \t\n")
    if not text:
        return 0
    bits = 0
    seen: set[str] = set()
    for raw in text.split(","):
        group = raw.strip(" \t\n")
        if group in seen:
            continue  # the same group again adds nothing
        seen.add(group)
        match = _GROUP.fullmatch(group)
        if match is None:
            shown = group if len(group) <= 40 else f"{group[:40]}..."
            raise CpuListError(f"{shown!r} is not a cpu id, a range 'a-b' or 'a-b:used/size'")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        used = int(match.group(3)) if match.group(3) is not None else 1
        size = int(match.group(4)) if match.group(4) is not None else 1
        if last < first:
            raise CpuListError(f"range {group!r} ends before it starts")
        if size == 0 or used == 0 or used > size:
            raise CpuListError(f"range {group!r}: stride needs 0 < used <= group size")
        if last >= limit:
            raise CpuListError(f"id {last} is out of range (ids must be below {limit})")
        bits |= _range_mask(first, last, used, size)
    return bits


def _range_mask(first: int, last: int, used: int, size: int) -> int:
    span = last - first + 1
    if used == size:
        return ((1 << span) - 1) << first
    pattern = (1 << used) - 1  # the first `used` of every `size`, repeated by doubling
    width = size
    while width < span:
        pattern |= pattern << width
        width *= 2
    return (pattern & ((1 << span) - 1)) << first


def _ids(bits: int) -> list[int]:
    ids: list[int] = []
    while bits:
        low = bits & -bits
        ids.append(low.bit_length() - 1)
        bits ^= low
    return ids


def format(ids: Iterable[int]) -> str:
    """Print ids as the kernel does: ascending, consecutive runs as "a-b", comma separated."""
    ordered = sorted(set(ids))
    parts: list[str] = []
    start = prev = -2
    for i in ordered:
        if i == prev + 1:
            prev = i
            continue
        if start >= 0:
            parts.append(_run(start, prev))
        start = prev = i
    if start >= 0:
        parts.append(_run(start, prev))
    return ",".join(parts)


def canonical(text: str, limit: int = MAX_CPUS) -> str:
    """The kernel's spelling of a cpu list: canonical("3,0-2, 1") == "0-3"."""
    return format(parse(text, limit))


def parse_words(text: str) -> frozenset[int]:
    """Space-separated ids, as in cpufreq's affected_cpus/related_cpus ("0 1 2 3")."""
    try:
        return frozenset(int(word) for word in text.split())
    except ValueError as exc:
        raise CpuListError(f"{text!r} is not a list of cpu ids") from exc


def _run(start: int, end: int) -> str:
    return str(start) if start == end else f"{start}-{end}"
