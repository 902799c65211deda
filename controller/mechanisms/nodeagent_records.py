"""Durable node settings: what each app contributes to each node, in the MLSysOpsNode's status.

A node agent's profile is declarative (what an apply does not mention goes back to its
original value), so the nodeagent mechanism applies the union of every app's contribution.
That union must survive the controller: each contribution is recorded in `status.settings` of
the node's MLSysOpsNode *before* it is applied (write-ahead, like the agent's own journal), so
a controller killed between the Apply and the app's status update, or restarted after an app
was deleted, recovers exactly the union of the live apps (NodeAgentMechanism.seed).

The status subresource is written with the resourceVersion read (a Conflict re-reads), so the
node sync's Ready condition and these records never overwrite each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from controller.kube import resources
from controller.kube.api import Obj
from controller.kube.errors import Conflict, NotFound
from controller.mechanisms.base import ObjectWriter

FIELD = "settings"
ATTEMPTS = 5

Parts = dict[str, Obj]  # "namespace/app" -> profile sections


@runtime_checkable
class StatusWriter(ObjectWriter, Protocol):
    def replace_status(self, res: resources.Resource, obj: Obj) -> Obj: ...


def app_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def entries(parts: Mapping[str, Any]) -> list[Obj]:
    return [{"app": key, "profile": parts[key]} for key in sorted(parts)]


class NodeRecords:
    """Reads and writes the `status.settings` of MLSysOpsNodes in one namespace."""

    def __init__(self, api: StatusWriter, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def load(self) -> dict[str, Parts]:
        """node -> its recorded contributions (one list of the namespace's nodes)."""
        out: dict[str, Parts] = {}
        for node in self.api.list(resources.NODE, self.namespace)[0]:
            recorded = (node.get("status") or {}).get(FIELD) or []
            if recorded:
                out[node["metadata"]["name"]] = {e["app"]: dict(e["profile"]) for e in recorded}
        return out

    def write(self, node: str, parts: Mapping[str, Any]) -> bool:
        """Record the node's contributions; False when there is no MLSysOpsNode to record them in.
        Writes only when they differ from what is recorded."""
        wanted = entries(parts)
        for _attempt in range(ATTEMPTS):
            try:
                obj = self.api.get(resources.NODE, self.namespace, node)
            except NotFound:
                return False
            status = dict(obj.get("status") or {})
            if (status.get(FIELD) or []) == wanted:
                return True
            if wanted:
                status[FIELD] = wanted
            else:
                status.pop(FIELD, None)
            obj["status"] = status
            try:
                self.api.replace_status(resources.NODE, obj)
                return True
            except Conflict:
                continue
        raise Conflict(f"MLSysOpsNode {node}: the settings record kept conflicting")
