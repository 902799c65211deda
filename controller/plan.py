"""Plan mode: descriptions and inventory from files (and live node agents), decisions,
explanations and the exact objects every mechanism would write, without an API server.

It is the embedded default of the controller (`mlsysops apps plan`, the demo) and the dry run
of a deployment. The same functions shape what the reconcile loop writes into an app's
status (`status_for`), so `mlsysops apps explain` shows the same explanation from a cluster
as from files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.inventory import Inventory, from_agents
from controller.mechanisms import Mechanism, MechanismRegistry, Unavailable
from controller.model import (
    App,
    Description,
    DescriptionError,
    NodeDesc,
    load_documents,
    load_each,
    unknown_fields,
)
from controller.policies import (
    DEFAULT_CHAIN,
    Decision,
    Outcome,
    Plan,
    PolicyRegistry,
    Telemetry,
    run_policies,
)


@dataclass(frozen=True)
class AppResult:
    app: App
    outcome: Outcome
    objects: Mapping[str, Sequence[Mapping[str, object]]]  # mechanism name → the objects it would write
    unavailable: tuple[Unavailable, ...] = ()  # mechanisms that could not render, and why
    warnings: tuple[str, ...] = ()  # e.g. unknown fields (pruned by the API server)


@dataclass(frozen=True)
class PlanReport:
    results: tuple[AppResult, ...]
    inventory: Inventory
    policies: tuple[str, ...] = DEFAULT_CHAIN
    notes: tuple[str, ...] = field(default=())

    def result(self, app: str) -> AppResult:
        for r in self.results:
            if r.app.name == app:
                return r
        known = ", ".join(r.app.name for r in self.results) or "none"
        raise KeyError(f"no app {app!r} in the given descriptions (apps: {known})")


def plan_apps(
    apps: Sequence[App],
    inventory: Inventory,
    registry: PolicyRegistry,
    policy_names: Sequence[str] = DEFAULT_CHAIN,
    telemetry: Telemetry | None = None,
    mechanisms: tuple[Sequence[Mechanism], Sequence[Unavailable]] | None = None,
    warnings: Mapping[str, Sequence[str]] | None = None,
) -> list[AppResult]:
    """Plan each app and render it with every mechanism (`mechanisms`: those built, and those
    that could not be, as MechanismRegistry.renderers returns them; default: the entry points')."""
    telemetry = telemetry or Telemetry()
    policies = registry.chain(policy_names)
    if mechanisms is None:
        mechanisms = MechanismRegistry.from_entry_points().renderers()
    renderers, missing = mechanisms
    results = []
    for app in apps:
        outcome = run_policies(policies, app, inventory, telemetry)
        objects: dict[str, Sequence[Mapping[str, object]]] = {}
        failed = list(missing)
        for mech in renderers:
            try:
                objects[mech.name] = mech.render(app, outcome.plan)
            except Exception as exc:  # one broken renderer must not hide the others' output
                failed.append(Unavailable(mech.name, f"render failed: {type(exc).__name__}: {exc}"))
        results.append(
            AppResult(app, outcome, objects, tuple(failed), tuple((warnings or {}).get(app.name, ())))
        )
    return results


def plan_files(
    app_files: Sequence[str | Path],
    inventory_dir: str | Path | None,
    agents: Sequence[str] = (),
    registry: PolicyRegistry | None = None,
    policy_names: Sequence[str] = DEFAULT_CHAIN,
    namespace: str = "default",
    agent_layer: str = "edge",
    agent_cluster: str | None = None,
    mechanisms: MechanismRegistry | None = None,
) -> PlanReport:
    """Read the files (apps; any node/cluster documents among them join the inventory), build
    the inventory (directory, then live agents), run the policy chain, render every mechanism
    of `mechanisms` (default: the entry points'), the registry the daemon realizes with."""
    described = [(str(f), d) for f in app_files for d in load_documents(Path(f), namespace)]
    descriptions = [d for _, d in described]
    inv_docs, skipped = load_each(Path(inventory_dir), namespace) if inventory_dir is not None else ([], [])
    check_unique_nodes([*inv_docs, *described])
    inventory = Inventory.from_descriptions([*(d for _, d in inv_docs), *descriptions])
    if agents:
        inventory = from_agents(
            agents, inventory, continuum_layer=agent_layer, namespace=namespace, cluster_id=agent_cluster
        )
    apps = [d for d in descriptions if isinstance(d, App)]
    warnings = {
        a.name: tuple(f"{p}: unknown field (the API server drops it)" for p in unknown_fields(a.raw))
        for a in apps
    }
    registry = registry or PolicyRegistry.from_entry_points()
    mechanisms = mechanisms if mechanisms is not None else MechanismRegistry.from_entry_points()
    results = plan_apps(apps, inventory, registry, policy_names, mechanisms=mechanisms.renderers(),
                        warnings=warnings)
    notes = [f"skipped inventory file: {exc}" for exc in skipped]
    notes += [] if apps else ["no MLSysOpsApp in the given files"]
    return PlanReport(tuple(results), inventory, tuple(policy_names), tuple(notes))


def check_unique_nodes(described: Sequence[tuple[str | None, Description]]) -> None:
    """A node described twice is an error naming both files (which one is right is not ours to guess)."""
    where: dict[str, str] = {}
    for source, d in described:
        if not isinstance(d, NodeDesc):
            continue
        here = source or "<input>"
        if d.name in where:
            raise DescriptionError.single(
                "MLSysOpsNode.metadata.name",
                f"a node name unique in the inventory ({d.name!r} is described in {where[d.name]} "
                f"and in {here})",
                repr(d.name),
            )
        where[d.name] = here


# ---------------------------------------------------------------------------- shapes for output and status


def explanation(plan: Plan) -> list[dict[str, Any]]:
    """Per component: candidates (accepted with score, rejected with reasons), counts, choice."""
    return [
        {
            "component": d.component,
            "chosen": d.node if d.node is not None else (f"cluster/{d.cluster}" if d.cluster else None),
            "reason": d.reason,
            "candidates": [
                {"node": c.node, "accepted": c.accepted, "score": c.score, "reasons": list(c.reasons)}
                for c in d.candidates
            ],
            "rejectedCounts": dict(d.rejected_counts),
            **({"telemetry": dict(d.telemetry)} if d.telemetry else {}),
            # a learning policy's model explanation, or {"fallback": why} (controller.policies.learned)
            **({"model": dict(d.model)} if d.model else {}),
        }
        for d in plan.decisions
    ]


def placement(d: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {
        "component": d.component,
        "node": d.node,
        "cluster": d.cluster,
        "replicas": len(d.hosts) or 1,
        "action": d.action,
    }
    if d.previous_node:
        out["previousNode"] = d.previous_node
    return out


def status_for(outcome: Outcome, phase: str | None = None) -> dict[str, Any]:
    """The MLSysOpsApp status body (see deploy/crds/mlsysopsapps.yaml) for a planning outcome.

    The reconcile loop adds conditions and moves the phase on as mechanisms realise the plan."""
    plan = outcome.plan
    placed = sum(1 for d in plan.decisions if d.node is not None or d.cluster is not None)
    return {
        "phase": phase or ("Planned" if plan.complete else "Pending"),
        "policy": plan.policy,
        "placed": f"{placed}/{len(plan.decisions)}",
        "placement": [placement(d) for d in plan.decisions],
        "order": list(plan.order),
        "explanation": explanation(plan),
        "conflicts": [
            {"component": c.component, "message": c.message, "proposals": dict(c.proposals)}
            for c in outcome.conflicts
        ],
    }


def result_dict(result: AppResult) -> dict[str, Any]:
    """Everything plan mode knows about one app, JSON-able (`-o json|yaml`)."""
    plan = result.outcome.plan
    return {
        "app": plan.app,
        "namespace": plan.namespace,
        "policy": plan.policy,
        "order": list(plan.order),
        "decisions": [
            {**placement(d), "reason": d.reason, "nodeSettings": dict(d.node_settings)}
            for d in plan.decisions
        ],
        "explanation": explanation(plan),
        "conflicts": [
            {"component": c.component, "message": c.message, "proposals": dict(c.proposals)}
            for c in result.outcome.conflicts
        ],
        "objects": {"mlsysops": [{**result.app.raw, "status": status_for(result.outcome)}], **result.objects},
        "unavailableMechanisms": {u.name: u.reason for u in result.unavailable},
        "warnings": list(result.warnings),
    }
