"""Each collector turns known host readings into exactly the expected series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodeagent.host.fs import HostFS
from nodeagent.telemetry.hostfs import CgroupsCollector, CpuFreqCollector
from nodeagent.telemetry.system import AgentProcessCollector, CpuCollector, MemoryCollector, NetworkCollector

P = "mlsysops_nodeagent_"
V1 = [
    "sys/fs/cgroup/cpu/mlsysops/app",
    "sys/fs/cgroup/cpuacct/mlsysops/app",
    "sys/fs/cgroup/memory/mlsysops/app",
]
V2 = ["sys/fs/cgroup/unified/mlsysops/web"]


def test_cgroups_v1_reads_cpuacct_usage_cpu_stat_and_memory_usage(host_tree: Any, samples_of: Any) -> None:
    fs, _ = host_tree
    got = samples_of(CgroupsCollector(fs, lambda: V1).collect())
    assert got[(P + "cgroup_cpu_usage_seconds_total", (("cgroup", "cpuacct/mlsysops/app"),))] == 1.5
    assert got[(P + "cgroup_cpu_periods_total", (("cgroup", "cpu/mlsysops/app"),))] == 10
    assert got[(P + "cgroup_cpu_throttled_periods_total", (("cgroup", "cpu/mlsysops/app"),))] == 2
    assert got[(P + "cgroup_cpu_throttled_seconds_total", (("cgroup", "cpu/mlsysops/app"),))] == 0.5
    assert got[(P + "cgroup_memory_usage_bytes", (("cgroup", "memory/mlsysops/app"),))] == 4096


def test_cgroups_v2_reads_usage_and_throttling_from_cpu_stat_and_memory_current(
    host_tree: Any, samples_of: Any
) -> None:
    fs, _ = host_tree
    got = samples_of(CgroupsCollector(fs, lambda: V2).collect())
    label = (("cgroup", "unified/mlsysops/web"),)
    assert got[(P + "cgroup_cpu_usage_seconds_total", label)] == 2.5
    assert got[(P + "cgroup_cpu_periods_total", label)] == 7
    assert got[(P + "cgroup_cpu_throttled_periods_total", label)] == 1
    assert got[(P + "cgroup_cpu_throttled_seconds_total", label)] == 0.25
    assert got[(P + "cgroup_memory_usage_bytes", label)] == 8192


def test_cgroups_skips_vanished_and_garbled_targets_and_follows_the_target_list(
    host_tree: Any, samples_of: Any
) -> None:
    fs, root = host_tree
    (root / "sys/fs/cgroup/memory/mlsysops/bad").mkdir()
    (root / "sys/fs/cgroup/memory/mlsysops/bad/memory.usage_in_bytes").write_text("garbage\n")
    targets = ["sys/fs/cgroup/memory/mlsysops/gone", "sys/fs/cgroup/memory/mlsysops/bad", *V2, *V2]
    collector = CgroupsCollector(fs, lambda: targets)
    got = samples_of(collector.collect())
    assert {dict(labels)["cgroup"] for _, labels in got} == {"unified/mlsysops/web"}
    targets[:] = []  # the agent stopped managing every cgroup: their series go
    assert samples_of(collector.collect()) == {}


def test_cpufreq_reports_each_cpu_with_cpufreq_in_hertz(host_tree: Any, samples_of: Any) -> None:
    fs, _ = host_tree
    got = samples_of(CpuFreqCollector(fs).collect())
    assert got == {
        (P + "cpu_scaling_frequency_hertz", (("cpu", "0"),)): 1.2e9,
        (P + "cpu_scaling_frequency_hertz", (("cpu", "1"),)): 2.4e9,
        (P + "cpu_scaling_frequency_min_hertz", (("cpu", "0"),)): 8e8,
        (P + "cpu_scaling_frequency_min_hertz", (("cpu", "1"),)): 8e8,
        (P + "cpu_scaling_frequency_max_hertz", (("cpu", "0"),)): 2.4e9,
        (P + "cpu_scaling_frequency_max_hertz", (("cpu", "1"),)): 2.4e9,
    }


def test_cpufreq_on_a_machine_without_cpufreq_or_cpu_sysfs_is_empty_not_an_error(
    tmp_path: Path, samples_of: Any
) -> None:
    assert samples_of(CpuFreqCollector(HostFS(tmp_path)).collect()) == {}
    (tmp_path / "sys/devices/system/cpu/cpu0").mkdir(parents=True)
    assert samples_of(CpuFreqCollector(HostFS(tmp_path)).collect()) == {}


def test_cpu_collector_exports_modes_without_guest_and_load(fake_system: Any, samples_of: Any) -> None:
    got = samples_of(CpuCollector(fake_system).collect())
    assert got[(P + "cpu_seconds_total", (("cpu", "0"), ("mode", "user")))] == 10
    assert got[(P + "cpu_seconds_total", (("cpu", "1"), ("mode", "idle")))] == 90
    modes = {dict(labels)["mode"] for name, labels in got if name == P + "cpu_seconds_total"}
    assert modes == {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}
    assert got[(P + "load1", ())] == 0.5 and got[(P + "load15", ())] == 0.125


def test_memory_collector_exports_bytes(fake_system: Any, samples_of: Any) -> None:
    got = samples_of(MemoryCollector(fake_system).collect())
    assert got[(P + "memory_total_bytes", ())] == 8 << 30
    assert got[(P + "memory_available_bytes", ())] == 6 << 30
    assert got[(P + "swap_used_bytes", ())] == 1 << 20
    assert (P + "memory_percent_bytes", ()) not in got  # a percentage is not bytes


def test_network_collector_exports_counters_per_device(fake_system: Any, samples_of: Any) -> None:
    got = samples_of(NetworkCollector(fake_system).collect())
    eth0 = (("device", "eth0"),)
    assert got[(P + "network_receive_bytes_total", eth0)] == 5000
    assert got[(P + "network_transmit_bytes_total", eth0)] == 2000
    assert got[(P + "network_receive_drop_total", eth0)] == 3
    assert got[(P + "network_transmit_errors_total", eth0)] == 2
    assert got[(P + "network_receive_packets_total", (("device", "lo"),))] == 1


def test_agent_process_collector(fake_process: Any, samples_of: Any) -> None:
    got = samples_of(AgentProcessCollector(fake_process).collect())
    assert got == {
        (P + "process_resident_memory_bytes", ()): 30 << 20,
        (P + "process_cpu_seconds_total", ()): 2.0,
        (P + "process_threads", ()): 4,
        (P + "process_open_fds", ()): 12,
    }
