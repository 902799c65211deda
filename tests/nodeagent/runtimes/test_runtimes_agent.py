"""End to end: a real agent process (`python -m nodeagent`, runtimes enabled) on the private
containerd, driven through the `mlsysops node` CLI; ctr checks the results."""

from __future__ import annotations

import json
from typing import Any

from agentproc import COMMAND, IMAGE, NAMESPACE, Agent
from privated import PrivateContainerd

from mlsysops.testing import wait_for


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

    def web(workloads: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
        return [
            (w["spec"]["name"], w["pid"], w["spec"]["handler"])
            for w in workloads
            if w["spec"]["name"] == "cli-web"
        ]

    assert web(after) == web(before) and web(after)[0][2] == "runsc"
    agent.cli("stop", "cli-web")
    assert "cli-web" not in containerd.ctr("containers", "ls", namespace=NAMESPACE).stdout
