"""The `nodeagent` mechanism: node-level settings (cpufreq, cgroups, runtimes) through node agents.

Policies put node-agent Profile sections in each decision's `node_settings` (e.g. a cpufreq
governor for a component whose `qos_metrics.system_metrics_hints` name cpu_frequency, cgroup
limits, runtime switches under `extensions`). A node agent's profile is declarative — what
an apply does not mention goes back to its original value — so this mechanism keeps every
app's contribution per node and always applies their union; removing an app re-applies the
rest, or resets the node when nothing is left.

The node-API calls live in `GrpcAgents` (the adapter, on mlsysops.nodeapi's client), so the
merging and rendering are pure and tested without a network.

Contributions are durable (nodeagent_records.py): recorded in the MLSysOpsNode's status before
each apply, and read back by `seed` when the daemon starts, which drops the part of every app
that no longer exists and re-applies each recorded node's union (a reset when nothing is left).
A node whose push failed is pushed again by the next realize or remove, so the agents converge
on exactly the union of the live apps. An app is realized only once every agent confirmed.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from google.protobuf import json_format

from controller.kube.api import Obj
from controller.mechanisms.base import MechanismContext, RealizeResult
from controller.mechanisms.node_status import StatusWriter
from controller.mechanisms.nodeagent_records import NodeRecords, app_key
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
    def set_telemetry(
        self, target: str, collectors: Sequence[nodeconfig_pb2.Collector]
    ) -> nodeconfig_pb2.TelemetryConfig: ...


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

    def set_telemetry(
        self, target: str, collectors: Sequence[nodeconfig_pb2.Collector]
    ) -> nodeconfig_pb2.TelemetryConfig:
        """Re-time (or switch) the agent's collectors live; those not listed keep their settings."""
        return self._call(target, lambda client: client.set_telemetry_config(collectors))

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


def telemetry_by_node(plan: Plan) -> dict[str, dict[str, int]]:
    """node -> the collectors the app's placements there need (name -> interval ms, freshest)."""
    out: dict[str, dict[str, int]] = {}
    for decision in plan.decisions:
        for node in decision.hosts if decision.telemetry else ():
            out[node] = merge_telemetry([out.get(node, {}), decision.telemetry])
    return out


