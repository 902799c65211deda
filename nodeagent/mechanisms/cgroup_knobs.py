"""The cgroup knob tables: profile fields -> files per cgroup version, and how each file reads.

Two tables, koordlet-style, so that adding a knob is adding a row:

* `FIELDS`: each profile field of `CgroupSetting`, its controller, its range check, and the
  file (and value) it becomes on v1 and on v2.
* `FILES`: each file we write, how its text is read back canonically (`parse`), how a canonical
  value is written (`render`), and whether a change widens or narrows what children may use
  (`widens`, which orders parent/child writes).

Canonical values: "max" means unlimited everywhere (v1 prints -1 for quota and
9223372036854771712 for memory); cpu lists are printed the kernel's way ("0-1"); memory is in
whole pages (the kernel rounds down, so we do it first: the plan shows what will be read back).

cpu_weight on v1 (cpu.shares): runc and crun convert shares to weight with
`weight = 1 + ((shares - 2) * 9999) // 262142` (shares 2..262144 onto weight 1..10000). We use
its exact inverse, the smallest shares that map back to the weight,
`shares = 2 + ceil((weight - 1) * 262142 / 9999)`, so weight -> shares -> weight round-trips for
every weight and a container runtime reading our v1 group reports the weight we set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nodeagent.host import cpulist

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
V1_MEMORY_UNLIMITED = ((2**63 - 1) // PAGE_SIZE) * PAGE_SIZE  # PAGE_COUNTER_MAX pages, in bytes
PERIOD_US = (1000, 1_000_000)  # sched/core.c: min/max_cfs_quota_period
MIN_QUOTA_US = 1000
MAX_QUOTA_US = (1 << 44) - 1  # max_cfs_runtime
WEIGHT = (1, 10000)  # CGROUP_WEIGHT_MIN/MAX
SHARES = (2, 262144)  # MIN_SHARES/MAX_SHARES
MIN_MEMORY = 1 << 20
"""Below 1 MiB a memory limit cannot even hold a process's page tables: a unit mistake."""
MEMORY_OVER_PHYSICAL = 64
"""A limit above 64 x MemTotal is an absurd value (a typo), not a deliberate overcommit."""
DEFAULT_PERIOD_US = 100_000


