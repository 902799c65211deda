"""staticPlacedComponents, policy chains with conflict reporting, and the policy registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controller.inventory import Inventory
from controller.model import App
from controller.policies import (
    DEFAULT_CHAIN,
    Decision,
    Plan,
    Policy,
    PolicyRegistry,
    Telemetry,
    UnknownPolicy,
    combine,
    run_policies,
)
from controller.policies.placer import ConstraintAwarePlacer
from controller.policies.static import StaticPlacedComponents

NodeDoc = Callable[..., dict[str, Any]]
InventoryOf = Callable[..., Inventory]
AppOf = Callable[..., App]
Comp = Callable[..., dict[str, Any]]


@pytest.fixture
def inv(node_doc: NodeDoc, inventory_of: InventoryOf) -> Inventory:
    return inventory_of(node_doc("n1", cluster_id="c1", cores=1), node_doc("n2", cluster_id="c2", cores=16))


def test_static_policy_honours_node_placement_like_the_reference(
    inv: Inventory, app_of: AppOf, component: Comp
) -> None:
    heavy = {"image": "x", "platform_requirements": {"cpu": {"requests": "2"}}}
    app = app_of(
        component("pinned", node_placement={"node": "n1"}, containers=[heavy]),
        component("missing", node_placement={"node": "n9"}),
        component("free"),
    )
    plan = StaticPlacedComponents().plan(app, inv, Telemetry())
    pinned, missing, free = plan.decisions
    assert (pinned.node, pinned.cluster) == ("n1", "c1")
    assert pinned.reason == (
        "node_placement.node pins it to n1 (static placement); warning: needs 2 cpu, 1 free"
    )
    assert (missing.node, missing.reason) == (
        None,
        "not placed: node_placement.node n9 is not in the inventory",
    )
    assert (free.node, free.cluster) == (None, None) and free.reason.startswith("abstained")
    gone = StaticPlacedComponents().plan(app, inv, Telemetry(unavailable_nodes=frozenset({"n1"})))
    assert gone.decisions[0].node is None and gone.decisions[0].reason.endswith("is unavailable")


def test_static_policy_uses_cluster_placement_for_unpinned_components(
    inv: Inventory, app_of: AppOf, component: Comp
) -> None:
    app = app_of(component("free"), cluster_placement={"cluster_id": ["c9", "c2"]})
    (d,) = StaticPlacedComponents().plan(app, inv, Telemetry()).decisions
    assert (d.node, d.cluster) == (None, "c2") and d.placed
    lost = app_of(component("free"), cluster_placement={"cluster_id": ["c9"]})
    (d,) = StaticPlacedComponents().plan(lost, inv, Telemetry()).decisions
    assert d.cluster is None and "none of cluster_placement.cluster_id (c9)" in d.reason


def test_single_node_group_node_pins_every_member(inv: Inventory, app_of: AppOf, component: Comp) -> None:
    app = app_of(component("a"), component("b"), single_node=[{"components": ["a", "b"], "node": "n2"}])
    plan = StaticPlacedComponents().plan(app, inv, Telemetry())
    assert [(d.node, d.reason.split(" pins")[0]) for d in plan.decisions] == [("n2", "single_node.node")] * 2


def test_the_default_chain_refines_cluster_choices_without_conflict(
    inv: Inventory, app_of: AppOf, component: Comp
) -> None:
    app = app_of(
        component("pinned", node_placement={"node": "n1"}),
        component("free"),
        cluster_placement={"cluster_id": ["c2"]},
    )
    outcome = run_policies([StaticPlacedComponents(), ConstraintAwarePlacer()], app, inv, Telemetry())
    assert outcome.conflicts == ()
    assert outcome.plan.policy == "staticPlacedComponents+constraintAwarePlacer"
    pinned, free = outcome.plan.decisions
    assert pinned.node == "n1" and pinned.reason.startswith("[staticPlacedComponents]")
    assert (free.node, free.cluster) == ("n2", "c2") and free.reason.startswith("[constraintAwarePlacer]")
    assert [p.policy for p in outcome.plans] == ["staticPlacedComponents", "constraintAwarePlacer"]


class Stubborn:
    """A policy that puts every component on one node."""

    def __init__(self, node: str | None, cluster: str | None = None, name: str = "stubborn") -> None:
        self.node, self.cluster, self.name = node, cluster, name

    def plan(
        self, app: App, inventory: Inventory, telemetry: Telemetry, *, previous: Plan | None = None
    ) -> Plan:
        names = tuple(c.name for c in app.components)
        return Plan(
            app.name,
            app.namespace,
            self.name,
            tuple(Decision(n, self.node, self.cluster, "because") for n in names),
            names,
        )


def test_conflicting_plans_are_reported_and_the_first_policy_wins(
    inv: Inventory, app_of: AppOf, component: Comp
) -> None:
    app = app_of(component("x"))
    outcome = run_policies(
        [Stubborn("n1", name="first"), Stubborn("n2", name="second"), Stubborn(None, name="quiet")],
        app,
        inv,
        Telemetry(),
    )
    (conflict,) = outcome.conflicts
    assert conflict.component == "x"
    assert conflict.proposals == {"first": "node n1", "second": "node n2", "quiet": None}
    assert conflict.message == (
        "x: first chose node n1, second proposed node n2; kept first's choice "
        "(the first in the chain to place it this precisely)"
    )
    assert outcome.plan.decisions[0].node == "n1"


def test_a_node_outside_the_chosen_cluster_is_a_conflict(
    inv: Inventory, app_of: AppOf, component: Comp
) -> None:
    app = app_of(component("x"))
    outcome = run_policies(
        [Stubborn(None, "c1", name="clusters"), Stubborn("n2", "c2", name="nodes")], app, inv, Telemetry()
    )
    # a later policy may refine an earlier choice, never widen it: the cluster choice stays
    assert (outcome.plan.decisions[0].node, outcome.plan.decisions[0].cluster) == (None, "c1")
    assert [c.proposals for c in outcome.conflicts] == [{"clusters": "cluster c1", "nodes": "node n2"}]


def test_a_policy_finding_no_node_vetoes_a_cluster_choice_and_keeps_its_counts(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    inv = inventory_of(
        node_doc("n1", cluster_id="c1", arch="amd64"), node_doc("n2", cluster_id="c1", arch="amd64")
    )
    arm = {"image": "x", "platform_requirements": {"cpu": {"architecture": ["arm64"]}}}
    app = app_of(component("x", containers=[arm]), cluster_placement={"cluster_id": ["c1"]})
    outcome = run_policies([StaticPlacedComponents(), ConstraintAwarePlacer()], app, inv, Telemetry())
    (d,) = outcome.plan.decisions
    assert (d.node, d.cluster, d.no_fit) == (None, None, "constraints") and not outcome.plan.complete
    assert d.rejected_counts == {"architecture": 2}
    assert "constraintAwarePlacer: not placed" in d.reason
    (conflict,) = outcome.conflicts
    assert conflict.proposals == {"staticPlacedComponents": "cluster c1", "constraintAwarePlacer": None}
    assert "found no node that satisfies its constraints; not placed" in conflict.message


def test_a_pinned_node_without_room_stands_with_a_warning_but_not_a_wrong_architecture(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    inv = inventory_of(node_doc("n1", cluster_id="c1", cores=1, arch="amd64"))
    heavy = {"image": "x", "platform_requirements": {"cpu": {"requests": "2"}}}
    arm = {"image": "x", "platform_requirements": {"cpu": {"architecture": ["arm64"]}}}
    app = app_of(
        component("big", node_placement={"node": "n1"}, containers=[heavy]),
        component("arm", node_placement={"node": "n1"}, containers=[arm]),
    )
    outcome = run_policies([StaticPlacedComponents(), ConstraintAwarePlacer()], app, inv, Telemetry())
    big, arm_d = outcome.plan.decisions
    assert big.node == "n1" and "warning: needs 2 cpu" in big.reason
    assert arm_d.node is None and arm_d.no_fit == "constraints"
    assert [c.component for c in outcome.conflicts] == ["arm"]


def test_when_nobody_places_a_component_every_reason_is_kept(
    inv: Inventory, app_of: AppOf, component: Comp
) -> None:
    outcome = combine(
        [
            Stubborn(None, name="a").plan(app_of(component("x")), inv, Telemetry()),
            Stubborn(None, name="b").plan(app_of(component("x")), inv, Telemetry()),
        ]
    )
    (d,) = outcome.plan.decisions
    assert (d.node, d.reason) == (None, "a: because; b: because") and not outcome.plan.complete


def test_registry_from_entry_points_ships_both_policies() -> None:
    registry = PolicyRegistry.from_entry_points()
    assert set(DEFAULT_CHAIN) <= set(registry.names())
    policies = registry.chain()
    assert [p.name for p in policies] == list(DEFAULT_CHAIN)
    assert all(isinstance(p, Policy) for p in policies)


def test_registries_are_independent_instances_with_clear_errors() -> None:
    mine = PolicyRegistry({"stubborn": lambda: Stubborn("n1")})
    other = PolicyRegistry()
    assert mine.names() == ("stubborn",) and other.names() == ()
    with pytest.raises(ValueError, match="already registered"):
        mine.register("stubborn", lambda: Stubborn("n2"))
    with pytest.raises(UnknownPolicy) as info:
        mine.create("greedy")
    assert str(info.value) == "unknown policy 'greedy': expected one of stubborn"
    with pytest.raises(ValueError, match="at least one policy"):
        run_policies([], None, None, Telemetry())  # type: ignore[arg-type]


def test_conflicts_are_written_into_a_status_the_crd_accepts(
    inv: Inventory, app_of: AppOf, component: Comp
) -> None:
    from controller.model import default_schemas
    from controller.plan import status_for

    app = app_of(component("x"))
    outcome = run_policies(
        [Stubborn("n1", name="first"), Stubborn("n2", name="second")], app, inv, Telemetry()
    )
    status = status_for(outcome)
    assert status["conflicts"][0]["proposals"] == {"first": "node n1", "second": "node n2"}
    assert default_schemas().problems("MLSysOpsApp", {**app.raw, "status": status}) == []
