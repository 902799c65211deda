"""`make demo` end to end: the whole stack comes up, is driven, and leaves nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def demo_namespaces() -> set[str]:
    """The demo's network namespaces (named mlsysops-demo-<pid>; other tests make their own)."""
    found = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    return {name for name in found if name.startswith("mlsysops-demo-")}


def demo_processes() -> list[str]:
    """Command lines of processes still running from a demo's work directory (containerd, its
    shims and gVisor sandboxes, the agent, Prometheus, the bridge, Mosquitto)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "/mlsysops-demo-" in cmdline:
                found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@pytest.mark.skipif(
    os.geteuid() != 0, reason="the demo needs root (cgroups, a network namespace, containerd)"
)
def test_the_demo_runs_the_whole_stack_and_cleans_up() -> None:
    before = demo_namespaces()
    running_before = demo_processes()
    done = subprocess.run(
        [sys.executable, "-m", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=480
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    for part in ("=== node agent ===", "=== far-edge bridge", "=== controller", "=== the whole loop"):
        assert part in out
    assert "everything it created was removed" in out
    # the whole loop: authentication on, both route tables, Deployed only once running, one
    # workload under gVisor, node settings applied, live performance, everything removed
    assert "401" in out.split("GET /api/v1/apps without a token")[1].splitlines()[1]
    assert '{"app_id":"hello","status":"Submitted"}' in out
    assert out.count("phase Deployed") == 4
    # the far-edge app: placed on the MQTT board's node, rolled out over the air, confirmed
    assert "component sensor on node demo-mqtt-1: Placed=True (Placed), Ready=True (Running)" in out
    assert "device demo-mqtt-1: firmware 1.1.0, release" in out and " confirmed" in out
    assert "shop.sandbox.0     running  on runsc" in out and "shop.web.0         running  on runc" in out
    assert "memory.limit_in_bytes = 134217728" in out
    web = next(line for line in out.splitlines() if line.strip().startswith("web ") and "cpu_cores" in line)
    assert "cpu_cores -" not in web and "memory_bytes -" not in web
    assert "the node runs no workload of either app and holds none of their settings" in out
    _assert_ml_part(out.split("--- the ML connector")[1])
    after = demo_namespaces()
    assert after <= before, f"namespaces left behind: {after - before}"
    leftovers = [p for p in Path("/sys/fs/cgroup").glob("*/mlsysops-demo-*")]
    assert not leftovers, f"cgroups left behind: {leftovers}"
    assert set(demo_processes()) <= set(running_before), "processes left behind"


def _assert_ml_part(ml: str) -> None:
    """A model trained through the API on the recorded dataset, beating the mean predictor on the
    hold-out window; an explanation that adds up; the learning policy's decision carrying either
    the model's explanation or its visible fallback reason; the app placed, running and deleted."""
    assert "POST /api/v1/models/latency_p95_ms/train" in ml and "\n  200 " in ml
    version = re.search(r"version 1 \['champion'\]: hold-out MAPE ([0-9.]+) vs baseline \(mean predictor\) "
                        r"([0-9.]+), trained on (\d+) rows of dataset:mlconnector/data/qos_grid.csv", ml)
    assert version, ml[:3000]
    assert float(version[1]) < float(version[2]) and int(version[3]) > 0
    n = r"[-0-9.]+"
    assert re.search(rf"shap: base {n} \+ attributions = {n} ms, prediction {n} ms: additive", ml)
    assert "PUT /api/v1/policies/mode ml, as an admin" in ml and '{"mode":"ml"}' in ml
    assert "component api on node " in ml and "Ready=True (Running)" in ml
    decided = ml.split("GET /api/v1/apps/tuned/explain (Decision.model)")[1]
    assert "[qosLearnedPlacer]" in decided.splitlines()[1]
    model = decided.splitlines()[2]
    assert model.startswith("  model: not trusted, fallback to the heuristic: ") or model.startswith(
        "  model latency_p95_ms/"
    ), model
    assert "no champion" not in model and "latency_p95_ms/1" in model  # the API's own champion, asked
    assert '{"name":"tuned","deleted":true}' in ml
