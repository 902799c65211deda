"""bench/nodeagent.py runs end to end (short settings), prints its JSON last, and cleans up.
Only the shape and the exact counts are asserted: speed is judged by the benchmark itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

EXPECTED = {
    "rss_mib_idle",
    "rss_mib_after_10k_applies",
    "idle_cpu_pct",
    "apply_p50_ms",
    "apply_p99_ms",
    "direct_write_p99_ms",
    "profile_p99_ms",
    "reapply_writes",
    "targets",
    "baseline",
    "meets_targets",
}


def test_bench_prints_the_figures_as_its_last_line_and_leaves_nothing_behind(bench: ModuleType) -> None:
    args = ["--applies", "100", "--idle-seconds", "1", "--settle-seconds", "0.5", "--profile-applies", "6"]
    done = subprocess.run(
        [sys.executable, str(bench.__file__), *args], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) >= EXPECTED
    assert result["reapply_writes"] == 0
    assert result["applies"] == 100 and result["profile_writes"] > 0
    assert result["apply_p50_ms"] <= result["apply_p99_ms"]
    assert result["targets"]["apply_p99_ms_max"] == 2.0
    tag = result["tag"]
    assert not any(Path("/sys/fs/cgroup", h, tag).exists() for h in ("cpu", "cpuacct", "cpuset", "memory"))
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert tag not in netns.split()
