"""The reconcile loop against the stand-in API server, driven through the real kubernetes client.

Every object the controller writes is validated by the stand-in (kubernetes-validate, the
Karmada CRDs, deploy/crds): the `standin` fixture fails the test if any was rejected.
"""

from __future__ import annotations

from typing import Any

import pytest
from ctlkube_harness import APP, NAMESPACE, Running

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.kube.errors import Invalid
from controller.mechanisms.kubernetes_render import LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_PART_OF
from mlsysops.testing import wait_for


def names(kube: KubeApi, res: R.Resource) -> list[str]:
    return sorted(o["metadata"]["name"] for o in kube.list(res, NAMESPACE if res.namespaced else "")[0])


def deployed(kube: KubeApi, app: str = APP) -> dict[str, Any] | None:
    status = kube.get(R.APP, NAMESPACE, app).get("status") or {}
    return status if status.get("phase") == "Deployed" else None


def test_app_becomes_deployments_services_and_a_deployed_status(kube, world, app_doc, controllers: Running):
    kube.apply(app_doc, field_manager="test-user")
    controllers.start()
    status = wait_for(lambda: deployed(kube), what="app Deployed")

    placed = {p["component"]: p["node"] for p in status["placement"]}
    assert placed["dashboard"] == "cloud-1" and placed["trainer"] == "cloud-1"  # pinned / only GPU node
    assert placed["camera-reader"] in ("edge-1", "edge-2")  # edge + camera label
    assert status["placed"] == "4/4" and status["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Planned": "True", "Realized": "True", "Ready": "True", "Progressing": "False"}
    explained = {e["component"]: e for e in status["explanation"]}
    assert explained["dashboard"]["chosen"] == "cloud-1" and explained["dashboard"]["reason"]

    app_uid = kube.get(R.APP, NAMESPACE, APP)["metadata"]["uid"]
    deployments = kube.list(R.DEPLOYMENT, NAMESPACE)[0]
    assert len(deployments) == 4
    for dep in deployments:
        labels = dep["metadata"]["labels"]
        assert labels[LABEL_PART_OF] == APP and labels[LABEL_MANAGED_BY] == "mlsysops-controller"
        assert [r["uid"] for r in dep["metadata"]["ownerReferences"]] == [app_uid]
        assert any(m["manager"] == "mlsysops-controller" and m["operation"] == "Apply"
                   for m in dep["metadata"]["managedFields"])
    pods = {d["metadata"]["labels"][LABEL_COMPONENT]: d["spec"]["template"]["spec"] for d in deployments}
    assert pods["dashboard"]["nodeName"] == "cloud-1"  # static placement binds like the reference
    for component in ("camera-reader", "detector", "trainer"):  # policy choices: required node affinity
        terms = pods[component]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [placed[component]]
    assert pods["detector"]["runtimeClassName"] == "crun"
    assert names(kube, R.RUNTIME_CLASS) == ["crun", "nvidia"]
    # camera-reader and dashboard have ports; detector receives camera-reader's egress (headless)
    services = {s["metadata"]["name"]: s["spec"] for s in kube.list(R.SERVICE, NAMESPACE)[0]}
    assert set(services) == {f"{APP}-camera-reader", f"{APP}-detector", f"{APP}-dashboard"}
    assert services[f"{APP}-dashboard"]["type"] == "NodePort"  # external_access
    assert services[f"{APP}-detector"]["clusterIP"] == "None"


def test_a_second_controller_writes_nothing_and_duplicates_nothing(
        kube, world, app_doc, controllers, standin):
    kube.apply(app_doc, field_manager="test-user")
    first = controllers.start()
    wait_for(lambda: deployed(kube), what="app Deployed")
    controllers.stop(first)
    rv_before = standin.store.rv
    second = controllers.start()
    wait_for(lambda: second.outcomes.get(APP), what="second controller's reconcile")

    outcome = second.outcomes[APP]
    assert outcome.phase == "Deployed"
    assert [r.written for r in outcome.results] == [()]
    assert standin.store.rv == rv_before  # not even the status changed
    assert len(names(kube, R.DEPLOYMENT)) == 4


def test_restart_in_the_middle_of_a_reconcile_converges_without_duplicates(
        kube, world, app_doc, controllers, standin):
    kube.apply(app_doc, field_manager="test-user")
    # the API server dies after the controller's third write: the first run is cut short
    standin.store.on_write.append(_crash_after(standin, writes=3))
    first = controllers.start()
    wait_for(lambda: first.outcomes.get(APP) and first.outcomes[APP].retry, what="interrupted reconcile")
    controllers.stop(first)
    standin.recover()
    written = len(names(kube, R.DEPLOYMENT)) + len(names(kube, R.SERVICE))
    assert 0 < written < 7  # cut short half-way

    controllers.start()
    wait_for(lambda: deployed(kube), what="app Deployed after restart")
    assert len(names(kube, R.DEPLOYMENT)) == 4
    assert len(names(kube, R.SERVICE)) == 3


