"""What placement results become on the API server: a component that cannot be placed stays
unplaced with the reasons, a changed description re-places make-before-break, a far-edge
component never becomes a Pod. Against the stand-in API (every object written is validated)."""

from __future__ import annotations

import copy
from typing import Any

from ctlkube_harness import APP, NAMESPACE, Running

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.mechanisms import MechanismRegistry
from controller.mechanisms.faredge import NO_BRIDGE, FarEdgeMechanism
from controller.mechanisms.kubernetes import KubernetesMechanism
from controller.mechanisms.kubernetes_render import LABEL_COMPONENT, deployment_name
from mlsysops.testing import wait_for


def status(kube: KubeApi, app: str = APP) -> dict[str, Any]:
    return kube.get(R.APP, NAMESPACE, app).get("status") or {}


def in_phase(kube: KubeApi, phase: str, app: str = APP, generation: int = 1) -> dict[str, Any] | None:
    s = status(kube, app)
    return s if s.get("phase") == phase and s.get("observedGeneration") == generation else None


def workloads(kube: KubeApi) -> dict[str, str]:
    """Deployment name → component."""
    return {
        d["metadata"]["name"]: d["metadata"]["labels"][LABEL_COMPONENT]
        for d in kube.list(R.DEPLOYMENT, NAMESPACE)[0]
    }


def conditions(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in s.get("conditions", [])}


def app(name: str, *components: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "components": list(components),
        **fields,
    }


def component(name: str, **fields: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "image": f"registry.example.com/{name}:1",
        "platform_requirements": {"cpu": {"requests": "100m"}},
    }
    container.update(fields.pop("container", {}))
    return {"metadata": {"name": name}, "containers": [container], **fields}


def test_a_component_no_node_fits_stays_unplaced_with_per_filter_counts(kube, world, controllers: Running):
    """Defect 1: the static policy's cluster-only choice used to win over the placer's "no node
    fits", and the workload was written without its label constraint."""
    doc = app(
        "riscv",
        component(
            "solver",
            node_placement={"labels": ["lidar"]},
            container={"ports": [{"container_port": 9000, "name": "api"}]},
        ),
        component("web", node_placement={"continuum_layer": ["edge"]}),
        cluster_placement={"cluster_id": ["uth-edge"]},
    )
    kube.apply(doc, field_manager="test-user")
    controllers.start()
    s = wait_for(lambda: in_phase(kube, "Degraded", "riscv"), what="riscv Degraded")

    assert {p["component"]: p["node"] for p in s["placement"]} == {
        "solver": None,
        "web": s["placement"][1]["node"],
    }
    assert s["placement"][0]["cluster"] is None and s["placed"] == "1/2"
    assert sorted(workloads(kube).values()) == ["web"]  # nothing runs without its constraints
    assert [sv["metadata"]["name"] for sv in kube.list(R.SERVICE, NAMESPACE)[0]] == []  # no Service either
    explained = {e["component"]: e for e in s["explanation"]}
    assert explained["solver"]["rejectedCounts"] == {"labels": 3}
    assert explained["solver"]["chosen"] is None
    planned = conditions(s)["Planned"]
    assert planned["status"] == "False" and planned["reason"] == "Unplaceable"
    assert "solver (no node fits: labels 3)" in planned["message"]
    assert conditions(s)["Ready"]["status"] == "False"
    [conflict] = s["conflicts"]
    assert conflict["component"] == "solver"
    assert conflict["proposals"] == {
        "staticPlacedComponents": "cluster uth-edge",
        "constraintAwarePlacer": None,
    }


def move_to_edge(kube: KubeApi, standin: Any, doc: dict[str, Any]) -> set[str]:
    """Change the description of the app's one component from [cloud] to [edge] with a camera,
    its possible replacements held unavailable; their names."""
    name = doc["metadata"]["name"]
    moved = copy.deepcopy(doc)
    moved["components"][0]["node_placement"] = {"continuum_layer": ["edge"], "labels": ["camera"]}
    news = {deployment_name(name, "worker", n, "uth-edge") for n in ("edge-1", "edge-2")}
    for held in news:
        standin.hold(held)
    kube.apply(moved, field_manager="test-user")
    return news


def test_changed_constraints_re_place_the_component_make_before_break(kube, world, controllers, standin):
    """Defect 6: a component whose description moves it to [edge] used to stay on its cloud node."""
    doc = app("mover", component("worker", node_placement={"continuum_layer": ["cloud"]}))
    kube.apply(doc, field_manager="test-user")
    controller = controllers.start()
    first = wait_for(lambda: in_phase(kube, "Deployed", "mover"), what="mover Deployed")
    assert first["placement"][0]["node"] == "cloud-1"
    old = deployment_name("mover", "worker", "cloud-1", "uth-edge")
    assert set(workloads(kube)) == {old}

    news = move_to_edge(kube, standin, doc)
    wait_for(lambda: news & set(workloads(kube)), what="the replacement Deployment")
    wait_for(lambda: controller.outcomes["mover"].retry, what="a reconcile waiting for the replacement")
    assert old in workloads(kube)  # make-before-break: the old one still serves
    moving = wait_for(
        lambda: (x := status(kube, "mover")).get("observedGeneration") == 2 and x,
        what="the status of generation 2",
    )
    (placed,) = moving["placement"]
    assert placed["action"] == "relocate" and placed["previousNode"] == "cloud-1"
    reason = moving["explanation"][0]["reason"]
    assert "constraints changed: cloud-1 fails continuum_layer: layer cloud, needs edge" in reason
    for name in news:
        standin.release(name)
    wait_for(lambda: old not in workloads(kube), what="the old Deployment removed")
    s = wait_for(lambda: in_phase(kube, "Deployed", "mover", generation=2), what="re-placed")
    assert s["placement"][0]["node"] == placed["node"] in ("edge-1", "edge-2")
    assert set(workloads(kube)) == {deployment_name("mover", "worker", placed["node"], "uth-edge")}


