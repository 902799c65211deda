"""The simulated kernel trees, specified as the kernel behaves (errno for errno, format for format)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from nodeagent.errors import HostError
from nodeagent.host.simulated import CpuFreqSpec, SimulatedKernelFS, build_simulated_host

POLICY0 = "sys/devices/system/cpu/cpu0/cpufreq"
CG = "sys/fs/cgroup"


def refused(fs: SimulatedKernelFS, rel: str, value: str) -> int | None:
    with pytest.raises(HostError) as err:
        fs.write(rel, value)
    return err.value.errno


# -- layout -----------------------------------------------------------------------------------------------


def test_cpufreq_layout_matches_sysfs(sim_host: SimulatedKernelFS) -> None:
    cpu_dir = sim_host.root / "sys/devices/system/cpu"
    assert (cpu_dir / "cpu2/cpufreq").resolve() == (cpu_dir / "cpufreq/policy2").resolve()
    assert sim_host.read("sys/devices/system/cpu/online") == "0-3"
    assert (
        sim_host.read(f"{POLICY0}/scaling_available_frequencies") == "800000 1200000 1600000 2000000 2400000"
    )
    assert sim_host.read(f"{POLICY0}/affected_cpus") == "0"
    for name in (
        "cpuinfo_min_freq",
        "cpuinfo_max_freq",
        "scaling_governor",
        "scaling_cur_freq",
        "related_cpus",
    ):
        assert sim_host.exists(f"{POLICY0}/{name}")


def test_shared_policies_list_their_cpus(tmp_path: Path) -> None:
    fs = build_simulated_host(tmp_path, cpus=4, cpufreq=CpuFreqSpec(cpus_per_policy=2))
    assert fs.read("sys/devices/system/cpu/cpu3/cpufreq/affected_cpus") == "2 3"
    fs.write("sys/devices/system/cpu/cpu3/cpufreq/scaling_governor", "performance")
    assert fs.read("sys/devices/system/cpu/cpu2/cpufreq/scaling_governor") == "performance"


def test_building_twice_keeps_the_existing_state(tmp_path: Path) -> None:
    fs = build_simulated_host(tmp_path)
    fs.write(f"{POLICY0}/scaling_governor", "performance")
    again = build_simulated_host(tmp_path)
    assert again.read(f"{POLICY0}/scaling_governor") == "performance"


def test_cgroup_root_layout_matches_cgroup2(sim_host: SimulatedKernelFS) -> None:
    assert sim_host.read(f"{CG}/cgroup.controllers") == "cpuset cpu io memory pids"
    assert sim_host.read(f"{CG}/cgroup.subtree_control") == ""
    assert sim_host.read(f"{CG}/cpuset.cpus.effective") == "0-3"
    assert not sim_host.exists(f"{CG}/cpu.max")  # CFTYPE_NOT_ON_ROOT
    assert "cgroup2" in sim_host.read("proc/self/mountinfo")


# -- cpufreq semantics -------------------------------------------------------------------------------------


def test_unknown_governor_is_einval(sim_host: SimulatedKernelFS) -> None:
    assert refused(sim_host, f"{POLICY0}/scaling_governor", "turbo") == errno.EINVAL
    sim_host.write(f"{POLICY0}/scaling_governor", "performance\n")  # echo adds a newline: accepted
    assert sim_host.read(f"{POLICY0}/scaling_governor") == "performance"
    assert sim_host.read(f"{POLICY0}/scaling_cur_freq") == "2400000"  # performance runs at max


@pytest.mark.parametrize("value", ["799999", "2400001", "-1", "fast", ""])
def test_frequency_outside_cpuinfo_bounds_is_einval(sim_host: SimulatedKernelFS, value: str) -> None:
    assert refused(sim_host, f"{POLICY0}/scaling_max_freq", value) == errno.EINVAL
    assert sim_host.read(f"{POLICY0}/scaling_max_freq") == "2400000"


def test_min_above_max_is_einval_in_either_direction(sim_host: SimulatedKernelFS) -> None:
    sim_host.write(f"{POLICY0}/scaling_max_freq", "1600000")
    assert refused(sim_host, f"{POLICY0}/scaling_min_freq", "2000000") == errno.EINVAL
    sim_host.write(f"{POLICY0}/scaling_min_freq", "1200000")
    assert refused(sim_host, f"{POLICY0}/scaling_max_freq", "800000") == errno.EINVAL


def test_in_range_frequencies_resolve_to_the_table(sim_host: SimulatedKernelFS) -> None:
    sim_host.write(f"{POLICY0}/scaling_max_freq", "2100000")  # max rounds down
    assert sim_host.read(f"{POLICY0}/scaling_max_freq") == "2000000"
    sim_host.write(f"{POLICY0}/scaling_min_freq", "900000")  # min rounds up
    assert sim_host.read(f"{POLICY0}/scaling_min_freq") == "1200000"


@pytest.mark.parametrize(
    "name",
    [
        "cpuinfo_min_freq",
        "cpuinfo_max_freq",
        "scaling_available_governors",
        "scaling_cur_freq",
        "affected_cpus",
    ],
)
def test_read_only_cpufreq_attributes_are_eacces(sim_host: SimulatedKernelFS, name: str) -> None:
    assert refused(sim_host, f"{POLICY0}/{name}", "1") == errno.EACCES


def test_setspeed_needs_the_userspace_governor(sim_host: SimulatedKernelFS) -> None:
    assert sim_host.read(f"{POLICY0}/scaling_setspeed") == "<unsupported>"
    assert refused(sim_host, f"{POLICY0}/scaling_setspeed", "1600000") == errno.EINVAL
    sim_host.write(f"{POLICY0}/scaling_governor", "userspace")
    sim_host.write(f"{POLICY0}/scaling_setspeed", "1600000")
    assert sim_host.read(f"{POLICY0}/scaling_cur_freq") == "1600000"


def test_missing_attribute_is_enoent(sim_host: SimulatedKernelFS) -> None:
    assert refused(sim_host, f"{POLICY0}/energy_performance_preference", "power") == errno.ENOENT


# -- cgroup v2 semantics -----------------------------------------------------------------------------------


def test_mkdir_creates_core_files_and_enabled_controllers_only(sim_host: SimulatedKernelFS) -> None:
    sim_host.write(f"{CG}/cgroup.subtree_control", "+cpu")
    sim_host.mkdir(f"{CG}/a")
    assert sim_host.read(f"{CG}/a/cgroup.controllers") == "cpu"
    assert sim_host.read(f"{CG}/a/cpu.max") == "max 100000"
    assert sim_host.read(f"{CG}/a/cpu.weight") == "100"
    assert sim_host.exists(f"{CG}/a/cgroup.procs")
    assert not sim_host.exists(f"{CG}/a/memory.max")


def test_subtree_control_adds_and_removes_files_in_children(sim_host: SimulatedKernelFS) -> None:
    sim_host.mkdir(f"{CG}/a")
    sim_host.write(f"{CG}/cgroup.subtree_control", "+memory +cpuset")
    assert sim_host.read(f"{CG}/cgroup.subtree_control") == "cpuset memory"  # the kernel's order
    assert sim_host.read(f"{CG}/a/memory.max") == "max"
    assert sim_host.read(f"{CG}/a/cpuset.cpus.effective") == "0-3"
    sim_host.write(f"{CG}/cgroup.subtree_control", "-memory")
    assert not sim_host.exists(f"{CG}/a/memory.max")
    assert sim_host.read(f"{CG}/a/cgroup.controllers") == "cpuset"


@pytest.mark.parametrize(
    ("value", "code"), [("+bogus", errno.EINVAL), ("cpu", errno.EINVAL), ("+rdma", errno.ENOENT)]
)
def test_subtree_control_refusals(sim_host: SimulatedKernelFS, value: str, code: int) -> None:
    assert refused(sim_host, f"{CG}/cgroup.subtree_control", value) == code


def test_no_internal_processes(sim_host: SimulatedKernelFS) -> None:
    sim_host.write(f"{CG}/cgroup.subtree_control", "+cpu")
    sim_host.mkdir(f"{CG}/a")
    sim_host.write(f"{CG}/a/cgroup.procs", "1234")
    assert refused(sim_host, f"{CG}/a/cgroup.subtree_control", "+cpu") == errno.EBUSY
    sim_host.write(f"{CG}/cgroup.procs", "1234")  # moving the process out ...
    assert sim_host.read(f"{CG}/a/cgroup.procs") == ""
    sim_host.write(f"{CG}/a/cgroup.subtree_control", "+cpu")  # ... frees the group
    assert refused(sim_host, f"{CG}/a/cgroup.procs", "1234") == errno.EBUSY


def test_disabling_a_controller_a_child_still_enables_is_ebusy(sim_host: SimulatedKernelFS) -> None:
    sim_host.write(f"{CG}/cgroup.subtree_control", "+cpu")
    sim_host.mkdir(f"{CG}/a")
    sim_host.write(f"{CG}/a/cgroup.subtree_control", "+cpu")
    assert refused(sim_host, f"{CG}/cgroup.subtree_control", "-cpu") == errno.EBUSY


def test_rmdir_of_a_busy_cgroup_is_ebusy(sim_host: SimulatedKernelFS) -> None:
    sim_host.mkdir(f"{CG}/a")
    sim_host.mkdir(f"{CG}/a/b")
    with pytest.raises(HostError) as err:
        sim_host.rmdir(f"{CG}/a")
    assert err.value.errno == errno.EBUSY
    sim_host.write(f"{CG}/a/b/cgroup.procs", "77")
    with pytest.raises(HostError) as err:
        sim_host.rmdir(f"{CG}/a/b")
    assert err.value.errno == errno.EBUSY
    sim_host.write(f"{CG}/cgroup.procs", "77")
    sim_host.rmdir(f"{CG}/a/b")
    sim_host.rmdir(f"{CG}/a")
    assert not sim_host.exists(f"{CG}/a")


def test_mkdir_below_a_missing_parent_is_enoent(sim_host: SimulatedKernelFS) -> None:
    with pytest.raises(HostError) as err:
        sim_host.mkdir(f"{CG}/missing/child")
    assert err.value.errno == errno.ENOENT


@pytest.fixture
def group(sim_host: SimulatedKernelFS) -> str:
    sim_host.write(f"{CG}/cgroup.subtree_control", "+cpu +cpuset +memory")
    sim_host.mkdir(f"{CG}/g")
    return f"{CG}/g"


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("max", "max 100000"),
        ("50000", "50000 100000"),
        ("50000 200000", "50000 200000"),
        ("max 1000", "max 1000"),
    ],
)
def test_cpu_max_formats(sim_host: SimulatedKernelFS, group: str, value: str, stored: str) -> None:
    sim_host.write(f"{group}/cpu.max", value)
    assert sim_host.read(f"{group}/cpu.max") == stored


@pytest.mark.parametrize("value", ["999", "-1", "50000 999", "50000 1000001", "a b", "1 2 3", ""])
def test_cpu_max_refusals_are_einval(sim_host: SimulatedKernelFS, group: str, value: str) -> None:
    assert refused(sim_host, f"{group}/cpu.max", value) == errno.EINVAL


@pytest.mark.parametrize(
    ("value", "code"), [("0", errno.ERANGE), ("10001", errno.ERANGE), ("x", errno.EINVAL)]
)
def test_cpu_weight_refusals(sim_host: SimulatedKernelFS, group: str, value: str, code: int) -> None:
    assert refused(sim_host, f"{group}/cpu.weight", value) == code


def test_cpuset_is_printed_canonically_and_effective_follows(sim_host: SimulatedKernelFS, group: str) -> None:
    sim_host.write(f"{group}/cpuset.cpus", "3,1-2")
    assert sim_host.read(f"{group}/cpuset.cpus") == "1-3"
    assert sim_host.read(f"{group}/cpuset.cpus.effective") == "1-3"
    sim_host.write(f"{group}/cpuset.cpus", "")
    assert sim_host.read(f"{group}/cpuset.cpus.effective") == "0-3"  # empty inherits the parent's


def test_cpuset_child_beyond_its_parent_gets_the_intersection(
    sim_host: SimulatedKernelFS, group: str
) -> None:
    """cgroup v2 does not refuse it (validate_change checks 'subset of parent' only on v1)."""
    sim_host.write(f"{group}/cgroup.subtree_control", "+cpuset")
    sim_host.mkdir(f"{group}/c")
    sim_host.write(f"{group}/cpuset.cpus", "0-1")
    sim_host.write(f"{group}/c/cpuset.cpus", "1-2")
    assert sim_host.read(f"{group}/c/cpuset.cpus.effective") == "1"
    sim_host.write(f"{group}/cpuset.cpus", "3")  # narrowing the parent propagates down
    assert sim_host.read(f"{group}/c/cpuset.cpus.effective") == "3"


@pytest.mark.parametrize(("value", "code"), [("9", errno.ERANGE), ("0-", errno.EINVAL), ("x", errno.EINVAL)])
def test_cpuset_refusals(sim_host: SimulatedKernelFS, group: str, value: str, code: int) -> None:
    assert refused(sim_host, f"{group}/cpuset.cpus", value) == code


def test_cpuset_outside_the_online_cpus_is_einval(tmp_path: Path) -> None:
    fs = build_simulated_host(tmp_path, cpus=4)
    (fs.root / CG / "cpuset.cpus.effective").write_text("0-2\n")  # cpu 3 went offline
    fs.write(f"{CG}/cgroup.subtree_control", "+cpuset")
    fs.mkdir(f"{CG}/g")
    assert refused(fs, f"{CG}/g/cpuset.cpus", "3") == errno.EINVAL


def test_mems_follow_the_numa_nodes(sim_host: SimulatedKernelFS, group: str) -> None:
    sim_host.write(f"{group}/cpuset.mems", "0")
    assert sim_host.read(f"{group}/cpuset.mems.effective") == "0"
    assert refused(sim_host, f"{group}/cpuset.mems", "1") == errno.ERANGE


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("max", "max"),
        ("268435456", "268435456"),
        ("1000000", "999424"),
        ("1M", "1048576"),
        ("0x100000", "1048576"),
    ],
)
def test_memory_max_is_kept_in_pages(
    sim_host: SimulatedKernelFS, group: str, value: str, stored: str
) -> None:
    sim_host.write(f"{group}/memory.max", value)
    assert sim_host.read(f"{group}/memory.max") == stored


@pytest.mark.parametrize("value", ["-1", "1.5G", "lots"])
def test_memory_max_refusals_are_einval(sim_host: SimulatedKernelFS, group: str, value: str) -> None:
    assert refused(sim_host, f"{group}/memory.max", value) == errno.EINVAL


@pytest.mark.parametrize(
    "name", ["cgroup.controllers", "cgroup.events", "cpu.stat", "cpuset.cpus.effective", "memory.current"]
)
def test_read_only_cgroup_files_are_eacces(sim_host: SimulatedKernelFS, group: str, name: str) -> None:
    assert refused(sim_host, f"{group}/{name}", "1") == errno.EACCES


def test_files_outside_the_simulated_trees_are_plain(sim_host: SimulatedKernelFS) -> None:
    sim_host.write("proc/meminfo", "MemTotal: 1 kB")
    assert sim_host.read("proc/meminfo") == "MemTotal: 1 kB"
