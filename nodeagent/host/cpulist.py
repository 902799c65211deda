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

_GROUP = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+)/(\d+))?)?$")


class CpuListError(ValueError):
    """A cpu list that the kernel's bitmap_parselist() would refuse (EINVAL/ERANGE)."""


def parse(text: str, limit: int = MAX_CPUS) -> frozenset[int]:
    """Parse "0-3,6" (also "0-7:2/4": the first 2 of every group of 4) into a set of ids.

    Whitespace around the list and around commas is tolerated, as the kernel strips it; the
    empty string is the empty set. Ids must be below `limit`.
    """
    text = text.strip()
    if not text:
        return frozenset()
    ids: set[int] = set()
    for raw in text.split(","):
        group = raw.strip()
        match = _GROUP.match(group)
        if match is None:
            raise CpuListError(f"{group!r} is not a cpu id, a range 'a-b' or 'a-b:used/size'")
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
        ids.update(i for i in range(first, last + 1) if (i - first) % size < used)
    return frozenset(ids)


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
