"""constraintAwarePlacer: constraints, capacity, spreading, groups, explanations, relocation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controller.inventory import Inventory, NodeInfo
from controller.model import App
from controller.policies import KEEP, PLACE, RELOCATE, Plan, QosViolation, Telemetry
from controller.policies.placer import ConstraintAwarePlacer
from controller.policies.pools import Ledger
from controller.policies.static import StaticPlacedComponents

NodeDoc = Callable[..., dict[str, Any]]
InventoryOf = Callable[..., Inventory]
AppOf = Callable[..., App]
Comp = Callable[..., dict[str, Any]]


def place(app: App, inventory: Inventory, **kwargs: Any) -> Plan:
    return ConstraintAwarePlacer().plan(app, inventory, kwargs.pop("telemetry", Telemetry()), **kwargs)


def without(inventory: Inventory, *names: str) -> Inventory:
    """The inventory after these nodes vanished."""
    return Inventory(tuple(n for n in inventory.nodes if n.name not in names), inventory.clusters,
                     {k: v for k, v in inventory.documents.items() if k not in names})


def nodes_of(plan: Plan) -> dict[str, str | None]:
    return {d.component: d.node for d in plan.decisions}


def test_continuum_layer_labels_and_architecture_filter_candidates(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    inv = inventory_of(
        node_doc("cloud", layer="cloud", cores=64, labels=["camera"]),
        node_doc("edge-amd", labels=["camera"]),
        node_doc("edge-arm", arch="arm64", labels=["camera"]),
        node_doc("edge-nolabel", arch="arm64"),
    )
    app = app_of(
        component(
            "reader",
            node_placement={"continuum_layer": ["edge"], "labels": ["camera"]},
            containers=[
                {"image": "r", "platform_requirements": {"cpu": {"requests": "1", "architecture": ["arm64"]}}}
            ],
        )
    )
    (d,) = place(app, inv).decisions
    assert d.node == "edge-arm" and d.cluster is None and d.action == PLACE
    assert d.rejected_counts == {"continuum_layer": 1, "architecture": 1, "labels": 1}
    verdicts = {c.node: c for c in d.candidates}
    assert verdicts["edge-arm"].accepted and verdicts["edge-arm"].score == 1.0
    assert verdicts["cloud"].reasons == ("continuum_layer: layer cloud, needs edge",)
    assert verdicts["edge-amd"].reasons == ("architecture: architecture amd64, needs arm64",)
    assert verdicts["edge-nolabel"].reasons == ("labels: lacks label(s) camera",)
    assert "placed on edge-arm" in d.reason and "continuum_layer 1" in d.reason


def test_runtime_class_only_where_the_agent_reports_the_handler_available(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    inv = inventory_of(
        node_doc("big", cores=64, runtimes=[{"handler": "kata-fc", "available": False}]),
        node_doc("small", cores=2, runtimes=[{"handler": "kata-fc", "available": True}]),
    )
    (d,) = place(app_of(component("vm", runtime_class_name="kata-fc")), inv).decisions
    assert d.node == "small"
    (rejected,) = [c for c in d.candidates if not c.accepted]
    assert rejected.node == "big" and "runtime handler kata-fc not reported available" in rejected.reasons[0]
    (anywhere,) = place(app_of(component("plain", runtime_class_name="default")), inv).decisions
    assert anywhere.node == "big"  # "default" needs no particular handler


def test_gpu_requests_need_a_node_with_free_gpus_of_the_model(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    inv = inventory_of(
        node_doc("cpu-only", cores=64),
        node_doc("k40", hardware={"cpu": {"cores": 8}, "memory": 32, "gpu": {"model": "k40"}}),
        node_doc(
            "k80", hardware={"cpu": {"cores": 8}, "memory": 32, "gpu": {"model": "k80", "instances": 1}}
        ),
    )
    gpu = {"image": "t", "platform_requirements": {"gpu": {"requests": 1, "model": "k80"}}}
    app = app_of(component("t1", containers=[gpu]), component("t2", containers=[gpu]))
    plan = place(app, inv)
    assert nodes_of(plan) == {"t1": "k80", "t2": None}
    t2 = plan.decision("t2")
    assert t2 is not None and t2.rejected_counts == {"gpu": 2, "insufficient gpus": 1}
    assert t2.reason.startswith("not placed: no node satisfies the constraints and has capacity")


def test_capacity_is_checked_and_load_is_spread(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    inv = inventory_of(
        node_doc("a", cores=4, memory_gb=8),
        node_doc("b", cores=4, memory_gb=8),
        node_doc("tiny", cores=1, memory_gb=1),
    )
    big = {"image": "x", "platform_requirements": {"cpu": {"requests": "2"}, "memory": {"requests": "2Gi"}}}
    app = app_of(*(component(f"c{i}", containers=[big]) for i in range(5)))
    plan = place(app, inv)
    assert nodes_of(plan) == {"c0": "a", "c1": "b", "c2": "a", "c3": "b", "c4": None}
    c4 = plan.decision("c4")
    assert c4 is not None and c4.rejected_counts == {"insufficient cpu": 3, "insufficient memory": 1}
    reasons = {c.node: c.reasons for c in c4.candidates}
    assert reasons["tiny"] == ("needs 2 cpu, 1 free", "needs 2Gi memory, 1Gi free")


def test_allocated_capacity_counts_and_a_shared_ledger_plans_apps_against_each_other(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    inv = inventory_of(node_doc("busy", cores=4, allocated={"cpu": "3500m"}), node_doc("idle", cores=2))
    one = {"image": "x", "platform_requirements": {"cpu": {"requests": "1"}}}
    ledger = Ledger(inv)
    first = place(app_of(component("c", containers=[one]), name="first"), inv, ledger=ledger)
    second = place(app_of(component("c", containers=[one]), name="second"), inv, ledger=ledger)
    third = place(app_of(component("c", containers=[one]), name="third"), inv, ledger=ledger)
    assert [nodes_of(p)["c"] for p in (first, second, third)] == ["idle", "idle", None]
    alone = place(app_of(component("c", containers=[one]), name="third"), inv)
    assert nodes_of(alone)["c"] == "idle"  # without the shared ledger each app is planned alone


def test_static_node_cluster_mobile_and_sensor_constraints(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    inv = inventory_of(
        node_doc("n1", cluster_id="c1", cores=32),
        node_doc("n2", cluster_id="c2", mobile=True, sensors=[{"camera": {"model": "d455"}}]),
        node_doc("n3", cluster_id="c2"),
    )
    app = app_of(
        component("pinned", node_placement={"node": "n3"}),
        component("drone", node_placement={"mobile": True}),
        component("cam", sensors=[{"camera": {"model": "d455"}, "protocol": "RTSP"}]),
        component("ghost", node_placement={"node": "nowhere"}),
        cluster_placement={"cluster_id": ["c2"]},
    )
    plan = place(app, inv)
    assert nodes_of(plan) == {"pinned": "n3", "drone": "n2", "cam": "n2", "ghost": None}
    ghost = plan.decision("ghost")
    assert ghost is not None and ghost.rejected_counts == {"node_placement.node": 3}
    assert all(d.cluster == "c2" for d in plan.decisions if d.node)


def test_single_node_groups_share_one_node_with_summed_requests(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    inv = inventory_of(node_doc("roomy", cores=8), node_doc("snug", cores=3), node_doc("edge", layer="edge"))
    two = {"image": "x", "platform_requirements": {"cpu": {"requests": "2"}}}
    app = app_of(
        component("a", containers=[two]),
        component("b", containers=[two]),
        component("c"),
        single_node=[{"components": ["a", "b"], "continuum_layer": ["edge"]}],
    )
    plan = place(app, inv)
    assert plan.decision("a").node == plan.decision("b").node == "roomy"  # type: ignore[union-attr]
    assert plan.decision("a").reason.startswith("single_node group a, b; placed on roomy")  # type: ignore[union-attr]


def test_replicas_spread_over_nodes_and_plan_order_follows_depends_on(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    inv = inventory_of(node_doc("a"), node_doc("b"), node_doc("c"))
    app = app_of(
        component(
            "web", depends_on=["api"], node_placement={"scaling": {"scaling_mode": "manual", "instances": 3}}
        ),
        component("api"),
    )
    plan = place(app, inv)
    assert plan.order == ("api", "web")
    web = plan.decision("web")
    assert web is not None and sorted(web.hosts) == ["a", "b", "c"] and web.node == web.hosts[0]


def test_node_settings_follow_qos_hints_permissions_and_limits(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    agent = {"target": "10.0.0.1:7000"}
    inv = inventory_of(
        node_doc("tunable", agent=agent, permitted_actions=["cpu_frequency"], cpufreq={"available": True}),
        node_doc("locked", agent=agent, cpufreq={"available": True}, labels=["locked"]),
        node_doc("no-agent", labels=["plain"], permitted_actions=["*"]),
    )
    hinted = {
        "qos_metrics": [{"application_metric_id": "fps", "system_metrics_hints": ["cpu_frequency"]}],
        "containers": [
            {
                "image": "x",
                "platform_requirements": {
                    "cpu": {"requests": "250m", "limits": "500m"},
                    "memory": {"limits": "256Mi"},
                },
            }
        ],
    }
    app = app_of(
        component("fast", node_placement={"node": "tunable"}, **hinted),
        component("slow", node_placement={"labels": ["locked"]}, **hinted),
        component("bare", node_placement={"labels": ["plain"]}, **hinted),
        name="shop",
    )
    plan = place(app, inv)
    fast, slow, bare = (plan.decision(n) for n in ("fast", "slow", "bare"))
    cgroup = {
        "groups": [
            {
                "path": "default/shop/fast",
                "cpu_quota_us": 50_000,
                "cpu_period_us": 100_000,
                "memory_max_bytes": 256 * 2**20,
            }
        ]
    }
    assert fast is not None and fast.node_settings == {
        "cpufreq": {"settings": [{"cpus": "", "governor": "performance"}]},
        "cgroups": cgroup,
    }
    assert slow is not None and set(slow.node_settings) == {"cgroups"}
    assert "node locked does not permit cpu_frequency" in slow.reason
    assert bare is not None and bare.node_settings == {}
    assert "cpu_frequency hint not applied: node no-agent has no node agent" in bare.reason


def test_explanations_stay_bounded_at_scale() -> None:
    nodes = tuple(
        NodeInfo(
            f"n{i}",
            f"c{i % 7}",
            ("edge", "cloud")[i % 2],
            arch=("amd64", "arm64")[i % 3 == 0],
            cpu_millis_free=4000,
            memory_bytes_free=2**33,
            cpu_millis_capacity=4000,
            memory_bytes_capacity=2**33,
        )
        for i in range(3000)
    )
    inv = Inventory(nodes)
    from controller.model import parse_document

    app = parse_document(
        {
            "MLSysOpsApp": {
                "name": "a",
                "components": [
                    {
                        "metadata": {"name": "c"},
                        "node_placement": {"continuum_layer": ["edge"]},
                        "containers": [
                            {
                                "image": "x",
                                "platform_requirements": {
                                    "cpu": {"requests": "1", "architecture": ["arm64"]}
                                },
                            }
                        ],
                    }
                ],
            }
        }
    )
    assert isinstance(app, App)
    (d,) = place(app, inv).decisions
    assert d.node is not None and len(d.candidates) <= 5 + 5 + 2 * 3
    assert d.rejected_counts["continuum_layer"] == 1500
    assert sum(d.rejected_counts.values()) + 500 == 3000  # 500 even, arm64 (i % 3 == 0) nodes remain


# ---------------------------------------------------------------------------- relocation


@pytest.fixture
def three_nodes(node_doc: NodeDoc, inventory_of: InventoryOf) -> Inventory:
    return inventory_of(node_doc("a", cores=8), node_doc("b", cores=4), node_doc("c", cores=2))


def test_replanning_keeps_components_where_they_are(
    three_nodes: Inventory, app_of: AppOf, component: Comp
) -> None:
    app = app_of(component("x"), component("y"))
    first = place(app, three_nodes)
    again = place(app, three_nodes, previous=first)
    assert nodes_of(again) == nodes_of(first)
    assert all(d.action == KEEP and d.reason.startswith("kept on") for d in again.decisions)


def test_a_vanished_node_moves_its_component_even_without_permission(
    three_nodes: Inventory, app_of: AppOf, component: Comp
) -> None:
    app = app_of(component("x"))
    first = place(app, three_nodes)
    assert nodes_of(first) == {"x": "a"}
    for inv, tel in (
        (without(three_nodes, "a"), Telemetry()),
        (three_nodes, Telemetry(unavailable_nodes=frozenset({"a"}))),
    ):
        moved = place(app, inv, previous=first, telemetry=tel)
        (d,) = moved.decisions
        assert (d.node, d.action, d.previous_node) == ("b", RELOCATE, "a")
        assert d.reason.startswith("relocated (node a vanished); placed on b")


def test_a_qos_violation_moves_the_component_only_when_relocation_is_permitted(
    three_nodes: Inventory, app_of: AppOf, component: Comp
) -> None:
    violation = Telemetry(qos_violations=(QosViolation("x", "latency_ms", 80.0, 40.0),))
    allowed = app_of(component("x"), permitted_actions=["component_relocation"])
    first = place(allowed, three_nodes)
    (d,) = place(allowed, three_nodes, previous=first, telemetry=violation).decisions
    assert (d.node, d.action, d.previous_node) == ("b", RELOCATE, "a")
    assert "QoS target latency_ms violated on a" in d.reason
    forbidden = app_of(component("x"))
    (kept,) = place(
        forbidden, three_nodes, previous=place(forbidden, three_nodes), telemetry=violation
    ).decisions
    assert (kept.node, kept.action) == ("a", KEEP)
    assert "does not permit component_relocation" in kept.reason


def test_components_that_stay_keep_their_capacity(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    inv = inventory_of(node_doc("a", cores=2), node_doc("b", cores=2))
    heavy = {"image": "x", "platform_requirements": {"cpu": {"requests": "1500m"}}}
    app = app_of(component("y", containers=[heavy]), component("x", depends_on=["y"], containers=[heavy]))
    first = place(app, inv)
    assert nodes_of(first) == {"y": "a", "x": "b"}
    replanned = place(app, without(inv, "a"), previous=first)
    y, x = replanned.decisions
    assert (x.node, x.action) == ("b", KEEP)
    assert y.node is None and y.rejected_counts == {"insufficient cpu": 1}  # b's capacity is x's
    assert y.reason.startswith("could not relocate (node a vanished); not placed: no node satisfies")


def test_every_filter_names_real_constraint_and_index_fields(three_nodes: Inventory) -> None:
    from controller.policies.pools import FILTERS, Constraints

    for f in FILTERS:
        assert isinstance(getattr(Constraints(), f.wanted), frozenset), f.reason
        assert isinstance(getattr(three_nodes.index, f.groups), dict), f.reason


def test_cluster_placement_node_types_and_accelerators_narrow_the_clusters(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    gpu_hw = {"cpu": {"cores": 8}, "memory": 32, "gpu": {"model": "k80"}}
    inv = inventory_of(
        node_doc("a-edge", cluster_id="a", cores=64),
        node_doc("b-edge", cluster_id="b"),
        node_doc("b-cloud", layer="cloud", cluster_id="b", hardware=gpu_hw),
        node_doc("c-cloud", layer="cloud", cluster_id="c", hardware=gpu_hw),
    )
    app = app_of(component("x"), cluster_placement={"node_types": ["edge", "cloud"], "accelerators": ["gpu"]})
    (d,) = place(app, inv).decisions
    assert d.cluster == "b" and d.rejected_counts["cluster_placement"] == 2
    assert "cluster_placement: in cluster a, needs b" in [r for c in d.candidates for r in c.reasons]
    impossible = app_of(component("x"), cluster_placement={"accelerators": ["fpga"]})
    (none,) = place(impossible, inv).decisions
    assert none.node is None and none.rejected_counts == {"cluster_placement": 4}
    assert "needs (no cluster qualifies)" in none.candidates[0].reasons[0]
    static = StaticPlacedComponents().plan(
        app_of(component("x"), cluster_placement={"cluster_id": ["c", "b"], "node_types": ["edge"]}),
        inv,
        Telemetry(),
    )
    assert static.decisions[0].cluster == "b"


def test_containers_never_land_on_a_far_edge_device_and_far_edge_code_does(
    node_doc: NodeDoc, inventory_of: InventoryOf, app_of: AppOf, component: Comp
) -> None:
    """A far-edge device (a bridge's device node, or an mcu without a cpu) runs code through its
    bridge: a container component with nothing asking for it must not be placed there, even when
    it is the emptiest node and the component names no layer."""
    device = {"continuum_layer": "far_edge", "environment": {"container_runtime": []},
              "hardware": {"memory": 0}, "device": {"id": "dev-1", "host": "edge-1"}}
    mcu = {"continuum_layer": "far_edge", "environment": {"container_runtime": []},
           "hardware": {"mcu": {"architecture": "arm-M4"}, "memory": 0}}
    inv = inventory_of(node_doc("edge-1", cores=1, memory_gb=1), node_doc("dev-1", **device),
                       node_doc("mcu-1", **mcu))
    tiny = [{"image": "idle", "platform_requirements": {}}]  # no requests: fits anywhere by capacity
    app = app_of(
        component("idle", containers=tiny),
        component("sensor", node_placement={"continuum_layer": ["far_edge"]},
                  containers=[{"image": "/srv/sensor"}]),
    )
    decisions = {d.component: d for d in place(app, inv).decisions}
    assert decisions["idle"].node == "edge-1"
    assert decisions["idle"].rejected_counts == {"container_host": 2}
    reasons = {c.node: c.reasons for c in decisions["idle"].candidates}
    assert reasons["dev-1"] == ("container_host: a far-edge device (microcontroller): runs no containers",)
    assert decisions["sensor"].node in ("dev-1", "mcu-1")

    alone = inventory_of(node_doc("dev-1", **device))
    (d,) = place(app_of(component("idle", containers=tiny)), alone).decisions
    assert d.node is None and d.rejected_counts == {"container_host": 1}
