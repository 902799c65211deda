"""cgroup v1 hierarchy rules on an in-memory tree (the real-kernel oracle tests are in
test_nodeagent_cgroups_real.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.mechanisms.cgroup_v1rules import quota_conflict, ratio, replay_cpusets


@dataclass
class FakeTree:
    files: dict[tuple[str, str], str] = field(default_factory=dict)

    def value(self, directory: str, file: str) -> str | None:
        return self.files.get((directory, file))

    def current(self, directory: str, file: str) -> str | None:
        return self.files.get((directory, file))

    def children(self, directory: str) -> list[str]:
        return sorted({d for d, _ in self.files if d.rpartition("/")[0] == directory})


def bandwidth(**groups: tuple[str, str]) -> FakeTree:
    tree = FakeTree()
    for name, (quota, period) in groups.items():
        directory = "cpu/" + name.replace("__", "/")
        tree.files[(directory, "cpu.cfs_quota_us")] = quota
        tree.files[(directory, "cpu.cfs_period_us")] = period
    return tree


def test_ratio_is_the_kernels_fixed_point_quota_over_period() -> None:
    tree = bandwidth(a=("50000", "100000"))
    assert ratio(tree, "cpu/a") == (50000 << 20) // 100000
    assert ratio(bandwidth(a=("max", "100000")), "cpu/a") is None


def test_equal_ratio_with_another_period_is_allowed() -> None:
    tree = bandwidth(a=("50000", "100000"), a__b=("25000", "50000"))
    assert quota_conflict(tree, "cpu/a/b", "cpu") is None
    assert quota_conflict(tree, "cpu/a", "cpu") is None


def test_child_above_nearest_limited_ancestor_through_unlimited_ones() -> None:
    tree = bandwidth(a=("50000", "100000"), a__b=("max", "100000"), a__b__c=("60000", "100000"))
    assert "ancestor 'a'" in (quota_conflict(tree, "cpu/a/b/c", "cpu") or "")
    assert "child group 'c'" in (quota_conflict(tree, "cpu/a", "cpu") or "")
    assert quota_conflict(tree, "cpu/a/b", "cpu") is None  # unlimited itself: inherits the limit


def cpusets(**groups: str) -> FakeTree:
    tree = FakeTree({("cpuset", "cpuset.cpus"): "0-3"})
    for name, cpus in groups.items():
        tree.files[("cpuset/" + name.replace("__", "/"), "cpuset.cpus")] = cpus
    return tree


def test_replay_refuses_narrowing_a_parent_below_a_child() -> None:
    tree = cpusets(a="0-1", a__b="1")
    refusal = replay_cpusets(tree, [("cpuset/a", "cpuset.cpus", "0")], "cpuset")
    assert refusal is not None
    assert refusal[0] == 0
    assert "would not contain '1' of the child group 'b'" in refusal[1]


def test_replay_refuses_a_child_beyond_its_parent_at_that_moment() -> None:
    tree = cpusets(a="0", a__b="0")
    steps = [("cpuset/a/b", "cpuset.cpus", "1"), ("cpuset/a", "cpuset.cpus", "0-1")]
    refusal = replay_cpusets(tree, steps, "cpuset")
    assert refusal is not None
    assert refusal[0] == 0
    assert "within '0' of the parent group 'a'" in refusal[1]
    assert replay_cpusets(tree, list(reversed(steps)), "cpuset") is None  # parent first works


def test_replay_finds_moves_impossible_in_one_apply() -> None:
    """Parent and child from 0 to 1: the end state is valid, but no single first write is."""
    tree = cpusets(a="0", a__b="0")
    parent_first = [("cpuset/a", "cpuset.cpus", "1"), ("cpuset/a/b", "cpuset.cpus", "1")]
    child_first = list(reversed(parent_first))
    assert replay_cpusets(tree, parent_first, "cpuset") is not None
    assert replay_cpusets(tree, child_first, "cpuset") is not None


def test_replay_checks_against_the_hierarchy_root() -> None:
    refusal = replay_cpusets(cpusets(a="0"), [("cpuset/a", "cpuset.cpus", "0-7")], "cpuset")
    assert refusal is not None
    assert "the parent group 'cpuset'" in refusal[1]