def weight_to_shares(weight: int) -> int:
    """Inverse of runc/crun's shares->weight (see the module docstring)."""
    return SHARES[0] + -((-(weight - 1) * (SHARES[1] - SHARES[0])) // (WEIGHT[1] - WEIGHT[0]))


# -- range checks of profile values (raise ValueError with the reason) --------------------------------


def check_quota(value: int, limits: Limits) -> str:
    if value == -1:
        return "max"
    if value < 0:
        raise ValueError(f"{value} is negative (use -1 for unlimited)")
    if not MIN_QUOTA_US <= value <= MAX_QUOTA_US:
        raise ValueError(f"{value} us is outside the kernel's range [{MIN_QUOTA_US}, {MAX_QUOTA_US}] us")
    return str(value)


def check_period(value: int, limits: Limits) -> str:
    if not PERIOD_US[0] <= value <= PERIOD_US[1]:
        raise ValueError(f"{value} us is outside the kernel's range [{PERIOD_US[0]}, {PERIOD_US[1]}] us")
    return str(value)


def check_weight(value: int, limits: Limits) -> str:
    if not WEIGHT[0] <= value <= WEIGHT[1]:
        raise ValueError(f"{value} is outside [{WEIGHT[0]}, {WEIGHT[1]}]")
    return str(value)


def check_memory(value: int, limits: Limits) -> str:
    if value == -1:
        return "max"
    if value < 0:
        raise ValueError(f"{value} is negative (use -1 for unlimited)")
    if value < MIN_MEMORY:
        raise ValueError(f"{value} bytes is below the minimum of {MIN_MEMORY} bytes (1 MiB)")
    if limits.memory_total and value > MEMORY_OVER_PHYSICAL * limits.memory_total:
        raise ValueError(
            f"{value} bytes is more than {MEMORY_OVER_PHYSICAL} x this node's memory "
            f"({limits.memory_total} bytes); use -1 for unlimited"
        )
    return str(value // PAGE_SIZE * PAGE_SIZE)


def check_list(value: str, limits: Limits) -> str:
    try:
        return cpulist.canonical(value)
    except cpulist.CpuListError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Limits:
    """Host facts some checks need (0 = unknown, check skipped)."""

    memory_total: int = 0


@dataclass(frozen=True)
class Field:
    """One profile field of CgroupSetting."""

    name: str
    controller: str
    kind: type  # int or str, the JSON type expected
    check: Callable[[Any, Limits], str]  # -> canonical logical value
    v1_file: str
    v2_file: str
    v1_value: Callable[[str], str] = str  # logical canonical -> v1 file canonical


FIELDS: tuple[Field, ...] = (
    Field("cpu_quota_us", "cpu", int, check_quota, "cpu.cfs_quota_us", "cpu.max"),
    Field("cpu_period_us", "cpu", int, check_period, "cpu.cfs_period_us", "cpu.max"),
    Field(
        "cpu_weight",
        "cpu",
        int,
        check_weight,
        "cpu.shares",
        "cpu.weight",
        lambda weight: str(weight_to_shares(int(weight))),
    ),
    Field("cpuset_cpus", "cpuset", str, check_list, "cpuset.cpus", "cpuset.cpus"),
    Field("cpuset_mems", "cpuset", str, check_list, "cpuset.mems", "cpuset.mems"),
    Field("memory_max_bytes", "memory", int, check_memory, "memory.limit_in_bytes", "memory.max"),
)


# -- files: reading back canonically, writing, widening -------------------------------------------------


def _integer(text: str) -> str:
    return str(int(text))


def _max_or(unlimited: Callable[[int], bool]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text == "max" or unlimited(int(text)):
            return "max"
        return str(int(text))

    return parse


def _cpu_max(text: str) -> str:
    quota, period = [*text.split(), str(DEFAULT_PERIOD_US)][:2]
    return f"{quota if quota == 'max' else int(quota)} {int(period)}"


def _limit(value: str | None) -> float:
    """None is a file of a group not created yet (or removed): a new group starts unlimited."""
    return float("inf") if value is None or value == "max" else float(value)


def _quota_change(before: str | None, after: str | None) -> int:
    """+1 when a limit rises (children may then rise), -1 when it falls."""
    low, high = _limit(before), _limit(after)
    return (high > low) - (high < low)


def _period_change(before: str | None, after: str | None) -> int:
    """A shorter period raises the quota/period ratio that v1 compares between parent and child
    (+1, written parents first), a longer one lowers it (-1, children first). None is a group
    not created yet, whose period is the default."""
    old, new = (DEFAULT_PERIOD_US if v is None else int(v) for v in (before, after))
    return (new < old) - (new > old)


def _set_change(before: str | None, after: str | None) -> int:
    old, new = cpulist.parse(before or ""), cpulist.parse(after or "")
    if old == new:
        return 0
    if old <= new:
        return 1
    return -1 if new <= old else 0


def _unchanged(before: str | None, after: str | None) -> int:
    return 0


@dataclass(frozen=True)
class File:
    """How one cgroup interface file reads and writes."""

    name: str
    controller: str
    parse: Callable[[str], str]  # file text -> canonical value
    render: Callable[[str], str] = str  # canonical value -> text to write
    widens: Callable[[str | None, str | None], int] = _unchanged


def _minus_one_for_max(value: str) -> str:
    return "-1" if value == "max" else value


FILES: dict[str, File] = {
    f.name: f
    for f in (
        File("cpu.cfs_quota_us", "cpu", _max_or(lambda v: v < 0), _minus_one_for_max, _quota_change),
        File("cpu.cfs_period_us", "cpu", _integer, widens=_period_change),
        File("cpu.shares", "cpu", _integer),
        File("cpu.max", "cpu", _cpu_max),
        File("cpu.weight", "cpu", _integer),
        File("cpuset.cpus", "cpuset", cpulist.canonical, widens=_set_change),
        File("cpuset.mems", "cpuset", cpulist.canonical, widens=_set_change),
        File(
            "memory.limit_in_bytes",
            "memory",
            _max_or(lambda v: v >= V1_MEMORY_UNLIMITED),
            _minus_one_for_max,
        ),
        File("memory.max", "memory", _max_or(lambda v: False)),
    )
}

EFFECTIVE = {
    ("v1", "cpus"): "cpuset.effective_cpus",
    ("v1", "mems"): "cpuset.effective_mems",
    ("v2", "cpus"): "cpuset.cpus.effective",
    ("v2", "mems"): "cpuset.mems.effective",
}
"""The file holding a cgroup's effective cpuset, per version (what a child must stay within)."""
