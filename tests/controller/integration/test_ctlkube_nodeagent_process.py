"""Delegation end to end against a REAL node agent process (`python -m nodeagent`) on a private
unix socket over a simulated node tree: its GetInventory becomes the MLSysOpsNode, the
controller's cpufreq hint is applied through its Apply, and deleting the app resets the node."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ctlkube_harness import APP, NAMESPACE

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.mechanisms.nodeagent import GrpcAgents
from controller.reconcile.nodesync import AgentTarget
from mlsysops.nodeapi import NodeAgentClient
from mlsysops.testing import wait_for

simulated = pytest.importorskip("nodeagent.host.simulated", reason="the node agent package is missing")
try:
    import nodeagent.daemon  # noqa: F401
except ImportError as exc:  # written in parallel by the node agent engineers
    pytest.skip(f"the node agent daemon (python -m nodeagent) is missing: {exc}", allow_module_level=True)

GOVERNOR = "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
CONFIG = """\
mechanisms:
  network: {enabled: false}
telemetry:
  metrics_listen: "127.0.0.1:0"
"""


@dataclass
class Agent:
    target: str
    root: Path


@pytest.fixture
def agent() -> Iterator[Agent]:
    workdir = Path(tempfile.mkdtemp(prefix="mlsysops-ctlkube-agent-"))
    root = workdir / "root"
    simulated.build_simulated_host(root, cpus=2)
    (workdir / "agent.yaml").write_text(CONFIG)
    sock = workdir / "agent.sock"
    log = workdir / "agent.log"
    command = [sys.executable, "-m", "nodeagent", "--config", str(workdir / "agent.yaml"),
               "--socket", str(sock), "--runtime-dir", str(workdir / "run"), "--fs-root", str(root),
               "--simulate", "all", "--node-name", "edge-1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=out)
    try:
        def ready() -> bool:
            if re.search(r"logger=nodeagent ready", log.read_text(errors="replace")):
                return True
            if proc.poll() is not None:
                pytest.fail(f"node agent exited ({proc.poll()}):\n{log.read_text(errors='replace')}")
            return False

        try:
            wait_for(ready, timeout=60, what="the node agent ready", interval=0.05)
        except AssertionError:
            pytest.fail(f"node agent did not start within 60 s:\n{log.read_text(errors='replace')}")
        yield Agent(f"unix:{sock}", root)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_agents_inventory_becomes_the_node_and_its_settings_come_from_the_plan(
        kube, world, app_doc, controllers, agent: Agent):
    # edge-1 is described without an agent; the real agent reports itself under that name
    edge1 = next(d for d in world if d["metadata"]["name"] == "edge-1")
    kube.apply({k: v for k, v in edge1.items() if k != "agent"}, field_manager="test-admin")
    kube.delete(R.NODE, NAMESPACE, "edge-2")  # so the camera reader (cpu_frequency hint) lands on edge-1
    gateway = GrpcAgents(timeout=5)
    try:
        controller = controllers.start(gateway=gateway, mechanisms=("kubernetes", "nodeagent"),
                                       agents=(AgentTarget(agent.target, "cloud"),), inventory_period=0.2)
        node = wait_for(lambda: _reported(kube, agent.target), what="edge-1 reported by its agent")
        assert node["continuum_layer"] == "edge"  # the description wins over the flag's layer
        assert node["cpufreq"]["available"] is True and node["hardware"]["cpu"]["cores"] == 2

        governor = agent.root / GOVERNOR
        original = governor.read_text().strip()
        reader = app_doc["components"][0]["containers"][0]["platform_requirements"]["cpu"]
        del reader["architecture"]  # the agent reports this machine's architecture, whatever it is
        kube.apply(app_doc, field_manager="test-user")
        wait_for(lambda: controller.outcomes.get(APP) and controller.outcomes[APP].phase == "Deployed",
                 what="Deployed with node settings", timeout=30)
        assert governor.read_text().strip() == "performance"
        with NodeAgentClient(agent.target) as client:
            state = client.state()
        assert [s.governor for s in state.desired.cpufreq.settings] == ["performance"]

        kube.delete(R.APP, NAMESPACE, APP)
        wait_for(lambda: governor.read_text().strip() == original, what="the governor restored by Reset")
    finally:
        gateway.close()


def _reported(kube: KubeApi, target: str) -> dict[str, Any] | None:
    node = kube.get(R.NODE, NAMESPACE, "edge-1")
    return node if node.get("agent", {}).get("target") == target else None
