"""Node agents' reported capabilities become MLSysOpsNode objects.

Each configured agent is asked GetInventory; its report becomes the node document
(controller.inventory.node_document_from_agent), server-side applied under a field manager of
its own (`mlsysops-nodesync`), so it owns exactly the fields it sends. It sends the reported
fields always, and every other field of the document (layer, environment, ...) unless another
manager (a user, a file) owns it: a described node keeps its layer, cluster and labels, and an
agent-only node keeps the required fields it was created with on every re-sync (applying fewer
fields under the same manager would remove them, and the API server would refuse the node).
One failing agent or node write is reported in its SyncResult; the others are still synced.
The `Ready` condition in the node's status says whether its agent answered; the reconcile loop
treats nodes that are not Ready as unavailable, which is what makes a policy relocate their
components. Every far-edge device an agent reports (the far-edge bridge reports them to the
agent of its host) becomes an MLSysOpsNode of its own, layer far_edge, Ready while reported
online: the node a far-edge component is placed on, and the device the faredge mechanism
hands its code to.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

from controller.inventory import device_node_document, node_document_from_agent
from controller.kube import resources
from controller.kube.errors import Conflict, KubeError, NotFound
from controller.kube.objectapi import Obj, ObjectApi
from controller.mechanisms.nodeagent import AgentError, AgentGateway
from controller.reconcile.status import Condition, conditions, now

log = logging.getLogger(__name__)

#: What an agent knows better than a description (applied even when the node is described;
#: within `hardware` only the facts it reports: cpu cores/architecture/frequencies, memory).
REPORTED_FIELDS = ("agent", "capacity", "runtimes", "cgroup", "cpufreq", "devices", "hardware")
FIELD_MANAGER = "mlsysops-nodesync"


@dataclass(frozen=True)
class AgentTarget:
    target: str  # gRPC target of the node agent: unix:/path or host:port
    continuum_layer: str = "edge"  # agents do not know their layer; the description wins


@dataclass(frozen=True)
class SyncResult:
    node: str | None  # None when the agent never answered (name unknown)
    target: str
    ready: bool
    message: str = ""


class NodeSync:
    def __init__(self, api: ObjectApi, agents: AgentGateway, targets: list[AgentTarget],
                 namespace: str) -> None:
        self.api = api
        self.agents = agents
        self.targets = targets
        self.namespace = namespace
        self._names: dict[str, str] = {}  # target -> node name, learned from GetInventory
        self._devices: dict[str, set[str]] = {}  # target -> the device nodes it ever reported

    def sync_all(self) -> list[SyncResult]:
        """Every agent, each on its own: one that fails does not stop the sync of the next."""
        results = []
        for target in self.targets:
            try:
                results.append(self.sync(target))
            except KubeError as exc:
                results.append(SyncResult(self._names.get(target.target), target.target, False, str(exc)))
        return results

    def sync(self, agent: AgentTarget) -> SyncResult:
        try:
            inventory = self.agents.inventory(agent.target)
        except AgentError as exc:
            name = self._names.get(agent.target)
            if name is not None:
                self._set_ready(name, False, "AgentUnreachable", str(exc))
            for device in sorted(self._devices.get(agent.target, ())):
                self._set_ready(device, False, "AgentUnreachable", f"its host's agent: {exc}")
            return SyncResult(name, agent.target, False, str(exc))
        doc = node_document_from_agent(inventory, agent.target, agent.continuum_layer, self.namespace)
        name = doc["metadata"]["name"]
        self._names[agent.target] = name
        cluster = self._apply(doc, REPORTED_FIELDS)
        self._set_ready(name, True, "AgentReporting", f"node agent at {agent.target} answered GetInventory")
        self._sync_devices(agent.target, name, doc["devices"], cluster)
        return SyncResult(name, agent.target, True)

    def _apply(self, doc: Obj, reported: tuple[str, ...]) -> str | None:
        """Apply the node document, leaving out what another manager owns, except the
        `reported` fields; the node's cluster_id as it is now."""
        name = doc["metadata"]["name"]
        try:
            current = self.api.get(resources.NODE, self.namespace, name)
        except NotFound:
            current = {"metadata": {}}
        others = owned_by_others(current)
        keep = {"apiVersion", "kind", "metadata", *reported}
        applied = {k: v for k, v in doc.items() if k in keep or k not in others}
        self.api.apply(applied, field_manager=FIELD_MANAGER)
        cluster = current.get("cluster_id") if "cluster_id" in others else doc.get("cluster_id")
        return str(cluster) if cluster else None

    def _sync_devices(self, target: str, host: str, devices: list[Obj], cluster: str | None) -> None:
        """Each far-edge device the agent reports is an MLSysOpsNode of its own (layer far_edge,
        in the host's cluster), Ready while the agent reports it online; one the agent stopped
        reporting is not Ready. One failing write is logged; the other devices still sync."""
        seen: set[str] = set()
        for device in devices:
            doc = device_node_document(device, host, self.namespace, cluster)
            name = doc["metadata"]["name"]
            seen.add(name)
            try:
                self._apply(doc, ("device",))
            except KubeError as exc:
                log.warning("far-edge device %s of %s: cannot publish its node: %s", device["id"], host, exc)
                continue
            online = bool(device.get("online", True))
            self._set_ready(name, online, "DeviceOnline" if online else "DeviceOffline",
                            f"reported {'online' if online else 'offline'} by the node agent of {host}")
        for gone in sorted(self._devices.get(target, set()) - seen):
            self._set_ready(gone, False, "DeviceGone", f"no longer reported by the node agent of {host}")
        self._devices[target] = self._devices.get(target, set()) | seen

    def _set_ready(self, name: str, ready: bool, reason: str, message: str) -> None:
        """Write the Ready condition when it changes (not on every poll: that would wake every
        watcher of MLSysOpsNodes for nothing)."""
        for _attempt in range(3):
            try:
                obj = self.api.get(resources.NODE, self.namespace, name)
            except NotFound:
                return
            status = copy.deepcopy(obj.get("status") or {})
            previous = status.get("conditions") or []
            generation = obj["metadata"].get("generation", 0)
            new = conditions([Condition("Ready", ready, reason, message)], previous, generation, now())
            old_ready = next((c for c in previous if c.get("type") == "Ready"), None)
            if old_ready and (old_ready.get("status"), old_ready.get("reason")) == (new[0]["status"], reason):
                return
            status["conditions"] = [c for c in previous if c.get("type") != "Ready"] + new
            status["lastInventory"] = now()
            obj["status"] = status
            try:
                self.api.replace_status(resources.NODE, obj)
                return
            except Conflict:
                continue
            except KubeError as exc:
                log.warning("node %s: cannot write status: %s", name, exc)
                return




def owned_by_others(obj: Obj) -> set[str]:
    """Top-level fields of the object another field manager applied or updated (not the status)."""
    owned: set[str] = set()
    for entry in obj["metadata"].get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER or entry.get("subresource"):
            continue
        owned |= {k[2:] for k in (entry.get("fieldsV1") or {}) if k.startswith("f:") and k != "f:metadata"}
    return owned
