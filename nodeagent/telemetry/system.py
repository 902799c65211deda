"""CPU, memory, network and agent-process collectors, read through psutil.

psutil already parses procfs well and honours its own PROCFS_PATH, so these collectors take
psutil-shaped *sources* instead of a HostFS: production passes the psutil module (and a
psutil.Process), tests pass small fakes with the same attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from nodeagent.telemetry.base import PREFIX

# Guest time is already counted in user/nice (as node_exporter documents); exporting it as a
# mode would make sum(rate(cpu_seconds_total)) exceed the number of CPUs.
_EXCLUDED_CPU_MODES = frozenset({"guest", "guest_nice"})
_MEMORY_FIELDS = ("total", "available", "free", "buffers", "cached")
_SWAP_FIELDS = ("total", "used", "free")
# psutil snetio field -> (counter name after "network_", help)
_NET_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("bytes_recv", "receive_bytes", "Bytes received"),
    ("bytes_sent", "transmit_bytes", "Bytes transmitted"),
    ("packets_recv", "receive_packets", "Packets received"),
    ("packets_sent", "transmit_packets", "Packets transmitted"),
    ("errin", "receive_errors", "Receive errors"),
    ("errout", "transmit_errors", "Transmit errors"),
    ("dropin", "receive_drop", "Received packets dropped"),
    ("dropout", "transmit_drop", "Transmitted packets dropped"),
)


class SystemSource(Protocol):
    """The subset of the psutil module these collectors use, as they call it (always per CPU
    and per NIC: psutil's overloads tell those calls apart by the literal flag)."""

    def cpu_times(self, percpu: Literal[True]) -> Sequence[Any]: ...
    def getloadavg(self) -> tuple[float, float, float]: ...
    def virtual_memory(self) -> Any: ...
    def swap_memory(self) -> Any: ...
    def net_io_counters(self, pernic: Literal[True], nowrap: bool = True) -> Mapping[str, Any]: ...


class ProcessSource(Protocol):
    """The subset of psutil.Process the agent collector uses."""

    def memory_info(self) -> Any: ...
    def cpu_times(self) -> Any: ...
    def num_threads(self) -> int: ...
    def num_fds(self) -> int: ...


def _named_fields(record: Any) -> Mapping[str, float]:
    return dict(zip(record._fields, record, strict=True))


class CpuCollector:
    """Per-CPU time by mode (like node_cpu_seconds_total) and load averages."""

    name = "cpu"

    def __init__(self, source: SystemSource) -> None:
        self._source = source

    def collect(self) -> list[Metric]:
        seconds = CounterMetricFamily(
            PREFIX + "cpu_seconds", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"]
        )
        per_cpu: Sequence[Any] = self._source.cpu_times(percpu=True)
        for cpu, times in enumerate(per_cpu):
            for mode, value in _named_fields(times).items():
                if mode not in _EXCLUDED_CPU_MODES:
                    seconds.add_metric([str(cpu), mode], float(value))
        families: list[Metric] = [seconds]
        for window, value in zip((1, 5, 15), self._source.getloadavg(), strict=True):
            families.append(
                GaugeMetricFamily(PREFIX + f"load{window}", f"{window}-minute load average.", value=value)
            )
        return families


class MemoryCollector:
    """Physical memory and swap, in bytes."""

    name = "memory"

    def __init__(self, source: SystemSource) -> None:
        self._source = source

    def collect(self) -> list[Metric]:
        families: list[Metric] = []
        for kind, record, fields in (
            ("memory", self._source.virtual_memory(), _MEMORY_FIELDS),
            ("swap", self._source.swap_memory(), _SWAP_FIELDS),
        ):
            values = _named_fields(record)
            for field in fields:
                if field in values:
                    families.append(
                        GaugeMetricFamily(
                            PREFIX + f"{kind}_{field}_bytes",
                            f"{kind.capitalize()} {field}, in bytes.",
                            value=float(values[field]),
                        )
                    )
        return families


class NetworkCollector:
    """Per-interface traffic counters of the agent's network namespace."""

    name = "network"

    def __init__(self, source: SystemSource) -> None:
        self._source = source

    def collect(self) -> list[Metric]:
        # nowrap: psutil keeps counters monotonic across 32-bit wraps of the kernel's stats.
        per_nic: Mapping[str, Any] = self._source.net_io_counters(pernic=True, nowrap=True)
        families = {
            field: CounterMetricFamily(PREFIX + "network_" + suffix, f"{help_}.", labels=["device"])
            for field, suffix, help_ in _NET_FIELDS
        }
        for device in sorted(per_nic):
            values = _named_fields(per_nic[device])
            for field, family in families.items():
                family.add_metric([device], float(values[field]))
        return list(families.values())


class AgentProcessCollector:
    """The agent's own footprint, so a regression in RSS or idle CPU shows on a dashboard."""

    name = "agent"

    def __init__(self, process: ProcessSource) -> None:
        self._process = process

    def collect(self) -> list[Metric]:
        cpu = self._process.cpu_times()
        return [
            GaugeMetricFamily(
                PREFIX + "process_resident_memory_bytes",
                "Resident memory of the agent process, in bytes.",
                value=float(self._process.memory_info().rss),
            ),
            CounterMetricFamily(
                PREFIX + "process_cpu_seconds",
                "User and system CPU time of the agent process.",
                value=float(cpu.user + cpu.system),
            ),
            GaugeMetricFamily(
                PREFIX + "process_threads",
                "Threads of the agent process.",
                value=float(self._process.num_threads()),
            ),
            GaugeMetricFamily(
                PREFIX + "process_open_fds",
                "Open file descriptors of the agent process.",
                value=float(self._process.num_fds()),
            ),
        ]
