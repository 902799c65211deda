"""The stand-in behaves like kube-apiserver for what the controller uses, as seen through the
real `kubernetes` client (typed APIs, CustomObjectsApi, DynamicClient, kubernetes.watch)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kube_standin import StandIn
from kube_validators import RecordingValidator, validate
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

NS = "team-a"
GROUP, VERSION, APPS = "mlsysops.eu", "v1", "mlsysopsapps"


def deployment(name: str = "web", replicas: int = 1, **labels: str) -> dict[str, Any]:
    pod_labels = {"app": name, **labels}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": pod_labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": pod_labels},
                                  "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}}


def mlsapp(name: str = "shop") -> dict[str, Any]:
    return {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp", "metadata": {"name": name},
            "components": [{"metadata": {"name": "web"}, "containers": [{"image": "nginx"}]}]}


def status_of(exc: pytest.ExceptionInfo[ApiException]) -> int:
    return int(exc.value.status)


def test_discovery_serves_our_groups_to_the_dynamic_client(api, tmp_path):
    dynamic = DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    apps = dynamic.resources.get(api_version="mlsysops.eu/v1", kind="MLSysOpsApp")
    assert (apps.name, apps.namespaced, apps.short_names) == ("mlsysopsapps", True, ["mlsapp"])
    runtime_class = dynamic.resources.get(api_version="node.k8s.io/v1", kind="RuntimeClass")
    assert runtime_class.namespaced is False
    pp = dynamic.resources.get(api_version="policy.karmada.io/v1alpha1", kind="PropagationPolicy")
    assert pp.name == "propagationpolicies"
    assert dynamic.resources.get(api_version="v1", kind="Service").name == "services"
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]


def test_create_sets_identity_and_a_second_create_is_409(api):
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment(NS, deployment())
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.metadata.generation == 1 and created.metadata.namespace == NS
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment(NS, deployment())
    assert status_of(exc) == 409 and "already exists" in exc.value.body


def test_update_with_a_stale_resource_version_is_409_and_generation_tracks_spec(api):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(NS, deployment())
    first = apps.read_namespaced_deployment("web", NS)  # after the rollout wrote its status
    first.spec.replicas = 3
    second = apps.replace_namespaced_deployment("web", NS, first)
    assert second.metadata.generation == 2
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    first.spec.replicas = 5  # still carries the old resourceVersion
    with pytest.raises(ApiException) as exc:
        apps.replace_namespaced_deployment("web", NS, first)
    assert status_of(exc) == 409
    labelled = apps.patch_namespaced_deployment("web", NS, {"metadata": {"labels": {"tier": "front"}}})
    assert labelled.metadata.generation == 2  # metadata changes do not bump the generation


def test_get_missing_is_404_and_list_filters_by_label(api):
    apps = client.AppsV1Api(api)
    with pytest.raises(ApiException) as exc:
        apps.read_namespaced_deployment("nope", NS)
    assert status_of(exc) == 404
    apps.create_namespaced_deployment(NS, deployment("a", tier="front"))
    apps.create_namespaced_deployment(NS, deployment("b", tier="back"))
    apps.create_namespaced_deployment("other", deployment("c", tier="front"))
    listed = apps.list_namespaced_deployment(NS, label_selector="tier=front")
    assert [d.metadata.name for d in listed.items] == ["a"]
    assert int(listed.metadata.resource_version) >= 3
    everywhere = apps.list_deployment_for_all_namespaces(label_selector="tier!=back")
    assert sorted(d.metadata.name for d in everywhere.items) == ["a", "c"]


def test_merge_and_strategic_merge_patches(api):
    apps = client.AppsV1Api(api)
    body = deployment()
    body["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
    apps.create_namespaced_deployment(NS, body)
    # strategic merge (the client's default for dict bodies): containers merge by name
    main = {"name": "main", "image": "nginx:1.28"}
    patch = {"spec": {"template": {"spec": {"containers": [main]}}}}
    patched = apps.patch_namespaced_deployment("web", NS, patch)
    images = {c.name: c.image for c in patched.spec.template.spec.containers}
    assert images == {"main": "nginx:1.28", "sidecar": "envoy:1"}
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, APPS, mlsapp())
    merged = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, APPS, "shop",
                                                   {"permitted_actions": ["*"], "components": None},
                                                   _content_type="application/merge-patch+json")
    assert merged["permitted_actions"] == ["*"] and "components" not in merged
    with pytest.raises(ApiException) as exc:  # no strategic merge for custom resources, as on a real server
        custom.patch_namespaced_custom_object(GROUP, VERSION, NS, APPS, "shop", {"name": "x"},
                                              _content_type="application/strategic-merge-patch+json")
    assert status_of(exc) == 415


def test_server_side_apply_owns_fields_removes_dropped_ones_and_reports_conflicts(api):
    apps = client.AppsV1Api(api)

    def apply(body: dict[str, Any], manager: str, force: bool = False) -> Any:
        return apps.patch_namespaced_deployment(body["metadata"]["name"], NS, body, field_manager=manager,
                                                force=force, _content_type="application/apply-patch+yaml")

    body = deployment()
    body["metadata"]["annotations"] = {"note": "v1"}
    apply(body, "ctl")
    created = apps.read_namespaced_deployment("web", NS)
    assert ("ctl", "Apply") in [(m.manager, m.operation) for m in created.metadata.managed_fields]
    assert apply(body, "ctl").metadata.resource_version == created.metadata.resource_version  # no-op

    del body["metadata"]["annotations"]
    assert apply(body, "ctl").metadata.annotations is None  # the manager stopped setting it

    other = deployment(replicas=4)
    with pytest.raises(ApiException) as exc:
        apply(other, "someone")
    assert status_of(exc) == 409 and "spec.replicas" in exc.value.body
    assert apply(other, "someone", force=True).spec.replicas == 4
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment("web", NS, body, _content_type="application/apply-patch+yaml")
    assert status_of(exc) == 400  # fieldManager is required


def test_status_subresource_is_separate_from_the_main_resource(api):
    custom = client.CustomObjectsApi(api)
    body = mlsapp()
    body["status"] = {"phase": "Deployed"}
    created = custom.create_namespaced_custom_object(GROUP, VERSION, NS, APPS, body)
    assert "status" not in created  # ignored on the main resource
    created["status"] = {"phase": "Planned"}
    created["permitted_actions"] = ["*"]
    updated = custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, APPS, "shop", created)
    assert updated["status"] == {"phase": "Planned"} and "permitted_actions" not in updated
    assert updated["metadata"]["generation"] == 1
    with pytest.raises(ApiException) as exc:  # created's resourceVersion is stale now
        custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, APPS, "shop", created)
    assert status_of(exc) == 409


def test_deleting_an_owner_deletes_its_dependents_unless_orphaned(api):
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, NS, APPS, mlsapp())
    ref = {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp", "name": "shop",
           "uid": owner["metadata"]["uid"], "controller": True}
    for name in ("a", "b"):
        body = deployment(name)
        body["metadata"]["ownerReferences"] = [ref]
        apps.create_namespaced_deployment(NS, body)
    apps.create_namespaced_deployment(NS, deployment("unrelated"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, APPS, "shop")
    assert [d.metadata.name for d in apps.list_namespaced_deployment(NS).items] == ["unrelated"]

    owner = custom.create_namespaced_custom_object(GROUP, VERSION, NS, APPS, mlsapp())
    body = deployment("kept")
    body["metadata"]["ownerReferences"] = [{**ref, "uid": owner["metadata"]["uid"]}]
    apps.create_namespaced_deployment(NS, body)
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, APPS, "shop", propagation_policy="Orphan")
    kept = apps.read_namespaced_deployment("kept", NS)
    assert kept.metadata.owner_references is None


def test_watch_streams_from_a_resource_version_and_expires_to_410(api, standin: StandIn):
    custom = client.CustomObjectsApi(api)
    first = custom.create_namespaced_custom_object(GROUP, VERSION, NS, APPS, mlsapp("a"))
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, APPS, mlsapp("b"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, APPS, "a")
    events = [(e["type"], e["object"]["metadata"]["name"]) for e in watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, NS, APPS,
        resource_version=first["metadata"]["resourceVersion"], timeout_seconds=1)]
    assert events == [("ADDED", "b"), ("DELETED", "a")]

    standin.store.compact()
    with pytest.raises(ApiException) as exc:
        list(watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, NS, APPS,
                                  resource_version=first["metadata"]["resourceVersion"], timeout_seconds=1))
    assert status_of(exc) == 410


def test_a_watch_sees_writes_made_while_it_streams(api):
    custom = client.CustomObjectsApi(api)
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, NS, APPS)
    seen: list[str] = []
    writer = threading.Timer(0.2, lambda: custom.create_namespaced_custom_object(GROUP, VERSION, NS, APPS,
                                                                                  mlsapp("late")))
    writer.start()
    stream = watch.Watch()
    for event in stream.stream(custom.list_namespaced_custom_object, GROUP, VERSION, NS, APPS,
                               resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=5):
        seen.append(event["object"]["metadata"]["name"])
        stream.stop()
    writer.join()
    assert seen == ["late"]


def test_a_bounded_history_expires_old_resource_versions():
    with StandIn(history=3) as small:
        config = client.Configuration()
        config.host = small.host
        with client.ApiClient(config) as api:
            custom = client.CustomObjectsApi(api)
            for i in range(5):
                custom.create_namespaced_custom_object(GROUP, VERSION, NS, APPS, mlsapp(f"a{i}"))
            with pytest.raises(ApiException) as exc:
                list(watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, NS, APPS,
                                          resource_version="1", timeout_seconds=1))
            assert status_of(exc) == 410


def test_the_validator_rejects_invalid_objects_with_422():
    validator = RecordingValidator()
    with StandIn(validator=validator) as checked:
        config = client.Configuration()
        config.host = checked.host
        with client.ApiClient(config) as api:
            bad = deployment()
            bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 7
            with pytest.raises(ApiException) as exc:  # (the typed API would refuse it client-side)
                client.CustomObjectsApi(api).create_namespaced_custom_object(
                    "apps", "v1", NS, "deployments", bad)
            assert status_of(exc) == 422
            policy = {"apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy",
                      "metadata": {"name": "p"}, "spec": {"resourceSelectors": [{"kind": "Deployment"}]}}
            with pytest.raises(ApiException) as exc:  # apiVersion is required in a selector
                client.CustomObjectsApi(api).create_namespaced_custom_object(
                    "policy.karmada.io", "v1alpha1", NS, "propagationpolicies", policy)
            assert status_of(exc) == 422
    assert [name for name, _ in validator.rejected] == ["Deployment/web", "PropagationPolicy/p"]


@pytest.mark.parametrize(("obj", "fragment"), [
    ({**mlsapp(), "components": [{"metadata": {"name": "w"}}]}, "containers"),
    ({**mlsapp(), "status": {"phase": "Sleeping"}}, "Sleeping"),
    ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": "80"}]}},
     "spec.ports.0.port"),
])
def test_validators_name_what_is_wrong(obj: dict[str, Any], fragment: str):
    errors = validate(obj)
    assert errors and any(fragment in e for e in errors)


def test_a_dependent_written_after_its_owner_is_gone_is_collected(api):
    apps = client.AppsV1Api(api)
    body = deployment("late")
    body["metadata"]["ownerReferences"] = [{"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
                                            "name": "gone", "uid": "00000000-dead-4bad-8bad-000000000000"}]
    apps.create_namespaced_deployment(NS, body)
    assert apps.list_namespaced_deployment(NS).items == []


def job(name: str = "train", **labels: str) -> dict[str, Any]:
    pod_labels = {"app": name, **labels}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": pod_labels},
            "spec": {"parallelism": 1, "completions": 1,
                     "template": {"metadata": {"labels": pod_labels},
                                  "spec": {"restartPolicy": "OnFailure",
                                           "containers": [{"name": "main", "image": "trainer:1"}]}}}}


def test_jobs_are_discovered_created_applied_run_and_completed(api, tmp_path, standin: StandIn):
    dynamic = DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    jobs_resource = dynamic.resources.get(api_version="batch/v1", kind="Job")
    assert (jobs_resource.name, jobs_resource.namespaced) == ("jobs", True)

    batch = client.BatchV1Api(api)
    created = batch.create_namespaced_job(NS, job())
    assert created.metadata.uid and created.metadata.generation == 1
    running = batch.read_namespaced_job("train", NS)  # the job "controller" started its pod
    assert (running.status.active, running.status.ready) == (1, 1) and running.status.start_time

    body = job()
    body["metadata"]["annotations"] = {"note": "metadata may change"}
    applied = batch.patch_namespaced_job("train", NS, body, field_manager="ctl", force=True,
                                         _content_type="application/apply-patch+yaml")
    assert applied.metadata.annotations == {"note": "metadata may change"}
    listed = batch.list_namespaced_job(NS, label_selector="app=train").items
    assert [j.metadata.name for j in listed] == ["train"]

    standin.complete("train", NS)
    done = batch.read_namespaced_job("train", NS)
    assert done.status.succeeded == 1 and {c.type for c in done.status.conditions} >= {"Complete"}
    batch.delete_namespaced_job("train", NS)
    assert batch.list_namespaced_job(NS).items == []


def test_a_jobs_pod_template_is_immutable(api):
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(NS, job())
    changed = job()
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "trainer:2"
    with pytest.raises(ApiException) as exc:
        batch.patch_namespaced_job("train", NS, changed, field_manager="ctl", force=True,
                                   _content_type="application/apply-patch+yaml")
    assert status_of(exc) == 422 and "spec.template" in exc.value.body and "immutable" in exc.value.body
    assert batch.read_namespaced_job("train", NS).spec.template.spec.containers[0].image == "trainer:1"


def test_deleting_an_owner_deletes_its_jobs(api):
    custom, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, NS, APPS, mlsapp())
    body = job("owned")
    body["metadata"]["ownerReferences"] = [{"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
                                            "name": "shop", "uid": owner["metadata"]["uid"]}]
    batch.create_namespaced_job(NS, body)
    batch.create_namespaced_job(NS, job("unrelated"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, APPS, "shop")
    assert [j.metadata.name for j in batch.list_namespaced_job(NS).items] == ["unrelated"]


def test_invalid_jobs_are_rejected_with_422():
    validator = RecordingValidator()
    with StandIn(validator=validator) as checked:
        config = client.Configuration()
        config.host = checked.host
        with client.ApiClient(config) as api:
            bad = job()
            bad["spec"]["parallelism"] = "two"
            with pytest.raises(ApiException) as exc:
                client.CustomObjectsApi(api).create_namespaced_custom_object("batch", "v1", NS, "jobs", bad)
            assert status_of(exc) == 422 and "parallelism" in exc.value.body
    assert [name for name, _ in validator.rejected] == ["Job/train"]
