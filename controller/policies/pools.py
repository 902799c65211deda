"""Candidate pools and the capacity ledger: placement at 100,000 nodes without O(nodes) per component.

A component's hard constraints (pinned node, clusters, layers, archs, labels, runtime handler,
GPU, mobility, sensors) form a `Constraints` signature. Its `Pool` is computed once per
inventory by intersecting the inventory's node sets (bitmasks over the free-capacity order,
controller.nodeindex), recording how many nodes each filter removed (plus a few named
samples) for the explanation, and is memoised: components of the same shape share it.

Free capacity changes while placing; the pool's bit order is the free capacity of the
inventory snapshot. A `Ledger` records what placements reserve on top of that snapshot; a
search walks the pool best-first, merging the nodes the ledger touched (by their current
score) and stops after a few fitting nodes: bounded scoring, like kube-scheduler's
percentageOfNodesToScore, with an exact best.
"""

from __future__ import annotations

import functools
import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from controller.inventory import Inventory, NodeInfo, free_fraction
from controller.model import Resources
from controller.model.quantity import format_cpu, format_memory
from controller.nodeindex import NodeIndex, NodeSet, ranks

SAMPLES_PER_REASON = 3
AVOIDED = ("unavailable", "unavailable, or the node the component moves away from")


@dataclass(frozen=True)
class Constraints:
    nodes: frozenset[str] | None = None  # pinned (node_placement.node, single-node group)
    clusters: frozenset[str] = frozenset()
    layers: frozenset[str] = frozenset()
    archs: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    runtimes: frozenset[str] = frozenset()  # runtime handlers needed (runtime_class_name)
    gpu_model: str | None = None
    needs_gpu: bool = False
    mobile: bool = False
    sensors: frozenset[str] = frozenset()
    containers: bool = False  # runs containers: not on a microcontroller

    @property
    def gpu_models(self) -> frozenset[str]:
        return frozenset({self.gpu_model}) if self.gpu_model else frozenset()


@dataclass(frozen=True)
class Rejection:
    reason: str  # the filter, e.g. "continuum_layer"
    count: int
    samples: tuple[tuple[str, str], ...]  # (node, why) for a few of them


