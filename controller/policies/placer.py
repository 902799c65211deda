"""`constraintAwarePlacer`: the resource- and constraint-aware placement policy.

Per component, in depends_on order:
1. hard constraints → a candidate pool (see pools.py): node_placement.node, cluster_placement.
   cluster_id, continuum_layer ("*" = anywhere), labels (all required), cpu architecture,
   runtime_class_name (only nodes whose agent reports that handler available; "default" needs
   nothing), GPU count/model, mobile, sensors;
2. capacity: cpu, memory and GPU requests (times replicas) against free capacity minus what this
   plan (or a shared Ledger) already reserved;
3. score: the fraction of the node left free, so load spreads (like kube-scheduler's
   LeastAllocated); ties go to the earlier node in the inventory, so plans are deterministic.

`single_node` groups are placed as one unit (summed requests, all constraints). With a previous
plan, components stay where they are unless their node vanished (always moved) or a QoS target
is violated and the app permits `component_relocation`.

Explanations stay bounded at any scale: the top candidates with scores, the examined nodes that
lacked capacity, a few named samples per filter and a count per rejection reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from controller.inventory import Inventory
from controller.model import App, Component, Resources, SingleNodeGroup, depends_on_order
from controller.policies.base import (
    KEEP,
    NO_FIT_CAPACITY,
    NO_FIT_CONSTRAINTS,
    PLACE,
    RELOCATE,
    CandidateVerdict,
    Decision,
    Plan,
    Telemetry,
)
from controller.policies.clusters import NONE_QUALIFIES, eligible_clusters
from controller.policies.pools import Constraints, Ledger, Pool, Search, pool_for, unmet
from controller.policies.settings import node_settings, telemetry_needs

TOP_K = 5


@dataclass(frozen=True)
class _Unit:
    """What gets placed together: one component, or a single_node group."""

    members: tuple[Component, ...]
    constraints: Constraints
    need: Resources  # per replica
    replicas: int
    avoid: frozenset[int] = frozenset()  # node positions: unavailable, or being moved away from


class ConstraintAwarePlacer:
    name = "constraintAwarePlacer"

    def __init__(self, top_k: int = TOP_K) -> None:
        self.top_k = top_k

    def plan(
        self,
        app: App,
        inventory: Inventory,
        telemetry: Telemetry,
        *,
        previous: Plan | None = None,
        ledger: Ledger | None = None,
    ) -> Plan:
        ledger = ledger if ledger is not None else Ledger(inventory)
        order = depends_on_order(app)
        allowed = eligible_clusters(app, inventory, ready_only=False)  # cluster_ready explains
        clusters = frozenset() if allowed is None else frozenset(allowed or (NONE_QUALIFIES,))
        decided: dict[str, Decision] = {}
        # Kept components first: their capacity is taken before anything new is placed.
        to_place = []
        for members, group in _units(app, order):
            unit = self._unit(members, group, clusters)
            moving = self._moving(
                app, inventory, telemetry, previous, members, unit.constraints, decided, ledger
            )
            if moving is not None:
                to_place.append((unit, moving))
        position = inventory.index.position
        for unit, (excluded, why) in to_place:
            avoid = frozenset(position[n] for n in excluded | telemetry.unavailable_nodes if n in position)
            if avoid:
                unit = replace(unit, avoid=avoid)
            for d in self._place(app, inventory, ledger, unit, previous, why):
                decided[d.component] = d
        return Plan(app.name, app.namespace, self.name, tuple(decided[n] for n in order), order)

    # ------------------------------------------------------------------ relocation

    def _moving(
        self,
        app: App,
        inventory: Inventory,
        telemetry: Telemetry,
        previous: Plan | None,
        members: tuple[Component, ...],
        wanted: Constraints,
        decided: dict[str, Decision],
        ledger: Ledger,
    ) -> tuple[frozenset[str], str] | None:
        """None when the unit keeps its previous node (decisions recorded), else (nodes to avoid, why).

        A unit moves when its node vanished, when its node no longer satisfies its constraints
        (the description changed: re-placed make-before-break, like a relocation), or on a QoS
        violation the app permits relocating for."""
        prev = [previous.decision(m.name) for m in members] if previous else []
        if not prev or any(p is None or p.node is None for p in prev):
            return frozenset(), ""
        old = {h for p in prev if p is not None for h in p.hosts}
        gone = sorted(n for n in old if inventory.node(n) is None or n in telemetry.unavailable_nodes)
        if gone:
            return frozenset(old), f"node {', '.join(gone)} vanished"
        changed = self._unmet(inventory, wanted, old)
        if changed:
            return frozenset(old), f"constraints changed: {changed}"
        violation = next((v for m in members if (v := telemetry.violated(m.name))), None)
        if violation is not None and app.permits("component_relocation"):
            return frozenset(old), (f"QoS target {violation.metric} violated on {', '.join(sorted(old))}")
        note = (
            f"; QoS target {violation.metric} violated but the app does not permit component_relocation"
            if violation is not None
            else ""
        )
        for member, p in zip(members, prev, strict=True):
            assert p is not None and p.node is not None
            node = inventory.node(p.node)
            assert node is not None
            for host in p.hosts:  # what stays keeps its capacity: nothing else may take it
                ledger.reserve_node(host, member.resources)
            # the settings come from the description and the node, never from the previous plan
            # (a plan read back from a status has none: keeping those would reset the node)
            settings, _notes = node_settings(app, member, node)
            needs = telemetry_needs(member, node, settings)
            decided[p.component] = Decision(
                p.component,
                p.node,
                node.cluster,
                f"kept on {p.node} (previous plan){note}",
                (CandidateVerdict(p.node, True, None, ("current node",)),),
                settings,
                nodes=p.nodes,
                clusters=tuple(_cluster(inventory, h) for h in p.nodes),
                action=KEEP,
                telemetry=needs,
            )
        return None

    @staticmethod
    def _unmet(inventory: Inventory, wanted: Constraints, hosts: set[str]) -> str:
        """What the current hosts no longer satisfy ("" when they all still do)."""
        pool = pool_for(inventory, wanted)
        index = inventory.index
        out = []
        for host in sorted(hosts):
            i = index.position[host]
            if not pool.has(index, i):
                out.append(f"{host} fails {'; '.join(unmet(index, wanted, i))}")
        return ", ".join(out)

    # ------------------------------------------------------------------ constraints

    def _unit(
        self,
        members: tuple[Component, ...],
        group: SingleNodeGroup | None,
        clusters: frozenset[str],
    ) -> _Unit:
        need = Resources()
        for m in members:
            need = need + m.resources
        placement = group.placement if group else members[0].placement
        runtimes = frozenset(
            m.runtime_class_name for m in members if m.runtime_class_name not in (None, "default")
        )
        pinned = placement.node
        return _Unit(
            members,
            Constraints(
                nodes=frozenset({pinned}) if pinned else None,
                # a pinned node is more precise than the app's cluster_placement (as for the static policy)
                clusters=frozenset() if pinned else clusters,
                layers=placement.continuum_layers,
                archs=need.architectures,
                labels=placement.labels,
                runtimes=runtimes,
                gpu_model=need.gpu_model,
                needs_gpu=need.gpus > 0,
                mobile=bool(placement.mobile),
                sensors=frozenset(s for m in members for s in m.sensors),
                containers=not any(m.far_edge for m in members),
            ),
            need,
            max((m.replicas for m in members), default=1),
        )

    # ------------------------------------------------------------------ placement

    def _place(
        self, app: App, inventory: Inventory, ledger: Ledger, unit: _Unit, previous: Plan | None, why: str
    ) -> list[Decision]:
        pool = pool_for(inventory, unit.constraints)
        first = ledger.best(unit.constraints, pool, unit.need, self.top_k, unit.avoid)
        counts = {r.reason: r.count for r in pool.rejections}
        for _, lacking in first.misfits:
            for reason, _detail in lacking:
                counts[reason] = counts.get(reason, 0) + 1
        candidates = _verdicts(inventory, pool, first, self.top_k)
        names = [m.name for m in unit.members]
        if not first.fits:
            no_fit = NO_FIT_CONSTRAINTS if pool.size == 0 else NO_FIT_CAPACITY
            return _unplaced(unit, candidates, counts, len(inventory.nodes), why, no_fit)
        chosen, score = first.fits[0]
        hosts = _reserve_replicas(inventory, ledger, unit, pool, chosen)
        node = inventory.node(hosts[0])
        assert node is not None
        together = f"single_node group {', '.join(names)}; " if len(names) > 1 else ""
        replicas = (
            f"; {len(hosts)}/{unit.replicas} replicas on {', '.join(hosts)}" if unit.replicas > 1 else ""
        )
        base = (
            f"{together}placed on {node.name}: best of {pool.size} candidate(s) by free capacity "
            f"(score {score:.2f}; {_scored(first, pool.size, self.top_k)}){replicas}; "
            f"{_rejected_summary(counts, len(inventory.nodes))}"
        )
        out = []
        for m in unit.members:
            prev = previous.decision(m.name) if previous else None
            settings, notes = node_settings(app, m, node)
            reason = f"relocated ({why}); {base}" if why else base
            out.append(
                Decision(
                    m.name,
                    node.name,
                    node.cluster,
                    "; ".join([reason, *notes]),
                    candidates,
                    settings,
                    rejected_counts=counts,
                    nodes=tuple(hosts) if unit.replicas > 1 else (),
                    clusters=tuple(_cluster(inventory, h) for h in hosts) if unit.replicas > 1 else (),
                    action=RELOCATE if why else PLACE,
                    previous_node=prev.node if (why and prev is not None) else None,
                    telemetry=telemetry_needs(m, node, settings),
                )
            )
        return out


def _unplaced(
    unit: _Unit,
    candidates: tuple[CandidateVerdict, ...],
    counts: dict[str, int],
    total: int,
    why: str,
    no_fit: str,
) -> list[Decision]:
    summary = _rejected_summary(counts, total)
    reason = f"not placed: no node satisfies the constraints and has capacity ({summary})"
    reason = f"could not relocate ({why}); {reason}" if why else reason
    return [
        Decision(m.name, None, None, reason, candidates, rejected_counts=counts, no_fit=no_fit)
        for m in unit.members
    ]


def _cluster(inventory: Inventory, node: str) -> str | None:
    info = inventory.node(node)
    return info.cluster if info is not None else None


def _reserve_replicas(inventory: Inventory, ledger: Ledger, unit: _Unit, pool: Pool, first: int) -> list[str]:
    """Reserve the unit's replicas, the first on `first`, each next one on the best node left
    (replicas spread by the same score); fewer when the pool runs out of room."""
    hosts = []
    chosen = first
    for r in range(unit.replicas):
        if r:
            more = ledger.best(unit.constraints, pool, unit.need, 1, unit.avoid)
            if not more.fits:
                break
            chosen, _ = more.fits[0]
        ledger.reserve(chosen, unit.need)
        hosts.append(inventory.index.nodes[chosen].name)
    return hosts


def _units(app: App, order: tuple[str, ...]) -> list[tuple[tuple[Component, ...], SingleNodeGroup | None]]:
    """What gets placed together, in depends_on order: single components and single_node groups
    (a group comes where its first member does)."""
    groups = {m: g for g in app.single_node for m in g.components}
    seen: set[str] = set()
    units = []
    for name in order:
        if name in seen:
            continue
        group = groups.get(name)
        names = group.components if group else (name,)
        seen.update(names)
        units.append((tuple(app.component(m) for m in names), group))
    return units


def _verdicts(inventory: Inventory, pool: Pool, search: Search, top_k: int) -> tuple[CandidateVerdict, ...]:
    nodes = inventory.index.nodes
    out = [
        CandidateVerdict(nodes[i].name, True, round(s, 4), (f"free capacity score {s:.2f}",))
        for i, s in search.fits
    ]
    out += [
        CandidateVerdict(nodes[i].name, False, None, tuple(d for _, d in lacking))
        for i, lacking in search.misfits[:top_k]  # the rest are counted in rejected_counts
    ]
    out += [
        CandidateVerdict(name, False, None, (f"{r.reason}: {why}",))
        for r in pool.rejections
        for name, why in r.samples
    ]
    return tuple(out)


def _scored(search: Search, candidates: int, top_k: int) -> str:
    """How many nodes were scored. Like kube-scheduler's percentageOfNodesToScore, scoring
    stops early, here after `top_k` fitting nodes; candidates are examined best-first by free
    capacity, so the best of them is exact, not a sample."""
    if search.scored >= candidates:
        return f"scored all {candidates}"
    return f"scored {search.scored} of {candidates}, best-first, stopping at {top_k} that fit"


def _rejected_summary(counts: dict[str, int], total: int) -> str:
    if not counts:
        return f"no node of {total} rejected"
    parts = ", ".join(f"{reason} {n}" for reason, n in counts.items())
    return f"rejected: {parts} (of {total} nodes)"
