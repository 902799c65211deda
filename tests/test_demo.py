"""`make demo` end to end: the whole stack comes up, is driven, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.skipif(os.geteuid() != 0, reason="the demo needs root (cgroups, a network namespace)")
def test_the_demo_runs_the_whole_stack_and_cleans_up() -> None:
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    done = subprocess.run(
        [sys.executable, "-m", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for part in ("=== node agent ===", "=== far-edge bridge", "=== controller"):
        assert part in done.stdout
    assert "everything it created was removed" in done.stdout
    after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    assert after <= before, f"namespaces left behind: {after - before}"
    leftovers = [p for p in Path("/sys/fs/cgroup").glob("*/mlsysops-demo-*")]
    assert not leftovers, f"cgroups left behind: {leftovers}"
