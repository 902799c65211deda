"""Node sets as bitmasks over the free-capacity order: placement indexes for 100,000 nodes.

Every node has a rank: its place when the inventory's nodes are sorted by the fraction left
free (best first, ties by inventory position). A node set is a Python int with bit r set for
the node of rank r. Then, at 100,000 nodes (12.5 KB per set):
- intersecting or uniting two sets (a filter applied to a candidate pool) and counting what a
  filter removed (`int.bit_count`) take microseconds, in C, not a walk over node ids;
- walking a set's lowest bits first visits its members best-first: the top candidates of any
  pool come without sorting it (`ranks`).

The index is built once per inventory (the inventory is immutable); the policies memoise
candidate pools per constraint signature in `pools`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.inventory import NodeInfo

NodeSet = int  # bit r set: the node of free rank r is a member
_CHUNK = 1 << 12  # bits examined per step when walking a set
_CHUNK_MASK = (1 << _CHUNK) - 1


def ranks(members: NodeSet) -> Iterator[int]:
    """The ranks in a set, lowest (best) first. Each step looks at 4,096 bits of the set, so the
    first members of a large set come at once and a sparse set costs a few µs per empty span."""
    base = 0
    while members:
        chunk = members & _CHUNK_MASK
        if not chunk:  # jump over the empty span to the chunk holding the next member
            skip = ((members & -members).bit_length() - 1) // _CHUNK * _CHUNK
            members >>= skip
            base += skip
            continue
        while chunk:
            low = chunk & -chunk
            yield base + low.bit_length() - 1
            chunk ^= low
        members >>= _CHUNK
        base += _CHUNK


class NodeIndex:
    """Node sets by attribute (layer, architecture, label, runtime handler, cluster, sensor, GPU
    model, accelerator, mobility, free GPUs, microcontroller, in a Ready cluster) and the free-capacity order
    they are ranked by."""

    def __init__(self, nodes: Sequence[NodeInfo], unready_clusters: Mapping[str, str] | None = None) -> None:
        self.nodes = tuple(nodes)
        self.position = {n.name: i for i, n in enumerate(self.nodes)}
        # Every node as (-free fraction, position), best first: the order ranks refer to.
        self.free_order = tuple(sorted((-n.free_fraction, i) for i, n in enumerate(self.nodes)))
        self.ranked = tuple(i for _, i in self.free_order)  # rank → node position
        self.free_rank = [0] * len(self.nodes)  # node position → rank
        for rank, i in enumerate(self.ranked):
            self.free_rank[i] = rank
        self.all: NodeSet = (1 << len(self.nodes)) - 1
        by_rank = [self.nodes[i] for i in self.ranked]
        self.by_layer = _sets(by_rank, lambda n: (n.continuum_layer,))
        self.by_arch = _sets(by_rank, lambda n: (n.arch,) if n.arch else ())
        self.by_label = _sets(by_rank, lambda n: n.labels)
        self.by_runtime = _sets(by_rank, lambda n: n.runtimes)
        self.by_cluster = _sets(by_rank, lambda n: (n.cluster,) if n.cluster else ())
        self.by_sensor = _sets(by_rank, lambda n: n.sensors)
        self.by_gpu_model = _sets(by_rank, lambda n: (n.gpu_model,) if n.gpu_model else ())
        self.by_accelerator = _sets(by_rank, lambda n: n.accelerators)
        self.mobile = _sets(by_rank, lambda n: ("mobile",) if n.mobile else ()).get("mobile", 0)
        self.with_gpus = _sets(by_rank, lambda n: ("gpu",) if n.gpus > 0 else ()).get("gpu", 0)
        self.microcontrollers = _sets(by_rank, lambda n: ("mcu",) if n.microcontroller else ()).get("mcu", 0)
        self.unready_clusters = dict(unready_clusters or {})  # cluster → why it is not Ready
        self.in_ready_clusters: NodeSet = self.all
        for cluster in self.unready_clusters:
            self.in_ready_clusters &= ~self.by_cluster.get(cluster, 0)
        self.pools: dict[Any, Any] = {}  # memo: constraint signature → candidate pool

    def holds(self, members: NodeSet, position: int) -> bool:
        """Whether the node at `position` is in the set."""
        return bool((members >> self.free_rank[position]) & 1)

    def of(self, positions: Iterable[int]) -> NodeSet:
        """The set of the nodes at these positions."""
        out = 0
        for i in positions:
            out |= 1 << self.free_rank[i]
        return out

    def best_first(self, members: NodeSet) -> Iterator[int]:
        """The positions of the set's nodes, best (most free) first."""
        ranked = self.ranked
        return (ranked[r] for r in ranks(members))


def _sets(by_rank: Sequence[NodeInfo], keys: Callable[[NodeInfo], Iterable[str]]) -> dict[str, NodeSet]:
    """value → the set of nodes having it, built as byte arrays (one bit write per node and value)."""
    arrays: dict[str, bytearray] = {}
    size = (len(by_rank) + 7) // 8
    for rank, node in enumerate(by_rank):
        for key in keys(node):
            bits = arrays.get(key)
            if bits is None:
                bits = arrays[key] = bytearray(size)
            bits[rank >> 3] |= 1 << (rank & 7)
    return {k: int.from_bytes(bits, "little") for k, bits in arrays.items()}
