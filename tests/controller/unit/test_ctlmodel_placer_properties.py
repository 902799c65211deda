"""Properties of the placer on random continua: constraints hold, capacity is never exceeded,
nothing is left out that could have fitted, plans are deterministic, the heap is exact."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.inventory import Inventory, NodeInfo
from controller.model import App, parse_document
from controller.policies import Telemetry
from controller.policies.placer import ConstraintAwarePlacer
from controller.policies.pools import Constraints, Ledger, pool_for

LAYERS = ("cloud", "edge", "far_edge")
LABELS = ("camera", "ssd", "eu")
ARCHS = ("amd64", "arm64")
GIB = 2**30

nodes_strategy = st.lists(
    st.builds(
        lambda layer, arch, labels, cores, mem, used: (
            layer,
            arch,
            frozenset(labels),
            cores * 1000,
            mem * GIB,
            used,
        ),
        st.sampled_from(LAYERS),
        st.sampled_from(ARCHS),
        st.sets(st.sampled_from(LABELS)),
        st.integers(1, 8),
        st.integers(1, 16),
        st.integers(0, 900),
    ),
    min_size=1,
    max_size=12,
)
components_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "layers": st.sets(st.sampled_from(LAYERS), max_size=2),
            "labels": st.sets(st.sampled_from(LABELS), max_size=1),
            "archs": st.sets(st.sampled_from(ARCHS), max_size=1),
            "cpu": st.integers(100, 4000),
            "mem": st.integers(64, 8192),
            "replicas": st.integers(1, 3),
        }
    ),
    min_size=1,
    max_size=8,
)


def make_inventory(specs: list[tuple[Any, ...]]) -> Inventory:
    return Inventory(tuple(
        NodeInfo(f"n{i}", "c", layer, labels, arch, cpu_millis_free=cpu - used, memory_bytes_free=mem,
                 cpu_millis_capacity=cpu, memory_bytes_capacity=mem)
        for i, (layer, arch, labels, cpu, mem, used) in enumerate(specs)
    ))  # fmt: skip


def make_app(specs: list[dict[str, Any]]) -> App:
    components = []
    for i, c in enumerate(specs):
        cpu: dict[str, Any] = {"requests": f"{c['cpu']}m"}
        if c["archs"]:
            cpu["architecture"] = sorted(c["archs"])
        placement: dict[str, Any] = {"scaling": {"scaling_mode": "manual", "instances": c["replicas"]}}
        if c["layers"]:
            placement["continuum_layer"] = sorted(c["layers"])
        if c["labels"]:
            placement["labels"] = sorted(c["labels"])
        image = "/srv/x" if c["layers"] == {"far_edge"} else "x"  # far-edge code: a directory
        components.append({
            "metadata": {"name": f"c{i}"}, "node_placement": placement,
            "containers": [{"image": image, "platform_requirements": {
                "cpu": cpu, "memory": {"requests": f"{c['mem']}Mi"}}}],
        })  # fmt: skip
    app = parse_document({"MLSysOpsApp": {"name": "prop", "components": components}})
    assert isinstance(app, App)
    return app


def satisfies(node: NodeInfo, comp: Any) -> bool:
    p, r = comp.placement, comp.resources
    return (
        (not p.continuum_layers or node.continuum_layer in p.continuum_layers)
        and p.labels <= node.labels
        and (not r.architectures or node.arch in r.architectures)
    )


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(node_specs=nodes_strategy, comp_specs=components_strategy)
def test_placements_respect_constraints_and_capacity(node_specs: list[Any], comp_specs: list[Any]) -> None:
    inventory, app = make_inventory(node_specs), make_app(comp_specs)
    plan = ConstraintAwarePlacer().plan(app, inventory, Telemetry())
    assert plan == ConstraintAwarePlacer().plan(app, inventory, Telemetry())  # deterministic
    used_cpu: dict[str, int] = {}
    used_mem: dict[str, int] = {}
    for d in plan.decisions:
        comp = app.component(d.component)
        for host in d.hosts:
            node = inventory.node(host)
            assert node is not None and satisfies(node, comp), (d, node)
            used_cpu[host] = used_cpu.get(host, 0) + comp.resources.cpu_millis
            used_mem[host] = used_mem.get(host, 0) + comp.resources.memory_bytes
    for n in inventory.nodes:
        assert used_cpu.get(n.name, 0) <= n.cpu_millis_free and used_mem.get(n.name, 0) <= n.memory_bytes_free
    for d in plan.decisions:
        if d.node is None:  # it could not fit anywhere then, so it cannot fit anywhere now either
            r = app.component(d.component).resources
            for n in inventory.nodes:
                fits = (n.cpu_millis_free - used_cpu.get(n.name, 0) >= r.cpu_millis
                        and n.memory_bytes_free - used_mem.get(n.name, 0) >= r.memory_bytes)  # fmt: skip
                assert not (satisfies(n, app.component(d.component)) and fits), (d.component, n.name)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    node_specs=nodes_strategy,
    reservations=st.lists(
        st.tuples(st.integers(0, 11), st.integers(0, 3000), st.integers(0, 4096)), max_size=20
    ),
    need_cpu=st.integers(0, 3000),
)
def test_the_ledger_heap_always_finds_the_best_fitting_node(
    node_specs: list[Any], reservations: list[tuple[int, int, int]], need_cpu: int
) -> None:
    from controller.model import Resources

    inventory = make_inventory(node_specs)
    ledger = Ledger(inventory)
    key = Constraints()
    pool = pool_for(inventory, key)
    need = Resources(cpu_millis=need_cpu)
    for i, cpu, mem in reservations:
        ledger.best(key, pool, need, 3)  # interleave searches with reservations, as placement does
        if i < len(inventory.nodes):
            ledger.reserve(i, Resources(cpu_millis=cpu, memory_bytes=mem * 2**20))
    found = ledger.best(key, pool, need, 3)
    fitting = sorted(
        (-ledger.score(i), i) for i in range(len(inventory.nodes)) if not ledger.shortfall(i, need)
    )
    assert [i for i, _ in found.fits] == [i for _, i in fitting[:3]]
