"""QoS violations reported by monitoring on the app move components, make-before-break, against
the stand-in API server (every object written is validated, see conftest)."""

from __future__ import annotations

import json
from typing import Any

from ctlkube_harness import APP, NAMESPACE, Running

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.mechanisms.kubernetes_render import deployment_name
from controller.reconcile.qos import ANNOTATION_QOS
from mlsysops.testing import wait_for


def status(kube: KubeApi) -> dict[str, Any]:
    return kube.get(R.APP, NAMESPACE, APP).get("status") or {}


def placement(kube: KubeApi) -> dict[str, str]:
    return {p["component"]: p["node"] for p in status(kube)["placement"]}


def deployments(kube: KubeApi) -> set[str]:
    return {d["metadata"]["name"] for d in kube.list(R.DEPLOYMENT, NAMESPACE)[0]}


def report(kube: KubeApi, *violations: dict[str, Any]) -> None:
    """What monitoring does: write the annotation (only it) under its own field manager."""
    kube.apply({"apiVersion": R.APP.api_version, "kind": R.APP.kind,
                "metadata": {"name": APP, "namespace": NAMESPACE,
                             "annotations": {ANNOTATION_QOS: json.dumps(list(violations))}}},
               field_manager="monitoring")


def test_a_qos_violation_relocates_the_component_make_before_break(kube, world, app_doc,
                                                                   controllers: Running, standin):
    kube.apply(app_doc, field_manager="test-user")  # the app permits component_relocation
    controller = controllers.start()
    wait_for(lambda: status(kube).get("phase") == "Deployed", what="Deployed")
    old_node = placement(kube)["camera-reader"]
    new_node = "edge-2" if old_node == "edge-1" else "edge-1"
    old = deployment_name(APP, "camera-reader", old_node, "uth-edge")
    new = deployment_name(APP, "camera-reader", new_node, "uth-edge")
    standin.hold(new)  # its pods will not become ready until released
    generation = kube.get(R.APP, NAMESPACE, APP)["metadata"]["generation"]

    report(kube, {"component": "camera-reader", "metric": "frame_latency_ms", "node": old_node,
                  "observed": 85, "target": 40})
    wait_for(lambda: new in deployments(kube), what="the replacement Deployment")
    wait_for(lambda: controller.outcomes[APP].retry, what="a reconcile waiting for the replacement")
    assert old in deployments(kube)  # make-before-break: the old one still serves

    standin.release(new)
    wait_for(lambda: old not in deployments(kube), what="the old Deployment removed")
    wait_for(lambda: status(kube).get("phase") == "Deployed" and placement(kube)["camera-reader"] == new_node,
             what="Deployed on the new node")
    explained = {e["component"]: e["reason"] for e in status(kube)["explanation"]}
    assert f"QoS target frame_latency_ms violated on {old_node}" in explained["camera-reader"]
    assert kube.get(R.APP, NAMESPACE, APP)["metadata"]["generation"] == generation  # no spec change

    # the report still names the old node: it is stale now, and nothing moves again
    controllers.stop(controller)
    outcome = controller.reconciler.reconcile(APP)
    assert outcome.phase == "Deployed" and [r.written for r in outcome.results] == [()]
    assert placement(kube)["camera-reader"] == new_node


def test_a_qos_violation_does_not_move_a_component_the_app_does_not_permit_to_move(
        kube, world, app_doc, controllers):
    app_doc.pop("permitted_actions")
    kube.apply(app_doc, field_manager="test-user")
    controller = controllers.start()
    wait_for(lambda: status(kube).get("phase") == "Deployed", what="Deployed")
    node = placement(kube)["camera-reader"]
    before = deployments(kube)
    reconciles = controller.reconciles

    report(kube, {"component": "camera-reader", "metric": "frame_latency_ms", "node": node})
    wait_for(lambda: "not permit component_relocation" in
             {e["component"]: e["reason"] for e in status(kube)["explanation"]}["camera-reader"],
             what="the violation seen and explained")
    # the status is written inside the reconcile, the counter right after it returns
    wait_for(lambda: controller.reconciles > reconciles, what="the reconcile that explained it counted")
    assert placement(kube)["camera-reader"] == node and deployments(kube) == before
