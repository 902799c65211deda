"""The `faredge` mechanism: far-edge components go to their device's bridge, never into a Pod.

A far-edge component (`Component.far_edge`: its only `continuum_layer` is `far_edge`, or a
container declares `platform_requirements.mcu`) is code for a microcontroller behind the
far-edge bridge, not a container image: the kubernetes and karmada renderers skip it, and
this mechanism hands it to the bridge of the device it was placed on.

Renders one hand-off record per placed far-edge component (kind `FarEdgeDeployment`, not a
Kubernetes object: plan mode shows it as what the bridge would be given): the node (device),
the component, its code (the container image field) and the state of the hand-off.

The bridge has no code-deploy (OTA) path yet. Until it has, `realize` writes nothing and
reports every such component as pending, "awaiting far-edge deployment", with that reason, so
the app's status says so and the app is not Ready. Nothing is ever written to a cluster for
it. `remove` has nothing to undo.
"""

from __future__ import annotations

from controller.kube.api import Obj
from controller.mechanisms.base import MechanismContext, RealizeResult
from controller.mechanisms.kubernetes_render import LABEL_PART_OF, dns_name
from controller.model import App
from controller.policies.base import Plan

AWAITING = "awaiting far-edge deployment"
NO_DEPLOY_PATH = "the far-edge bridge has no code-deploy (OTA) path yet"
API_VERSION = "faredge.mlsysops.eu/v1"
KIND = "FarEdgeDeployment"


def render(app: App, plan: Plan) -> list[Obj]:
    """One hand-off record per far-edge component placed on a node, in plan order."""
    out: list[Obj] = []
    for decision in plan.decisions:
        comp = app.component(decision.component)
        if not comp.far_edge or decision.node is None:
            continue  # not far-edge, or unplaced (the status says why)
        for node in decision.hosts:
            out.append(
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "metadata": {
                        "name": dns_name(app.name, comp.name, node),
                        "namespace": app.namespace,
                        "labels": {LABEL_PART_OF: dns_name(app.name)},
                    },
                    "node": node,
                    "component": comp.name,
                    "code": [c.image for c in comp.containers if c.image],
                    "state": AWAITING,
                    "reason": NO_DEPLOY_PATH,
                }
            )
    return out


def pending(record: Obj) -> str:
    return f"{record['component']} on {record['node']}: {record['state']} ({record['reason']})"


class FarEdgeMechanism:
    """Hands far-edge components to their device's bridge (see the module docstring)."""

    name = "faredge"

    @classmethod
    def from_context(cls, _context: MechanismContext) -> FarEdgeMechanism:
        return cls()

    def render(self, app: App, plan: Plan) -> list[Obj]:
        return render(app, plan)

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        records = self.render(app, plan)
        return RealizeResult(self.name, written=(), unchanged=(), pending=tuple(pending(r) for r in records))

    def remove(self, app_name: str, namespace: str) -> None:
        """Nothing was handed over (no deploy path yet), so nothing to take back."""
