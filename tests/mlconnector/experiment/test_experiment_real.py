"""The experiment on the real stack: a private containerd, a real node agent on the real cgroupfs,
the service under runc and gVisor (runsc), the generator over a veth into its netns. A tiny grid
(2 quotas x 2 runtimes x 1 load, short windows) is recorded through the CLI's recorder and the
rows are checked to be well-formed and physically sensible."""

from __future__ import annotations

import csv
import math
import os
import subprocess
from pathlib import Path

import pytest

from mlconnector.contracts import DATASET_COLUMNS
from mlconnector.experiment.grid import Grid, record_grid
from mlconnector.experiment.testbed import Testbed

pytestmark = pytest.mark.timeout(180)

GRID = Grid(runtimes=("runc", "runsc"), cpus=(1,), quotas=(0.2, 1.2), loads_rps=(30,), window_s=3.0)


def _ready() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (containerd, cgroups, netns)")
    for binary in ("/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/runsc", "/bin/busybox"):
        if not os.path.exists(binary):
            pytest.skip(f"{binary} is not installed (.ci/setup installs it)")


def test_a_tiny_grid_is_real_and_sensible(tmp_path: Path) -> None:
    _ready()
    beds: list[Testbed] = []

    def factory() -> Testbed:
        beds.append(Testbed(tmp_path / "bed"))
        return beds[-1]

    out = tmp_path / "grid.csv"
    ticks: list[int] = []
    rows = record_grid(factory, GRID, out, ticks.append)

    with out.open(newline="") as handle:
        written = list(csv.DictReader(handle))
    assert tuple(written[0]) == DATASET_COLUMNS and len(written) == len(rows) == len(GRID) == sum(ticks)
    num = [{k: float(v) for k, v in r.items() if k != "runtime"} for r in rows]
    by = {(r["runtime"], float(r["cpu_quota_cores"])): n for r, n in zip(rows, num, strict=True)}
    assert set(by) == {(rt, q) for rt in GRID.runtimes for q in GRID.quotas}
    for raw, row in zip(rows, num, strict=True):
        assert row["runtime_gvisor"] == (raw["runtime"] == "runsc")
        assert row["requests"] > 0.5 * 30 * GRID.window_s  # the generator offered the load
        assert row["cpu_usage_cores"] > 0.05  # the service really burned CPU in the tuned cgroup
        # the agent's quota held: usage within the quota (plus accounting slack of a window)
        assert row["cpu_usage_cores"] <= row["cpu_quota_cores"] + 0.1, row
        assert all(not math.isnan(row[k]) for k in ("latency_p50_ms", "latency_p95_ms"))
    for runtime in GRID.runtimes:
        small, large = by[(runtime, 0.2)], by[(runtime, 1.2)]
        assert small["throttled_fraction"] > large["throttled_fraction"], (small, large)
        assert small["latency_p95_ms"] > large["latency_p95_ms"], (small, large)

    bed = beds[0]  # everything the testbed made is gone
    assert not Path(f"/sys/fs/cgroup/cpu/{bed.cgroup_root}").exists()
    assert (
        bed.netns.name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    )
    assert not (tmp_path / "bed" / "ctd").exists()
