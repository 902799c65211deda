"""The RBAC of deploy/kubernetes covers every call the controller and the REST API make, and no
more (issue 15). The calls are not listed by hand: the controller (mechanisms as the overlay's
api.yaml configures them) and the API's routes run against the stand-in API server through a
representative scenario (apps created, updated so a Deployment moves and a Job is replaced,
deleted; RuntimeClasses created and retired; with Karmada, member clusters read and policies
written), every request they send is recorded, mapped to its RBAC verb as the API server's
authorizer does, and compared with the rules the overlay binds to the controller's service
account: Roles in the apps namespace for namespaced calls, ClusterRoles for cluster-scoped ones.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kube_standin
import pytest
import yaml
from ctlkube_harness import NAMESPACE, Running, StandIn
from fastapi.testclient import TestClient
from kubernetes import client

from controller.api.app import create_app
from controller.api.context import ApiContext, ApiSettings
from controller.api.server import ServeConfig, elector_for
from controller.api.tokens import TokenStore
from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.kube.client import api_client_for_host
from controller.kube.errors import NotFound
from controller.reconcile.informer import MEMBER_CLUSTER
from mlsysops.testing import wait_for

REPO = Path(__file__).resolve().parents[3]
KUBERNETES = REPO / "deploy" / "kubernetes"
SERVICE_ACCOUNT = ("mlsysops-system", "mlsysops-controller")
#: The overlay, and where the rules it binds live (the Karmada host's are the Karmada API server's).
OVERLAYS = {
    "single-cluster": ("single-cluster",),
    "karmada-host": ("karmada-host", "karmada-host/karmada-apiserver"),
}


def _renderer() -> Any:
    spec = importlib.util.spec_from_file_location(
        "kustomize_render", REPO / "tests/packaging/kustomize_render.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Permission:
    group: str
    resource: str  # plural, or plural/subresource
    verb: str


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    user_agent: str
    content_type: str
    code: int = 0


# ------------------------------------------------------------------ what the code asks for


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Request]:
    """Every request the stand-in serves, with its query, client and answer's status code."""
    seen: list[Request] = []
    serve, respond = kube_standin._Handler._serve, kube_standin._Handler.send_response

    def recording_serve(self: Any, method: str) -> None:
        url = urlsplit(self.path)
        self._rbac = Request(
            method,
            url.path,
            {k: v[-1] for k, v in parse_qs(url.query).items()},
            self.headers.get("User-Agent", ""),
            self.headers.get("Content-Type", ""),
        )
        seen.append(self._rbac)
        serve(self, method)

    def recording_respond(self: Any, code: int, message: str | None = None) -> None:
        entry = getattr(self, "_rbac", None)
        if entry is not None and not entry.code:
            entry.code = code
        respond(self, code, message)

    monkeypatch.setattr(kube_standin._Handler, "_serve", recording_serve)
    monkeypatch.setattr(kube_standin._Handler, "send_response", recording_respond)
    return seen


def permissions(request: Request) -> tuple[bool, set[Permission]]:
    """(cluster-scoped?, what the API server's authorizer checks) for one resource request."""
    parts = [p for p in request.path.split("/") if p]
    assert parts[:1] in (["api"], ["apis"]), f"a non-resource request: {request.path}"
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    namespaced = rest[:1] == ["namespaces"] and len(rest) >= 3
    if namespaced:
        rest = rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
    resource = f"{resource}/{sub}" if sub else resource
    method = request.method
    if method == "GET":
        verb = "watch" if request.query.get("watch") in ("1", "true") else "get" if name else "list"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]
    verbs = {verb}
    # A server-side apply that creates the object is also authorized as a create.
    if (
        method == "PATCH"
        and request.content_type.startswith("application/apply-patch")
        and request.code == 201
    ):
        verbs.add("create")
    return not namespaced, {Permission(group, resource, v) for v in verbs}


def used(requests: list[Request]) -> tuple[set[Permission], set[Permission]]:
    """(namespaced, cluster-scoped) permissions of the controller's and the API's requests."""
    namespaced: set[Permission] = set()
    cluster: set[Permission] = set()
    for request in requests:
        if not request.user_agent.startswith(("mlsysops-controller", "mlsysops-api")):
            continue  # the test's own setup
        is_cluster, perms = permissions(request)
        (cluster if is_cluster else namespaced).update(perms)
    return namespaced, cluster


# ------------------------------------------------------------------ what the manifests grant


