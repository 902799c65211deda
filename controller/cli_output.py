"""How `mlsysops apps|nodes|clusters` show things: rows for `-o json|yaml`, tables and text.

Pure functions of plan-mode results and API objects (no I/O), so the commands in cli.py only
choose a source and hand its data here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml

from controller.inventory import Inventory, NodeInfo
from controller.kube.resources import resource_for
from controller.model.quantity import format_cpu, format_memory
from controller.plan import PlanReport
from mlsysops.output import table


def apps_table(rows: list[dict[str, Any]]) -> str:
    return table(
        [(r["name"], r["namespace"], r["components"], r["phase"], r["placed"], r["policy"]) for r in rows],
        ["name", "namespace", "components", "phase", "placed", "policy"],
    )


def nodes_table(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            (r["name"], r["cluster"], r["layer"], r["arch"], r["cpu"], r["memory"], r["gpus"],
             ",".join(r["runtimes"]), r["agent"])
            for r in rows
        ],
        ["name", "cluster", "layer", "arch", "cpu free", "memory free", "gpus", "runtimes", "agent"],
    )


def cluster_rows(inventory: Inventory) -> list[dict[str, Any]]:
    """Clusters with their nodes (as described, and as found in node descriptions)."""
    described = {c.cluster_id: c for c in inventory.clusters}
    rows = []
    for cid in sorted(set(described) | {n.cluster for n in inventory.nodes if n.cluster}):
        listed = set(described[cid].nodes) if cid in described else set()
        members = sorted({n.name for n in inventory.nodes if n.cluster == cid} | listed)
        rows.append(
            {
                "cluster_id": cid,
                "described": cid in described,
                "nodes": members,
                "datacenter": described[cid].datacenter_id if cid in described else None,
            }
        )
    return rows


def clusters_table(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            (r["cluster_id"], len(r["nodes"]), ",".join(r["nodes"]), r["datacenter"],
             "yes" if r["described"] else "no (from nodes)")
            for r in rows
        ],
        ["cluster id", "nodes", "members", "datacenter", "described"],
    )


def app_row(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status", {})
    return {
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"].get("namespace"),
        "components": len(obj.get("components", ())),
        "phase": status.get("phase", "Pending"),
        "placed": status.get("placed", ""),
        "policy": status.get("policy", ""),
    }


def node_row(n: NodeInfo) -> dict[str, Any]:
    return {
        "name": n.name,
        "cluster": n.cluster,
        "layer": n.continuum_layer,
        "arch": n.arch,
        "cpu": f"{format_cpu(n.cpu_millis_free)}/{format_cpu(n.cpu_millis_capacity)}",
        "memory": f"{format_memory(n.memory_bytes_free)}/{format_memory(n.memory_bytes_capacity)}",
        "gpus": n.gpus,
        "runtimes": sorted(n.runtimes),
        "labels": sorted(n.labels),
        "agent": n.agent_target,
    }


def render_plans(data: list[dict[str, Any]], report: PlanReport) -> str:
    blocks = [*report.notes]
    for d in data:
        blocks.append(f"app {d['app']} (namespace {d['namespace']}, policies {d['policy']})")
        blocks.append(
            table(
                [
                    (x["component"], x["node"] or "-", x["cluster"] or "-", x["action"], x["reason"])
                    for x in d["decisions"]
                ],
                ["component", "node", "cluster", "action", "reason"],
            )
        )
        settings = [
            (x["component"], x["node"], ", ".join(sorted(x["nodeSettings"])))
            for x in d["decisions"]
            if x["nodeSettings"]
        ]
        if settings:
            blocks.append(
                "node settings (through the node agent):\n"
                + table(settings, ["component", "node", "sections"])
            )
        blocks.append(
            "conflicts: "
            + ("none" if not d["conflicts"] else "\n  " + "\n  ".join(c["message"] for c in d["conflicts"]))
        )
        notes = [f"warning: {w}" for w in d["warnings"]]
        notes += [f"mechanism {name} unavailable: {why}" for name, why in d["unavailableMechanisms"].items()]
        if notes:
            blocks.append("\n".join(notes))
        blocks.append(render_explanation(d["explanation"]))
        if "objects" in d:
            docs = [o for objs in d["objects"].values() for o in objs]
            blocks.append(
                f"objects it would write ({object_counts(d['objects'])}):\n"
                + yaml.safe_dump_all(docs, sort_keys=False).rstrip()
            )
    return "\n\n".join(blocks)


def object_counts(objects: dict[str, list[dict[str, Any]]]) -> str:
    """`5 Kubernetes objects; nodeagent: 1 NodeProfile (not a Kubernetes object)`: what goes
    to the API server counted apart from what other mechanisms hand to agents or bridges."""
    kube = sum(1 for objs in objects.values() for o in objs if is_kubernetes_object(o))
    parts = [f"{kube} Kubernetes object(s)"]
    for name, objs in objects.items():
        kinds = Counter(o.get("kind", "?") for o in objs if not is_kubernetes_object(o))
        parts += [f"{name}: {n} {kind} (not a Kubernetes object)" for kind, n in sorted(kinds.items())]
    return "; ".join(parts)


def is_kubernetes_object(obj: dict[str, Any]) -> bool:
    """A kind an API server serves (core, apps, batch, node.k8s.io, Karmada, our CRDs)."""
    try:
        resource_for(obj)
    except ValueError:
        return False
    return True


def render_explanation(rows: list[dict[str, Any]]) -> str:
    blocks = []
    for r in rows:
        head = f"{r['component']} -> {r.get('chosen') or 'not placed'}\n  {r['reason']}"
        cands = [
            (
                c["node"],
                "accepted" if c["accepted"] else "rejected",
                "" if c.get("score") is None else f"{c['score']:.2f}",
                "; ".join(c["reasons"]),
            )
            for c in r.get("candidates", ())
        ]
        body = "\n".join(
            "  " + line for line in table(cands, ["node", "verdict", "score", "why"]).splitlines()
        )
        counts = r.get("rejectedCounts") or {}
        tail = ("\n  rejected: " + ", ".join(f"{k} {v}" for k, v in counts.items())) if counts else ""
        needs = r.get("telemetry") or {}
        if needs:
            tail += "\n  telemetry: " + ", ".join(f"{k} every {v / 1000:g}s" for k, v in needs.items())
        model = r.get("model") or {}
        if model:
            tail += "\n" + "\n".join("  " + line for line in render_model(model).splitlines())
        blocks.append(head + ("\n" + body if cands else "") + tail)
    return "\n".join(blocks) if blocks else "no explanation"


def render_model(model: dict[str, Any]) -> str:
    """A model-driven decision's explanation: the model ref, prediction = base value + the feature
    attributions (largest magnitude first, with each input), or why the heuristic decided."""
    if "fallback" in model:
        return f"model: none used, the heuristic decided: {model['fallback']}"
    target = ""
    if model.get("target") is not None:
        relation = model.get("relation")
        target = f" (target {relation + ' ' if relation else ''}{model['target']:g}"
        target += f", margin {model['margin']:.3g})" if model.get("margin") is not None else ")"
    lines = [
        f"model {model.get('model', '?')} ({model.get('method', '?')}): predicted "
        f"{_num(model.get('prediction'))}{target} = base {_num(model.get('base_value'))} + attributions"
    ]
    inputs = model.get("inputs") or {}
    attributions = sorted((model.get("attributions") or {}).items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    rows = [(name, f"{value:+.4g}", _num(inputs.get(name))) for name, value in attributions]
    lines += ["  " + line for line in table(rows, ["feature", "attribution", "input"]).splitlines()]
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, int | float) else str(value)


def render_status(app: str, status: dict[str, Any]) -> str:
    lines = [
        f"app {app}: phase {status.get('phase', 'Pending')}, placed {status.get('placed', '-')}, "
        f"policy {status.get('policy', '-')}"
    ]
    placement = status.get("placement", [])
    if placement:
        lines.append(
            table(
                [
                    (p["component"], p.get("node") or "-", p.get("cluster") or "-", p.get("action", ""))
                    for p in placement
                ],
                ["component", "node", "cluster", "action"],
            )
        )
    for c in status.get("conditions", []):
        lines.append(
            f"condition {c['type']}={c['status']}: {c.get('reason', '')} {c.get('message', '')}".rstrip()
        )
    for c in status.get("conflicts", []):
        lines.append(f"conflict: {c['message']}")
    return "\n".join(lines)
