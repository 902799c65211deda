"""The controller's `local` mechanism realising a placed component on a real node agent (runtimes
enabled, private containerd): run on runc, switch to gVisor when the description asks for it,
remove; ctr checks each step."""

from __future__ import annotations

from agentproc import COMMAND, IMAGE, NAMESPACE, Agent
from privated import PrivateContainerd

from controller.mechanisms.local import GrpcWorkloadAgents, LocalMechanism
from controller.model.descriptions import App, Component, Container
from controller.policies.base import Decision, Plan
from mlsysops.testing import wait_for

PLAN = Plan("shop", "default", "test", (Decision("web", "node-1", None, "test"),), ("web",))


def shop(runtime_class: str | None) -> App:
    return App(
        "shop",
        "default",
        (Component("web", (Container(IMAGE, tuple(COMMAND)),), runtime_class_name=runtime_class),),
    )


def test_local_mechanism_runs_switches_and_removes_through_the_agent(
    containerd: PrivateContainerd, agent: Agent
) -> None:
    agents = GrpcWorkloadAgents()
    mechanism = LocalMechanism(agents, lambda node: f"unix:{agent.socket}" if node == "node-1" else None)
    try:
        assert mechanism.realize(shop(None), PLAN).written == (
            f"NodeWorkload/unix:{agent.socket}/shop.web.0",
        )
        assert "shop.web.0" in containerd.ctr("tasks", "ls", namespace=NAMESPACE).stdout
        assert mechanism.realize(shop(None), PLAN).unchanged

        result = mechanism.realize(shop("runsc"), PLAN)
        assert result.written and not result.pending
        wait_for(lambda: "kernel=4.4.0" in agent.cli("logs", "shop.web.0"), 10, "gVisor's banner")

        result = mechanism.realize(shop("kata"), PLAN)  # discovery said no: refused, still on runsc
        assert not result.written and "kata is unavailable" in result.pending[0]
        assert "running" in agent.cli("ps")
    finally:
        try:
            mechanism.remove("shop", "default")
        finally:
            agents.close()
    assert "shop.web.0" not in containerd.ctr("containers", "ls", namespace=NAMESPACE).stdout
