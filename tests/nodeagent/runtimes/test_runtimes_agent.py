"""End to end: a real agent process (`python -m nodeagent`, runtimes enabled) on the private
containerd, driven through the `mlsysops node` CLI; ctr checks the results."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from privated import PrivateContainerd

from mlsysops.nodeapi import NodeAgentClient
from mlsysops.testing import wait_for
from nodeagent.service.workloads import WorkloadService

from .conftest import IMAGE, NAMESPACE

MLSYSOPS = str(Path(sys.executable).with_name("mlsysops"))
COMMAND = ["/bin/sh", "-c", "echo kernel=$(uname -r); trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]


class Agent:
    def __init__(self, daemon: PrivateContainerd, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "agent.sock"
        self.config = workdir / "nodeagent.yaml"
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"""mechanisms:
  network: {{enabled: false}}
telemetry:
  metrics_listen: ""
runtimes:
  enabled: true
  containerd_socket: {daemon.address}
  containerd_config: {daemon.config}
  dropin: {daemon.dropin_dir / "mlsysops-runtimes.toml"}
  runsc_wrapper: {daemon.base / "runsc-wrapper"}
  namespace: {NAMESPACE}
  probe_image: {IMAGE}
  allowed_mount_roots: {workdir / "data"}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / "agent.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nodeagent", "--config", str(self.config), "--socket", str(self.socket),
             "--runtime-dir", str(self.workdir / "run"), "--fs-root", str(self.workdir / "fs"), "--simulate", "all"],
            stdout=log, stderr=log,
        )
        log.close()
        with NodeAgentClient(f"unix:{self.socket}") as client:
            client.wait_ready(60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.proc = None

    def cli(self, *args: str, expect: int = 0) -> str:
        done = subprocess.run([MLSYSOPS, "node", "--target", f"unix:{self.socket}", *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == expect, (args, done.returncode, done.stdout, done.stderr)
        return done.stdout + done.stderr


@pytest.fixture
def agent(containerd: PrivateContainerd, service: WorkloadService, tmp_path: Path) -> Iterator[Agent]:
    running = Agent(containerd, tmp_path)
    running.start()
    yield running
    running.stop()
    for status in service.workloads():
        if status.spec.name.startswith("cli-"):
            service.stop(status.spec.name)


def test_the_cli_runs_switches_and_stops_a_workload_across_an_agent_restart(
    containerd: PrivateContainerd, agent: Agent
) -> None:
    runtimes = {r["handler"]: r for r in json.loads(agent.cli("runtimes", "-o", "json"))["runtimes"]}
    assert runtimes["runc"]["available"] and runtimes["runsc"]["available"]
    assert runtimes["kata"]["reason"] == "containerd-shim-kata-v2: file does not exist"
    inventory = json.loads(agent.cli("info", "-o", "json"))
    assert {r["handler"] for r in inventory["runtimes"]} == {"runc", "runsc", "crun", "kata"}

    agent.cli("run", "cli-web", "--image", IMAGE, "--", *COMMAND)
    assert "cli-web" in containerd.ctr("tasks", "ls", namespace=NAMESPACE).stdout
    assert "running" in agent.cli("ps")
    wait_for(lambda: "kernel=" in agent.cli("logs", "cli-web"), 10, "first banner")

    assert "switched" in agent.cli("switch-runtime", "cli-web", "runsc")
    wait_for(lambda: "kernel=4.4.0" in agent.cli("logs", "cli-web"), 10, "gVisor's banner")
    out = agent.cli("switch-runtime", "cli-web", "kata", "--force", expect=1)
    assert "rolled_back" in out and "now on runsc" in out
    agent.cli("switch-runtime", "cli-web", "nosuch", expect=2)
    agent.cli("run", "cli-bad", "--image", IMAGE, "--mount", "/etc:/x", "--", "/bin/true", expect=2)

    before = json.loads(agent.cli("ps", "-o", "json"))["workloads"]
    agent.stop()
    agent.start()
    after = json.loads(agent.cli("ps", "-o", "json"))["workloads"]
    assert [(w["spec"]["name"], w["pid"], w["spec"]["handler"]) for w in after if w["spec"]["name"] == "cli-web"] == [
        (w["spec"]["name"], w["pid"], "runsc") for w in before if w["spec"]["name"] == "cli-web"
    ]
    agent.cli("stop", "cli-web")
    assert "cli-web" not in containerd.ctr("containers", "ls", namespace=NAMESPACE).stdout
