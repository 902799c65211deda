"""The `local` mechanism against a fake node-agent gateway: what it renders for a plan, and the
calls realising makes (run, switch, re-run, stop, unchanged)."""

from __future__ import annotations

import pytest

from controller.kube.errors import NotReady
from controller.mechanisms.local import LocalMechanism, render_workloads, workload_name
from controller.model.descriptions import App, Component, Container
from controller.policies.base import Decision, Plan
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb

COMMAND = ("/bin/sh", "-c", "sleep 1000")


def app(
    runtime_class: str | None = None, command: tuple[str, ...] = COMMAND, image: str = "busybox:1"
) -> App:
    web = Component(
        "web",
        (Container(image, command, env=({"name": "MODE", "value": "fast"},)),),
        runtime_class_name=runtime_class,
    )
    return App("shop", "default", (web,))


def plan(*nodes: str) -> Plan:
    return Plan(
        "shop", "default", "test", (Decision("web", nodes[0], None, "test", nodes=tuple(nodes)),), ("web",)
    )


class FakeAgents:
    def __init__(self, switch_outcome: str = "switched", started: str = "running") -> None:
        self.running: dict[str, dict[str, pb.Workload]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.switch_outcome = switch_outcome
        self.started = started  # the state RunWorkload reports

    def workloads(self, target: str) -> list[pb.Workload]:
        return list(self.running.get(target, {}).values())

    def run(self, target: str, spec: pb.WorkloadSpec) -> pb.Workload:
        self.calls.append(("run", target, f"{spec.name}@{spec.handler}"))
        workload = pb.Workload(spec=spec, status=self.started, pid=1)
        self.running.setdefault(target, {})[spec.name] = workload
        return workload

    def stop(self, target: str, name: str) -> None:
        self.calls.append(("stop", target, name))
        self.running[target].pop(name)

    def switch(self, target: str, name: str, handler: str) -> pb.SwitchRuntimeResponse:
        self.calls.append(("switch", target, f"{name}@{handler}"))
        if self.switch_outcome == "switched":
            self.running[target][name].spec.handler = handler
        return pb.SwitchRuntimeResponse(
            outcome=self.switch_outcome,
            error=""
            if self.switch_outcome == "switched"
            else "kata: containerd-shim-kata-v2: file does not exist",
        )


def targets(node: str) -> str | None:
    return {"n1": "unix:/n1.sock", "n2": "unix:/n2.sock"}.get(node)


def test_render_names_one_workload_per_replica_with_the_runtime_class_as_handler() -> None:
    objects = render_workloads(app("runsc"), plan("n1", "n2"), targets)
    assert [(o["metadata"]["name"], o["target"], o["spec"]["handler"]) for o in objects] == [
        ("shop.web.0", "unix:/n1.sock", "runsc"),
        ("shop.web.1", "unix:/n2.sock", "runsc"),
    ]
    assert objects[0]["spec"]["env"] == ["MODE=fast", "MLSYSOPS_APP=default/shop"]
    assert objects[0]["spec"]["args"] == list(COMMAND)
    assert render_workloads(app("default"), plan("n1"), targets)[0]["spec"]["handler"] == "runc"
    assert workload_name("My App", "Web", 0) == "my-app.web.0"


def test_realize_runs_then_does_nothing_then_switches_then_reruns_then_stops() -> None:
    agents = FakeAgents()
    mechanism = LocalMechanism(agents, targets)
    first = mechanism.realize(app(), plan("n1"))
    assert first.written == ("NodeWorkload/unix:/n1.sock/shop.web.0",) and agents.calls == [
        ("run", "unix:/n1.sock", "shop.web.0@runc")
    ]
    assert mechanism.realize(app(), plan("n1")).unchanged == ("NodeWorkload/unix:/n1.sock/shop.web.0",)
    mechanism.realize(app("runsc"), plan("n1"))
    assert agents.calls[-1] == ("switch", "unix:/n1.sock", "shop.web.0@runsc")
    mechanism.realize(app("runsc", image="busybox:2"), plan("n1"))
    assert agents.calls[-2:] == [
        ("stop", "unix:/n1.sock", "shop.web.0"),
        ("run", "unix:/n1.sock", "shop.web.0@runsc"),
    ]
    mechanism.realize(app("runsc", image="busybox:2"), plan("n2"))  # moved: stopped on n1, run on n2
    assert ("stop", "unix:/n1.sock", "shop.web.0") in agents.calls[-2:]
    assert ("run", "unix:/n2.sock", "shop.web.0@runsc") in agents.calls[-2:]
    mechanism.remove("shop", "default")
    assert agents.running == {"unix:/n1.sock": {}, "unix:/n2.sock": {}}


def test_a_rolled_back_switch_and_unrealisable_workloads_are_pending_with_reasons() -> None:
    agents = FakeAgents(switch_outcome="rolled_back")
    mechanism = LocalMechanism(agents, targets)
    mechanism.realize(app(), plan("n1"))
    result = mechanism.realize(app("kata"), plan("n1"))
    assert result.pending == (
        "shop.web.0: switch to kata rolled_back: kata: containerd-shim-kata-v2: file does not exist",
    )
    assert "no node agent" in mechanism.realize(app(), plan("n9")).pending[0]
    assert (
        "no command" in LocalMechanism(FakeAgents(), targets).realize(app(command=()), plan("n1")).pending[0]
    )


def test_a_workload_the_agent_does_not_report_running_is_not_ready() -> None:
    """Ready means the agent confirmed it runs: a created-but-not-running task is a temporary
    NotReady (the app stays Progressing and is retried), not a success."""
    agents = FakeAgents(started="created")
    with pytest.raises(NotReady, match=r"shop\.web\.0 on unix:/n1\.sock is created"):
        LocalMechanism(agents, targets).realize(app(), plan("n1"))


def test_seed_stops_workloads_of_apps_deleted_meanwhile_and_remembers_live_ones() -> None:
    """After a restart: the owner each workload carries in its env says which app it is for."""
    agents = FakeAgents()
    LocalMechanism(agents, targets).realize(app(), plan("n1", "n2"))
    foreign = pb.WorkloadSpec(name="cli-job", image="busybox:1", args=["true"])
    agents.running["unix:/n1.sock"]["cli-job"] = pb.Workload(spec=foreign, status="running")
    restarted = LocalMechanism(agents, targets, lambda: ["unix:/n1.sock", "unix:/n2.sock"])

    restarted.seed(["default/shop"])
    assert not [c for c in agents.calls if c[0] == "stop"]
    restarted.seed([])  # shop was deleted while the controller was down
    assert sorted(c[1:] for c in agents.calls if c[0] == "stop") == [
        ("unix:/n1.sock", "shop.web.0"), ("unix:/n2.sock", "shop.web.1")]
    assert "cli-job" in agents.running["unix:/n1.sock"]  # not ours: untouched
