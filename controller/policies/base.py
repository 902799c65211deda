"""The policy plugin interface: app + inventory + telemetry → Plan.

A policy is pure: it reads frozen values and returns a Plan; it never writes anything, so
plan mode, the reconcile loop and the benchmark run exactly the same code. Plugins are
classes registered in the entry-point group `mlsysops.controller.policies`, constructed
with no arguments, and looked up in an explicit PolicyRegistry instance.

Contract notes for the mechanisms (ctl-kube):
- `Decision.node` is None when the policy did not place the component (it abstains, or
  nothing fits: `reason` says which). `Decision.hosts` lists one node per replica.
- `Decision.node_settings` holds node-agent Profile sections in their proto-JSON form
  (`{"cpufreq": {"settings": [...]}, "cgroups": {"groups": [...]}}`) for `Decision.node`.
- `Decision.action` is "place", "keep" or "relocate"; on "relocate", `previous_node` is where
  the component ran: bring the new instance up before removing the old one.
- `Plan.order` lists components in depends_on order (dependencies first).
- `Decision.no_fit` is set when a policy examined the component's constraints and found no
  node: NO_FIT_CONSTRAINTS (no node satisfies the hard constraints) or NO_FIT_CAPACITY (some
  do, none has room). It is a result, not an abstention: in a chain it vetoes the other
  policies' choices (see chain.py), and `rejected_counts` says how many nodes each filter took.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from controller.inventory import Inventory
from controller.model import App

PLACE, KEEP, RELOCATE = "place", "keep", "relocate"
NO_FIT_CONSTRAINTS, NO_FIT_CAPACITY = "constraints", "capacity"


@dataclass(frozen=True)
class CandidateVerdict:
    """One node considered for a component: rejected with reasons, or accepted with a score."""

    node: str
    accepted: bool
    score: float | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    component: str
    node: str | None
    cluster: str | None
    reason: str
    candidates: tuple[CandidateVerdict, ...] = ()
    node_settings: Mapping[str, Any] = field(default_factory=dict)
    # Bounded explanation at scale: how many nodes each filter rejected (name samples are in
    # `candidates`), e.g. {"continuum_layer": 9120, "insufficient memory": 3}.
    rejected_counts: Mapping[str, int] = field(default_factory=dict)
    nodes: tuple[str, ...] = ()  # one per replica when the component has several; () means (node,)
    clusters: tuple[str | None, ...] = ()  # the cluster of each of `nodes` (replicas may span clusters)
    action: str = PLACE
    previous_node: str | None = None
    no_fit: str | None = None  # NO_FIT_CONSTRAINTS / NO_FIT_CAPACITY: examined, nothing fits
    # node agent collectors the placement needs on `node`, name -> interval ms (freshness)
    telemetry: Mapping[str, int] = field(default_factory=dict)
    # a model-driven decision's explanation (mlconnector.contracts.Explanation.to_json() plus the
    # target, margin and alternatives), or {"fallback": "<why>"} when a learning policy let the
    # heuristic decide; {} for a policy that uses no model (controller.policies.learned)
    model: Mapping[str, Any] = field(default_factory=dict)

    @property
    def hosts(self) -> tuple[str, ...]:
        if self.nodes:
            return self.nodes
        return (self.node,) if self.node is not None else ()

    def cluster_of(self, node: str | None) -> str | None:
        """The cluster running the replicas on `node` (`cluster` when not spread)."""
        if node is not None and node in self.nodes and len(self.clusters) == len(self.nodes):
            return self.clusters[self.nodes.index(node)]
        return self.cluster

    @property
    def placed(self) -> bool:
        """On a node, or at least on a cluster (whose scheduler then picks the node)."""
        return self.node is not None or self.cluster is not None


@dataclass(frozen=True)
class Plan:
    app: str
    namespace: str
    policy: str
    decisions: tuple[Decision, ...]
    order: tuple[str, ...]  # components in depends_on order

    def decision(self, component: str) -> Decision | None:
        return self._by_component.get(component)

    @functools.cached_property
    def _by_component(self) -> Mapping[str, Decision]:
        return {d.component: d for d in self.decisions}

    @property
    def clusters(self) -> tuple[str, ...]:
        """Clusters the app spans (what a multi-cluster mechanism propagates to)."""
        return tuple(sorted({d.cluster for d in self.decisions if d.cluster}))

    @property
    def complete(self) -> bool:
        return all(d.placed for d in self.decisions)


@dataclass(frozen=True)
class QosViolation:
    component: str
    metric: str
    observed: float | None = None
    target: float | None = None
    node: str | None = None  # where monitoring observed it (the loop ignores it once moved away)


@dataclass(frozen=True)
class Telemetry:
    """What the policies learn from monitoring. Empty in plan mode from files."""

    qos_violations: tuple[QosViolation, ...] = ()
    unavailable_nodes: frozenset[str] = frozenset()  # nodes that stopped reporting
    # component -> the request rate offered to it (req/s), as monitoring measured it; a learning
    # policy sizes the component's CPU for it (controller.policies.learned)
    offered_rps: Mapping[str, float] = field(default_factory=dict)

    def violated(self, component: str) -> QosViolation | None:
        return next((v for v in self.qos_violations if v.component == component), None)


@runtime_checkable
class Policy(Protocol):
    """A placement policy. `previous` is the app's last plan when there is one: a policy keeps
    components where they are unless their node vanished or a QoS target is violated (and the
    app permits component_relocation), so replanning does not churn running workloads."""

    name: str

    def plan(
        self, app: App, inventory: Inventory, telemetry: Telemetry, *, previous: Plan | None = None
    ) -> Plan: ...
