"""The mechanism plugin interface: a Plan → objects on a real engine.

A mechanism is split the TuneD way: `render` is pure (the exact objects it would write, used by
plan mode as a dry run and by tests), `realize` writes them through an adapter it was built
with (server-side apply, gRPC), writing only what differs, and `remove` is idempotent.

Plugins are classes in the entry-point group `mlsysops.controller.mechanisms`, looked up in a
`MechanismRegistry` (controller/mechanisms/registry.py). Plan mode and the daemon build them
the same way: with `Cls.from_context(context)` when the class has that classmethod, else with
`Cls()`. The daemon's composition root passes a `MechanismContext` holding its adapters (the
API server, the node-agent gateway, where each node's agent is, the far-edge bridge); plan
mode passes the empty one, so a mechanism must render without adapters. A mechanism whose module is missing or
broken is reported by plan mode, not fatal; the daemon refuses to start with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from controller.kube import resources
from controller.kube.api import Obj
from controller.model import App
from controller.policies.base import Plan

if TYPE_CHECKING:
    from controller.mechanisms.faredge import FarEdgeBridge
    from controller.mechanisms.nodeagent import AgentGateway


@dataclass(frozen=True)
class RealizeResult:
    mechanism: str
    written: tuple[str, ...]  # "Kind/namespace/name" of objects created or changed
    unchanged: tuple[str, ...]  # already as desired: nothing written
    # not realised yet, each with why (e.g. "sensor on dev-1: the far-edge bridge does not know dev-1");
    # the app is not Ready while anything is pending
    pending: tuple[str, ...] = ()


@runtime_checkable
class Mechanism(Protocol):
    name: str

    def render(self, app: App, plan: Plan) -> Sequence[Mapping[str, object]]:
        """The exact objects it would write for this plan (pure, deterministic order)."""
        ...

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        """Write the rendered objects (through the adapter), only what differs."""
        ...

    def remove(self, app_name: str, namespace: str) -> None:
        """Delete everything this mechanism wrote for the app; idempotent."""
        ...


class ObjectWriter(Protocol):
    """What the Kubernetes-side mechanisms need from an API server (controller.kube.api.KubeApi)."""

    def apply(self, obj: Mapping[str, Any]) -> Obj: ...
    def get(self, res: resources.Resource, namespace: str, name: str) -> Obj: ...
    def list(
        self, res: resources.Resource, namespace: str = "", label_selector: str = ""
    ) -> tuple[list[Obj], str]: ...
    def delete(self, res: resources.Resource, namespace: str, name: str) -> bool: ...


def no_agent(_node: str) -> str | None:
    """The agent target of a node when nothing is known about agents (plan mode)."""
    return None


def no_agents() -> list[str]:
    """Every known agent target when nothing is known about agents (plan mode)."""
    return []


def no_cache(_name: str) -> Obj | None:
    """A cached MLSysOpsNode when there is no informer cache (plan mode, tests): none."""
    return None


@dataclass(frozen=True)
class MechanismContext:
    """The adapters a mechanism may be built with. The empty context (plan mode) has none:
    mechanisms built from it only render."""

    api: ObjectWriter | None = None
    agents: AgentGateway | None = None
    agent_target: Callable[[str], str | None] = no_agent  # node name → its agent's gRPC target
    agent_targets: Callable[[], list[str]] = no_agents  # every node agent in the inventory
    availability_timeout: float = 30.0  # how long a realize waits for what must come up first
    namespace: str = "default"  # where the MLSysOps objects (apps, nodes) live
    cached_node: Callable[[str], Obj | None] = no_cache  # MLSysOpsNode by name, from the informer
    bridge: FarEdgeBridge | None = None  # the far-edge bridge's control socket (the faredge mechanism)


class MechanismFactory(Protocol):
    def __call__(self, context: MechanismContext) -> Mechanism: ...
