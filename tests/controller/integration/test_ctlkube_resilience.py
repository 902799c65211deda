"""What real API servers do to controllers: compacted histories (410), concurrent writers
(409), outages (503 / unreachable), and nodes disappearing under running components."""

from __future__ import annotations

from ctlkube_harness import APP, NAMESPACE, Running

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.mechanisms.kubernetes_render import LABEL_COMPONENT, deployment_name
from controller.reconcile.bootstrap import USER_AGENT as CONTROLLER
from mlsysops.testing import wait_for


def phase(kube: KubeApi) -> tuple[str | None, int | None]:
    status = kube.get(R.APP, NAMESPACE, APP).get("status") or {}
    return status.get("phase"), status.get("observedGeneration")


def scale_dashboard(kube: KubeApi, app_doc: dict, instances: int) -> None:
    dashboard = next(c for c in app_doc["components"] if c["metadata"]["name"] == "dashboard")
    dashboard["node_placement"]["scaling"] = {"scaling_mode": "manual", "instances": instances}
    kube.apply(app_doc, field_manager="test-user")


def dashboard_replicas(kube: KubeApi) -> int:
    deps = [d for d in kube.list(R.DEPLOYMENT, NAMESPACE)[0]
            if d["metadata"]["labels"][LABEL_COMPONENT] == "dashboard"]
    return sum(d["spec"]["replicas"] for d in deps)


def test_a_compacted_watch_history_is_recovered_by_relisting(kube, world, app_doc, controllers: Running,
                                                             standin):
    kube.apply(app_doc, field_manager="test-user")
    controller = controllers.start()
    wait_for(lambda: phase(kube) == ("Deployed", 1), what="Deployed")

    # the controller loses its watches; meanwhile the store moves on and compacts its history
    standin.fail(503, count=10**6, method="GET", client=CONTROLLER)
    failed = controller.apps.failures
    wait_for(lambda: controller.apps.failures > failed, what="the apps watch broken")
    unrelated = {"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80}]},
                 "metadata": {"name": "unrelated", "namespace": NAMESPACE}}
    kube.apply(unrelated, field_manager="someone-else")
    standin.store.compact()
    standin.recover()
    wait_for(lambda: controller.apps.relists >= 1, what="apps informer relist after 410 Gone")

    scale_dashboard(kube, app_doc, 2)
    wait_for(lambda: phase(kube) == ("Deployed", 2), what="change seen after the relist")
    assert dashboard_replicas(kube) == 2


def test_a_conflicting_status_update_is_reread_and_retried(kube, world, app_doc, controllers, standin):
    kube.apply(app_doc, field_manager="test-user")
    standin.fail(409, count=2, method="PUT", client=CONTROLLER)  # the only PUTs are status writes
    controllers.start()
    wait_for(lambda: phase(kube) == ("Deployed", 1), what="Deployed despite two 409s")
    assert standin.take_fault("PUT", CONTROLLER) is None  # both conflicts were consumed by retries
    assert [m for m, p in standin.requests if m == "PUT"].count("PUT") >= 3


def test_an_api_outage_is_ridden_out_with_backoff(kube, world, app_doc, controllers, standin):
    kube.apply(app_doc, field_manager="test-user")
    standin.fail(503, count=12, client=CONTROLLER)
    controller = controllers.start()
    wait_for(lambda: phase(kube) == ("Deployed", 1), what="Deployed after the outage")
    assert controller.apps.failures + controller.nodes.failures + controller.clusters.failures > 0

    standin.fail(503, count=6, method="PATCH", client=CONTROLLER)  # writes fail while the spec changes
    scale_dashboard(kube, app_doc, 3)
    wait_for(lambda: phase(kube) == ("Deployed", 2), what="the change applied after writes recover")
    assert dashboard_replicas(kube) == 3


