"""The `local` mechanism: placed components run as workloads on node agents (clusters without Kubernetes).

For every placed replica of a container component, the node's agent runs one workload (node API
`RunWorkload`) with the container's image, command and env, on the runtime handler the
description's `runtime_class_name` names (`runc` when it names none, or "default"). Realising
is declarative and writes only what differs:

- a workload that is missing is run;
- one that runs the same image, command and env on another handler is switched (verified by the
  agent, which rolls back on failure: a rolled-back switch is reported pending, with its reason);
- one whose image, command or env changed is stopped and run again;
- workloads of the app that are no longer wanted are stopped.

Ready means running: the agent's RunWorkload answers once it has verified the task runs, and a
workload it reports in any other state (created, stopped) makes realize raise NotReady (a
temporary error: the app stays Progressing and the loop tries again), never a silent success.

Workloads are named `<app>.<component>.<replica>`, so `remove` finds an app's workloads on
every node it touched and on every agent the inventory knows (after a controller restart,
what this process touched is empty). Rendering is pure; the node-API calls go through a `WorkloadAgents`
gateway (`GrpcWorkloadAgents` on the shared client), so realising is tested with a fake.

Limits: the agent does not read an image's entrypoint, so a container without `command` is
reported pending; ports, resources and volumes are not carried over yet.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from controller.kube.api import Obj
from controller.kube.errors import NotReady
from controller.mechanisms.base import MechanismContext, RealizeResult, no_agents
from controller.mechanisms.nodeagent import AgentError, GrpcAgents
from controller.model import App
from controller.policies.base import Plan
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb

DEFAULT_HANDLER = "runc"
#: Set in every workload's env to `<namespace>/<app>`: who owns it, durable on the agent, so a
#: restarted controller stops the workloads of apps deleted while it was down (`seed`).
OWNER_ENV = "MLSYSOPS_APP"
NO_RUNTIME_CLASS = (None, "", "default")
KIND = "NodeWorkload"

log = logging.getLogger(__name__)


class WorkloadAgents(Protocol):
    """The node-API calls the local mechanism makes (GrpcWorkloadAgents, or a fake in tests)."""

    def workloads(self, target: str) -> list[pb.Workload]: ...
    def run(self, target: str, spec: pb.WorkloadSpec) -> pb.Workload: ...
    def stop(self, target: str, name: str) -> None: ...
    def switch(self, target: str, name: str, handler: str) -> pb.SwitchRuntimeResponse: ...


class GrpcWorkloadAgents(GrpcAgents):
    """WorkloadAgents on the nodeagent mechanism's adapter (one shared-kernel client per target;
    failures become AgentError, temporary or not)."""

    def __init__(self, timeout: float = 60.0) -> None:
        super().__init__(timeout)

    def workloads(self, target: str) -> list[pb.Workload]:
        return self._call(target, lambda c: c.workloads())

    def run(self, target: str, spec: pb.WorkloadSpec) -> pb.Workload:
        return self._call(target, lambda c: c.run_workload(spec))

    def stop(self, target: str, name: str) -> None:
        self._call(target, lambda c: c.stop_workload(name))

    def switch(self, target: str, name: str, handler: str) -> pb.SwitchRuntimeResponse:
        return self._call(target, lambda c: c.switch_runtime(name, handler))


# ---------------------------------------------------------------------- rendering (pure)


def workload_name(app: str, component: str, replica: int | str) -> str:
    """`<app>.<component>.<replica>` in the agent's name rules (lower case, at most 63)."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", f"{app}.{component}.{replica}".lower()).strip("-._")
    return name[-63:].lstrip("-._")


