"""Pure summaries of one measured window: latency percentiles and the dataset row.

Kept free of I/O so the numbers the dataset holds are tested without a container: the recorder
only gathers raw samples (per-request latencies, cgroup counters) and hands them here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mlconnector.contracts import DATASET_COLUMNS


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) with linear interpolation between closest ranks (numpy's
    default, "linear"); NaN for no values, so an empty window is visibly not a measurement."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside 0..1")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class CpuCounters:
    """Cumulative counters of one cgroup at one instant (cgroup v1 cpuacct.usage and cpu.stat,
    or v2 cpu.stat usage_usec/nr_periods/nr_throttled)."""

    usage_ns: int
    nr_periods: int
    nr_throttled: int


@dataclass(frozen=True)
class CpuWindow:
    """What the cgroup did over a window: CPU cores used on average and the fraction of CFS
    periods in which it was throttled."""

    usage_cores: float
    throttled_fraction: float


def cpu_window(before: CpuCounters, after: CpuCounters, seconds: float) -> CpuWindow:
    if seconds <= 0:
        raise ValueError(f"window of {seconds} s")
    periods = after.nr_periods - before.nr_periods
    throttled = after.nr_throttled - before.nr_throttled
    if periods < 0 or throttled < 0 or after.usage_ns < before.usage_ns:
        raise ValueError("cgroup counters went backwards: the cgroup was recreated during the window")
    return CpuWindow(
        usage_cores=(after.usage_ns - before.usage_ns) / 1e9 / seconds,
        throttled_fraction=throttled / periods if periods else 0.0,
    )


@dataclass(frozen=True)
class Setting:
    """The knobs a window was measured under."""

    runtime: str  # runc | runsc
    cpu_quota_cores: float
    cpus: int


@dataclass(frozen=True)
class LoadResult:
    """The request generator's view of a window: latencies (seconds) of the requests that got a
    good answer, and how many were sent and failed (error status, reset, timeout)."""

    offered_rps: float
    window_s: float
    latencies_s: tuple[float, ...]
    errors: int
    timeout_s: float = 2.0  # what the generator waited before counting a request failed

    @property
    def requests(self) -> int:
        return len(self.latencies_s) + self.errors


def build_row(
    *, window_start: float, setting: Setting, load: LoadResult, cpu: CpuWindow, work_ms: float
) -> dict[str, float | int | str]:
    """One dataset row with exactly contracts.DATASET_COLUMNS, latencies in ms. Throughput counts
    good answers only, per second of the offered window. A window without a single good answer
    has its latencies censored at the generator's timeout (every request took at least that long),
    not NaN: the dataset has no holes, and such a window never looks fast."""
    lat_ms = [s * 1000.0 for s in load.latencies_s] or [load.timeout_s * 1000.0]
    row: dict[str, float | int | str] = {
        "window_start": round(window_start, 3),
        "window_s": load.window_s,
        "runtime": setting.runtime,
        "cpu_quota_cores": setting.cpu_quota_cores,
        "cpus": setting.cpus,
        "runtime_gvisor": 1 if setting.runtime == "runsc" else 0,
        "offered_rps": load.offered_rps,
        "work_ms": round(work_ms, 3),
        "requests": load.requests,
        "errors": load.errors,
        "throughput_rps": round(len(load.latencies_s) / load.window_s, 3),
        "latency_p50_ms": round(percentile(lat_ms, 0.50), 3),
        "latency_p95_ms": round(percentile(lat_ms, 0.95), 3),
        "latency_p99_ms": round(percentile(lat_ms, 0.99), 3),
        "cpu_usage_cores": round(cpu.usage_cores, 4),
        "throttled_fraction": round(cpu.throttled_fraction, 4),
    }
    assert tuple(row) == DATASET_COLUMNS, "build_row drifted from contracts.DATASET_COLUMNS"
    return row