def test_an_unreachable_api_server_is_retried_then_reconciled(kube, world, app_doc, standin):
    """The controller started before the API server answers: informers back off, then sync."""
    from ctlkube_harness import FakeAgents, registry

    from controller.kube.client import api_client_for_host
    from controller.reconcile.bootstrap import Config, build

    dead = build(Config(namespace=NAMESPACE, mechanisms=("kubernetes",), watch_timeout=1),
                 api_client_for_host("http://127.0.0.1:9"), agents=FakeAgents(), registry=registry())
    import threading

    stop = threading.Event()
    dead.start(stop)
    try:
        wait_for(lambda: dead.apps.failures >= 2, what="informer failures against a closed port")
        assert not dead.apps.synced.is_set()
    finally:
        stop.set()
        dead.shutdown()


def test_relocation_brings_the_new_instance_up_before_removing_the_old(kube, world, app_doc, controllers,
                                                                       standin):
    kube.apply(app_doc, field_manager="test-user")
    controller = controllers.start()
    wait_for(lambda: phase(kube) == ("Deployed", 1), what="Deployed")
    placement = {p["component"]: p["node"] for p in kube.get(R.APP, NAMESPACE, APP)["status"]["placement"]}
    old_node = placement["camera-reader"]
    new_node = "edge-2" if old_node == "edge-1" else "edge-1"
    old = deployment_name(APP, "camera-reader", old_node, "uth-edge")
    new = deployment_name(APP, "camera-reader", new_node, "uth-edge")
    standin.hold(new)  # its pods will not become ready until released

    kube.delete(R.NODE, NAMESPACE, old_node)  # the node disappears
    wait_for(lambda: new in deployments(kube), what="the replacement Deployment")
    wait_for(lambda: controller.outcomes[APP].retry, what="a reconcile waiting for the replacement")
    assert old in deployments(kube)  # make-before-break: the old one still serves

    standin.release(new)
    wait_for(lambda: old not in deployments(kube), what="the old Deployment removed")
    status = wait_for(lambda: phase(kube)[0] == "Deployed" and kube.get(R.APP, NAMESPACE, APP)["status"],
                      what="Deployed after relocation")
    assert {p["component"]: p["node"] for p in status["placement"]}["camera-reader"] == new_node


def deployments(kube: KubeApi) -> set[str]:
    return {d["metadata"]["name"] for d in kube.list(R.DEPLOYMENT, NAMESPACE)[0]}


def test_a_job_gates_its_dependents_and_is_replaced_when_its_node_disappears(kube, world, app_doc,
                                                                             controllers, standin):
    """A Job counts as up for depends_on once its pod is ready; a Job cannot be kept serving
    while a replacement starts, so on a placement change the new one is created, then the old
    one deleted, in the same pass."""
    reader = next(c for c in app_doc["components"] if c["metadata"]["name"] == "camera-reader")
    reader["restart_policy"] = "OnFailure"
    kube.apply(app_doc, field_manager="test-user")
    controllers.start()
    wait_for(lambda: phase(kube) == ("Deployed", 1), what="Deployed")
    [old] = kube.list(R.JOB, NAMESPACE)[0]
    old_node = old["metadata"]["annotations"]["mlsysops.eu/node"]

    def first_rv(kind: str, name_part: str, event_type: str, running: bool = False) -> int:
        return min(e.rv for e in standin.store.events
                   if e.obj["kind"] == kind and name_part in e.obj["metadata"]["name"]
                   and e.type == event_type and (not running or (e.obj.get("status") or {}).get("ready")))

    job_running = first_rv("Job", old["metadata"]["name"], "MODIFIED", running=True)
    assert first_rv("Deployment", "detector", "ADDED") > job_running  # detector depends_on camera-reader

    kube.delete(R.NODE, NAMESPACE, old_node)
    wait_for(lambda: (jobs := kube.list(R.JOB, NAMESPACE)[0]) and jobs[0]["metadata"]["name"] !=
             old["metadata"]["name"] and len(jobs) == 1, what="the Job replaced")
    [new] = kube.list(R.JOB, NAMESPACE)[0]
    assert new["metadata"]["annotations"]["mlsysops.eu/node"] != old_node
    assert first_rv("Job", old["metadata"]["name"], "DELETED") > first_rv("Job", new["metadata"]["name"],
                                                                          "ADDED")