@dataclass(frozen=True)
class Pool:
    """The nodes satisfying one constraint signature, and what each filter removed."""

    members: NodeSet
    rejections: tuple[Rejection, ...]
    size: int

    @functools.cached_property
    def _bytes(self) -> bytes:
        return self.members.to_bytes((self.members.bit_length() + 7) // 8, "little")

    def has(self, index: NodeIndex, position: int) -> bool:
        """Whether the node at `position` is in the pool: one byte read (testing a bit of the
        int itself would shift 12.5 KB at 100,000 nodes; reservations ask this a lot)."""
        rank = index.free_rank[position]
        members = self._bytes
        return (rank >> 3) < len(members) and bool((members[rank >> 3] >> (rank & 7)) & 1)


def pool_for(inventory: Inventory, want: Constraints) -> Pool:
    index = inventory.index
    found = index.pools.get(want)
    if found is None:
        found = index.pools[want] = _build_pool(index, want)
    return found


Why = Callable[[NodeInfo, frozenset[str]], str]  # (node, what the component asks for) → why it fails


@dataclass(frozen=True)
class Stage:
    """One filter applied to a pool: the nodes it allows and, for the explanation, what the
    component asked for and how to say why a node does not have it."""

    reason: str
    allowed: NodeSet
    wanted: frozenset[str]
    why: Why

    def explain(self, node: NodeInfo) -> str:
        return self.why(node, self.wanted)


@dataclass(frozen=True)
class Filter:
    """One hard constraint as data: the Constraints field holding what a component asks for,
    the NodeIndex groups offering it, whether a node needs all the values or any one of them,
    and how to say why a node fails (for the explanation)."""

    reason: str  # the description field, used as the rejection reason
    wanted: str  # Constraints attribute: frozenset of required values
    groups: str  # NodeIndex attribute: value -> node positions
    needs_all: bool
    why: Why

    def stage(self, index: NodeIndex, want: Constraints) -> Stage | None:
        """This filter for `want`, or None when the component asks nothing of it."""
        values: frozenset[str] = getattr(want, self.wanted)
        if not values:
            return None
        groups: dict[str, NodeSet] = getattr(index, self.groups)
        allowed = index.all if self.needs_all else 0
        for v in values:
            if self.needs_all:
                allowed &= groups.get(v, 0)
            else:
                allowed |= groups.get(v, 0)
        return Stage(self.reason, allowed, values, self.why)


FILTERS = (
    Filter("cluster_placement", "clusters", "by_cluster", False,
           lambda n, w: f"in cluster {n.cluster or '(none)'}, needs {_list(w)}"),
    Filter("continuum_layer", "layers", "by_layer", False,
           lambda n, w: f"layer {n.continuum_layer}, needs {_list(w)}"),
    Filter("architecture", "archs", "by_arch", False,
           lambda n, w: f"architecture {n.arch or 'unknown'}, needs {_list(w)}"),
    Filter("labels", "labels", "by_label", True,
           lambda n, w: f"lacks label(s) {_list(w - n.labels)}"),
    Filter("runtime_class_name", "runtimes", "by_runtime", True,
           lambda n, w: f"runtime handler {_list(w - n.runtimes)} not reported available "
           f"(available: {_list(n.runtimes) or 'none reported'})"),
    Filter("gpu", "gpu_models", "by_gpu_model", False,
           lambda n, w: f"GPU {n.gpu_model or 'none'}, needs {_list(w)}"),
    Filter("sensors", "sensors", "by_sensor", True,
           lambda n, w: f"lacks sensor(s) {_list(w - n.sensors)}"),
)  # fmt: skip


def _stages(index: NodeIndex, want: Constraints) -> Iterator[Stage]:
    """The filters that apply to `want`, in order."""
    if want.nodes is not None:
        pinned = index.of(index.position[n] for n in want.nodes if n in index.position)
        yield Stage(
            "node_placement.node", pinned, want.nodes, lambda n, w: f"not the requested node {_list(w)}"
        )
    for f in FILTERS:
        stage = f.stage(index, want)
        if stage is not None:
            yield stage
    if want.needs_gpu and not want.gpu_model:
        yield Stage("gpu", index.with_gpus, frozenset(), lambda n, w: "no free GPU")
    if want.mobile:
        yield Stage("mobile", index.mobile, frozenset(), lambda n, w: "not a mobile node")
    if want.containers and index.microcontrollers:
        yield Stage("container_host", index.all & ~index.microcontrollers, frozenset(),
                    lambda n, w: "a far-edge device (microcontroller): runs no containers")
    if index.unready_clusters:  # a member cluster its control plane does not report Ready
        unready = index.unready_clusters
        yield Stage(
            "cluster_ready",
            index.in_ready_clusters,
            frozenset(),
            lambda n, w: f"cluster {n.cluster} is not Ready: {unready.get(n.cluster or '', '')}",
        )


def unmet(index: NodeIndex, want: Constraints, position: int) -> list[str]:
    """Why the node at `position` fails `want`: one "filter: why" per constraint it does not meet."""
    node = index.nodes[position]
    return [
        f"{stage.reason}: {stage.explain(node)}"
        for stage in _stages(index, want)
        if not index.holds(stage.allowed, position)
    ]


def _build_pool(index: NodeIndex, want: Constraints) -> Pool:
    current = index.all
    size = len(index.nodes)
    rejections = []
    for stage in _stages(index, want):
        kept = current & stage.allowed
        left = kept.bit_count()
        if left < size:
            outside = itertools.islice(index.best_first(current & ~kept), SAMPLES_PER_REASON)
            samples = tuple((index.nodes[i].name, stage.explain(index.nodes[i])) for i in outside)
            rejections.append(Rejection(stage.reason, size - left, samples))
        current, size = kept, left
    return Pool(current, tuple(rejections), size)


def _list(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


# ---------------------------------------------------------------------------- ledger


@dataclass
class Ledger:
    """Capacity reserved by placements on top of one inventory snapshot.

    Share one ledger across apps to plan them against each other (the reconcile loop and the
    benchmark do); a fresh one per plan treats each app alone. Not thread-safe by design: one
    ledger belongs to one planning sequence.

    Only the nodes it reserved on ("touched") have a score other than the snapshot's, so a
    search merges two streams: the pool's untouched members in snapshot order (its bits), and
    per pool a max-heap of its touched members, pushed at every reservation (stale entries,
    whose node was reserved on again, are dropped when popped). A search costs
    O(examined · log touched), whatever the pool's size: a fresh ledger costs nothing."""

    inventory: Inventory
    cpu: dict[int, int] = field(default_factory=dict)
    memory: dict[int, int] = field(default_factory=dict)
    gpus: dict[int, int] = field(default_factory=dict)
    _touched: dict[Constraints, tuple[Pool, list[tuple[float, int]]]] = field(default_factory=dict)
    _touched_set: NodeSet = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._touched_set = self.inventory.index.of(self.cpu)

    def free(self, i: int) -> tuple[int, int, int]:
        n = self.inventory.index.nodes[i]
        return (
            n.cpu_millis_free - self.cpu.get(i, 0),
            n.memory_bytes_free - self.memory.get(i, 0),
            n.gpus - self.gpus.get(i, 0),
        )

    def score(self, i: int) -> float:
        n = self.inventory.index.nodes[i]
        cpu, mem, _ = self.free(i)
        return free_fraction(cpu, n.cpu_millis_capacity, mem, n.memory_bytes_capacity)

    def reserve(self, i: int, need: Resources) -> None:
        index = self.inventory.index
        if i not in self.cpu:
            self._touched_set |= 1 << index.free_rank[i]
        self.cpu[i] = self.cpu.get(i, 0) + need.cpu_millis
        self.memory[i] = self.memory.get(i, 0) + need.memory_bytes
        if need.gpus:
            self.gpus[i] = self.gpus.get(i, 0) + need.gpus
        if self._touched:
            entry = (-self.score(i), i)
            for pool, heap in self._touched.values():
                if pool.has(index, i):
                    heapq.heappush(heap, entry)

    def reserve_node(self, name: str, need: Resources) -> None:
        i = self.inventory.index.position.get(name)
        if i is not None:
            self.reserve(i, need)

    def shortfall(self, i: int, need: Resources) -> list[tuple[str, str]]:
        """[(reason, detail)] for each resource the node lacks; empty when it fits."""
        cpu, mem, gpus = self.free(i)
        out = []
        if need.cpu_millis > cpu:
            out.append(
                (
                    "insufficient cpu",
                    f"needs {format_cpu(need.cpu_millis)} cpu, {format_cpu(max(cpu, 0))} free",
                )
            )
        if need.memory_bytes > mem:
            out.append(
                (
                    "insufficient memory",
                    f"needs {format_memory(need.memory_bytes)} memory, {format_memory(max(mem, 0))} free",
                )
            )
        if need.gpus > gpus:
            out.append(("insufficient gpus", f"needs {need.gpus} GPU(s), {max(gpus, 0)} free"))
        return out

    def _touched_heap(self, key: Constraints, pool: Pool) -> list[tuple[float, int]]:
        found = self._touched.get(key)
        if found is None:
            mine = self.inventory.index.best_first(self._touched_set & pool.members)
            heap = [(-self.score(i), i) for i in mine]
            heapq.heapify(heap)
            found = self._touched[key] = (pool, heap)
        return found[1]

    def best(
        self, key: Constraints, pool: Pool, need: Resources, top_k: int, avoid: frozenset[int] = frozenset()
    ) -> Search:
        """The best fitting nodes (up to top_k, best first) and the examined nodes that did not fit.

        Scoring is bounded like kube-scheduler's percentageOfNodesToScore: nodes are examined
        best-first and the search stops once top_k fitting nodes are found, so a decision
        scores a handful of nodes whatever the pool's size (the best is exact: the order is
        by the current score). Nodes to `avoid` (unavailable, or the one a component moves
        away from) are a handful, so they are skipped here rather than making pools per
        exclusion set."""
        index = self.inventory.index
        heap = self._touched_heap(key, pool)
        fresh = ranks(pool.members & ~self._touched_set)
        order = index.free_order
        head = next(fresh, None)
        popped: list[tuple[float, int]] = []
        seen: set[int] = set()
        fits: list[tuple[int, float]] = []
        misfits: list[tuple[int, list[tuple[str, str]]]] = []
        while len(fits) < top_k:
            while heap and -heap[0][0] != self.score(heap[0][1]):
                heapq.heappop(heap)  # stale: the node was reserved on again since
            candidate = order[head] if head is not None else None
            if heap and (candidate is None or heap[0] < candidate):
                entry = heapq.heappop(heap)
                popped.append(entry)
                if entry[1] in seen:
                    continue
            elif candidate is not None:
                entry = candidate
                head = next(fresh, None)
            else:
                break
            neg, i = entry
            seen.add(i)
            lacking = [AVOIDED] if i in avoid else self.shortfall(i, need)
            if lacking:
                misfits.append((i, lacking))
            else:
                fits.append((i, -neg))
        for entry in popped:
            heapq.heappush(heap, entry)
        return Search(tuple(fits), tuple(misfits))


@dataclass(frozen=True)
class Search:
    fits: tuple[tuple[int, float], ...]  # (node position, score), best first
    misfits: tuple[tuple[int, list[tuple[str, str]]], ...]  # examined: (reason, detail) why not

    @property
    def scored(self) -> int:
        """How many nodes the search examined (fitting or not)."""
        return len(self.fits) + len(self.misfits)
