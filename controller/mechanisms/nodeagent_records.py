"""Durable node settings: what each app contributes to each node, in the MLSysOpsNode's status.

A node agent's profile is declarative (what an apply does not mention goes back to its
original value), so the nodeagent mechanism applies the union of every app's contribution.
That union must survive the controller: each contribution is recorded in `status.settings` of
the node's MLSysOpsNode *before* it is applied (write-ahead, like the agent's own journal), so
a controller killed between the Apply and the app's status update, or restarted after an app
was deleted, recovers exactly the union of the live apps (NodeAgentMechanism.seed).

The status subresource is written as controller/mechanisms/node_status.py says (the
resourceVersion read, Conflicts re-read), so the node sync's Ready condition and these records
never overwrite each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controller.kube import resources
from controller.kube.api import Obj
from controller.mechanisms.node_status import StatusWriter, write_node_status

FIELD = "settings"

Parts = dict[str, Obj]  # "namespace/app" -> profile sections


def app_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


Telemetry = dict[str, dict[str, int]]  # "namespace/app" -> collector -> interval ms


def entries(parts: Mapping[str, Any], telemetry: Mapping[str, Mapping[str, int]]) -> list[Obj]:
    out = []
    for key in sorted(set(parts) | set(telemetry)):
        entry: Obj = {"app": key, "profile": parts.get(key, {})}
        if telemetry.get(key):
            entry["telemetry"] = dict(telemetry[key])
        out.append(entry)
    return out


class NodeRecords:
    """Reads and writes the `status.settings` of MLSysOpsNodes in one namespace."""

    def __init__(self, api: StatusWriter, namespace: str,
                 cached: Callable[[str], Obj | None] | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.cached = cached

    def load(self) -> dict[str, tuple[Parts, Telemetry]]:
        """node -> its recorded profile contributions and telemetry needs, per app (one list of
        the namespace's nodes)."""
        out: dict[str, tuple[Parts, Telemetry]] = {}
        for node in self.api.list(resources.NODE, self.namespace)[0]:
            recorded = (node.get("status") or {}).get(FIELD) or []
            if recorded:
                parts = {e["app"]: dict(e["profile"]) for e in recorded if e.get("profile")}
                needs = {e["app"]: {k: int(v) for k, v in e["telemetry"].items()}
                         for e in recorded if e.get("telemetry")}
                out[node["metadata"]["name"]] = (parts, needs)
        return out

    def write(self, node: str, parts: Mapping[str, Any], telemetry: Mapping[str, Mapping[str, int]]) -> bool:
        """Record the node's contributions; False when there is no MLSysOpsNode to record them in.
        Writes only when they differ from what is recorded."""
        wanted = entries(parts, telemetry)
        return write_node_status(self.api, self.namespace, node, FIELD, wanted, self.cached)
