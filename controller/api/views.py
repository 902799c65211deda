"""What the routes answer, computed from stored objects (pure: dicts in, dicts out).

Everything shown comes from the object the controller reconciles: the phase, conditions,
placement and explanation it wrote into the status. An app the controller has not looked at
yet is "Submitted" (no status), never "Deployed": Deployed appears only when the controller's
Ready condition says every component runs.

Per-component conditions are derived from the status: `Placed` from the placement (a node or
a cluster was chosen), `Ready` from the app's Ready condition. The one case where components
differ is a Degraded app: everything was realized but what the Ready message names (pending
or unplaced components, listed by name by the reconciler), so the others are Ready. While an
app deploys, its components are not Ready until the app is (the status does not say more).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from controller.mechanisms.kubernetes_render import deployment_name
from controller.mechanisms.local import workload_name

Obj = dict[str, Any]
SUBMITTED = "Submitted"
_SERVER_META = ("managedFields",)


def clean(obj: Mapping[str, Any]) -> Obj:
    """The object without server bookkeeping nobody reads (managedFields)."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    for key in _SERVER_META:
        meta.pop(key, None)
    out["metadata"] = meta
    return out


def phase(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    return str(status.get("phase") or SUBMITTED)


def current(obj: Mapping[str, Any]) -> bool:
    """Whether the status describes the latest spec (observedGeneration caught up)."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    return generation is None or status.get("observedGeneration") == generation


def app_summary(obj: Mapping[str, Any]) -> Obj:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "phase": phase(obj),
        "placed": status.get("placed"),
        "generation": meta.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "resourceVersion": meta.get("resourceVersion"),
    }


def _condition(conds: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conds if c.get("type") == kind), None)


def component_names(obj: Mapping[str, Any]) -> list[str]:
    """Component names in the description's order (the status may not list them yet)."""
    names = []
    for comp in obj.get("components") or []:
        name = (comp.get("metadata") or {}).get("name") if isinstance(comp, Mapping) else None
        if isinstance(name, str):
            names.append(name)
    return names


def _names(message: str, component: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(component)}(?![\w-])", message) is not None


def component_views(obj: Mapping[str, Any]) -> list[Obj]:
    status = obj.get("status") or {}
    conds = status.get("conditions") or []
    placement = {p.get("component"): p for p in status.get("placement") or []}
    ready = _condition(conds, "Ready")
    degraded = str((ready or {}).get("message") or "") if status.get("phase") == "Degraded" else None
    out = []
    for name in component_names(obj) or list(placement):
        where = placement.get(name) or {}
        placed = bool(where.get("node") or where.get("cluster"))
        explanation: Mapping[str, Any] = next(
            (e for e in status.get("explanation") or [] if e.get("component") == name), {}
        )
        comp_conds = [
            {
                "type": "Placed",
                "status": "True" if placed else ("False" if where else "Unknown"),
                "reason": "Placed" if placed else ("Unplaced" if where else "NotPlannedYet"),
                "message": str(explanation.get("reason") or ""),
            }
        ]
        if ready is None or not current(obj):
            comp_conds.append(
                {
                    "type": "Ready",
                    "status": "Unknown",
                    "reason": "NotReconciledYet",
                    "message": "the controller has not reported on this version yet",
                }
            )
        elif ready.get("status") == "True" or (
            placed and degraded is not None and not _names(degraded, name)
        ):
            comp_conds.append({"type": "Ready", "status": "True", "reason": "Running", "message": ""})
        else:
            comp_conds.append(
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": str(ready.get("reason") or ""),
                    "message": str(ready.get("message") or ""),
                }
            )
        out.append(
            {
                "name": name,
                "node": where.get("node"),
                "cluster": where.get("cluster"),
                "replicas": where.get("replicas"),
                "action": where.get("action"),
                "conditions": comp_conds,
            }
        )
    return out


def app_status(obj: Mapping[str, Any]) -> Obj:
    status = obj.get("status") or {}
    return {
        **app_summary(obj),
        "current": current(obj),
        "conditions": list(status.get("conditions") or []),
        "components": component_views(obj),
        "conflicts": list(status.get("conflicts") or []),
    }