def _crash_after(standin: Any, writes: int) -> Any:
    seen: list[str] = []

    def hook(rtype: Any, event_type: str, obj: dict[str, Any]) -> None:
        if rtype.kind in ("Deployment", "Service", "RuntimeClass") and event_type == "ADDED":
            seen.append(obj["metadata"]["name"])
            if len(seen) == writes:
                standin.fail(503, count=10**6)

    return hook


def test_changing_the_app_is_reconciled_and_removed_components_are_deleted(kube, world, app_doc, controllers):
    kube.apply(app_doc, field_manager="test-user")
    controllers.start()
    wait_for(lambda: deployed(kube), what="app Deployed")

    app_doc["components"] = [c for c in app_doc["components"] if c["metadata"]["name"] != "trainer"]
    kube.apply(app_doc, field_manager="test-user")
    wait_for(lambda: (s := deployed(kube)) and s["observedGeneration"] == 2, what="generation 2 Deployed")
    assert not any("trainer" in n for n in names(kube, R.DEPLOYMENT))
    assert len(names(kube, R.DEPLOYMENT)) == 3


def test_deleting_the_app_deletes_everything_it_owns(kube, world, app_doc, controllers):
    kube.apply(app_doc, field_manager="test-user")
    controller = controllers.start()
    wait_for(lambda: deployed(kube), what="app Deployed")

    assert kube.delete(R.APP, NAMESPACE, APP)
    wait_for(lambda: (o := controller.outcomes.get(APP)) and o.phase == "Deleted", what="removal reconciled")
    wait_for(lambda: names(kube, R.DEPLOYMENT) == [] and names(kube, R.SERVICE) == [], what="dependents gone")
    # shared and cluster-scoped: released once no workload of any app names them
    wait_for(lambda: names(kube, R.RUNTIME_CLASS) == [], what="the RuntimeClasses released")


def test_an_invalid_app_gets_a_failed_status_naming_the_field(kube, world, app_doc, controllers, standin):
    app_doc["components"][1]["depends_on"] = ["camera-writer"]  # schema-valid, semantically wrong
    kube.apply(app_doc, field_manager="test-user")
    controller = controllers.start()
    wait_for(lambda: controller.outcomes.get(APP), what="reconcile")

    status = kube.get(R.APP, NAMESPACE, APP)["status"]
    assert status["phase"] == "Failed"
    planned = next(c for c in status["conditions"] if c["type"] == "Planned")
    assert planned["status"] == "False" and planned["reason"] == "InvalidDescription"
    assert "components[1].depends_on[0]" in planned["message"]
    assert not controller.outcomes[APP].retry
    assert names(kube, R.DEPLOYMENT) == [] and names(kube, R.JOB) == []


def test_a_wrongly_cased_restart_policy_is_refused_by_the_api_server_naming_the_field(
        kube, world, app_doc, validator):
    app_doc["components"][0]["restart_policy"] = "on_failure"
    with pytest.raises(Invalid) as info:
        kube.apply(app_doc, field_manager="test-user")
    assert "components.0.restart_policy" in info.value.message and "on_failure" in info.value.message
    assert [name for name, _ in validator.rejected] == [f"MLSysOpsApp/{APP}"]
    validator.rejected.clear()  # expected: the fixture fails on rejections of the controller's writes


def test_components_that_must_not_restart_always_run_as_jobs_owned_by_the_app(
        kube, world, app_doc, controllers, standin):
    trainer = next(c for c in app_doc["components"] if c["metadata"]["name"] == "trainer")
    trainer["restart_policy"] = "OnFailure"
    kube.apply(app_doc, field_manager="test-user")
    controller = controllers.start()
    status = wait_for(lambda: deployed(kube), what="app Deployed")
    assert {p["component"]: p["node"] for p in status["placement"]}["trainer"] == "cloud-1"

    [job] = kube.list(R.JOB, NAMESPACE)[0]
    app_uid = kube.get(R.APP, NAMESPACE, APP)["metadata"]["uid"]
    assert job["metadata"]["labels"][LABEL_COMPONENT] == "trainer"
    assert job["metadata"]["labels"][LABEL_PART_OF] == APP
    assert [r["uid"] for r in job["metadata"]["ownerReferences"]] == [app_uid]
    assert any(m["manager"] == "mlsysops-controller" and m["operation"] == "Apply"
               for m in job["metadata"]["managedFields"])
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure" and pod["runtimeClassName"] == "nvidia"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["cloud-1"]
    assert not any("trainer" in n for n in names(kube, R.DEPLOYMENT))
    assert len(names(kube, R.DEPLOYMENT)) == 3

    # a finished Job is left alone: a restarted controller neither rewrites nor reruns it
    controllers.stop(controller)
    standin.complete(job["metadata"]["name"], NAMESPACE)
    finished = kube.get(R.JOB, NAMESPACE, job["metadata"]["name"])
    controller = controllers.start()
    wait_for(lambda: controller.outcomes.get(APP), what="the restarted controller's reconcile")
    assert controller.outcomes[APP].phase == "Deployed"
    assert [r.written for r in controller.outcomes[APP].results] == [()]
    assert kube.list(R.JOB, NAMESPACE)[0] == [finished]

    assert kube.delete(R.APP, NAMESPACE, APP)
    wait_for(lambda: (o := controller.outcomes.get(APP)) and o.phase == "Deleted", what="removal reconciled")
    wait_for(lambda: names(kube, R.JOB) == [] and names(kube, R.DEPLOYMENT) == [], what="the Job gone")


