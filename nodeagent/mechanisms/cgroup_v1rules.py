"""Rules cgroup v1 enforces across a hierarchy, checked on the whole plan before any write.

cgroup v1 refuses, at write time, changes that cgroup v2 would accept and clamp:

* cpuset (kernel/cgroup/cpuset-v1.c, validate_change_legacy): every child must stay a subset of
  its parent at every write, so narrowing a parent below an existing child fails with EBUSY, a
  child beyond its parent with EACCES, and some moves cannot be made in one apply at all.
* cpu bandwidth (kernel/sched/core.c, tg_cfs_schedulable_down): on v1 a group's quota/period
  ratio may not exceed the ratio of its nearest limited ancestor, and lowering a parent below a
  limited descendant fails with EINVAL.

Catching these in validate() turns a half-applied profile and an undo into a clear InvalidSpec
that names the field. The checks see the plan through `Tree`: planned values first, the host's
for everything the profile does not touch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from nodeagent.host import cpulist
from nodeagent.mechanisms.cgroup_knobs import DEFAULT_PERIOD_US

BW_SHIFT = 20  # kernel fixed-point shift of bandwidth ratios (to_ratio)


class Tree(Protocol):
    """A cgroup hierarchy as it will be once the plan is applied."""

    def value(self, directory: str, file: str) -> str | None:
        """Canonical value of a file (planned, else read), None when absent."""
        ...

    def current(self, directory: str, file: str) -> str | None:
        """Canonical value on the host now, None when absent."""
        ...

    def children(self, directory: str) -> list[str]:
        """Child groups, existing or planned (paths relative to the cgroup mount)."""
        ...


_CONTAIN = "cgroup v1 requires a parent's cpuset to contain its children's"


def replay_cpusets(tree: Tree, writes: Sequence[tuple[str, str, str]], top: str) -> tuple[int, str] | None:
    """Replay ordered cpuset writes (directory, file, new value) as v1 would check each one.

    Every intermediate state matters, not just the final one: moving a parent and its child from
    "0" to "1" is fine at the end but refused at either first write. Returns the index of the
    first write the kernel would refuse and why, or None.
    """
    state: dict[tuple[str, str], frozenset[int]] = {}

    def now(directory: str, file: str) -> frozenset[int]:
        if (directory, file) not in state:
            state[(directory, file)] = cpulist.parse(tree.current(directory, file) or "")
        return state[(directory, file)]

    for index, (directory, file, value) in enumerate(writes):
        new = cpulist.parse(value)
        parent = directory.rpartition("/")[0]
        if directory != top and not new <= now(parent, file):
            return index, (
                f"{value!r} would not be within {cpulist.format(now(parent, file))!r} of the parent group "
                f"{parent.rpartition('/')[2]!r} at that point of the apply; {_CONTAIN}"
            )
        for child in tree.children(directory):
            if not now(child, file) <= new:
                return index, (
                    f"{value!r} would not contain {cpulist.format(now(child, file))!r} of the child group "
                    f"{child.rpartition('/')[2]!r}; {_CONTAIN}"
                )
        state[(directory, file)] = new
    return None


def ratio(tree: Tree, directory: str) -> int | None:
    """The kernel's to_ratio(period, quota) of a group; None when unlimited."""
    quota = tree.value(directory, "cpu.cfs_quota_us") or "max"
    if quota == "max":
        return None
    period = int(tree.value(directory, "cpu.cfs_period_us") or DEFAULT_PERIOD_US)
    return (int(quota) << BW_SHIFT) // period


def quota_conflict(tree: Tree, directory: str, top: str) -> str | None:
    """Why the planned bandwidth of `directory` breaks the v1 hierarchy rule, or None."""
    own = ratio(tree, directory)
    ancestor = directory
    while own is not None and ancestor != top and "/" in ancestor:
        ancestor = ancestor.rpartition("/")[0]
        limit = ratio(tree, ancestor)
        if limit is not None:
            if own > limit:
                return f"exceeds the quota/period of the ancestor {_describe(tree, ancestor)}"
            break
    for child, child_ratio in _limited_descendants(tree, directory):
        if own is not None and child_ratio > own:
            return f"would be below the quota/period of the child group {_describe(tree, child)}"
    return None


def _limited_descendants(tree: Tree, directory: str) -> list[tuple[str, int]]:
    """Descendants whose nearest limited ancestor is `directory`, with their ratios."""
    found: list[tuple[str, int]] = []
    for child in tree.children(directory):
        child_ratio = ratio(tree, child)
        if child_ratio is None:
            found.extend(_limited_descendants(tree, child))
        else:
            found.append((child, child_ratio))
    return found


def _describe(tree: Tree, directory: str) -> str:
    quota = tree.value(directory, "cpu.cfs_quota_us")
    period = tree.value(directory, "cpu.cfs_period_us") or DEFAULT_PERIOD_US
    return (
        f"{directory.rpartition('/')[2]!r} ({quota}/{period} us); cgroup v1 refuses a child above its parent"
    )
