"""The `nodeagent` mechanism: node-level settings (cpufreq, cgroups, runtimes) through node agents.

Policies put node-agent Profile sections in each decision's `node_settings` (e.g. a cpufreq
governor for a component whose `qos_metrics.system_metrics_hints` name cpu_frequency, cgroup
limits, runtime switches under `extensions`). A node agent's profile is declarative — what
an apply does not mention goes back to its original value — so this mechanism keeps every
app's contribution per node and always applies their union; removing an app re-applies the
rest, or resets the node when nothing is left.

The node-API calls live in `GrpcAgents` (the adapter, on mlsysops.nodeapi's client), so the
merging and rendering are pure and tested without a network.

Known limit: contributions are kept in memory; after a controller restart, each app's
reconcile adds its part back, so until all apps have been reconciled once an agent may hold
only part of the union.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from google.protobuf import json_format

from controller.kube.api import Obj
from controller.mechanisms.base import MechanismContext, RealizeResult
from controller.model import App
from controller.policies.base import Plan
from mlsysops.nodeapi import NodeAgentClient, NodeApiError
from mlsysops.nodeconfig.v1 import nodeconfig_pb2

R = TypeVar("R")
REQUESTER = "mlsysops-controller"
#: Profile sections and the list each one holds; the lists of several apps are concatenated.
SECTION_LISTS = {"cpufreq": "settings", "cgroups": "groups", "network": "interfaces"}


class AgentError(Exception):
    """A node agent call failed; `temporary` says whether retrying later may succeed."""

    def __init__(self, message: str, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


class AgentGateway(Protocol):
    def apply(self, target: str, profile: nodeconfig_pb2.Profile) -> nodeconfig_pb2.ApplyResponse: ...
    def reset(self, target: str) -> nodeconfig_pb2.ResetResponse: ...
    def inventory(self, target: str) -> nodeconfig_pb2.Inventory: ...


class GrpcAgents:
    """The node-API adapter: one shared-kernel client per target, its errors become AgentError."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._clients: dict[str, NodeAgentClient] = {}
        self._lock = threading.Lock()

    def apply(self, target: str, profile: nodeconfig_pb2.Profile) -> nodeconfig_pb2.ApplyResponse:
        return self._call(target, lambda client: client.apply(profile, requester=REQUESTER))

    def reset(self, target: str) -> nodeconfig_pb2.ResetResponse:
        return self._call(target, lambda client: client.reset())

    def inventory(self, target: str) -> nodeconfig_pb2.Inventory:
        return self._call(target, lambda client: client.inventory())

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def _call(self, target: str, call: Callable[[NodeAgentClient], R]) -> R:
        try:
            with self._lock:
                client = self._clients.get(target)
                if client is None:
                    client = self._clients[target] = NodeAgentClient(target, timeout=self.timeout)
            return call(client)
        except NodeApiError as exc:
            raise AgentError(
                f"node agent {target}: {exc.method or 'target'}: {exc.code}: {exc.details}",
                temporary=exc.temporary,
            ) from None


# ---------------------------------------------------------------------- profiles (pure)


def merge_profiles(parts: Iterable[Mapping[str, Any]]) -> Obj:
    """The union of profile sections: builtin lists concatenated without repeating an identical
    entry (two apps asking the same governor), anything else an extension (later parts win)."""
    merged: Obj = {}
    for part in parts:
        for section, value in part.items():
            list_field = SECTION_LISTS.get(section)
            if list_field is not None:
                items = merged.setdefault(section, {}).setdefault(list_field, [])
                items.extend(copy.deepcopy(i) for i in (value or {}).get(list_field, []) if i not in items)
            else:
                named = dict(value or {}) if section == "extensions" else {section: value}
                extensions = merged.setdefault("extensions", {})
                for name, ext in named.items():
                    extensions.setdefault(name, {}).update(copy.deepcopy(dict(ext or {})))
    return merged


def to_profile(profile: Mapping[str, Any], where: str) -> nodeconfig_pb2.Profile:
    """Parse a profile dict (proto JSON field names); ValueError naming `where` when invalid."""
    try:
        return json_format.ParseDict(dict(profile), nodeconfig_pb2.Profile())
    except json_format.ParseError as exc:
        raise ValueError(f"{where}: not a node agent profile (nodeconfig.v1.Profile): {exc}") from None


def settings_by_node(plan: Plan) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for decision in plan.decisions:
        if decision.node and decision.node_settings:
            out.setdefault(decision.node, []).append(decision.node_settings)
    return out


def render_profile(app: App, node: str, target: str | None, profile: Obj) -> Obj:
    return {
        "apiVersion": "nodeconfig.mlsysops.eu/v1",
        "kind": "NodeProfile",
        "metadata": {"name": node, "labels": {"app.kubernetes.io/part-of": app.name}},
        "target": target,
        "profile": profile,
    }


class NodeAgentMechanism:
    """Applies node settings through the node agents; `targets(node)` gives an agent's target
    (from the MLSysOpsNode `agent.target`), None when the node has no agent."""

    name = "nodeagent"

    def __init__(
        self, agents: AgentGateway | None = None, targets: Callable[[str], str | None] = lambda _node: None
    ) -> None:
        self.agents = agents
        self.targets = targets
        self._contributions: dict[str, dict[tuple[str, str], Obj]] = {}  # node -> (ns, app) -> profile
        self._lock = threading.Lock()

    @classmethod
    def from_context(cls, context: MechanismContext) -> NodeAgentMechanism:
        return cls(context.agents, context.agent_target)

    def close(self) -> None:
        close = getattr(self.agents, "close", None)
        if callable(close):
            close()

    def render(self, app: App, plan: Plan) -> list[Obj]:
        objects = []
        for node, parts in sorted(settings_by_node(plan).items()):
            profile = merge_profiles(parts)
            to_profile(profile, f"Plan({app.name}).decisions[node={node}].node_settings")
            objects.append(render_profile(app, node, self.targets(node), profile))
        return objects

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        key = (app.namespace, app.name)
        wanted = {o["metadata"]["name"]: o["profile"] for o in self.render(app, plan)}
        with self._lock:
            touched = set(wanted) | {n for n, c in self._contributions.items() if key in c}
            for node in touched:
                if node in wanted:
                    self._contributions.setdefault(node, {})[key] = wanted[node]
                else:
                    self._contributions.get(node, {}).pop(key, None)
            return self._push(sorted(touched))

    def remove(self, app_name: str, namespace: str) -> None:
        key = (namespace, app_name)
        with self._lock:
            touched = sorted(n for n, c in self._contributions.items() if c.pop(key, None) is not None)
            self._push(touched)

    def _push(self, nodes: list[str]) -> RealizeResult:
        written: list[str] = []
        unchanged: list[str] = []
        for node in nodes:
            target = self.targets(node)
            if target is None:
                raise AgentError(
                    f"node {node} has settings to apply but no node agent "
                    "(MLSysOpsNode agent.target is empty)",
                    temporary=False,
                )
            if self.agents is None:
                raise RuntimeError("the nodeagent mechanism was built without agents (plan mode)")
            parts = list(self._contributions.get(node, {}).values())
            if not parts:
                self.agents.reset(target)
                written.append(f"NodeProfile/{node} (reset)")
                continue
            response = self.agents.apply(target, to_profile(merge_profiles(parts), f"node {node}"))
            (written if response.writes_performed else unchanged).append(f"NodeProfile/{node}")
        return RealizeResult(mechanism=self.name, written=tuple(written), unchanged=tuple(unchanged))
