"""`staticPlacedComponents`: placement exactly as the description pins it, like the reference.

- `node_placement.node` (or a `single_node` group's `node`) → that node, if the inventory has it
  and it is available; insufficient capacity is reported in the reason, not enforced (the user
  asked for this node; the engine's scheduler has the last word).
- otherwise `cluster_placement.cluster_id` → the first listed cluster known to the inventory
  that has the `node_types` and `accelerators` asked for (cluster-level decision: the
  cluster's scheduler picks the node);
- otherwise the policy abstains (node and cluster None), leaving the component to the next
  policy of the chain.
"""

from __future__ import annotations

from controller.inventory import Inventory
from controller.model import App, Component, depends_on_order
from controller.policies.base import CandidateVerdict, Decision, Plan, Telemetry
from controller.policies.clusters import eligible_clusters
from controller.policies.pools import Ledger
from controller.policies.settings import node_settings, telemetry_needs


class StaticPlacedComponents:
    name = "staticPlacedComponents"

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
        pinned = {m: g.placement.node for g in app.single_node if g.placement.node for m in g.components}
        eligible = eligible_clusters(app, inventory) or ()
        decisions = {
            name: self._decide(
                app, app.component(name), pinned.get(name), inventory, telemetry, ledger, eligible
            )
            for name in order
        }
        return Plan(app.name, app.namespace, self.name, tuple(decisions[n] for n in order), order)

    def _decide(
        self,
        app: App,
        comp: Component,
        group_node: str | None,
        inventory: Inventory,
        telemetry: Telemetry,
        ledger: Ledger,
        eligible: tuple[str, ...],
    ) -> Decision:
        wanted = group_node or comp.placement.node
        source = "single_node.node" if group_node else "node_placement.node"
        if wanted:
            node = inventory.node(wanted)
            unready = inventory.unready_clusters.get(node.cluster or "") if node is not None else None
            if node is None or wanted in telemetry.unavailable_nodes or unready is not None:
                state = (
                    "is not in the inventory"
                    if node is None
                    else f"is in cluster {node.cluster}, which is not Ready: {unready}"
                    if unready is not None
                    else "is unavailable"
                )
                verdict = CandidateVerdict(wanted, False, None, (f"requested node {state}",))
                return Decision(comp.name, None, None, f"not placed: {source} {wanted} {state}", (verdict,))
            i = inventory.index.position[wanted]
            lacking = [d for _, d in ledger.shortfall(i, comp.resources)]
            ledger.reserve(i, comp.resources)
            settings, notes = node_settings(app, comp, node)
            warn = [f"warning: {d}" for d in lacking]
            reason = "; ".join([f"{source} pins it to {wanted} (static placement)", *warn, *notes])
            verdict = CandidateVerdict(wanted, True, None, (f"requested by {source}", *warn))
            return Decision(comp.name, wanted, node.cluster, reason, (verdict,), settings,
                            telemetry=telemetry_needs(comp, node, settings))
        wanted_clusters = app.cluster_placement.cluster_ids
        if wanted_clusters:
            chosen = eligible[0] if eligible else None
            if chosen is None:
                not_ready = [f"{c} is not Ready: {inventory.unready_clusters[c]}"
                             for c in wanted_clusters if c in inventory.unready_clusters]  # fmt: skip
                return Decision(
                    comp.name, None, None,
                    f"not placed: none of cluster_placement.cluster_id ({', '.join(wanted_clusters)}) is in "
                    "the inventory, Ready, with the node_types and accelerators asked for"
                    + "".join(f"; cluster {u}" for u in not_ready),
                )  # fmt: skip
            return Decision(
                comp.name, None, chosen,
                f"cluster_placement.cluster_id pins it to cluster {chosen}; the node is left to "
                "the cluster's scheduler",
            )  # fmt: skip
        return Decision(
            comp.name, None, None, "abstained: no node_placement.node or cluster_placement.cluster_id"
        )
