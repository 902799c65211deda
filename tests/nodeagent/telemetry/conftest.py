"""Fixture trees and fakes for the telemetry tests: a sysfs/cgroupfs tree below a temporary
root (as the kernel lays it out) and psutil-shaped sources with known values."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from nodeagent.host.fs import HostFS

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
VirtualMemory = namedtuple("VirtualMemory", "total available percent used free buffers cached")
SwapMemory = namedtuple("SwapMemory", "total used free percent sin sout")
NetIO = namedtuple("NetIO", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout")
ProcMem = namedtuple("ProcMem", "rss vms")
ProcCpu = namedtuple("ProcCpu", "user system children_user children_system")


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content + "\n")


@pytest.fixture
def host_tree(tmp_path: Path) -> tuple[HostFS, Path]:
    """A v1 cgroup (cpu, cpuacct, memory hierarchies), a v2 cgroup and three CPUs, two with cpufreq."""
    write_tree(
        tmp_path,
        {
            "sys/fs/cgroup/cpu/mlsysops/app/cpu.stat": (
                "nr_periods 10\nnr_throttled 2\nthrottled_time 500000000"
            ),
            "sys/fs/cgroup/cpuacct/mlsysops/app/cpuacct.usage": "1500000000",
            "sys/fs/cgroup/memory/mlsysops/app/memory.usage_in_bytes": "4096",
            "sys/fs/cgroup/unified/mlsysops/web/cgroup.controllers": "cpu memory",
            "sys/fs/cgroup/unified/mlsysops/web/cpu.stat": (
                "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"
                "nr_periods 7\nnr_throttled 1\nthrottled_usec 250000\nnr_bursts 0"
            ),
            "sys/fs/cgroup/unified/mlsysops/web/memory.current": "8192",
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "1200000",
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_min_freq": "800000",
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq": "2400000",
            "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq": "2400000",
            "sys/devices/system/cpu/cpu1/cpufreq/scaling_min_freq": "800000",
            "sys/devices/system/cpu/cpu1/cpufreq/scaling_max_freq": "2400000",
            "sys/devices/system/cpu/cpu2/online": "1",
            "sys/devices/system/cpu/cpufreq/boost": "1",
            "sys/devices/system/cpu/cpuidle/current_driver": "none",
        },
    )
    return HostFS(tmp_path), tmp_path


class FakeSystem:
    """psutil-shaped source with fixed readings."""

    def cpu_times(self, percpu: bool = False) -> Any:
        assert percpu
        return [CpuTimes(10, 1, 5, 100, 2, 0, 0.5, 0.25, 3, 0), CpuTimes(20, 0, 6, 90, 1, 0, 0.5, 0, 0, 0)]

    def getloadavg(self) -> tuple[float, float, float]:
        return (0.5, 0.25, 0.125)

    def virtual_memory(self) -> Any:
        return VirtualMemory(8 << 30, 6 << 30, 25.0, 2 << 30, 5 << 30, 1 << 20, 1 << 28)

    def swap_memory(self) -> Any:
        return SwapMemory(1 << 30, 1 << 20, (1 << 30) - (1 << 20), 0.1, 0, 0)

    def net_io_counters(self, pernic: bool = False, nowrap: bool = True) -> Any:
        assert pernic
        return {"lo": NetIO(100, 100, 1, 1, 0, 0, 0, 0), "eth0": NetIO(2000, 5000, 20, 50, 1, 2, 3, 4)}


class FakeProcess:
    def memory_info(self) -> Any:
        return ProcMem(30 << 20, 100 << 20)

    def cpu_times(self) -> Any:
        return ProcCpu(1.5, 0.5, 0, 0)

    def num_threads(self) -> int:
        return 4

    def num_fds(self) -> int:
        return 12


def samples(families: Iterable[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of every sample, for exact assertions."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples}


@pytest.fixture
def fake_system() -> FakeSystem:
    return FakeSystem()


@pytest.fixture
def fake_process() -> FakeProcess:
    return FakeProcess()


@pytest.fixture
def samples_of() -> Any:
    return samples
