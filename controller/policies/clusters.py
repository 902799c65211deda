"""Which clusters an app may use: `cluster_placement` beyond the cluster ids.

The reference stores `node_types` ("the candidate clusters should contain at least one node of
each specified type") and `accelerators` ("... nodes containing at least one instance of the
specified accelerators") and ignores them; here they narrow the clusters, on top of
`cluster_id`. Answers come from the inventory index (node sets per cluster, layer and
accelerator, as bitmasks), so the check costs a few bitwise ANDs per cluster.
"""

from __future__ import annotations

from controller.inventory import Inventory
from controller.model import App

NONE_QUALIFIES = "(no cluster qualifies)"


def eligible_clusters(app: App, inventory: Inventory, ready_only: bool = True) -> tuple[str, ...] | None:
    """Allowed clusters in preference order (cluster_id order, else by name); None when the app
    does not restrict clusters; () when it does and no cluster qualifies. A cluster that is not
    Ready does not, unless `ready_only` is False (the placer filters its nodes itself, to count
    them under `cluster_ready` in the explanation)."""
    cp = app.cluster_placement
    if not (cp.cluster_ids or cp.node_types or cp.accelerators):
        return None
    index = inventory.index
    known = sorted({c.cluster_id for c in inventory.clusters} | set(index.by_cluster))
    candidates = [c for c in cp.cluster_ids if c in known] if cp.cluster_ids else known
    if ready_only:
        candidates = [c for c in candidates if c not in inventory.unready_clusters]

    def has(cluster: str, group: int) -> bool:
        return bool(index.by_cluster.get(cluster, 0) & group)

    return tuple(
        c
        for c in candidates
        if all(has(c, index.by_layer.get(t, 0)) for t in cp.node_types)
        and all(has(c, index.by_accelerator.get(a, 0)) for a in cp.accelerators)
    )