def test_changing_a_jobs_spec_replaces_the_job_instead_of_updating_it(kube, world, app_doc, controllers):
    trainer = next(c for c in app_doc["components"] if c["metadata"]["name"] == "trainer")
    trainer["restart_policy"] = "Never"
    kube.apply(app_doc, field_manager="test-user")
    controllers.start()
    wait_for(lambda: deployed(kube), what="app Deployed")
    [first] = names(kube, R.JOB)

    trainer["containers"][0]["image"] = "registry.example.com/trainer:1.0"  # the template is immutable
    kube.apply(app_doc, field_manager="test-user")
    wait_for(lambda: (s := deployed(kube)) and s["observedGeneration"] == 2, what="generation 2 Deployed")
    [second] = kube.list(R.JOB, NAMESPACE)[0]
    assert second["metadata"]["name"] != first
    assert second["spec"]["template"]["spec"]["containers"][0]["image"].endswith("trainer:1.0")


def test_across_two_clusters_karmada_policies_are_written_and_valid(kube, world, app_doc, controllers):
    cloud = next(d for d in world if d["metadata"]["name"] == "cloud-1")
    kube.apply({**cloud, "cluster_id": "uth-cloud"}, field_manager="test-admin")
    kube.apply({"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsCluster",
                "metadata": {"name": "uth-edge", "namespace": NAMESPACE},
                "cluster_id": "uth-edge", "nodes": ["edge-1", "edge-2"]}, field_manager="test-admin")
    kube.apply(app_doc, field_manager="test-user")
    controllers.start(mechanisms=("kubernetes", "karmada"))
    status = wait_for(lambda: deployed(kube), what="app Deployed")
    clusters = {p["cluster"] for p in status["placement"]}
    assert clusters == {"uth-cloud", "uth-edge"}

    [policy] = kube.list(R.PROPAGATION_POLICY, NAMESPACE)[0]
    assert policy["spec"]["placement"]["clusterAffinity"]["clusterNames"] == ["uth-cloud", "uth-edge"]
    templates = len(names(kube, R.DEPLOYMENT)) + len(names(kube, R.SERVICE))
    assert len(policy["spec"]["resourceSelectors"]) == templates
    overrides = kube.list(R.OVERRIDE_POLICY, NAMESPACE)[0]
    assert len(overrides) == 4  # every component runs in one of the two clusters only
    app_uid = kube.get(R.APP, NAMESPACE, APP)["metadata"]["uid"]
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == app_uid for o in [policy, *overrides])


def test_apps_are_planned_against_the_capacity_other_apps_hold(kube, world, controllers):
    def hungry(name: str) -> dict[str, Any]:
        container = {"image": "registry.example.com/solver:1",
                     "platform_requirements": {"cpu": {"requests": "6"}}}
        return {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "components": [{"metadata": {"name": "solver"}, "containers": [container],
                                "node_placement": {"continuum_layer": ["edge"]}}]}

    before_restart = controllers.start()
    kube.apply(hungry("zeta"), field_manager="test-user")
    first = wait_for(lambda: deployed(kube, "zeta"), what="zeta Deployed")
    assert first["placement"][0]["node"] == "edge-2"  # the only edge node with 6 free CPUs
    controllers.stop(before_restart)

    # created while no controller runs, and reconciled first after the restart (sorted by name):
    # the new controller knows what zeta holds from zeta's status before planning anything
    kube.apply(hungry("alpha"), field_manager="test-user")
    controllers.start()
    second = wait_for(lambda: _status_in_phase(kube, "alpha", "Degraded"), what="alpha Degraded")
    assert second["placement"][0]["node"] is None
    assert "cpu" in second["explanation"][0]["reason"]


def _status_in_phase(kube: KubeApi, app: str, phase: str) -> dict[str, Any] | None:
    status = kube.get(R.APP, NAMESPACE, app).get("status") or {}
    return status if status.get("phase") == phase else None