def explanation(obj: Mapping[str, Any], components: Iterable[str] = ()) -> list[Obj]:
    rows = list((obj.get("status") or {}).get("explanation") or [])
    wanted = set(components)
    return [r for r in rows if not wanted or r.get("component") in wanted]


# ---------------------------------------------------------------------------- reference shapes


def workload_names(app: str, comp: Mapping[str, Any], local: bool, containers: int = 1) -> list[str]:
    """What the mechanism that runs the component calls its workloads: one Deployment per
    placement (kubernetes), one containerd workload per replica and container (local, the
    embedded mode: controller.mechanisms.local)."""
    if local:
        replicas = range(int(comp.get("replicas") or 1))
        if containers == 1:
            return [workload_name(app, comp["name"], r) for r in replicas]
        return [workload_name(app, comp["name"], f"{r}-{i}") for r in replicas for i in range(containers)]
    return [deployment_name(app, comp["name"], comp.get("node"), comp.get("cluster"))]


def _containers(obj: Mapping[str, Any], component: str) -> int:
    for comp in obj.get("components") or []:
        if isinstance(comp, Mapping) and (comp.get("metadata") or {}).get("name") == component:
            return max(
                1,
                sum(
                    1
                    for c in comp.get("containers") or []
                    if not (c or {}).get("platform_requirements", {}).get("mcu")
                ),
            )
    return 1


def reference_details(obj: Mapping[str, Any], local: bool = False) -> Obj:
    """`GET /apps/apps/details/{id}` as the reference CLI prints it: one row per workload, named
    as the mechanism names it, on the node the status places it."""
    name = str((obj.get("metadata") or {}).get("name"))
    components = []
    for comp in component_views(obj):
        ready = next(c for c in comp["conditions"] if c["type"] == "Ready")
        pods: Any = "No matching pods found."
        if comp["node"] or comp["cluster"]:
            pods = [
                {
                    "pod_name": workload,
                    "pod_status": "Running" if ready["status"] == "True" else "Pending",
                    "node_name": comp["node"] or "-",
                    "cluster_name": comp["cluster"] or "-",
                }
                for workload in workload_names(name, comp, local, _containers(obj, comp["name"]))
            ]
        components.append({"name": comp["name"], "details": {"pods": pods, "conditions": comp["conditions"]}})
    return {"app_id": name, "state": phase(obj), "components": components}


def reference_performance(perf: Mapping[str, Any]) -> list[list[Any]]:
    """The reference's performance shape: `[[metric_name, {"value": v} | None], ...]`."""
    rows: list[list[Any]] = []
    for metric, value in sorted((perf.get("app") or {}).items()):
        rows.append([metric, None if value is None else {"value": value}])
    for comp, metrics in sorted((perf.get("components") or {}).items()):
        for metric, value in sorted(metrics.items()):
            rows.append([f"{comp}.{metric}", None if value is None else {"value": value}])
    return rows


# ---------------------------------------------------------------------------- nodes and clusters


def node_view(obj: Mapping[str, Any]) -> Obj:
    """An MLSysOpsNode as the controller sees it: the description and what the agent reported
    (runtimes, devices), plus the settings and telemetry the controller asked of it."""
    status = obj.get("status") or {}
    settings = list(status.get("settings") or [])
    return {
        "name": (obj.get("metadata") or {}).get("name"),
        "layer": obj.get("continuum_layer"),
        "cluster": obj.get("cluster_id"),
        "agent": (obj.get("agent") or {}).get("target"),
        "runtimes": list(obj.get("runtimes") or []),
        "devices": list(obj.get("devices") or []),
        "telemetry": {str(e.get("app")): e["telemetry"] for e in settings if e.get("telemetry")},
        "settings": settings,
        "conditions": list(status.get("conditions") or []),
        "description": clean({k: v for k, v in obj.items() if k != "status"}),
    }


def cluster_view(obj: Mapping[str, Any]) -> Obj:
    return {
        "name": (obj.get("metadata") or {}).get("name"),
        "cluster_id": obj.get("cluster_id"),
        "nodes": list(obj.get("nodes") or []),
        "description": clean({k: v for k, v in obj.items() if k != "status"}),
        "status": dict(obj.get("status") or {}),
    }