def app_prefix(app: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", app.lower()).strip("-._") + "."


def handler_for(runtime_class_name: str | None) -> str:
    return DEFAULT_HANDLER if runtime_class_name in NO_RUNTIME_CLASS else str(runtime_class_name)


def render_workloads(app: App, plan: Plan, target: Callable[[str], str | None]) -> list[Obj]:
    """One NodeWorkload object per placed replica of each container component, in plan order."""
    objects: list[Obj] = []
    for decision in plan.decisions:
        component = app.component(decision.component)
        if component.external_component or component.far_edge:
            continue
        containers = [c for c in component.containers if not c.mcu]
        for replica, node in enumerate(decision.hosts):
            for index, container in enumerate(containers):
                suffix = replica if len(containers) == 1 else f"{replica}-{index}"
                name = workload_name(app.name, component.name, suffix)
                env = [f"{e.get('name')}={e.get('value', '')}" for e in container.env if e.get("name")]
                env.append(f"{OWNER_ENV}={app.namespace}/{app.name}")
                objects.append(
                    {
                        "apiVersion": "nodeconfig.mlsysops.eu/v1",
                        "kind": KIND,
                        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": app.name}},
                        "node": node,
                        "target": target(node),
                        "spec": {
                            "name": name,
                            "image": container.image or "",
                            "handler": handler_for(component.runtime_class_name),
                            "args": list(container.command),
                            "env": env,
                        },
                    }
                )
    return objects


def owner_of(spec: pb.WorkloadSpec) -> str | None:
    """`<namespace>/<app>` of a workload this mechanism ran; None for anyone else's."""
    owners = [e.split("=", 1)[1] for e in spec.env if e.startswith(f"{OWNER_ENV}=")]
    return owners[-1] if owners else None


def spec_of(obj: Mapping[str, Any]) -> pb.WorkloadSpec:
    spec = obj["spec"]
    return pb.WorkloadSpec(
        name=spec["name"], image=spec["image"], handler=spec["handler"], args=spec["args"], env=spec["env"]
    )


def same_workload(running: pb.WorkloadSpec, wanted: pb.WorkloadSpec) -> bool:
    """Same image, command and env (the handler may differ: that is a switch, not a re-run)."""
    return (running.image, list(running.args), list(running.env)) == (
        wanted.image,
        list(wanted.args),
        list(wanted.env),
    )


# ---------------------------------------------------------------------- the mechanism


class LocalMechanism:
    name = "local"

    def __init__(
        self,
        agents: WorkloadAgents | None = None,
        targets: Callable[[str], str | None] = lambda _node: None,
        all_targets: Callable[[], list[str]] = no_agents,
    ) -> None:
        self.agents = agents
        self.targets = targets
        self.all_targets = all_targets  # where `remove` looks too: what realize touched is not durable
        self._touched: dict[tuple[str, str], set[str]] = {}  # (namespace, app) -> agent targets
        self._lock = threading.Lock()

    @classmethod
    def from_context(cls, context: MechanismContext) -> LocalMechanism:
        """Plan mode (no agents in the context) only renders; the daemon talks to the agents."""
        return cls(GrpcWorkloadAgents() if context.agents is not None else None, context.agent_target,
                   context.agent_targets)

    def close(self) -> None:
        close = getattr(self.agents, "close", None)
        if callable(close):
            close()

    def render(self, app: App, plan: Plan) -> list[Obj]:
        return render_workloads(app, plan, self.targets)

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        agents = self._require_agents()
        written: list[str] = []
        unchanged: list[str] = []
        pending: list[str] = []
        starting: list[str] = []  # run, but the agent does not report them running
        by_target: dict[str, list[Obj]] = {}
        for obj in self.render(app, plan):
            if not obj["target"]:
                pending.append(f"{obj['metadata']['name']} on {obj['node']}: the node has no node agent")
            elif not obj["spec"]["args"]:
                pending.append(
                    f"{obj['metadata']['name']}: no command (the agent does not read image entrypoints)"
                )
            else:
                by_target.setdefault(str(obj["target"]), []).append(obj)
        with self._lock:
            touched = self._touched.setdefault((app.namespace, app.name), set())
            touched.update(by_target)
            for target in sorted(touched):
                self._converge(
                    agents,
                    target,
                    app_prefix(app.name),
                    by_target.get(target, []),
                    written,
                    unchanged,
                    pending,
                    starting,
                )
        if starting:
            raise NotReady("not running yet: " + "; ".join(starting))
        return RealizeResult(self.name, tuple(written), tuple(unchanged), tuple(pending))

    def seed(self, live_apps: Sequence[str]) -> None:
        """After a (re)start, before the first reconcile: on every agent the inventory knows,
        remember where each live app (`namespace/name`) has workloads, and stop the workloads
        of apps deleted while the controller was down. An unreachable agent is skipped (its
        workloads are found by the app's next realize or remove)."""
        agents = self._require_agents()
        live = set(live_apps)
        with self._lock:
            for target in self.all_targets():
                try:
                    found = [(w.spec.name, owner_of(w.spec)) for w in agents.workloads(target)]
                    for name, owner in found:
                        if owner is None:
                            continue
                        if owner in live:
                            namespace, _, app = owner.partition("/")
                            self._touched.setdefault((namespace, app), set()).add(target)
                        else:
                            agents.stop(target, name)
                except AgentError as exc:
                    log.warning("seeding the local mechanism from %s: %s", target, exc)

    def remove(self, app_name: str, namespace: str) -> None:
        agents = self._require_agents()
        with self._lock:
            touched = self._touched.pop((namespace, app_name), set()) | set(self.all_targets())
            for target in sorted(touched):
                self._converge(agents, target, app_prefix(app_name), [], [], [], [], [])

    def _converge(
        self,
        agents: WorkloadAgents,
        target: str,
        prefix: str,
        wanted: Sequence[Obj],
        written: list[str],
        unchanged: list[str],
        pending: list[str],
        starting: list[str],
    ) -> None:
        running = {w.spec.name: w for w in agents.workloads(target) if w.spec.name.startswith(prefix)}
        for obj in wanted:
            spec = spec_of(obj)
            key = f"{KIND}/{target}/{spec.name}"
            now = running.pop(spec.name, None)
            if now is not None and not same_workload(now.spec, spec):
                agents.stop(target, spec.name)
                now = None
            if now is None:
                self._run(agents, target, spec, starting)
                written.append(key)
            elif now.spec.handler != spec.handler:
                try:
                    result = agents.switch(target, spec.name, spec.handler)
                except AgentError as exc:
                    if exc.temporary:
                        raise
                    pending.append(f"{spec.name}: switch to {spec.handler} refused: {exc}")  # still running
                    continue
                if result.outcome == "switched":
                    written.append(key)
                else:
                    pending.append(f"{spec.name}: switch to {spec.handler} {result.outcome}: {result.error}")
            elif now.status != "running":
                agents.stop(target, spec.name)
                self._run(agents, target, spec, starting)
                written.append(key)
            else:
                unchanged.append(key)
        for name in sorted(running):  # the app's workloads no longer wanted on this node
            agents.stop(target, name)
            written.append(f"{KIND}/{target}/{name} (stopped)")

    @staticmethod
    def _run(agents: WorkloadAgents, target: str, spec: pb.WorkloadSpec, starting: list[str]) -> None:
        started = agents.run(target, spec)
        if started.status != "running":
            starting.append(f"{spec.name} on {target} is {started.status or 'unknown'}")

    def _require_agents(self) -> WorkloadAgents:
        if self.agents is None:
            raise RuntimeError("the local mechanism was built without agents (plan mode)")
        return self.agents
