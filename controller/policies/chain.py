"""Running several policies on one app: combine their plans, report every conflict.

Policies run in the given order (the first has priority). Per component, the chain's semantics:

- **decide**: the first policy that places it (on a node, or on a cluster) decides;
- **refine**: a later policy's node inside the cluster an earlier one chose replaces that
  cluster-level choice (the cluster's scheduler would have picked a node; now it is chosen);
- **veto**: a policy that examined the component's constraints and found no node
  (`Decision.no_fit`) makes it unplaced, whoever placed it: "no node satisfies the
  constraints" vetoes any choice, "no room" vetoes a cluster-level one (a node that was
  chosen stands, its shortfall is a warning in its reason). The unplaced decision carries the
  vetoing policy's candidates and per-filter counts, so the status says why;
- **never widen**: a later policy cannot move the component anywhere an earlier choice
  excludes (another node, a node or cluster outside the chosen cluster): that is a Conflict,
  recorded with every policy's proposal, and the earlier choice stays.

A policy that abstains (node and cluster None, no `no_fit`) never conflicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from controller.inventory import Inventory
from controller.model import App
from controller.policies.base import NO_FIT_CAPACITY, NO_FIT_CONSTRAINTS, Decision, Plan, Policy, Telemetry


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
        decision, conflict = _combine_one(name, own)
        decisions.append(decision)
        if conflict is not None:
            conflicts.append(conflict)
    policy = "+".join(p.policy for p in plans) if len(plans) > 1 else first.policy
    return Outcome(
        Plan(first.app, first.namespace, policy, tuple(decisions), first.order),
        tuple(plans),
        tuple(conflicts),
    )


def _combine_one(name: str, own: Sequence[tuple[str, Decision]]) -> tuple[Decision, Conflict | None]:
    """One component's decision from every policy's (in chain order), and the conflict if any."""
    chosen: tuple[str, Decision] | None = None
    disagree: list[tuple[str, Decision]] = []
    for pol, d in own:
        if not d.placed:
            continue
        if chosen is None or _refines(chosen[1], d):
            chosen = (pol, d)
        elif not _agrees(chosen[1], d):
            disagree.append((pol, d))
    veto = next(
        ((pol, d) for pol, d in own if d.no_fit is not None and (chosen is None or _vetoes(d, chosen[1]))),
        None,
    )
    proposals = {pol: _target(d) for pol, d in own}
    if veto is not None:
        pol, d = veto
        reason = "; ".join(f"{p}: {x.reason}" for p, x in own)
        conflict = None
        if chosen is not None:
            conflict = Conflict(
                name,
                proposals,
                f"{name}: {chosen[0]} chose {_target(chosen[1])}, but {pol} found no node that "
                f"satisfies its constraints{'' if d.no_fit == NO_FIT_CONSTRAINTS else ' and has room'}; "
                "not placed (a later policy may refine or veto a choice, never widen it)",
            )
        unplaced = Decision(
            name, None, None, reason, d.candidates, rejected_counts=d.rejected_counts, no_fit=d.no_fit
        )
        return unplaced, conflict
    if chosen is None:
        return Decision(name, None, None, "; ".join(f"{pol}: {d.reason}" for pol, d in own)), None
    policy, decision = chosen
    conflict = None
    if disagree:
        conflict = Conflict(
            name,
            proposals,
            f"{name}: {policy} chose {_target(decision)}, "
            + ", ".join(f"{pol} proposed {_target(d)}" for pol, d in disagree)
            + f"; kept {policy}'s choice (the first in the chain to place it this precisely)",
        )
    return replace(decision, reason=f"[{policy}] {decision.reason}"), conflict


def _refines(chosen: Decision, later: Decision) -> bool:
    """A node inside the cluster of a cluster-level choice."""
    return chosen.node is None and later.node is not None and later.cluster == chosen.cluster


def _agrees(chosen: Decision, other: Decision) -> bool:
    if other.node is not None:
        return other.node == chosen.node
    return other.cluster == chosen.cluster


def _vetoes(no_fit: Decision, chosen: Decision) -> bool:
    return no_fit.no_fit == NO_FIT_CONSTRAINTS or (no_fit.no_fit == NO_FIT_CAPACITY and chosen.node is None)


def _target(d: Decision) -> str | None:
    if d.node is not None:
        return f"node {d.node}"
    return f"cluster {d.cluster}" if d.cluster is not None else None
