"""Karmada member-cluster readiness: a cluster whose `Cluster` object is not Ready gets no
placements, and every decision that would have gone there says why."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from controller.inventory import Inventory, cluster_readiness
from controller.model import App
from controller.policies import Policy, Telemetry, run_policies
from controller.policies.placer import ConstraintAwarePlacer
from controller.policies.static import StaticPlacedComponents

NodeDoc = Callable[..., dict[str, Any]]
InventoryOf = Callable[..., Inventory]
AppOf = Callable[..., App]
Comp = Callable[..., dict[str, Any]]
CHAIN: list[Policy] = [StaticPlacedComponents(), ConstraintAwarePlacer()]


def karmada_cluster(name: str, ready: str | None, reason: str = "", message: str = "") -> dict[str, Any]:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready, "reason": reason,
                                            "message": message}]  # fmt: skip
    return {"apiVersion": "cluster.karmada.io/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
            "spec": {"syncMode": "Push"}, "status": {"conditions": conditions}}  # fmt: skip


def test_readiness_comes_from_the_ready_condition_of_each_karmada_cluster() -> None:
    unready = cluster_readiness([
        karmada_cluster("ok", "True", "ClusterReady", "cluster is healthy and ready to accept workloads"),
        karmada_cluster("down", "False", "ClusterNotReachable", "cluster is not reachable"),
        karmada_cluster("new", None),
        karmada_cluster("odd", "Unknown"),
    ])  # fmt: skip
    assert unready == {
        "down": "Karmada reports Ready=False (ClusterNotReachable: cluster is not reachable)",
        "new": "Karmada reports no Ready condition yet",
        "odd": "Karmada reports Ready=Unknown",
    }


@pytest.fixture
def two_clusters(node_doc: NodeDoc, inventory_of: InventoryOf) -> Inventory:
    inv = inventory_of(
        node_doc("big", cluster_id="down", cores=64),  # the best node by free capacity, in the bad cluster
        node_doc("small", cluster_id="ok", cores=4),
    )
    return dataclasses.replace(inv, unready_clusters=cluster_readiness([
        karmada_cluster("ok", "True"), karmada_cluster("down", "False", "ClusterNotReachable")]))  # fmt: skip


def test_a_not_ready_cluster_gets_no_placement_and_the_explanation_says_why(
    two_clusters: Inventory, app_of: AppOf, component: Comp
) -> None:
    plan = run_policies(CHAIN, app_of(component("web")), two_clusters, Telemetry()).plan
    (d,) = plan.decisions
    assert (d.node, d.cluster) == ("small", "ok")
    assert d.rejected_counts == {"cluster_ready": 1}
    assert any(c.node == "big" and not c.accepted and "cluster down is not Ready: Karmada reports "
               "Ready=False (ClusterNotReachable)" in c.reasons[0] for c in d.candidates)  # fmt: skip


def test_pinning_to_a_not_ready_cluster_or_its_node_leaves_the_component_unplaced_with_the_reason(
    two_clusters: Inventory, app_of: AppOf, component: Comp
) -> None:
    pinned = app_of(component("web", node_placement={"node": "big"}))
    (d,) = run_policies(CHAIN, pinned, two_clusters, Telemetry()).plan.decisions
    assert d.node is None and d.cluster is None
    assert "node_placement.node big is in cluster down, which is not Ready: Karmada reports" in d.reason
    assert d.rejected_counts == {"node_placement.node": 1, "cluster_ready": 1}
    by_cluster = app_of(component("web"), cluster_placement={"cluster_id": ["down"]})
    (d,) = run_policies(CHAIN, by_cluster, two_clusters, Telemetry()).plan.decisions
    assert d.node is None and d.cluster is None
    assert "cluster down is not Ready: Karmada reports Ready=False (ClusterNotReachable)" in d.reason
    everywhere = app_of(component("web"), cluster_placement={"cluster_id": ["down", "ok"]})
    (d,) = run_policies(CHAIN, everywhere, two_clusters, Telemetry()).plan.decisions
    assert d.cluster == "ok"  # the next listed cluster that is Ready
