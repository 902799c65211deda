"""Running several policies on one app: combine their plans, report every conflict.

Policies run in the given order (the first has priority). For each component the first policy
that places it (on a node, or on a cluster) decides. A later policy that places it differently
is a Conflict: recorded with every policy's proposal and surfaced in plan output and the app
status, never silently dropped. A policy that abstains (node and cluster None) never conflicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from controller.inventory import Inventory
from controller.model import App
from controller.policies.base import Decision, Plan, Policy, Telemetry


@dataclass(frozen=True)
class Conflict:
    component: str
    proposals: Mapping[str, str | None]  # policy → "node n1" / "cluster c1" / None (abstained)
    message: str


@dataclass(frozen=True)
class Outcome:
    plan: Plan  # the combined plan
    plans: tuple[Plan, ...]  # each policy's own plan
    conflicts: tuple[Conflict, ...]


def run_policies(
    policies: Sequence[Policy],
    app: App,
    inventory: Inventory,
    telemetry: Telemetry,
    *,
    previous: Plan | None = None,
) -> Outcome:
    if not policies:
        raise ValueError("at least one policy is needed")
    plans = tuple(p.plan(app, inventory, telemetry, previous=previous) for p in policies)
    return combine(plans)


def combine(plans: Sequence[Plan]) -> Outcome:
    first = plans[0]
    decisions: list[Decision] = []
    conflicts: list[Conflict] = []
    for name in first.order:
        own = [(p.policy, d) for p in plans if (d := p.decision(name)) is not None]
        on_node = [(pol, d) for pol, d in own if d.node is not None]
        on_cluster = [(pol, d) for pol, d in own if d.node is None and d.cluster is not None]
        if not on_node and not on_cluster:
            decisions.append(Decision(name, None, None, "; ".join(f"{pol}: {d.reason}" for pol, d in own)))
            continue
        policy, chosen = (on_node or on_cluster)[0]
        # A node choice refines a cluster choice of the same cluster; anything else disagrees.
        disagree = [(pol, d) for pol, d in on_node if d.node != chosen.node]
        disagree += [(pol, d) for pol, d in on_cluster if d.cluster != chosen.cluster]
        if disagree:
            proposals = {pol: _target(d) for pol, d in own}
            conflicts.append(
                Conflict(
                    name,
                    proposals,
                    f"{name}: {policy} chose {_target(chosen)}, "
                    + ", ".join(f"{pol} proposed {_target(d)}" for pol, d in disagree)
                    + f"; kept {policy}'s choice (the first in the chain to place it this precisely)",
                )
            )
        decisions.append(replace(chosen, reason=f"[{policy}] {chosen.reason}"))
    policy = "+".join(p.policy for p in plans) if len(plans) > 1 else first.policy
    return Outcome(
        Plan(first.app, first.namespace, policy, tuple(decisions), first.order),
        tuple(plans),
        tuple(conflicts),
    )


def _target(d: Decision) -> str | None:
    if d.node is not None:
        return f"node {d.node}"
    return f"cluster {d.cluster}" if d.cluster is not None else None