def granted(overlay: str) -> tuple[set[Permission], set[Permission], dict[str, Any]]:
    """(Role rules in the apps namespace, ClusterRole rules, api.yaml) bound to the controller."""
    render = _renderer()
    host, *rbac_dirs = [KUBERNETES / "overlays" / d for d in OVERLAYS[overlay]]
    objects = render.build(host)
    (config_map,) = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mlsysops-controller"
    ]
    api_config = yaml.safe_load(config_map["data"]["api.yaml"])
    rbac = [o for d in rbac_dirs for o in render.build(d)] if rbac_dirs else objects
    roles = {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
        for o in rbac
        if o["kind"] in ("Role", "ClusterRole")
    }
    namespaced: set[Permission] = set()
    cluster: set[Permission] = set()
    for binding in (o for o in rbac if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        subjects = {
            (s.get("namespace", ""), s["name"]) for s in binding["subjects"] if s["kind"] == "ServiceAccount"
        }
        if SERVICE_ACCOUNT not in subjects:
            continue
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace", "") if ref["kind"] == "Role" else ""
        role = roles[(ref["kind"], namespace, ref["name"])]
        if binding["kind"] == "RoleBinding":
            assert binding["metadata"]["namespace"] == api_config["namespace"], binding["metadata"]
            namespaced |= expand(role)
        else:
            cluster |= expand(role)
    return namespaced, cluster, api_config


def expand(role: dict[str, Any]) -> set[Permission]:
    out: set[Permission] = set()
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule, rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"{role['metadata']['name']}: a wildcard in {field}"
        out |= {
            Permission(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
        }
    return out


def rules(perms: set[Permission]) -> str:
    """`perms` as RBAC rules (one per group and resource), for the failure message."""
    by_resource: dict[tuple[str, str], list[str]] = {}
    for p in perms:
        by_resource.setdefault((p.group, p.resource), []).append(p.verb)
    return "\n".join(
        f"- {{apiGroups: [{g!r}], resources: [{r}], verbs: [{', '.join(sorted(v))}]}}"
        for (g, r), v in sorted(by_resource.items())
    )


# ------------------------------------------------------------------ the scenario


def set_ready(kube: KubeApi, host: str, cluster: str) -> None:
    """A member cluster as `karmadactl join` and Karmada's status controller leave it."""
    try:
        obj = kube.get(MEMBER_CLUSTER, "", cluster)
    except NotFound:
        obj = client.CustomObjectsApi(api_client_for_host(host)).create_cluster_custom_object(
            "cluster.karmada.io",
            "v1alpha1",
            "clusters",
            {
                "apiVersion": MEMBER_CLUSTER.api_version,
                "kind": "Cluster",
                "metadata": {"name": cluster},
                "spec": {"syncMode": "Push", "apiEndpoint": f"https://{cluster}.example.com:6443"},
            },
        )
    condition = {"type": "Ready", "status": "True", "reason": "ClusterReady", "message": "ready"}
    kube.replace_status(MEMBER_CLUSTER, {**obj, "status": {"conditions": [condition]}})


def batch_app() -> dict[str, Any]:
    """A component run to completion (a Job), on a RuntimeClass."""
    container = {"image": "registry.example.com/report:1",
                 "platform_requirements": {"cpu": {"requests": "100m"}, "memory": {"requests": "64Mi"}}}
    return {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
            "metadata": {"name": "nightly", "namespace": NAMESPACE},
            "components": [{"metadata": {"name": "report"}, "restart_policy": "OnFailure",
                            "runtime_class_name": "crun", "node_placement": {"continuum_layer": ["edge"]},
                            "containers": [container]}]}  # fmt: skip


def settled(kube: KubeApi, name: str, generation: int = 1) -> None:
    def done() -> bool:
        status = kube.get(R.APP, NAMESPACE, name).get("status") or {}
        return status.get("observedGeneration", 0) >= generation and status.get("phase") in (
            "Deployed",
            "Degraded",
        )

    wait_for(done, what=f"{name} reconciled (generation {generation})", timeout=90)


@pytest.fixture
def api(standin: StandIn, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The REST API's routes over the stand-in, as mlsysops-api drives a Kubernetes API."""
    tokens = TokenStore(tmp_path / "tokens.json")
    headers = {"Authorization": f"Bearer {tokens.create('admin', name='admin')[0]}"}
    store = KubeApi(api_client_for_host(standin.host), user_agent="mlsysops-api")
    ctx = ApiContext(store, tokens, ApiSettings(namespace=NAMESPACE, watch_timeout=1))
    with TestClient(create_app(ctx)) as test_client:
        yield test_client, headers


def exercise_the_api(test_client: TestClient, headers: dict[str, str], app_doc: dict[str, Any]) -> None:
    """Every route that reaches the object store, once."""
    doc = copy.deepcopy(app_doc)
    doc["metadata"] = {"name": "via-api"}
    assert test_client.post("/api/v1/apps", json=doc, headers=headers).status_code == 201
    assert test_client.put("/api/v1/apps/via-api", json=doc, headers=headers).status_code == 200
    for path in (
        "/api/v1/apps",
        "/api/v1/apps?full=true",
        "/api/v1/apps/via-api",
        "/api/v1/apps/via-api/status",
        "/api/v1/apps/via-api/explain",
        "/api/v1/nodes",
        "/api/v1/nodes/edge-1",
        "/api/v1/clusters",
        "/api/v1/clusters/uth-edge",
        "/apps/list_all/",
        "/apps/status/via-api",
        "/infra/list/?type=All",
        "/apps/apps/details/via-api",
        "/manage/ping",
    ):
        assert test_client.get(path, headers=headers).status_code == 200, path
    # the event stream from an old version: the watch replays, so one event ends it
    events = test_client.get("/api/v1/events?limit=1", headers={**headers, "Last-Event-ID": "1"})
    assert events.status_code == 200
    assert test_client.delete("/api/v1/apps/via-api", headers=headers).status_code in (200, 204)


def spread_app(instances: int) -> dict[str, Any]:
    """Replicas of one component over two clusters' nodes (with Karmada: an override each)."""
    container = {
        "image": "registry.example.com/reader:1",
        "platform_requirements": {"cpu": {"requests": "3"}, "memory": {"requests": "1Gi"}},
    }
    return {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp",
            "metadata": {"name": "spread", "namespace": NAMESPACE},
            "components": [{"metadata": {"name": "reader"}, "runtime_class_name": "crun",
                            "node_placement": {"continuum_layer": ["edge"], "labels": ["camera"],
                                               "scaling": {"mode": "manual", "instances": instances}},
                            "containers": [container]}]}  # fmt: skip


def two_clusters(kube: KubeApi, standin: StandIn, world: list[dict[str, Any]]) -> None:
    """edge-2 in a second cluster, both clusters Ready members for Karmada."""
    edge2 = next(d for d in world if d["metadata"]["name"] == "edge-2")
    kube.apply({**edge2, "cluster_id": "uth-north"}, field_manager="test-admin")
    kube.apply(
        {
            "apiVersion": "mlsysops.eu/v1",
            "kind": "MLSysOpsCluster",
            "metadata": {"name": "uth-edge", "namespace": NAMESPACE},
            "cluster_id": "uth-edge",
            "nodes": ["cloud-1", "edge-1"],
        },
        field_manager="test-admin",
    )
    for member in ("uth-edge", "uth-north"):
        set_ready(kube, standin.host, member)


def run_scenario(
    kube: KubeApi,
    standin: StandIn,
    controllers: Running,
    world: list[dict[str, Any]],
    app_doc: dict[str, Any],
    mechanisms: tuple[str, ...],
) -> None:
    two_clusters(kube, standin, world)
    controllers.start(mechanisms=mechanisms)
    kube.apply(app_doc, field_manager="test-user")
    kube.apply(batch_app(), field_manager="test-user")
    kube.apply(spread_app(2), field_manager="test-user")
    for name in (app_doc["metadata"]["name"], "nightly", "spread"):
        settled(kube, name)
    kube.apply(spread_app(1), field_manager="test-user")  # one cluster: no override any more
    # updates: the dashboard moves to another node (a new Deployment, the old one deleted), the
    # Job gets a new image (a new Job, the old one deleted)
    moved = copy.deepcopy(app_doc)
    dashboard = next(c for c in moved["components"] if c["metadata"]["name"] == "dashboard")
    dashboard["node_placement"] = {"node": "edge-1"}
    kube.apply(moved, field_manager="test-user")
    job = batch_app()
    job["components"][0]["containers"][0]["image"] = "registry.example.com/report:2"
    kube.apply(job, field_manager="test-user")
    settled(kube, app_doc["metadata"]["name"], 2)
    settled(kube, "nightly", 2)
    # the dashboard leaves the app: its Deployment and Service are retired
    moved["components"] = [c for c in moved["components"] if c["metadata"]["name"] != "dashboard"]
    moved["component_interactions"] = [
        i
        for i in moved.get("component_interactions", [])
        if "dashboard" not in (i["component_name1"], i["component_name2"])
    ]
    kube.apply(moved, field_manager="test-user")
    settled(kube, app_doc["metadata"]["name"], 3)
    settled(kube, "spread", 2)
    # deleted orphaning what was made for them (`kubectl delete --cascade=orphan`): the
    # controller's own removal deletes it, not the garbage collector
    for name in (app_doc["metadata"]["name"], "nightly", "spread"):
        kube.delete(R.APP, NAMESPACE, name, propagation="Orphan")
    wait_for(lambda: kube.list(R.RUNTIME_CLASS, "")[0] == [], what="the RuntimeClasses retired", timeout=90)


def campaign(standin: StandIn) -> None:
    """What the API daemon's leader election asks of the API server (controller.api.server's
    elector over the daemon's client): the Lease created, renewed, released."""
    store = KubeApi(api_client_for_host(standin.host), user_agent="mlsysops-api")
    cfg = ServeConfig(run_controller=True, kubeconfig="(the stand-in)", leader_elect=True,
                      namespace=NAMESPACE)
    elector = elector_for(cfg, store)
    assert elector is not None
    assert elector.try_acquire_or_renew() and elector.try_acquire_or_renew()
    elector.release()


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_rbac_grants_exactly_what_the_controller_and_the_api_use(
    overlay: str,
    kube: KubeApi,
    standin: StandIn,
    world: Any,
    app_doc: dict[str, Any],
    controllers: Running,
    recorded: list[Request],
    api: tuple[TestClient, dict[str, str]],
) -> None:
    role, cluster_role, api_config = granted(overlay)
    mechanisms = tuple(api_config["mechanisms"])
    if api_config.get("leader_elect"):
        campaign(standin)
    run_scenario(kube, standin, controllers, world, app_doc, mechanisms)
    exercise_the_api(*api, app_doc)
    controllers.stop_all()
    in_namespace, cluster_scoped = used(list(recorded))
    assert in_namespace - role == set(), f"namespaced calls no Role grants:\n{rules(in_namespace - role)}"
    assert cluster_scoped - cluster_role == set(), (
        f"cluster-scoped calls no ClusterRole grants:\n{rules(cluster_scoped - cluster_role)}"
    )
    assert role - in_namespace == set(), f"the Roles grant what no call uses:\n{rules(role - in_namespace)}"
    assert cluster_role - cluster_scoped == set(), (
        f"the ClusterRoles grant what no call uses:\n{rules(cluster_role - cluster_scoped)}"
    )


def test_the_mapping_is_the_authorizers() -> None:
    def perms(
        method: str, path: str, query: str = "", code: int = 200, content_type: str = "application/json"
    ) -> tuple[bool, set[Permission]]:
        return permissions(
            Request(method, path, {k: v[-1] for k, v in parse_qs(query).items()}, "", content_type, code)
        )

    apps = "/apis/mlsysops.eu/v1/namespaces/ns/mlsysopsapps"
    assert perms("GET", apps) == (False, {Permission("mlsysops.eu", "mlsysopsapps", "list")})
    assert perms("GET", apps, "watch=true") == (False, {Permission("mlsysops.eu", "mlsysopsapps", "watch")})
    assert perms("GET", f"{apps}/a") == (False, {Permission("mlsysops.eu", "mlsysopsapps", "get")})
    assert perms("PUT", f"{apps}/a/status") == (
        False,
        {Permission("mlsysops.eu", "mlsysopsapps/status", "update")},
    )
    assert perms("PATCH", f"{apps}/a", code=201, content_type="application/apply-patch+yaml") == (
        False,
        {
            Permission("mlsysops.eu", "mlsysopsapps", "patch"),
            Permission("mlsysops.eu", "mlsysopsapps", "create"),
        },
    )
    assert perms("PATCH", f"{apps}/a", code=200, content_type="application/apply-patch+yaml")[1] == {
        Permission("mlsysops.eu", "mlsysopsapps", "patch")
    }
    assert perms("GET", "/apis/apps/v1/deployments") == (True, {Permission("apps", "deployments", "list")})
    assert perms("DELETE", "/api/v1/namespaces/ns/services/s") == (
        False,
        {Permission("", "services", "delete")},
    )
    assert perms("DELETE", "/apis/node.k8s.io/v1/runtimeclasses/crun") == (
        True,
        {Permission("node.k8s.io", "runtimeclasses", "delete")},
    )
