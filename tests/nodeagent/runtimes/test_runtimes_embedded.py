"""The controller in embedded mode (`python -m controller` without a kubeconfig) on a REAL node
agent and a private containerd: an app submitted to the SQLite store goes Pending → Progressing
→ Ready only once its workloads run (one under runc, one under gVisor) and its node settings
are applied; deleting it stops the workloads and resets the settings; a controller killed
mid-deploy and started again converges without losing or duplicating anything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agentproc import COMMAND, IMAGE, NAMESPACE, Agent
from privated import PrivateContainerd

from controller import store
from controller.kube import resources
from controller.kube.errors import NotFound
from controller.store import SqliteStore
from mlsysops.testing import wait_for
from nodeagent.host.simulated import build_simulated_host
from nodeagent.service.workloads import WorkloadService

GOVERNOR = "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
WORKLOADS = ("shop.sandbox.0", "shop.web.0")
ORIGINAL_GOVERNOR = "ondemand"  # the simulated node's


def shop() -> dict[str, Any]:
    """web (runc) asks for cpufreq help (a node setting); sandbox runs under gVisor."""
    container = {"image": IMAGE, "command": COMMAND}
    hint = {"application_metric_id": "latency_ms", "target": 40, "relation": "lower_or_equal",
            "system_metrics_hints": ["cpu_frequency"]}
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": {"name": "shop", "namespace": "default"},
        "components": [
            {"metadata": {"name": "web"}, "qos_metrics": [hint], "containers": [container]},
            {"metadata": {"name": "sandbox"}, "runtime_class_name": "runsc", "containers": [container]},
        ],
    }


@pytest.fixture
def node_agent(containerd: PrivateContainerd, service: WorkloadService, tmp_path: Path) -> Iterator[Agent]:
    """The runtimes test agent over a simulated node tree (so node settings have files to write)."""
    running = Agent(containerd, tmp_path / "agent")
    build_simulated_host(running.workdir / "fs", cpus=2)
    running.start()
    yield running
    running.stop()
    for status in service.workloads():
        if status.spec.name.startswith("shop."):
            service.stop(status.spec.name)


class Daemon:
    """`python -m controller` in embedded mode on a store file, as a process the test can kill."""

    def __init__(self, db: Path, agent: Agent) -> None:
        self.db, self.agent = db, agent
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = db.with_suffix(".log")

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller", "--store", str(self.db),
                 "--agent", f"unix:{self.agent.socket}", "--inventory-interval", "0.5", "--resync", "5",
                 "--log-level", "DEBUG"],
                stdout=out, stderr=out, env=env)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(30) == 0, self.log.read_text(errors="replace")[-3000:]
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = store.open(tmp_path / "state" / "controller.db", poll_interval=0.02)
    yield opened
    opened.close()


@pytest.fixture
def daemon(db: SqliteStore, node_agent: Agent) -> Iterator[Daemon]:
    running = Daemon(db.path, node_agent)
    yield running
    running.stop()


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}


def state(obj: dict[str, Any]) -> str:
    """Pending (no status yet), Progressing, Ready, or the phase otherwise."""
    conds = conditions(obj)
    if not conds:
        return "Pending"
    if conds.get("Ready") == "True":
        return "Ready"
    if conds.get("Progressing") == "True":
        return "Progressing"
    return str(obj["status"].get("phase"))


def running_tasks(containerd: PrivateContainerd) -> list[str]:
    listing = containerd.ctr("tasks", "ls", namespace=NAMESPACE).stdout
    return sorted(line.split()[0] for line in listing.splitlines()[1:]
                  if line.split() and line.split()[0].startswith("shop.") and "RUNNING" in line)


def node_ready(db: SqliteStore) -> bool:
    nodes = db.list(resources.NODE, "default")[0]
    return any(conditions(n).get("Ready") == "True" for n in nodes)


def describe_node(db: SqliteStore) -> None:
    """What the agent cannot report, as its operator describes it: the node permits cpufreq changes."""
    wait_for(lambda: node_ready(db), timeout=60, what="the agent's MLSysOpsNode Ready")
    (node,) = db.list(resources.NODE, "default")[0]
    db.apply({"apiVersion": node["apiVersion"], "kind": node["kind"],
              "metadata": {"name": node["metadata"]["name"], "namespace": "default"},
              "permitted_actions": ["cpu_frequency"]}, field_manager="test-admin")


def watch_states(db: SqliteStore, rv: str, until: str, log: Path) -> list[str]:
    """The app's states in the order the store recorded them (a watch misses none)."""
    seen = ["Pending"]
    for _attempt in range(6):
        for event in db.watch(resources.APP, "default", rv, timeout_seconds=20):
            rv = event.object["metadata"]["resourceVersion"]
            if event.type in ("ADDED", "MODIFIED") and state(event.object) != seen[-1]:
                seen.append(state(event.object))
            if seen[-1] == until:
                return seen
    pytest.fail(f"{until} never came: {seen}\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture
def governor(node_agent: Agent) -> Path:
    """cpu0's governor in the agent's simulated node tree (what the cpufreq setting writes)."""
    path = node_agent.workdir / "fs" / GOVERNOR
    assert path.read_text().strip() == ORIGINAL_GOVERNOR
    return path


def submit(db: SqliteStore, daemon: Daemon) -> str:
    """Start the controller, let it sync the node, submit the app; the version before it."""
    daemon.start()
    describe_node(db)
    _, rv = db.list(resources.APP, "default")
    db.apply(shop(), field_manager="test-user")
    return rv


def cleaned_up(containerd: PrivateContainerd, governor: Path) -> None:
    wait_for(lambda: running_tasks(containerd) == [], timeout=60, what="the workloads stopped")
    wait_for(lambda: governor.read_text().strip() == ORIGINAL_GOVERNOR, timeout=30, what="the governor reset")
    assert "shop." not in containerd.ctr("containers", "ls", namespace=NAMESPACE).stdout


def test_embedded_app_goes_pending_progressing_ready_and_delete_cleans_up(
    db: SqliteStore, daemon: Daemon, node_agent: Agent, containerd: PrivateContainerd, governor: Path
) -> None:
    rv = submit(db, daemon)
    assert state(db.get(resources.APP, "default", "shop")) == "Pending"

    states = watch_states(db, rv, "Ready", daemon.log)
    assert states == ["Pending", "Progressing", "Ready"], states
    assert running_tasks(containerd) == list(WORKLOADS)
    assert "kernel=4.4.0" in node_agent.cli("logs", "shop.sandbox.0")  # gVisor's kernel, not the host's
    assert governor.read_text().strip() == "performance"
    status = db.get(resources.APP, "default", "shop")["status"]
    assert status["phase"] == "Deployed" and status["observedGeneration"] == 1

    db.delete(resources.APP, "default", "shop")
    cleaned_up(containerd, governor)


def test_a_controller_killed_mid_deploy_converges_after_a_restart(
    db: SqliteStore, daemon: Daemon, node_agent: Agent, containerd: PrivateContainerd, governor: Path
) -> None:
    rv = submit(db, daemon)
    watch_states(db, rv, "Progressing", daemon.log)
    daemon.kill()  # after the submission and the Progressing status, before Ready was written
    assert state(db.get(resources.APP, "default", "shop")) == "Progressing"

    daemon.start()
    wait_for(lambda: state(db.get(resources.APP, "default", "shop")) == "Ready", timeout=120,
             what="Ready after the restart")
    assert running_tasks(containerd) == list(WORKLOADS)  # each once: names are deterministic
    assert governor.read_text().strip() == "performance"

    daemon.kill()
    db.delete(resources.APP, "default", "shop")  # while the controller is down: it never sees a DELETED
    with pytest.raises(NotFound):
        db.get(resources.APP, "default", "shop")
    daemon.start()  # its workloads (by their owner env) and settings (by the node's records) go
    cleaned_up(containerd, governor)
