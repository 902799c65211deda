"""The pure parts of the experiment: percentiles, cgroup counter deltas, the dataset row, the
open-loop schedule, and the grid's order."""

from __future__ import annotations

import collections
import itertools
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from mlconnector.contracts import DATASET_COLUMNS
from mlconnector.experiment.cgroupfs import CgroupCounters
from mlconnector.experiment.grid import Grid
from mlconnector.experiment.schedule import arrivals
from mlconnector.experiment.stats import (
    CpuCounters,
    CpuWindow,
    LoadResult,
    Setting,
    build_row,
    cpu_window,
    percentile,
)


@pytest.mark.parametrize("q", [0.0, 0.5, 0.95, 0.99, 1.0])
def test_percentile_matches_numpy_linear(q: float) -> None:
    values = [5.0, 1.0, 9.0, 3.0, 7.5, 2.25, 8.0]
    assert percentile(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_percentile_of_nothing_is_nan_and_bad_quantiles_are_refused() -> None:
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_cpu_window_is_cores_and_throttled_share() -> None:
    before = CpuCounters(usage_ns=1_000_000_000, nr_periods=100, nr_throttled=10)
    after = CpuCounters(usage_ns=3_000_000_000, nr_periods=140, nr_throttled=30)
    window = cpu_window(before, after, 4.0)
    assert window.usage_cores == pytest.approx(0.5)
    assert window.throttled_fraction == pytest.approx(0.5)
    assert cpu_window(after, after, 1.0).throttled_fraction == 0.0  # no periods: not throttled


def test_cpu_window_refuses_counters_going_backwards() -> None:
    with pytest.raises(ValueError, match="recreated"):
        cpu_window(CpuCounters(10, 5, 1), CpuCounters(5, 6, 1), 1.0)


def test_row_has_exactly_the_dataset_columns_in_ms() -> None:
    load = LoadResult(offered_rps=20.0, window_s=2.0, latencies_s=(0.010, 0.020, 0.030, 0.040), errors=1)
    row = build_row(
        window_start=1000.0,
        setting=Setting("runsc", 0.4, 1),
        load=load,
        cpu=CpuWindow(0.35, 0.25),
        work_ms=6.5,
    )
    assert tuple(row) == DATASET_COLUMNS
    assert row["runtime_gvisor"] == 1 and row["requests"] == 5 and row["errors"] == 1
    assert row["throughput_rps"] == 2.0  # good answers per second
    assert row["latency_p50_ms"] == pytest.approx(25.0)
    assert row["latency_p95_ms"] == pytest.approx(38.5)
    assert row["cpu_usage_cores"] == 0.35 and row["throttled_fraction"] == 0.25


def test_constant_schedule_is_evenly_spaced_within_the_window() -> None:
    assert arrivals(4, 1.0, poisson=False) == [0.0, 0.25, 0.5, 0.75]


def test_poisson_schedule_has_the_offered_rate_and_is_reproducible() -> None:
    offsets = arrivals(200, 20.0, seed=3)
    assert offsets == sorted(offsets) and all(0 <= t < 20.0 for t in offsets)
    assert len(offsets) / 20.0 == pytest.approx(200, rel=0.05)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert statistics.mean(gaps) == pytest.approx(1 / 200, rel=0.05)
    assert statistics.stdev(gaps) == pytest.approx(1 / 200, rel=0.1)  # exponential: sd == mean
    assert arrivals(200, 20.0, seed=3) == offsets != arrivals(200, 20.0, seed=4)


def test_grid_points_switch_runtime_least_often() -> None:
    grid = Grid(runtimes=("runc", "runsc"), cpus=(1, 2), quotas=(0.2, 0.4), loads_rps=(10, 20))
    points = list(grid.points())
    assert len(points) == len(grid) == 16
    switches = sum(1 for a, b in itertools.pairwise(points) if a[0] != b[0])
    assert switches == 1


def test_grid_repeats_measure_every_point_that_many_times_in_a_mixed_order() -> None:
    grid = Grid(runtimes=("runc", "runsc"), cpus=(1,), quotas=(0.2, 0.4), loads_rps=(10, 20),
                repeats=3, shuffle_seed=7)
    points = list(grid.points())
    assert len(points) == len(grid) == 24
    assert collections.Counter(points) == dict.fromkeys(itertools.product(*[("runc", "runsc"), (1,),
                                                                            (0.2, 0.4), (10, 20)]), 3)
    assert points[:8] != points[8:16]  # not one shuffled pass repeated


def test_record_refuses_bad_quotas_before_measuring(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mlconnector.experiment.__main__ import main

    for bad in ("0.2,x", "0,0.4"):
        r = CliRunner().invoke(main, ["record", "--out", str(tmp_path / "g.csv"), "--quotas", bad])
        assert r.exit_code == 2 and "--quotas" in r.output, r.output
    assert not (tmp_path / "g.csv").exists()


def test_cgroup_counters_read_a_v1_tree(tmp_path: Path) -> None:
    root = tmp_path
    (root / "cpuacct" / "exp" / "svc").mkdir(parents=True)
    (root / "cpu" / "exp" / "svc").mkdir(parents=True)
    (root / "cpuacct" / "exp" / "svc" / "cpuacct.usage").write_text("123456789\n")
    (root / "cpu" / "exp" / "svc" / "cpu.stat").write_text(
        "nr_periods 40\nnr_throttled 7\nthrottled_time 99\n"
    )
    assert CgroupCounters("exp/svc", root).read() == CpuCounters(123456789, 40, 7)


def test_cgroup_counters_read_a_v2_tree(tmp_path: Path) -> None:
    root = tmp_path
    (root / "cgroup.controllers").write_text("cpu cpuset\n")
    (root / "exp" / "svc").mkdir(parents=True)
    (root / "exp" / "svc" / "cpu.stat").write_text(
        "usage_usec 2000\nuser_usec 1500\nnr_periods 9\nnr_throttled 3\n"
    )
    assert CgroupCounters("exp/svc", root).read() == CpuCounters(2_000_000, 9, 3)


def test_a_window_without_good_answers_is_censored_at_the_timeout() -> None:
    load = LoadResult(offered_rps=50.0, window_s=4.0, latencies_s=(), errors=200, timeout_s=2.0)
    row = build_row(
        window_start=1.0, setting=Setting("runc", 0.2, 1), load=load, cpu=CpuWindow(0.2, 1.0), work_ms=6
    )
    assert row["throughput_rps"] == 0.0 and row["requests"] == 200
    assert row["latency_p50_ms"] == row["latency_p95_ms"] == row["latency_p99_ms"] == 2000.0
