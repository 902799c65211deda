"""The indexed, bounded placer at scale: node sets as bitmasks over the free-capacity order,
scoring that stops after a few fitting nodes, and decisions that still satisfy every
constraint and pick the best node (checked against a brute-force walk of every node)."""

from __future__ import annotations

import random
import re
from typing import Any

from controller.inventory import Inventory, NodeInfo
from controller.model import App, parse_document
from controller.nodeindex import NodeIndex, ranks
from controller.policies import Telemetry
from controller.policies.placer import ConstraintAwarePlacer
from controller.policies.pools import Constraints, Ledger, pool_for

LAYERS = ("cloud", "edge", "far_edge")
LABELS = ("camera", "ssd", "eu", "5g")
GIB = 2**30


def fleet(count: int, seed: int = 3) -> Inventory:
    rng = random.Random(seed)
    nodes = []
    for i in range(count):
        cores = rng.choice((2, 4, 8, 16))
        nodes.append(NodeInfo(
            f"n{i:05d}", f"c{i % 4}", rng.choice(LAYERS), frozenset(rng.sample(LABELS, rng.randint(0, 2))),
            rng.choice(("amd64", "arm64")), cpu_millis_free=rng.randint(0, cores * 1000),
            memory_bytes_free=rng.randint(0, 8) * GIB, cpu_millis_capacity=cores * 1000,
            memory_bytes_capacity=8 * GIB, runtimes=frozenset({"runc", "crun"} if i % 3 else {"runc"}),
        ))  # fmt: skip
    return Inventory(tuple(nodes))


def app(components: list[dict[str, Any]]) -> App:
    parsed = parse_document({"MLSysOpsApp": {"name": "scale", "components": [
        {"metadata": {"name": f"c{i}"},
         "node_placement": {"continuum_layer": c["layers"], "labels": c["labels"]},
         **({"runtime_class_name": c["runtime"]} if c.get("runtime") else {}),
         "containers": [{"image": "/srv/x" if c["layers"] == ["far_edge"] else "x", "platform_requirements": {
             "cpu": {"requests": c["cpu"], "architecture": c["archs"]}, "memory": {"requests": c["mem"]}}}]}
        for i, c in enumerate(components)]}})  # fmt: skip
    assert isinstance(parsed, App)
    return parsed


def test_node_sets_are_the_nodes_with_each_attribute_walked_best_first() -> None:
    inv = fleet(9000)
    index = inv.index
    for layer in LAYERS:
        members = list(index.best_first(index.by_layer[layer]))
        assert sorted(members) == [i for i, n in enumerate(inv.nodes) if n.continuum_layer == layer]
        scores = [inv.nodes[i].free_fraction for i in members]
        assert scores == sorted(scores, reverse=True)  # best first, as the bits are ranked
    camera = index.by_label["camera"]
    assert camera.bit_count() == sum("camera" in n.labels for n in inv.nodes)
    sparse = index.of([8999, 4, 7000])
    assert sorted(index.ranked[r] for r in ranks(sparse)) == [4, 7000, 8999]  # empty spans skipped
    assert index.holds(sparse, 7000) and not index.holds(sparse, 7001)
    assert list(ranks(0)) == [] and NodeIndex(()).all == 0
    pool = pool_for(inv, Constraints(layers=frozenset({"edge"}), labels=frozenset({"camera"})))
    assert [i for i in range(len(inv.nodes)) if pool.has(index, i)] == [
        i for i, n in enumerate(inv.nodes) if n.continuum_layer == "edge" and "camera" in n.labels
    ]


def test_each_component_gets_the_best_node_meeting_every_constraint_and_says_how_many_were_scored() -> None:
    inv = fleet(12000)
    wanted: list[dict[str, Any]] = [
        {"layers": ["edge"], "labels": ["camera"], "archs": ["arm64"], "cpu": "500m", "mem": "1Gi"},
        {"layers": ["cloud", "edge"], "labels": ["ssd", "eu"], "archs": ["amd64"], "cpu": "2", "mem": "2Gi",
         "runtime": "crun"},
        {"layers": ["far_edge"], "labels": [], "archs": ["amd64", "arm64"], "cpu": "7", "mem": "4Gi"},
        {"layers": ["*"], "labels": ["5g"], "archs": ["arm64"], "cpu": "100m", "mem": "128Mi"},
    ]  # fmt: skip
    the_app = app(wanted)
    ledger = Ledger(inv)
    plan = ConstraintAwarePlacer().plan(the_app, inv, Telemetry(), ledger=ledger)
    used: dict[str, tuple[int, int]] = {}
    for d, spec in zip(plan.decisions, wanted, strict=True):
        comp = the_app.component(d.component)
        need = comp.resources

        def satisfies(n: NodeInfo, spec: dict[str, Any] = spec) -> bool:
            layers = spec["layers"]
            return ((layers == ["*"] or n.continuum_layer in layers) and set(spec["labels"]) <= n.labels
                    and n.arch in spec["archs"]
                    and (not spec.get("runtime") or spec["runtime"] in n.runtimes))  # fmt: skip

        def room(n: NodeInfo) -> tuple[int, int]:
            cpu, mem = used.get(n.name, (0, 0))
            return n.cpu_millis_free - cpu, n.memory_bytes_free - mem

        fitting = [n for n in inv.nodes if satisfies(n) and room(n)[0] >= need.cpu_millis
                   and room(n)[1] >= need.memory_bytes]  # fmt: skip
        assert fitting, spec
        assert d.node is not None, d.reason
        node = inv.node(d.node)
        assert node is not None and satisfies(node) and node in fitting

        def score(n: NodeInfo) -> float:
            cpu, mem = room(n)
            return (cpu / n.cpu_millis_capacity + mem / n.memory_bytes_capacity) / 2

        assert score(node) == max(score(n) for n in fitting)  # the exact best, not a sample
        candidates = sum(1 for n in inv.nodes if satisfies(n))
        scored = re.search(r"scored (\d+) of (\d+), best-first, stopping at 5 that fit", d.reason)
        assert scored is not None, d.reason
        assert int(scored.group(2)) == candidates and 5 <= int(scored.group(1)) < candidates
        cpu, mem = used.get(node.name, (0, 0))
        used[node.name] = (cpu + need.cpu_millis, mem + need.memory_bytes)


def test_a_pool_whose_best_scored_nodes_lack_room_still_finds_the_node_that_fits() -> None:
    """Bounded scoring stops after enough *fitting* nodes, never after a fixed number examined:
    the one big node deep in the order is found behind thousands of small, idle ones."""
    small = [NodeInfo(f"s{i}", None, "edge", arch="amd64", cpu_millis_free=1000, memory_bytes_free=GIB,
                      cpu_millis_capacity=1000, memory_bytes_capacity=GIB) for i in range(5000)]  # fmt: skip
    big = NodeInfo("big", None, "edge", arch="amd64", cpu_millis_free=4000, memory_bytes_free=GIB,
                   cpu_millis_capacity=16000, memory_bytes_capacity=16 * GIB)  # fmt: skip
    wanted = app([{"layers": ["edge"], "labels": [], "archs": ["amd64"], "cpu": "3", "mem": "64Mi"}])
    (d,) = ConstraintAwarePlacer().plan(wanted, Inventory((*small, big)), Telemetry()).decisions
    assert d.node == "big"
    assert "scored all 5001" in d.reason and d.rejected_counts["insufficient cpu"] == 5000
    assert len(d.candidates) <= 1 + 5  # the explanation stays bounded: counts, and a few named
