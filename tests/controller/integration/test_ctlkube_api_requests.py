"""What one reconcile asks of the API server (issue 12, api_requests_per_reconcile): the app,
the node settings record and the app's Deployments, Jobs and Services come from the informers'
caches, so a new app costs its writes and nothing else; and the cached lists read the
controller's own writes at once, before the watch reports them."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from ctlkube_harness import NAMESPACE, Running, StandIn

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.kube.errors import Gone, NotFound
from controller.mechanisms.kubernetes_render import LABEL_MANAGED_BY, LABEL_PART_OF, MANAGED_BY
from controller.reconcile.cached import CachedLists
from controller.reconcile.informer import Informer
from mlsysops.testing import wait_for


def deployment(name: str, app: str) -> dict[str, Any]:
    labels = {LABEL_PART_OF: app, LABEL_MANAGED_BY: MANAGED_BY, "app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "c", "image": "registry.example.com/x:1"}]}}}}


def app(name: str) -> dict[str, Any]:
    return {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "components": [{"metadata": {"name": "web"}, "node_placement": {"continuum_layer": ["edge"]},
                            "containers": [{"image": "registry.example.com/web:1", "platform_requirements": {
                                "cpu": {"requests": "100m"}, "memory": {"requests": "64Mi"}}}]}]}  # fmt: skip


def test_a_new_app_costs_its_writes_and_no_read(kube: KubeApi, standin: StandIn, world: Any,
                                                 controllers: Running) -> None:
    controller = controllers.start(watch_timeout=8)  # no watch reconnect (a GET) meanwhile
    kube.apply(app("first"), field_manager="test-user")  # the first also waits for the informers
    wait_for(lambda: (kube.get(R.APP, NAMESPACE, "first").get("status") or {}).get("phase") == "Deployed",
             what="first")  # fmt: skip
    count = -1
    while controller.reconciles != count:  # idle: whatever the first app's events cause is over
        count = controller.reconciles
        time.sleep(0.5)
    before = len(standin.requests)
    kube.apply(app("second"), field_manager="test-user")
    wait_for(lambda: getattr(controller.outcomes.get("second"), "phase", None) == "Deployed", what="second")
    app_path = f"/apis/mlsysops.eu/v1/namespaces/{NAMESPACE}/mlsysopsapps/second"
    asked = [r for r in standin.requests[before:] if r != ("PATCH", app_path)]  # but the user's apply
    assert ("PUT", f"{app_path}/status") in asked  # the status written once Deployed
    reads = [(m, p) for m, p in asked if m == "GET"]
    assert reads == [], asked
    writes = [p for m, p in asked if m != "GET"]
    assert sum("/deployments/" in p for p in writes) == 1 and all("/mlsysopsapps/second" in p or
                                                                   "/deployments/" in p for p in writes)


def test_cached_lists_read_the_controllers_own_writes_before_the_watch_reports_them(
    kube: KubeApi, standin: StandIn
) -> None:
    kube.apply(deployment("old", "demo"), field_manager="test-admin")
    informer = Informer(kube, R.DEPLOYMENT, NAMESPACE, watch_timeout=1)
    stop = threading.Event()
    thread = threading.Thread(target=informer.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(lambda: informer.get("old") is not None, what="the informer's first list")
    cached = CachedLists(kube, {R.DEPLOYMENT: informer}, NAMESPACE)
    stop.set()
    thread.join(10)  # the cache is frozen from here on: no event reaches it
    assert not thread.is_alive()

    cached.apply(deployment("new", "demo"))
    assert cached.delete(R.DEPLOYMENT, NAMESPACE, "old")
    before = len(standin.requests)
    selector = f"{LABEL_PART_OF}=demo,{LABEL_MANAGED_BY}={MANAGED_BY}"
    listed, version = cached.list(R.DEPLOYMENT, NAMESPACE, selector)
    assert [o["metadata"]["name"] for o in listed] == ["new"] and version == informer.version
    assert [o["metadata"]["name"] for o in informer.items()] == ["old"]  # what the cache alone says
    assert cached.list(R.DEPLOYMENT, NAMESPACE, f"{LABEL_PART_OF}=other")[0] == []
    assert len(standin.requests) == before  # all of it from the cache
    cached.list(R.DEPLOYMENT, NAMESPACE, "app in (new, old)")  # set-based: the cache cannot answer it
    assert standin.requests[before:] == [("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments")]
    assert cached.list(R.SERVICE, NAMESPACE)[0] == [] and len(standin.requests) == before + 2  # not cached


def service(name: str, app: str) -> dict[str, Any]:
    labels = {LABEL_PART_OF: app, LABEL_MANAGED_BY: MANAGED_BY}
    meta = {"name": name, "namespace": NAMESPACE, "labels": labels}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def test_the_api_watches_core_kinds_and_a_compacted_version_is_gone(kube: KubeApi, standin: StandIn) -> None:
    # Services are core-group objects (/api/v1/...): the controller's cache of them is a list-watch.
    kube.apply(service("db", "demo"), field_manager="test-admin")
    _, version = kube.list(R.SERVICE, NAMESPACE)
    kube.apply(service("web", "demo"), field_manager="test-admin")
    events = [e for e in kube.watch(R.SERVICE, NAMESPACE, version, timeout_seconds=1) if e.type != "BOOKMARK"]
    assert [(e.type, e.object["kind"], e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "Service", "web")]
    standin.store.compact()
    with pytest.raises(Gone):
        list(kube.watch(R.SERVICE, NAMESPACE, version, timeout_seconds=1))


def test_a_watch_the_server_refuses_says_why(kube: KubeApi) -> None:
    unknown = R.Resource("", "v1", "nosuchkinds", "NoSuchKind")
    with pytest.raises(NotFound):
        list(kube.watch(unknown, NAMESPACE, "1", timeout_seconds=1))