def _faredge_registry() -> MechanismRegistry:
    return MechanismRegistry(
        {"kubernetes": KubernetesMechanism.from_context, "faredge": FarEdgeMechanism.from_context}
    )


def test_a_far_edge_component_is_never_a_pod_and_awaits_a_bridge(kube, world, controllers):
    """Defect 7: far-edge components used to become Deployments with node affinity to an MCU.
    Without a bridge to hand them to they stay pending, saying so (the hand-off itself is
    tests/controller/integration/test_ctlfaredge_ota.py's)."""
    kube.apply(
        {
            "apiVersion": "mlsysops.eu/v1",
            "kind": "MLSysOpsNode",
            "metadata": {"name": "faredge-1", "namespace": NAMESPACE},
            "continuum_layer": "far_edge",
            "cluster_id": "uth-edge",
            "environment": {"node_type": "bare_metal", "container_runtime": ["emb_serve"]},
            "hardware": {"mcu": {"architecture": "arm-M4", "flash": "2MB", "cores": 1}, "memory": 0},
        },
        field_manager="test-admin",
    )
    sensor = component(
        "sensor",
        node_placement={"continuum_layer": ["far_edge"]},
        container={
            "image": "file:///srv/mlsysops/sensor",
            "platform_requirements": {"mcu": {"architecture": ["arm-m4"]}},
            "ports": [{"container_port": 1883, "name": "mqtt"}],
        },
    )
    kube.apply(
        app("field", sensor, component("collector", node_placement={"continuum_layer": ["edge"]})),
        field_manager="test-user",
    )
    controllers.start(mechanism_registry=_faredge_registry(), mechanisms=("kubernetes", "faredge"))
    s = wait_for(lambda: in_phase(kube, "Degraded", "field"), what="field Degraded")

    assert {p["component"]: p["node"] for p in s["placement"]}["sensor"] == "faredge-1"
    assert sorted(workloads(kube).values()) == ["collector"]  # no Deployment for the sensor
    assert kube.list(R.JOB, NAMESPACE)[0] == []
    assert [sv["metadata"]["name"] for sv in kube.list(R.SERVICE, NAMESPACE)[0]] == []
    ready = conditions(s)["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "AwaitingDeployment"
    assert f"sensor on faredge-1: {NO_BRIDGE}" in ready["message"]
    assert conditions(s)["Planned"]["status"] == "True"


def test_runtime_classes_are_deleted_once_no_workload_needs_them(kube, world, app_doc, controllers):
    """Defect 9: RuntimeClasses used to stay forever. Shared between apps: one goes only when no
    workload the controller wrote (in any app) names it."""
    kube.apply(app_doc, field_manager="test-user")  # detector: crun, trainer: nvidia
    other = app(
        "other", component("scanner", runtime_class_name="crun", node_placement={"continuum_layer": ["edge"]})
    )
    kube.apply(other, field_manager="test-user")
    controllers.start()
    wait_for(lambda: in_phase(kube, "Deployed") and in_phase(kube, "Deployed", "other"), what="both Deployed")
    assert sorted(r["metadata"]["name"] for r in kube.list(R.RUNTIME_CLASS, "")[0]) == ["crun", "nvidia"]

    kube.delete(R.APP, NAMESPACE, APP)
    wait_for(
        lambda: [r["metadata"]["name"] for r in kube.list(R.RUNTIME_CLASS, "")[0]] == ["crun"],
        what="nvidia released, crun kept for the other app",
    )
    without = copy.deepcopy(other)
    del without["components"][0]["runtime_class_name"]
    kube.apply(without, field_manager="test-user")
    wait_for(lambda: kube.list(R.RUNTIME_CLASS, "")[0] == [], what="crun released")
    wait_for(lambda: in_phase(kube, "Deployed", "other", generation=2), what="other generation 2 Deployed")


def test_waiting_for_a_replacement_watches_instead_of_polling_and_the_status_says_progressing(
        kube, world, controllers, standin):
    """Defect 8: availability waits used to LIST every 50 ms for up to 30 s, and the status
    stayed Ready=True meanwhile."""
    doc = app("waiter", component("worker", node_placement={"continuum_layer": ["cloud"]}))
    kube.apply(doc, field_manager="test-user")
    controller = controllers.start(availability_timeout=3.0)
    wait_for(lambda: in_phase(kube, "Deployed", "waiter"), what="waiter Deployed")
    news = move_to_edge(kube, standin, doc)
    s = wait_for(lambda: (x := status(kube, "waiter")).get("observedGeneration") == 2 and x,
                 what="the status of generation 2")
    assert s["phase"] == "Deploying"
    assert {c["type"]: c["status"] for c in s["conditions"]} == {
        "Planned": "True", "Realized": "False", "Ready": "False", "Progressing": "True"}
    before = len(standin.requests)
    wait_for(lambda: controller.outcomes["waiter"].retry, what="the wait for the replacement timed out")
    lists = [path for method, path in standin.requests[before:]
             if method == "GET" and path.endswith("/deployments")]
    assert len(lists) <= 4, lists  # a list, then a watch: not one list per 50 ms
    for name in news:
        standin.release(name)
    done = wait_for(lambda: in_phase(kube, "Deployed", "waiter", generation=2), what="re-placed")
    conditions_now = {c["type"]: (c["status"], c["reason"]) for c in done["conditions"]}
    assert conditions_now["Ready"] == ("True", "Ready")
    assert conditions_now["Progressing"] == ("False", "Available")