def merge_telemetry(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Every collector any part needs, at the shortest interval asked (the freshest need wins)."""
    merged: dict[str, int] = {}
    for part in parts:
        for name, interval in part.items():
            merged[name] = min(int(interval), merged.get(name, int(interval)))
    return dict(sorted(merged.items()))


def collectors(wanted: Mapping[str, int], applied: Mapping[str, int]) -> list[nodeconfig_pb2.Collector]:
    """SetTelemetryConfig's collectors: the wanted ones on at their interval, the ones the
    controller turned on before and nobody needs any more off; the others are left alone."""
    out = [nodeconfig_pb2.Collector(name=n, enabled=True, interval_ms=i) for n, i in sorted(wanted.items())]
    out += [nodeconfig_pb2.Collector(name=n, enabled=False) for n in sorted(set(applied) - set(wanted))]
    return out


def render_profile(app: App, node: str, target: str | None, profile: Obj,
                   telemetry: Mapping[str, int] | None = None) -> Obj:
    out: Obj = {
        "apiVersion": "nodeconfig.mlsysops.eu/v1",
        "kind": "NodeProfile",
        "metadata": {"name": node, "labels": {"app.kubernetes.io/part-of": app.name}},
        "target": target,
        "profile": profile,
    }
    if telemetry:
        out["telemetry"] = {"collectors": [{"name": n, "enabled": True, "interval_ms": i}
                                           for n, i in telemetry.items()]}
    return out


class NodeAgentMechanism:
    """Applies node settings through the node agents; `targets(node)` gives an agent's target
    (from the MLSysOpsNode `agent.target`), None when the node has no agent."""

    name = "nodeagent"

    def __init__(
        self,
        agents: AgentGateway | None = None,
        targets: Callable[[str], str | None] = lambda _node: None,
        records: NodeRecords | None = None,
    ) -> None:
        self.agents = agents
        self.targets = targets
        self.records = records  # where contributions are made durable (None: memory only)
        self._contributions: dict[str, dict[str, Obj]] = {}  # node -> "namespace/app" -> profile
        self._telemetry: dict[str, dict[str, dict[str, int]]] = {}  # node -> app -> collector -> ms
        self._applied_telemetry: dict[str, dict[str, int]] = {}  # node -> what the agent was told
        self._needs_reset: set[str] = set()  # nodes whose last profile contribution went away
        self._unsynced: set[str] = set()  # nodes whose last push failed: pushed again next time
        self._lock = threading.Lock()

    @classmethod
    def from_context(cls, context: MechanismContext) -> NodeAgentMechanism:
        api = context.api
        writer = api if isinstance(api, StatusWriter) else None
        records = NodeRecords(writer, context.namespace, context.cached_node) if writer is not None else None
        return cls(context.agents, context.agent_target, records)

    def seed(self, live_apps: Iterable[str]) -> RealizeResult:
        """At start, before any reconcile: the recorded contributions of the live apps
        ("namespace/name") become the state; every recorded node gets its union again (the
        part of an app deleted while the controller was down is dropped: reset if nothing is
        left). A node that cannot be pushed now is pushed by the next realize or remove."""
        if self.records is None:
            return RealizeResult(self.name, (), ())
        live = set(live_apps)
        with self._lock:
            for node, (parts, telemetry) in self.records.load().items():
                kept = {k: v for k, v in parts.items() if k in live}
                kept_telemetry = {k: v for k, v in telemetry.items() if k in live}
                self._contributions[node] = kept
                self._telemetry[node] = kept_telemetry
                self._applied_telemetry[node] = merge_telemetry(telemetry.values())  # to switch off
                if parts and not kept:
                    self._needs_reset.add(node)
                if kept != parts or kept_telemetry != telemetry:
                    self.records.write(node, kept, kept_telemetry)
                self._unsynced.add(node)
            return self._push([], raise_errors=False)

    def close(self) -> None:
        close = getattr(self.agents, "close", None)
        if callable(close):
            close()

    def render(self, app: App, plan: Plan) -> list[Obj]:
        """A NodeProfile per node the app puts settings or telemetry needs on."""
        settings = settings_by_node(plan)
        telemetry = telemetry_by_node(plan)
        objects = []
        for node in sorted(set(settings) | set(telemetry)):
            profile = merge_profiles(settings.get(node, []))
            to_profile(profile, f"Plan({app.name}).decisions[node={node}].node_settings")
            objects.append(render_profile(app, node, self.targets(node), profile, telemetry.get(node)))
        return objects

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        key = app_key(app.namespace, app.name)
        rendered = {o["metadata"]["name"]: o for o in self.render(app, plan)}
        with self._lock:
            mine = {n for n, c in self._contributions.items() if key in c}
            mine |= {n for n, t in self._telemetry.items() if key in t}
            touched = set(rendered) | mine
            for node in sorted(touched):
                obj = rendered.get(node)
                self._set(node, key, obj["profile"] if obj else {}, _needs_of(obj))
            return self._push(sorted(touched))

    def remove(self, app_name: str, namespace: str) -> None:
        key = app_key(namespace, app_name)
        with self._lock:
            touched = sorted({n for n, c in self._contributions.items() if key in c}
                             | {n for n, t in self._telemetry.items() if key in t})
            for node in touched:
                self._set(node, key, {}, {})
            self._push(touched)

    def _set(self, node: str, key: str, profile: Obj, telemetry: dict[str, int]) -> None:
        """One app's contribution to a node, recorded (write-ahead: durable before the agent is
        asked)."""
        parts = self._contributions.setdefault(node, {})
        had = bool(parts)
        if profile:
            parts[key] = profile
        else:
            parts.pop(key, None)
        if had and not parts:
            self._needs_reset.add(node)
        needs = self._telemetry.setdefault(node, {})
        if telemetry:
            needs[key] = telemetry
        else:
            needs.pop(key, None)
        if self.records is not None:
            self.records.write(node, parts, needs)
        self._unsynced.add(node)

    def _push(self, nodes: list[str], raise_errors: bool = True) -> RealizeResult:
        """Apply each node's union (these nodes and any whose last push failed); the first
        failure propagates (after the others were tried) unless `raise_errors` is False."""
        written: list[str] = []
        unchanged: list[str] = []
        failed: list[Exception] = []
        for node in sorted(set(nodes) | self._unsynced):
            try:
                self._push_one(node, written, unchanged)
                self._unsynced.discard(node)
            except AgentError as exc:
                self._unsynced.add(node)
                if node in nodes:
                    failed.append(exc)
        if failed and raise_errors:
            raise failed[0]
        return RealizeResult(mechanism=self.name, written=tuple(written), unchanged=tuple(unchanged))

    def _push_one(self, node: str, written: list[str], unchanged: list[str]) -> None:
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
        if parts:
            response = self.agents.apply(target, to_profile(merge_profiles(parts), f"node {node}"))
            (written if response.writes_performed else unchanged).append(f"NodeProfile/{node}")
        elif node in self._needs_reset:
            self.agents.reset(target)
            written.append(f"NodeProfile/{node} (reset)")
        self._needs_reset.discard(node)
        wanted = merge_telemetry(self._telemetry.get(node, {}).values())
        applied = self._applied_telemetry.get(node, {})
        if wanted != applied:
            self.agents.set_telemetry(target, collectors(wanted, applied))
            self._applied_telemetry[node] = wanted
            written.append(f"TelemetryConfig/{node}")


def _needs_of(obj: Obj | None) -> dict[str, int]:
    """The collectors a rendered NodeProfile asks for (name -> interval ms)."""
    if not obj or "telemetry" not in obj:
        return {}
    return {c["name"]: int(c["interval_ms"]) for c in obj["telemetry"]["collectors"]}
