"""Devices through the real far-edge bridge's control socket (its Router and ControlServer, with a
device announced by a birth message), and nodes/clusters as the controller sees them."""

from __future__ import annotations

from api_harness import DATA, yaml_docs

from controller.api.bridge import BridgeDevices
from controller.kube import resources as R


def test_devices_list_show_set_unset_through_the_bridge(make_client, bearer, bridge):
    path, downlink = bridge
    client = make_client(devices=BridgeDevices(path))
    listed = client.get("/api/v1/devices", headers=bearer["viewer"])
    assert listed.status_code == 200 and [d["id"] for d in listed.json()] == ["sensor-7"]
    shown = client.get("/api/v1/devices/sensor-7", headers=bearer["viewer"]).json()
    assert shown["id"] == "sensor-7"
    assert (
        client.put(
            "/api/v1/devices/sensor-7/twin", json={"settings": {"interval_ms": 500}}, headers=bearer["viewer"]
        ).status_code
        == 403
    )
    r = client.put(
        "/api/v1/devices/sensor-7/twin", json={"settings": {"interval_ms": 500}}, headers=bearer["operator"]
    )
    assert r.status_code == 200, r.text
    assert downlink.sent[-1][0] == "sensor-7" and downlink.sent[-1][1]["settings"] == {"interval_ms": 500}
    r = client.post(
        "/api/v1/devices/sensor-7/twin/unset", json={"keys": ["interval_ms"]}, headers=bearer["operator"]
    )
    assert r.status_code == 200 and "interval_ms" not in downlink.sent[-1][1]["settings"]


def test_device_errors_name_the_field(make_client, bearer, bridge):
    path, downlink = bridge
    client = make_client(devices=BridgeDevices(path))
    sent = len(downlink.sent)
    r = client.put(
        "/api/v1/devices/sensor-7/twin", json={"settings": {"interval_ms": -3}}, headers=bearer["operator"]
    )
    assert r.status_code == 422 and r.json()["field"] == "settings.interval_ms", r.text
    r = client.get("/api/v1/devices/ghost", headers=bearer["viewer"])
    assert r.status_code == 404 and "ghost" in r.json()["detail"]
    r = client.put("/api/v1/devices/sensor-7/twin", json={"settings": {}}, headers=bearer["operator"])
    assert r.status_code == 422 and "settings" in r.text
    assert len(downlink.sent) == sent  # nothing sent for refused input


def test_no_bridge_or_a_dead_socket_is_503(make_client, bearer, tmp_path):
    assert make_client().get("/api/v1/devices", headers=bearer["viewer"]).status_code == 503
    dead = make_client(devices=BridgeDevices(tmp_path / "none.sock"))
    r = dead.get("/api/v1/devices", headers=bearer["viewer"])
    assert r.status_code == 503 and "unreachable" in r.json()["detail"]


def test_device_deployments_come_from_the_app_statuses(client, bearer, store):
    from controller.model import to_kubernetes_form

    doc = to_kubernetes_form(yaml_docs(DATA / "app.yaml")[0])[1]
    client.post("/api/v1/apps", json=doc, headers=bearer["operator"])
    obj = store.get(R.APP, "default", "camera-pipeline")
    obj["status"] = {
        "phase": "Degraded",
        "observedGeneration": 1,
        "placement": [{"component": "camera-reader", "node": "sensor-7"}],
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "AwaitingDeployment",
                "message": "camera-reader on sensor-7: awaiting far-edge deployment",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    store.replace_status(R.APP, obj)
    rows = client.get("/api/v1/devices/sensor-7/deployments", headers=bearer["viewer"]).json()
    assert rows == [
        {
            "app": "camera-pipeline",
            "component": "camera-reader",
            "state": "pending",
            "reason": "AwaitingDeployment",
            "message": "camera-reader on sensor-7: awaiting far-edge deployment",
        }
    ]
    status = client.get("/api/v1/apps/camera-pipeline/status", headers=bearer["viewer"]).json()
    ready = {
        c["name"]: next(x["status"] for x in c["conditions"] if x["type"] == "Ready")
        for c in status["components"]
    }
    assert ready["camera-reader"] == "False"  # named in the Degraded message
    assert ready["dashboard"] == "False"  # not placed: never Ready


def test_nodes_and_clusters_as_the_controller_sees_them(client, bearer, store):
    for doc in yaml_docs(DATA / "inventory" / "nodes.yaml") + yaml_docs(DATA / "inventory" / "cluster.yaml"):
        store.apply({**doc, "metadata": {**doc["metadata"], "namespace": "default"}}, field_manager="test")
    node = store.get(R.NODE, "default", "edge-1")
    node["status"] = {"settings": [{"app": "camera-pipeline", "profile": {}, "telemetry": {"cgroups": 2000}}]}
    store.replace_status(R.NODE, node)
    nodes = {n["name"]: n for n in client.get("/api/v1/nodes", headers=bearer["viewer"]).json()}
    assert sorted(nodes) == ["cloud-1", "edge-1", "edge-2"]
    edge = client.get("/api/v1/nodes/edge-1", headers=bearer["viewer"]).json()
    assert edge["agent"] == "unix:/run/mlsysops/edge-1.sock" and edge["layer"] == "edge"
    assert [r["handler"] for r in edge["runtimes"]] == ["runc", "crun"]
    assert edge["telemetry"] == {"camera-pipeline": {"cgroups": 2000}}
    clusters = client.get("/api/v1/clusters", headers=bearer["viewer"]).json()
    assert clusters[0]["nodes"] == ["cloud-1", "edge-1", "edge-2"]
    assert (
        client.get("/api/v1/clusters/uth-edge", headers=bearer["viewer"]).json()["cluster_id"] == "uth-edge"
    )
    for path in ("/api/v1/nodes/nope", "/api/v1/clusters/nope"):
        r = client.get(path, headers=bearer["viewer"])
        assert r.status_code == 404 and "nope" in r.json()["detail"]
    assert client.get("/api/v1/nodes").status_code == 401
