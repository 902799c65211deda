"""Collectors that read sysfs and cgroupfs through the agent's HostFS (root injectable).

Per-cgroup usage and the current CPU frequency are not in psutil; reading them through the same
file layer as the mechanisms means tests run them over fixture trees, and the demo over its
simulated cpufreq tree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from nodeagent.errors import HostError
from nodeagent.host.fs import HostFS
from nodeagent.telemetry.base import PREFIX

_NS = 1e-9
_US = 1e-6
_CPU_DIR = re.compile(r"cpu(\d+)")
CPU_SYSFS = "sys/devices/system/cpu"


class CgroupsCollector:
    """CPU and memory usage of the cgroups the agent manages, v1 and v2 alike.

    Targets are directories relative to the fs root, supplied by the agent (its configured
    cgroups in every hierarchy). Each file is optional: a v1 cpu directory has cpu.stat, its
    cpuacct twin has cpuacct.usage, a v2 directory has both usage and throttling in cpu.stat.
    A cgroup that vanished between two samples is skipped, never an error.
    """

    name = "cgroups"

    def __init__(
        self, fs: HostFS, targets: Callable[[], Sequence[str]], mount: str = "sys/fs/cgroup"
    ) -> None:
        self._fs = fs
        self._targets = targets
        self._mount = mount.strip("/") + "/"

    def collect(self) -> list[Metric]:
        labels = ["cgroup"]
        usage = CounterMetricFamily(
            PREFIX + "cgroup_cpu_usage_seconds", "CPU time consumed by the cgroup.", labels=labels
        )
        periods = CounterMetricFamily(
            PREFIX + "cgroup_cpu_periods", "CFS enforcement periods elapsed.", labels=labels
        )
        throttled = CounterMetricFamily(
            PREFIX + "cgroup_cpu_throttled_periods",
            "CFS periods in which the cgroup was throttled.",
            labels=labels,
        )
        throttled_seconds = CounterMetricFamily(
            PREFIX + "cgroup_cpu_throttled_seconds", "Time the cgroup spent throttled.", labels=labels
        )
        memory = GaugeMetricFamily(
            PREFIX + "cgroup_memory_usage_bytes", "Memory charged to the cgroup, in bytes.", labels=labels
        )
        for target in dict.fromkeys(self._targets()):  # de-duplicated, order kept
            label = [target.strip("/").removeprefix(self._mount)]
            stat = parse_stat(self._read(f"{target}/cpu.stat"))
            ns_usage = to_int(self._read(f"{target}/cpuacct.usage"))
            if ns_usage is not None:
                usage.add_metric(label, ns_usage * _NS)
            elif "usage_usec" in stat:
                usage.add_metric(label, stat["usage_usec"] * _US)
            if "nr_periods" in stat:
                periods.add_metric(label, float(stat["nr_periods"]))
                throttled.add_metric(label, float(stat.get("nr_throttled", 0)))
            if "throttled_usec" in stat:
                throttled_seconds.add_metric(label, stat["throttled_usec"] * _US)
            elif "throttled_time" in stat:
                throttled_seconds.add_metric(label, stat["throttled_time"] * _NS)
            mem = to_int(
                self._read(f"{target}/memory.current") or self._read(f"{target}/memory.usage_in_bytes")
            )
            if mem is not None:
                memory.add_metric(label, float(mem))
        return [usage, periods, throttled, throttled_seconds, memory]

    def _read(self, rel: str) -> str | None:
        try:
            return self._fs.read_optional(rel)
        except HostError:  # e.g. ENODEV on a cgroup being removed right now
            return None


def to_int(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() else None


def parse_stat(text: str | None) -> dict[str, int]:
    """`key value` lines of cpu.stat; unparsable lines are ignored (future kernel fields)."""
    stat: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            stat[key] = int(value)
    return stat


class CpuFreqCollector:
    """Current and allowed scaling frequency of every CPU that has cpufreq, in hertz."""

    name = "cpufreq"

    def __init__(self, fs: HostFS) -> None:
        self._fs = fs

    def collect(self) -> list[Metric]:
        families = {
            attr: GaugeMetricFamily(PREFIX + f"cpu_scaling_frequency{suffix}_hertz", help_, labels=["cpu"])
            for attr, suffix, help_ in (
                ("scaling_cur_freq", "", "Current scaling frequency of the CPU."),
                ("scaling_min_freq", "_min", "Lowest frequency the governor may pick."),
                ("scaling_max_freq", "_max", "Highest frequency the governor may pick."),
            )
        }
        for cpu in self._cpus():
            for attr, family in families.items():
                try:
                    khz = self._fs.read_optional(f"{CPU_SYSFS}/cpu{cpu}/cpufreq/{attr}")
                except HostError:
                    khz = None
                if (value := to_int(khz)) is not None:
                    family.add_metric([str(cpu)], value * 1000.0)
        return list(families.values())

    def _cpus(self) -> list[int]:
        if not self._fs.is_dir(CPU_SYSFS):
            return []
        matches = (_CPU_DIR.fullmatch(entry) for entry in self._fs.listdir(CPU_SYSFS))
        return sorted(int(m.group(1)) for m in matches if m)
