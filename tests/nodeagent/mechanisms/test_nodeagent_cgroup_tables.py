"""The cgroup knob tables, key grammar and path rules: pure, no host involved."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodeagent.mechanisms import cgroup_knobs as knobs
from nodeagent.mechanisms.cgroup_keys import (
    CgroupKey,
    check_group_path,
    dir_key,
    file_key,
    parse_key,
    toggle_key,
)


def shares_to_weight(shares: int) -> int:
    """The oracle: runc/crun's conversion (libcontainer/cgroups ConvertCPUSharesToCgroupV2Value)."""
    low, high = knobs.WEIGHT
    return low + ((shares - knobs.SHARES[0]) * (high - low)) // (knobs.SHARES[1] - knobs.SHARES[0])


@given(st.integers(min_value=1, max_value=10000))
def test_weight_to_shares_is_the_exact_inverse_of_runcs_conversion(weight: int) -> None:
    shares = knobs.weight_to_shares(weight)
    assert knobs.SHARES[0] <= shares <= knobs.SHARES[1]
    assert shares_to_weight(shares) == weight
    if weight > 1:  # the smallest such shares: one less maps to a lower weight
        assert shares_to_weight(shares - 1) == weight - 1


@pytest.mark.parametrize(("weight", "shares"), [(1, 2), (100, 2598), (10000, 262144)])
def test_weight_to_shares_known_points(weight: int, shares: int) -> None:
    assert knobs.weight_to_shares(weight) == shares


def test_default_v1_shares_are_weight_39_for_runc() -> None:
    assert shares_to_weight(1024) == 39
    assert knobs.weight_to_shares(39) <= 1024 < knobs.weight_to_shares(40)  # and back


@pytest.mark.parametrize(
    ("file", "text", "canonical"),
    [
        ("cpu.cfs_quota_us", "-1", "max"),
        ("cpu.cfs_quota_us", "50000", "50000"),
        ("memory.limit_in_bytes", str(knobs.V1_MEMORY_UNLIMITED), "max"),
        ("memory.limit_in_bytes", "268435456", "268435456"),
        ("memory.max", "max", "max"),
        ("cpu.max", "max 100000", "max 100000"),
        ("cpu.max", "50000 100000", "50000 100000"),
        ("cpuset.cpus", "0,1", "0-1"),
        ("cpuset.mems", "", ""),
    ],
)
def test_files_read_back_canonically(file: str, text: str, canonical: str) -> None:
    assert knobs.FILES[file].parse(text) == canonical


@pytest.mark.parametrize(
    ("file", "canonical", "written"),
    [("cpu.cfs_quota_us", "max", "-1"), ("memory.limit_in_bytes", "max", "-1"), ("memory.max", "max", "max")],
)
def test_unlimited_is_written_in_each_files_own_spelling(file: str, canonical: str, written: str) -> None:
    assert knobs.FILES[file].render(canonical) == written


@pytest.mark.parametrize(
    ("file", "before", "after", "change"),
    [
        ("cpuset.cpus", "0", "0-1", 1),
        ("cpuset.cpus", None, "0", 1),
        ("cpuset.cpus", "0-1", "1", -1),
        ("cpuset.cpus", "0", "1", 0),
        ("cpu.cfs_quota_us", "50000", "max", 1),
        ("cpu.cfs_quota_us", "max", "50000", -1),
        ("cpu.cfs_quota_us", None, "50000", -1),  # a new group starts unlimited
        ("cpu.cfs_period_us", "100000", "1000", 1),  # a shorter period raises quota/period
        ("cpu.cfs_period_us", None, "200000", -1),  # a new group starts at the default period
        ("cpu.cfs_period_us", None, "100000", 0),
        ("memory.max", "1048576", "max", 0),
    ],
)
def test_widening_classification(file: str, before: str | None, after: str, change: int) -> None:
    assert knobs.FILES[file].widens(before, after) == change


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (knobs.check_quota, -2, "negative"),
        (knobs.check_quota, 999, "outside"),
        (knobs.check_quota, 1 << 44, "outside"),
        (knobs.check_period, 999, "outside"),
        (knobs.check_period, 1_000_001, "outside"),
        (knobs.check_weight, 0, "outside"),
        (knobs.check_weight, 10001, "outside"),
        (knobs.check_memory, -5, "negative"),
        (knobs.check_memory, 4096, "below"),
        (knobs.check_memory, 65 << 30, "more than"),
        (knobs.check_list, "0-", "not a cpu id"),
    ],
)
def test_range_checks_refuse_with_a_reason(check, value, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        check(value, knobs.Limits(memory_total=1 << 30))


def test_range_checks_canonicalise() -> None:
    limits = knobs.Limits()
    assert knobs.check_quota(-1, limits) == "max"
    assert knobs.check_memory(-1, limits) == "max"
    assert knobs.check_memory((1 << 20) + 100, limits) == str(1 << 20)  # whole pages, as the kernel keeps
    assert knobs.check_list("1,0", limits) == "0-1"


@pytest.mark.parametrize(
    "key",
    [
        dir_key("cpu/mlsysops/demo"),
        file_key("cpu/mlsysops/demo", "cpu.shares"),
        file_key("", "cpu.max"),
        toggle_key("", "cpuset"),
        toggle_key("unified/mlsysops", "cpu"),
    ],
)
def test_keys_round_trip(key: str) -> None:
    assert str(parse_key(key)) == key


def test_key_shapes() -> None:
    assert parse_key("cpu/a/b/") == CgroupKey("cpu/a/b")
    assert parse_key("a/cgroup.subtree_control[memory]").controller == "memory"
    assert parse_key("a/b/memory.max").file == "memory.max"
    assert parse_key("cpu/a/b/").depth == 3


@pytest.mark.parametrize("key", ["/etc/passwd", "cpu/../../etc/x", "cpu//a/cpu.max"])
def test_keys_outside_the_mount_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        parse_key(key)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("/", "empty"),
        ("/abs/path", "absolute"),
        ("a/../b", "'..'"),
        ("a//b", "empty"),
        ("a/./b", "empty"),
        (".hidden", "must use only"),
        ("a b", "must use only"),
        ("a\nb", "must use only"),
        ("-flag", "must use only"),
        ("app/cpu.max", "collide"),
        ("tasks", "collide"),
        ("x" * 256, "longer"),
        ("/".join(["a"] * 33), "nested"),
    ],
)
def test_group_path_rules(path: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_group_path(path)


def test_group_path_accepts_ordinary_names() -> None:
    assert check_group_path("demo/app_1/web-2@x.service") == ["demo", "app_1", "web-2@x.service"]
    assert check_group_path("demo/") == ["demo"]


@pytest.mark.parametrize("directory", ["", "cpu", "cpu/mlsysops", "cpu/mlsysops/demo/app"])
def test_key_builders_spell_keys_as_cgroupkey_does(directory: str) -> None:
    assert dir_key(directory) == str(CgroupKey(directory))
    assert file_key(directory, "cpu.max") == str(CgroupKey(directory, "cpu.max"))
    assert toggle_key(directory, "cpuset") == str(CgroupKey(directory, "cgroup.subtree_control", "cpuset"))
    for key in (dir_key(directory), file_key(directory, "cpu.max"), toggle_key(directory, "cpuset")):
        if key:
            assert str(parse_key(key)) == key
            assert parse_key(key) is parse_key(key)  # memoized: the same frozen key object


def test_parse_key_does_not_memoize_refusals() -> None:
    for _ in range(2):
        with pytest.raises(ValueError):
            parse_key("cpu/../etc/cpu.max")
