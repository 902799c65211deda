"""Durable node settings against a REAL node agent process (issue 12, defect 2): the controller
is killed between the agent's Apply and the app's status update, an app is deleted while no
controller runs, and the restarted controller leaves the agent with exactly the union of the
live apps' settings."""

from __future__ import annotations

from typing import Any

from test_ctlkube_nodeagent_process import Agent, agent  # noqa: F401  (the real agent fixture)

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.mechanisms.nodeagent import GrpcAgents
from controller.reconcile.nodesync import AgentTarget
from mlsysops.nodeapi import NodeAgentClient
from mlsysops.testing import wait_for

NAMESPACE = "default"


def limited(name: str) -> dict[str, Any]:
    """An app whose one component runs on an edge node with a camera, with cgroup limits."""
    container = {"image": f"registry.example.com/{name}:1",
                 "platform_requirements": {"cpu": {"requests": "100m", "limits": "500m"},
                                           "memory": {"requests": "64Mi", "limits": "128Mi"}}}
    return {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "components": [{"metadata": {"name": "worker"}, "containers": [container],
                            "node_placement": {"continuum_layer": ["edge"], "labels": ["camera"]}}]}


def groups(agent: Agent) -> list[str]:  # noqa: F811
    with NodeAgentClient(agent.target) as client:
        return sorted(g.path for g in client.state().desired.cgroups.groups)


def phase(kube: KubeApi, app: str) -> str | None:
    return (kube.get(R.APP, NAMESPACE, app).get("status") or {}).get("phase")


def test_a_restarted_controller_leaves_exactly_the_union_of_the_live_apps_settings(
        kube, world, controllers, standin, agent: Agent):  # noqa: F811
    edge1 = next(d for d in world if d["metadata"]["name"] == "edge-1")
    kube.apply({k: v for k, v in edge1.items() if k != "agent"}, field_manager="test-admin")
    kube.delete(R.NODE, NAMESPACE, "edge-2")  # every app lands on edge-1, the node with the agent
    options = {"mechanisms": ("kubernetes", "nodeagent"), "agents": (AgentTarget(agent.target),),
               "inventory_period": 0.2}
    first_gateway, second_gateway = GrpcAgents(timeout=5), GrpcAgents(timeout=5)
    try:
        first = controllers.start(gateway=first_gateway, **options)
        wait_for(lambda: kube.get(R.NODE, NAMESPACE, "edge-1").get("agent", {}).get("target") == agent.target,
                 what="edge-1 reported by its agent")
        for name in ("alpha", "beta"):
            kube.apply(limited(name), field_manager="test-user")
        wait_for(lambda: phase(kube, "alpha") == phase(kube, "beta") == "Deployed",
                 what="alpha and beta Deployed")
        assert groups(agent) == ["default/alpha/worker", "default/beta/worker"]

        # gamma is applied by the agent, then every app status update fails: the controller dies
        # between the Apply and the status update
        standin.fail(503, count=10**6, method="PUT", path="/mlsysopsapps/")
        kube.apply(limited("gamma"), field_manager="test-user")
        wait_for(lambda: "default/gamma/worker" in groups(agent), what="gamma applied by the agent")
        controllers.stop(first)
        assert phase(kube, "gamma") is None  # no status was ever written for it
        kube.delete(R.APP, NAMESPACE, "alpha")  # deleted while no controller runs
        standin.recover()

        controllers.start(gateway=second_gateway, **options)
        wait_for(lambda: groups(agent) == ["default/beta/worker", "default/gamma/worker"],
                 what="exactly the union of beta and gamma on the agent", timeout=30)
        wait_for(lambda: phase(kube, "gamma") == "Deployed", what="gamma Deployed after the restart")
        recorded = kube.get(R.NODE, NAMESPACE, "edge-1")["status"]["settings"]
        assert [r["app"] for r in recorded] == ["default/beta", "default/gamma"]
    finally:
        first_gateway.close()
        second_gateway.close()
